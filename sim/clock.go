package sim

import (
	"container/heap"
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/helpmesh/helpmesh/switchboard"
)

// clock is virtual time for every centre of one run. Events run one at a
// time on the run's goroutine; between two events the clock waits until the
// switchboards are quiet: every goroutine they started (switchboard.Clock's
// Hold) has ended or waits on the clock (a parked offer). Time then jumps
// to the next event, so a quiet night costs nothing.
type clock struct {
	mu     sync.Mutex
	quiet  *sync.Cond
	now    time.Time
	seq    uint64
	events eventHeap
	held   int
	// parked are offers waiting for another centre's answer; one whose
	// context has ended is about to wake, so the clock is not quiet.
	parked map[*parked]struct{}
}

var _ switchboard.Clock = (*clock)(nil)

func newClock(start time.Time) *clock {
	c := &clock{now: start, parked: map[*parked]struct{}{}}
	c.quiet = sync.NewCond(&c.mu)
	return c
}

type event struct {
	at    time.Time
	seq   uint64
	f     func()
	index int // in the heap; -1 once run or stopped
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *eventHeap) Push(x any) {
	e := x.(*event)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.index = -1
	return e
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) AfterFunc(d time.Duration, f func()) switchboard.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := &event{f: f}
	c.scheduleLocked(e, d)
	return &timer{c: c, e: e}
}

func (c *clock) scheduleLocked(e *event, d time.Duration) {
	c.seq++
	e.at, e.seq = c.now.Add(max(d, 0)), c.seq
	heap.Push(&c.events, e)
}

func (c *clock) Hold() func() {
	c.mu.Lock()
	c.held++
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.releaseLocked()
			c.mu.Unlock()
		})
	}
}

type timer struct {
	c *clock
	e *event
}

func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.e.index < 0 {
		return false
	}
	heap.Remove(&t.c.events, t.e.index)
	return true
}

func (t *timer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	active := t.e.index >= 0
	if active {
		heap.Remove(&t.c.events, t.e.index)
	}
	t.c.scheduleLocked(t.e, d)
	return active
}

// parked is a goroutine of a switchboard that waits on the clock: an offer
// waiting for another centre's answer.
type parked struct {
	ctx  context.Context
	wake chan any
	// released: wait gave up the goroutine's hold; whoever ends the wait
	// takes it back.
	released bool
}

// park registers a wait, keeping the calling goroutine's hold: what it
// does before wait (schedule the offer's arrival) still happens at this
// instant. Call it inside a switchboard goroutine.
func (c *clock) park(ctx context.Context) *parked {
	p := &parked{ctx: ctx, wake: make(chan any, 1)}
	c.mu.Lock()
	c.parked[p] = struct{}{}
	c.mu.Unlock()
	return p
}

// wait gives up the hold and returns what wakeUp sent, or ok=false once
// ctx ended first. Either way the goroutine holds again.
func (c *clock) wait(p *parked) (v any, ok bool) {
	c.mu.Lock()
	if _, still := c.parked[p]; still {
		p.released = true
		c.releaseLocked()
	}
	c.mu.Unlock()
	select {
	case v := <-p.wake:
		return v, true
	case <-p.ctx.Done():
	}
	c.mu.Lock()
	if _, still := c.parked[p]; still {
		delete(c.parked, p)
		c.held++
		c.mu.Unlock()
		return nil, false
	}
	c.mu.Unlock()
	// wakeUp won the race, and took the hold back for us.
	return <-p.wake, true
}

// wakeUp hands v to a parked goroutine; false if it has left already.
func (c *clock) wakeUp(p *parked, v any) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, still := c.parked[p]; !still {
		return false
	}
	delete(c.parked, p)
	if p.released {
		c.held++
	}
	p.wake <- v
	return true
}

func (c *clock) releaseLocked() {
	c.held--
	if c.held == 0 {
		c.quiet.Broadcast()
	}
}

// settle waits until the switchboards are quiet.
func (c *clock) settleLocked() {
	for {
		if c.held > 0 {
			c.quiet.Wait()
			continue
		}
		ending := false
		for p := range c.parked {
			if p.released && p.ctx.Err() != nil {
				ending = true
				break
			}
		}
		if !ending {
			return
		}
		// A withdrawn offer is waking up: it takes its hold back in a
		// moment, without anything here to wait on.
		c.mu.Unlock()
		runtime.Gosched()
		c.mu.Lock()
	}
}

// runUntil runs events in time order up to end, then sets the time to end;
// it stops early, between two events, once ctx ends.
func (c *clock) runUntil(ctx context.Context, end time.Time) error {
	for n := 0; ; n++ {
		if n%4096 == 4095 && ctx.Err() != nil {
			return ctx.Err()
		}
		c.mu.Lock()
		c.settleLocked()
		if len(c.events) == 0 || c.events[0].at.After(end) {
			c.now = end
			c.mu.Unlock()
			return nil
		}
		e := heap.Pop(&c.events).(*event)
		c.now = e.at
		c.mu.Unlock()
		e.f()
	}
}
