package switchboard

// A volunteer's console: signing in, availability, answering offers,
// what they send, ending and categorising.

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Console is a signed-in volunteer's grip on the switchboard.
type Console struct {
	s *Switchboard
	v *volunteer
}

// SignIn opens a console. A second sign-in replaces the first console.
func (s *Switchboard) SignIn(v Volunteer, sink ConsoleSink) (*Console, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if old, ok := s.volunteers[v.ID]; ok {
		s.signOutLocked(old, "signed in elsewhere")
	}
	vol := &volunteer{
		Volunteer: v, sink: sink, out: s.newOutbox(), available: map[string]bool{},
		active: map[string]*conv{}, idleSince: s.now(), ended: map[string]time.Time{}, signedIn: s.now(),
	}
	s.volunteers[v.ID] = vol
	s.careSignInLocked(vol, vol.signedIn)
	s.postAvailabilityLocked(vol)
	s.changedLocked()
	return &Console{s: s, v: vol}, nil
}

// SetAvailable switches the volunteer on or off for a channel.
func (c *Console) SetAvailable(channel string, on bool) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.volunteers[c.v.ID] != c.v {
		return ErrNotSignedIn
	}
	if !slices.Contains(c.v.Channels, channel) {
		return fmt.Errorf("channel %q is not one of yours: %w", clip(channel), ErrBadRequest)
	}

	if c.v.available[channel] != on {
		c.v.available[channel] = on
		if on {
			c.v.idleSince = s.now()
			s.careLocked(c.v, s.now()) // a changed policy applies from here
		}
	}
	s.postAvailabilityLocked(c.v)
	s.dispatchLocked()
	return nil
}

// Accept takes the offer ringing for contact. For another centre's contact
// the console hears Connected once that centre confirms.
func (c *Console) Accept(contactID string) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	r := c.v.ring
	if s.volunteers[c.v.ID] != c.v || r == nil {
		return fmt.Errorf("accept %s: %w", clip(contactID), ErrOfferGone)
	}
	if r.transfer != nil && r.transfer.c.id == contactID {
		return s.acceptTransferLocked(r)
	}
	switch {
	case r.contact != nil && r.contact.id == contactID:
		ct := r.contact
		if ct.connecting || !ct.waiting() {
			return fmt.Errorf("accept %s: %w", clip(contactID), ErrOfferGone)
		}
		r.timer.Stop()
		c.v.ring, ct.local = nil, nil
		if ct.remote != nil {
			// First acceptance wins: withdraw the offer at the other centre.
			ct.remote.cancel()
			ct.remote = nil
		}
		s.connectLocked(ct, &conv{id: ct.id, vol: c.v, visitor: ct, started: s.now()}, c.v.Alias)
		s.dispatchLocked()
		return nil
	case r.received != nil && r.received.id == contactID && !r.received.accepted:
		// The slot may hold Close's ErrClosed: then there is no one to tell.
		select {
		case r.received.decided <- nil:
		default:
			return fmt.Errorf("accept %s: %w", clip(contactID), ErrOfferGone)
		}
		r.timer.Stop()
		r.received.accepted = true
		return nil
	}
	return fmt.Errorf("accept %s: %w", clip(contactID), ErrOfferGone)
}

// Decline turns an offer down; the contact keeps its place and goes to the
// next volunteer.
func (c *Console) Decline(contactID string) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	r := c.v.ring
	if r != nil && r.received != nil && r.received.call != nil && r.received.id == contactID {
		rc := r.received
		if rc.call.arrived && !strings.HasPrefix(rc.call.phone, BrowserPhonePrefix) {
			return fmt.Errorf("decline %s: the call is ringing on your phone: %w", clip(contactID), ErrOfferGone)
		}
		s.callOverBecauseLocked(rc, ByUnanswered, "declined")
		return nil
	}
	if r != nil && r.transfer != nil && r.transfer.c.id == contactID {
		s.unringLocked(r, "declined")
		return nil
	}
	if r == nil || (r.contact == nil || r.contact.id != contactID) && (r.received == nil || r.received.id != contactID || r.received.accepted) {
		return fmt.Errorf("decline %s: %w", clip(contactID), ErrOfferGone)
	}
	s.unringLocked(r, "declined")
	return nil
}

// Send passes a volunteer's message to the visitor.
func (c *Console) Send(contactID, id, text string) error {
	if err := checkMessage(id, text); err != nil {
		return err
	}
	return c.event(contactID, Event{Kind: EventMessage, ID: id, Text: text})
}

// Typing tells the visitor the volunteer is typing.
func (c *Console) Typing(contactID string) error {
	return c.event(contactID, Event{Kind: EventTyping})
}

func (c *Console) event(contactID string, e Event) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	cv, ok := c.v.active[contactID]
	if !ok || s.volunteers[c.v.ID] != c.v {
		return fmt.Errorf("contact %s: %w", clip(contactID), ErrUnknownContact)
	}
	if cv.received != nil && cv.received.call != nil {
		return fmt.Errorf("contact %s is a phone call: %w", clip(contactID), ErrBadRequest)
	}
	if cv.volPace == nil {
		cv.volPace = newVolunteerPacer(s.cfg.Pace)
	}
	switch now := s.now(); e.Kind {
	case EventMessage:
		if err := cv.volPace.message(now); err != nil {
			return err
		}
	case EventTyping:
		if !cv.volPace.typing(now) {
			return nil
		}
	}
	s.fromVolunteerLocked(cv, e)
	return nil
}

// End ends a conversation (if still going) and records its categorisation.
// It also takes the categorisation of a conversation the visitor ended.
func (c *Console) End(contactID string, cat Categorisation) error {
	if err := c.s.checkCategorisation(cat); err != nil {
		return err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if cv, ok := c.v.active[contactID]; ok {
		if cv.handedOver {
			// Handed over in a warm transfer: ending is leaving, and the
			// new volunteer categorises the contact (transfer.go).
			s.leaveLocked(cv)
			return nil
		}
		if rc := cv.received; rc != nil && rc.call != nil {
			// The volunteer is the authority that a call is over, should
			// the hang-up not have come through.
			s.callOverLocked(rc, ByVolunteer)
		} else {
			s.fromVolunteerLocked(cv, Event{Kind: EventEnded, By: ByVolunteer})
		}
	}
	if _, ok := c.v.ended[contactID]; !ok {
		return fmt.Errorf("end %s: %w", clip(contactID), ErrUnknownContact)
	}
	delete(c.v.ended, contactID)
	for _, t := range cat.Topics {
		s.stats.Topics[t]++
	}
	s.stats.AgeGroups[cat.AgeGroup]++
	s.careCategorisedLocked(c.v, cat)
	return nil
}

// SignOut closes the console: offers go to others, and conversations still
// open end for the visitor as a lost volunteer (they are queued again).
func (c *Console) SignOut() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.volunteers[c.v.ID] == c.v {
		s.signOutLocked(c.v, "signed out")
	}
}

func (s *Switchboard) signOutLocked(v *volunteer, reason string) {
	delete(s.volunteers, v.ID)
	s.careSignOutLocked(v)
	if v.ring != nil {
		s.unringLocked(v.ring, reason)
	}
	for _, cv := range v.active {
		s.loseVolunteerLocked(cv)
	}
	s.dispatchLocked()
}

// loseVolunteerLocked handles a volunteer who vanished mid-conversation.
func (s *Switchboard) loseVolunteerLocked(cv *conv) {
	if rc := cv.received; rc != nil && rc.call != nil {
		s.callOverLocked(rc, ByVolunteer)
		return
	}
	s.endSupportOfConvLocked(cv, "the volunteer's console closed")
	delete(cv.vol.active, cv.id)
	switch {
	case cv.visitor != nil:
		if !s.transferLostLocked(cv.visitor, cv, 0) {
			s.requeueLocked(cv.visitor, 0, "")
		}
	case cv.peer != nil:
		cv.peer.Close("the volunteer's console closed")
		s.finishReceivedLocked(cv.received)
	default: // held for a resume (resume.go): nobody to tell
		s.finishReceivedLocked(cv.received)
	}
}
