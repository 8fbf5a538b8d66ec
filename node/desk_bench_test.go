package node

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/switchboard"
)

// Benchmarks of the contact plane on a real in-process federation (libp2p,
// Raft, memberlist on loopback). They report latency distributions with
// b.ReportMetric (p50, p99, mean) and assert nothing about time.
//
// Every iteration waits, untimed, for the federation to settle before the
// next one, so iterations are independent; ns/op is therefore the mean of the
// timed part only. Run them with a fixed count, for example
//
//	go test -run '^$' -bench 'OverflowHandoff|RelayLatency|LocalDispatch' -benchtime 200x ./node
//
// (with a time-based -benchtime, b.Loop scales on the timed part alone and
// the untimed settling makes a run long).

// benchEvent is one sink call the benchmarks wait for, stamped when the
// switchboard's outbox delivered it.
type benchEvent struct {
	kind    string // offer, withdrawn, connected, message, delivered, ended, requeued, lost, closed
	contact string
	id      string
	at      time.Time
}

// benchSink records only the events the benchmarks wait for, and never
// blocks the switchboard's outbox: a full channel drops (and counts) the
// event instead. Each benchmark drains what it records every iteration.
type benchSink struct {
	ch      chan benchEvent
	dropped atomic.Int64
}

func newBenchSink() benchSink { return benchSink{ch: make(chan benchEvent, 1024)} }

func (s *benchSink) note(kind, contact, id string) {
	select {
	case s.ch <- benchEvent{kind: kind, contact: contact, id: id, at: time.Now()}:
	default:
		s.dropped.Add(1)
	}
}

// await returns the next event of kind (and id, unless empty), skipping
// others.
func (s *benchSink) await(tb testing.TB, kind, id string, within time.Duration) benchEvent {
	tb.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		select {
		case e := <-s.ch:
			if e.kind == kind && (id == "" || e.id == id) {
				return e
			}
		case <-deadline.C:
			tb.Fatalf("timed out after %v waiting for %s %q (%d events dropped)", within, kind, id, s.dropped.Load())
			return benchEvent{}
		}
	}
}

// benchConsole is a volunteer's console for benchmarks.
type benchConsole struct{ benchSink }

func (p *benchConsole) Offer(o switchboard.Offer) { p.note("offer", o.Contact, o.From) }
func (p *benchConsole) OfferWithdrawn(c, reason string) {
	p.note("withdrawn", c, reason)
}
func (p *benchConsole) Connected(c, from string) { p.note("connected", c, from) }
func (p *benchConsole) Event(c string, e switchboard.Event) {
	if e.Kind == switchboard.EventMessage || e.Kind == switchboard.EventDelivered || e.Kind == switchboard.EventEnded {
		p.note(string(e.Kind), c, e.ID)
	}
}
func (p *benchConsole) Lost(c string, _ int)                   { p.note("lost", c, "") }
func (p *benchConsole) Availability(map[string]bool, int, int) {}

// benchVisitor is a visitor's end for benchmarks.
type benchVisitor struct{ benchSink }

func (p *benchVisitor) Queued(int, switchboard.Estimate) {}
func (p *benchVisitor) Connected(alias string)           { p.note("connected", "", alias) }
func (p *benchVisitor) Event(e switchboard.Event) {
	if e.Kind == switchboard.EventMessage || e.Kind == switchboard.EventDelivered || e.Kind == switchboard.EventEnded {
		p.note(string(e.Kind), "", e.ID)
	}
}
func (p *benchVisitor) Requeued(int)         { p.note("requeued", "", "") }
func (p *benchVisitor) Closed(reason string) { p.note("closed", "", reason) }

func newBenchConsole() *benchConsole { return &benchConsole{newBenchSink()} }
func newBenchVisitor() *benchVisitor { return &benchVisitor{newBenchSink()} }

// benchSignIn signs a volunteer in for chat in nb and en and switches them on.
func benchSignIn(tb testing.TB, n *Node, id, alias string, capacity int) (*switchboard.Console, *benchConsole) {
	tb.Helper()
	p := newBenchConsole()
	c, err := n.Switchboard().SignIn(switchboard.Volunteer{ID: id, Alias: alias, Channels: []string{"chat"}, Languages: []string{"nb", "en"}, Capacity: capacity}, p)
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.SetAvailable("chat", true); err != nil {
		tb.Fatal(err)
	}
	return c, p
}

// overflowReady says whether a new contact at owner would be offered to
// answerer at once, and ring there: answerer's volunteer is free in its live
// state and in the availability it last published, owner's gossip view holds
// exactly that version, and owner's router ranks a candidate for chat/nb.
func overflowReady(owner, answerer *Node, answererID string) bool {
	if answerer.Switchboard().Availability()["chat"].Free["nb"] != 1 {
		return false
	}
	version := func(n *Node) (uint64, int) {
		for _, s := range n.Gossip().View() {
			if s.Centre == answererID {
				return s.Availability.Version, s.Availability.Channels["chat"].Free["nb"]
			}
		}
		return 0, 0
	}
	own, ownFree := version(answerer)
	seen, _ := version(owner)
	if own == 0 || ownFree != 1 || seen != own {
		return false
	}
	return len(owner.router.Candidates("chat", "nb")) > 0
}

// latencies is one benchmark's samples.
type latencies []time.Duration

// percentile is the nearest-rank percentile of sorted samples.
func (l latencies) percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(l)))) - 1
	return l[min(max(i, 0), len(l)-1)]
}

func (l latencies) mean() time.Duration {
	if len(l) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range l {
		sum += d
	}
	return sum / time.Duration(len(l))
}

// report sorts the samples and reports prefix+{p50,p99,mean}-unit.
func (l latencies) report(b *testing.B, prefix string, scale time.Duration, unit string) (p50 time.Duration) {
	slices.Sort(l)
	in := func(d time.Duration) float64 { return float64(d) / float64(scale) }
	b.ReportMetric(in(l.percentile(50)), prefix+"p50-"+unit)
	b.ReportMetric(in(l.percentile(99)), prefix+"p99-"+unit)
	b.ReportMetric(in(l.mean()), prefix+"mean-"+unit)
	return l.percentile(50)
}

// BenchmarkOverflowHandoff measures how long a contact at a centre with no
// volunteer switched on takes to ring a free volunteer at another centre:
// from StartContact at c1 to the Offer on c2's console. StartContact itself
// is the overflow decision (nobody at c1 can ever answer, so it is offered
// out at once); its duration is reported as decide-*.
//
// Each iteration ends with the visitor leaving (the offer is withdrawn at c2)
// rather than a decline: a declined contact stays queued at c1 and would be
// offered to c2 again as soon as c2's availability changed.
func BenchmarkOverflowHandoff(b *testing.B) {
	f := newFederation(b, 2, fedOptions{})
	a, c2 := f.node("c1"), f.node("c2")
	_, console := benchSignIn(b, c2, "v-b", "Kari", 1)
	ready := func() bool { return overflowReady(a, c2, "c2") }
	eventually(b, 20*time.Second, "c2's free volunteer in c1's view", ready)

	var handoff, decide latencies
	b.ResetTimer()
	for b.Loop() {
		vp := newBenchVisitor()
		start := time.Now()
		h, err := a.Switchboard().StartContact("chat", "nb", vp)
		decided := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		o := console.await(b, "offer", "", 10*time.Second)
		b.StopTimer()
		if o.id != "c1" {
			b.Fatalf("the offer at c2 should come from c1, came from %q", o.id)
		}
		handoff = append(handoff, o.at.Sub(start))
		decide = append(decide, decided)

		h.End()
		console.await(b, "withdrawn", "", 10*time.Second)
		eventually(b, 20*time.Second, "c2 free again in its own and c1's view", ready)
		b.StartTimer()
	}
	handoff.report(b, "", time.Millisecond, "ms")
	decide.report(b, "decide-", time.Microsecond, "us")
}

// conversation is one connected contact with both ends' sinks.
type conversation struct {
	visitor *switchboard.VisitorHandle
	vp      *benchVisitor
	console *switchboard.Console
	cp      *benchConsole
	contact string
}

// connect starts a contact at owner and has the volunteer behind console
// accept it.
func connect(b *testing.B, owner *Node, console *switchboard.Console, cp *benchConsole, alias, from string) *conversation {
	b.Helper()
	vp := newBenchVisitor()
	h, err := owner.Switchboard().StartContact("chat", "nb", vp)
	if err != nil {
		b.Fatal(err)
	}
	o := cp.await(b, "offer", "", 10*time.Second)
	if o.id != from {
		b.Fatalf("offer from %q, want %q", o.id, from)
	}
	if err := console.Accept(o.contact); err != nil {
		b.Fatal(err)
	}
	vp.await(b, "connected", alias, 5*time.Second)
	cp.await(b, "connected", "", 5*time.Second)
	return &conversation{visitor: h, vp: vp, console: console, cp: cp, contact: o.contact}
}

var benchMessageSeq atomic.Uint64

const benchText = "Hei, er det noen der? Jeg trenger noen å snakke med i kveld."

// messageLatency sends one message per iteration in one direction and
// reports the time until the far end's sink has it (p50/p99/mean-us) and
// until the sender's sink has the delivery receipt (receipt-*). Through the
// relay the receipt is a round trip (the answering centre sends it back); in
// a local conversation the switchboard posts it together with the message,
// so there it is no slower than the message itself.
func messageLatency(b *testing.B, cv *conversation, toVolunteer bool) time.Duration {
	var oneWay, receipt latencies
	b.ResetTimer()
	for b.Loop() {
		id := fmt.Sprintf("m%d", benchMessageSeq.Add(1))
		far, near := &cv.cp.benchSink, &cv.vp.benchSink
		if !toVolunteer {
			far, near = near, far
		}
		start := time.Now()
		var err error
		if toVolunteer {
			err = cv.visitor.Send(id, benchText)
		} else {
			err = cv.console.Send(cv.contact, id, benchText)
		}
		if err != nil {
			b.Fatal(err)
		}
		got := far.await(b, "message", id, 5*time.Second)
		b.StopTimer()
		oneWay = append(oneWay, got.at.Sub(start))
		ack := near.await(b, "delivered", id, 5*time.Second)
		receipt = append(receipt, ack.at.Sub(start))
		b.StartTimer()
	}
	p50 := oneWay.report(b, "", time.Microsecond, "us")
	receipt.report(b, "receipt-", time.Microsecond, "us")
	return p50
}

// BenchmarkRelayLatency measures one message's latency in an overflowed
// conversation (visitor at c1, volunteer at c2, through the relay) and, as a
// baseline in the same run, in a local conversation at c1. The relay
// sub-benchmark's x-local metric is its p50 over the local p50.
func BenchmarkRelayLatency(b *testing.B) {
	f := newFederation(b, 2, fedOptions{})
	a, c2 := f.node("c1"), f.node("c2")
	remote, rp := benchSignIn(b, c2, "v-b", "Kari", 1)
	eventually(b, 20*time.Second, "c2's free volunteer in c1's view", func() bool { return overflowReady(a, c2, "c2") })
	relayed := connect(b, a, remote, rp, "Kari", "c1")

	// Only now a volunteer at c1, for the local conversation: c1's first
	// contact had to overflow.
	local, lp := benchSignIn(b, a, "v-a", "Ola", 1)
	same := connect(b, a, local, lp, "Ola", "")

	for _, dir := range []struct {
		name        string
		toVolunteer bool
	}{{"visitor-to-volunteer", true}, {"volunteer-to-visitor", false}} {
		b.Run(dir.name, func(b *testing.B) {
			var localP50 time.Duration
			b.Run("local", func(b *testing.B) { localP50 = messageLatency(b, same, dir.toVolunteer) })
			var relayP50 time.Duration
			b.Run("relay", func(b *testing.B) {
				relayP50 = messageLatency(b, relayed, dir.toVolunteer)
				if localP50 > 0 {
					b.ReportMetric(float64(relayP50)/float64(localP50), "x-local")
				}
			})
			if localP50 > 0 && relayP50 > 0 {
				b.Logf("%s: relay p50 %v, local p50 %v: %.1fx", dir.name, relayP50, localP50, float64(relayP50)/float64(localP50))
			}
		})
	}
}

// BenchmarkLocalDispatch measures how long a contact takes to ring a free
// volunteer at its own centre: from StartContact to the Offer on the console.
func BenchmarkLocalDispatch(b *testing.B) {
	f := newFederation(b, 1, fedOptions{})
	a := f.node("c1")
	_, console := benchSignIn(b, a, "v-a", "Ola", 1)

	var ring latencies
	b.ResetTimer()
	for b.Loop() {
		vp := newBenchVisitor()
		start := time.Now()
		h, err := a.Switchboard().StartContact("chat", "nb", vp)
		if err != nil {
			b.Fatal(err)
		}
		o := console.await(b, "offer", "", 5*time.Second)
		b.StopTimer()
		ring = append(ring, o.at.Sub(start))
		h.End()
		console.await(b, "withdrawn", "", 5*time.Second)
		b.StartTimer()
	}
	ring.report(b, "", time.Microsecond, "us")
}
