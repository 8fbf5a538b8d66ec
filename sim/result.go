package sim

import (
	"math"
	"slices"
	"sync"
	"time"
)

// occupancy integrates, over the scenario's hours, the chat slots on shift
// at a centre and the conversations in them.
type occupancy struct {
	mu                 sync.Mutex
	last               time.Time
	end                time.Time
	slots, talks       int
	slotArea, talkArea float64 // slot-hours, conversation-hours
}

func (o *occupancy) advance(now time.Time) {
	if o.last.IsZero() {
		o.last = now
	}
	until := now
	if !o.end.IsZero() && until.After(o.end) {
		until = o.end
	}
	if until.After(o.last) {
		h := until.Sub(o.last).Hours()
		o.slotArea += float64(o.slots) * h
		o.talkArea += float64(o.talks) * h
		o.last = until
	}
}

func (o *occupancy) shift(now time.Time, slots int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.advance(now)
	o.slots += slots
}

func (o *occupancy) talk(now time.Time, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.advance(now)
	o.talks += n
}

// Result is one run's outcome.
type Result struct {
	Mode     Mode          `json:"mode"`
	National Stats         `json:"national"`
	Centres  []CentreStats `json:"centres"`
	// Overflow counts answered contacts by the centre they arrived at and
	// the centre that answered them (local answers on the diagonal).
	Overflow map[string]map[string]int `json:"overflow"`
	// Hourly is the national picture hour by hour.
	Hourly []Hour `json:"hourly"`
	// OfferedErlangs is the load the arrivals brought: their talk time
	// over the scenario's hours (a planner's "offered load").
	OfferedErlangs float64 `json:"offered_erlangs"`
	// SlotHours are the chat slots on shift over the scenario's hours.
	SlotHours float64 `json:"slot_hours"`
	// Contacts simulated, and the wall-clock seconds it took.
	Contacts    int     `json:"contacts"`
	WallSeconds float64 `json:"wall_seconds"`
}

// CentreStats are the stats of the contacts that arrived at one centre,
// and the occupancy of its volunteers.
type CentreStats struct {
	Centre string `json:"centre"`
	Stats
}

// Stats describe a set of contacts. Speed to answer is over the answered.
type Stats struct {
	Arrived          int     `json:"arrived"`
	Answered         int     `json:"answered"`
	AnsweredLocally  int     `json:"answered_locally"`
	AnsweredOverflow int     `json:"answered_by_overflow"`
	Abandoned        int     `json:"abandoned"`
	Refused          int     `json:"refused"`    // the queue was full
	Unfinished       int     `json:"unfinished"` // still waiting when the run ended
	AnswerRate       float64 `json:"answer_rate"`
	AbandonRate      float64 `json:"abandon_rate"`
	// WaitedShare is the share of the answered who waited at all.
	WaitedShare float64 `json:"waited_share"`
	ASA         float64 `json:"asa_seconds"`
	P50         float64 `json:"p50_seconds"`
	P90         float64 `json:"p90_seconds"`
	// ServiceLevel is the share of arrived contacts answered within the
	// policy's service_level_seconds.
	ServiceLevel float64 `json:"service_level"`
	// MeanWaitAll is the mean time in queue over every contact that was
	// not refused, answered or not (what Erlang A calls the mean wait).
	MeanWaitAll float64 `json:"mean_wait_all_seconds"`
	// Occupancy is conversation time over chat-slot time on shift (the
	// centre's own volunteers; national: everyone).
	Occupancy float64 `json:"occupancy"`
	// Urgent contacts' own answer rate and speed to answer.
	Urgent    int     `json:"urgent"`
	UrgentASA float64 `json:"urgent_asa_seconds"`
}

// Hour is one hour of the run, nationally.
type Hour struct {
	Start    time.Time `json:"start"`
	Arrived  int       `json:"arrived"`
	Answered int       `json:"answered"`
	ASA      float64   `json:"asa_seconds"`
}

type tally struct {
	s            Stats
	waits        []float64
	waitAll      float64
	waitAllN     int
	urgentWaits  []float64
	withinTarget int
	waited       int
}

func (t *tally) add(v *visitor, end time.Time, target float64) {
	t.s.Arrived++
	if v.urgent {
		t.s.Urgent++
	}
	switch {
	case v.refused:
		t.s.Refused++
		return
	case v.answered:
		w := v.answeredAt.Sub(v.arrived).Seconds()
		t.s.Answered++
		if v.by == v.entry {
			t.s.AnsweredLocally++
		} else {
			t.s.AnsweredOverflow++
		}
		t.waits = append(t.waits, w)
		if v.urgent {
			t.urgentWaits = append(t.urgentWaits, w)
		}
		if w <= target {
			t.withinTarget++
		}
		if w > 0 {
			t.waited++
		}
		t.waitAll += w
	case v.abandoned:
		t.s.Abandoned++
		t.waitAll += v.patience.Seconds()
	default:
		t.s.Unfinished++
		t.waitAll += end.Sub(v.arrived).Seconds()
	}
	t.waitAllN++
}

func (t *tally) stats() Stats {
	s := t.s
	if s.Arrived > 0 {
		s.AnswerRate = float64(s.Answered) / float64(s.Arrived)
		s.AbandonRate = float64(s.Abandoned) / float64(s.Arrived)
		s.ServiceLevel = float64(t.withinTarget) / float64(s.Arrived)
	}
	if s.Answered > 0 {
		s.WaitedShare = float64(t.waited) / float64(s.Answered)
	}
	if t.waitAllN > 0 {
		s.MeanWaitAll = t.waitAll / float64(t.waitAllN)
	}
	s.ASA, s.P50, s.P90 = mean(t.waits), quantile(t.waits, 0.5), quantile(t.waits, 0.9)
	s.UrgentASA = mean(t.urgentWaits)
	return s
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// quantile is the nearest-rank quantile.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func (r *run) result() *Result {
	end := r.clock.Now()
	target := r.sc.Policy.ServiceLevelSeconds
	res := &Result{Mode: r.mode, Overflow: map[string]map[string]int{}}
	var national tally
	per := map[string]*tally{}
	hours := int(math.Ceil(r.end.Sub(r.start).Hours()))
	hourly := make([]tally, hours)
	r.mu.Lock()
	all := slices.Clone(r.all)
	r.mu.Unlock()
	for _, v := range all {
		v.mu.Lock()
		national.add(v, end, target)
		t := per[v.entry]
		if t == nil {
			t = &tally{}
			per[v.entry] = t
		}
		t.add(v, end, target)
		if h := int(v.arrived.Sub(r.start).Hours()); h >= 0 && h < hours {
			hourly[h].add(v, end, target)
		}
		if v.answered {
			m := res.Overflow[v.entry]
			if m == nil {
				m = map[string]int{}
				res.Overflow[v.entry] = m
			}
			m[v.by]++
		}
		v.mu.Unlock()
	}
	var slotArea, talkArea float64
	for _, c := range r.order {
		c.occ.mu.Lock()
		c.occ.advance(end)
		slotArea += c.occ.slotArea
		talkArea += c.occ.talkArea
		c.occ.mu.Unlock()
	}
	res.National = national.stats()
	res.SlotHours = slotArea
	res.National.Occupancy = ratio(talkArea, slotArea)
	for _, sc := range r.sc.Centres {
		t := per[sc.ID]
		if t == nil {
			t = &tally{}
		}
		cs := CentreStats{Centre: sc.ID, Stats: t.stats()}
		if c := r.centres[sc.ID]; c != nil {
			cs.Occupancy = ratio(c.occ.talkArea, c.occ.slotArea)
		}
		res.Centres = append(res.Centres, cs)
	}
	for h := range hourly {
		st := hourly[h].stats()
		res.Hourly = append(res.Hourly, Hour{Start: r.start.Add(time.Duration(h) * time.Hour), Arrived: st.Arrived, Answered: st.Answered, ASA: st.ASA})
	}
	res.Contacts = len(all)
	var talk float64
	for _, v := range all {
		if !v.arrived.Before(r.start) && v.arrived.Before(r.end) {
			talk += v.talk.Hours()
		}
	}
	res.OfferedErlangs = ratio(talk, r.end.Sub(r.start).Hours())
	return res
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
