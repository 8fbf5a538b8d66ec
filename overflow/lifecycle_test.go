package overflow

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"
)

// goroutinesRunning returns the stacks of goroutines running one of funcs.
func goroutinesRunning(funcs ...string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range funcs {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// gossipGoroutines are the goroutines a Gossip starts.
func gossipGoroutines() []string {
	return goroutinesRunning("overflow.(*Gossip).runFanout", "overflow.(*Gossip).runNotifier", "overflow.(*Gossip).Join.func")
}

// Stop ends every goroutine the Gossip started, a join attempt still under
// way included (its caller gave up at once): checked as soon as Stop
// returns, without waiting, because Stop itself must have waited.
func TestStopEndsGossipGoroutines(t *testing.T) {
	cfg := testConfigFor("c00")
	cfg.OnChange = func(string) {}
	g := startNode(t, cfg)
	other := startNode(t, testConfigFor("c01"))
	if _, err := other.Join(context.Background(), []string{g.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	// An address that never answers: the attempt runs until the profile's
	// TCP timeout, long after its caller's context ended.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, _ = g.Join(ctx, []string{"192.0.2.1:7946"})
	if len(gossipGoroutines()) == 0 {
		t.Fatal("no gossip goroutine found while running: the test checks nothing")
	}
	stopAll([]*Gossip{g, other})
	if left := gossipGoroutines(); len(left) > 0 {
		t.Fatalf("%d gossip goroutines outlived Stop:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
