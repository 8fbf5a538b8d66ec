package switchboard

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// Pace bounds how fast each end of one conversation may send. It is checked
// at the visitor's own centre before anything is queued for a console or a
// relay, so that one visitor's flood can never fill a volunteer's console
// (which serves other visitors too) or the relay to another centre.
type Pace struct {
	// VisitorEvery and VisitorBurst: a visitor may send VisitorBurst
	// messages at once, then one every VisitorEvery.
	VisitorEvery time.Duration
	VisitorBurst int
	// FloodStrikes is how many refused (slow_down) messages a visitor may
	// send, one forgiven every StrikeEvery, before the contact is cut off
	// as a flood. A person who types fast hits slow_down once or twice;
	// only a script runs through the strikes.
	FloodStrikes int
	StrikeEvery  time.Duration
	// VolunteerEvery and VolunteerBurst pace a volunteer, per
	// conversation. A volunteer is never cut off: they only hear slow_down.
	VolunteerEvery time.Duration
	VolunteerBurst int
	// TypingEvery: at most one typing event per conversation end is passed
	// on in this interval; the rest are dropped (typing carries no content,
	// only "still typing").
	TypingEvery time.Duration
}

// DefaultPace is generous for a person in distress who types in bursts,
// and tight for a script.
var DefaultPace = Pace{
	VisitorEvery: 2 * time.Second, VisitorBurst: 10,
	FloodStrikes: 20, StrikeEvery: 10 * time.Second,
	VolunteerEvery: 500 * time.Millisecond, VolunteerBurst: 20,
	TypingEvery: time.Second,
}

// receivedPaceFactor: a conversation another centre relays to us may run
// this many times the visitor pace before we end it. The visitor's centre
// paces its visitor; this only guards against a peer that does not (an old
// release, a bug), so it must never trip on a visitor who kept the pace.
const receivedPaceFactor = 3

func (p Pace) withDefaults() Pace {
	d := DefaultPace
	return Pace{
		VisitorEvery: positive(p.VisitorEvery, d.VisitorEvery), VisitorBurst: positive(p.VisitorBurst, d.VisitorBurst),
		FloodStrikes: positive(p.FloodStrikes, d.FloodStrikes), StrikeEvery: positive(p.StrikeEvery, d.StrikeEvery),
		VolunteerEvery: positive(p.VolunteerEvery, d.VolunteerEvery), VolunteerBurst: positive(p.VolunteerBurst, d.VolunteerBurst),
		TypingEvery: positive(p.TypingEvery, d.TypingEvery),
	}
}

// positive is v, or def when v is not above zero.
func positive[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// SlowDownError is a message refused for coming too fast. It wraps
// ErrSlowDown, or ErrFlooding when the visitor is cut off.
type SlowDownError struct {
	// RetryAfter is when the message would be accepted.
	RetryAfter time.Duration
	err        error
}

func (e *SlowDownError) Error() string {
	if errors.Is(e.err, ErrFlooding) {
		return "too many messages too fast: the chat is closed"
	}
	return fmt.Sprintf("too many messages too fast: send it again in %.0f s", max(1, e.RetryAfter.Seconds()))
}

func (e *SlowDownError) Unwrap() error { return e.err }

// pacer is one end of one conversation's pace. Its methods run under the
// switchboard's lock.
type pacer struct {
	messages   *rate.Limiter
	strikes    *rate.Limiter // nil: never cut off
	typingGap  time.Duration
	lastTyping time.Time
}

func newVisitorPacer(p Pace) *pacer {
	return &pacer{
		messages:  rate.NewLimiter(rate.Every(p.VisitorEvery), p.VisitorBurst),
		strikes:   rate.NewLimiter(rate.Every(p.StrikeEvery), p.FloodStrikes),
		typingGap: p.TypingEvery,
	}
}

func newVolunteerPacer(p Pace) *pacer {
	return &pacer{
		messages:  rate.NewLimiter(rate.Every(p.VolunteerEvery), p.VolunteerBurst),
		typingGap: p.TypingEvery,
	}
}

// newReceivedPacer guards a relayed conversation; see receivedPaceFactor.
func newReceivedPacer(p Pace) *pacer {
	return &pacer{
		messages:  rate.NewLimiter(rate.Every(p.VisitorEvery)*receivedPaceFactor, p.VisitorBurst*receivedPaceFactor),
		typingGap: p.TypingEvery / receivedPaceFactor,
	}
}

// message takes one message's token. It returns nil, or a *SlowDownError
// wrapping ErrSlowDown or (strikes used up) ErrFlooding.
func (p *pacer) message(now time.Time) error {
	if p.messages.AllowN(now, 1) {
		return nil
	}
	if p.strikes != nil && !p.strikes.AllowN(now, 1) {
		return &SlowDownError{err: ErrFlooding}
	}
	wait := time.Duration((1 - p.messages.TokensAt(now)) / float64(p.messages.Limit()) * float64(time.Second))
	return &SlowDownError{RetryAfter: max(wait, 100*time.Millisecond), err: ErrSlowDown}
}

// typing reports whether a typing event should be passed on now.
func (p *pacer) typing(now time.Time) bool {
	if !p.lastTyping.IsZero() && now.Sub(p.lastTyping) < p.typingGap {
		return false
	}
	p.lastTyping = now
	return true
}

// cutOffLocked ends a flooding visitor's conversation as if they had left
// (the volunteer hears "ended by visitor"). Only a connected visitor is
// paced, so only a conversation is ever cut off. The visitor's socket is the
// caller's to close.
func (s *Switchboard) cutOffLocked(c *contact) {
	if c.conv != nil && c.state == StateConnected {
		s.fromVisitorLocked(c.conv, Event{Kind: EventEnded, By: ByVisitor})
	}
}

// waitingLocked counts the contacts waiting for channel.
func (s *Switchboard) waitingLocked(channel string) int {
	n := 0
	for _, c := range s.queue {
		if c.channel == channel {
			n++
		}
	}
	return n
}
