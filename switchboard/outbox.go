package switchboard

import (
	"context"
	"sync"
	"sync/atomic"
)

// outbox delivers calls to one sink in the order they were posted, on a
// goroutine of its own that exists only while there is something to deliver.
// The switchboard posts under its lock, so a sink never runs under it and the
// order of posts is the order of events.
type outbox struct {
	mu      sync.Mutex
	q       []func()
	running bool
	spawn   func(func(context.Context))
	// sealed is set by Close (under the switchboard's lock) once it has
	// posted its last words; later posts are dropped, so no goroutine is
	// started while Close waits for the others.
	sealed *atomic.Bool
}

func (s *Switchboard) newOutbox() *outbox {
	return &outbox{spawn: s.spawn, sealed: &s.sealed}
}

func (o *outbox) post(f func()) {
	if o.sealed.Load() {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.q = append(o.q, f)
	if !o.running {
		o.running = true
		// The drain ignores the stopper's context: what was posted before
		// Close sealed the outbox (its last words) is still delivered.
		o.spawn(func(context.Context) { o.drain() })
	}
}

func (o *outbox) drain() {
	for {
		o.mu.Lock()
		if len(o.q) == 0 {
			o.running = false
			o.mu.Unlock()
			return
		}
		f := o.q[0]
		o.q[0] = nil
		o.q = o.q[1:]
		o.mu.Unlock()
		f()
	}
}
