package switchboard

// A visitor's side of a contact: starting it, what they send, leaving.

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/helpmesh/helpmesh/internal/channels"
)

// VisitorHandle is a visitor's grip on their contact.
type VisitorHandle struct {
	s *Switchboard
	c *contact
}

// ID returns the contact's random id; it links to nothing.
func (h *VisitorHandle) ID() string { return h.c.id }

// StartContact queues a new contact.
func (s *Switchboard) StartContact(channel, language string, visitor VisitorSink) (*VisitorHandle, error) {
	return s.StartContactWith(channel, language, visitor, ContactOptions{})
}

// StartContactAhead queues a new contact ahead of every contact waiting
// that did not come ahead too (urgent ones excepted, urgent.go): a visitor
// whose centre died mid-conversation (api's ticket), who already waited
// and talked once.
func (s *Switchboard) StartContactAhead(channel, language string, visitor VisitorSink) (*VisitorHandle, error) {
	return s.StartContactWith(channel, language, visitor, ContactOptions{Ahead: true})
}

// MoveAhead puts a waiting contact ahead of every contact that did not come
// ahead (urgent ones excepted, urgent.go): a ticket honoured once its
// centre is seen down. It reports whether the contact was still waiting.
func (h *VisitorHandle) MoveAhead() bool {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c := h.c
	if s.closed || !c.waiting() || c.ahead {
		return false
	}
	if c.urgent {
		// Already in the first rank: moving it would put it behind
		// urgent contacts that came later.
		c.ahead = true
		return true
	}
	s.removeFromQueueLocked(c)
	c.ahead = true
	s.enqueueLocked(c)
	s.dispatchLocked()
	return true
}

// StartContactWith queues a new contact with the visitor's options
// (urgent.go): urgent, ahead, or both.
func (s *Switchboard) StartContactWith(channel, language string, visitor VisitorSink, o ContactOptions) (*VisitorHandle, error) {
	if !channels.Known(channel) {
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
		id: newID(), channel: channel, language: language, created: s.now(), state: StateQueued,
		visitor: visitor, out: s.newOutbox(), declined: map[*volunteer]time.Time{}, tried: map[string]uint64{}, lastPos: -1,
		pace: newVisitorPacer(s.cfg.Pace), ahead: o.Ahead, urgent: o.Urgent,
	}
	s.contacts[c.id] = c
	s.enqueueLocked(c)
	s.tallyLocked(c, func(t *Tally) { t.Offered++ })
	s.countUrgentLocked(c)
	c.overflowTimer = s.afterFunc(s.cfg.OverflowAfter(channel), s.Kick)
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
	if h.c.moving != nil {
		return fmt.Errorf("resuming at the volunteer's centre: %w", ErrEnded)
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
	switch now := s.now(); e.Kind {
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
	s.moveLocked(c, StateAbandoned)
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
