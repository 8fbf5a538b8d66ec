package overflow

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/goroutines"
)

// gossipGoroutines are the goroutines a Gossip starts.
var gossipGoroutines = []string{"overflow.(*Gossip).runFanout", "overflow.(*Gossip).runNotifier", "overflow.(*Gossip).Join.func"}

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
	// A peer that takes the connection and never answers: the attempt runs
	// until the profile's TCP timeout, long after its caller's context
	// ended. (An unrouted address is no good: where it is refused at once,
	// the attempt is over before the check.)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, _ = g.Join(ctx, []string{silent.Addr().String()})
	if len(goroutines.Await(5*time.Second, "overflow.(*Gossip).Join.func")) == 0 {
		t.Fatal("no join attempt found running: the test checks nothing")
	}
	stopAll([]*Gossip{g, other})
	if left := goroutines.Running(gossipGoroutines...); len(left) > 0 {
		t.Fatalf("%d gossip goroutines outlived Stop:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
