package switchboard

// Asking for support, reading along and whispering (issue 16).
//
// The volunteer's centre is the hub of a support request: it holds the
// conversation (its volunteer's console hears both sides), so it alone can
// mirror it to a supervisor without touching the visitor's centre or the
// relay between them. A request rings every supervisor on duty here for
// SupportRing; nobody here, or nobody took it, and it goes to the other
// centres with a supervisor on duty, in the national policy's order
// (Config.Supervision), one at a time. The first supervisor to take it
// gets a seat: from then on every message of the conversation, the
// visitor's and the volunteer's, is mirrored to them, in memory only, and
// their notes (whispers) reach the volunteer's console and nothing else.
// Across centres the seat is a relay of its own (overflow's support/1
// protocol), so the supervisor's centre dying ends the seat and nothing
// of the conversation.

import (
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/time/rate"
)

// Why a volunteer asks for support. A request may give none.
const (
	SupportRisk   = "risk"
	SupportAbuse  = "abuse"
	SupportUnsure = "unsure"
	SupportTired  = "tired"
	// SupportNoReason is the KPIs' label of a request without a reason.
	SupportNoReason = "none"
)

// SupportReasons are the reasons a volunteer may give.
var SupportReasons = []string{SupportRisk, SupportAbuse, SupportUnsure, SupportTired}

// What a volunteer's console hears of their support request (Event.By of
// an EventSupport).
const (
	// SupportAsked: the request rings at a centre (Event.Centre, "" ours).
	SupportAsked = "asked"
	// SupportComing: a supervisor (Event.Alias) took it and reads along.
	SupportComing = "coming"
	// SupportUnavailable: no supervisor anywhere took it.
	SupportUnavailable = "unavailable"
	// SupportOver: the supervisor left, went off duty or was lost, or the
	// volunteer ended the request. Event.Text says why.
	SupportOver = "over"
)

// Who said a read-along message (Event.By on a supervisor's seat).
const (
	SaidByVisitor   = "visitor"
	SaidByVolunteer = "volunteer"
)

// DefaultSupportRing is how long a support request rings at one centre
// before it goes to the next: a supervisor on duty is at their console, and
// a volunteer with a visitor at risk should not wait for a second centre
// longer than this.
const DefaultSupportRing = 20 * time.Second

// What a support link may carry from another centre before it is taken
// for broken: whispers (a supervisor's console allows 10 at once, then 2 a
// second), and the mirror of a conversation (both ends' paces and then
// some).
const (
	whisperBurst = 20
	whisperPace  = rate.Limit(4)
	seatBurst    = 100
	seatPace     = rate.Limit(20)
	// Requests from one centre ringing here at once, and in all: a
	// centre has a handful of volunteers asking at a time; more is a
	// flood, and each rings every supervisor's console.
	maxAlertsFrom = 8
	maxAlerts     = 32
)

// MaxWhisperBytes bounds a supervisor's note to a volunteer.
const MaxWhisperBytes = 2000

// Supervision carries support requests to other centres' supervisors.
type Supervision interface {
	// SupportCandidates are the other centres with a supervisor on duty
	// by gossip, in the national policy's order. A hint, like Candidates.
	SupportCandidates() []string
	// AskSupport blocks until centre's supervisor takes the request, or
	// not (an error: nobody took it, unreachable, or ctx ended).
	AskSupport(ctx context.Context, centre string, a SupportAsk) (SupportAnswer, error)
}

// SupportAsk is a support request as another centre sees it: nothing of
// the visitor, no contact id, only what a supervisor needs to decide.
type SupportAsk struct {
	ID, Reason, Channel, Language string
	// Volunteer is the asking volunteer's alias.
	Volunteer string
	Ring      time.Duration
}

// SupportAnswer is another centre's supervisor taking a request, held
// until we confirm it (the seat's relay) or cancel it.
type SupportAnswer interface {
	Supervisor() string
	Confirm(h PeerHandler) (Peer, error)
	Cancel(reason string)
}

// DutySink receives what the switchboard tells a supervisor's console.
// Calls are made in order from one goroutine per supervisor.
type DutySink interface {
	// SupportAsked rings a support request on the console.
	SupportAsked(a SupportAlert)
	// SupportTaken: this supervisor took it; what they read follows.
	SupportTaken(a SupportAlert)
	// SupportWithdrawn: the request was taken by another supervisor,
	// went elsewhere or was cancelled.
	SupportWithdrawn(id, reason string)
	// ReadAlong is one thing said in a conversation the supervisor reads
	// along (e.By: SaidByVisitor or SaidByVolunteer; an EventEnded when
	// it ended), or the delivery of their whisper (EventDelivered).
	ReadAlong(id string, e Event)
	// SupportEnded: the seat is over (why).
	SupportEnded(id, reason string)
}

// SupportAlert is a support request ringing on a supervisor's console.
type SupportAlert struct {
	ID, Reason, Channel, Language string
	Volunteer                     string
	// Centre is the volunteer's centre ("" ours).
	Centre string
	Asked  time.Time
}

// SupportKey is one support request's reason and how it ended.
type SupportKey struct{ Reason, Result string }

// Results of a support request (Stats.SupportRequests).
const (
	SupportResultTaken       = "taken"
	SupportResultUnavailable = "unavailable"
	SupportResultCancelled   = "cancelled"
)

// supportRequest is one of our volunteers asking for support in one
// conversation (the volunteer's centre's side).
type supportRequest struct {
	id     string
	cv     *conv
	reason string
	asked  time.Time
	cancel context.CancelFunc // ends the search
	// alert rings on our own supervisors' consoles while it is ours.
	alert *alert
	// Once taken: by whom, where, and the seat (a local supervisor) or
	// link (a relay to the supervisor's centre).
	taken      bool
	supervisor string
	centre     string
	seat       *seat
	link       Peer
	over       bool
}

// alert is a support request ringing on this centre's supervisors:
// ours (local), or another centre's (remote: decided tells its serving
// goroutine who took it).
type alert struct {
	a       SupportAlert
	local   *supportRequest
	decided chan *supervisor
	takenBy *supervisor
	timer   Timer
}

// seat is a supervisor reading along one conversation.
type seat struct {
	id    string
	sup   *supervisor
	local *supportRequest // ours
	link  Peer            // the volunteer's centre (remote), nil until connected
	from  string          // the volunteer's centre ("" ours)
	over  bool
}

// AskSupport asks for a supervisor in the conversation with contactID.
// Asking again while a request is open changes nothing.
func (c *Console) AskSupport(contactID, reason string) error {
	if reason != "" && !slices.Contains(SupportReasons, reason) {
		return fmt.Errorf("ask for support: reason %q (want one of %v, or none): %w", clip(reason), SupportReasons, ErrBadRequest)
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	cv, ok := c.v.active[contactID]
	if !ok || s.volunteers[c.v.ID] != c.v {
		return fmt.Errorf("ask for support in %s: %w", clip(contactID), ErrUnknownContact)
	}
	if cv.received != nil && cv.received.call != nil {
		return fmt.Errorf("ask for support in %s: a phone call cannot be read along: %w", clip(contactID), ErrBadRequest)
	}
	if cv.support != nil && !cv.support.over {
		return nil
	}
	if rc := cv.received; rc != nil && !rc.transfers && s.readAlongNoticeLocked() {
		// The visitor must be told, and their centre runs a release that
		// would take the notice for a broken relay (it predates both
		// support and transfer, whose flag says it is newer).
		return fmt.Errorf("ask for support in %s: the visitor's centre runs an older release that cannot tell them a supervisor reads along: %w", clip(contactID), ErrBadRequest)
	}
	if reason == "" {
		reason = SupportNoReason
	}
	ctx, cancel := context.WithCancel(s.stop.Context())
	r := &supportRequest{id: newID(), cv: cv, reason: reason, asked: s.now(), cancel: cancel}
	cv.support = r
	s.stats.SupportAsked[reason]++
	if len(s.supervisors) > 0 {
		s.ringLocalSupportLocked(r)
		s.tellSupportLocked(r, Event{Kind: EventSupport, By: SupportAsked})
	}
	s.spawn(func(context.Context) { s.searchSupport(ctx, r) })
	return nil
}

// EndSupport ends the volunteer's support request in contactID: the
// search stops, or the supervisor's seat ends.
func (c *Console) EndSupport(contactID string) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	cv, ok := c.v.active[contactID]
	if !ok || s.volunteers[c.v.ID] != c.v || cv.support == nil || cv.support.over {
		return fmt.Errorf("end support in %s: %w", clip(contactID), ErrUnknownContact)
	}
	s.endSupportLocked(cv.support, "the volunteer ended the support")
	return nil
}

// Whisper sends the volunteer of a seat's conversation a note only they
// see. id is the supervisor's id for it (echoed as delivered).
func (d *Duty) Whisper(supportID, id, text string) error {
	if err := checkNote(id, text); err != nil {
		return err
	}
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := d.sup.seats[supportID]
	if !ok || st.over || s.supervisors[d.sup.id] != d.sup {
		return fmt.Errorf("whisper in %s: %w", clip(supportID), ErrUnknownContact)
	}
	e := Event{Kind: EventWhisper, ID: id, Text: text, Alias: d.sup.alias}
	switch {
	case st.local != nil:
		s.whisperLocked(st.local, e)
	case st.link != nil:
		if err := st.link.Send(e); err != nil {
			return fmt.Errorf("whisper in %s: %w", clip(supportID), ErrEnded)
		}
	default:
		return fmt.Errorf("whisper in %s: not connected yet: %w", clip(supportID), ErrOfferGone)
	}
	return nil
}

func checkNote(id, text string) error {
	if err := checkMessage(id, text); err != nil {
		return err
	}
	if len(text) > MaxWhisperBytes {
		return fmt.Errorf("note of %d bytes (at most %d): %w", len(text), MaxWhisperBytes, ErrBadMessage)
	}
	return nil
}

// TakeSupport takes a support request ringing on this supervisor's
// console: the first to take it wins.
func (d *Duty) TakeSupport(id string) error {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	al, ok := s.alerts[id]
	if !ok || al.takenBy != nil || s.supervisors[d.sup.id] != d.sup || d.sup.seats[id] != nil {
		return fmt.Errorf("take support %s: %w", clip(id), ErrOfferGone)
	}
	al.takenBy = d.sup
	if al.timer != nil {
		al.timer.Stop()
	}
	delete(s.alerts, id)
	s.withdrawAlertLocked(al, "taken by another supervisor", d.sup)
	st := &seat{id: id, sup: d.sup, local: al.local, from: al.a.Centre}
	d.sup.seats[id] = st
	sink, a := d.sup.sink, al.a
	d.sup.out.post(func() { sink.SupportTaken(a) })
	if r := al.local; r != nil {
		r.alert = nil
		r.taken, r.supervisor, r.seat = true, d.sup.alias, st
		r.cancel()
		s.supportTakenLocked(r)
	} else {
		al.decided <- d.sup
	}
	s.changedLocked()
	return nil
}

// LeaveSupport ends the supervisor's seat: they stop reading along.
func (d *Duty) LeaveSupport(id string) error {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := d.sup.seats[id]
	if !ok || st.over {
		return fmt.Errorf("leave support %s: %w", clip(id), ErrUnknownContact)
	}
	s.endSeatLocked(st, "the supervisor left")
	return nil
}

// ringLocalSupportLocked rings our own supervisors for our request.
func (s *Switchboard) ringLocalSupportLocked(r *supportRequest) {
	al := &alert{a: s.alertOf(r), local: r}
	r.alert = al
	s.alerts[r.id] = al
	s.postAlertLocked(al)
}

func (s *Switchboard) alertOf(r *supportRequest) SupportAlert {
	a := SupportAlert{ID: r.id, Reason: r.reason, Asked: r.asked, Channel: ChannelChat}
	if v := r.cv.vol; v != nil {
		a.Volunteer = v.Alias
	}
	switch {
	case r.cv.visitor != nil:
		a.Channel, a.Language = r.cv.visitor.channel, r.cv.visitor.language
	case r.cv.received != nil:
		a.Channel, a.Language = r.cv.received.channel, r.cv.received.language
	}
	return a
}

func (s *Switchboard) postAlertLocked(al *alert) {
	a := al.a
	for _, sup := range s.supervisors {
		sink := sup.sink
		sup.out.post(func() { sink.SupportAsked(a) })
	}
	s.changedLocked()
}

// withdrawAlertLocked takes an alert off every console but except's.
func (s *Switchboard) withdrawAlertLocked(al *alert, reason string, except *supervisor) {
	id := al.a.ID
	for _, sup := range s.supervisors {
		if sup != except {
			sink := sup.sink
			sup.out.post(func() { sink.SupportWithdrawn(id, reason) })
		}
	}
}

// dropLocalAlertLocked withdraws our request's alert (nobody here took it
// in time, or the request ended).
func (s *Switchboard) dropLocalAlertLocked(r *supportRequest, reason string) {
	if al := r.alert; al != nil {
		r.alert = nil
		delete(s.alerts, r.id)
		s.withdrawAlertLocked(al, reason, nil)
		s.changedLocked()
	}
}

// searchSupport looks for a supervisor: ours first (already ringing when
// any is on duty), then the other centres' in the policy's order.
func (s *Switchboard) searchSupport(ctx context.Context, r *supportRequest) {
	ring := s.cfg.SupportRing
	s.mu.Lock()
	local := r.alert != nil
	s.mu.Unlock()
	if local {
		t := time.NewTimer(ring)
		select {
		case <-ctx.Done(): // taken here, or the request ended
			t.Stop()
			return
		case <-t.C:
		}
		s.mu.Lock()
		if r.taken || r.over {
			s.mu.Unlock()
			return
		}
		s.dropLocalAlertLocked(r, "nobody took it here; asked at another centre")
		s.mu.Unlock()
	}
	if sv := s.cfg.Supervision; sv != nil {
		for _, centre := range sv.SupportCandidates() {
			s.mu.Lock()
			if r.over {
				s.mu.Unlock()
				return
			}
			ask := s.alertOf(r)
			s.tellSupportLocked(r, Event{Kind: EventSupport, By: SupportAsked, Centre: centre})
			s.mu.Unlock()
			ans, err := sv.AskSupport(ctx, centre, SupportAsk{ID: r.id, Reason: r.reason, Channel: ask.Channel, Language: ask.Language, Volunteer: ask.Volunteer, Ring: ring})
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.log.Debug("support request not taken", "centre", centre, "err", err)
				continue
			}
			if s.connectSupport(r, centre, ans) {
				return
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !r.over && !r.taken {
		r.over = true
		r.cancel()
		s.stats.SupportRequests[SupportKey{r.reason, SupportResultUnavailable}]++
		s.tellSupportLocked(r, Event{Kind: EventSupport, By: SupportUnavailable})
		s.changedLocked()
	}
}

// connectSupport confirms another centre's supervisor (I/O, outside the
// lock: the request may end meanwhile, and then the link is closed at
// once). False: the confirmation failed, and the search goes on.
func (s *Switchboard) connectSupport(r *supportRequest, centre string, ans SupportAnswer) bool {
	s.mu.Lock()
	if r.over || s.closed {
		s.mu.Unlock()
		ans.Cancel("the request ended")
		return true
	}
	s.mu.Unlock()
	h := &supportLinkHandler{s: s, r: r, pace: rate.NewLimiter(whisperPace, whisperBurst)}
	link, err := ans.Confirm(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.log.Debug("support request: confirming failed", "centre", centre, "err", err)
		return false
	}
	if r.over || s.closed {
		// The conversation ended while we confirmed.
		_ = link.Send(Event{Kind: EventEnded, Reason: "the request ended"})
		link.Close("the request ended")
		return true
	}
	r.taken, r.supervisor, r.centre, r.link = true, ans.Supervisor(), centre, link
	s.supportTakenLocked(r)
	return true
}

// supportTakenLocked: the volunteer hears who is coming, the visitor is
// told per the policy, and the KPIs count the time to support.
func (s *Switchboard) supportTakenLocked(r *supportRequest) {
	s.stats.SupportRequests[SupportKey{r.reason, SupportResultTaken}]++
	s.stats.TimeToSupport.observe(supportBuckets, s.since(r.asked).Seconds())
	s.tellSupportLocked(r, Event{Kind: EventSupport, By: SupportComing, Alias: r.supervisor, Centre: r.centre})
	if s.readAlongNoticeLocked() {
		s.toVisitorLocked(r.cv, Event{Kind: EventSupervised})
	}
	s.changedLocked()
}

// readAlongNoticeLocked: the policy says a visitor is told when a
// supervisor reads along.
func (s *Switchboard) readAlongNoticeLocked() bool {
	return s.cfg.ReadAlongNotice == nil || s.cfg.ReadAlongNotice()
}

// supportBuckets are the time-to-support histogram's upper bounds, s.
var supportBuckets = []float64{5, 10, 20, 30, 60, 120, 300}

// SupportBuckets returns the time-to-support histogram's bounds.
func SupportBuckets() []float64 { return slices.Clone(supportBuckets) }

// tellSupportLocked tells the volunteer of r's conversation how their
// request goes.
func (s *Switchboard) tellSupportLocked(r *supportRequest, e Event) {
	v, id := r.cv.vol, r.cv.id
	if v == nil {
		return
	}
	v.out.post(func() { v.sink.Event(id, e) })
}

// whisperLocked hands a supervisor's note to the volunteer only, and tells
// the supervisor it was delivered.
func (s *Switchboard) whisperLocked(r *supportRequest, e Event) {
	if r.over {
		return
	}
	if _, live := r.cv.vol.active[r.cv.id]; !live {
		return
	}
	s.tellSupportLocked(r, e)
	d := Event{Kind: EventDelivered, ID: e.ID}
	switch {
	case r.seat != nil:
		st := r.seat
		sink := st.sup.sink
		st.sup.out.post(func() { sink.ReadAlong(st.id, d) })
	case r.link != nil:
		s.sendLinkLocked(r, d)
	}
}

// sendLinkLocked sends on r's link to the supervisor's centre; a link
// that cannot take it (its outbox full: the relay closed itself, and no
// loss will be reported) ends the support.
func (s *Switchboard) sendLinkLocked(r *supportRequest, e Event) {
	if err := r.link.Send(e); err != nil {
		r.link = nil
		s.endSupportLocked(r, "the supervisor's centre was lost")
	}
}

// mirrorLocked shows a message said in cv to the supervisor reading along.
func (s *Switchboard) mirrorLocked(cv *conv, e Event, by string) {
	if e.Kind != EventMessage {
		return
	}
	s.mirrorAnyLocked(cv, e, by)
}

func (s *Switchboard) mirrorAnyLocked(cv *conv, e Event, by string) {
	r := cv.support
	if r == nil || r.over || !r.taken {
		return
	}
	switch e.Kind {
	case EventMessage:
		e = Event{Kind: EventMessage, ID: e.ID, Text: e.Text, By: by}
	case EventEnded:
		// Only from endSupportOfConvLocked, whichever side ended it.
		e = Event{Kind: EventEnded}
	default:
		return
	}
	switch {
	case r.seat != nil:
		st := r.seat
		sink := st.sup.sink
		st.sup.out.post(func() { sink.ReadAlong(st.id, e) })
	case r.link != nil:
		s.sendLinkLocked(r, e)
	}
}

// endSupportLocked ends a request from the volunteer's side: the search
// stops, the alert is withdrawn, the seat or the link ends.
func (s *Switchboard) endSupportLocked(r *supportRequest, why string) {
	if r.over {
		return
	}
	r.over = true
	r.cancel()
	if !r.taken {
		s.stats.SupportRequests[SupportKey{r.reason, SupportResultCancelled}]++
	}
	s.dropLocalAlertLocked(r, why)
	if st := r.seat; st != nil && !st.over {
		st.over = true
		delete(st.sup.seats, st.id)
		sink, id := st.sup.sink, st.id
		st.sup.out.post(func() { sink.SupportEnded(id, why) })
	}
	if r.link != nil {
		// Said before the close, so the supervisor's centre does not take
		// an ordinary end for our loss.
		_ = r.link.Send(Event{Kind: EventEnded, Reason: clipReason(why)})
		r.link.Close(why)
		r.link = nil
	}
	if _, live := r.cv.vol.active[r.cv.id]; live {
		s.tellSupportLocked(r, Event{Kind: EventSupport, By: SupportOver, Text: why})
	}
	s.changedLocked()
}

// endSeatLocked ends a supervisor's seat from the supervisor's side.
func (s *Switchboard) endSeatLocked(st *seat, why string) {
	if st.over {
		return
	}
	st.over = true
	delete(st.sup.seats, st.id)
	sink, id := st.sup.sink, st.id
	st.sup.out.post(func() { sink.SupportEnded(id, why) })
	switch {
	case st.local != nil:
		st.local.seat = nil
		s.endSupportLocked(st.local, why)
	case st.link != nil:
		_ = st.link.Send(Event{Kind: EventEnded, Reason: clipReason(why)})
		st.link.Close(why)
		st.link = nil
	}
	s.changedLocked()
}

// supportLinkHandler hears the supervisor's centre on a support link
// (the volunteer's centre's side): whispers and their end.
type supportLinkHandler struct {
	s    *Switchboard
	r    *supportRequest
	pace *rate.Limiter // whispers
}

func (h *supportLinkHandler) OnEvent(e Event) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	r := h.r
	if r.over || s.closed {
		return
	}
	switch e.Kind {
	case EventWhisper:
		if !h.pace.Allow() {
			s.log.Warn("support ended: the supervisor's centre sends notes faster than anyone writes", "centre", r.centre)
			s.endSupportLocked(r, "the supervisor's centre sent too many notes")
			return
		}
		if r.supervisor != "" {
			e.Alias = r.supervisor // the supervisor the centre named when it took it
		}
		s.whisperLocked(r, Event{Kind: EventWhisper, ID: e.ID, Text: e.Text, Alias: e.Alias})
	case EventEnded:
		r.link = nil
		why := "the supervisor left"
		if e.Reason != "" {
			why = clipReason(e.Reason)
		}
		s.endSupportLocked(r, why)
	}
}

func (h *supportLinkHandler) OnLost(int) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.r.over || s.closed {
		return
	}
	h.r.link = nil
	s.endSupportLocked(h.r, "the supervisor's centre was lost")
}

// supportIDInUseLocked: a request rings, or a seat reads along, under id.
func (s *Switchboard) supportIDInUseLocked(id string) bool {
	if _, ok := s.alerts[id]; ok {
		return true
	}
	for _, sup := range s.supervisors {
		if _, ok := sup.seats[id]; ok {
			return true
		}
	}
	return false
}

// IncomingSupport is another centre's support request.
type IncomingSupport struct {
	SupportAsk
	From string
}

// SupportReservation is another centre's support request ringing on our
// supervisors' consoles.
type SupportReservation struct {
	s  *Switchboard
	al *alert
}

// ReceiveSupport rings another centre's support request on our
// supervisors' consoles; none on duty is ErrNoVolunteer.
func (s *Switchboard) ReceiveSupport(in IncomingSupport) (*SupportReservation, error) {
	if len(in.ID) == 0 || len(in.ID) > 64 || in.From == "" {
		return nil, fmt.Errorf("receive support: %w", ErrBadRequest)
	}
	if in.Reason != SupportNoReason && !slices.Contains(SupportReasons, in.Reason) {
		return nil, fmt.Errorf("receive support: reason: %w", ErrBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if len(s.supervisors) == 0 {
		return nil, fmt.Errorf("receive support from %s: no supervisor on duty: %w", clip(in.From), ErrNoVolunteer)
	}
	if s.supportIDInUseLocked(in.ID) {
		return nil, fmt.Errorf("receive support: id already in use: %w", ErrBadRequest)
	}
	from := 0
	for _, al := range s.alerts {
		if al.a.Centre == in.From {
			from++
		}
	}
	if from >= maxAlertsFrom || len(s.alerts) >= maxAlerts {
		return nil, fmt.Errorf("receive support from %s: too many requests ringing: %w", clip(in.From), ErrNoVolunteer)
	}
	al := &alert{a: SupportAlert{ID: in.ID, Reason: in.Reason, Channel: in.Channel, Language: in.Language,
		Volunteer: clip(in.Volunteer), Centre: in.From, Asked: s.now()}, decided: make(chan *supervisor, 1)}
	s.alerts[in.ID] = al
	ring := min(max(in.Ring, time.Second), s.cfg.SupportRing)
	al.timer = s.afterFunc(ring, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.alerts[in.ID] == al && al.takenBy == nil {
			delete(s.alerts, in.ID)
			s.withdrawAlertLocked(al, "nobody took it here; asked at another centre", nil)
			al.decided <- nil
			s.changedLocked()
		}
	})
	s.postAlertLocked(al)
	return &SupportReservation{s: s, al: al}, nil
}

// Wait returns the alias of the supervisor who took it, or an error.
func (r *SupportReservation) Wait(ctx context.Context) (string, error) {
	select {
	case sup := <-r.al.decided:
		if sup == nil {
			return "", fmt.Errorf("support request: nobody took it: %w", ErrNoVolunteer)
		}
		return sup.alias, nil
	case <-ctx.Done():
		r.Release("withdrawn by the volunteer's centre")
		return "", fmt.Errorf("support request withdrawn: %w", ctx.Err())
	}
}

// Connect gives the supervisor's seat its link to the volunteer's centre.
func (r *SupportReservation) Connect(link Peer) PeerHandler {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	sup := r.al.takenBy
	h := &seatHandler{s: s, pace: rate.NewLimiter(seatPace, seatBurst)}
	if sup == nil {
		link.Close("no supervisor")
		return h
	}
	st := sup.seats[r.al.a.ID]
	if st == nil || st.over || s.supervisors[sup.id] != sup {
		link.Close("the supervisor left")
		return h
	}
	st.link = link
	h.st = st
	return h
}

// Release ends a request that never became a seat here.
func (r *SupportReservation) Release(reason string) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	al := r.al
	if s.alerts[al.a.ID] == al {
		delete(s.alerts, al.a.ID)
		if al.timer != nil {
			al.timer.Stop()
		}
		s.withdrawAlertLocked(al, reason, nil)
		s.changedLocked()
		return
	}
	if sup := al.takenBy; sup != nil {
		if st := sup.seats[al.a.ID]; st != nil && st.link == nil {
			s.endSeatLocked(st, reason)
		}
	}
}

// seatHandler hears the volunteer's centre on a supervisor's seat: the
// conversation mirrored, and deliveries of whispers.
type seatHandler struct {
	s    *Switchboard
	st   *seat
	pace *rate.Limiter
}

func (h *seatHandler) OnEvent(e Event) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st := h.st
	if st == nil || st.over || s.closed {
		return
	}
	switch e.Kind {
	case EventMessage, EventDelivered:
		if !h.pace.Allow() {
			// The conversation's own pace bounds what an honest centre
			// mirrors; a flood ends the seat, not the supervisor's page.
			s.log.Warn("support seat ended: the volunteer's centre mirrors faster than any conversation goes", "centre", st.from)
			s.endSeatLocked(st, "the volunteer's centre sent too much")
			return
		}
		sink, id := st.sup.sink, st.id
		st.sup.out.post(func() { sink.ReadAlong(id, e) })
	case EventEnded:
		why := "the conversation ended"
		if e.Reason != "" {
			why = clipReason(e.Reason) // the volunteer ended the support
		} else {
			sink, id := st.sup.sink, st.id
			st.sup.out.post(func() { sink.ReadAlong(id, Event{Kind: EventEnded}) })
		}
		st.link = nil
		s.endSeatLocked(st, why)
	}
}

func (h *seatHandler) OnLost(int) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.st == nil || h.st.over || s.closed {
		return
	}
	h.st.link = nil
	s.endSeatLocked(h.st, "the volunteer's centre was lost")
}

// endSupportOfConvLocked ends cv's support request as its conversation
// ends (or leaves this centre).
func (s *Switchboard) endSupportOfConvLocked(cv *conv, why string) {
	if r := cv.support; r != nil && !r.over {
		s.mirrorAnyLocked(cv, Event{Kind: EventEnded}, "")
		s.endSupportLocked(r, why)
	}
}

// seatVolunteerLocked is the console of the supervisor reading along
// under seat, if they have one open here with room for contact: signed in
// with the channel, not in it already, nothing ringing, under capacity.
// Whether they switched the channel on does not matter: they chose this
// one conversation.
func (s *Switchboard) seatVolunteerLocked(seat, contact, channel string) *volunteer {
	for _, sup := range s.supervisors {
		st, ok := sup.seats[seat]
		if !ok || st.over {
			continue
		}
		v := s.volunteers[sup.id]
		if v == nil || v.ring != nil || v.load() >= v.Capacity || !slices.Contains(v.Channels, channel) {
			return nil
		}
		if cs := v.care; cs != nil && (cs.hold == CareBreak || cs.hold == CareShiftOver) {
			// A cool-down they may choose to end; a break or the end of
			// their shift is the centre's limit (care.go).
			return nil
		}
		if _, in := v.active[contact]; in {
			return nil
		}
		return v
	}
	return nil
}

// endSupportOfHandedOverLocked ends the support of a conversation our
// volunteer handed to another (transfer.go): the supervisor supported
// them, not the conversation, and the new volunteer may ask anew.
func (s *Switchboard) endSupportOfHandedOverLocked(cv *conv) {
	if r := cv.support; r != nil && !r.over {
		s.endSupportLocked(r, "the conversation was handed over")
	}
}

// endSeatsOfLocked ends a supervisor's seats and takes back what they were
// about to take (off duty, console closed, replaced).
func (s *Switchboard) endSeatsOfLocked(sup *supervisor, why string) {
	for _, st := range sup.seats {
		s.endSeatLocked(st, why)
	}
}
