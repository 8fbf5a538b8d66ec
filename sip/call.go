package sip

import "sync"

// Call is the reservation a token stands for: one phone volunteer held for one call.
type Call interface {
	// Phone is the SIP URI of the reserved volunteer's phone, e.g. "sip:vol@192.0.2.7:5064".
	Phone() string
	// Arrived says the call reached this centre and the phone is about to ring. An error means
	// the reservation is gone (lease ran out or released): the PBX gets 410 and queues the caller.
	Arrived() error
	// PickedUp says the volunteer's phone answered (a 2xx came back).
	PickedUp()
	// Ended says the call is over; by is one of the EndedBy* constants.
	Ended(by string)
}

// How a call ended, the values Call.Ended receives.
const (
	EndedByCaller    = "caller"     // the caller hung up: CANCEL before pick-up, or BYE from the caller side after
	EndedByVolunteer = "volunteer"  // BYE from the volunteer's phone
	EndedUnanswered  = "unanswered" // the phone refused (4xx-6xx), did not answer within RingTimeout, or could not be reached
	// EndedUnknown: the node lost sight of an answered call: it outlived
	// MaxCallLength without a BYE through the node, or the ingress stopped
	// while it was up. The volunteer may still be talking.
	EndedUnknown = "unknown"
)

// callState guards a Call's events, so that whatever order the network
// delivers things in (a BYE racing a timer, a CANCEL crossing a 200), the
// Call hears PickedUp at most once and only before Ended, and Ended exactly
// once. Every path of the proxy reports through it, never to the Call.
type callState struct {
	call Call

	mu       sync.Mutex
	answered bool
	ended    bool
}

// pickedUp reports the first 2xx; false if the call had already ended (a
// 200 after our CANCEL or time-out: the proxy then hangs up that leg).
func (s *callState) pickedUp() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.answered {
		return !s.ended
	}
	s.answered = true
	s.call.PickedUp()
	return true
}

// end reports the end once; later ends are ignored and return false.
func (s *callState) end(by string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.ended = true
	s.call.Ended(by)
	return true
}

// state returns whether the call was answered and whether it ended.
func (s *callState) state() (answered, ended bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.answered, s.ended
}
