package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/switchboard"
)

// visitorProbe is a visitor's end recorded as a stream of strings.
type visitorProbe struct{ ev chan string }

func newVisitorProbe() *visitorProbe { return &visitorProbe{ev: make(chan string, 1024)} }

func (p *visitorProbe) Queued(pos int, _ time.Duration) { p.ev <- fmt.Sprintf("queued %d", pos) }
func (p *visitorProbe) Connected(alias string)          { p.ev <- "connected " + alias }
func (p *visitorProbe) Event(e switchboard.Event) {
	p.ev <- fmt.Sprintf("%s %s %s%s", e.Kind, e.ID, e.Text, e.By)
}
func (p *visitorProbe) Requeued(n int)       { p.ev <- fmt.Sprintf("requeued %d", n) }
func (p *visitorProbe) Closed(reason string) { p.ev <- "closed " + reason }

// consoleProbe is a volunteer's console recorded as a stream of strings.
type consoleProbe struct {
	ev     chan string
	offers chan switchboard.Offer
}

func newConsoleProbe() *consoleProbe {
	return &consoleProbe{ev: make(chan string, 1024), offers: make(chan switchboard.Offer, 64)}
}

func (p *consoleProbe) Offer(o switchboard.Offer) { p.offers <- o }
func (p *consoleProbe) OfferWithdrawn(c, reason string) {
	p.ev <- "withdrawn " + reason
}
func (p *consoleProbe) Connected(c, from string) { p.ev <- "connected " + from }
func (p *consoleProbe) Event(c string, e switchboard.Event) {
	p.ev <- fmt.Sprintf("%s %s %s%s", e.Kind, e.ID, e.Text, e.By)
}
func (p *consoleProbe) Lost(c string, n int)                  { p.ev <- fmt.Sprintf("lost %d", n) }
func (p *consoleProbe) Availability(map[string]bool, int, int) {}

// expect waits for a recorded event with the given text, skipping others.
func expect(t *testing.T, ch chan string, want string, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-ch:
			if got == want {
				return
			}
		case <-deadline:
			t.Fatalf("timed out waiting for %q", want)
		}
	}
}

func nextOffer(t *testing.T, p *consoleProbe, within time.Duration) switchboard.Offer {
	t.Helper()
	select {
	case o := <-p.offers:
		return o
	case <-time.After(within):
		t.Fatal("no offer rang")
	}
	return switchboard.Offer{}
}

func signIn(t *testing.T, n *Node, id, alias string) (*switchboard.Console, *consoleProbe) {
	t.Helper()
	p := newConsoleProbe()
	c, err := n.Switchboard().SignIn(switchboard.Volunteer{ID: id, Alias: alias, Channels: []string{"chat"}, Languages: []string{"nb", "en"}, Capacity: 2}, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetAvailable("chat", true); err != nil {
		t.Fatal(err)
	}
	return c, p
}

// A has no volunteer, B has one: the visitor at A talks with B's volunteer
// through the relay, both ways, and B's volunteer ends it.
func TestOverflowChatThroughRelay(t *testing.T) {
	f := newFederation(t, 2, fedOptions{})
	a, b := f.node("c1"), f.node("c2")
	console, cp := signIn(t, b, "v-b", "Kari")

	vp := newVisitorProbe()
	h, err := a.Switchboard().StartContact("chat", "nb", vp)
	if err != nil {
		t.Fatal(err)
	}
	o := nextOffer(t, cp, 10*time.Second)
	if o.From != "c1" {
		t.Fatalf("overflowed offer should name centre c1, got %q", o.From)
	}
	if err := console.Accept(o.Contact); err != nil {
		t.Fatal(err)
	}
	expect(t, vp.ev, "connected Kari", 5*time.Second)
	expect(t, cp.ev, "connected c1", 5*time.Second)

	if err := h.Send("m1", "hei, er det noen der?"); err != nil {
		t.Fatal(err)
	}
	expect(t, cp.ev, "message m1 hei, er det noen der?", 5*time.Second)
	expect(t, vp.ev, "delivered m1 ", 5*time.Second)
	if err := console.Send(o.Contact, "r1", "Ja, jeg er her."); err != nil {
		t.Fatal(err)
	}
	expect(t, vp.ev, "message r1 Ja, jeg er her.", 5*time.Second)
	expect(t, cp.ev, "delivered r1 ", 5*time.Second)
	if err := h.Typing(); err != nil {
		t.Fatal(err)
	}
	expect(t, cp.ev, "typing  ", 5*time.Second)
	if err := console.End(o.Contact, switchboard.Categorisation{Topics: []string{"loneliness"}, AgeGroup: "16-18"}); err != nil {
		t.Fatal(err)
	}
	expect(t, vp.ev, "ended  volunteer", 5*time.Second)
	if st := a.Switchboard().Stats(); st.AnsweredOverflow != 1 || st.InProgress != 0 {
		t.Fatalf("A's stats: %+v", st)
	}
	if st := b.Switchboard().Stats(); st.OverflowReceived != 1 || st.Categorised != 1 || st.Topics["loneliness"] != 1 {
		t.Fatalf("B's stats: %+v", st)
	}
}

// Kill B mid-conversation: the visitor at A is told and requeued at the
// front within 5 seconds.
func TestKilledAnsweringCentreRequeuesVisitor(t *testing.T) {
	f := newFederation(t, 3, fedOptions{})
	a, b := f.node("c1"), f.node("c2")
	console, cp := signIn(t, b, "v-b", "Kari")
	vp := newVisitorProbe()
	h, err := a.Switchboard().StartContact("chat", "nb", vp)
	if err != nil {
		t.Fatal(err)
	}
	o := nextOffer(t, cp, 10*time.Second)
	if err := console.Accept(o.Contact); err != nil {
		t.Fatal(err)
	}
	expect(t, vp.ev, "connected Kari", 5*time.Second)
	if err := h.Send("m1", "hello"); err != nil {
		t.Fatal(err)
	}
	expect(t, vp.ev, "delivered m1 ", 5*time.Second)

	killed := time.Now()
	f.kill("c2")
	expect(t, vp.ev, "requeued 0", 5*time.Second)
	t.Logf("visitor requeued %v after the answering centre was killed", time.Since(killed).Round(time.Millisecond))
	expect(t, vp.ev, "queued 1", 5*time.Second)
}
