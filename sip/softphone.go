package sip

// The rendezvous between a call the node answers itself and the console of
// the volunteer it rings (issue 13). The SIP side registers the ringing
// call under the volunteer's ID; the console hands in the browser's WebRTC
// offer (Answer) or hangs up (HangUp). One call per volunteer at a time:
// the desk never holds a volunteer for two calls.

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

var (
	// ErrNoCall is an Answer or HangUp from a volunteer for whom no call is
	// ringing (it ended, or it never came).
	ErrNoCall = errors.New("no call is ringing for this volunteer")
	// ErrAnswered is a second Answer for a call already being answered.
	ErrAnswered = errors.New("the call is already being answered")
)

// Softphones is the desk of browser calls in progress, by volunteer. Safe
// for concurrent use.
type Softphones struct {
	mu    sync.Mutex
	calls map[string]*browserCall
	// changed is closed and replaced whenever a call is registered, so an
	// Answer that came before its call (the console answered the offer
	// card while the call was on its way) can wait for it.
	changed chan struct{}
}

// NewSoftphones returns an empty desk.
func NewSoftphones() *Softphones {
	return &Softphones{calls: map[string]*browserCall{}, changed: make(chan struct{})}
}

// browserCall is one call ringing, or in progress, in a volunteer's console.
type browserCall struct {
	pickups   chan pickup // the console's answer, at most one waiting
	hungUp    chan struct{}
	hangOnce  sync.Once
	answering bool // an Answer is being handled (under Softphones.mu)
}

type pickup struct {
	sdp   string
	reply chan pickupReply // buffered: the SIP side never waits on it
	// gone is closed when the console stopped waiting (its Answer's
	// context ended): an answer then would go nowhere.
	gone <-chan struct{}
}

type pickupReply struct {
	sdp string
	err error
}

func (b *browserCall) hangUp() { b.hangOnce.Do(func() { close(b.hungUp) }) }

// register opens the volunteer's call; false if they have one already.
func (s *Softphones) register(volunteer string) (*browserCall, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, busy := s.calls[volunteer]; busy {
		return nil, false
	}
	b := &browserCall{pickups: make(chan pickup, 1), hungUp: make(chan struct{})}
	s.calls[volunteer] = b
	close(s.changed)
	s.changed = make(chan struct{})
	return b, true
}

func (s *Softphones) unregister(volunteer string, b *browserCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls[volunteer] == b {
		delete(s.calls, volunteer)
	}
}

// Answer hands the volunteer's browser offer to the call ringing for them
// and returns the node's answer. A call still on its way is waited for
// until ctx is done.
func (s *Softphones) Answer(ctx context.Context, volunteer, browserSDP string) (string, error) {
	for {
		s.mu.Lock()
		b, changed := s.calls[volunteer], s.changed
		busy := b != nil && b.answering
		if b != nil && !busy {
			b.answering = true
		}
		s.mu.Unlock()
		if busy {
			return "", fmt.Errorf("answer call: %w", ErrAnswered)
		}
		if b != nil {
			defer func() {
				s.mu.Lock()
				b.answering = false
				s.mu.Unlock()
			}()
			p := pickup{sdp: browserSDP, reply: make(chan pickupReply, 1), gone: ctx.Done()}
			select {
			case b.pickups <- p:
			default:
				return "", fmt.Errorf("answer call: %w", ErrAnswered)
			}
			select {
			case r := <-p.reply:
				if r.err != nil {
					return "", fmt.Errorf("answer call: %w", r.err)
				}
				return r.sdp, nil
			case <-b.hungUp:
				return "", fmt.Errorf("answer call: %w", ErrNoCall)
			case <-ctx.Done():
				return "", fmt.Errorf("answer call: %w", ErrNoCall)
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", fmt.Errorf("answer call: %w", ErrNoCall)
		}
	}
}

// HangUp ends the volunteer's browser call, ringing or in progress: the
// node hangs up on the caller (or, while it rings, treats it as declined).
func (s *Softphones) HangUp(volunteer string) error {
	s.mu.Lock()
	b := s.calls[volunteer]
	s.mu.Unlock()
	if b == nil {
		return fmt.Errorf("hang up: %w", ErrNoCall)
	}
	b.hangUp()
	return nil
}
