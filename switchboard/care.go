package switchboard

// Care for volunteers (issue 17): the router keeps the limits a centre
// set for its volunteers' sake, so that no volunteer has to defend them
// against a waiting queue alone.
//
//   - Cool-down: after a conversation categorised with a heavy topic the
//     volunteer gets no offer for CoolDown, from the moment they
//     categorise it (End): the end of the conversation is when the
//     debriefing starts, and categorising is when they are done with it.
//     They may say they are ready (Console.Ready) and take offers again
//     at once: only they know whether they are.
//   - A break: after MaxInARow conversations without one, a break of
//     Break; a volunteer with a conversation still going gets no new
//     offer and their break starts when the last one ends. Any Break
//     without a conversation (idle, switched off or signed out) is a
//     break too, and the count starts again after it.
//   - The shift: it starts at sign-in; a sign-in within ShiftGap of the
//     last sign-out continues it (a reload or a short absence is not a
//     new shift). ShiftNotice before MaxShift the console is told
//     gently; after MaxShift no new offer comes. A sign-in after ShiftGap
//     is a new shift.
//
// A break and the end of a shift cannot be overridden from the console:
// they are the centre's limits, and a centre that wants them otherwise
// sets them (care_by_centre). Conversations in progress are never cut
// short: the rules only hold new offers back.
//
// free() is where every pick path looks (local dispatch, Reserve for
// other centres, call holds, transfers), and Availability counts a
// resting volunteer as not free, so gossip does not send work to someone
// resting. Each volunteer's state changes at a known moment; one timer
// per volunteer re-evaluates it then and re-runs dispatch, so a contact
// waiting is offered the moment a cool-down ends. The state is kept by
// volunteer id across sign-ins (memory only), so signing out and in is
// neither a way round a cool-down nor a new shift.
//
// The policy is read when something happens to the volunteer (sign-in,
// switching a channel, a conversation's end, categorising, a timer), so
// a changed policy applies from the next such moment. The KPIs count how
// often each state was entered and how many rest now; never who.

import (
	"fmt"
	"slices"
	"time"
)

// CarePolicy is the care this centre keeps: the policy's, with the
// centre's own overrides. A zero field turns its rule off.
type CarePolicy struct {
	HeavyTopics []string
	CoolDown    time.Duration
	MaxInARow   int
	Break       time.Duration
	MaxShift    time.Duration
	ShiftNotice time.Duration
}

// ShiftGap: a sign-in within this of the last sign-out continues the
// shift.
const ShiftGap = 30 * time.Minute

// The care states a console is told (CareNotice.State), and the reasons
// of Stats.Care and Stats.Resting (all but CareOK and CareShiftEnding).
const (
	CareOK          = "ok"
	CareCoolDown    = "cool_down"
	CareBreak       = "break"
	CareShiftEnding = "shift_ending"
	CareShiftOver   = "shift_over"
)

// CareReasons are the reasons a volunteer gets no offer, for the KPIs.
var CareReasons = []string{CareCoolDown, CareBreak, CareShiftOver}

// CareNotice tells a console why no offers come, or that the shift ends
// soon. Until is when the state ends (the cool-down, the break, the
// shift for shift_ending); zero when it has no set end (shift_over; a
// break that starts when the conversations in progress end). InARow is
// the conversations in a row that earned a break; Minutes the length of
// the cool-down or break, for the console's words.
type CareNotice struct {
	State   string
	Until   time.Time
	InARow  int
	Minutes int
}

// CareSink is a ConsoleSink that hears care notices: on every change,
// in order with the console's other calls.
type CareSink interface {
	Care(n CareNotice)
}

// careState is one volunteer's care, by volunteer id, across sign-ins.
type careState struct {
	shiftStart time.Time
	signedOut  time.Time // zero while signed in
	// shiftOverCounted: this shift's end was counted in Stats.Care.
	shiftOverCounted bool
	inARow           int
	lastEnd          time.Time // the end of their last conversation
	coolUntil        time.Time
	ready            bool // they said they were ready during this cool-down
	coolMinutes      int
	breakUntil       time.Time
	breakDue         bool // a break starts when their conversations end
	// hold is the reason no offer comes now ("" none); free() reads it.
	hold  string
	told  CareNotice
	timer Timer
}

// resting reports whether care holds offers back from v.
func (v *volunteer) resting() bool { return v.care != nil && v.care.hold != "" }

// offShift: their shift is over (care.go). Still signed in, but not on
// duty: a visitor's wait is not theirs to answer, so the estimates, the
// room count and gossip's busy count leave them out.
func (v *volunteer) offShift() bool { return v.care != nil && v.care.hold == CareShiftOver }

func (s *Switchboard) carePolicy() CarePolicy {
	if s.cfg.Care == nil {
		return CarePolicy{}
	}
	return s.cfg.Care()
}

// careSignInLocked gives v their care state: the one they left within
// ShiftGap (the shift goes on), or a new shift.
func (s *Switchboard) careSignInLocked(v *volunteer, now time.Time) {
	for id, cs := range s.cares {
		if !cs.signedOut.IsZero() && now.Sub(cs.signedOut) >= ShiftGap && !now.Before(cs.coolUntil) && !now.Before(cs.breakUntil) {
			delete(s.cares, id)
		}
	}
	cs := s.cares[v.ID]
	switch {
	case cs == nil:
		cs = &careState{shiftStart: now, told: CareNotice{State: CareOK}}
		s.cares[v.ID] = cs
	case !cs.signedOut.IsZero() && now.Sub(cs.signedOut) >= ShiftGap:
		cs.shiftStart, cs.shiftOverCounted = now, false
	}
	cs.signedOut = time.Time{}
	cs.told = CareNotice{State: CareOK} // what a new console shows
	v.care = cs
	s.careLocked(v, now)
}

// careSignOutLocked keeps v's care for their next sign-in.
func (s *Switchboard) careSignOutLocked(v *volunteer) {
	if cs := v.care; cs != nil {
		cs.signedOut = s.now()
		if cs.timer != nil {
			cs.timer.Stop()
		}
	}
}

// careConversationOverLocked counts a conversation of v's that ended
// (started when they took it) towards their conversations in a row.
func (s *Switchboard) careConversationOverLocked(v *volunteer, started time.Time) {
	cs := v.care
	if cs == nil {
		return
	}
	now := s.now()
	p := s.carePolicy()
	if started.IsZero() {
		started = now
	}
	if p.Break > 0 && !cs.lastEnd.IsZero() && started.Sub(cs.lastEnd) >= p.Break {
		cs.inARow = 0 // a break's length without a conversation was a break
	}
	cs.inARow++
	cs.lastEnd = now
	if p.MaxInARow > 0 && p.Break > 0 && cs.inARow >= p.MaxInARow && !cs.breakDue && !now.Before(cs.breakUntil) {
		s.stats.Care[CareBreak]++
		cs.breakDue = true
	}
	s.careLocked(v, now)
}

// careCategorisedLocked starts a cool-down if the categorisation names
// a heavy topic.
func (s *Switchboard) careCategorisedLocked(v *volunteer, cat Categorisation) {
	cs := v.care
	if cs == nil {
		return
	}
	p := s.carePolicy()
	if p.CoolDown <= 0 || !slices.ContainsFunc(cat.Topics, func(t string) bool { return slices.Contains(p.HeavyTopics, t) }) {
		return
	}
	now := s.now()
	s.stats.Care[CareCoolDown]++
	cs.coolUntil = now.Add(p.CoolDown)
	cs.coolMinutes = minutes(p.CoolDown)
	cs.ready = false
	s.careLocked(v, now)
}

// Ready says the volunteer takes offers again though their cool-down has
// not ended. A break or the end of their shift it does not end
// (ErrCareHolds); outside those it changes nothing.
func (c *Console) Ready() error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	v := c.v
	if s.volunteers[v.ID] != v {
		return ErrNotSignedIn
	}
	if v.care == nil {
		return nil
	}
	if h := v.care.hold; h == CareBreak || h == CareShiftOver {
		return fmt.Errorf("ready: %s: %w", h, ErrCareHolds)
	}
	if s.now().Before(v.care.coolUntil) {
		v.care.ready = true
		s.careLocked(v, s.now())
		s.dispatchLocked()
	}
	return nil
}

// careTick re-evaluates v's care at the moment it was due to change, and
// offers them what waits if they are free again.
func (s *Switchboard) careTick(v *volunteer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.volunteers[v.ID] != v {
		return
	}
	if s.careLocked(v, s.now()) {
		s.dispatchLocked()
	}
}

// careLocked works out v's care state at now: what holds offers back,
// what the console is told, and when to look again. It reports whether
// offers were held back and no longer are.
func (s *Switchboard) careLocked(v *volunteer, now time.Time) bool {
	cs := v.care
	p := s.carePolicy()
	var next time.Time
	at := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if !cs.breakUntil.IsZero() && !now.Before(cs.breakUntil) {
		cs.breakUntil, cs.inARow = time.Time{}, 0 // the break is over
	}
	if p.MaxInARow == 0 || p.Break == 0 {
		cs.breakDue, cs.breakUntil = false, time.Time{} // the policy no longer asks for breaks
	}
	if cs.breakDue && len(v.active) == 0 {
		// Their last conversation has ended: the break starts.
		cs.breakDue, cs.breakUntil = false, now.Add(p.Break)
	}
	var shiftEnd time.Time
	if p.MaxShift > 0 {
		shiftEnd = cs.shiftStart.Add(p.MaxShift)
	}
	var n CareNotice
	hold := ""
	switch {
	case !shiftEnd.IsZero() && !now.Before(shiftEnd):
		hold, n = CareShiftOver, CareNotice{State: CareShiftOver}
		if !cs.shiftOverCounted {
			cs.shiftOverCounted = true
			s.stats.Care[CareShiftOver]++
		}
	case cs.breakDue:
		hold, n = CareBreak, CareNotice{State: CareBreak, InARow: cs.inARow, Minutes: minutes(p.Break)}
	case now.Before(cs.breakUntil):
		hold, n = CareBreak, CareNotice{State: CareBreak, Until: cs.breakUntil, InARow: cs.inARow, Minutes: minutes(p.Break)}
		at(cs.breakUntil)
	case now.Before(cs.coolUntil) && !cs.ready:
		hold, n = CareCoolDown, CareNotice{State: CareCoolDown, Until: cs.coolUntil, Minutes: cs.coolMinutes}
		at(cs.coolUntil)
	case !shiftEnd.IsZero() && p.ShiftNotice > 0 && !now.Before(shiftEnd.Add(-p.ShiftNotice)):
		n = CareNotice{State: CareShiftEnding, Until: shiftEnd}
	default:
		n = CareNotice{State: CareOK}
	}
	if !shiftEnd.IsZero() {
		at(shiftEnd)
		if p.ShiftNotice > 0 {
			at(shiftEnd.Add(-p.ShiftNotice))
		}
	}
	// A cool-down hidden behind a break still needs its end looked at.
	at(cs.coolUntil)
	released := cs.hold != "" && hold == ""
	started := cs.hold == "" && hold != ""
	if cs.hold != hold {
		cs.hold = hold
		s.changedLocked() // gossip: free or not
	}
	if r := v.ring; started && r != nil && !(r.received != nil && r.received.call != nil) {
		// An offer that rang before the rest began (the queue rings at
		// once when a conversation ends, while the volunteer still
		// categorises it) must not be taken during it. A call already
		// ringing on a phone is left to ring: it cannot be recalled.
		defer s.unringLocked(r, "time to rest")
	}
	if cs.timer != nil {
		cs.timer.Stop()
		cs.timer = nil
	}
	if !next.IsZero() {
		cs.timer = s.afterFunc(next.Sub(now), func() { s.careTick(v) })
	}
	if n != cs.told {
		cs.told = n
		if sink, ok := v.sink.(CareSink); ok {
			v.out.post(func() { sink.Care(n) })
		}
	}
	return released
}

func minutes(d time.Duration) int { return int((d + time.Minute - 1) / time.Minute) }

// careStatsLocked fills the resting gauge: signed-in volunteers by the
// reason no offer comes to them now.
func (s *Switchboard) careStatsLocked(st *Stats) {
	st.Care = make(map[string]uint64, len(CareReasons))
	st.Resting = make(map[string]int, len(CareReasons))
	for _, r := range CareReasons {
		st.Care[r] = s.stats.Care[r]
		st.Resting[r] = 0
	}
	for _, v := range s.volunteers {
		if v.resting() {
			st.Resting[v.care.hold]++
		}
	}
}
