package node

import (
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/goroutines"
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
	if len(goroutines.Await(5*time.Second, "overflow.(*relay).readLoop")) == 0 {
		t.Fatal("no relay goroutine found while the conversation is live: the test checks nothing")
	}
	f.StopAll()
	if left := goroutines.Running(ownedByOverflow...); len(left) > 0 {
		t.Fatalf("%d overflow goroutines outlived Stop:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
