package switchboard

// When waiting here cannot help (issue 17). A contact used to wait the
// policy's overflow_after for a volunteer here whenever anyone here was
// switched on for its channel and language, even when all of them were in
// conversations: it then waited exactly overflow_after while volunteers
// elsewhere sat free, and with the default policy (chat 60 s) against a
// 60 s service-level target every such contact missed the target.
//
// Now, unless the policy says wait_locally_when_busy, a contact is offered
// to other centres at once when nobody here is free or about to be free for
// it. "About to be free" is room a conversation's end is not needed for: a
// volunteer switched on with fewer conversations than their capacity. An
// offer ringing does not take up room (it may be declined or time out),
// and neither does a decline (the volunteer is free, only not asked again
// for that contact for a while). Only conversations do: a chat lasts tens
// of minutes, far longer than any overflow_after.
//
// The contacts ahead in the queue count too: with one volunteer free and
// two contacts waiting, the first is rung and the second cannot be helped
// by waiting. Only those of the same channel and language are counted, so
// when one volunteer could serve two languages it may count twice; the
// error is on the side of waiting, which was the old rule. A contact for
// which an offer rings here is never sent out early: someone is about to
// answer it.
//
// "Another centre has someone free" is the router's: Candidates ranks only
// centres whose gossip says so, and without one nothing is offered until
// availability changes (Kick). overflow_after stays the most a contact
// waits for a local answer.

import (
	"slices"
	"time"
)

// queueWalk is what one walk of the queue, front to back, knows about
// waiting here: the room for each channel and language (worked out once
// per walk) and the contacts already passed. Call due for a contact, then
// passed.
type queueWalk struct {
	s   *Switchboard
	now time.Time
	// waitLocally is the policy's wait_locally_when_busy, read once per
	// walk and only when a contact needs it (policyRead).
	waitLocally, policyRead bool
	rooms                   map[Key]room
	ahead                   map[Key]int
}

// room is, for one channel and language, how many volunteers here are
// switched on for it and how many more contacts they could take without
// anyone ending a conversation.
type room struct{ on, open int }

func (s *Switchboard) walkQueueLocked(now time.Time) *queueWalk {
	return &queueWalk{s: s, now: now, rooms: map[Key]room{}, ahead: map[Key]int{}}
}

// roomLocked counts the room for k. A phone volunteer in a call has none
// for another call, whatever their capacity.
func (s *Switchboard) roomLocked(k Key) room {
	var r room
	for _, v := range s.volunteers {
		if !v.available[k.Channel] || !slices.Contains(v.Languages, k.Language) || v.offShift() {
			continue
		}
		r.on++
		if v.resting() {
			continue // no room until their rest ends (care.go)
		}
		if k.Channel == ChannelPhone && v.inCall() {
			continue
		}
		r.open += max(0, v.Capacity-len(v.active))
	}
	return r
}

// passed counts c as ahead of the contacts after it.
func (w *queueWalk) passed(c *contact) {
	if !c.connecting {
		w.ahead[Key{c.channel, c.language}]++
	}
}

// due says whether c is to be offered to other centres now: a restart is
// waiting on it, it waited the policy's overflow_after, nobody here is
// switched on for its channel and language, it is urgent and no offer
// rings for it here (urgent.go), or (unless the policy says
// wait_locally_when_busy) waiting here cannot help it.
func (w *queueWalk) due(c *contact) bool {
	s := w.s
	if s.drained != nil {
		// A restart is waiting on this contact: any free volunteer will do.
		return true
	}
	if w.now.Sub(c.created) >= s.cfg.OverflowAfter(c.channel) {
		return true
	}
	k := Key{c.channel, c.language}
	r, ok := w.rooms[k]
	if !ok {
		r = s.roomLocked(k)
		w.rooms[k] = r
	}
	if r.on == 0 {
		return true
	}
	if c.local != nil {
		return false
	}
	if c.urgent {
		// Nobody here rings for it: someone at risk does not wait for a
		// conversation here to end (urgent.go).
		return true
	}
	if !w.policyRead {
		w.policyRead = true
		w.waitLocally = s.cfg.WaitLocallyWhenBusy != nil && s.cfg.WaitLocallyWhenBusy()
	}
	return !w.waitLocally && w.ahead[k] >= r.open
}
