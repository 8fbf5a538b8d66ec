package switchboard

// The visitor's wait estimate (issue 14): what a waiting visitor may
// honestly be told, from who is on duty and free for their channel and
// language here and in the federation, and from how fast contacts like
// theirs were answered lately. Never a made-up number: with nobody free and
// no recent answers to go by, the visitor hears "several minutes".

import (
	"fmt"
	"slices"
	"time"
)

// WaitKind says what kind of wait a visitor is told.
type WaitKind string

// The kinds of wait, in docs/api.md as the queued frame's "wait".
const (
	// WaitFreeNow: an offer for the contact is ringing (here or at another
	// centre), or a volunteer is free for it here, or at a centre it will be
	// offered to within a minute: "less than a minute".
	WaitFreeNow WaitKind = "free_now"
	// WaitMinutes: everyone on duty for it is busy; at the recent answer
	// rate its turn comes in about Estimate.Minutes minutes.
	WaitMinutes WaitKind = "minutes"
	// WaitLong: as WaitMinutes, but more than MaxWaitMinutes.
	WaitLong WaitKind = "long"
	// WaitSeveral: everyone on duty for it is busy and no contact of its
	// channel and language was answered lately, so there is no rate to
	// estimate from: "several minutes".
	WaitSeveral WaitKind = "several"
	// WaitNoOne: no volunteer is on duty for its channel and language, here
	// or at any centre it could be offered to: "no one is free right now".
	WaitNoOne WaitKind = "no_one_on_duty"
)

// Estimate is a waiting visitor's expected wait.
type Estimate struct {
	Kind WaitKind
	// Minutes is 1..MaxWaitMinutes with WaitMinutes, MaxWaitMinutes with
	// WaitLong, and 0 otherwise.
	Minutes int
}

func (e Estimate) String() string {
	switch e.Kind {
	case WaitMinutes:
		return fmt.Sprintf("about %d min", e.Minutes)
	case WaitLong:
		return fmt.Sprintf("over %d min", e.Minutes)
	}
	return string(e.Kind)
}

const (
	// MaxWaitMinutes caps the estimate: past it a number says little more
	// than "long", and errs most.
	MaxWaitMinutes = 15
	// AnswerWindow is how far back answers count towards the answer rate.
	AnswerWindow = 15 * time.Minute
	// minAnswerWindow: a desk younger than AnswerWindow divides its answers
	// by its age, but by no less than this, so its first answer or two do
	// not promise a rate it never showed for long.
	minAnswerWindow = 5 * time.Minute
	// WaitResendEvery bounds how often one visitor hears a new place or
	// estimate: a volunteer switching on and off, or flapping gossip,
	// cannot flood the waiting visitors. The latest value follows when
	// the time is up.
	WaitResendEvery = 5 * time.Second
	// waitRefresh: while contacts wait, estimates are worked out again this
	// often even if nothing happened, since the answer rate and the time to
	// overflow change with the clock alone.
	waitRefresh = 15 * time.Second
	// freeNowWithin: a free volunteer elsewhere counts as "free now" if the
	// contact will be offered there within this.
	freeNowWithin = time.Minute
)

// waitInputs is everything one contact's estimate depends on, gathered
// under the switchboard's lock; estimateWait is pure.
type waitInputs struct {
	// offered: an offer for it rings here or at another centre, or another
	// centre's volunteer accepted and we are confirming.
	offered bool
	// position is its place among the contacts waiting here for its
	// channel and language; unoffered its place among those of them with
	// no offer out (both from 1).
	position, unoffered int
	// Volunteers for its channel and language: free now, and on duty
	// (switched on, free or busy), here and at the other centres that
	// take overflow (gossip's view; zero without Overflow).
	freeHere, onDutyHere           int
	freeElsewhere, onDutyElsewhere int
	// overflowIn is how long until it may be offered to other centres
	// (0: now).
	overflowIn time.Duration
	// answers counts contacts of its channel and language answered within
	// window.
	answers int
	window  time.Duration
}

// estimateWait applies the rules, first match wins:
//
//  1. an offer is out for it: free now;
//  2. a volunteer is free for it here, or at a centre it will be offered
//     to within a minute, and contacts without an offer ahead of it do not
//     take them all: free now;
//  3. nobody is on duty for it here or at any centre that takes overflow:
//     no one on duty;
//  4. its position over the answer rate (answers within the window per
//     minute), rounded up to whole minutes, and no later than the minute
//     it will be offered to a centre with someone free; over
//     MaxWaitMinutes: long;
//  5. without recent answers (and no centre with someone free to be
//     offered to): several minutes.
func estimateWait(in waitInputs) Estimate {
	if in.offered {
		return Estimate{Kind: WaitFreeNow}
	}
	slots := in.freeHere
	if in.overflowIn <= freeNowWithin {
		slots += in.freeElsewhere
	}
	if in.unoffered <= slots {
		return Estimate{Kind: WaitFreeNow}
	}
	if in.onDutyHere+in.onDutyElsewhere == 0 {
		return Estimate{Kind: WaitNoOne}
	}
	minutes := -1 // unknown
	if in.freeElsewhere > 0 && in.unoffered <= in.freeHere+in.freeElsewhere {
		minutes = ceilMinutes(in.overflowIn)
	}
	if in.answers > 0 && in.window > 0 {
		byRate := ceilMinutes(time.Duration(in.position) * in.window / time.Duration(in.answers))
		if minutes < 0 || byRate < minutes {
			minutes = byRate
		}
	}
	switch {
	case minutes < 0:
		return Estimate{Kind: WaitSeveral}
	case minutes > MaxWaitMinutes:
		return Estimate{Kind: WaitLong, Minutes: MaxWaitMinutes}
	}
	return Estimate{Kind: WaitMinutes, Minutes: max(minutes, 1)}
}

func ceilMinutes(d time.Duration) int {
	return int((d + time.Minute - 1) / time.Minute)
}

// duty counts the volunteers for one channel and language.
type duty struct{ freeHere, onDutyHere, freeElsewhere, onDutyElsewhere int }

func (s *Switchboard) dutyLocked(k Key) duty {
	var d duty
	for _, v := range s.volunteers {
		if !v.available[k.Channel] || !slices.Contains(v.Languages, k.Language) || v.offShift() {
			continue
		}
		d.onDutyHere++
		if v.free(k.Channel, k.Language) {
			d.freeHere++
		}
	}
	if s.cfg.Overflow != nil {
		free, busy := s.cfg.Overflow.OnDuty(k.Channel, k.Language)
		d.freeElsewhere, d.onDutyElsewhere = free, free+busy
	}
	return d
}

// noteAnswerLocked records that a contact of ours was connected, for the
// answer rate.
func (s *Switchboard) noteAnswerLocked(k Key, now time.Time) {
	s.answers[k] = append(s.pruneAnswersLocked(k, now), now)
}

// pruneAnswersLocked drops k's answers older than AnswerWindow.
func (s *Switchboard) pruneAnswersLocked(k Key, now time.Time) []time.Time {
	a := s.answers[k]
	i := 0
	for i < len(a) && now.Sub(a[i]) > AnswerWindow {
		i++
	}
	if i == len(a) {
		delete(s.answers, k)
		return nil
	}
	a = a[i:]
	s.answers[k] = a
	return a
}

// answerWindowLocked is the time the answers are divided by.
func (s *Switchboard) answerWindowLocked(now time.Time) time.Duration {
	return min(max(now.Sub(s.started), minAnswerWindow), AnswerWindow)
}

// positionsLocked works out every waiting visitor's place and estimate and
// tells those for whom either changed, at most once per WaitResendEvery.
func (s *Switchboard) positionsLocked() {
	if s.closed {
		return
	}
	now := s.now()
	window := s.answerWindowLocked(now)
	pos, unoffered := map[Key]int{}, map[Key]int{}
	duties := map[Key]duty{}
	walk := s.walkQueueLocked(now)
	for _, c := range s.queue {
		k := Key{c.channel, c.language}
		pos[k]++
		offered := c.local != nil || c.remote != nil || c.connecting
		if !offered {
			unoffered[k]++
		}
		d, ok := duties[k]
		if !ok {
			d = s.dutyLocked(k)
			duties[k] = d
		}
		in := waitInputs{
			offered: offered, position: pos[k], unoffered: unoffered[k],
			freeHere: d.freeHere, onDutyHere: d.onDutyHere,
			answers: len(s.pruneAnswersLocked(k, now)), window: window,
		}
		if s.cfg.Overflow != nil {
			in.freeElsewhere, in.onDutyElsewhere = d.freeElsewhere, d.onDutyElsewhere
			if !walk.due(c) {
				in.overflowIn = s.cfg.OverflowAfter(c.channel) - now.Sub(c.created)
			}
		}
		walk.passed(c)
		s.tellWaitLocked(c, pos[k], estimateWait(in), now)
	}
	if len(s.queue) > 0 && s.waitTimer == nil {
		s.waitTimer = s.afterFunc(waitRefresh, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.waitTimer = nil
			s.positionsLocked()
		})
	}
}

// tellWaitLocked tells c's visitor their place and estimate if either
// changed, unless they were told less than WaitResendEvery ago: then once
// that time is up, with whatever is true by then.
func (s *Switchboard) tellWaitLocked(c *contact, p int, e Estimate, now time.Time) {
	if p == c.lastPos && e == c.lastWait {
		// Whoever came in ahead, as many left: not moved back after all.
		c.movedBack = ""
		return
	}
	if !c.toldAt.IsZero() && now.Sub(c.toldAt) < WaitResendEvery {
		if c.resendTimer == nil {
			c.resendTimer = s.afterFunc(c.toldAt.Add(WaitResendEvery).Sub(now), func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				c.resendTimer = nil
				if c.waiting() {
					s.positionsLocked()
				}
			})
		}
		return
	}
	movedBack := c.movedBack
	if c.lastPos < 0 || p <= c.lastPos {
		movedBack = ""
	}
	c.movedBack = ""
	c.lastPos, c.lastWait, c.toldAt = p, e, now
	vis := c.visitor
	if mb, ok := vis.(MovedBackVisitor); ok && movedBack != "" {
		// Said with the new place, never a silent jump back (urgent.go).
		c.out.post(func() { mb.MovedBack(movedBack) })
	}
	c.out.post(func() { vis.Queued(p, e) })
}
