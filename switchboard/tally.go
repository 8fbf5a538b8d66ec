package switchboard

// KPI counting, under the lock.

func (s *Switchboard) tallyLocked(c *contact, f func(t *Tally)) {
	tallyIn(s.stats.Contacts, c, f)
}

// tallyIn applies f to c's channel and language in m: the desk's counts,
// or a snapshot's.
func tallyIn(m map[Key]Tally, c *contact, f func(t *Tally)) {
	k := Key{c.channel, c.language}
	t := m[k]
	f(&t)
	m[k] = t
}

// countAnsweredLocked counts a contact whose conversation ended, by who
// answered it.
func (s *Switchboard) countAnsweredLocked(c *contact) {
	s.tallyLocked(c, func(t *Tally) {
		if c.conv != nil && (c.conv.peer != nil || c.conv.other != "") || c.callAt != "" {
			t.AnsweredOverflow++
		} else {
			t.AnsweredLocal++
		}
	})
}

func (s *Switchboard) offerSentLocked(to, channel, result string) {
	s.stats.OffersSent[OfferKey{to, result, channel}]++
}

func (s *Switchboard) offerReceivedLocked(from, channel, result string) {
	s.stats.OffersReceived[OfferKey{from, result, channel}]++
}

// settleReceivedLocked counts a received offer's result once.
func (s *Switchboard) settleReceivedLocked(rc *received, result string) {
	if rc.result == "" {
		rc.result = result
		if rc.from != "" { // "" is our own call on our own volunteer
			s.offerReceivedLocked(rc.from, rc.channel, result)
		}
	}
}

// Total sums the Tallies of every channel and language.
func (st Stats) Total() Tally { return st.sum(func(Key) bool { return true }) }

// Channel sums one channel's Tallies over its languages.
func (st Stats) Channel(channel string) Tally {
	return st.sum(func(k Key) bool { return k.Channel == channel })
}

func (st Stats) sum(in func(Key) bool) Tally {
	var sum Tally
	for k, t := range st.Contacts {
		if !in(k) {
			continue
		}
		sum.Offered += t.Offered
		sum.AnsweredLocal += t.AnsweredLocal
		sum.AnsweredOverflow += t.AnsweredOverflow
		sum.Abandoned += t.Abandoned
		sum.Returned += t.Returned
		sum.Waiting += t.Waiting
		sum.InProgress += t.InProgress
	}
	return sum
}

// Moved counts the changes of a contact's state from one state to another
// over every channel: Moved(StateConnected, StateQueued) is the contacts
// requeued after losing their volunteer.
func (st Stats) Moved(from, to State) uint64 {
	var n uint64
	for tr, c := range st.Transitions {
		if tr.From == from && tr.To == to {
			n += c
		}
	}
	return n
}

// Sent counts our offers to other centres with one result, over every
// centre: Sent(OfferAccepted) is our contacts another centre answered.
func (st Stats) Sent(result string) uint64 { return withResult(st.OffersSent, result) }

// Received counts other centres' offers to us with one result:
// Received(OfferAccepted) is their contacts our volunteers answered.
func (st Stats) Received(result string) uint64 { return withResult(st.OffersReceived, result) }

func withResult(m map[OfferKey]uint64, result string) uint64 {
	var n uint64
	for k, c := range m {
		if k.Result == result {
			n += c
		}
	}
	return n
}

// Categorised counts the contacts volunteers categorised: each records
// exactly one age group.
func (st Stats) Categorised() uint64 {
	var n uint64
	for _, c := range st.AgeGroups {
		n += c
	}
	return n
}
