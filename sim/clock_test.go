package sim

import (
	"context"
	"testing"
	"time"
)

// A goroutine that parks keeps the present until it waits: what it does in
// between (schedule its offer's arrival) happens at the instant it parked,
// however late the scheduler runs it. The review found time jumping by up
// to 17 minutes there when park gave up the hold at once.
func TestParkKeepsThePresentUntilWait(t *testing.T) {
	c := newClock(DefaultStart)
	c.AfterFunc(time.Hour, func() {}) // something later to jump to
	release := c.Hold()
	sawNow := make(chan time.Time, 1)
	go func() {
		defer release()
		p := c.park(context.Background())
		time.Sleep(50 * time.Millisecond) // descheduled between park and wait
		sawNow <- c.Now()
		c.AfterFunc(0, func() { c.wakeUp(p, "answer") })
		if v, ok := c.wait(p); !ok || v != "answer" {
			t.Errorf("wait = %v, %v", v, ok)
		}
	}()
	if err := c.runUntil(context.Background(), DefaultStart.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := <-sawNow; !got.Equal(DefaultStart) {
		t.Fatalf("between park and wait the clock read %v, want the moment of parking %v", got.Sub(DefaultStart), time.Duration(0))
	}
}

// A parked offer whose context ends takes its hold back: the clock waits
// for it to finish before moving on.
func TestWithdrawnParkedOfferHoldsTheClock(t *testing.T) {
	c := newClock(DefaultStart)
	ctx, cancel := context.WithCancel(context.Background())
	release := c.Hold()
	finished := make(chan time.Time, 1)
	parked := make(chan struct{})
	go func() {
		defer release()
		p := c.park(ctx)
		close(parked)
		if _, ok := c.wait(p); ok {
			t.Error("woken, want withdrawn")
		}
		time.Sleep(20 * time.Millisecond) // the withdrawal's bookkeeping
		finished <- c.Now()
	}()
	<-parked
	c.AfterFunc(time.Minute, cancel)
	c.AfterFunc(time.Hour, func() {})
	if err := c.runUntil(context.Background(), DefaultStart.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := <-finished; !got.Equal(DefaultStart.Add(time.Minute)) {
		t.Fatalf("the withdrawn offer finished at %v, want at the withdrawal (1m0s)", got.Sub(DefaultStart))
	}
}
