package switchboard

// KPI counting, under the lock.

func (s *Switchboard) tallyLocked(c *contact, f func(t *Tally)) {
	k := Key{c.channel, c.language}
	t := s.stats.Contacts[k]
	f(&t)
	s.stats.Contacts[k] = t
}

// countAnsweredLocked counts a contact whose conversation cv ended.
func (s *Switchboard) countAnsweredLocked(c *contact, cv *conv) {
	s.tallyLocked(c, func(t *Tally) {
		if cv != nil && cv.peer != nil {
			t.AnsweredOverflow++
		} else {
			t.AnsweredLocal++
		}
	})
}

func (s *Switchboard) offerSentLocked(to, result string) {
	s.stats.OffersSent[OfferKey{to, result}]++
}

func (s *Switchboard) offerReceivedLocked(from, result string) {
	s.stats.OffersReceived[OfferKey{from, result}]++
}

// settleReceivedLocked counts a received offer's result once.
func (s *Switchboard) settleReceivedLocked(rc *received, result string) {
	if rc.result == "" {
		rc.result = result
		s.offerReceivedLocked(rc.from, result)
	}
}
