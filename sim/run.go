package sim

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/helpmesh/helpmesh/overflow"
	"github.com/helpmesh/helpmesh/switchboard"
)

// Mode says how a run joins the scenario's centres.
type Mode string

const (
	// Federation: the centres as helpmesh joins them, overflow and all.
	Federation Mode = "federation"
	// Isolated: each centre on its own, no overflow (the world before).
	Isolated Mode = "isolated"
	// Pooled: one centre holding every volunteer and every arrival, the
	// single national queue that Erlang's formulas assume.
	Pooled Mode = "pooled"
)

// Options adjust a run.
type Options struct {
	Mode Mode
	// Progress, if set, is called now and then with the share of the
	// scenario's time simulated (0 to 1).
	Progress func(done float64)
	Logger   *slog.Logger
}

// drainFor is how long a run goes on after the last arrival, so contacts
// still waiting at the end are answered or leave; what is left after it is
// counted as unfinished.
const drainFor = 2 * time.Hour

// topic is the one categorisation a simulated volunteer gives.
const topic = "simulated"

// Run replays the scenario through helpmesh's own switchboard, one per
// centre, in virtual time, and returns what visitors and volunteers would
// have seen. It returns early with ctx's error.
func Run(ctx context.Context, sc *Scenario, opt Options) (*Result, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	if opt.Mode == "" {
		opt.Mode = Federation
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	began := time.Now()
	r := newRun(sc, opt)
	defer r.close()
	r.schedule()
	r.replay()
	end := r.end.Add(drainFor)
	total := end.Sub(r.start)
	step := max(total/200, time.Minute)
	for at := r.start; at.Before(end); {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("simulate %s: %w", opt.Mode, err)
		}
		at = minTime(at.Add(step), end)
		if err := r.clock.runUntil(ctx, at); err != nil {
			return nil, fmt.Errorf("simulate %s: %w", opt.Mode, err)
		}
		if opt.Progress != nil {
			opt.Progress(float64(at.Sub(r.start)) / float64(total))
		}
	}
	res := r.result()
	res.WallSeconds = time.Since(began).Seconds()
	return res, nil
}

type run struct {
	sc         *Scenario
	mode       Mode
	log        *slog.Logger
	clock      *clock
	start, end time.Time
	delay      time.Duration
	gossip     time.Duration

	rngMu sync.Mutex
	rng   *rand.Rand // volunteers' choices and the network's losses

	centres map[string]*centre
	order   []*centre

	mu       sync.Mutex
	visitors map[string]*visitor // by contact id
	all      []*visitor
}

func newRun(sc *Scenario, opt Options) *run {
	r := &run{
		sc: sc, mode: opt.Mode, log: opt.Logger,
		start:    sc.StartTime(),
		delay:    time.Duration(sc.Network.DelayMillis * float64(time.Millisecond)),
		gossip:   time.Duration(sc.Network.GossipMillis * float64(time.Millisecond)),
		rng:      rand.New(rand.NewPCG(sc.Seed, 0x5eed)),
		centres:  map[string]*centre{},
		visitors: map[string]*visitor{},
	}
	r.end = r.start.Add(time.Duration(sc.Hours * float64(time.Hour)))
	r.clock = newClock(r.start)
	ids := make([]string, 0, len(sc.Centres))
	if r.mode == Pooled {
		ids = append(ids, "pooled")
	} else {
		for _, c := range sc.Centres {
			ids = append(ids, c.ID)
		}
	}
	for _, id := range ids {
		c := &centre{r: r, id: id, view: map[string]overflow.Seen{}, pending: map[string]*pendingOffer{}}
		c.occ.end = r.end
		var of switchboard.Overflow
		if r.mode == Federation && len(ids) > 1 {
			of = &router{c: c}
		}
		sb := r.sc.Policy
		maxQueue := sb.MaxQueue
		if r.mode == Pooled {
			// One queue for every centre's visitors: room for them all.
			maxQueue = max(maxQueue, switchboard.DefaultMaxQueue) * len(r.sc.Centres)
		}
		c.sb = switchboard.New(switchboard.Config{
			Centre:      id,
			RingTimeout: seconds(sb.RingSeconds),
			OverflowAfter: func(channel string) time.Duration {
				return seconds(r.sc.Policy.OverflowAfterSeconds[channel])
			},
			WaitLocallyWhenBusy: func() bool { return r.sc.Policy.WaitLocallyWhenBusy },
			Languages:           func() []string { return r.sc.Policy.Languages },
			Topics:              func() []string { return []string{topic} },
			Overflow:            of,
			OnChange:            c.changed,
			MaxQueue:            maxQueue,
			Pace:                switchboard.Pace{},
			Clock:               r.clock,
			Logger:              r.log,
		})
		r.centres[id] = c
		r.order = append(r.order, c)
	}
	return r
}

func (r *run) close() {
	for _, c := range r.order {
		c.sb.Close()
	}
}

func (r *run) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Float64() < p
}

func (r *run) float() float64 {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Float64()
}

func (r *run) draw(d Dist) (time.Duration, bool) {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return d.draw(r.rng)
}

func (r *run) after(d time.Duration, f func()) switchboard.Timer { return r.clock.AfterFunc(d, f) }

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// schedule sets up every shift and the first arrival of every stream.
func (r *run) schedule() {
	for ci, sc := range r.sc.Centres {
		home := r.centres[sc.ID]
		if r.mode == Pooled {
			home = r.centres["pooled"]
		}
		for gi := range sc.Volunteers {
			g := &sc.Volunteers[gi]
			for i := range g.Count {
				v := &volunteer{c: home, g: g, id: fmt.Sprintf("%s/%s-%d-%d", sc.ID, g.Name, gi, i), talking: map[string]switchboard.Timer{}}
				for _, iv := range r.shiftsOf(g) {
					r.after(iv[0].Sub(r.start), v.startShift)
					r.after(iv[1].Sub(r.start), v.endShift)
				}
			}
		}
		if len(r.sc.Trace) > 0 {
			continue
		}
		for ai := range sc.Arrivals {
			a := &sc.Arrivals[ai]
			// Each stream has a generator of its own, so a federation, its
			// isolated centres and the pooled queue see the same visitors.
			st := &stream{r: r, home: home, entry: sc.ID, a: a, rng: rand.New(rand.NewPCG(r.sc.Seed, uint64(ci)<<32|uint64(ai)))}
			st.next(r.start)
		}
	}
}

// replay schedules a scenario's trace.
func (r *run) replay() {
	for _, tc := range r.sc.Trace {
		home := r.centres[tc.Centre]
		if r.mode == Pooled {
			home = r.centres["pooled"]
		}
		at := r.start.Add(seconds(tc.AtSeconds))
		v := &visitor{r: r, entry: tc.Centre, home: home, arrived: at, channel: tc.Channel, language: tc.Language,
			urgent: tc.Urgent, talk: seconds(tc.TalkSeconds), patience: seconds(tc.PatienceSeconds), patient: tc.PatienceSeconds == 0}
		r.after(at.Sub(r.start), v.arrive)
	}
}

// shiftsOf turns a group's weekly shifts into the intervals of this run.
func (r *run) shiftsOf(g *Volunteers) [][2]time.Time {
	wd := (int(r.start.Weekday()) + 6) % 7 // Monday 0
	y, m, d := r.start.Date()
	monday := time.Date(y, m, d, 0, 0, 0, 0, r.start.Location()).AddDate(0, 0, -wd)
	stop := r.end.Add(drainFor)
	var out [][2]time.Time
	for _, s := range g.Shifts {
		spans, _ := s.spans()
		for _, sp := range spans {
			for w := -1; ; w++ {
				from := monday.Add(time.Duration(w*week+sp.from) * time.Minute)
				to := monday.Add(time.Duration(w*week+sp.to) * time.Minute)
				if !from.Before(stop) {
					break
				}
				from, to = maxTime(from, r.start), minTime(to, stop)
				if from.Before(to) {
					out = append(out, [2]time.Time{from, to})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b [2]time.Time) int { return a[0].Compare(b[0]) })
	return out
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// stream is one Arrivals of one centre: a Poisson process whose rate is
// that of the hour of day.
type stream struct {
	r     *run
	home  *centre
	entry string
	a     *Arrivals
	rng   *rand.Rand
}

func (st *stream) rate(t time.Time) float64 {
	if len(st.a.PerHour) == 1 {
		return st.a.PerHour[0]
	}
	return st.a.PerHour[t.Hour()]
}

// next schedules the first arrival after t. The process is memoryless, so
// at each change of rate (an hour boundary) it starts afresh.
func (st *stream) next(t time.Time) {
	for t.Before(st.r.end) {
		boundary := t.Truncate(time.Hour).Add(time.Hour)
		lambda := st.rate(t)
		if lambda <= 0 {
			t = boundary
			continue
		}
		// Compare in float hours first: a tiny rate's gap overflows a
		// Duration.
		gap := st.rng.ExpFloat64() / lambda
		if gap >= boundary.Sub(t).Hours() {
			t = boundary
			continue
		}
		at := t.Add(time.Duration(gap * float64(time.Hour)))
		if !at.Before(st.r.end) {
			return
		}
		v := &visitor{r: st.r, entry: st.entry, home: st.home, arrived: at, channel: st.a.Channel, language: st.a.Language}
		v.urgent = st.a.Urgent > 0 && st.rng.Float64() < st.a.Urgent
		v.talk, _ = st.r.sc.Behaviour.TalkTime.draw(st.rng)
		v.patience, v.patient = st.r.sc.Behaviour.Patience.draw(st.rng)
		v.patient = !v.patient
		st.r.after(at.Sub(st.r.clock.Now()), func() {
			v.arrive()
			st.next(at)
		})
		return
	}
}

// centreOf reads the centre from a simulated volunteer's alias.
func centreOf(alias string) string {
	c, _, _ := strings.Cut(alias, "/")
	return c
}
