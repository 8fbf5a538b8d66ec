package switchboard

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var (
	propSeeds = flag.Int("prop.seeds", 200, "seeds TestPropertyNoDoubleAssignmentNoOverCapacity runs")
	propSeed  = flag.Int64("prop.seed", 0, "run only this seed of TestPropertyNoDoubleAssignmentNoOverCapacity")
	propSteps = flag.Int("prop.steps", 150, "random actions per seed")
)

// TestPropertyNoDoubleAssignmentNoOverCapacity runs two switchboards, A and
// B, linked both ways by an in-memory overflow (Reserve / Wait / Connect /
// Release over an in-memory relay), through a seeded random schedule of
// contacts, volunteers signing in and out and switching channels on and
// off, offers accepted, declined or left to ring out, visitors leaving and
// conversations ending. After every step, and on every event the sinks
// hear, it checks: no contact is connected on two consoles at once; no
// console holds more conversations than its capacity; a console never has
// two offers ringing; a connected visitor is held by exactly one console
// (with the alias the visitor was told) and a console holds only connected
// visitors; the counters are conserved; with care for volunteers on (every
// other seed: some conversations are categorised heavy, volunteers
// sometimes say they are ready), no console is offered a contact while
// the last care notice it heard holds offers back (a cool-down it did not
// end with Ready, a break, the end of its shift). At the end every contact must have
// exactly one terminal outcome (abandoned, or ended after a conversation)
// and the counters must agree with what the visitors heard.
//
// A quarter of the contacts are urgent (urgent.go). Every offer a console
// hears must be marked urgent exactly when its contact is, and no contact
// that is not urgent is offered for the first time while an urgent one of
// the same centre, channel and language waits without ever having been
// offered, whichever arrived first (which covers the issue's "never after
// a non-urgent one that arrived later", and says the urgent one jumps the
// queue). An offer is the centre ringing a console of its own, or sending
// it to the other centre.
func TestPropertyNoDoubleAssignmentNoOverCapacity(t *testing.T) {
	seeds := make([]int64, 0, *propSeeds)
	if *propSeed != 0 {
		seeds = append(seeds, *propSeed)
	} else {
		for i := 1; i <= *propSeeds; i++ {
			seeds = append(seeds, int64(i))
		}
	}
	var total propCounts
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newPropWorld(t, seed)
				w.run(*propSteps)
				total.add(&w.counts)
				if len(w.violations) > 0 {
					t.Errorf("seed %d (rerun with -run TestPropertyNoDoubleAssignmentNoOverCapacity -prop.seed=%d): %d violations, first: %s\nwhat led to it:\n  %s",
						seed, seed, len(w.violations), w.violations[0], strings.Join(w.firstHistory, "\n  "))
				}
			})
		})
	}
	t.Logf("%d seeds: %s", len(seeds), total.String())
	if total.double != 0 || total.overCap != 0 || total.offeredResting != 0 || total.urgentLate != 0 || total.badMark != 0 {
		t.Errorf("double assignments %d, over capacity %d, offers while resting %d, urgent offered after a later contact %d, offers marked wrongly %d: all must be 0",
			total.double, total.overCap, total.offeredResting, total.urgentLate, total.badMark)
	}
	if total.urgentPairs == 0 || total.urgentOffered == 0 {
		t.Errorf("the schedules never put an urgent contact before a later one (%d pairs, %d urgent offered): the order was not tested", total.urgentPairs, total.urgentOffered)
	}
}

type propCounts struct {
	contacts, offers, localAnswers, overflowAnswers, declines, timeouts, withdrawn, requeues, abandoned, ended uint64
	double, overCap, otherViolations                                                                           uint64
	// Care for volunteers (care.go): rests entered by reason, Ready
	// used, and offers made while a rest held (a violation).
	coolDowns, breaks, shiftsOver, readies, offeredResting uint64
	// Urgent contacts: started, offered at least once, and the (urgent,
	// later non-urgent) pairs checked; urgentLate counts those where the
	// later one went first, badMark the offers marked wrongly.
	urgent, urgentOffered, urgentPairs, urgentLate, badMark uint64
}

func (c *propCounts) add(o *propCounts) {
	c.contacts += o.contacts
	c.offers += o.offers
	c.localAnswers += o.localAnswers
	c.overflowAnswers += o.overflowAnswers
	c.declines += o.declines
	c.timeouts += o.timeouts
	c.withdrawn += o.withdrawn
	c.requeues += o.requeues
	c.abandoned += o.abandoned
	c.ended += o.ended
	c.double += o.double
	c.overCap += o.overCap
	c.otherViolations += o.otherViolations
	c.coolDowns += o.coolDowns
	c.breaks += o.breaks
	c.shiftsOver += o.shiftsOver
	c.readies += o.readies
	c.offeredResting += o.offeredResting
	c.urgent += o.urgent
	c.urgentOffered += o.urgentOffered
	c.urgentPairs += o.urgentPairs
	c.urgentLate += o.urgentLate
	c.badMark += o.badMark
}

func (c *propCounts) String() string {
	return fmt.Sprintf("contacts %d (urgent %d, %d of them offered; %d urgent-before-later pairs checked), offers %d, answered here %d, answered at the other centre %d, declines %d, ring timeouts %d, other withdrawals %d, requeues %d, abandoned %d, ended %d; care: cool-downs %d, breaks %d, shifts over %d, ready %d; double assignments %d, over capacity %d, offers while resting %d, urgent offered after a later contact %d, offers marked wrongly %d, other violations %d",
		c.contacts, c.urgent, c.urgentOffered, c.urgentPairs, c.offers, c.localAnswers, c.overflowAnswers, c.declines, c.timeouts, c.withdrawn, c.requeues, c.abandoned, c.ended,
		c.coolDowns, c.breaks, c.shiftsOver, c.readies, c.double, c.overCap, c.offeredResting, c.urgentLate, c.badMark, c.otherViolations)
}

// ---- the world ----

type propCentre struct {
	name    string
	sb      *Switchboard
	other   *propCentre
	started int

	// What gossip would carry: published at quiet moments, read by the
	// other centre's Candidates (never under our switchboard's lock).
	pubMu   sync.Mutex
	version uint64
	free    map[string]int // channel/language -> free volunteers
	lastPub string
}

// publish is gossip: if the centre's availability changed since it was
// last published, a new version goes out. It reports whether it did.
func (c *propCentre) publish() bool {
	free := map[string]int{}
	var keys []string
	for ch, v := range c.sb.Availability() {
		for l, n := range v.Free {
			if n > 0 {
				free[ch+"/"+l] = n
				keys = append(keys, fmt.Sprintf("%s/%s=%d", ch, l, n))
			}
		}
	}
	slices.Sort(keys)
	key := strings.Join(keys, ",")
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	if key == c.lastPub && c.version > 0 {
		return false
	}
	c.lastPub, c.free = key, free
	c.version++
	return true
}

type propWorld struct {
	t        *testing.T
	seed     int64
	rng      *rand.Rand
	centres  [2]*propCentre
	vols     []*propVol
	visitors []*propVisitor
	plans    []*propPlan
	msgSeq   int
	// care is the care policy both centres keep; zero on odd seeds.
	care CarePolicy

	mu           sync.Mutex // the trackers below; sinks run on outbox goroutines
	history      []string
	firstHistory []string
	holder       map[string]*propVol
	byID         map[string]*propVisitor
	// By contact id: when it was first offered (rung on a console of its
	// centre, or sent to the other centre), and how each offer a console
	// heard was marked. Kept by id because an offer may be heard before
	// StartContactWith returns the id; judged in windDown.
	firstOffer map[string]propStamp
	marks      map[string][]bool
	// step counts the test's actions, to order what happens at one instant.
	step       int
	violations []string
	counts     propCounts
}

type propVol struct {
	w      *propWorld
	centre *propCentre
	v      Volunteer
	con    *Console
	on     map[string]bool
	// guarded by w.mu
	gen       int
	ringing   string
	newOffers []Offer
	active    map[string]bool
	ended     []string   // ended by the other side: to categorise
	care      CareNotice // the last care notice the console heard
}

type propVisitor struct {
	w      *propWorld
	centre *propCentre
	h      *VisitorHandle
	id     string
	// guarded by w.mu
	state string // waiting, connected, abandoned, ended
	alias string
	// ch, lang and urgent as started; arrived when, and left when the
	// visitor left while waiting (zero: never).
	ch, lang      string
	urgent        bool
	arrived, left propStamp
	connects      int
	requeues      int
}

type propPlan struct {
	vol     *propVol
	gen     int
	contact string
	at      time.Time
	accept  bool
}

func newPropWorld(t *testing.T, seed int64) *propWorld {
	w := &propWorld{t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), holder: map[string]*propVol{}, byID: map[string]*propVisitor{},
		firstOffer: map[string]propStamp{}, marks: map[string][]bool{}}
	a, b := &propCentre{name: "A"}, &propCentre{name: "B"}
	a.other, b.other = b, a
	w.centres = [2]*propCentre{a, b}
	ring := time.Duration(4+w.rng.Intn(8)) * time.Second
	after := time.Duration(5+w.rng.Intn(20)) * time.Second
	if seed%2 == 0 {
		w.care = CarePolicy{HeavyTopics: []string{"family"}, CoolDown: time.Duration(3+w.rng.Intn(20)) * time.Second,
			MaxInARow: 2 + w.rng.Intn(3), Break: time.Duration(5+w.rng.Intn(15)) * time.Second}
		if w.rng.Intn(3) == 0 {
			w.care.MaxShift = time.Duration(60+w.rng.Intn(200)) * time.Second
			w.care.ShiftNotice = w.care.MaxShift / 4
		}
	}
	for _, c := range w.centres {
		c.sb = New(Config{
			Centre:        c.name,
			RingTimeout:   ring,
			OverflowAfter: func(string) time.Duration { return after },
			Topics:        func() []string { return testTopics },
			Overflow:      &memOverflow{from: c, to: c.other, sent: w.offered},
			Care:          func() CarePolicy { return w.care },
		})
	}
	langs := [][]string{{"nb"}, {"en"}, {"nb", "en"}, {"nb", "en"}}
	chans := [][]string{{ChannelChat}, {ChannelChat}, {ChannelChat, ChannelPhone}, {ChannelPhone}}
	for _, c := range w.centres {
		n := 2 + w.rng.Intn(3)
		for i := range n {
			id := fmt.Sprintf("%s%d", strings.ToLower(c.name), i+1)
			w.vols = append(w.vols, &propVol{w: w, centre: c, on: map[string]bool{}, active: map[string]bool{}, v: Volunteer{
				ID: id, Alias: "alias-" + id, Capacity: 1 + w.rng.Intn(2),
				Languages: langs[w.rng.Intn(len(langs))], Channels: chans[w.rng.Intn(len(chans))],
			}})
		}
	}
	w.logf("ring %v, overflow after %v, care %+v", ring, after, w.care)
	return w
}

// offered notes a contact's offer by its centre: the first is timed.
func (w *propWorld) offered(contact string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.offeredLocked(contact)
}

func (w *propWorld) offeredLocked(contact string) {
	if _, ok := w.firstOffer[contact]; !ok {
		w.firstOffer[contact] = w.nowLocked()
	}
}

// propStamp orders what happens in a run: synctest's clock, then the
// test's action at that instant. Everything one action sets off (its
// dispatch, the offers heard) carries the action's stamp; what timers set
// off carries their instant and the last action's step, which is earlier
// than any action at that instant.
type propStamp struct {
	at   time.Time
	step int
}

func (a propStamp) before(b propStamp) bool {
	return a.at.Before(b.at) || a.at.Equal(b.at) && a.step < b.step
}

func (a propStamp) String() string {
	return fmt.Sprintf("%v#%d", a.at.Sub(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)), a.step)
}

func (w *propWorld) nowLocked() propStamp { return propStamp{time.Now(), w.step} }

// nextStep begins one action of the test.
func (w *propWorld) nextStep() {
	w.mu.Lock()
	w.step++
	w.mu.Unlock()
}

// checkUrgentLocked judges the urgent contacts once the run is over: every
// offer marked as its contact is, and no urgent contact offered after one
// that is not urgent and arrived later at its centre for its channel and
// language, while it still waited. Times are synctest's: everything one
// dispatch does happens at one instant, so a tie is one dispatch offering
// both.
func (w *propWorld) checkUrgentLocked() {
	for id, marks := range w.marks {
		vis := w.byID[id]
		for _, m := range marks {
			if vis != nil && m != vis.urgent {
				w.violateLocked(&w.counts.badMark, "contact %s (urgent %v) offered marked urgent %v", id[:6], vis.urgent, m)
			}
		}
	}
	for _, u := range w.visitors {
		if !u.urgent {
			continue
		}
		uAt, uOffered := w.firstOffer[u.id]
		if uOffered {
			w.counts.urgentOffered++
		}
		for _, n := range w.visitors {
			if n.urgent || n.centre != u.centre || n.ch != u.ch || n.lang != u.lang {
				continue
			}
			nAt, nOffered := w.firstOffer[n.id]
			if !nOffered || nAt.before(u.arrived) {
				continue // offered before the urgent one came
			}
			if !u.left.at.IsZero() && u.left.before(nAt) {
				continue // the urgent one had left
			}
			w.counts.urgentPairs++
			if !uOffered || nAt.before(uAt) {
				w.violateLocked(&w.counts.urgentLate, "urgent contact %s at %s (%s/%s, came %v) first offered %v (ever: %v), after %s (came %v, first offered %v); urgent one left %v",
					u.id[:6], u.centre.name, u.ch, u.lang, u.arrived, uAt, uOffered, n.id[:6], n.arrived, nAt, u.left)
			}
		}
	}
}

func (w *propWorld) logf(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.noteLocked(format, args...)
}

// noteLocked adds a line to the recent history; w.mu is held.
func (w *propWorld) noteLocked(format string, args ...any) {
	line := fmt.Sprintf("%9v ", since2000()) + fmt.Sprintf(format, args...)
	w.history = append(w.history, line)
	if len(w.history) > 60 {
		w.history = w.history[1:]
	}
}

func since2000() time.Duration { return time.Since(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) }

// violateLocked records a broken invariant; w.mu is held. The history up
// to the first one is kept for the report.
func (w *propWorld) violateLocked(kind *uint64, format string, args ...any) {
	*kind++
	v := fmt.Sprintf("at %v: ", since2000()) + fmt.Sprintf(format, args...)
	w.noteLocked("VIOLATION %s", v)
	if len(w.violations) == 0 {
		w.firstHistory = append([]string(nil), w.history...)
	}
	w.violations = append(w.violations, v)
}

func (w *propWorld) run(steps int) {
	w.settle()
	for range steps {
		var d time.Duration
		if w.rng.Intn(5) > 0 {
			d = time.Duration(50+w.rng.Intn(4000)) * time.Millisecond
		}
		target := time.Now().Add(d)
		for {
			p := w.nextPlan(target)
			if p == nil {
				break
			}
			sleepUntil(p.at)
			w.settle()
			w.nextStep()
			w.execPlan(p)
			w.settle()
		}
		sleepUntil(target)
		w.settle()
		w.nextStep()
		w.randomAction()
		w.settle()
	}
	w.windDown()
}

func sleepUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
}

// settle lets every outbox, relay and offer goroutine run, emulates gossip
// (both centres re-dispatch), then plans what the consoles do about new
// offers and checks the invariants.
func (w *propWorld) settle() {
	synctest.Wait()
	for _, c := range w.centres {
		if c.publish() {
			c.other.sb.Kick()
		}
	}
	synctest.Wait()
	w.planOffers()
	w.check()
}

func (w *propWorld) planOffers() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.vols {
		for _, o := range v.newOffers {
			w.counts.offers++
			r := w.rng.Float64()
			if r >= 0.75 {
				continue // let it ring out
			}
			at := time.Now().Add(time.Duration(w.rng.Intn(6000)) * time.Millisecond)
			w.plans = append(w.plans, &propPlan{vol: v, gen: v.gen, contact: o.Contact, at: at, accept: r < 0.5})
		}
		v.newOffers = nil
	}
}

func (w *propWorld) nextPlan(before time.Time) *propPlan {
	var best *propPlan
	for _, p := range w.plans {
		if !p.at.After(before) && (best == nil || p.at.Before(best.at)) {
			best = p
		}
	}
	if best != nil {
		w.plans = slices.DeleteFunc(w.plans, func(p *propPlan) bool { return p == best })
	}
	return best
}

func (w *propWorld) execPlan(p *propPlan) {
	v := p.vol
	w.mu.Lock()
	stale := v.con == nil || v.gen != p.gen
	w.mu.Unlock()
	if stale {
		return
	}
	if p.accept {
		err := v.con.Accept(p.contact)
		w.logf("%s accepts %s: %v", v.v.ID, p.contact[:6], err)
		if err != nil && !errors.Is(err, ErrOfferGone) {
			w.mu.Lock()
			w.violateLocked(&w.counts.otherViolations, "accept: %v", err)
			w.mu.Unlock()
		}
		return
	}
	err := v.con.Decline(p.contact)
	w.logf("%s declines %s: %v", v.v.ID, p.contact[:6], err)
	if err == nil {
		w.mu.Lock()
		w.counts.declines++
		w.mu.Unlock()
	}
}

func (w *propWorld) randomAction() {
	type action struct {
		weight int
		do     func() bool
	}
	actions := []action{
		{5, w.startVisitor},
		{2, w.signIn},
		{1, w.signOut},
		{2, w.toggle},
		{2, w.visitorEnds},
		{3, w.volunteerEnds},
		{3, w.sendSomething},
		{2, w.categorise},
		{1, w.ready},
	}
	total := 0
	for _, a := range actions {
		total += a.weight
	}
	for range 10 { // an action may find nothing to do: try another
		r := w.rng.Intn(total)
		for _, a := range actions {
			if r < a.weight {
				if a.do() {
					return
				}
				break
			}
			r -= a.weight
		}
	}
}

func (w *propWorld) startVisitor() bool {
	c := w.centres[0]
	if w.rng.Intn(3) == 0 {
		c = w.centres[1]
	}
	ch := ChannelChat
	if w.rng.Intn(5) == 0 {
		ch = ChannelPhone
	}
	lang := "nb"
	if w.rng.Intn(5) < 2 {
		lang = "en"
	}
	urgent := w.rng.Intn(4) == 0
	w.mu.Lock()
	arrived := w.nowLocked()
	w.mu.Unlock()
	vis := &propVisitor{w: w, centre: c, state: "waiting", ch: ch, lang: lang, urgent: urgent, arrived: arrived}
	h, err := c.sb.StartContactWith(ch, lang, vis, ContactOptions{Urgent: urgent})
	if err != nil {
		w.t.Fatalf("start contact: %v", err)
	}
	vis.h, vis.id = h, h.ID()
	c.started++
	w.visitors = append(w.visitors, vis)
	w.mu.Lock()
	w.byID[vis.id] = vis
	w.counts.contacts++
	if urgent {
		w.counts.urgent++
	}
	w.mu.Unlock()
	w.logf("visitor %s starts at %s on %s/%s (urgent %v)", vis.id[:6], c.name, ch, lang, urgent)
	return true
}

func (w *propWorld) pickVol(ok func(v *propVol) bool) *propVol {
	var cands []*propVol
	w.mu.Lock()
	for _, v := range w.vols {
		if ok(v) {
			cands = append(cands, v)
		}
	}
	w.mu.Unlock()
	if len(cands) == 0 {
		return nil
	}
	return cands[w.rng.Intn(len(cands))]
}

func (w *propWorld) signIn() bool {
	v := w.pickVol(func(v *propVol) bool { return v.con == nil })
	if v == nil {
		return false
	}
	w.mu.Lock()
	v.gen++
	sink := &propSink{v: v, gen: v.gen}
	w.mu.Unlock()
	con, err := v.centre.sb.SignIn(v.v, sink)
	if err != nil {
		w.t.Fatalf("sign in: %v", err)
	}
	v.con = con
	clear(v.on)
	for _, ch := range v.v.Channels {
		if w.rng.Intn(4) > 0 {
			if err := con.SetAvailable(ch, true); err != nil {
				w.t.Fatalf("available: %v", err)
			}
			v.on[ch] = true
		}
	}
	w.logf("%s signs in at %s (capacity %d, %v, %v), on %v", v.v.ID, v.centre.name, v.v.Capacity, v.v.Channels, v.v.Languages, v.on)
	return true
}

func (w *propWorld) signOut() bool {
	v := w.pickVol(func(v *propVol) bool { return v.con != nil })
	if v == nil {
		return false
	}
	w.mu.Lock()
	w.forgetConsoleLocked(v)
	w.mu.Unlock()
	v.con.SignOut()
	v.con = nil
	w.logf("%s signs out", v.v.ID)
	return true
}

// forgetConsoleLocked drops what a closing console held: its conversations
// are requeued by the switchboard (the visitor hears it), its offer goes on.
func (w *propWorld) forgetConsoleLocked(v *propVol) {
	v.gen++
	for c := range v.active {
		w.releaseLocked(v, c)
	}
	v.ringing, v.newOffers, v.ended = "", nil, nil
	v.care = CareNotice{}
}

func (w *propWorld) toggle() bool {
	v := w.pickVol(func(v *propVol) bool { return v.con != nil })
	if v == nil {
		return false
	}
	ch := v.v.Channels[w.rng.Intn(len(v.v.Channels))]
	on := !v.on[ch]
	if err := v.con.SetAvailable(ch, on); err != nil {
		w.t.Fatalf("set available: %v", err)
	}
	v.on[ch] = on
	w.logf("%s switches %s %v", v.v.ID, ch, on)
	return true
}

func (w *propWorld) visitorEnds() bool {
	var live []*propVisitor
	w.mu.Lock()
	for _, vis := range w.visitors {
		if vis.state == "waiting" || vis.state == "connected" {
			live = append(live, vis)
		}
	}
	w.mu.Unlock()
	if len(live) == 0 {
		return false
	}
	w.endVisitor(live[w.rng.Intn(len(live))])
	return true
}

func (w *propWorld) endVisitor(vis *propVisitor) {
	w.mu.Lock()
	switch vis.state {
	case "waiting":
		vis.state = "abandoned"
		vis.left = w.nowLocked()
		w.counts.abandoned++
	case "connected":
		vis.state = "ended"
		w.counts.ended++
	}
	st := vis.state
	w.mu.Unlock()
	vis.h.End()
	w.logf("visitor %s leaves: %s", vis.id[:6], st)
}

func (w *propWorld) activeOf(v *propVol) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for c := range v.active {
		out = append(out, c)
	}
	slices.Sort(out)
	return out
}

func (w *propWorld) volunteerEnds() bool {
	v := w.pickVol(func(v *propVol) bool { return v.con != nil && len(v.active) > 0 })
	if v == nil {
		return false
	}
	act := w.activeOf(v)
	c := act[w.rng.Intn(len(act))]
	w.mu.Lock()
	w.releaseLocked(v, c)
	w.mu.Unlock()
	err := v.con.End(c, w.categorisation())
	w.logf("%s ends %s: %v", v.v.ID, c[:6], err)
	if err != nil {
		w.mu.Lock()
		w.violateLocked(&w.counts.otherViolations, "%s could not end its active conversation %s: %v", v.v.ID, c[:6], err)
		w.mu.Unlock()
	}
	return true
}

func (w *propWorld) sendSomething() bool {
	w.msgSeq++
	id := fmt.Sprintf("m%d", w.msgSeq)
	if w.rng.Intn(2) == 0 {
		var conn []*propVisitor
		w.mu.Lock()
		for _, vis := range w.visitors {
			if vis.state == "connected" {
				conn = append(conn, vis)
			}
		}
		w.mu.Unlock()
		if len(conn) == 0 {
			return false
		}
		vis := conn[w.rng.Intn(len(conn))]
		if err := vis.h.Send(id, "hei "+id); err != nil {
			w.mu.Lock()
			w.violateLocked(&w.counts.otherViolations, "connected visitor %s could not send: %v", vis.id[:6], err)
			w.mu.Unlock()
		}
		return true
	}
	v := w.pickVol(func(v *propVol) bool { return v.con != nil && len(v.active) > 0 })
	if v == nil {
		return false
	}
	act := w.activeOf(v)
	c := act[w.rng.Intn(len(act))]
	if err := v.con.Send(c, id, "hallo "+id); err != nil {
		w.mu.Lock()
		w.violateLocked(&w.counts.otherViolations, "%s could not send to its active conversation %s: %v", v.v.ID, c[:6], err)
		w.mu.Unlock()
	}
	return true
}

func (w *propWorld) categorise() bool {
	v := w.pickVol(func(v *propVol) bool { return v.con != nil && len(v.ended) > 0 })
	if v == nil {
		return false
	}
	w.mu.Lock()
	c := v.ended[0]
	v.ended = v.ended[1:]
	w.mu.Unlock()
	if err := v.con.End(c, w.categorisation()); err != nil {
		w.mu.Lock()
		w.violateLocked(&w.counts.otherViolations, "%s could not categorise %s, which the other side ended: %v", v.v.ID, c[:6], err)
		w.mu.Unlock()
	}
	return true
}

// categorisation is heavy one time in three.
func (w *propWorld) categorisation() Categorisation {
	if w.rng.Intn(3) == 0 {
		return heavyCat
	}
	return anyCat
}

// ready: a volunteer says they are ready. Only a cool-down ends so.
func (w *propWorld) ready() bool {
	v := w.pickVol(func(v *propVol) bool { return v.con != nil && v.care.State != "" && v.care.State != CareOK })
	if v == nil {
		return false
	}
	w.mu.Lock()
	state := v.care.State
	w.mu.Unlock()
	err := v.con.Ready()
	w.logf("%s says ready during %s: %v", v.v.ID, state, err)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case (state == CareBreak || state == CareShiftOver) != errors.Is(err, ErrCareHolds):
		w.violateLocked(&w.counts.otherViolations, "%s: ready during %s: %v", v.v.ID, state, err)
	case err == nil && state == CareCoolDown:
		w.counts.readies++
	}
	return true
}

func (w *propWorld) releaseLocked(v *propVol, c string) {
	delete(v.active, c)
	if w.holder[c] == v {
		delete(w.holder, c)
	}
}

// check runs at quiet moments: every goroutine has delivered what it had.
func (w *propWorld) check() {
	stats := [2]Stats{w.centres[0].sb.Stats(), w.centres[1].sb.Stats()}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, vis := range w.visitors {
		h := w.holder[vis.id]
		switch {
		case vis.state == "connected" && h == nil:
			w.violateLocked(&w.counts.otherViolations, "visitor %s (at %s) is connected to %s but no console holds the contact", vis.id[:6], vis.centre.name, vis.alias)
		case vis.state == "connected" && h.v.Alias != vis.alias:
			w.violateLocked(&w.counts.otherViolations, "visitor %s was told %s, but %s holds the contact", vis.id[:6], vis.alias, h.v.ID)
		case vis.state != "connected" && h != nil:
			w.violateLocked(&w.counts.otherViolations, "%s holds contact %s whose visitor is %s", h.v.ID, vis.id[:6], vis.state)
		}
	}
	for _, v := range w.vols {
		if len(v.active) > v.v.Capacity {
			w.violateLocked(&w.counts.overCap, "%s holds %d conversations, capacity %d", v.v.ID, len(v.active), v.v.Capacity)
		}
	}
	for i, st := range stats {
		if err := conservation(st); err != nil {
			w.violateLocked(&w.counts.otherViolations, "centre %s: %v", w.centres[i].name, err)
		}
	}
}

func (w *propWorld) windDown() {
	w.plans = nil
	for _, vis := range w.visitors {
		w.mu.Lock()
		live := vis.state == "waiting" || vis.state == "connected"
		w.mu.Unlock()
		if live {
			w.nextStep()
			w.endVisitor(vis)
			w.settle()
		}
	}
	for _, v := range w.vols {
		if v.con != nil {
			w.mu.Lock()
			w.forgetConsoleLocked(v)
			w.mu.Unlock()
			v.con.SignOut()
			v.con = nil
		}
	}
	w.settle()
	stats := [2]Stats{w.centres[0].sb.Stats(), w.centres[1].sb.Stats()}
	w.mu.Lock()
	for i, c := range w.centres {
		st := stats[i]
		var abandoned, connects, requeues uint64
		for _, vis := range w.visitors {
			if vis.centre != c {
				continue
			}
			if vis.state != "abandoned" && vis.state != "ended" {
				w.violateLocked(&w.counts.otherViolations, "visitor %s ends the run %s", vis.id[:6], vis.state)
			}
			if vis.state == "abandoned" {
				abandoned++
			}
			connects += uint64(vis.connects)
			requeues += uint64(vis.requeues)
		}
		tl, local, overflow := totals(st)
		if tl.Offered != uint64(c.started) || tl.Abandoned != abandoned || local+overflow != connects ||
			requeued(st) != requeues || tl.Waiting != 0 || tl.InProgress != 0 || st.ReceivedInProgress != 0 {
			w.violateLocked(&w.counts.otherViolations, "centre %s: stats %+v, but %d started, %d abandoned, %d connections, %d requeues heard by its visitors",
				c.name, st, c.started, abandoned, connects, requeues)
		}
	}
	if len(w.holder) != 0 {
		w.violateLocked(&w.counts.otherViolations, "%d contacts still held by consoles at the end", len(w.holder))
	}
	w.checkUrgentLocked()
	w.mu.Unlock()
	for _, c := range w.centres {
		c.sb.Close()
	}
}

// ---- sinks ----

type propSink struct {
	v   *propVol
	gen int
}

// live reports whether this console is still the volunteer's; w.mu is held.
func (s *propSink) live() bool { return s.v.gen == s.gen }

func (s *propSink) Offer(o Offer) {
	w := s.v.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !s.live() {
		return
	}
	if s.v.ringing != "" {
		w.violateLocked(&w.counts.otherViolations, "%s: offer %s rings while %s still rings", s.v.v.ID, o.Contact[:6], s.v.ringing[:6])
	}
	if st := s.v.care.State; st == CareCoolDown || st == CareBreak || st == CareShiftOver {
		w.violateLocked(&w.counts.offeredResting, "%s: offer %s during %s (until %v)", s.v.v.ID, o.Contact[:6], st, s.v.care.Until)
	}
	s.v.ringing = o.Contact
	s.v.newOffers = append(s.v.newOffers, o)
	w.marks[o.Contact] = append(w.marks[o.Contact], o.Urgent)
	if o.From == "" {
		w.offeredLocked(o.Contact) // rung by its own centre
	}
	w.noteLocked("  %s hears offer %s (from %q)", s.v.v.ID, o.Contact[:6], o.From)
}

func (s *propSink) OfferWithdrawn(contact, reason string) {
	w := s.v.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !s.live() {
		return
	}
	if s.v.ringing == contact {
		s.v.ringing = ""
	}
	w.noteLocked("  %s hears offer %s withdrawn: %s", s.v.v.ID, contact[:6], reason)
	switch reason {
	case "declined":
	case "no answer in time":
		w.counts.timeouts++
	default:
		w.counts.withdrawn++
	}
}

func (s *propSink) Connected(contact, from string) {
	w := s.v.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !s.live() {
		return
	}
	if s.v.ringing == contact {
		s.v.ringing = ""
	}
	w.noteLocked("  %s hears connected %s (from %q)", s.v.v.ID, contact[:6], from)
	if from == "" {
		w.counts.localAnswers++
	} else {
		w.counts.overflowAnswers++
	}
	if h := w.holder[contact]; h != nil && h != s.v {
		w.violateLocked(&w.counts.double, "contact %s connected to %s at %s while %s at %s still has it", contact[:6], s.v.v.ID, s.v.centre.name, h.v.ID, h.centre.name)
	}
	if s.v.active[contact] {
		w.violateLocked(&w.counts.otherViolations, "%s connected twice to %s", s.v.v.ID, contact[:6])
	}
	w.holder[contact] = s.v
	s.v.active[contact] = true
	if len(s.v.active) > s.v.v.Capacity {
		w.violateLocked(&w.counts.overCap, "%s now holds %d conversations, capacity %d", s.v.v.ID, len(s.v.active), s.v.v.Capacity)
	}
}

func (s *propSink) Event(contact string, e Event) {
	w := s.v.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !s.live() || e.Kind != EventEnded {
		return
	}
	if s.v.active[contact] {
		w.releaseLocked(s.v, contact)
		s.v.ended = append(s.v.ended, contact)
	}
	w.noteLocked("  %s hears %s ended by %s", s.v.v.ID, contact[:6], e.By)
}

func (s *propSink) Lost(contact string, _ int) {
	w := s.v.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.live() {
		w.releaseLocked(s.v, contact)
		w.noteLocked("  %s hears %s lost", s.v.v.ID, contact[:6])
	}
}

func (s *propSink) Care(n CareNotice) {
	w := s.v.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if !s.live() {
		return
	}
	if n.State != s.v.care.State {
		switch n.State {
		case CareCoolDown:
			w.counts.coolDowns++
		case CareBreak:
			w.counts.breaks++
		case CareShiftOver:
			w.counts.shiftsOver++
		}
	}
	if !n.Until.IsZero() && n.State != CareShiftEnding && n.Until.Before(time.Now()) {
		w.violateLocked(&w.counts.otherViolations, "%s: told %s until %v, already past", s.v.v.ID, n.State, n.Until)
	}
	s.v.care = n
	w.noteLocked("  %s hears care %s until %v", s.v.v.ID, n.State, n.Until)
}

func (s *propSink) Availability(_ map[string]bool, active, capacity int) {
	w := s.v.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if active > capacity {
		w.violateLocked(&w.counts.overCap, "%s: switchboard reports %d active, capacity %d", s.v.v.ID, active, capacity)
	}
}

func (p *propVisitor) Queued(int, Estimate) {
	w := p.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.state != "waiting" {
		w.violateLocked(&w.counts.otherViolations, "visitor %s told a queue position while %s", p.id[:6], p.state)
	}
}

func (p *propVisitor) Connected(alias string) {
	w := p.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.state != "waiting" {
		kind := &w.counts.otherViolations
		if p.state == "connected" {
			kind = &w.counts.double
		}
		w.violateLocked(kind, "visitor %s connected to %s while %s (to %s)", p.id[:6], alias, p.state, p.alias)
	}
	p.state, p.alias = "connected", alias
	p.connects++
	w.noteLocked("  visitor %s hears connected to %s", p.id[:6], alias)
}

func (p *propVisitor) Event(e Event) {
	if e.Kind != EventEnded {
		return
	}
	w := p.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.state != "connected" {
		w.violateLocked(&w.counts.otherViolations, "visitor %s heard the end while %s", p.id[:6], p.state)
		return
	}
	p.state = "ended"
	w.counts.ended++
}

func (p *propVisitor) Requeued(int) {
	w := p.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.state != "connected" {
		w.violateLocked(&w.counts.otherViolations, "visitor %s requeued while %s", p.id[:6], p.state)
	}
	p.state = "waiting"
	p.requeues++
	w.noteLocked("  visitor %s hears requeued", p.id[:6])
	w.counts.requeues++
}

func (p *propVisitor) Closed(reason string) {
	w := p.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.state == "waiting" || p.state == "connected" {
		w.violateLocked(&w.counts.otherViolations, "visitor %s closed while %s: %s", p.id[:6], p.state, reason)
	}
}

// ---- in-memory overflow between two switchboards ----

type memOverflow struct {
	from, to *propCentre
	// sent, if set, hears each offer as the owner sends it.
	sent func(contact string)
}

// Candidates is what the real router does with gossip: the other centre,
// if its last published availability had someone free for the channel and
// language. It may be stale: the other centre decides from its live state.
func (m *memOverflow) Candidates(channel, language string) []Candidate {
	m.to.pubMu.Lock()
	defer m.to.pubMu.Unlock()
	if m.to.free[channel+"/"+language] == 0 {
		return nil
	}
	return []Candidate{{Centre: m.to.name, Version: m.to.version}}
}

// OnDuty: the other centre's free volunteers as last published; busy
// ones are not published here, and only the estimate reads them.
func (m *memOverflow) OnDuty(channel, language string) (free, busy int) {
	m.to.pubMu.Lock()
	defer m.to.pubMu.Unlock()
	return m.to.free[channel+"/"+language], 0
}

func (m *memOverflow) Offer(ctx context.Context, centre string, o OutgoingOffer) (Answer, error) {
	if centre != m.to.name {
		return nil, fmt.Errorf("unknown centre %q", centre)
	}
	if m.sent != nil {
		m.sent(o.Contact)
	}
	res, err := m.to.sb.Reserve(IncomingOffer{Contact: o.Contact, From: m.from.name, Channel: o.Channel, Language: o.Language, Ring: o.Ring, Urgent: o.Urgent})
	if err != nil {
		return nil, err
	}
	alias, err := res.Wait(ctx)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		res.Release("withdrawn by the visitor's centre")
		return nil, ctx.Err()
	}
	return &memAnswer{res: res, alias: alias}, nil
}

type memAnswer struct {
	res   *Reservation
	alias string
}

func (a *memAnswer) Alias() string { return a.alias }

func (a *memAnswer) Token() string { return "" }

func (a *memAnswer) Resumable() bool { return false }

func (a *memAnswer) Confirm(h PeerHandler) (Peer, error) {
	l := &memLink{}
	l.h[0] = h
	hb := a.res.Connect(&memEnd{l: l, side: 1})
	l.mu.Lock()
	l.h[1] = hb
	l.mu.Unlock()
	return &memEnd{l: l, side: 0}, nil
}

func (a *memAnswer) Cancel(reason string) { a.res.Release(reason) }

var errMemClosed = errors.New("in-memory relay closed")

// memLink is an in-memory relay: side 0 is the visitor's centre, side 1 the
// volunteer's. Each direction delivers in order on a goroutine of its own
// that lives while there is something to deliver. Closing one end tells the
// other (OnLost), as the real relay's bye does.
type memLink struct {
	mu      sync.Mutex
	h       [2]PeerHandler
	closed  [2]bool
	q       [2][]memItem
	running [2]bool
}

type memItem struct {
	e   Event
	bye bool
}

type memEnd struct {
	l    *memLink
	side int
}

func (e *memEnd) Send(ev Event) error {
	l := e.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed[e.side] {
		return errMemClosed
	}
	l.pushLocked(1-e.side, memItem{e: ev})
	return nil
}

func (e *memEnd) Close(string) {
	l := e.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed[e.side] {
		return
	}
	l.closed[e.side] = true
	l.pushLocked(1-e.side, memItem{bye: true})
}

func (l *memLink) pushLocked(to int, it memItem) {
	l.q[to] = append(l.q[to], it)
	if !l.running[to] {
		l.running[to] = true
		go l.drain(to)
	}
}

func (l *memLink) drain(to int) {
	for {
		l.mu.Lock()
		if len(l.q[to]) == 0 {
			l.running[to] = false
			l.mu.Unlock()
			return
		}
		it := l.q[to][0]
		l.q[to] = l.q[to][1:]
		h := l.h[to]
		if it.bye {
			if l.closed[to] {
				l.mu.Unlock()
				continue
			}
			l.closed[to] = true
			l.mu.Unlock()
			h.OnLost(0)
			continue
		}
		l.mu.Unlock()
		h.OnEvent(it.e)
	}
}
