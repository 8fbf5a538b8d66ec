package consensus

import (
	"context"
	"errors"
	"testing"
	"time"
)

// watchCalls runs Watch in the background and reports each roster it is
// called with; f says done once done(roster) holds.
func watchCalls(t *testing.T, ctx context.Context, c *Consensus, wake Wake, done func(Roster) bool) (<-chan Roster, <-chan error) {
	t.Helper()
	calls, result := make(chan Roster, 100), make(chan error, 1)
	go func() {
		result <- c.Watch(ctx, wake, func(r Roster) bool {
			calls <- r
			return done(r)
		})
	}()
	return calls, result
}

func nextCall(t *testing.T, calls <-chan Roster, within time.Duration) Roster {
	t.Helper()
	select {
	case r := <-calls:
		return r
	case <-time.After(within):
		t.Fatalf("no call within %v", within)
		return Roster{}
	}
}

func noCall(t *testing.T, calls <-chan Roster, during time.Duration) {
	t.Helper()
	select {
	case <-calls:
		t.Fatalf("called within %v", during)
	case <-time.After(during):
	}
}

// Watch calls at once, again after a roster change, and returns nil when f
// says it is done.
func TestWatchCallsAtOnceAndOnChangeUntilDone(t *testing.T) {
	c := startOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	calls, result := watchCalls(t, ctx, c, Wake{Every: time.Hour}, func(r Roster) bool {
		_, ok := r.Volunteers["v1"]
		return ok
	})
	if r := nextCall(t, calls, 5*time.Second); len(r.Volunteers) != 1 {
		t.Fatalf("first call saw %d volunteers, want the one already there", len(r.Volunteers))
	}
	if err := c.Propose(ctx, volunteer("v1", "oslo", "nb")); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok := nextCall(t, calls, 5*time.Second).Volunteers["v1"]; ok {
			break
		}
	}
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("Watch = %v after f said done, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after f said done")
	}
}

// With WaitFirst, Watch waits for a wake-up; the tick wakes it without a
// change; and the end of ctx ends it with ctx's error.
func TestWatchWaitFirstTickAndContext(t *testing.T) {
	c := startOne(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls, result := watchCalls(t, ctx, c, Wake{Every: 300 * time.Millisecond, WaitFirst: true}, func(Roster) bool { return false })
	noCall(t, calls, 100*time.Millisecond)
	nextCall(t, calls, 5*time.Second)
	nextCall(t, calls, 5*time.Second)
	cancel()
	select {
	case err := <-result:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch = %v after ctx ended, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after ctx ended")
	}
}

// With Settle, a change is acted on only after the settle time, and a
// burst of changes within it makes one call.
func TestWatchSettlesBursts(t *testing.T) {
	c := startOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const settle = 2 * time.Second
	calls, _ := watchCalls(t, ctx, c, Wake{Every: time.Hour, Settle: settle}, func(Roster) bool { return false })
	nextCall(t, calls, 5*time.Second)
	start := time.Now()
	for _, id := range []string{"v1", "v2"} {
		if err := c.Propose(ctx, volunteer(id, "oslo", "nb")); err != nil {
			t.Fatal(err)
		}
	}
	if time.Since(start) >= settle {
		t.Skip("the two writes took longer than the settle time on this machine")
	}
	r := nextCall(t, calls, 10*time.Second)
	if waited := time.Since(start); waited < settle {
		t.Fatalf("called %v after the change, want at least %v", waited, settle)
	}
	if len(r.Volunteers) != 3 {
		t.Fatalf("the settled call saw %d volunteers, want 3", len(r.Volunteers))
	}
	noCall(t, calls, settle+500*time.Millisecond)
}
