package switchboard

// Views of the desk for gossip, metrics and tests.

import (
	"maps"
	"time"
)

func (s *Switchboard) postAvailabilityLocked(v *volunteer) {
	channels := map[string]bool{}
	for _, ch := range v.Channels {
		channels[ch] = v.available[ch]
	}
	active, capacity := len(v.active), v.Capacity
	v.out.post(func() { v.sink.Availability(channels, active, capacity) })
}

// ChannelView is this centre's live state for one channel.
type ChannelView struct {
	// Free and Busy count volunteers by language: one who speaks three
	// counts three times. FreeVolunteers counts the free ones once each.
	Free           map[string]int
	Busy           map[string]int
	FreeVolunteers int
	QueueLength    int
	OldestWait     time.Duration
}

// Availability is what the centre publishes by gossip.
func (s *Switchboard) Availability() map[string]ChannelView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.availabilityLocked()
}

func (s *Switchboard) availabilityLocked() map[string]ChannelView {
	out := map[string]ChannelView{}
	get := func(ch string) ChannelView {
		cv, ok := out[ch]
		if !ok {
			cv = ChannelView{Free: map[string]int{}, Busy: map[string]int{}}
		}
		return cv
	}
	for _, v := range s.volunteers {
		for _, ch := range v.Channels {
			if !v.available[ch] || v.offShift() {
				continue
			}
			cv := get(ch)
			counted := false
			for _, l := range v.Languages {
				free := v.free(ch, l)
				if ch == ChannelPhone {
					// Other centres send calls only: without an ingress
					// (CallTokens) or a phone none can reach this volunteer.
					free = s.cfg.CallTokens != nil && v.freeForCalls(l)
				}
				// A draining centre takes no one new, so it shows no one free.
				if free && s.drained == nil {
					cv.Free[l]++
					if !counted {
						cv.FreeVolunteers++
						counted = true
					}
				} else {
					cv.Busy[l]++
				}
			}
			out[ch] = cv
		}
	}
	now := s.now()
	for _, c := range s.queue {
		cv := get(c.channel)
		cv.QueueLength++
		cv.OldestWait = max(cv.OldestWait, now.Sub(c.created))
		out[c.channel] = cv
	}
	return out
}

// Stats returns the counters.
func (s *Switchboard) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Topics = maps.Clone(s.stats.Topics)
	st.AgeGroups = maps.Clone(s.stats.AgeGroups)
	st.Contacts = maps.Clone(s.stats.Contacts)
	st.Transitions = maps.Clone(s.stats.Transitions)
	st.SpeedToAnswer = make(map[string]Histogram, len(s.stats.SpeedToAnswer))
	for ch, h := range s.stats.SpeedToAnswer {
		b := make(map[float64]uint64, len(s.cfg.AnswerBuckets))
		for _, le := range s.cfg.AnswerBuckets {
			b[le] = h.Buckets[le]
		}
		h.Buckets = b
		st.SpeedToAnswer[ch] = h
	}
	st.UrgentContacts = maps.Clone(s.stats.UrgentContacts)
	st.UrgentSpeedToAnswer = make(map[string]Histogram, len(s.stats.UrgentSpeedToAnswer))
	for ch, h := range s.stats.UrgentSpeedToAnswer {
		b := make(map[float64]uint64, len(s.cfg.AnswerBuckets))
		for _, le := range s.cfg.AnswerBuckets {
			b[le] = h.Buckets[le]
		}
		h.Buckets = b
		st.UrgentSpeedToAnswer[ch] = h
	}
	st.OffersSent = maps.Clone(s.stats.OffersSent)
	st.OffersReceived = maps.Clone(s.stats.OffersReceived)
	st.SupportAsked = maps.Clone(s.stats.SupportAsked)
	st.SupportRequests = maps.Clone(s.stats.SupportRequests)
	st.TimeToSupport.Buckets = make(map[float64]uint64, len(supportBuckets))
	for _, le := range supportBuckets {
		st.TimeToSupport.Buckets[le] = s.stats.TimeToSupport.Buckets[le]
	}
	st.Transfers = maps.Clone(s.stats.Transfers)
	s.careStatsLocked(&st)
	st.Queues = map[string]QueueView{}
	now := s.now()
	for _, c := range s.queue {
		q := st.Queues[c.channel]
		q.Length++
		q.OldestWait = max(q.OldestWait, now.Sub(c.created))
		st.Queues[c.channel] = q
	}
	// Waiting from the contacts, not the queue: a phone call waits for its
	// pick-up in the PBX's queue, never in ours.
	for _, c := range s.contacts {
		switch {
		case c.state == StateConnected:
			tallyIn(st.Contacts, c, func(t *Tally) { t.InProgress++ })
		case c.waiting():
			tallyIn(st.Contacts, c, func(t *Tally) { t.Waiting++ })
		}
	}
	st.Volunteers = map[string]VolunteerCount{}
	for _, v := range s.volunteers {
		for _, ch := range v.Channels {
			if !v.available[ch] {
				continue
			}
			vc := st.Volunteers[ch]
			if v.ring == nil && v.load() < v.Capacity && !v.resting() {
				vc.Free++
			} else {
				vc.Busy++
			}
			st.Volunteers[ch] = vc
		}
	}
	for _, rc := range s.received {
		if rc.conv != nil {
			st.ReceivedInProgress++
		}
	}
	return st
}
