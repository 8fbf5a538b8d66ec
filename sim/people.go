package sim

import (
	"sync"
	"time"

	"github.com/helpmesh/helpmesh/switchboard"
)

// volunteer is one simulated person: a switchboard.ConsoleSink that answers
// offers as the scenario's behaviour says, and talks for as long as the
// contact's talk time. Its sink methods run on the switchboard's outboxes;
// what it does in reply runs as events on the clock.
type volunteer struct {
	c  *centre
	g  *Volunteers
	id string

	mu      sync.Mutex
	console *switchboard.Console
	onShift bool
	talking map[string]switchboard.Timer
	// ringing is the offer each contact rings with now: an answer meant
	// for an offer since withdrawn must not take a later one.
	ringing map[string]uint64
	rings   uint64
}

var _ switchboard.ConsoleSink = (*volunteer)(nil)

func (v *volunteer) startShift() {
	v.mu.Lock()
	v.onShift = true
	con := v.console
	v.mu.Unlock()
	if con == nil {
		var err error
		con, err = v.c.sb.SignIn(switchboard.Volunteer{ID: v.id, Alias: v.id, Channels: v.g.Channels,
			Languages: v.g.Languages, Capacity: v.g.Capacity}, v)
		if err != nil {
			v.c.r.log.Warn("simulated volunteer not signed in", "volunteer", v.id, "err", err)
			return
		}
		v.mu.Lock()
		v.console = con
		v.mu.Unlock()
		v.c.occ.shift(v.c.r.clock.Now(), v.g.Capacity)
	}
	for _, ch := range v.g.Channels {
		_ = con.SetAvailable(ch, true)
	}
}

// endShift takes no new contacts; the volunteer signs out once their
// conversations have ended.
func (v *volunteer) endShift() {
	v.mu.Lock()
	v.onShift = false
	con := v.console
	v.mu.Unlock()
	if con == nil {
		return
	}
	for _, ch := range v.g.Channels {
		_ = con.SetAvailable(ch, false)
	}
	v.signOutIfDone()
}

func (v *volunteer) signOutIfDone() {
	v.mu.Lock()
	con := v.console
	if v.onShift || con == nil || len(v.talking) > 0 {
		v.mu.Unlock()
		return
	}
	v.console = nil
	v.mu.Unlock()
	con.SignOut()
	v.c.occ.shift(v.c.r.clock.Now(), -v.g.Capacity)
}

func (v *volunteer) Offer(o switchboard.Offer) {
	r := v.c.r
	wait, _ := r.draw(r.sc.Behaviour.AnswerSeconds)
	x := r.float()
	b := r.sc.Behaviour
	v.mu.Lock()
	v.rings++
	ring := v.rings
	if v.ringing == nil {
		v.ringing = map[string]uint64{}
	}
	v.ringing[o.Contact] = ring
	v.mu.Unlock()
	r.after(wait, func() {
		v.mu.Lock()
		con := v.console
		current := v.ringing[o.Contact] == ring
		delete(v.ringing, o.Contact)
		v.mu.Unlock()
		if con == nil || !current {
			return
		}
		switch {
		case x < b.DeclineRate:
			_ = con.Decline(o.Contact)
		case x < b.DeclineRate+b.NoAnswerRate:
			return // it rings out
		default:
			_ = con.Accept(o.Contact)
		}
		if o.From != "" {
			v.c.decided(o.Contact)
		}
	})
}

func (v *volunteer) OfferWithdrawn(contact, _ string) {
	v.mu.Lock()
	delete(v.ringing, contact)
	v.mu.Unlock()
	v.c.r.after(0, func() { v.c.decided(contact) })
}

func (v *volunteer) Connected(contact, _ string) {
	r := v.c.r
	talk := time.Duration(0)
	if vis := r.visitor(contact); vis != nil {
		talk = vis.talk
	}
	v.mu.Lock()
	if _, dup := v.talking[contact]; !dup {
		v.talking[contact] = r.after(talk, func() { v.finish(contact) })
		v.c.occ.talk(r.clock.Now(), 1)
	}
	v.mu.Unlock()
}

// finish ends the conversation (and categorises it).
func (v *volunteer) finish(contact string) {
	v.mu.Lock()
	con := v.console
	v.mu.Unlock()
	if con != nil {
		_ = con.End(contact, switchboard.Categorisation{Topics: []string{topic}, AgeGroup: "unknown"})
	}
	v.over(contact)
}

// over forgets a conversation that ended, however it ended.
func (v *volunteer) over(contact string) {
	v.mu.Lock()
	t, ok := v.talking[contact]
	delete(v.talking, contact)
	v.mu.Unlock()
	if ok {
		t.Stop()
		v.c.occ.talk(v.c.r.clock.Now(), -1)
		v.signOutIfDone()
	}
}

func (v *volunteer) Event(contact string, e switchboard.Event) {
	if e.Kind == switchboard.EventEnded && e.By != switchboard.ByVolunteer {
		// The visitor ended it: categorise and move on.
		v.c.r.after(0, func() { v.finish(contact) })
	}
}

func (v *volunteer) Lost(contact string, _ int) {
	v.c.r.after(0, func() { v.over(contact) })
}

func (v *volunteer) Availability(map[string]bool, int, int) {}

// visitor is one simulated visitor: a switchboard.VisitorSink that waits
// until answered or out of patience.
type visitor struct {
	r        *run
	entry    string  // the scenario's centre they arrived at
	home     *centre // the switchboard they reached (the pool, pooled)
	channel  string
	language string
	urgent   bool
	arrived  time.Time
	talk     time.Duration
	patience time.Duration
	patient  bool // never leaves

	mu         sync.Mutex
	h          *switchboard.VisitorHandle
	refused    bool
	answered   bool
	answeredAt time.Time
	by         string // the answering centre
	abandoned  bool
	leave      switchboard.Timer
}

var _ switchboard.VisitorSink = (*visitor)(nil)

func (r *run) visitor(contact string) *visitor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.visitors[contact]
}

func (v *visitor) arrive() {
	v.r.mu.Lock()
	v.r.all = append(v.r.all, v)
	v.r.mu.Unlock()
	// The handle must be known before the first offer reaches a
	// volunteer, which happens on another goroutine: hold the lock.
	v.mu.Lock()
	defer v.mu.Unlock()
	h, err := v.home.sb.StartContactWith(v.channel, v.language, v, switchboard.ContactOptions{Urgent: v.urgent})
	if err != nil {
		v.refused = true
		return
	}
	v.h = h
	v.r.mu.Lock()
	v.r.visitors[h.ID()] = v
	v.r.mu.Unlock()
	if !v.patient {
		v.leave = v.r.after(v.patience, v.giveUp)
	}
}

func (v *visitor) giveUp() {
	v.mu.Lock()
	if v.answered || v.h == nil {
		v.mu.Unlock()
		return
	}
	v.abandoned = true
	h := v.h
	v.mu.Unlock()
	h.End()
}

func (v *visitor) Queued(int, switchboard.Estimate) {}

func (v *visitor) Connected(alias string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.answered || v.abandoned {
		return
	}
	v.answered, v.answeredAt, v.by = true, v.r.clock.Now(), centreOf(alias)
	if v.leave != nil {
		v.leave.Stop()
	}
}

func (v *visitor) Event(switchboard.Event) {}
func (v *visitor) Requeued(int)            {}
func (v *visitor) Closed(string)           {}
