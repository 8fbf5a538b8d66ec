package switchboard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Candidate is another centre that may take an overflowed contact.
type Candidate struct {
	Centre string
	// Version of its availability when it was ranked: a centre that declined
	// is tried again once its availability has changed.
	Version uint64
}

// OutgoingOffer asks another centre to take one of our contacts.
type OutgoingOffer struct {
	Contact  string
	Channel  string
	Language string
	Ring     time.Duration
}

// Answer is another centre's yes to an offer: its volunteer accepted and is
// held until we confirm (we won) or cancel (someone else was first).
type Answer interface {
	Alias() string
	// Confirm turns the offer into the conversation's relay.
	Confirm(h PeerHandler) (Peer, error)
	Cancel(reason string)
}

// Overflow carries offers to other centres.
type Overflow interface {
	// Candidates ranks the centres that may take a contact now, best first.
	Candidates(channel, language string) []Candidate
	// Offer blocks until centre answers. An error means no (declined,
	// unreachable, or ctx ended, in which case the offer is withdrawn).
	Offer(ctx context.Context, centre string, o OutgoingOffer) (Answer, error)
}

// PeerHandler receives what arrives from the far end of a relay.
type PeerHandler interface {
	OnEvent(e Event)
	// OnLost says the relay died; undelivered counts our messages the other
	// side never acknowledged.
	OnLost(undelivered int)
}

// Config configures a switchboard.
type Config struct {
	Centre string
	// RingTimeout bounds how long an offer rings on a console.
	RingTimeout time.Duration
	// OverflowAfter is the policy's wait before a contact is offered to
	// other centres, per channel.
	OverflowAfter func(channel string) time.Duration
	// Languages and Topics come from the roster policy.
	Languages func() []string
	Topics    func() []string
	// Overflow may be nil: then contacts never leave this centre.
	Overflow Overflow
	// OnChange is called when availability may have changed, so the node
	// can publish it. It runs under the switchboard's lock: it must only
	// poke (never block, never call back in).
	OnChange func()
	// AnswerBuckets are the upper bounds, in seconds, of the speed-to-answer
	// histogram in Stats (nil: DefaultAnswerBuckets).
	AnswerBuckets []float64
	// Pace bounds how fast visitors and volunteers may send (zero fields:
	// DefaultPace's).
	Pace Pace
	// MaxQueue bounds the contacts waiting per channel (0: DefaultMaxQueue).
	MaxQueue int
	Logger   *slog.Logger
}

// DefaultMaxQueue is the default bound on contacts waiting per channel: far
// more than a centre answers in an hour, so only a flood reaches it.
const DefaultMaxQueue = 200

// DefaultAnswerBuckets are the speed-to-answer histogram's upper bounds in
// seconds; they include the policy's default service level (60 s).
var DefaultAnswerBuckets = []float64{5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600}

// How a contact was answered, in Tally and the KPIs.
const (
	AnsweredByLocal    = "local"
	AnsweredByOverflow = "overflow"
)

// Results of an overflow offer, sent or received (Stats.OffersSent and
// OffersReceived). A received offer is never "failed".
const (
	OfferAccepted  = "accepted"  // the conversation was set up
	OfferDeclined  = "declined"  // the other centre (or our volunteer) said no
	OfferFailed    = "failed"    // unreachable, or the hand-off broke
	OfferWithdrawn = "withdrawn" // the owner took it back before it was set up
)

// Key is one channel and language.
type Key struct{ Channel, Language string }

// Tally counts one channel and language of this centre's own contacts. At
// every snapshot Offered == AnsweredLocal + AnsweredOverflow + Abandoned +
// Waiting + InProgress: a contact is counted as answered when a conversation
// of it ends (by either side, or because this centre shut down), by who
// answered that conversation; a contact requeued after losing its volunteer
// is waiting again and counted once, when it finally ends or is abandoned.
// A contact still waiting when this centre shuts down is abandoned.
type Tally struct {
	Offered          uint64
	AnsweredLocal    uint64
	AnsweredOverflow uint64
	Abandoned        uint64
	Waiting          int
	InProgress       int
}

// Histogram is a cumulative histogram of seconds.
type Histogram struct {
	Count uint64
	Sum   float64
	// Buckets maps each upper bound to the number of observations <= it.
	Buckets map[float64]uint64
}

func (h *Histogram) observe(bounds []float64, v float64) {
	if h.Buckets == nil {
		h.Buckets = make(map[float64]uint64, len(bounds))
	}
	h.Count++
	h.Sum += v
	for _, b := range bounds {
		if v <= b {
			h.Buckets[b]++
		}
	}
}

// OfferKey is the other centre of an overflow offer and its result.
type OfferKey struct{ Centre, Result string }

// VolunteerCount counts the volunteers switched on for one channel.
type VolunteerCount struct {
	Free int // can take an offer now
	Busy int // ringing or at capacity
}

// QueueView is one channel's queue now.
type QueueView struct {
	Length     int
	OldestWait time.Duration
}

// Stats counts contacts for the KPIs; never per person.
type Stats struct {
	Offered            uint64 // contacts that arrived here
	AnsweredLocal      uint64 // answered by our own volunteer
	AnsweredOverflow   uint64 // answered by another centre's volunteer
	Abandoned          uint64 // visitor left before an answer
	Requeued           uint64 // lost mid-conversation and queued again
	OverflowReceived   uint64 // other centres' contacts our volunteers answered
	Categorised        uint64
	Waiting            int // queued or offered now
	InProgress         int // connected now (owned here)
	ReceivedInProgress int // other centres' conversations with our volunteers now
	Topics             map[string]uint64
	AgeGroups          map[string]uint64

	// The KPIs by label (see Tally). Keys are bounded: channels, the
	// policy's languages, and roster centres; never a person or a contact.
	Contacts       map[Key]Tally
	SpeedToAnswer  map[string]Histogram // per channel: arrival to first connect
	OffersSent     map[OfferKey]uint64  // our contacts offered to other centres
	OffersReceived map[OfferKey]uint64  // other centres' contacts offered to us
	Volunteers     map[string]VolunteerCount
	Queues         map[string]QueueView
}

// Switchboard is one centre's desk. All state sits under one mutex; sinks
// are called through per-sink outboxes, never under the lock.
type Switchboard struct {
	cfg Config
	log *slog.Logger
	wg  sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	sealed     atomic.Bool
	contacts   map[string]*contact
	queue      []*contact
	volunteers map[string]*volunteer
	received   map[string]*received
	stats      Stats
	// answerEvery is a moving average of the time between answers, for
	// the visitor's estimated wait.
	answerEvery time.Duration
	lastAnswer  time.Time
	kickTimer   *time.Timer
	// drained is non-nil once Drain was called, and closed when no
	// contact of ours and no conversation for another centre is left.
	drained chan struct{}
}

// New returns a switchboard for one centre.
func New(cfg Config) *Switchboard {
	if cfg.RingTimeout <= 0 {
		cfg.RingTimeout = 20 * time.Second
	}
	if cfg.OverflowAfter == nil {
		cfg.OverflowAfter = func(string) time.Duration { return time.Minute }
	}
	if cfg.Languages == nil {
		cfg.Languages = func() []string { return []string{"nb", "nn", "en", "fr", "de"} }
	}
	if cfg.Topics == nil {
		cfg.Topics = func() []string { return []string{"other"} }
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func() {}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AnswerBuckets == nil {
		cfg.AnswerBuckets = DefaultAnswerBuckets
	}
	cfg.Pace = cfg.Pace.withDefaults()
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	return &Switchboard{
		cfg: cfg, log: cfg.Logger.With("component", "switchboard"),
		contacts: map[string]*contact{}, volunteers: map[string]*volunteer{}, received: map[string]*received{},
		stats: Stats{
			Topics: map[string]uint64{}, AgeGroups: map[string]uint64{},
			Contacts: map[Key]Tally{}, SpeedToAnswer: map[string]Histogram{},
			OffersSent: map[OfferKey]uint64{}, OffersReceived: map[OfferKey]uint64{},
		},
		answerEvery: 30 * time.Second,
	}
}

// contact is a contact this centre owns (it arrived here).
type contact struct {
	id, channel, language string
	created               time.Time
	state                 State
	visitor               VisitorSink
	out                   *outbox
	local                 *ringing     // offer ringing on one of our consoles
	remote                *remoteOffer // offer out to another centre
	connecting            bool         // another centre accepted; we are confirming
	declined              map[*volunteer]time.Time
	tried                 map[string]uint64
	conv                  *conv
	overflowTimer         *time.Timer
	lastPos               int
	lastWait              time.Duration
	answered              bool // connected at least once (speed to answer observed)
	pace                  *pacer
}

func (c *contact) waiting() bool { return c.state == StateQueued || c.state == StateOffered }

// ringing is an offer ringing on a volunteer's console: for a contact of
// ours, or for one another centre offered us.
type ringing struct {
	vol      *volunteer
	contact  *contact  // ours
	received *received // another centre's
	timer    *time.Timer
}

type remoteOffer struct {
	centre string
	cancel context.CancelFunc
}

// received is another centre's contact offered to one of our volunteers.
type received struct {
	id, from, channel, language string
	vol                         *volunteer
	ring                        *ringing
	decided                     chan error
	accepted                    bool
	conv                        *conv
	result                      string // the offer's result, once settled
}

// conv is one conversation in progress, seen from this centre. Exactly two
// of vol, visitor and peer are set.
type conv struct {
	id       string
	vol      *volunteer // our volunteer
	visitor  *contact   // our visitor
	peer     Peer       // the other centre
	other    string     // the other centre's id, if any
	received *received
	// volPace paces our volunteer; inPace guards what another centre
	// relays to our volunteer (see receivedPaceFactor). Made on first use.
	volPace, inPace *pacer
}

// volunteer is a signed-in volunteer's live state, decided only here.
type volunteer struct {
	Volunteer
	sink      ConsoleSink
	out       *outbox
	available map[string]bool
	ring      *ringing
	active    map[string]*conv
	idleSince time.Time
	ended     map[string]time.Time // contacts awaiting categorisation
}

func (v *volunteer) load() int {
	n := len(v.active)
	if v.ring != nil {
		n++
	}
	return n
}

func (v *volunteer) free(channel, language string) bool {
	return v.available[channel] && slices.Contains(v.Languages, language) && v.ring == nil && v.load() < v.Capacity
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ---- visitors ----

// VisitorHandle is a visitor's grip on their contact.
type VisitorHandle struct {
	s *Switchboard
	c *contact
}

// ID returns the contact's random id; it links to nothing.
func (h *VisitorHandle) ID() string { return h.c.id }

// StartContact queues a new contact.
func (s *Switchboard) StartContact(channel, language string, visitor VisitorSink) (*VisitorHandle, error) {
	if channel != ChannelChat && channel != ChannelPhone {
		return nil, fmt.Errorf("start contact: channel %q: %w", clip(channel), ErrBadRequest)
	}
	if !slices.Contains(s.cfg.Languages(), language) {
		return nil, fmt.Errorf("start contact: language %q is not served: %w", clip(language), ErrBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.drained != nil {
		return nil, ErrDraining
	}
	if s.waitingLocked(channel) >= s.cfg.MaxQueue {
		return nil, fmt.Errorf("start contact: %d contacts already wait for %s: %w", s.cfg.MaxQueue, channel, ErrQueueFull)
	}
	c := &contact{
		id: newID(), channel: channel, language: language, created: time.Now(), state: StateQueued,
		visitor: visitor, out: newOutbox(&s.wg, &s.sealed), declined: map[*volunteer]time.Time{}, tried: map[string]uint64{}, lastPos: -1,
		pace: newVisitorPacer(s.cfg.Pace),
	}
	s.contacts[c.id] = c
	s.queue = append(s.queue, c)
	s.stats.Offered++
	s.tallyLocked(c, func(t *Tally) { t.Offered++ })
	c.overflowTimer = time.AfterFunc(s.cfg.OverflowAfter(channel), s.Kick)
	s.dispatchLocked()
	return &VisitorHandle{s: s, c: c}, nil
}

// Send passes a visitor's message to the volunteer. A message faster than
// the Pace is refused with a *SlowDownError; one that uses up the flood
// strikes ends the contact (ErrFlooding) before anything reaches a console
// or a relay.
func (h *VisitorHandle) Send(id, text string) error {
	if err := checkMessage(id, text); err != nil {
		return err
	}
	return h.event(Event{Kind: EventMessage, ID: id, Text: text})
}

// Typing tells the volunteer the visitor is typing.
func (h *VisitorHandle) Typing() error { return h.event(Event{Kind: EventTyping}) }

func (h *VisitorHandle) event(e Event) error {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if h.c.conv == nil || h.c.state != StateConnected {
		// Nothing is passed on before a volunteer answers, so nothing is
		// paced: the page keeps what was refused and sends it on
		// "connected" (then paced, as everything after).
		if h.c.waiting() {
			return fmt.Errorf("not connected to a volunteer yet: %w", ErrBadRequest)
		}
		return ErrEnded
	}
	switch now := time.Now(); e.Kind {
	case EventMessage:
		if err := h.c.pace.message(now); err != nil {
			if errors.Is(err, ErrFlooding) {
				s.cutOffLocked(h.c)
			}
			return err
		}
	case EventTyping:
		if !h.c.pace.typing(now) {
			return nil
		}
	}
	s.fromVisitorLocked(h.c.conv, e)
	return nil
}

// End ends the contact on the visitor's side: a conversation ends, a
// waiting contact is abandoned. It is idempotent.
func (h *VisitorHandle) End() {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c := h.c
	if s.closed {
		return
	}
	switch {
	case c.conv != nil && c.state == StateConnected:
		s.fromVisitorLocked(c.conv, Event{Kind: EventEnded, By: ByVisitor})
	case c.waiting():
		s.abandonLocked(c)
	}
}

func (s *Switchboard) abandonLocked(c *contact) {
	c.state = StateAbandoned
	s.stats.Abandoned++
	s.tallyLocked(c, func(t *Tally) { t.Abandoned++ })
	s.removeFromQueueLocked(c)
	if c.local != nil {
		s.withdrawLocked(c.local, "the visitor left")
	}
	if c.remote != nil {
		c.remote.cancel()
		c.remote = nil
	}
	c.overflowTimer.Stop()
	s.forgetContactLocked(c)
	s.dispatchLocked()
}

// ---- volunteers ----

// Console is a signed-in volunteer's grip on the switchboard.
type Console struct {
	s *Switchboard
	v *volunteer
}

// SignIn opens a console. A second sign-in replaces the first console.
func (s *Switchboard) SignIn(v Volunteer, sink ConsoleSink) (*Console, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if old, ok := s.volunteers[v.ID]; ok {
		s.signOutLocked(old, "signed in elsewhere")
	}
	vol := &volunteer{
		Volunteer: v, sink: sink, out: newOutbox(&s.wg, &s.sealed), available: map[string]bool{},
		active: map[string]*conv{}, idleSince: time.Now(), ended: map[string]time.Time{},
	}
	s.volunteers[v.ID] = vol
	s.postAvailabilityLocked(vol)
	return &Console{s: s, v: vol}, nil
}

// SetAvailable switches the volunteer on or off for a channel.
func (c *Console) SetAvailable(channel string, on bool) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.volunteers[c.v.ID] != c.v {
		return ErrNotSignedIn
	}
	if !slices.Contains(c.v.Channels, channel) {
		return fmt.Errorf("channel %q is not one of yours: %w", clip(channel), ErrBadRequest)
	}
	if c.v.available[channel] != on {
		c.v.available[channel] = on
		if on {
			c.v.idleSince = time.Now()
		}
	}
	s.postAvailabilityLocked(c.v)
	s.dispatchLocked()
	return nil
}

// Accept takes the offer ringing for contact. For another centre's contact
// the console hears Connected once that centre confirms.
func (c *Console) Accept(contactID string) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	r := c.v.ring
	if s.volunteers[c.v.ID] != c.v || r == nil {
		return fmt.Errorf("accept %s: %w", clip(contactID), ErrOfferGone)
	}
	switch {
	case r.contact != nil && r.contact.id == contactID:
		ct := r.contact
		if ct.connecting || !ct.waiting() {
			return fmt.Errorf("accept %s: %w", clip(contactID), ErrOfferGone)
		}
		r.timer.Stop()
		c.v.ring, ct.local = nil, nil
		if ct.remote != nil {
			// First acceptance wins: withdraw the offer at the other centre.
			ct.remote.cancel()
			ct.remote = nil
		}
		s.connectLocked(ct, &conv{id: ct.id, vol: c.v, visitor: ct}, c.v.Alias)
		s.stats.AnsweredLocal++
		s.dispatchLocked()
		return nil
	case r.received != nil && r.received.id == contactID && !r.received.accepted:
		// The slot may hold Close's ErrClosed: then there is no one to tell.
		select {
		case r.received.decided <- nil:
		default:
			return fmt.Errorf("accept %s: %w", clip(contactID), ErrOfferGone)
		}
		r.timer.Stop()
		r.received.accepted = true
		return nil
	}
	return fmt.Errorf("accept %s: %w", clip(contactID), ErrOfferGone)
}

// Decline turns an offer down; the contact keeps its place and goes to the
// next volunteer.
func (c *Console) Decline(contactID string) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	r := c.v.ring
	if r == nil || (r.contact == nil || r.contact.id != contactID) && (r.received == nil || r.received.id != contactID || r.received.accepted) {
		return fmt.Errorf("decline %s: %w", clip(contactID), ErrOfferGone)
	}
	s.unringLocked(r, "declined")
	return nil
}

// Send passes a volunteer's message to the visitor.
func (c *Console) Send(contactID, id, text string) error {
	if err := checkMessage(id, text); err != nil {
		return err
	}
	return c.event(contactID, Event{Kind: EventMessage, ID: id, Text: text})
}

// Typing tells the visitor the volunteer is typing.
func (c *Console) Typing(contactID string) error {
	return c.event(contactID, Event{Kind: EventTyping})
}

func (c *Console) event(contactID string, e Event) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	cv, ok := c.v.active[contactID]
	if !ok || s.volunteers[c.v.ID] != c.v {
		return fmt.Errorf("contact %s: %w", clip(contactID), ErrUnknownContact)
	}
	if cv.volPace == nil {
		cv.volPace = newVolunteerPacer(s.cfg.Pace)
	}
	switch now := time.Now(); e.Kind {
	case EventMessage:
		if err := cv.volPace.message(now); err != nil {
			return err
		}
	case EventTyping:
		if !cv.volPace.typing(now) {
			return nil
		}
	}
	s.fromVolunteerLocked(cv, e)
	return nil
}

// End ends a conversation (if still going) and records its categorisation.
// It also takes the categorisation of a conversation the visitor ended.
func (c *Console) End(contactID string, cat Categorisation) error {
	if err := c.s.checkCategorisation(cat); err != nil {
		return err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if cv, ok := c.v.active[contactID]; ok {
		s.fromVolunteerLocked(cv, Event{Kind: EventEnded, By: ByVolunteer})
	}
	if _, ok := c.v.ended[contactID]; !ok {
		return fmt.Errorf("end %s: %w", clip(contactID), ErrUnknownContact)
	}
	delete(c.v.ended, contactID)
	s.stats.Categorised++
	for _, t := range cat.Topics {
		s.stats.Topics[t]++
	}
	s.stats.AgeGroups[cat.AgeGroup]++
	return nil
}

// SignOut closes the console: offers go to others, and conversations still
// open end for the visitor as a lost volunteer (they are queued again).
func (c *Console) SignOut() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.volunteers[c.v.ID] == c.v {
		s.signOutLocked(c.v, "signed out")
	}
}

func (s *Switchboard) signOutLocked(v *volunteer, reason string) {
	delete(s.volunteers, v.ID)
	if v.ring != nil {
		s.unringLocked(v.ring, reason)
	}
	for _, cv := range v.active {
		s.loseVolunteerLocked(cv)
	}
	s.dispatchLocked()
}

// loseVolunteerLocked handles a volunteer who vanished mid-conversation.
func (s *Switchboard) loseVolunteerLocked(cv *conv) {
	delete(cv.vol.active, cv.id)
	switch {
	case cv.visitor != nil:
		s.requeueLocked(cv.visitor, 0, "")
	case cv.peer != nil:
		cv.peer.Close("the volunteer's console closed")
		s.finishReceivedLocked(cv.received)
	}
}

// ---- dispatch ----

// Kick re-runs dispatch: after a timer, or when other centres' availability
// changed.
func (s *Switchboard) Kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.dispatchLocked()
	}
}

func (s *Switchboard) dispatchLocked() {
	if s.closed {
		return
	}
	now := time.Now()
	for _, c := range s.queue {
		if c.connecting {
			continue
		}
		if c.local == nil {
			if v := s.pickLocked(c, now); v != nil {
				s.ringLocked(c, v)
			}
		}
		if c.remote == nil && s.cfg.Overflow != nil && s.overflowDueLocked(c, now) {
			s.offerRemoteLocked(c)
		}
	}
	s.positionsLocked()
	s.cfg.OnChange()
}

// longerIdle orders volunteers for an offer: those in fewer conversations
// first (someone already talking is not idle), then whoever has waited
// longest since their last contact, then by id so the choice is stable.
func longerIdle(a, b *volunteer) bool {
	if len(a.active) != len(b.active) {
		return len(a.active) < len(b.active)
	}
	if !a.idleSince.Equal(b.idleSince) {
		return a.idleSince.Before(b.idleSince)
	}
	return a.ID < b.ID
}

// declineCooldown: a volunteer who declined a contact is asked again only
// after everyone else, and not before this.
const declineCooldown = 30 * time.Second

// pickLocked chooses the longest-idle free volunteer for c.
func (s *Switchboard) pickLocked(c *contact, now time.Time) *volunteer {
	var best *volunteer
	for _, v := range s.volunteers {
		if !v.free(c.channel, c.language) {
			continue
		}
		if at, ok := c.declined[v]; ok && now.Sub(at) < declineCooldown {
			continue
		}
		if best == nil || longerIdle(v, best) {
			best = v
		}
	}
	return best
}

func (s *Switchboard) ringLocked(c *contact, v *volunteer) {
	r := &ringing{vol: v, contact: c}
	c.local, v.ring = r, r
	c.state = StateOffered
	until := time.Now().Add(s.cfg.RingTimeout)
	r.timer = time.AfterFunc(s.cfg.RingTimeout, func() { s.ringTimedOut(r) })
	o := Offer{Contact: c.id, Channel: c.channel, Language: c.language, Until: until}
	v.out.post(func() { v.sink.Offer(o) })
}

func (s *Switchboard) ringTimedOut(r *ringing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.vol.ring == r {
		s.unringLocked(r, "no answer in time")
	}
}

// unringLocked ends a ringing offer that was not accepted (declined, timed
// out, console gone): the contact moves on to the next volunteer.
func (s *Switchboard) unringLocked(r *ringing, reason string) {
	r.timer.Stop()
	v := r.vol
	if v.ring == r {
		v.ring = nil
	}
	id := ""
	switch {
	case r.contact != nil:
		id = r.contact.id
		r.contact.local = nil
		r.contact.declined[v] = time.Now()
		// If nobody else takes it, this volunteer is asked again once the
		// cooldown is over: something must re-run dispatch then.
		time.AfterFunc(declineCooldown, s.Kick)
		if r.contact.waiting() && r.contact.remote == nil && !r.contact.connecting {
			r.contact.state = StateQueued
		}
	case r.received != nil:
		id = r.received.id
		if !r.received.accepted {
			select {
			case r.received.decided <- fmt.Errorf("%s: %w", reason, ErrOfferGone):
			default:
			}
		}
	}
	v.out.post(func() { v.sink.OfferWithdrawn(id, reason) })
	s.postAvailabilityLocked(v)
	s.dispatchLocked()
}

// withdrawLocked takes back an offer of ours because the contact is gone or
// was answered elsewhere.
func (s *Switchboard) withdrawLocked(r *ringing, reason string) {
	r.timer.Stop()
	v := r.vol
	if v.ring == r {
		v.ring = nil
	}
	if r.contact != nil {
		r.contact.local = nil
	}
	id := r.contact.id
	v.out.post(func() { v.sink.OfferWithdrawn(id, reason) })
	s.postAvailabilityLocked(v)
}

// overflowDueLocked: the contact waited the policy's time, or nobody here
// can ever answer it (no volunteer switched on for its channel and language).
func (s *Switchboard) overflowDueLocked(c *contact, now time.Time) bool {
	if s.drained != nil {
		// A restart is waiting on this contact: any free volunteer will do.
		return true
	}
	if now.Sub(c.created) >= s.cfg.OverflowAfter(c.channel) {
		return true
	}
	for _, v := range s.volunteers {
		if v.available[c.channel] && slices.Contains(v.Languages, c.language) {
			return false
		}
	}
	return true
}

func (s *Switchboard) offerRemoteLocked(c *contact) {
	var pick *Candidate
	for _, cand := range s.cfg.Overflow.Candidates(c.channel, c.language) {
		if cand.Centre == s.cfg.Centre {
			continue
		}
		if v, tried := c.tried[cand.Centre]; tried && v >= cand.Version {
			continue
		}
		pick = &cand
		break
	}
	if pick == nil {
		return // offered again when availability changes (Kick)
	}
	c.tried[pick.Centre] = pick.Version
	ctx, cancel := context.WithCancel(context.Background())
	ro := &remoteOffer{centre: pick.Centre, cancel: cancel}
	c.remote = ro
	if c.state == StateQueued {
		c.state = StateOffered
	}
	req := OutgoingOffer{Contact: c.id, Channel: c.channel, Language: c.language, Ring: s.cfg.RingTimeout}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		s.runRemoteOffer(ctx, c, ro, req)
	}()
}

func (s *Switchboard) runRemoteOffer(ctx context.Context, c *contact, ro *remoteOffer, req OutgoingOffer) {
	ans, err := s.cfg.Overflow.Offer(ctx, ro.centre, req)
	s.mu.Lock()
	if c.remote != ro || err != nil || !c.waiting() || s.closed {
		switch {
		case c.remote != ro || ctx.Err() != nil || err == nil:
			// We took the offer back (answered here, visitor left, shut
			// down), whatever the other centre had said.
			s.offerSentLocked(ro.centre, OfferWithdrawn)
		case errors.Is(err, ErrDeclined):
			s.offerSentLocked(ro.centre, OfferDeclined)
		default:
			s.offerSentLocked(ro.centre, OfferFailed)
		}
		if c.remote == ro {
			c.remote = nil
			if c.waiting() && c.local == nil {
				c.state = StateQueued
			}
			if err != nil {
				s.log.Debug("overflow offer not taken", "to", ro.centre, "err", err)
			}
			s.dispatchLocked()
		}
		s.mu.Unlock()
		if ans != nil {
			ans.Cancel("the contact was answered elsewhere")
		}
		return
	}
	// The other centre's volunteer accepted: the contact is theirs unless
	// confirming fails. No local acceptance can win from here on.
	c.remote = nil
	c.connecting = true
	if c.local != nil {
		s.withdrawLocked(c.local, "answered at another centre")
	}
	s.mu.Unlock()

	h := &ownerPeerHandler{s: s, c: c}
	peer, err := ans.Confirm(h)

	s.mu.Lock()
	defer s.mu.Unlock()
	c.connecting = false
	if err != nil {
		s.offerSentLocked(ro.centre, OfferFailed)
		s.log.Warn("overflow confirm failed", "to", ro.centre, "err", err)
		if c.waiting() {
			c.state = StateQueued
			s.dispatchLocked()
		}
		return
	}
	if !c.waiting() || s.closed {
		s.offerSentLocked(ro.centre, OfferWithdrawn)
		peer.Close("the visitor left")
		return
	}
	if h.lost {
		s.offerSentLocked(ro.centre, OfferFailed)
		// The relay died while we confirmed: the contact never reached the
		// volunteer; it waits on, and that centre is not tried again.
		c.state = StateQueued
		c.tried[ro.centre] = ^uint64(0) >> 1
		s.dispatchLocked()
		return
	}
	cv := &conv{id: c.id, visitor: c, peer: peer, other: ro.centre}
	h.cv = cv
	s.connectLocked(c, cv, ans.Alias())
	s.stats.AnsweredOverflow++
	s.offerSentLocked(ro.centre, OfferAccepted)
	for _, e := range h.early {
		h.handleLocked(e)
	}
	h.early = nil
	s.dispatchLocked()
}

// connectLocked joins a waiting contact of ours to a volunteer.
func (s *Switchboard) connectLocked(c *contact, cv *conv, alias string) {
	s.removeFromQueueLocked(c)
	c.state = StateConnected
	c.conv = cv
	c.overflowTimer.Stop()
	now := time.Now()
	if !s.lastAnswer.IsZero() {
		s.answerEvery = (s.answerEvery*4 + now.Sub(s.lastAnswer)) / 5
	}
	s.lastAnswer = now
	if !c.answered {
		c.answered = true
		h := s.stats.SpeedToAnswer[c.channel]
		h.observe(s.cfg.AnswerBuckets, now.Sub(c.created).Seconds())
		s.stats.SpeedToAnswer[c.channel] = h
	}
	c.out.post(func() { c.visitor.Connected(alias) })
	if cv.vol != nil {
		cv.vol.active[c.id] = cv
		v := cv.vol
		v.out.post(func() { v.sink.Connected(c.id, "") })
		s.postAvailabilityLocked(v)
	}
}

// requeueLocked puts a contact whose volunteer was lost back at the front.
func (s *Switchboard) requeueLocked(c *contact, undelivered int, lostCentre string) {
	if c.state != StateConnected {
		return
	}
	c.conv = nil
	c.state = StateQueued
	if lostCentre != "" {
		c.tried[lostCentre] = ^uint64(0) >> 1 // not again for this contact
	}
	s.queue = append([]*contact{c}, s.queue...)
	c.lastPos = -1
	// Its wait counts from its arrival: overflow is due at the same moment
	// it would have been had it never been answered.
	c.overflowTimer.Reset(max(0, s.cfg.OverflowAfter(c.channel)-time.Since(c.created)))
	s.stats.Requeued++
	c.out.post(func() { c.visitor.Requeued(undelivered) })
	s.dispatchLocked()
}

func (s *Switchboard) removeFromQueueLocked(c *contact) {
	s.queue = slices.DeleteFunc(s.queue, func(q *contact) bool { return q == c })
}

// positionsLocked tells waiting visitors their place and estimated wait
// when either changed.
func (s *Switchboard) positionsLocked() {
	pos := map[string]int{}
	for _, c := range s.queue {
		key := c.channel + "/" + c.language
		pos[key]++
		p := pos[key]
		wait := time.Duration(p) * s.answerEvery
		wait = wait.Round(5 * time.Second)
		if p != c.lastPos || wait != c.lastWait {
			c.lastPos, c.lastWait = p, wait
			vis := c.visitor
			c.out.post(func() { vis.Queued(p, wait) })
		}
	}
}

// ---- conversation traffic ----

// fromVisitorLocked routes what our visitor said.
func (s *Switchboard) fromVisitorLocked(cv *conv, e Event) {
	if cv.peer != nil {
		if err := cv.peer.Send(e); err != nil {
			s.log.Debug("relay send failed", "err", err)
		}
	} else if v := cv.vol; v != nil {
		id := cv.id
		v.out.post(func() { v.sink.Event(id, e) })
		if e.Kind == EventMessage {
			c := cv.visitor
			c.out.post(func() { c.visitor.Event(Event{Kind: EventDelivered, ID: e.ID}) })
		}
	}
	if e.Kind == EventEnded {
		s.endLocked(cv)
	}
}

// fromVolunteerLocked routes what our volunteer said.
func (s *Switchboard) fromVolunteerLocked(cv *conv, e Event) {
	v := cv.vol
	if cv.peer != nil {
		if err := cv.peer.Send(e); err != nil {
			s.log.Debug("relay send failed", "err", err)
		}
	} else if c := cv.visitor; c != nil {
		c.out.post(func() { c.visitor.Event(e) })
		if e.Kind == EventMessage {
			id := cv.id
			v.out.post(func() { v.sink.Event(id, Event{Kind: EventDelivered, ID: e.ID}) })
		}
	}
	if e.Kind == EventEnded {
		s.endLocked(cv)
	}
}

// endLocked closes a conversation on this centre's side.
func (s *Switchboard) endLocked(cv *conv) {
	if v := cv.vol; v != nil {
		if _, ok := v.active[cv.id]; ok {
			delete(v.active, cv.id)
			v.ended[cv.id] = time.Now()
			v.idleSince = time.Now()
			s.postAvailabilityLocked(v)
		}
	}
	if c := cv.visitor; c != nil && c.state == StateConnected {
		c.state = StateEnded
		s.countAnsweredLocked(c, cv)
		s.forgetContactLocked(c)
	}
	if cv.received != nil {
		s.finishReceivedLocked(cv.received)
	}
	if cv.peer != nil {
		cv.peer.Close("ended")
	}
	s.dispatchLocked()
}

// ownerPeerHandler receives the far volunteer's side of one of our contacts.
// The relay starts reading before we have taken the lock back after
// confirming, so what arrives before the conversation is set up is kept
// (events) or remembered (loss) and dealt with once it is.
type ownerPeerHandler struct {
	s           *Switchboard
	c           *contact
	cv          *conv
	early       []Event
	lost        bool
	undelivered int
}

func (h *ownerPeerHandler) OnEvent(e Event) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if h.cv == nil {
		if !h.lost {
			h.early = append(h.early, e)
		}
		return
	}
	h.handleLocked(e)
}

func (h *ownerPeerHandler) handleLocked(e Event) {
	c := h.c
	if c.conv != h.cv || c.state != StateConnected {
		return
	}
	c.out.post(func() { c.visitor.Event(e) })
	if e.Kind == EventMessage {
		_ = h.cv.peer.Send(Event{Kind: EventDelivered, ID: e.ID})
	}
	if e.Kind == EventEnded {
		h.s.endLocked(h.cv)
	}
}

func (h *ownerPeerHandler) OnLost(undelivered int) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if h.cv == nil {
		h.lost, h.undelivered = true, undelivered
		return
	}
	if h.c.conv != h.cv {
		return
	}
	s.requeueLocked(h.c, undelivered, h.cv.other)
}

// ---- contacts offered by other centres ----

// IncomingOffer is another centre asking us to take one of its contacts.
type IncomingOffer struct {
	Contact  string
	From     string
	Channel  string
	Language string
	Ring     time.Duration
}

// Reservation holds one of our volunteers for another centre's offer.
type Reservation struct {
	s *Switchboard
	r *received
}

// Reserve rings a free volunteer for another centre's contact. Our live
// state decides: gossip that said we had someone free was only a hint.
func (s *Switchboard) Reserve(o IncomingOffer) (*Reservation, error) {
	if len(o.Contact) == 0 || len(o.Contact) > 64 {
		return nil, fmt.Errorf("reserve: contact id: %w", ErrBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.offerReceivedLocked(o.From, OfferDeclined)
		return nil, ErrClosed
	}
	if s.drained != nil {
		s.offerReceivedLocked(o.From, OfferDeclined)
		return nil, fmt.Errorf("reserve for %s: %w", clip(o.From), ErrDraining)
	}
	if _, dup := s.received[o.Contact]; dup {
		s.offerReceivedLocked(o.From, OfferDeclined)
		return nil, fmt.Errorf("reserve: contact already offered here: %w", ErrBadRequest)
	}
	var best *volunteer
	for _, v := range s.volunteers {
		if v.free(o.Channel, o.Language) && (best == nil || longerIdle(v, best)) {
			best = v
		}
	}
	if best == nil {
		s.offerReceivedLocked(o.From, OfferDeclined)
		return nil, fmt.Errorf("reserve for %s: %w", clip(o.From), ErrNoVolunteer)
	}
	ring := min(max(o.Ring, time.Second), s.cfg.RingTimeout)
	rc := &received{id: o.Contact, from: o.From, channel: o.Channel, language: o.Language, vol: best, decided: make(chan error, 1)}
	r := &ringing{vol: best, received: rc}
	rc.ring = r
	best.ring = r
	s.received[rc.id] = rc
	r.timer = time.AfterFunc(ring, func() { s.ringTimedOut(r) })
	offer := Offer{Contact: rc.id, Channel: o.Channel, Language: o.Language, From: o.From, Until: time.Now().Add(ring)}
	best.out.post(func() { best.sink.Offer(offer) })
	s.postAvailabilityLocked(best)
	s.cfg.OnChange()
	return &Reservation{s: s, r: rc}, nil
}

// Wait blocks until the volunteer accepts (nil) or not (an error), or ctx
// ends (the offering centre withdrew).
func (res *Reservation) Wait(ctx context.Context) (alias string, err error) {
	select {
	case err := <-res.r.decided:
		if err != nil {
			res.s.mu.Lock()
			res.s.forgetReceivedLocked(res.r)
			res.s.settleReceivedLocked(res.r, OfferDeclined)
			res.s.mu.Unlock()
			return "", err
		}
		return res.r.vol.Alias, nil
	case <-ctx.Done():
		res.Release("withdrawn by the visitor's centre")
		return "", fmt.Errorf("offer withdrawn: %w", ctx.Err())
	}
}

// Connect turns an accepted reservation into a conversation with peer, the
// relay to the visitor's centre.
func (res *Reservation) Connect(peer Peer) PeerHandler {
	s := res.s
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := res.r
	v := rc.vol
	h := &receivedPeerHandler{s: s, rc: rc}
	if v.ring != rc.ring || s.volunteers[v.ID] != v {
		s.forgetReceivedLocked(rc)
		s.settleReceivedLocked(rc, OfferDeclined)
		peer.Close("the volunteer is gone")
		return h
	}
	v.ring = nil
	rc.conv = &conv{id: rc.id, vol: v, peer: peer, other: rc.from, received: rc}
	v.active[rc.id] = rc.conv
	s.stats.OverflowReceived++
	s.settleReceivedLocked(rc, OfferAccepted)
	v.out.post(func() { v.sink.Connected(rc.id, rc.from) })
	s.postAvailabilityLocked(v)
	return h
}

// Release frees the volunteer: the offering centre cancelled or vanished.
func (res *Reservation) Release(reason string) {
	s := res.s
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := res.r
	if rc.conv != nil {
		return
	}
	s.forgetReceivedLocked(rc)
	s.settleReceivedLocked(rc, OfferWithdrawn)
	if rc.vol.ring == rc.ring {
		rc.ring.timer.Stop()
		rc.vol.ring = nil
		v, id := rc.vol, rc.id
		v.out.post(func() { v.sink.OfferWithdrawn(id, reason) })
		s.postAvailabilityLocked(v)
		s.dispatchLocked()
	}
}

func (s *Switchboard) finishReceivedLocked(rc *received) {
	if rc != nil {
		s.forgetReceivedLocked(rc)
	}
}

// receivedPeerHandler receives the visitor's side of another centre's
// contact that our volunteer is answering.
type receivedPeerHandler struct {
	s  *Switchboard
	rc *received
}

func (h *receivedPeerHandler) OnEvent(e Event) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	cv := h.rc.conv
	if cv == nil {
		return
	}
	if _, live := cv.vol.active[cv.id]; !live {
		return
	}
	if cv.inPace == nil {
		cv.inPace = newReceivedPacer(s.cfg.Pace)
	}
	v, id := cv.vol, cv.id
	switch now := time.Now(); e.Kind {
	case EventTyping:
		if !cv.inPace.typing(now) {
			return
		}
	case EventMessage:
		if cv.inPace.message(now) != nil {
			// The visitor's centre is not pacing its visitor (an old
			// release or a bug). End this one conversation rather than
			// let it fill the console our volunteer shares with others.
			s.log.Warn("relayed conversation ended: messages arrive faster than any visitor may send", "centre", cv.other)
			v.out.post(func() { v.sink.Event(id, Event{Kind: EventEnded, By: ByVisitor}) })
			_ = cv.peer.Send(Event{Kind: EventEnded, By: ByVolunteer})
			s.endLocked(cv)
			return
		}
	}
	v.out.post(func() { v.sink.Event(id, e) })
	if e.Kind == EventMessage {
		_ = cv.peer.Send(Event{Kind: EventDelivered, ID: e.ID})
	}
	if e.Kind == EventEnded {
		s.endLocked(cv)
	}
}

func (h *receivedPeerHandler) OnLost(undelivered int) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	cv := h.rc.conv
	if cv == nil {
		return
	}
	v := cv.vol
	if _, live := v.active[cv.id]; !live {
		return
	}
	delete(v.active, cv.id)
	v.idleSince = time.Now()
	s.finishReceivedLocked(h.rc)
	id := cv.id
	v.out.post(func() { v.sink.Lost(id, undelivered) })
	s.postAvailabilityLocked(v)
	s.dispatchLocked()
}

// ---- KPI counting (under the lock) ----

func (s *Switchboard) tallyLocked(c *contact, f func(t *Tally)) {
	k := Key{c.channel, c.language}
	t := s.stats.Contacts[k]
	f(&t)
	s.stats.Contacts[k] = t
}

// countAnsweredLocked counts a contact whose conversation cv ended.
func (s *Switchboard) countAnsweredLocked(c *contact, cv *conv) {
	s.tallyLocked(c, func(t *Tally) {
		if cv != nil && cv.peer != nil {
			t.AnsweredOverflow++
		} else {
			t.AnsweredLocal++
		}
	})
}

func (s *Switchboard) offerSentLocked(to, result string) {
	s.stats.OffersSent[OfferKey{to, result}]++
}

func (s *Switchboard) offerReceivedLocked(from, result string) {
	s.stats.OffersReceived[OfferKey{from, result}]++
}

// settleReceivedLocked counts a received offer's result once.
func (s *Switchboard) settleReceivedLocked(rc *received, result string) {
	if rc.result == "" {
		rc.result = result
		s.offerReceivedLocked(rc.from, result)
	}
}

// ---- views ----

func (s *Switchboard) postAvailabilityLocked(v *volunteer) {
	channels := map[string]bool{}
	for _, ch := range v.Channels {
		channels[ch] = v.available[ch]
	}
	active, capacity := len(v.active), v.Capacity
	v.out.post(func() { v.sink.Availability(channels, active, capacity) })
}

// ChannelView is this centre's live state for one channel.
type ChannelView struct {
	Free        map[string]int
	Busy        map[string]int
	QueueLength int
	OldestWait  time.Duration
}

// Availability is what the centre publishes by gossip.
func (s *Switchboard) Availability() map[string]ChannelView {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]ChannelView{}
	get := func(ch string) ChannelView {
		cv, ok := out[ch]
		if !ok {
			cv = ChannelView{Free: map[string]int{}, Busy: map[string]int{}}
		}
		return cv
	}
	for _, v := range s.volunteers {
		for _, ch := range v.Channels {
			if !v.available[ch] {
				continue
			}
			cv := get(ch)
			for _, l := range v.Languages {
				// A draining centre takes no one new, so it shows no one free.
				if v.free(ch, l) && s.drained == nil {
					cv.Free[l]++
				} else {
					cv.Busy[l]++
				}
			}
			out[ch] = cv
		}
	}
	now := time.Now()
	for _, c := range s.queue {
		cv := get(c.channel)
		cv.QueueLength++
		cv.OldestWait = max(cv.OldestWait, now.Sub(c.created))
		out[c.channel] = cv
	}
	return out
}

// Stats returns the counters.
func (s *Switchboard) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Topics = maps(s.stats.Topics)
	st.AgeGroups = maps(s.stats.AgeGroups)
	st.Contacts = make(map[Key]Tally, len(s.stats.Contacts))
	for k, t := range s.stats.Contacts {
		st.Contacts[k] = t
	}
	st.SpeedToAnswer = make(map[string]Histogram, len(s.stats.SpeedToAnswer))
	for ch, h := range s.stats.SpeedToAnswer {
		b := make(map[float64]uint64, len(s.cfg.AnswerBuckets))
		for _, le := range s.cfg.AnswerBuckets {
			b[le] = h.Buckets[le]
		}
		h.Buckets = b
		st.SpeedToAnswer[ch] = h
	}
	st.OffersSent = make(map[OfferKey]uint64, len(s.stats.OffersSent))
	for k, n := range s.stats.OffersSent {
		st.OffersSent[k] = n
	}
	st.OffersReceived = make(map[OfferKey]uint64, len(s.stats.OffersReceived))
	for k, n := range s.stats.OffersReceived {
		st.OffersReceived[k] = n
	}
	st.Waiting = len(s.queue)
	st.Queues = map[string]QueueView{}
	now := time.Now()
	for _, c := range s.queue {
		s.tallyView(st.Contacts, c, func(t *Tally) { t.Waiting++ })
		q := st.Queues[c.channel]
		q.Length++
		q.OldestWait = max(q.OldestWait, now.Sub(c.created))
		st.Queues[c.channel] = q
	}
	for _, c := range s.contacts {
		if c.state == StateConnected {
			st.InProgress++
			s.tallyView(st.Contacts, c, func(t *Tally) { t.InProgress++ })
		}
	}
	st.Volunteers = map[string]VolunteerCount{}
	for _, v := range s.volunteers {
		for _, ch := range v.Channels {
			if !v.available[ch] {
				continue
			}
			vc := st.Volunteers[ch]
			if v.ring == nil && v.load() < v.Capacity {
				vc.Free++
			} else {
				vc.Busy++
			}
			st.Volunteers[ch] = vc
		}
	}
	for _, rc := range s.received {
		if rc.conv != nil {
			st.ReceivedInProgress++
		}
	}
	return st
}

func (s *Switchboard) tallyView(m map[Key]Tally, c *contact, f func(t *Tally)) {
	k := Key{c.channel, c.language}
	t := m[k]
	f(&t)
	m[k] = t
}

func maps(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Close ends every offer and conversation and waits for the switchboard's
// goroutines.
func (s *Switchboard) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, c := range s.contacts {
		c.overflowTimer.Stop()
		if c.remote != nil {
			c.remote.cancel()
		}
		if c.local != nil {
			c.local.timer.Stop()
		}
		if c.conv != nil && c.conv.peer != nil {
			c.conv.peer.Close("centre shutting down")
		}
		vis := c.visitor
		c.out.post(func() { vis.Closed("the centre is shutting down") })
		// The KPIs: a conversation cut short happened (answered); a
		// contact still waiting was abandoned.
		switch {
		case c.state == StateConnected:
			c.state = StateEnded
			s.countAnsweredLocked(c, c.conv)
		case c.waiting():
			c.state = StateAbandoned
			s.tallyLocked(c, func(t *Tally) { t.Abandoned++ })
		}
		delete(s.contacts, c.id)
	}
	s.queue = nil
	for _, rc := range s.received {
		if rc.conv != nil {
			rc.conv.peer.Close("centre shutting down")
		}
		select {
		case rc.decided <- ErrClosed:
		default:
		}
	}
	// Everything is counted: a drain still waiting is over.
	clear(s.contacts)
	clear(s.received)
	s.checkDrainedLocked()
	s.sealed.Store(true)
	s.mu.Unlock()
	s.wg.Wait()
}

func checkMessage(id, text string) error {
	if len(id) == 0 || len(id) > MaxMessageIDBytes {
		return fmt.Errorf("message id must be 1-%d bytes: %w", MaxMessageIDBytes, ErrBadMessage)
	}
	if len(text) == 0 || len(text) > MaxTextBytes || !utf8.ValidString(text) {
		return fmt.Errorf("message must be 1-%d bytes of UTF-8: %w", MaxTextBytes, ErrBadMessage)
	}
	return nil
}

func (s *Switchboard) checkCategorisation(cat Categorisation) error {
	if !slices.Contains(AgeGroups, cat.AgeGroup) {
		return fmt.Errorf("age group %q (want one of %v): %w", clip(cat.AgeGroup), AgeGroups, ErrBadRequest)
	}
	if len(cat.Topics) == 0 || len(cat.Topics) > 8 {
		return fmt.Errorf("1-8 topics needed: %w", ErrBadRequest)
	}
	topics := s.cfg.Topics()
	for _, t := range cat.Topics {
		if !slices.Contains(topics, t) {
			return fmt.Errorf("topic %q is not in the policy: %w", clip(t), ErrBadRequest)
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
