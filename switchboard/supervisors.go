package switchboard

// Supervisors on duty and their read-only view of the desk.
//
// A supervisor (or coordinator) goes on duty from a supervisor console: a
// Duty, like a volunteer's Console, that ends when they go off duty or the
// console closes. The desk counts who is on duty (SupervisorsOnDuty, which
// the node gossips: whether a centre has a supervisor, never who) and
// shows them a snapshot of the desk (DeskView): the contacts waiting and
// the volunteers signed in, with nothing about any visitor. Support
// requests, reading along and whispers are in support.go.

import (
	"cmp"
	"reflect"
	"slices"
	"time"
)

// supervisor is one supervisor on duty here.
type supervisor struct {
	id, alias string
	since     time.Time
	sink      DutySink
	out       *outbox
	// seats are the conversations they read along, by support id.
	seats map[string]*seat
}

// Duty is a supervisor's time on duty, from GoOnDuty to OffDuty.
type Duty struct {
	s   *Switchboard
	sup *supervisor
}

// GoOnDuty puts a supervisor (a roster id, and the alias volunteers see)
// on duty; sink hears the support requests and what they read along.
// Going on duty again, from another console, replaces the earlier Duty: a
// person counts once.
func (s *Switchboard) GoOnDuty(id, alias string, sink DutySink) (*Duty, error) {
	if id == "" || sink == nil {
		return nil, ErrBadRequest
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.supervisors == nil {
		s.supervisors = map[string]*supervisor{}
	}
	if old := s.supervisors[id]; old != nil {
		s.endSeatsOfLocked(old, "on duty from another console")
	}
	sup := &supervisor{id: id, alias: alias, since: s.now(), sink: sink, out: s.newOutbox(), seats: map[string]*seat{}}
	s.supervisors[id] = sup
	// What already rings here rings for them too.
	for _, al := range s.alerts {
		if al.takenBy == nil {
			a := al.a
			sup.out.post(func() { sink.SupportAsked(a) })
		}
	}
	s.changedLocked()
	return &Duty{s: s, sup: sup}, nil
}

// OffDuty ends the duty; a duty already replaced or ended changes nothing.
func (d *Duty) OffDuty() {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.supervisors[d.sup.id] == d.sup {
		s.endSeatsOfLocked(d.sup, "the supervisor went off duty")
		delete(s.supervisors, d.sup.id)
		s.changedLocked()
	}
}

// OnDuty reports whether this Duty still holds (not ended, not replaced
// by the same supervisor going on duty elsewhere).
func (d *Duty) OnDuty() bool {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.supervisors[d.sup.id] == d.sup
}

// SupervisorsOnDuty counts the supervisors on duty here now.
func (s *Switchboard) SupervisorsOnDuty() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.supervisors)
}

// Changes returns a channel that receives (at most one pending) poke
// whenever the desk may have changed, until stop is called. A waiting
// time grows without a poke: a watcher also looks again now and then.
func (s *Switchboard) Changes() (changes <-chan struct{}, stop func()) {
	ch := make(chan struct{}, 1)
	s.mu.Lock()
	if s.watchers == nil {
		s.watchers = map[chan struct{}]struct{}{}
	}
	s.watchers[ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.watchers, ch)
		s.mu.Unlock()
	}
}

// changedLocked says the desk may have changed: the node republishes its
// availability (Config.OnChange) and every watcher is poked.
func (s *Switchboard) changedLocked() {
	// OnChange only when what the centre publishes changed: another
	// centre's news re-runs our dispatch (Kick), and a poke for nothing
	// would publish a new version that re-runs theirs, for ever (the
	// capacity simulator found two idle centres doing so twenty times a
	// second). Every real change still pokes, even one that ends where the
	// last publish stood (Kari goes off, Siri signs in), so a centre that
	// declined is offered again.
	if pub := s.publishedLocked(); !reflect.DeepEqual(pub, s.lastPublished) {
		s.lastPublished = pub
		s.cfg.OnChange()
	}
	for ch := range s.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// DeskView is what a supervisor sees of the desk: counts, channels,
// languages, aliases and durations; never a visitor's words, address or
// any id of theirs.
type DeskView struct {
	// Waiting are this centre's contacts waiting, longest first.
	Waiting []WaitingView
	// Volunteers are those signed in, by alias.
	Volunteers        []VolunteerView
	SupervisorsOnDuty int
}

// WaitingView is one waiting contact.
type WaitingView struct {
	Channel  string
	Language string
	Waited   time.Duration
	// Ringing: an offer for it is out, here or at another centre.
	Ringing bool
}

// VolunteerView is one signed-in volunteer.
type VolunteerView struct {
	Alias string
	// Available are the channels they are switched on for.
	Available []string
	// Ringing: an offer rings on their console now.
	Ringing       bool
	Capacity      int
	SignedInFor   time.Duration
	Conversations []ConversationView
}

// ConversationView is one conversation a volunteer is in.
type ConversationView struct {
	Channel string
	// Centre is the other centre of an overflowed conversation ("" for
	// our own visitor with our own volunteer).
	Centre string
	Lasted time.Duration
	// Support is how the volunteer's support request in it goes: "" (none
	// open), SupportAsked (ringing), or SupportComing (a supervisor reads
	// along).
	Support string
}

// DeskView returns a snapshot of the desk for a supervisor console.
func (s *Switchboard) DeskView() DeskView {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	d := DeskView{Waiting: []WaitingView{}, Volunteers: []VolunteerView{}, SupervisorsOnDuty: len(s.supervisors)}
	for _, c := range s.queue {
		d.Waiting = append(d.Waiting, WaitingView{
			Channel: c.channel, Language: c.language, Waited: now.Sub(c.created),
			Ringing: c.state == StateOffered || c.local != nil || c.remote != nil,
		})
	}
	slices.SortStableFunc(d.Waiting, func(a, b WaitingView) int { return cmp.Compare(b.Waited, a.Waited) })
	for _, v := range s.volunteers {
		vv := VolunteerView{
			Alias: v.Alias, Available: []string{}, Ringing: v.ring != nil, Capacity: v.Capacity,
			SignedInFor: now.Sub(v.signedIn), Conversations: []ConversationView{},
		}
		for _, ch := range v.Channels {
			if v.available[ch] {
				vv.Available = append(vv.Available, ch)
			}
		}
		for _, cv := range v.active {
			c := ConversationView{Centre: cv.other, Lasted: now.Sub(cv.started)}
			switch {
			case cv.visitor != nil:
				c.Channel = cv.visitor.channel
			case cv.received != nil:
				c.Channel = cv.received.channel
			}
			if cv.started.IsZero() {
				c.Lasted = 0
			}
			if r := cv.support; r != nil && !r.over {
				c.Support = SupportAsked
				if r.taken {
					c.Support = SupportComing
				}
			}
			vv.Conversations = append(vv.Conversations, c)
		}
		slices.SortFunc(vv.Conversations, func(a, b ConversationView) int { return cmp.Compare(b.Lasted, a.Lasted) })
		d.Volunteers = append(d.Volunteers, vv)
	}
	slices.SortFunc(d.Volunteers, func(a, b VolunteerView) int {
		return cmp.Or(cmp.Compare(a.Alias, b.Alias), cmp.Compare(b.SignedInFor, a.SignedInFor))
	})
	return d
}

// published is what the node publishes of the desk (overflow.AvailabilityOf
// reads the same three), with time taken out: the oldest wait grows by
// itself, and a change it alone made would keep two centres with contacts
// waiting republishing to each other as fast as gossip goes (the simulator
// showed it). The arrival of the oldest waiting contact stands for it: a
// publish carries the wait as it is then.
type published struct {
	channels    map[string]ChannelView
	oldest      map[string]time.Time
	draining    bool
	supervisors int
}

func (s *Switchboard) publishedLocked() published {
	p := published{channels: s.availabilityLocked(), oldest: map[string]time.Time{}, draining: s.drained != nil, supervisors: len(s.supervisors)}
	for ch, cv := range p.channels {
		cv.OldestWait = 0
		p.channels[ch] = cv
	}
	for _, c := range s.queue {
		if t, ok := p.oldest[c.channel]; !ok || c.created.Before(t) {
			p.oldest[c.channel] = c.created
		}
	}
	return p
}
