package switchboard

// A rolling restart must not cut a conversation short. Drain turns the
// desk into one that only finishes what it has: no new visitor, no offer
// from another centre, no one shown free by gossip; contacts already
// queued here are offered everywhere at once, and conversations go on
// until they end. The process exits when Drained is closed (or the
// operator's drain timeout passes, and Close counts what is left).

// Drain stops the desk taking new work and returns a channel closed once
// nothing is left: no contact of ours, no conversation or offer for
// another centre. Calling it again returns the same channel.
func (s *Switchboard) Drain() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.drained == nil {
		s.drained = make(chan struct{})
		s.log.Info("draining: no new contacts or offers; finishing conversations",
			"contacts", len(s.contacts), "received", len(s.received))
		// Pages that can resume go on at the answering centre now
		// (resume.go); the conversation ends here once they have.
		for _, c := range s.contacts {
			if rv, ok := c.visitor.(ResumableVisitor); ok && c.state == StateConnected && c.conv != nil && c.conv.peer != nil {
				c.out.post(func() { rv.Event(Event{Kind: EventMove}) })
			}
		}
		s.dispatchLocked()
		s.checkDrainedLocked()
	}
	return s.drained
}

// Draining reports whether Drain was called.
func (s *Switchboard) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.drained != nil
}

func (s *Switchboard) forgetContactLocked(c *contact) {
	delete(s.contacts, c.id)
	s.checkDrainedLocked()
}

func (s *Switchboard) forgetReceivedLocked(rc *received) {
	if rc.key != "" {
		delete(s.received, rc.key)
	} else {
		delete(s.received, rc.id)
	}
	s.checkDrainedLocked()
}

func (s *Switchboard) checkDrainedLocked() {
	if s.drained == nil || len(s.contacts) > 0 || len(s.received) > 0 {
		return
	}
	select {
	case <-s.drained:
	default:
		close(s.drained)
		s.log.Info("drained: no contacts or conversations left")
	}
}
