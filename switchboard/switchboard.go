package switchboard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/helpmesh/helpmesh/internal/stopper"
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
	// Resume is the ResumeHash of the visitor's page's secret, "" when
	// the page cannot resume (resume.go).
	Resume string
	// Transfer: the contact is in conversation and one of its volunteers
	// hands it over (transfer.go); Note is their handover note.
	Transfer bool
	Note     string
	// Seat: the transfer is to the supervisor of this support id.
	Seat string
	// Urgent: the contact is urgent (urgent.go); the other centre marks
	// its volunteer's offer.
	Urgent bool
}

// Answer is another centre's yes to an offer: its volunteer accepted and is
// held until we confirm (we won) or cancel (someone else was first).
type Answer interface {
	Alias() string
	// Token is the one-time token of a phone call held for us ("" for a
	// chat): our PBX sends the call to the other centre with it.
	Token() string
	// Resumable says the other centre took the page's resume hash: only
	// then is the page told it may resume there.
	Resumable() bool
	// Confirm turns the offer into the conversation's relay.
	Confirm(h PeerHandler) (Peer, error)
	Cancel(reason string)
}

// Overflow carries offers to other centres.
type Overflow interface {
	// Candidates ranks the centres that may take a contact now, best first.
	Candidates(channel, language string) []Candidate
	// OnDuty counts, from gossip, the volunteers switched on for channel
	// and language at the other centres that take overflow now: free, and
	// busy. Like Candidates it is a hint; it feeds the visitors' wait
	// estimate (wait.go), never a decision.
	OnDuty(channel, language string) (free, busy int)
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
	// WaitLocallyWhenBusy is the policy's wait_locally_when_busy: a
	// contact waits the whole OverflowAfter for a volunteer here even
	// when waiting cannot help it, every volunteer here for its channel
	// and language being in conversations or taken by the contacts ahead.
	// nil or false: it is offered to other centres at once then (busy.go).
	WaitLocallyWhenBusy func() bool
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
	// CallTokens issues the one-time tokens of reserved phone calls (the
	// SIP ingress's store); nil: this centre takes no calls.
	CallTokens CallTokens
	// CallLease is how long a reserved phone volunteer waits for the call
	// to arrive (0: DefaultCallLease).
	CallLease time.Duration
	// PhoneDomain turns an extension a volunteer gives (digits only) into
	// sip:EXT@PhoneDomain, the centre's PBX; empty: only SIP URIs.
	PhoneDomain string
	// BrowserPhones: the node is the centre's phone, and a volunteer may
	// answer calls in the console (phone BrowserPhone; trunk.go).
	BrowserPhones bool
	// ResumeGrace is how long a received chat whose visitor's centre was
	// lost is held for the page to resume here (0: DefaultResumeGrace).
	ResumeGrace time.Duration
	// MoveWait: see DefaultMoveWait (0: the default).
	MoveWait time.Duration
	// Supervision carries support requests to other centres' supervisors
	// (nil: only ours); SupportRing is how long one rings at a centre (0:
	// DefaultSupportRing). ReadAlongNotice says whether the visitor is told
	// that a supervisor reads along (nil: told).
	Supervision     Supervision
	SupportRing     time.Duration
	ReadAlongNotice func() bool
	// WarmLimit bounds how long both volunteers of a warm transfer stay
	// in the conversation (0: DefaultWarmLimit; transfer.go).
	WarmLimit time.Duration
	// Care is the care for volunteers this centre keeps (care.go); nil:
	// none.
	Care   func() CarePolicy
	Logger *slog.Logger
	// Clock: nil is the wall clock (clock.go).
	Clock Clock
}

// DefaultCallLease: a PBX follows a 302 in well under a second; the rest is
// room for a slow PBX, short enough that a call that never comes does not
// keep a volunteer from the next one for long.
const DefaultCallLease = 20 * time.Second

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
// Returned + Waiting + InProgress: a contact is counted as answered when a conversation
// of it ends (by either side, or because this centre shut down), by who
// answered that conversation; a contact requeued after losing its volunteer
// is waiting again and counted once, when it finally ends or is abandoned.
// A contact still waiting when this centre shuts down is abandoned.
type Tally struct {
	Offered          uint64
	AnsweredLocal    uint64
	AnsweredOverflow uint64
	Abandoned        uint64
	// Returned counts phone calls handed back to the PBX's own queue
	// (StateReturned); always 0 for chat.
	Returned   uint64
	Waiting    int
	InProgress int
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

// OfferKey is the other centre of an overflow offer, its result and the
// contact's channel.
type OfferKey struct{ Centre, Result, Channel string }

// VolunteerCount counts the volunteers switched on for one channel.
type VolunteerCount struct {
	Free int // can take an offer now
	Busy int // ringing, at capacity, or resting (care.go)
}

// QueueView is one channel's queue now.
type QueueView struct {
	Length     int
	OldestWait time.Duration
}

// Stats counts contacts for the KPIs; never per person.
type Stats struct {
	ReceivedInProgress int // other centres' conversations with our volunteers now
	// What volunteers recorded at the end of contacts: each categorisation
	// counts once per topic and once in its age group.
	Topics    map[string]uint64
	AgeGroups map[string]uint64

	// The KPIs by label. Contacts is their only source (Total sums it):
	// nothing else counts a contact's arrival, answer or abandonment. Keys
	// are bounded: channels, the policy's languages, and roster centres;
	// never a person or a contact.
	Contacts      map[Key]Tally
	Transitions   map[Transition]uint64 // every change of a contact's state (contact.go)
	SpeedToAnswer map[string]Histogram  // per channel: arrival to first connect
	// Urgent contacts apart (urgent.go), per channel: how many arrived,
	// and their speed to answer (they are in SpeedToAnswer too).
	UrgentContacts      map[string]uint64
	UrgentSpeedToAnswer map[string]Histogram
	OffersSent          map[OfferKey]uint64 // our contacts offered to other centres
	OffersReceived      map[OfferKey]uint64 // other centres' contacts offered to us
	Volunteers          map[string]VolunteerCount
	Queues              map[string]QueueView
	// Support requests our volunteers made (support.go): asked, by reason;
	// how each ended, by reason; and the time from asking to a supervisor
	// taking it. Never per person.
	SupportAsked    map[string]uint64
	SupportRequests map[SupportKey]uint64
	TimeToSupport   Histogram
	// Transfers counts the transfers this centre carried out as a
	// contact's owner (transfer.go), by kind, result and scope.
	Transfers map[TransferKey]uint64
	// Care counts how often a volunteer entered each of CareReasons, and
	// Resting how many signed-in volunteers get no offer now for each
	// (care.go). Never per person.
	Care    map[string]uint64
	Resting map[string]int
}

// Switchboard is one centre's desk. All state sits under one mutex; sinks
// are called through per-sink outboxes, never under the lock.
type Switchboard struct {
	cfg   Config
	clock Clock
	log   *slog.Logger
	// lastPublished is what OnChange was last called for (changedLocked).
	lastPublished published
	// stop owns the outboxes' and the outgoing offers' goroutines; Close
	// waits for them. Outboxes ignore its context: they end once they have
	// delivered everything posted before Close sealed them.
	stop *stopper.Stopper

	mu         sync.Mutex
	closed     bool
	sealed     atomic.Bool
	contacts   map[string]*contact
	queue      []*contact
	volunteers map[string]*volunteer
	received   map[string]*received
	// resumables are the received chats a page may resume, by ResumeHash.
	resumables map[string]*received
	stats      Stats
	// answers are when contacts of ours were connected, per channel and
	// language, within AnswerWindow: the answer rate of the visitors' wait
	// estimate (wait.go). started is when the desk began, for a window
	// shorter than AnswerWindow.
	answers   map[Key][]time.Time
	started   time.Time
	waitTimer Timer // the next re-estimate while contacts wait
	kickTimer Timer
	// drained is non-nil once Drain was called, and closed when no
	// contact of ours and no conversation for another centre is left.
	drained chan struct{}
	// supervisors are those on duty, by roster id (supervisors.go);
	// watchers are poked when the desk may have changed.
	supervisors map[string]*supervisor
	watchers    map[chan struct{}]struct{}
	// alerts are the support requests ringing on our supervisors' consoles
	// (ours and other centres'), by support id (support.go).
	alerts map[string]*alert
	// cares are the volunteers' care states by roster id, kept across
	// sign-ins (care.go).
	cares map[string]*careState
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
	if cfg.CallLease <= 0 {
		cfg.CallLease = DefaultCallLease
	}
	if cfg.ResumeGrace <= 0 {
		cfg.ResumeGrace = DefaultResumeGrace
	}
	if cfg.MoveWait <= 0 {
		cfg.MoveWait = DefaultMoveWait
	}
	if cfg.SupportRing <= 0 {
		cfg.SupportRing = DefaultSupportRing
	}
	if cfg.WarmLimit <= 0 {
		cfg.WarmLimit = DefaultWarmLimit
	}
	if cfg.Clock == nil {
		cfg.Clock = WallClock{}
	}
	return &Switchboard{
		cfg: cfg, clock: cfg.Clock, log: cfg.Logger.With("component", "switchboard"), stop: stopper.New(),
		contacts: map[string]*contact{}, volunteers: map[string]*volunteer{}, received: map[string]*received{},
		resumables: map[string]*received{}, alerts: map[string]*alert{}, cares: map[string]*careState{},
		stats: Stats{
			Topics: map[string]uint64{}, AgeGroups: map[string]uint64{},
			Contacts: map[Key]Tally{}, Transitions: map[Transition]uint64{}, SpeedToAnswer: map[string]Histogram{},
			UrgentContacts: map[string]uint64{}, UrgentSpeedToAnswer: map[string]Histogram{},
			OffersSent: map[OfferKey]uint64{}, OffersReceived: map[OfferKey]uint64{},
			SupportAsked: map[string]uint64{}, SupportRequests: map[SupportKey]uint64{},
			Transfers: map[TransferKey]uint64{}, Care: map[string]uint64{},
		},
		answers: map[Key][]time.Time{}, started: cfg.Clock.Now(),
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
	overflowTimer         Timer
	// What the visitor was last told of their place and wait, and when
	// (wait.go); resendTimer tells them a change that came too soon after.
	lastPos     int
	lastWait    Estimate
	toldAt      time.Time
	resendTimer Timer
	answered    bool // connected at least once (speed to answer observed)
	// A phone call's contact (calls.go): callAt is the other centre whose
	// volunteer was reserved ("" for ours), call our own reservation.
	callAt string
	call   *received
	// trunk: a call the node holds itself, until it is placed elsewhere
	// or closed (trunk.go).
	trunk bool
	pace  *pacer
	// moving runs while the page was told to resume at the answering
	// centre (resume.go).
	moving            Timer
	movingUndelivered int
	// ahead: started ahead of the queue (StartContactAhead), or requeued
	// after losing its volunteer.
	ahead bool
	// urgent: the visitor or caller said they need someone right now
	// (urgent.go): queued before every contact that is not, offered to
	// other centres as soon as nobody here rings for it, marked on offers.
	urgent bool
	// movedBack: an urgent contact was queued ahead of this one since the
	// visitor was last told their place (urgent.go).
	movedBack string
	// transfer is the transfer under way, if any (transfer.go).
	transfer *transfer
}

func (c *contact) waiting() bool { return c.state == StateQueued || c.state == StateOffered }

// ringing is an offer ringing on a volunteer's console: for a contact of
// ours, or for one another centre offered us.
type ringing struct {
	vol      *volunteer
	contact  *contact  // ours
	received *received // another centre's
	transfer *transfer // a transfer of a contact of ours (transfer.go)
	timer    Timer
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
	// A phone call held for a call (calls.go).
	call *heldCall
	// resumeHash is the owner's ResumeHash for the visitor's page, if any.
	resumeHash string
	// key is its key in Switchboard.received: the contact id, but unique
	// for a transfer offer, which may come for a contact we already
	// answer (transfer.go). transfers: the owner can carry out a transfer.
	key       string
	transfers bool
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
	// resume: a received chat the visitor's page may resume here.
	resume *resumable
	// resumable: our contact's page may resume at the other centre.
	resumable bool
	// started is when our volunteer took it (the supervisors' desk view).
	started time.Time
	// support is our volunteer's support request in it (support.go).
	support *supportRequest
	// alias is the answering volunteer's; handedOver: our volunteer
	// handed it over in a warm transfer and is only still present
	// (transfer.go).
	alias      string
	handedOver bool
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
	phone     string               // where calls ring: a SIP URI (Console.SetPhone)
	signedIn  time.Time            // when this console opened
	care      *careState           // care.go
}

func (v *volunteer) load() int {
	n := len(v.active)
	if v.ring != nil {
		n++
	}
	return n
}

func (v *volunteer) free(channel, language string) bool {
	return v.available[channel] && slices.Contains(v.Languages, language) && v.ring == nil && v.load() < v.Capacity &&
		(channel != ChannelPhone || !v.inCall()) && !v.resting()
}

// freeForCalls: free for a phone call from the PBX, which needs a phone to
// ring.
func (v *volunteer) freeForCalls(language string) bool {
	return v.phone != "" && v.free(ChannelPhone, language)
}

// inCall: one phone call at a time, whatever the capacity.
func (v *volunteer) inCall() bool {
	for _, cv := range v.active {
		if cv.received != nil && cv.received.call != nil {
			return true
		}
	}
	return false
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
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
	if s.waitTimer != nil {
		s.waitTimer.Stop()
	}
	for _, cs := range s.cares {
		if cs.timer != nil {
			cs.timer.Stop()
		}
	}
	for _, c := range s.contacts {
		if c.overflowTimer != nil {
			c.overflowTimer.Stop()
		}
		if c.resendTimer != nil {
			c.resendTimer.Stop()
		}
		if c.moving != nil {
			c.moving.Stop()
		}
		if c.remote != nil {
			c.remote.cancel()
		}
		if c.local != nil {
			c.local.timer.Stop()
		}
		s.cancelTransferLocked(c, "the centre is shutting down", false)
		if c.conv != nil && c.conv.peer != nil {
			c.conv.peer.Close("centre shutting down")
		}
		vis := c.visitor
		c.out.post(func() { vis.Closed("the centre is shutting down") })
		// The KPIs: a conversation cut short happened (answered); a
		// contact still waiting was abandoned.
		switch {
		case c.state == StateConnected:
			s.moveLocked(c, StateEnded)
		case c.channel == ChannelPhone && c.state == StateOffered:
			// The PBX has the call and will queue it if nobody picks up:
			// it is not abandoned, and we will not hear how it ends.
			s.moveLocked(c, StateReturned)
		case c.waiting():
			s.moveLocked(c, StateAbandoned)
		}
		delete(s.contacts, c.id)
	}
	s.queue = nil
	for _, rc := range s.received {
		if rc.call != nil {
			s.callOverLocked(rc, ByUnanswered)
		} else if rc.conv != nil {
			if rc.conv.peer != nil { // nil while held for a resume
				rc.conv.peer.Close("centre shutting down")
			}
			s.forgetResumableLocked(rc)
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
	s.stop.Stop()
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
