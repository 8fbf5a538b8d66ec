package switchboard

// Urgent contacts (issue 17). A visitor may say, before the chat starts,
// that they need someone right now (the chat page's choice: they think of
// hurting themselves, or are not safe); a caller may say so in the PBX's
// menu, which the PBX passes in the INVITE. Helplines that ask this (Aselo's
// "Do you need urgent support?") route "yes" to a priority queue; so do we:
//
//   - Queue order: urgent contacts wait before every contact that is not,
//     in arrival order among themselves. Then the contacts that came
//     ahead (a ticket of a centre that died mid-conversation, or a contact
//     requeued after losing its volunteer), then everyone else, each in
//     arrival order. Urgent goes before ahead because an ahead visitor was
//     already answered once and is not said to be at risk, while an urgent
//     one has not been answered at all; a requeued urgent contact goes to
//     the very front (it is both). So an urgent contact's first offer never
//     comes after that of a contact that is not urgent and arrived later
//     for the same channel and language (the property test checks it).
//   - Overflow: dispatch walks the queue in this order, so when several
//     contacts are due, the urgent ones are offered first and get the best
//     candidate centre. An urgent contact is due at once whenever no offer
//     rings for it here (busy.go's due): nobody here is free for it, so
//     waiting overflow_after, or for a conversation here to end, only
//     makes someone at risk wait while a volunteer elsewhere may be free.
//     This holds even with the policy's wait_locally_when_busy, which is
//     about keeping ordinary contacts at home, not about urgent ones.
//   - Offers: Offer.Urgent marks the volunteer's offer, here and (through
//     OutgoingOffer.Urgent, the overflow offer frame's "urgent") at the
//     centre that takes it; an older release ignores the field and rings
//     the offer unmarked.
//   - Honest waits: an urgent arrival moves the contacts behind it back.
//     Each moved-back visitor of the same channel and language hears so
//     with their next place (MovedBackVisitor), never a silent jump.
//   - KPIs: Stats.UrgentContacts counts urgent arrivals per channel and
//     Stats.UrgentSpeedToAnswer their speed to answer (they are in
//     SpeedToAnswer too); never per person.

import "time"

// ContactOptions are how a contact is queued.
type ContactOptions struct {
	// Urgent: the visitor or caller said they need someone right now.
	Urgent bool
	// Ahead: a visitor whose centre died mid-conversation (api's ticket).
	Ahead bool
}

// MovedBackVisitor is a VisitorSink that can be told why its place grew:
// MovedBack is called, in order, just before the Queued that tells the
// new place when an urgent contact was queued ahead of it since it was
// last told. A sink without it only hears the new place.
type MovedBackVisitor interface {
	// MovedBack says why: MovedForUrgent or MovedForReturning.
	MovedBack(why string)
}

// queueRank orders the queue: urgent first, then ahead, then the rest.
func queueRank(c *contact) int {
	switch {
	case c.urgent:
		return 0
	case c.ahead:
		return 1
	}
	return 2
}

// enqueueLocked queues c behind every contact of its rank or before, in
// front of every contact of a later rank.
func (s *Switchboard) enqueueLocked(c *contact) {
	r := queueRank(c)
	i := len(s.queue)
	for j, q := range s.queue {
		if queueRank(q) > r {
			i = j
			break
		}
	}
	s.insertLocked(i, c)
}

// requeueFrontLocked queues a contact whose volunteer was lost in front of
// every contact of its rank (it waited and talked once): ahead, or at the
// very front if it is urgent.
func (s *Switchboard) requeueFrontLocked(c *contact) {
	c.ahead = true
	r := queueRank(c)
	i := len(s.queue)
	for j, q := range s.queue {
		if queueRank(q) >= r {
			i = j
			break
		}
	}
	s.insertLocked(i, c)
}

// Why a waiting visitor's place grew (MovedBackVisitor).
const (
	// MovedForUrgent: someone who needs help urgently came in ahead.
	MovedForUrgent = "urgent"
	// MovedForReturning: someone whose conversation was cut off (their
	// volunteer or centre was lost) came back ahead.
	MovedForReturning = "returning"
)

// insertLocked puts c at place i of the queue; a contact that did not
// join at the back (urgent, or returning ahead) moves the contacts behind
// it of its channel and language back, and they will be told why.
func (s *Switchboard) insertLocked(i int, c *contact) {
	s.queue = append(s.queue, nil)
	copy(s.queue[i+1:], s.queue[i:])
	s.queue[i] = c
	why := MovedForReturning
	if c.urgent {
		why = MovedForUrgent
	}
	for _, q := range s.queue[i+1:] {
		if q.channel == c.channel && q.language == c.language && queueRank(q) > queueRank(c) && q.movedBack != MovedForUrgent {
			q.movedBack = why
		}
	}
}

// countUrgentLocked counts an urgent contact's arrival.
func (s *Switchboard) countUrgentLocked(c *contact) {
	if c.urgent {
		s.stats.UrgentContacts[c.channel]++
	}
}

// observeAnswerLocked records c's speed to answer at its first connection
// (an urgent contact's twice: in SpeedToAnswer and UrgentSpeedToAnswer).
func (s *Switchboard) observeAnswerLocked(c *contact, now time.Time) {
	if c.answered {
		return
	}
	c.answered = true
	wait := now.Sub(c.created).Seconds()
	h := s.stats.SpeedToAnswer[c.channel]
	h.observe(s.cfg.AnswerBuckets, wait)
	s.stats.SpeedToAnswer[c.channel] = h
	if c.urgent {
		u := s.stats.UrgentSpeedToAnswer[c.channel]
		u.observe(s.cfg.AnswerBuckets, wait)
		s.stats.UrgentSpeedToAnswer[c.channel] = u
	}
}
