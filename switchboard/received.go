package switchboard

// Contacts other centres offer us: reserving a volunteer, ringing them,
// and the conversation relayed from the visitor's centre.

import (
	"context"
	"fmt"
	"time"
)

// IncomingOffer is another centre asking us to take one of its contacts.
type IncomingOffer struct {
	Contact  string
	From     string
	Channel  string
	Language string
	Ring     time.Duration
	// Resume is the owner's ResumeHash for the visitor's page ("" if none).
	Resume string
	// Transfer: one of the owner's volunteers hands the conversation
	// over, with a private Note. Transfers: the owner can carry out a
	// transfer this conversation's volunteer asks for (transfer.go).
	Transfer  bool
	Note      string
	Transfers bool
	// Seat: a transfer to the supervisor reading along under this
	// support id; only their console is rung.
	Seat string
	// Urgent: the owner's contact is urgent; the offer is marked.
	Urgent bool
}

// Reservation holds one of our volunteers for another centre's offer.
type Reservation struct {
	s *Switchboard
	r *received
}

// Reserve rings a free volunteer for another centre's contact. Our live
// state decides: gossip that said we had someone free was only a hint.
func (s *Switchboard) Reserve(o IncomingOffer) (*Reservation, error) {
	if len(o.Contact) == 0 || len(o.Contact) > 64 {
		return nil, fmt.Errorf("reserve: contact id: %w", ErrBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.offerReceivedLocked(o.From, o.Channel, OfferDeclined)
		return nil, ErrClosed
	}
	if s.drained != nil {
		s.offerReceivedLocked(o.From, o.Channel, OfferDeclined)
		return nil, fmt.Errorf("reserve for %s: %w", clip(o.From), ErrDraining)
	}
	key := o.Contact
	if o.Transfer {
		// We may answer this contact already (a transfer to a colleague
		// here): the owner decides, and the new offer has a key of its own.
		key = o.Contact + "/" + newID()
	}
	if _, dup := s.received[key]; dup {
		s.offerReceivedLocked(o.From, o.Channel, OfferDeclined)
		return nil, fmt.Errorf("reserve: contact already offered here: %w", ErrBadRequest)
	}
	if o.Channel == ChannelPhone {
		if o.From == "" {
			return nil, fmt.Errorf("reserve call: no owning centre: %w", ErrBadRequest)
		}
		rc, err := s.reserveCallLocked(o.Contact, o.From, o.Language, o.Urgent)
		if err != nil {
			s.offerReceivedLocked(o.From, o.Channel, OfferDeclined)
			return nil, fmt.Errorf("reserve for %s: %w", clip(o.From), err)
		}
		return &Reservation{s: s, r: rc}, nil
	}
	var best *volunteer
	if o.Transfer && o.Seat != "" {
		best = s.seatVolunteerLocked(o.Seat, o.Contact, o.Channel)
	}
	for _, v := range s.volunteers {
		if o.Seat != "" {
			break
		}
		if _, in := v.active[o.Contact]; in {
			continue // already in this conversation (a transfer)
		}
		if v.free(o.Channel, o.Language) && (best == nil || longerIdle(v, best)) {
			best = v
		}
	}
	if best == nil {
		s.offerReceivedLocked(o.From, o.Channel, OfferDeclined)
		return nil, fmt.Errorf("reserve for %s: %w", clip(o.From), ErrNoVolunteer)
	}
	ring := min(max(o.Ring, time.Second), s.cfg.RingTimeout)
	rc := &received{id: o.Contact, from: o.From, channel: o.Channel, language: o.Language, vol: best, decided: make(chan error, 1),
		key: key, transfers: o.Transfers}
	if o.Channel == ChannelChat && resumeHashPattern.MatchString(o.Resume) {
		rc.resumeHash = o.Resume
	}
	r := &ringing{vol: best, received: rc}
	rc.ring = r
	best.ring = r
	s.received[key] = rc
	r.timer = s.afterFunc(ring, func() { s.ringTimedOut(r) })
	offer := Offer{Contact: rc.id, Channel: o.Channel, Language: o.Language, From: o.From, Until: s.now().Add(ring), Urgent: o.Urgent}
	if o.Transfer {
		offer.Transfer, offer.Note = true, clipNote(o.Note)
	}
	best.out.post(func() { best.sink.Offer(offer) })
	s.postAvailabilityLocked(best)
	s.changedLocked()
	return &Reservation{s: s, r: rc}, nil
}

// Wait blocks until the volunteer accepts (nil) or not (an error), or ctx
// ends (the offering centre withdrew).
func (res *Reservation) Wait(ctx context.Context) (alias string, err error) {
	select {
	case err := <-res.r.decided:
		return res.decided(err)
	case <-ctx.Done():
		res.Release("withdrawn by the visitor's centre")
		return "", fmt.Errorf("offer withdrawn: %w", ctx.Err())
	}
}

// Decided is Wait without waiting: ok is false while the offer still rings.
// The capacity simulator (sim/) asks it, since its virtual clock cannot see
// a goroutine blocked in Wait.
func (res *Reservation) Decided() (alias string, ok bool, err error) {
	select {
	case err := <-res.r.decided:
		alias, err = res.decided(err)
		return alias, true, err
	default:
		return "", false, nil
	}
}

func (res *Reservation) decided(err error) (string, error) {
	if err != nil {
		res.s.mu.Lock()
		res.s.forgetReceivedLocked(res.r)
		res.s.settleReceivedLocked(res.r, OfferDeclined)
		res.s.mu.Unlock()
		return "", err
	}
	return res.r.vol.Alias, nil
}

// Connect turns an accepted reservation into a conversation with peer, the
// relay to the visitor's centre.
func (res *Reservation) Connect(peer Peer) PeerHandler {
	s := res.s
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := res.r
	if rc.call != nil {
		return s.connectCallLocked(rc, peer)
	}
	v := rc.vol
	h := &receivedPeerHandler{s: s, rc: rc}
	if v.ring != rc.ring || s.volunteers[v.ID] != v {
		s.forgetReceivedLocked(rc)
		s.settleReceivedLocked(rc, OfferDeclined)
		peer.Close("the volunteer is gone")
		return h
	}
	v.ring = nil
	rc.conv = &conv{id: rc.id, vol: v, peer: peer, other: rc.from, received: rc, started: s.now(), alias: v.Alias}
	if r := s.newResumable(rc.resumeHash); r != nil {
		if _, taken := s.resumables[r.hash]; !taken {
			rc.conv.resume = r
			s.resumables[r.hash] = rc
		}
	}
	v.active[rc.id] = rc.conv
	s.settleReceivedLocked(rc, OfferAccepted)
	v.out.post(func() { v.sink.Connected(rc.id, rc.from) })
	s.postAvailabilityLocked(v)
	// The volunteer is in a conversation now, not merely ringing: a
	// contact of ours waiting for them may be offered out (busy.go).
	s.dispatchLocked()
	return h
}

// Release frees the volunteer: the offering centre cancelled or vanished.
func (res *Reservation) Release(reason string) {
	s := res.s
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := res.r
	if rc.call != nil {
		// The owner never confirmed: nobody will send the call.
		if rc.call.peer == nil && !rc.call.arrived {
			s.settleReceivedLocked(rc, OfferWithdrawn)
			s.callOverLocked(rc, ByUnanswered)
		}
		return
	}
	if rc.conv != nil {
		return
	}
	s.forgetReceivedLocked(rc)
	s.settleReceivedLocked(rc, OfferWithdrawn)
	if rc.vol.ring == rc.ring {
		rc.ring.timer.Stop()
		rc.vol.ring = nil
		v, id := rc.vol, rc.id
		v.out.post(func() { v.sink.OfferWithdrawn(id, reason) })
		s.postAvailabilityLocked(v)
		s.dispatchLocked()
	}
}

func (s *Switchboard) finishReceivedLocked(rc *received) {
	if rc != nil {
		s.forgetResumableLocked(rc)
		s.forgetReceivedLocked(rc)
	}
}

// receivedPeerHandler receives the visitor's side of another centre's
// contact that our volunteer is answering.
type receivedPeerHandler struct {
	s  *Switchboard
	rc *received
}

// locked runs f under the lock while the conversation is still live on
// our volunteer's console.
func (h *receivedPeerHandler) locked(f func(s *Switchboard, cv *conv)) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if cv := h.rc.conv; cv != nil {
		if cv.resume != nil && cv.resume.resumed {
			return // the page is here now; the relay is over
		}
		if _, live := cv.vol.active[cv.id]; live {
			f(s, cv)
		}
	}
}

func (h *receivedPeerHandler) OnEvent(e Event) {
	h.locked(func(s *Switchboard, cv *conv) {
		if cv.peer != nil { // not while held
			s.visitorEventLocked(cv, e)
		}
	})
}

// visitorEventLocked passes on what the visitor of a received conversation
// said, through the relay or, resumed, from their page.
func (s *Switchboard) visitorEventLocked(cv *conv, e Event) {
	if s.answeringTransferEventLocked(cv, e) {
		return
	}
	if e.Kind == EventMessage && cv.resume != nil && !cv.resume.firstTime(e.ID) {
		// Sent again by a page that resumed without seeing it delivered.
		_ = cv.peer.Send(Event{Kind: EventDelivered, ID: e.ID})
		return
	}
	if cv.inPace == nil {
		cv.inPace = newReceivedPacer(s.cfg.Pace)
	}
	v, id := cv.vol, cv.id
	switch now := s.now(); e.Kind {
	case EventTyping:
		if !cv.inPace.typing(now) {
			return
		}
	case EventMessage:
		if cv.inPace.message(now) != nil {
			// The visitor's centre is not pacing its visitor (an old
			// release or a bug). End this one conversation rather than
			// let it fill the console our volunteer shares with others.
			s.log.Warn("relayed conversation ended: messages arrive faster than any visitor may send", "centre", cv.other)
			v.out.post(func() { v.sink.Event(id, Event{Kind: EventEnded, By: ByVisitor}) })
			_ = cv.peer.Send(Event{Kind: EventEnded, By: ByVolunteer})
			s.endLocked(cv)
			return
		}
	}
	v.out.post(func() { v.sink.Event(id, e) })
	s.mirrorLocked(cv, e, SaidByVisitor)
	if e.Kind == EventMessage {
		_ = cv.peer.Send(Event{Kind: EventDelivered, ID: e.ID})
	}
	if e.Kind == EventEnded {
		s.endLocked(cv)
	}
}

func (h *receivedPeerHandler) OnLost(undelivered int) {
	h.locked(func(s *Switchboard, cv *conv) {
		if cv.peer == nil {
			return // already held
		}
		if cv.resume != nil {
			s.holdLocked(cv, undelivered)
			return
		}
		s.loseReceivedLocked(cv, undelivered)
	})
}
