package switchboard

// Transfer (issue 16): a volunteer hands a conversation over to another
// volunteer, here or at another centre, warm (both present for a moment)
// or cold, with a private handover note. The contact's owner carries out
// every transfer, because it already decides who answers its contact: the
// visitor's page stays on its socket, hears the new alias, and the KPIs
// count one contact. See DESIGN.md, "Transfer".

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// Transfer bounds and timing.
const (
	// MaxNoteBytes bounds a handover note.
	MaxNoteBytes = 1000
	// DefaultWarmLimit is how long both volunteers of a warm transfer may
	// stay in the conversation before the owner ends the old one's side.
	DefaultWarmLimit = 2 * time.Minute
	// maxTransferCentreBytes bounds a centre id asked for.
	maxTransferCentreBytes = 64
)

// The labels of Stats.Transfers.
const (
	TransferWarm     = "warm"
	TransferCold     = "cold"
	TransferAccepted = "accepted"
	TransferFailed   = "failed"
	// TransferLocal: to a volunteer of the asking volunteer's own centre;
	// TransferCentre: to another centre's.
	TransferLocal  = "local"
	TransferCentre = "centre"
)

// TransferKey is one kind (warm, cold), result (accepted, failed) and
// scope (local, centre) of transfer.
type TransferKey struct{ Kind, Result, Scope string }

// TransferRequest is what a volunteer asks for.
type TransferRequest struct {
	// Centre is the centre whose volunteer should take over; "" is the
	// asking volunteer's own.
	Centre string
	// Language is the language the new volunteer must speak; "" is the
	// contact's.
	Language string
	Warm     bool
	// Note is the private handover note: memory only, to the new
	// volunteer's console only, never logged, never to the visitor.
	Note string
	// ToSupervisor: hand it to the supervisor reading along (support.go),
	// at their centre; they must have a console open there. Seat is that
	// support's id, filled in by Console.Transfer.
	ToSupervisor bool
	Seat         string
}

// CheckTransferRequest checks a request's sizes and encoding; whether the
// centre and language exist is decided when it is carried out.
func CheckTransferRequest(r TransferRequest) error {
	if len(r.Note) > MaxNoteBytes || !utf8.ValidString(r.Note) {
		return fmt.Errorf("transfer: the note must be at most %d bytes of UTF-8: %w", MaxNoteBytes, ErrBadRequest)
	}
	if len(r.Centre) > maxTransferCentreBytes || !utf8.ValidString(r.Centre) {
		return fmt.Errorf("transfer: centre id too long: %w", ErrBadRequest)
	}
	if len(r.Language) > 8 {
		return fmt.Errorf("transfer: language %q: %w", clip(r.Language), ErrBadRequest)
	}
	if len(r.Seat) > 64 {
		return fmt.Errorf("transfer: support id too long: %w", ErrBadRequest)
	}
	return nil
}

// clipNote keeps a note within MaxNoteBytes on a rune boundary (an older
// or broken peer's; ours are checked before they travel).
func clipNote(n string) string {
	if len(n) <= MaxNoteBytes {
		return n
	}
	cut := MaxNoteBytes
	for cut > 0 && !utf8.RuneStart(n[cut]) {
		cut--
	}
	return n[:cut]
}

// clipReason keeps a failure's reason within what a relay carries.
func clipReason(r string) string {
	if len(r) <= 160 {
		return r
	}
	cut := 160
	for cut > 0 && !utf8.RuneStart(r[cut]) {
		cut--
	}
	return r[:cut]
}

// TransferredVisitor is a VisitorSink that can tell the visitor the
// conversation goes on with a new volunteer. A sink without it hears
// Connected(alias) instead.
type TransferredVisitor interface {
	Transferred(alias string)
}

// transfer is a transfer of a contact of ours under way: asked, ringing
// (here or at another centre), and, once accepted warm, the old
// volunteer's conversation that is still joined.
type transfer struct {
	c     *contact
	from  *conv // the asking volunteer's conversation
	req   TransferRequest
	scope string
	// ring rings our volunteer; cancel withdraws an offer to another
	// centre (nil once it was answered).
	ring   *ringing
	cancel context.CancelFunc
	// accepted: the contact's conversation is the new volunteer's; leaving
	// is the old one's while a warm transfer lasts.
	accepted  bool
	leaving   *conv
	warmTimer Timer
}

func (t *transfer) kind() string {
	if t.req.Warm {
		return TransferWarm
	}
	return TransferCold
}

// Transfer asks for the conversation with contactID to be handed to
// another volunteer. What follows comes on the console as events:
// EventTransferAccepted (with the new alias), then, cold at once or warm
// when the volunteer leaves, EventEnded by ByTransferred; or
// EventTransferFailed (with a reason), and the conversation goes on.
func (c *Console) Transfer(contactID string, req TransferRequest) error {
	if err := CheckTransferRequest(req); err != nil {
		return err
	}
	s := c.s
	if req.Language != "" && !slices.Contains(s.cfg.Languages(), req.Language) {
		return fmt.Errorf("transfer: language %q is not served: %w", clip(req.Language), ErrBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cv, ok := c.v.active[contactID]
	if !ok || s.volunteers[c.v.ID] != c.v {
		return fmt.Errorf("transfer %s: %w", clip(contactID), ErrUnknownContact)
	}
	if cv.handedOver {
		return fmt.Errorf("transfer %s: you have handed it over already: %w", clip(contactID), ErrBadRequest)
	}
	req.Seat = ""
	if req.ToSupervisor {
		r := cv.support
		if r == nil || !r.taken || r.over {
			return fmt.Errorf("transfer %s to the supervisor: no supervisor reads along: %w", clip(contactID), ErrBadRequest)
		}
		req.Centre, req.Seat = r.centre, r.id
	}
	if req.Centre == "" {
		req.Centre = s.cfg.Centre
	}
	if ct := cv.visitor; ct != nil {
		return s.startTransferLocked(ct, cv, req, s.cfg.Centre)
	}
	rc := cv.received
	switch {
	case rc == nil:
		return fmt.Errorf("transfer %s: %w", clip(contactID), ErrUnknownContact)
	case rc.call != nil:
		return fmt.Errorf("transfer %s: a phone call is transferred on the phone: %w", clip(contactID), ErrBadRequest)
	case !rc.transfers:
		return fmt.Errorf("transfer %s: the visitor's centre runs a release that cannot transfer: %w", clip(contactID), ErrBadRequest)
	case cv.peer == nil || cv.resume != nil && cv.resume.resumed:
		return fmt.Errorf("transfer %s: the visitor's centre is not reachable now: %w", clip(contactID), ErrBadRequest)
	}
	// The owner decides; it answers on the relay.
	if err := cv.peer.Send(Event{Kind: EventTransfer, Centre: req.Centre, Language: req.Language, Warm: req.Warm, Note: req.Note, Support: req.Seat}); err != nil {
		return fmt.Errorf("transfer %s: %w", clip(contactID), ErrEnded)
	}
	return nil
}

// Leave ends the volunteer's side of a conversation they handed over in
// a warm transfer: it goes on with the new volunteer.
func (c *Console) Leave(contactID string) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	cv, ok := c.v.active[contactID]
	if !ok || s.volunteers[c.v.ID] != c.v {
		return fmt.Errorf("leave %s: %w", clip(contactID), ErrUnknownContact)
	}
	if !cv.handedOver {
		return fmt.Errorf("leave %s: no transfer of it was accepted: %w", clip(contactID), ErrBadRequest)
	}
	s.leaveLocked(cv)
	return nil
}

// leaveLocked: our volunteer leaves a warm transfer.
func (s *Switchboard) leaveLocked(cv *conv) {
	if c := cv.visitor; c != nil {
		if t := c.transfer; t != nil && t.leaving == cv {
			s.dropLeavingLocked(t)
		}
		return
	}
	if cv.peer != nil {
		_ = cv.peer.Send(Event{Kind: EventLeave})
	}
	s.handedOverLocked(cv)
}

// handedOverLocked ends our volunteer's side of another centre's contact
// that was transferred away: no categorisation (the new volunteer
// categorises), and the relay closes.
func (s *Switchboard) handedOverLocked(cv *conv) {
	s.endSupportOfHandedOverLocked(cv)
	v, id := cv.vol, cv.id
	if v.active[id] == cv {
		delete(v.active, id)
		v.idleSince = s.now()
		s.careConversationOverLocked(v, cv.started)
		v.out.post(func() { v.sink.Event(id, Event{Kind: EventEnded, By: ByTransferred}) })
		s.postAvailabilityLocked(v)
	}
	s.finishReceivedLocked(cv.received)
	if cv.peer != nil {
		cv.peer.Close("transferred")
	}
	s.dispatchLocked()
}

// answeringTransferEventLocked handles, at the answering centre, what
// the owner says about a transfer of the conversation; true if e was one.
func (s *Switchboard) answeringTransferEventLocked(cv *conv, e Event) bool {
	v, id := cv.vol, cv.id
	switch {
	case e.Kind == EventTransferAccepted:
		cv.handedOver = e.Warm
		s.endSupportOfHandedOverLocked(cv)
		ev := Event{Kind: EventTransferAccepted, Alias: e.Alias, Warm: e.Warm}
		v.out.post(func() { v.sink.Event(id, ev) })
	case e.Kind == EventTransferFailed:
		cv.handedOver = false
		ev := Event{Kind: EventTransferFailed, Reason: e.Reason}
		v.out.post(func() { v.sink.Event(id, ev) })
	case e.Kind == EventEnded && (e.By == ByTransferred || cv.handedOver):
		s.handedOverLocked(cv)
	case e.Kind == EventTransfer || e.Kind == EventLeave:
		// Only the answering side asks: an owner sending these is broken.
	default:
		return false
	}
	return true
}

// startTransferLocked carries out a transfer of our contact c, asked by
// the volunteer of cv (ours, or at askedAt over the relay). A refusal of
// the request itself is an error; not finding anyone is
// EventTransferFailed later, as for a transfer nobody accepted.
func (s *Switchboard) startTransferLocked(c *contact, cv *conv, req TransferRequest, askedAt string) error {
	switch {
	case s.closed:
		return ErrClosed
	case c.state != StateConnected || c.conv != cv || c.moving != nil:
		return fmt.Errorf("transfer: the conversation is not live: %w", ErrEnded)
	case c.channel != ChannelChat:
		return fmt.Errorf("transfer: only a chat is transferred here: %w", ErrBadRequest)
	case c.transfer != nil:
		return fmt.Errorf("transfer: a transfer of it is already under way: %w", ErrBadRequest)
	}
	if err := CheckTransferRequest(req); err != nil {
		return err
	}
	if req.Language == "" {
		req.Language = c.language
	}
	if !slices.Contains(s.cfg.Languages(), req.Language) {
		return fmt.Errorf("transfer: language %q is not served: %w", clip(req.Language), ErrBadRequest)
	}
	if req.Centre == "" {
		req.Centre = askedAt
	}
	t := &transfer{c: c, from: cv, req: req, scope: TransferCentre}
	if req.Centre == askedAt {
		t.scope = TransferLocal
	}
	c.transfer = t
	if req.Centre == s.cfg.Centre {
		s.ringTransferLocked(t)
		return nil
	}
	if s.cfg.Overflow == nil {
		s.failTransferLocked(t, "this centre does not overflow to others")
		return nil
	}
	ctx, cancel := context.WithCancel(s.stop.Context())
	t.cancel = cancel
	o := OutgoingOffer{Contact: c.id, Channel: c.channel, Language: req.Language, Ring: s.cfg.RingTimeout, Transfer: true, Note: req.Note, Seat: req.Seat}
	centre := req.Centre
	s.spawn(func(context.Context) {
		defer cancel()
		s.runTransferOffer(ctx, t, centre, o)
	})
	return nil
}

// ringTransferLocked rings our longest-idle free volunteer for the
// transfer, never one already in the conversation.
func (s *Switchboard) ringTransferLocked(t *transfer) {
	c := t.c
	var best *volunteer
	if t.req.Seat != "" {
		if best = s.seatVolunteerLocked(t.req.Seat, c.id, c.channel); best == nil || best == t.from.vol {
			s.failTransferLocked(t, "the supervisor has no console open with room for it")
			return
		}
	}
	for _, v := range s.volunteers {
		if t.req.Seat != "" {
			break
		}
		if _, in := v.active[c.id]; in || v == t.from.vol {
			continue
		}
		if v.free(c.channel, t.req.Language) && (best == nil || longerIdle(v, best)) {
			best = v
		}
	}
	if best == nil {
		s.failTransferLocked(t, "no volunteer is free for it here")
		return
	}
	r := &ringing{vol: best, transfer: t}
	t.ring, best.ring = r, r
	r.timer = s.afterFunc(s.cfg.RingTimeout, func() { s.ringTimedOut(r) })
	o := Offer{Contact: c.id, Channel: c.channel, Language: t.req.Language, Until: s.now().Add(s.cfg.RingTimeout),
		Transfer: true, Note: t.req.Note}
	best.out.post(func() { best.sink.Offer(o) })
	s.postAvailabilityLocked(best)
	s.changedLocked()
}

// transferUnrungLocked: our volunteer declined the transfer, did not
// answer in time, or went.
func (s *Switchboard) transferUnrungLocked(r *ringing, reason string) {
	r.timer.Stop()
	v, t := r.vol, r.transfer
	if v.ring == r {
		v.ring = nil
	}
	id := t.c.id
	v.out.post(func() { v.sink.OfferWithdrawn(id, reason) })
	s.postAvailabilityLocked(v)
	if t.ring == r {
		t.ring = nil
		s.failTransferLocked(t, "the volunteer asked did not take it: "+reason)
	}
	s.dispatchLocked()
}

// acceptTransferLocked: our volunteer took the transfer ringing for them.
func (s *Switchboard) acceptTransferLocked(r *ringing) error {
	t, v, c := r.transfer, r.vol, r.transfer.c
	if c.transfer != t || t.ring != r || c.state != StateConnected {
		return fmt.Errorf("accept %s: %w", clip(c.id), ErrOfferGone)
	}
	r.timer.Stop()
	v.ring, t.ring = nil, nil
	cv := &conv{id: c.id, vol: v, visitor: c, started: s.now(), alias: v.Alias}
	v.active[c.id] = cv
	v.out.post(func() { v.sink.Connected(c.id, "") })
	s.postAvailabilityLocked(v)
	s.handOverLocked(t, cv)
	s.dispatchLocked()
	return nil
}

// runTransferOffer offers the transfer to another centre and, if its
// volunteer accepts, hands the conversation over to them.
func (s *Switchboard) runTransferOffer(ctx context.Context, t *transfer, centre string, o OutgoingOffer) {
	// Not counted in OffersSent: those are contacts overflowed, and a
	// transfer is counted in Stats.Transfers (the centre asked counts it
	// in its OffersReceived, like any offer).
	c := t.c
	ans, err := s.cfg.Overflow.Offer(ctx, centre, o)
	s.mu.Lock()
	live := c.transfer == t && t.cancel != nil && c.state == StateConnected && !s.closed
	if err != nil || !live {
		if live {
			t.cancel = nil
			reason := "nobody at " + clip(centre) + " took it"
			if !errors.Is(err, ErrDeclined) {
				reason = clip(centre) + " could not be reached"
			}
			s.log.Debug("transfer offer not taken", "to", centre, "err", err)
			s.failTransferLocked(t, reason)
		}
		s.mu.Unlock()
		if ans != nil {
			ans.Cancel("the transfer was called off")
		}
		return
	}
	// Accepted there. t.cancel stays set while we confirm: the
	// conversation ending meanwhile calls it off (cancelTransferLocked).
	s.mu.Unlock()
	h := &ownerPeerHandler{s: s, c: c}
	peer, err := ans.Confirm(h)
	s.mu.Lock()
	defer s.mu.Unlock()
	live = c.transfer == t && t.cancel != nil && c.state == StateConnected && !s.closed
	switch {
	case err != nil:
		if live {
			t.cancel = nil
			s.failTransferLocked(t, clip(centre)+" could not be reached")
		}
		return
	case !live:
		peer.Close("the transfer was called off")
		return
	case h.lost:
		t.cancel = nil
		s.failTransferLocked(t, clip(centre)+" was lost")
		return
	}
	t.cancel = nil
	cv := &conv{id: c.id, visitor: c, peer: peer, other: centre, alias: ans.Alias()}
	h.cv = cv
	s.handOverLocked(t, cv)
	for _, e := range h.early {
		h.handleLocked(e)
	}
	h.early = nil
	s.dispatchLocked()
}

// handOverLocked makes cv, the new volunteer's, the contact's
// conversation. The old volunteer hears the new alias; cold, their side
// ends now; warm, it stays joined until they leave or WarmLimit.
func (s *Switchboard) handOverLocked(t *transfer, cv *conv) {
	c := t.c
	old := c.conv
	t.accepted = true
	c.conv = cv
	s.stats.Transfers[TransferKey{t.kind(), TransferAccepted, t.scope}]++
	alias := cv.alias
	if rv, ok := c.visitor.(ResumableVisitor); ok {
		// The page's resume secret was for the old volunteer's centre; a
		// transfer offer carries none, so the page cannot resume now and
		// gets the tickets of a conversation answered here.
		c.out.post(func() { rv.AnsweredAt("") })
	}
	if tv, ok := c.visitor.(TransferredVisitor); ok {
		c.out.post(func() { tv.Transferred(alias) })
	} else {
		c.out.post(func() { c.visitor.Connected(alias) })
	}
	s.tellConvLocked(old, Event{Kind: EventTransferAccepted, Alias: alias, Warm: t.req.Warm})
	s.endSupportOfHandedOverLocked(old)
	if !t.req.Warm {
		c.transfer = nil
		s.dropConvLocked(old)
		return
	}
	t.leaving = old
	old.handedOver = true
	t.warmTimer = s.afterFunc(s.cfg.WarmLimit, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && c.transfer == t && t.leaving == old {
			s.dropLeavingLocked(t)
		}
	})
}

// tellConvLocked tells the volunteer of one of our contact's
// conversations e, here or over the relay.
func (s *Switchboard) tellConvLocked(cv *conv, e Event) {
	switch {
	case cv.vol != nil:
		v, id := cv.vol, cv.id
		if v.active[id] == cv {
			v.out.post(func() { v.sink.Event(id, e) })
		}
	case cv.peer != nil:
		_ = cv.peer.Send(e)
	}
}

// dropConvLocked ends the old volunteer's side of our contact after a
// transfer, without ending the contact: they hear ended by
// ByTransferred and do not categorise it.
func (s *Switchboard) dropConvLocked(cv *conv) {
	s.endSupportOfHandedOverLocked(cv)
	cv.handedOver = false
	if v := cv.vol; v != nil && v.active[cv.id] == cv {
		id := cv.id
		delete(v.active, id)
		v.idleSince = s.now()
		s.careConversationOverLocked(v, cv.started)
		v.out.post(func() { v.sink.Event(id, Event{Kind: EventEnded, By: ByTransferred}) })
		s.postAvailabilityLocked(v)
	}
	if p := cv.peer; p != nil {
		_ = p.Send(Event{Kind: EventEnded, By: ByTransferred})
		p.Close("transferred")
		cv.peer = nil // what its reader still delivers is dropped
	}
	s.dispatchLocked()
}

// dropLeavingLocked ends a warm transfer: the old volunteer left, their
// centre was lost, or the warm limit passed.
func (s *Switchboard) dropLeavingLocked(t *transfer) {
	old := t.leaving
	t.leaving = nil
	if t.warmTimer != nil {
		t.warmTimer.Stop()
	}
	if t.c.transfer == t {
		t.c.transfer = nil
	}
	if old != nil {
		s.dropConvLocked(old)
	}
}

// failTransferLocked: nobody took the transfer; the conversation goes on
// with the asking volunteer, who hears why.
func (s *Switchboard) failTransferLocked(t *transfer, reason string) {
	reason = clipReason(reason)
	if t.c.transfer == t {
		t.c.transfer = nil
	}
	s.stats.Transfers[TransferKey{t.kind(), TransferFailed, t.scope}]++
	if t.c.conv == t.from {
		s.tellConvLocked(t.from, Event{Kind: EventTransferFailed, Reason: reason})
	}
}

// cancelTransferLocked calls off c's transfer because the conversation
// ended, was lost or the centre closes. A transfer not yet accepted
// counts as failed; tell says whether the asking volunteer is told.
func (s *Switchboard) cancelTransferLocked(c *contact, reason string, tell bool) {
	t := c.transfer
	if t == nil {
		return
	}
	if t.accepted {
		s.dropLeavingLocked(t)
		return
	}
	c.transfer = nil
	if r := t.ring; r != nil {
		t.ring = nil
		r.timer.Stop()
		if v := r.vol; v.ring == r {
			v.ring = nil
			id := c.id
			v.out.post(func() { v.sink.OfferWithdrawn(id, reason) })
			s.postAvailabilityLocked(v)
		}
	}
	if t.cancel != nil {
		t.cancel()
		t.cancel = nil
	}
	s.stats.Transfers[TransferKey{t.kind(), TransferFailed, t.scope}]++
	if tell && c.conv == t.from {
		s.tellConvLocked(t.from, Event{Kind: EventTransferFailed, Reason: reason})
	}
}

// transferLostLocked handles the loss of one of c's volunteers (their
// console closed, or their centre's relay died) during a transfer; true
// if it dealt with it. The old volunteer lost during a warm transfer:
// it goes on with the new one. The new one lost during it: it goes on
// with the old one, who hears that the transfer failed. The asking
// volunteer lost before anyone accepted: the transfer is called off and
// the loss is handled as without one.
func (s *Switchboard) transferLostLocked(c *contact, cv *conv, undelivered int) bool {
	t := c.transfer
	if t == nil {
		return false
	}
	switch {
	case t.leaving == cv:
		s.dropLeavingLocked(t)
		return true
	case t.leaving != nil && c.conv == cv:
		old := t.leaving
		t.leaving = nil
		t.warmTimer.Stop()
		c.transfer = nil
		c.conv = old
		old.handedOver = false
		if undelivered > 0 {
			s.log.Info("transfer: the new volunteer was lost with messages unacknowledged", "undelivered", undelivered)
		}
		s.tellConvLocked(old, Event{Kind: EventTransferFailed, Reason: "the new volunteer was lost; the conversation stays with you"})
		alias := old.alias
		if tv, ok := c.visitor.(TransferredVisitor); ok {
			c.out.post(func() { tv.Transferred(alias) })
		}
		if old.peer != nil {
			if rv, ok := c.visitor.(ResumableVisitor); ok {
				// Still no resume secret at the old centre: as handed over.
				c.out.post(func() { rv.AnsweredAt("") })
			}
		}
		return true
	case c.conv == cv:
		s.cancelTransferLocked(c, "the conversation was lost", false)
	}
	return false
}

// ownerTransferEventLocked handles, at the owner, what a relay of one of
// our contacts says about a transfer, and everything from the old
// volunteer's relay during a warm transfer; true if it dealt with e.
func (s *Switchboard) ownerTransferEventLocked(c *contact, cv *conv, e Event) bool {
	if t := c.transfer; t != nil && t.leaving == cv && cv.peer != nil {
		switch e.Kind {
		case EventMessage, EventTyping:
			ve := s.aliasedLocked(c, cv, e)
			c.out.post(func() { c.visitor.Event(ve) })
			if e.Kind == EventMessage {
				_ = cv.peer.Send(Event{Kind: EventDelivered, ID: e.ID})
			}
		case EventLeave, EventEnded:
			s.dropLeavingLocked(t)
		}
		// Delivered: the visitor hears the new volunteer's.
		return true
	}
	switch e.Kind {
	case EventTransfer:
		// Only from the relay of the volunteer now in the conversation.
		if c.conv == cv && c.state == StateConnected && cv.peer != nil {
			req := TransferRequest{Centre: e.Centre, Language: e.Language, Warm: e.Warm, Note: e.Note, Seat: e.Support}
			if err := s.startTransferLocked(c, cv, req, cv.other); err != nil {
				_ = cv.peer.Send(Event{Kind: EventTransferFailed, Reason: clipReason(err.Error())})
			}
		}
		return true
	case EventLeave, EventTransferAccepted, EventTransferFailed:
		return true // not the holder's to send, or not ours to hear
	}
	return false
}

// copyToLeavingLocked passes what the visitor says to the old volunteer
// too while a warm transfer lasts (the new one acknowledges it).
func (s *Switchboard) copyToLeavingLocked(cv *conv, e Event) {
	c := cv.visitor
	if c == nil || c.conv != cv || c.transfer == nil || c.transfer.leaving == nil {
		return
	}
	if e.Kind != EventMessage && e.Kind != EventTyping {
		return
	}
	l := c.transfer.leaving
	switch {
	case l.vol != nil:
		v, id := l.vol, l.id
		if v.active[id] == l {
			v.out.post(func() { v.sink.Event(id, e) })
		}
	case l.peer != nil:
		_ = l.peer.Send(e)
	}
}

// aliasedLocked names the sender of a volunteer's message to the visitor
// while two volunteers are in the conversation.
func (s *Switchboard) aliasedLocked(c *contact, cv *conv, e Event) Event {
	if e.Kind == EventMessage && c.transfer != nil && c.transfer.leaving != nil {
		e.Alias = cv.alias
	}
	return e
}
