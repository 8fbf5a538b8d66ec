package sip

import (
	"net/netip"
	"sync"
	"time"
)

// Defaults for the proxied token calls.
const (
	DefaultRingTimeout   = 30 * time.Second
	DefaultMaxCallLength = 6 * time.Hour
	DefaultMaxCalls      = 10_000
	// DefaultMaxHeldCalls: a helpline's trunk carries tens of calls at
	// once, not hundreds; each held call is a voice leg (a socket, three
	// goroutines) and a ringing console.
	DefaultMaxHeldCalls = 200
)

// proxied is one token call the node is in the signalling path of, from the
// forwarded INVITE until a BYE, a failure, or the MaxCallLength sweep. It
// holds what the node needs to route and judge the call's in-dialog
// requests, in memory only: never logged, counted or written.
type proxied struct {
	state *callState
	// callerTag is the From tag of the caller side's INVITE. A request of the
	// dialog whose From tag is this one comes from the caller side; the
	// volunteer's phone, as the called party, sends its requests with From
	// and To swapped, so its From tag is its own.
	callerTag string
	// phone is the volunteer's phone's address (the IP literal of Phone()),
	// the one address besides the PBX that may talk about this call.
	phone netip.AddrPort
	began time.Time
}

// callTable holds the proxied calls by Call-ID, bounded by MaxCalls, and
// counts the phones' addresses for the screen's allowlist.
type callTable struct {
	max int

	mu     sync.Mutex
	byID   map[string]*proxied
	phones map[netip.Addr]int
}

func newCallTable(max int) *callTable {
	return &callTable{max: max, byID: map[string]*proxied{}, phones: map[netip.Addr]int{}}
}

// full reports whether another call would pass the cap.
func (t *callTable) full() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID) >= t.max
}

// add registers a call; false when the table is full or the Call-ID is
// already proxied (a second INVITE with the same Call-ID is not a new call).
func (t *callTable) add(id string, p *proxied) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.byID) >= t.max {
		return false
	}
	if _, ok := t.byID[id]; ok {
		return false
	}
	t.byID[id] = p
	t.phones[p.phone.Addr()]++
	return true
}

func (t *callTable) get(id string) *proxied {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byID[id]
}

// remove forgets id if it still stands for p.
func (t *callTable) remove(id string, p *proxied) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[id] != p {
		return
	}
	delete(t.byID, id)
	ip := p.phone.Addr()
	if t.phones[ip]--; t.phones[ip] <= 0 {
		delete(t.phones, ip)
	}
}

// phone reports whether ip is the phone of a call being proxied.
func (t *callTable) phone(ip netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.phones[ip.Unmap()] > 0
}

// takeOlder removes and returns the calls that began before cutoff (Stop
// passes a cutoff in the future to take them all).
func (t *callTable) takeOlder(cutoff time.Time) []*proxied {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*proxied
	for id, p := range t.byID {
		if p.began.Before(cutoff) {
			out = append(out, p)
			delete(t.byID, id)
			ip := p.phone.Addr()
			if t.phones[ip]--; t.phones[ip] <= 0 {
				delete(t.phones, ip)
			}
		}
	}
	return out
}

func (t *callTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}
