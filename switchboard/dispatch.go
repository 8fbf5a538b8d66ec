package switchboard

// Dispatch: who is offered what, here and at other centres, and how a
// waiting contact is connected, requeued or placed.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Kick re-runs dispatch: after a timer, or when other centres' availability
// changed.
func (s *Switchboard) Kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.dispatchLocked()
	}
}

func (s *Switchboard) dispatchLocked() {
	if s.closed {
		return
	}
	now := s.now()
	walk := s.walkQueueLocked(now)
	for _, c := range s.queue {
		if c.connecting {
			continue
		}
		if c.local == nil {
			if v := s.pickLocked(c, now); v != nil {
				s.ringLocked(c, v)
			}
		}
		if c.remote == nil && s.cfg.Overflow != nil && walk.due(c) {
			s.offerRemoteLocked(c)
		}
		walk.passed(c)
	}
	s.positionsLocked()
	s.changedLocked()
}

// longerIdle orders volunteers for an offer: those in fewer conversations
// first (someone already talking is not idle), then whoever has waited
// longest since their last contact, then by id so the choice is stable.
func longerIdle(a, b *volunteer) bool {
	if len(a.active) != len(b.active) {
		return len(a.active) < len(b.active)
	}
	if !a.idleSince.Equal(b.idleSince) {
		return a.idleSince.Before(b.idleSince)
	}
	return a.ID < b.ID
}

// declineCooldown: a volunteer who declined a contact is asked again only
// after everyone else, and not before this.
const declineCooldown = 30 * time.Second

// pickLocked chooses the longest-idle free volunteer for c.
func (s *Switchboard) pickLocked(c *contact, now time.Time) *volunteer {
	var best *volunteer
	for _, v := range s.volunteers {
		if !v.free(c.channel, c.language) {
			continue
		}
		if at, ok := c.declined[v]; ok && now.Sub(at) < declineCooldown {
			continue
		}
		if best == nil || longerIdle(v, best) {
			best = v
		}
	}
	return best
}

func (s *Switchboard) ringLocked(c *contact, v *volunteer) {
	r := &ringing{vol: v, contact: c}
	c.local, v.ring = r, r
	s.moveLocked(c, StateOffered)
	until := s.now().Add(s.cfg.RingTimeout)
	r.timer = s.afterFunc(s.cfg.RingTimeout, func() { s.ringTimedOut(r) })
	o := Offer{Contact: c.id, Channel: c.channel, Language: c.language, Until: until, Urgent: c.urgent}
	v.out.post(func() { v.sink.Offer(o) })
}

func (s *Switchboard) ringTimedOut(r *ringing) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.vol.ring == r {
		s.unringLocked(r, "no answer in time")
	}
}

// unringLocked ends a ringing offer that was not accepted (declined, timed
// out, console gone): the contact moves on to the next volunteer.
func (s *Switchboard) unringLocked(r *ringing, reason string) {
	if r.transfer != nil {
		s.transferUnrungLocked(r, reason)
		return
	}
	if r.received != nil && r.received.call != nil {
		s.callOverBecauseLocked(r.received, ByUnanswered, reason)
		return
	}
	r.timer.Stop()
	v := r.vol
	if v.ring == r {
		v.ring = nil
	}
	id := ""
	switch {
	case r.contact != nil:
		id = r.contact.id
		r.contact.local = nil
		r.contact.declined[v] = s.now()
		// If nobody else takes it, this volunteer is asked again once the
		// cooldown is over: something must re-run dispatch then.
		s.afterFunc(declineCooldown, s.Kick)
		if r.contact.waiting() && r.contact.remote == nil && !r.contact.connecting {
			s.moveLocked(r.contact, StateQueued)
		}
	case r.received != nil:
		id = r.received.id
		if !r.received.accepted {
			select {
			case r.received.decided <- fmt.Errorf("%s: %w", reason, ErrOfferGone):
			default:
			}
		}
	}
	v.out.post(func() { v.sink.OfferWithdrawn(id, reason) })
	s.postAvailabilityLocked(v)
	s.dispatchLocked()
}

// withdrawLocked takes back an offer of ours because the contact is gone or
// was answered elsewhere.
func (s *Switchboard) withdrawLocked(r *ringing, reason string) {
	r.timer.Stop()
	v := r.vol
	if v.ring == r {
		v.ring = nil
	}
	if r.contact != nil {
		r.contact.local = nil
	}
	id := r.contact.id
	v.out.post(func() { v.sink.OfferWithdrawn(id, reason) })
	s.postAvailabilityLocked(v)
}

func (s *Switchboard) offerRemoteLocked(c *contact) {
	var pick *Candidate
	for _, cand := range s.cfg.Overflow.Candidates(c.channel, c.language) {
		if cand.Centre == s.cfg.Centre {
			continue
		}
		if v, tried := c.tried[cand.Centre]; tried && v >= cand.Version {
			continue
		}
		pick = &cand
		break
	}
	if pick == nil {
		return // offered again when availability changes (Kick)
	}
	c.tried[pick.Centre] = pick.Version
	ctx, cancel := context.WithCancel(s.stop.Context())
	ro := &remoteOffer{centre: pick.Centre, cancel: cancel}
	c.remote = ro
	if c.state == StateQueued {
		s.moveLocked(c, StateOffered)
	}
	req := OutgoingOffer{Contact: c.id, Channel: c.channel, Language: c.language, Ring: s.cfg.RingTimeout, Urgent: c.urgent}
	if rv, ok := c.visitor.(ResumableVisitor); ok && c.channel == ChannelChat {
		// A fresh secret for each centre: one that answered and was lost
		// cannot be resumed at once the contact moves on.
		req.Resume = rv.NewResume()
	}
	s.spawn(func(context.Context) {
		defer cancel()
		s.runRemoteOffer(ctx, c, ro, req)
	})
}

func (s *Switchboard) runRemoteOffer(ctx context.Context, c *contact, ro *remoteOffer, req OutgoingOffer) {
	ans, err := s.cfg.Overflow.Offer(ctx, ro.centre, req)
	s.mu.Lock()
	if c.remote != ro || err != nil || !c.waiting() || s.closed {
		switch {
		case c.remote != ro || ctx.Err() != nil || err == nil:
			// We took the offer back (answered here, visitor left, shut
			// down), whatever the other centre had said.
			s.offerSentLocked(ro.centre, c.channel, OfferWithdrawn)
		case errors.Is(err, ErrDeclined):
			s.offerSentLocked(ro.centre, c.channel, OfferDeclined)
		default:
			s.offerSentLocked(ro.centre, c.channel, OfferFailed)
			s.retryLaterLocked(c, ro.centre)
		}
		if c.remote == ro {
			c.remote = nil
			if c.waiting() && c.local == nil {
				s.moveLocked(c, StateQueued)
			}
			if err != nil {
				s.log.Debug("overflow offer not taken", "to", ro.centre, "err", err)
			}
			s.dispatchLocked()
		}
		s.mu.Unlock()
		if ans != nil {
			ans.Cancel("the contact was answered elsewhere")
		}
		return
	}
	// The other centre's volunteer accepted: the contact is theirs unless
	// confirming fails. No local acceptance can win from here on.
	c.remote = nil
	c.connecting = true
	if c.local != nil {
		s.withdrawLocked(c.local, "answered at another centre")
	}
	s.mu.Unlock()

	h := &ownerPeerHandler{s: s, c: c}
	peer, err := ans.Confirm(h)

	s.mu.Lock()
	defer s.mu.Unlock()
	c.connecting = false
	if err != nil {
		s.offerSentLocked(ro.centre, c.channel, OfferFailed)
		s.retryLaterLocked(c, ro.centre)
		s.log.Warn("overflow confirm failed", "to", ro.centre, "err", err)
		if c.waiting() {
			s.moveLocked(c, StateQueued)
			s.dispatchLocked()
		}
		return
	}
	if !c.waiting() || s.closed {
		s.offerSentLocked(ro.centre, c.channel, OfferWithdrawn)
		peer.Close("the visitor left")
		return
	}
	if h.lost {
		s.offerSentLocked(ro.centre, c.channel, OfferFailed)
		// The relay died while we confirmed: the contact never reached the
		// volunteer; it waits on, and that centre is not tried again.
		s.moveLocked(c, StateQueued)
		c.tried[ro.centre] = ^uint64(0) >> 1
		s.dispatchLocked()
		return
	}
	cv := &conv{id: c.id, visitor: c, peer: peer, other: ro.centre, resumable: ans.Resumable()}
	h.cv = cv
	s.connectLocked(c, cv, ans.Alias())
	s.offerSentLocked(ro.centre, c.channel, OfferAccepted)
	for _, e := range h.early {
		h.handleLocked(e)
	}
	h.early = nil
	s.dispatchLocked()
}

// retryFailedAfter is how long a centre an offer could not reach (lost,
// reset, unreachable: not a no) is left out for that contact. A centre is
// otherwise offered the contact again only once it publishes something new,
// and a centre whose state the failed offer never touched has nothing new
// to say: without this the contact would wait at home while someone there
// is free. A dead centre is dropped by gossip in the meantime.
const retryFailedAfter = 5 * time.Second

// retryLaterLocked forgets, after retryFailedAfter, that c was offered to
// centre, and re-runs dispatch.
func (s *Switchboard) retryLaterLocked(c *contact, centre string) {
	v := c.tried[centre]
	s.afterFunc(retryFailedAfter, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if c.waiting() && c.tried[centre] == v {
			delete(c.tried, centre)
			s.dispatchLocked()
		}
	})
}

// connectLocked joins a waiting contact of ours to a volunteer.
func (s *Switchboard) connectLocked(c *contact, cv *conv, alias string) {
	s.removeFromQueueLocked(c)
	s.moveLocked(c, StateConnected)
	c.conv = cv
	cv.alias = alias
	c.overflowTimer.Stop()
	now := s.now()
	s.noteAnswerLocked(Key{c.channel, c.language}, now)
	s.observeAnswerLocked(c, now)
	if rv, ok := c.visitor.(ResumableVisitor); ok {
		at := cv.other
		if !cv.resumable {
			at = "" // an older release there: the page gets a ticket instead
		}
		c.out.post(func() { rv.AnsweredAt(at) })
	}
	c.out.post(func() { c.visitor.Connected(alias) })
	if cv.vol != nil {
		cv.vol.active[c.id] = cv
		v := cv.vol
		v.out.post(func() { v.sink.Connected(c.id, "") })
		s.postAvailabilityLocked(v)
	}
}

// requeueLocked puts a contact whose volunteer was lost back at the front:
// ahead of every contact but the urgent ones (ahead of those too if it is
// urgent itself; urgent.go).
func (s *Switchboard) requeueLocked(c *contact, undelivered int, lostCentre string) {
	if c.state != StateConnected {
		return
	}
	c.conv = nil
	s.moveLocked(c, StateQueued)
	if lostCentre != "" {
		c.tried[lostCentre] = ^uint64(0) >> 1 // not again for this contact
	}
	s.requeueFrontLocked(c)
	c.lastPos, c.toldAt = -1, time.Time{} // told at once: Requeued came first
	// Its wait counts from its arrival: overflow is due at the same moment
	// it would have been had it never been answered.
	c.overflowTimer.Reset(max(0, s.cfg.OverflowAfter(c.channel)-s.since(c.created)))
	c.out.post(func() { c.visitor.Requeued(undelivered) })
	s.dispatchLocked()
}

func (s *Switchboard) removeFromQueueLocked(c *contact) {
	s.queue = slices.DeleteFunc(s.queue, func(q *contact) bool { return q == c })
}
