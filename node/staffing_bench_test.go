package node

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/switchboard"
)

// BenchmarkUnevenStaffing is issue 17's scenario on a real in-process
// federation (Raft, memberlist, libp2p on loopback): three centres with 1, 4
// and 2 chat volunteers, Poisson arrivals with 70% at the centre with one.
// The same arrival schedule (fixed seed) runs against
//
//   - old: the policy's wait_locally_when_busy, a contact waits the whole
//     overflow_after however busy its centre is (the rule before level 7);
//   - new: the default, a contact goes to a centre with someone free at once
//     when waiting at its own cannot help (switchboard/busy.go);
//   - pooled: one centre holding all seven volunteers, every contact
//     arriving there: the limit a national queue reaches.
//
// It reports, per variant, the mean and p90 speed to answer of all
// contacts, of the contacts that overflowed, and of those that arrived at
// the centre with one volunteer (the same contacts in every variant); the
// share answered at their own centre and the share answered at all. It
// asserts nothing about time. Run it once:
//
//	go test -run '^$' -bench UnevenStaffing -benchtime 1x ./node
//
// The scale is compressed so that a variant takes about 40 s: service
// times average 4 s (exponential, 0.5-16 s) where a chat takes tens of
// minutes, and overflow_after is 2 s where the default is 60 s. What
// matters for the rule is the ratio of the two: in the benchmark a busy
// volunteer frees up within overflow_after about 40% of the time (a
// contact waiting at their centre under the old rule is then answered
// there), where in a real evening it is a few percent. So the benchmark
// favours the old rule, and the gap it shows is a lower bound. The load
// is 1.2 contacts a second for 7 volunteers: 69% of their time.
func BenchmarkUnevenStaffing(b *testing.B) {
	sc := unevenScenario()

	f := newFederation(b, 3, fedOptions{})
	nodes := map[string]*Node{"c1": f.node("c1"), "c2": f.node("c2"), "c3": f.node("c3")}
	staff := map[string]int{"c1": 1, "c2": 4, "c3": 2}
	signInBots(b, nodes, staff)

	var results []variantResult
	for _, wait := range []bool{true, false} {
		setStaffingPolicy(b, f.node("c1"), nodes, sc.overflowAfter, wait)
		settleStaffing(b, nodes, staff)
		name := "new"
		if wait {
			name = "old"
		}
		results = append(results, runScenario(b, name, sc, func(entry string) *Node { return nodes[entry] }))
	}

	pf := newFederation(b, 1, fedOptions{})
	pooled := map[string]*Node{"c1": pf.node("c1")}
	pooledStaff := map[string]int{"c1": 7}
	signInBots(b, pooled, pooledStaff)
	setStaffingPolicy(b, pf.node("c1"), pooled, sc.overflowAfter, false)
	settleStaffing(b, pooled, pooledStaff)
	results = append(results, runScenario(b, "pooled", sc, func(string) *Node { return pooled["c1"] }))

	b.StopTimer()
	reportStaffing(b, sc, results)
}

// scenario is one fixed arrival schedule.
type scenario struct {
	arrivals      []arrival
	overflowAfter int // seconds
	patience      time.Duration
}

type arrival struct {
	at      time.Duration // since the run's start
	entry   string        // the centre the visitor starts at
	service time.Duration // how long the conversation lasts once answered
}

// unevenScenario draws the schedule: 40 contacts, Poisson at 1.2 a second,
// 70% at c1, 20% at c2, 10% at c3; exponential service times.
func unevenScenario() scenario {
	const (
		contacts    = 40
		perSecond   = 1.2
		meanService = 4 * time.Second
	)
	r := rand.New(rand.NewPCG(17, 2026))
	sc := scenario{overflowAfter: 2, patience: 60 * time.Second}
	var at time.Duration
	for range contacts {
		at += time.Duration(r.ExpFloat64() / perSecond * float64(time.Second))
		entry := "c1"
		switch u := r.Float64(); {
		case u >= 0.9:
			entry = "c3"
		case u >= 0.7:
			entry = "c2"
		}
		service := time.Duration(r.ExpFloat64() * float64(meanService))
		service = min(max(service, meanService/8), 4*meanService)
		sc.arrivals = append(sc.arrivals, arrival{at: at, entry: entry, service: service})
	}
	return sc
}

// botConsole is a volunteer who takes every offer at once and, once a
// conversation ends, categorises it.
type botConsole struct {
	console atomic.Pointer[switchboard.Console]
}

func (p *botConsole) Offer(o switchboard.Offer) {
	if c := p.console.Load(); c != nil {
		go func() { _ = c.Accept(o.Contact) }()
	}
}
func (p *botConsole) OfferWithdrawn(string, string) {}
func (p *botConsole) Connected(string, string)      {}
func (p *botConsole) Event(contact string, e switchboard.Event) {
	if c := p.console.Load(); c != nil && e.Kind == switchboard.EventEnded {
		go func() { _ = c.End(contact, switchboard.Categorisation{Topics: []string{"other"}, AgeGroup: "unknown"}) }()
	}
}
func (p *botConsole) Lost(string, int)                       {}
func (p *botConsole) Availability(map[string]bool, int, int) {}

// signInBots signs in staff[centre] bots at each centre, capacity 1, chat in
// nb; a bot's alias names its centre.
func signInBots(b *testing.B, nodes map[string]*Node, staff map[string]int) {
	b.Helper()
	for _, id := range slices.Sorted(maps.Keys(nodes)) {
		for i := range staff[id] {
			p := &botConsole{}
			v := switchboard.Volunteer{ID: fmt.Sprintf("%s-v%d", id, i), Alias: fmt.Sprintf("%s/bot%d", id, i), Channels: []string{"chat"}, Languages: []string{"nb"}, Capacity: 1}
			c, err := nodes[id].Switchboard().SignIn(v, p)
			if err != nil {
				b.Fatal(err)
			}
			p.console.Store(c)
			if err := c.SetAvailable("chat", true); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// setStaffingPolicy sets overflow_after for chat and wait_locally_when_busy,
// and waits until every centre applies it.
func setStaffingPolicy(b *testing.B, via *Node, nodes map[string]*Node, overflowAfter int, wait bool) {
	b.Helper()
	p := via.Roster().Policy
	p.OverflowAfterSeconds = map[string]int{"chat": overflowAfter, "phone": overflowAfter}
	p.WaitLocallyWhenBusy = wait
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := via.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetPolicy, Policy: &p}); err != nil {
		b.Fatal(err)
	}
	eventually(b, 20*time.Second, "the policy at every centre", func() bool {
		for _, n := range nodes {
			q := n.Roster().Policy
			if q.WaitLocallyWhenBusy != wait || q.OverflowAfterSeconds["chat"] != overflowAfter {
				return false
			}
		}
		return true
	})
}

// settleStaffing waits until every bot is free, in its own centre's live
// state and in every other centre's gossip view, and nothing waits: a
// variant starts where the one before it did.
func settleStaffing(b *testing.B, nodes map[string]*Node, staff map[string]int) {
	b.Helper()
	eventually(b, 60*time.Second, "every volunteer free, in every view", func() bool {
		for id, n := range nodes {
			a := n.Switchboard().Availability()["chat"]
			if a.Free["nb"] != staff[id] || a.QueueLength != 0 {
				return false
			}
			for _, s := range n.Gossip().View() {
				if other, ok := nodes[s.Centre]; ok && other != n && s.Availability.Channels["chat"].Free["nb"] != staff[s.Centre] {
					return false
				}
			}
		}
		return true
	})
}

// loadVisitor is one visitor of the schedule.
type loadVisitor struct {
	once     sync.Once
	answered chan struct{}
	at       time.Time
	by       string // the answering volunteer's alias
}

func (v *loadVisitor) Queued(int, switchboard.Estimate) {}
func (v *loadVisitor) Connected(alias string) {
	v.once.Do(func() { v.at, v.by = time.Now(), alias; close(v.answered) })
}
func (v *loadVisitor) Event(switchboard.Event) {}
func (v *loadVisitor) Requeued(int)            {}
func (v *loadVisitor) Closed(string)           {}

// outcome is what became of one arrival.
type outcome struct {
	arrival
	answered bool
	wait     time.Duration // arrival to first answer
	home     string        // the centre it started at (pooled: the one)
	centre   string        // the answering volunteer's centre
}

type variantResult struct {
	name     string
	outcomes []outcome
}

// runScenario plays the schedule: each visitor starts at its entry centre
// at its time, talks for its service time once answered, then leaves; a
// visitor nobody answers within the patience leaves unanswered.
func runScenario(b *testing.B, name string, sc scenario, at func(entry string) *Node) variantResult {
	b.Helper()
	res := variantResult{name: name, outcomes: make([]outcome, len(sc.arrivals))}
	var wg sync.WaitGroup
	start := time.Now()
	for i, a := range sc.arrivals {
		time.Sleep(time.Until(start.Add(a.at)))
		v := &loadVisitor{answered: make(chan struct{})}
		home := at(a.entry)
		began := time.Now()
		h, err := home.Switchboard().StartContact("chat", "nb", v)
		if err != nil {
			b.Fatalf("%s: contact %d at %s: %v", name, i, a.entry, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := outcome{arrival: a, home: home.Centre()}
			patience := time.NewTimer(sc.patience)
			defer patience.Stop()
			select {
			case <-v.answered:
			case <-patience.C:
				v.once.Do(func() {}) // too late for Connected to count
			}
			select {
			case <-v.answered:
				o.answered, o.wait = true, v.at.Sub(began)
				o.centre, _, _ = strings.Cut(v.by, "/")
				time.Sleep(a.service)
			default:
			}
			h.End()
			res.outcomes[i] = o
		}()
	}
	wg.Wait()
	return res
}

// staffingFigures are one variant's figures.
type staffingFigures struct {
	all, overflowed, atC1 latencies
	arrived, answered     int
	local                 int
}

func figuresOf(r variantResult) staffingFigures {
	var f staffingFigures
	for _, o := range r.outcomes {
		f.arrived++
		if !o.answered {
			continue
		}
		f.answered++
		f.all = append(f.all, o.wait)
		if o.centre == o.home {
			f.local++
		} else {
			f.overflowed = append(f.overflowed, o.wait)
		}
		if o.entry == "c1" {
			f.atC1 = append(f.atC1, o.wait)
		}
	}
	for _, l := range []latencies{f.all, f.overflowed, f.atC1} {
		slices.Sort(l)
	}
	return f
}

func reportStaffing(b *testing.B, sc scenario, results []variantResult) {
	secs := func(d time.Duration) float64 { return d.Seconds() }
	share := func(n, of int) float64 {
		if of == 0 {
			return 0
		}
		return 100 * float64(n) / float64(of)
	}
	var rows []string
	var pooledMean, newMean time.Duration
	for _, r := range results {
		f := figuresOf(r)
		p := r.name + "-"
		b.ReportMetric(secs(f.all.mean()), p+"asa-mean-s")
		b.ReportMetric(secs(f.all.percentile(90)), p+"asa-p90-s")
		b.ReportMetric(secs(f.overflowed.mean()), p+"overflowed-asa-mean-s")
		b.ReportMetric(secs(f.overflowed.percentile(90)), p+"overflowed-asa-p90-s")
		b.ReportMetric(secs(f.atC1.mean()), p+"c1-asa-mean-s")
		b.ReportMetric(share(f.local, f.answered), p+"answered-locally-pct")
		b.ReportMetric(share(f.answered, f.arrived), p+"answered-pct")
		rows = append(rows, fmt.Sprintf("%-7s %5.2f %5.2f   %3d %5.2f %5.2f   %5.2f %5.2f   %5.1f%%   %5.1f%%",
			r.name, secs(f.all.mean()), secs(f.all.percentile(90)),
			len(f.overflowed), secs(f.overflowed.mean()), secs(f.overflowed.percentile(90)),
			secs(f.atC1.mean()), secs(f.atC1.percentile(90)),
			share(f.local, f.answered), share(f.answered, f.arrived)))
		switch r.name {
		case "pooled":
			pooledMean = f.all.mean()
		case "new":
			newMean = f.all.mean()
		}
	}
	if pooledMean > 0 {
		b.ReportMetric(float64(newMean)/float64(pooledMean), "new-asa-x-pooled")
	}
	b.Logf("%d contacts, overflow_after %d s; speed to answer in seconds (mean, p90)\n"+
		"variant   all        overflowed (n)      at c1        locally  answered\n%s",
		len(sc.arrivals), sc.overflowAfter, strings.Join(rows, "\n"))
}
