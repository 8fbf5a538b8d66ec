package switchboard

// Calls that reach the centre's own node from its trunk (issue 13): a
// centre without a PBX, whose node is its phone and whose volunteers
// answer in the browser. The node holds the caller (who hears ringing)
// while the desk rings our own free phone volunteers one after another
// within the policy's overflow time, then redirects the call to another
// centre's free phone volunteer (a 302, as a PBX would), and if nobody is
// free anywhere the node plays the busy prompt. One contact lives through
// all of it, so the KPIs count one call once: answered here, answered by
// overflow, abandoned (the caller hung up first) or returned (nobody took
// it: the prompt).

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// BrowserPhone is the phone value of a volunteer who answers calls in the
// console: their held calls ring at "browser:" + their ID, which the
// node's own SIP side answers.
const BrowserPhone = "browser"

// BrowserPhonePrefix starts the Phone of a held call that rings in a
// volunteer's browser.
const BrowserPhonePrefix = "browser:"

// TrunkCall is one call the node itself holds for its caller.
type TrunkCall struct {
	s       *Switchboard
	c       *contact
	arrived time.Time
	rung    map[string]bool // volunteers already rung for this call
}

// OpenCall opens the contact of a call that reached the node from the
// centre's trunk. It is offered at once (the caller hears ringing); the
// caller of OpenCall must end it with Close unless Overflow placed it.
func (s *Switchboard) OpenCall(language string) (*TrunkCall, error) {
	return s.OpenCallWith(language, ContactOptions{})
}

// OpenCallWith is OpenCall with the caller's options: an urgent call (the
// PBX's menu choice, passed in the INVITE) is marked on every volunteer's
// ring and counted apart (urgent.go). Ahead means nothing for a call.
func (s *Switchboard) OpenCallWith(language string, o ContactOptions) (*TrunkCall, error) {
	if !slices.Contains(s.cfg.Languages(), language) {
		return nil, fmt.Errorf("open call: language %q is not served: %w", clip(language), ErrBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.drained != nil {
		return nil, fmt.Errorf("open call: %w", ErrDraining)
	}
	now := s.now()
	c := s.newCallLocked(newID(), language, "", now, o.Urgent)
	c.trunk = true
	return &TrunkCall{s: s, c: c, arrived: now, rung: map[string]bool{}}, nil
}

// AnswerWithin is how long the call may ring here before it overflows:
// the policy's overflow time for the phone channel, counted from arrival.
func (t *TrunkCall) AnswerWithin() time.Duration {
	return max(0, t.s.cfg.OverflowAfter(ChannelPhone)-t.s.since(t.arrived))
}

// RingHere holds the longest-idle free browser-phone volunteer of ours
// not yet rung for this call and returns the token of the hold (the SIP
// side redeems it at once). A volunteer of ours with a SIP phone is not
// rung for it (the node, holding the caller, cannot ring a SIP phone),
// only for calls other centres redirect here. ErrNoVolunteer: nobody here
// is left to ring.
func (t *TrunkCall) RingHere() (string, error) {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c := t.c
	if s.closed || s.contacts[c.id] != c || !c.trunk {
		return "", fmt.Errorf("ring here: %w", ErrOfferGone)
	}
	if c.call != nil && !c.call.call.over {
		return "", fmt.Errorf("ring here: a volunteer is still being rung: %w", ErrBadRequest)
	}
	rc, err := s.reserveCallExceptLocked(c.id, "", c.language, c.urgent, t.rung, true)
	if err != nil {
		return "", fmt.Errorf("ring here: %w", err)
	}
	t.rung[rc.vol.ID] = true
	c.call, rc.call.owner = rc, c
	return rc.call.token, nil
}

// Overflow asks the other centres, in gossip's order, to hold a free phone
// volunteer; the SIP side redirects the caller there. From then on the
// contact follows that centre's report, as for a call a PBX placed, and
// Close changes nothing. ErrNoVolunteer: nobody is free anywhere.
func (t *TrunkCall) Overflow(ctx context.Context) (Placed, error) {
	s := t.s
	s.mu.Lock()
	c := t.c
	if s.closed || s.contacts[c.id] != c || !c.trunk {
		s.mu.Unlock()
		return Placed{}, fmt.Errorf("overflow call: %w", ErrOfferGone)
	}
	s.mu.Unlock()
	if s.cfg.Overflow == nil {
		return Placed{}, fmt.Errorf("overflow call: %w", ErrNoVolunteer)
	}
	for _, cand := range s.cfg.Overflow.Candidates(ChannelPhone, c.language) {
		if cand.Centre == s.cfg.Centre || ctx.Err() != nil {
			continue
		}
		cc := c
		if placed, ok := s.offerCall(ctx, cand.Centre, c.id, c.language, c.urgent, t.arrived, &cc); ok {
			return placed, nil
		}
	}
	s.mu.Lock()
	c.callAt = ""
	s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Placed{}, fmt.Errorf("overflow call: %w", err)
	}
	return Placed{}, fmt.Errorf("overflow call: %w", ErrNoVolunteer)
}

// Close ends the contact of a call the node held to its end: answered if
// a volunteer here picked up, abandoned if the caller hung up first, else
// returned (nobody took it; the caller heard the busy prompt). A call that
// Overflow placed elsewhere, or one already closed, is left alone.
func (t *TrunkCall) Close(callerLeft bool) {
	s := t.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c := t.c
	if s.contacts[c.id] != c || !c.trunk {
		return
	}
	c.trunk = false
	if c.call != nil && !c.call.call.over {
		// The SIP side ends its held call before it closes; this is the
		// belt to those braces, so the volunteer is never left held.
		by := ByUnanswered
		if callerLeft {
			by = ByCaller
		}
		s.callOverLocked(c.call, by)
		if s.contacts[c.id] != c {
			return
		}
	}
	s.callOverForOwnerLocked(c, callerLeft)
}
