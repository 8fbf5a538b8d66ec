package node

import (
	"context"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/switchboard"
)

// TestPropertyRealFederationRandomTimings runs a real two-centre federation
// (libp2p, Raft, gossip, the overflow router and relay) with a short ring
// and a 1 s chat overflow, volunteers whose consoles accept after a random
// delay, decline, or let the offer ring out, and ~30 visitors arriving at
// random centres who talk, leave, or give up waiting. Whatever the timings,
// no contact may be connected on two consoles at once and no volunteer may
// hold more conversations than their capacity; every visitor must end with
// one outcome and the counters of both centres must balance.
//
// The seed (HELPMESH_PROP_SEED to repeat one) drives the choices; the
// network's timing is real, so a rerun is similar, not identical.
func TestPropertyRealFederationRandomTimings(t *testing.T) {
	if testing.Short() {
		t.Skip("real federation")
	}
	seed := time.Now().UnixNano()
	if s := os.Getenv("HELPMESH_PROP_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (HELPMESH_PROP_SEED=%d to repeat the choices)", seed, seed)
	tr := &fedTracker{t: t, rng: rand.New(rand.NewSource(seed)), holder: map[string]*fedConsole{}}

	const ring = 2 * time.Second
	f := newFederation(t, 2, fedOptions{ringTimeout: ring})
	a, b := f.node("c1"), f.node("c2")
	nodes := []*Node{a, b}

	p := a.Roster().Policy
	p.OverflowAfterSeconds = maps.Clone(p.OverflowAfterSeconds)
	p.OverflowAfterSeconds["chat"] = 1
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetPolicy, Policy: &p}); err != nil {
		t.Fatalf("set policy: %v", err)
	}
	eventually(t, 10*time.Second, "the 1 s chat overflow at both centres", func() bool {
		for _, n := range nodes {
			if n.Roster().Policy.OverflowAfterSeconds["chat"] != 1 {
				return false
			}
		}
		return true
	})

	var consoles []*fedConsole
	for _, n := range nodes {
		k := 2 + tr.rng.Intn(2)
		for i := range k {
			fc := &fedConsole{tr: tr, id: fmt.Sprintf("%s-v%d", n.Centre(), i+1), centre: n.Centre(), capacity: 1 + tr.rng.Intn(2), active: map[string]bool{}}
			fc.alias = "alias-" + fc.id
			con, err := n.Switchboard().SignIn(switchboard.Volunteer{ID: fc.id, Alias: fc.alias, Channels: []string{"chat"}, Languages: []string{"nb", "en"}, Capacity: fc.capacity}, fc)
			if err != nil {
				t.Fatal(err)
			}
			fc.mu.Lock()
			fc.con = con
			fc.mu.Unlock()
			if err := con.SetAvailable("chat", true); err != nil {
				t.Fatal(err)
			}
			consoles = append(consoles, fc)
			t.Logf("%s: capacity %d", fc.id, fc.capacity)
		}
	}
	// Gossip has told each centre the other has someone free.
	eventually(t, 10*time.Second, "each centre a candidate of the other", func() bool {
		return len(a.router.Candidates("chat", "nb")) == 1 && len(b.router.Candidates("chat", "nb")) == 1
	})

	const visitors = 30
	startAt := make([]time.Duration, visitors)
	where := make([]*Node, visitors)
	langs := make([]string, visitors)
	for i := range visitors {
		startAt[i] = time.Duration(tr.rng.Int63n(int64(8 * time.Second)))
		where[i] = nodes[tr.rng.Intn(2)]
		langs[i] = []string{"nb", "en"}[tr.rng.Intn(2)]
	}
	var wg sync.WaitGroup
	began := time.Now()
	for i := range visitors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(startAt[i])
			tr.visit(where[i], langs[i], fmt.Sprintf("visitor%d", i))
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("visitors still going after 30 s")
	}
	t.Logf("all %d visitors done after %v", visitors, time.Since(began).Round(time.Millisecond))
	consolesDone := make(chan struct{})
	go func() { tr.pending.Wait(); close(consolesDone) }()
	select {
	case <-consolesDone:
	case <-time.After(10 * time.Second):
		t.Fatal("consoles still acting 10 s after the last visitor")
	}

	eventually(t, 10*time.Second, "every console released every contact and the queues empty", func() bool {
		tr.mu.Lock()
		held := len(tr.holder)
		tr.mu.Unlock()
		if held != 0 {
			return false
		}
		for _, n := range nodes {
			if st := n.Switchboard().Stats(); st.Total().Waiting != 0 || st.Total().InProgress != 0 || st.ReceivedInProgress != 0 {
				return false
			}
		}
		return true
	})

	var local, over, received, abandoned, requeued, offered, categorised uint64
	for _, n := range nodes {
		st := n.Switchboard().Stats()
		tl := st.Total()
		// Counted per connection: a requeued contact is connected again.
		stOver := st.Sent(switchboard.OfferAccepted)
		stLocal := st.Moved(switchboard.StateQueued, switchboard.StateConnected) + st.Moved(switchboard.StateOffered, switchboard.StateConnected) - stOver
		stRequeued := st.Moved(switchboard.StateConnected, switchboard.StateQueued)
		if tl.Offered+stRequeued != stLocal+stOver+tl.Abandoned+uint64(tl.Waiting) {
			t.Errorf("%s: stats not conserved: %+v", n.Centre(), st)
		}
		t.Logf("%s: offered %d, answered here %d, answered elsewhere %d, received from elsewhere %d, abandoned %d, requeued %d, categorised %d",
			n.Centre(), tl.Offered, stLocal, stOver, st.Received(switchboard.OfferAccepted), tl.Abandoned, stRequeued, st.Categorised())
		offered += tl.Offered
		local += stLocal
		over += stOver
		received += st.Received(switchboard.OfferAccepted)
		abandoned += tl.Abandoned
		requeued += stRequeued
		categorised += st.Categorised()
	}

	tr.mu.Lock()
	defer tr.mu.Unlock()
	t.Logf("contacts %d: answered locally %d, by overflow %d (received %d), abandoned %d, requeued %d; offers rung %d, accepted %d, declined %d, rang out %d, other withdrawals %d; visitors: %d abandoned, %d ended by themselves, %d by the volunteer",
		offered, local, over, received, abandoned, requeued, tr.offers, tr.accepts, tr.declines, tr.timeouts, tr.withdrawn, tr.visAbandoned, tr.visEnded, tr.volEnded)
	t.Logf("double assignments %d, over capacity %d", tr.double, tr.overCap)
	if categorised+uint64(tr.lost) != local+received {
		t.Errorf("%d conversations (%d here, %d received), %d categorised, %d lost", local+received, local, received, categorised, tr.lost)
	}
	if offered != visitors {
		t.Errorf("%d contacts counted, %d started", offered, visitors)
	}
	if tr.visAbandoned != int(abandoned) {
		t.Errorf("%d visitors gave up waiting, the centres counted %d abandoned", tr.visAbandoned, abandoned)
	}
	if tr.visAbandoned+tr.visEnded+tr.volEnded != visitors {
		t.Errorf("outcomes: %d abandoned + %d + %d ended != %d visitors", tr.visAbandoned, tr.visEnded, tr.volEnded, visitors)
	}
	if tr.double != 0 || tr.overCap != 0 || len(tr.violations) > 0 {
		t.Errorf("double assignments %d, over capacity %d; violations:\n%s", tr.double, tr.overCap, joinLines(tr.violations))
	}
}

func joinLines(ls []string) string {
	return "  " + strings.Join(ls, "\n  ")
}

// fedTracker sees every console and visitor of the federation.
type fedTracker struct {
	t  *testing.T
	mu sync.Mutex
	// rng is guarded by mu.
	rng        *rand.Rand
	pending    sync.WaitGroup         // consoles' delayed actions
	holder     map[string]*fedConsole // contact -> the console it is connected on
	violations []string

	double, overCap                                      int
	offers, accepts, declines, timeouts, withdrawn, lost int
	visAbandoned, visEnded, volEnded                     int
}

func (tr *fedTracker) violateLocked(kind *int, format string, args ...any) {
	*kind++
	tr.violations = append(tr.violations, fmt.Sprintf(format, args...))
}

func (tr *fedTracker) randDuration(lo, hi time.Duration) time.Duration {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return lo + time.Duration(tr.rng.Int63n(int64(hi-lo)+1))
}

func (tr *fedTracker) chance(p float64) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.rng.Float64() < p
}

// fedConsole is a volunteer's console that acts on its own, at random.
type fedConsole struct {
	tr       *fedTracker
	id       string
	alias    string
	centre   string
	capacity int

	mu  sync.Mutex
	con *switchboard.Console
	// active is guarded by tr.mu.
	active map[string]bool
}

func (fc *fedConsole) console() *switchboard.Console {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.con
}

func (fc *fedConsole) Offer(o switchboard.Offer) {
	tr := fc.tr
	tr.mu.Lock()
	tr.offers++
	r := tr.rng.Float64()
	d := time.Duration(tr.rng.Int63n(int64(800 * time.Millisecond)))
	tr.mu.Unlock()
	switch {
	case r < 0.65:
		tr.pending.Add(1)
		time.AfterFunc(d, func() {
			defer tr.pending.Done()
			if err := fc.console().Accept(o.Contact); err == nil {
				tr.mu.Lock()
				tr.accepts++
				tr.mu.Unlock()
			}
		})
	case r < 0.87:
		tr.pending.Add(1)
		time.AfterFunc(d, func() {
			defer tr.pending.Done()
			if err := fc.console().Decline(o.Contact); err == nil {
				tr.mu.Lock()
				tr.declines++
				tr.mu.Unlock()
			}
		})
	default: // away from the desk: it rings out
	}
}

func (fc *fedConsole) OfferWithdrawn(_, reason string) {
	tr := fc.tr
	tr.mu.Lock()
	defer tr.mu.Unlock()
	switch reason {
	case "declined":
	case "no answer in time":
		tr.timeouts++
	default:
		tr.withdrawn++
	}
}

func (fc *fedConsole) Connected(contact, from string) {
	tr := fc.tr
	tr.mu.Lock()
	if h := tr.holder[contact]; h != nil && h != fc {
		tr.violateLocked(&tr.double, "contact %s connected on %s while %s still has it", contact[:6], fc.id, h.id)
	}
	tr.holder[contact] = fc
	fc.active[contact] = true
	if len(fc.active) > fc.capacity {
		tr.violateLocked(&tr.overCap, "%s holds %d conversations, capacity %d", fc.id, len(fc.active), fc.capacity)
	}
	talk := time.Duration(300+tr.rng.Intn(2200)) * time.Millisecond
	say := tr.rng.Intn(2) == 0
	tr.mu.Unlock()
	tr.pending.Add(1)
	time.AfterFunc(talk, func() {
		defer tr.pending.Done()
		con := fc.console()
		if say {
			_ = con.Send(contact, "r1", "Hei, jeg er her.")
		}
		tr.mu.Lock()
		fc.releaseLocked(contact)
		tr.mu.Unlock()
		// Ends it if it is still going, and categorises it either way
		// (unless the relay was lost).
		if err := con.End(contact, switchboard.Categorisation{Topics: []string{"other"}, AgeGroup: "unknown"}); err != nil {
			tr.t.Logf("%s could not end/categorise %s (from %q): %v", fc.id, contact[:6], from, err)
		}
	})
}

// releaseLocked forgets a conversation; tr.mu is held.
func (fc *fedConsole) releaseLocked(contact string) {
	delete(fc.active, contact)
	if fc.tr.holder[contact] == fc {
		delete(fc.tr.holder, contact)
	}
}

func (fc *fedConsole) Event(contact string, e switchboard.Event) {
	if e.Kind != switchboard.EventEnded {
		return
	}
	fc.tr.mu.Lock()
	fc.releaseLocked(contact)
	fc.tr.mu.Unlock()
}

func (fc *fedConsole) Lost(contact string, _ int) {
	fc.tr.mu.Lock()
	fc.tr.lost++
	fc.releaseLocked(contact)
	fc.tr.mu.Unlock()
}

func (fc *fedConsole) Availability(_ map[string]bool, active, capacity int) {
	if active > capacity {
		fc.tr.mu.Lock()
		fc.tr.violateLocked(&fc.tr.overCap, "%s: switchboard reports %d active, capacity %d", fc.id, active, capacity)
		fc.tr.mu.Unlock()
	}
}

// fedVisitor is a visitor's end: what the switchboard says arrives on ev.
type fedVisitor struct{ ev chan string }

func (v *fedVisitor) Queued(int, switchboard.Estimate) {}
func (v *fedVisitor) Connected(alias string)           { v.ev <- "connected " + alias }
func (v *fedVisitor) Event(e switchboard.Event) {
	if e.Kind == switchboard.EventEnded {
		v.ev <- "ended"
	}
}
func (v *fedVisitor) Requeued(int)         { v.ev <- "requeued" }
func (v *fedVisitor) Closed(reason string) { v.ev <- "closed " + reason }

// visit is one visitor: waits with limited patience, talks for a while and
// leaves, unless the volunteer ends first.
func (tr *fedTracker) visit(n *Node, lang, name string) {
	vis := &fedVisitor{ev: make(chan string, 64)}
	h, err := n.Switchboard().StartContact("chat", lang, vis)
	if err != nil {
		tr.t.Errorf("%s: start contact: %v", name, err)
		return
	}
	connected := ""
	patience := time.NewTimer(tr.randDuration(2*time.Second, 6*time.Second))
	defer patience.Stop()
	var talk <-chan time.Time
	for {
		select {
		case e := <-vis.ev:
			switch {
			case strings.HasPrefix(e, "connected "):
				tr.mu.Lock()
				if connected != "" {
					tr.violateLocked(&tr.double, "%s (%s) connected to %s while connected to %s", name, h.ID()[:6], e[10:], connected)
				}
				tr.mu.Unlock()
				connected = e[10:]
				patience.Stop()
				talk = time.After(tr.randDuration(300*time.Millisecond, 2500*time.Millisecond))
			case e == "requeued":
				connected, talk = "", nil
				patience.Reset(tr.randDuration(2*time.Second, 6*time.Second))
			case e == "ended":
				tr.mu.Lock()
				tr.volEnded++
				tr.mu.Unlock()
				return
			default:
				tr.t.Errorf("%s: %s", name, e)
				return
			}
		case <-patience.C:
			if connected != "" {
				continue
			}
			h.End()
			tr.mu.Lock()
			tr.visAbandoned++
			tr.mu.Unlock()
			tr.drainAfterEnd(name, vis, true)
			return
		case <-talk:
			if tr.chance(0.5) {
				_ = h.Send("m1", "Hei, er det noen der?")
			}
			h.End()
			tr.mu.Lock()
			tr.visEnded++
			tr.mu.Unlock()
			tr.drainAfterEnd(name, vis, false)
			return
		}
	}
}

// drainAfterEnd reads what was already on its way when the visitor left.
// A Connected posted just before End means End ended a conversation rather
// than abandoning a wait: the switchboard's order is what counts, so the
// outcome is moved. (A contact connected after it was abandoned would stay
// held on a console and fail the final check.)
func (tr *fedTracker) drainAfterEnd(name string, vis *fedVisitor, abandoned bool) {
	deadline := time.After(200 * time.Millisecond)
	for {
		select {
		case e := <-vis.ev:
			if abandoned && strings.HasPrefix(e, "connected ") {
				tr.t.Logf("%s was answered by %s just as they gave up", name, e[10:])
				tr.mu.Lock()
				tr.visAbandoned--
				tr.visEnded++
				tr.mu.Unlock()
				abandoned = false
			}
		case <-deadline:
			return
		}
	}
}
