package switchboard

// Conversation traffic between a visitor and a volunteer, here or over a
// relay to the other centre.

// fromVisitorLocked routes what our visitor said.
func (s *Switchboard) fromVisitorLocked(cv *conv, e Event) {
	s.copyToLeavingLocked(cv, e)
	if cv.peer != nil {
		if err := cv.peer.Send(e); err != nil {
			s.log.Debug("relay send failed", "err", err)
		}
	} else if v := cv.vol; v != nil {
		id := cv.id
		v.out.post(func() { v.sink.Event(id, e) })
		s.mirrorLocked(cv, e, SaidByVisitor)
		if e.Kind == EventMessage {
			c := cv.visitor
			c.out.post(func() { c.visitor.Event(Event{Kind: EventDelivered, ID: e.ID}) })
		}
	}
	if e.Kind == EventEnded {
		s.endLocked(cv)
	}
}

// fromVolunteerLocked routes what our volunteer said.
func (s *Switchboard) fromVolunteerLocked(cv *conv, e Event) {
	v := cv.vol
	s.mirrorLocked(cv, e, SaidByVolunteer)
	if r := cv.resume; r != nil && e.Kind == EventMessage {
		r.keepSent(e)
		if cv.peer == nil {
			r.held++ // held: sent when the page resumes
		}
	}
	if cv.peer != nil {
		if err := cv.peer.Send(e); err != nil {
			s.log.Debug("relay send failed", "err", err)
		}
	} else if c := cv.visitor; c != nil {
		ve := s.aliasedLocked(c, cv, e)
		c.out.post(func() { c.visitor.Event(ve) })
		if e.Kind == EventMessage {
			id := cv.id
			v.out.post(func() { v.sink.Event(id, Event{Kind: EventDelivered, ID: e.ID}) })
		}
	}
	if e.Kind == EventEnded {
		s.endLocked(cv)
	}
}

// toVisitorLocked tells the visitor of cv something that is not a
// message: over the relay, or to our own visitor's page.
func (s *Switchboard) toVisitorLocked(cv *conv, e Event) {
	switch {
	case cv.peer != nil:
		_ = cv.peer.Send(e)
	case cv.visitor != nil:
		c := cv.visitor
		c.out.post(func() { c.visitor.Event(e) })
	}
}

// endLocked closes a conversation on this centre's side.
func (s *Switchboard) endLocked(cv *conv) {
	s.endSupportOfConvLocked(cv, "the conversation ended")
	if c := cv.visitor; c != nil && c.conv == cv {
		s.cancelTransferLocked(c, "the conversation ended", false)
	}
	if v := cv.vol; v != nil {
		if _, ok := v.active[cv.id]; ok {
			delete(v.active, cv.id)
			v.ended[cv.id] = s.now()
			v.idleSince = s.now()
			s.careConversationOverLocked(v, cv.started)
			s.postAvailabilityLocked(v)
		}
	}
	if c := cv.visitor; c != nil && c.state == StateConnected {
		if c.moving != nil {
			c.moving.Stop()
			c.moving = nil
		}
		s.moveLocked(c, StateEnded)
		s.forgetContactLocked(c)
	}
	if cv.received != nil {
		s.finishReceivedLocked(cv.received)
	}
	if cv.peer != nil {
		cv.peer.Close("ended")
	}
	s.dispatchLocked()
}

// ownerPeerHandler receives the far volunteer's side of one of our contacts.
// The relay starts reading before we have taken the lock back after
// confirming, so what arrives before the conversation is set up is kept
// (events) or remembered (loss) and dealt with once it is.
type ownerPeerHandler struct {
	s           *Switchboard
	c           *contact
	cv          *conv
	early       []Event
	lost        bool
	undelivered int
}

func (h *ownerPeerHandler) OnEvent(e Event) {
	h.locked(func() {
		if !h.lost {
			h.early = append(h.early, e)
		}
	}, func() { h.handleLocked(e) })
}

// locked runs, under the lock, early while the conversation is not set up
// yet, or set once it is; neither after Close.
func (h *ownerPeerHandler) locked(early, set func()) {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
	case h.cv == nil:
		early()
	default:
		set()
	}
}

func (h *ownerPeerHandler) handleLocked(e Event) {
	c := h.c
	if h.s.ownerTransferEventLocked(c, h.cv, e) {
		return
	}
	if c.conv != h.cv || c.state != StateConnected || h.cv.peer == nil {
		// Not ours any more, or the relay is already lost (the page was
		// told to move): an event its reader read before is dropped.
		return
	}
	ve := h.s.aliasedLocked(c, h.cv, e)
	c.out.post(func() { c.visitor.Event(ve) })
	if e.Kind == EventMessage {
		_ = h.cv.peer.Send(Event{Kind: EventDelivered, ID: e.ID})
	}
	if e.Kind == EventEnded {
		h.s.endLocked(h.cv)
	}
}

func (h *ownerPeerHandler) OnLost(undelivered int) {
	h.locked(func() { h.lost, h.undelivered = true, undelivered }, func() {
		if h.s.transferLostLocked(h.c, h.cv, undelivered) {
			return
		}
		if h.c.conv != h.cv || h.cv.peer == nil {
			return
		}
		if rv, ok := h.c.visitor.(ResumableVisitor); ok && h.c.state == StateConnected && rv.CanResume() {
			h.s.moveVisitorLocked(h.c, rv, undelivered)
			return
		}
		h.s.requeueLocked(h.c, undelivered, h.cv.other)
	})
}
