package node

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// ownedByOverflow names the goroutines the router and the gossip start:
// each must have ended when Stop returns.
var ownedByOverflow = []string{
	"overflow.(*relay).writeLoop",
	"overflow.(*relay).readLoop",
	"overflow.(*Router).Offer.func",
	"overflow.(*Router).serveOffer.func",
	"overflow.(*Gossip).runFanout",
	"overflow.(*Gossip).runNotifier",
	"overflow.(*Gossip).Join.func",
}

// overflowGoroutines returns the stacks of goroutines running one of the
// functions the overflow package owns.
func overflowGoroutines() []string {
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
		for _, f := range ownedByOverflow {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// An overflowed conversation is live (its relay reading and writing on
// both centres) when both centres stop: no goroutine of the router, the
// relays or the gossip outlives Stop. Checked as soon as Stop returns,
// without waiting: Stop itself must have waited for them.
func TestStopEndsOverflowGoroutines(t *testing.T) {
	f := newFederation(t, 2, fedOptions{})
	a, b := f.node("c1"), f.node("c2")
	console, cp := signIn(t, b, "v-b", "Kari")
	vp := newVisitorProbe()
	if _, err := a.Switchboard().StartContact("chat", "nb", vp); err != nil {
		t.Fatal(err)
	}
	o := nextOffer(t, cp, 10*time.Second)
	if err := console.Accept(o.Contact); err != nil {
		t.Fatal(err)
	}
	expect(t, vp.ev, "connected Kari", 5*time.Second)
	expect(t, cp.ev, "connected c1", 5*time.Second)
	if len(overflowGoroutines()) == 0 {
		t.Fatal("no relay goroutine found while the conversation is live: the test checks nothing")
	}
	f.StopAll()
	if left := overflowGoroutines(); len(left) > 0 {
		t.Fatalf("%d overflow goroutines outlived Stop:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
