package switchboard

// Phone calls. A centre's PBX holds the caller in its own queue and asks the
// node only at the overflow moment. The desk finds a phone volunteer (one of
// ours first, then another centre's), holds them for that one call, and
// follows the call's progress as the SIP ingress reports it, so that the
// consoles and the KPIs are honest. The volunteer's phone ringing is the
// offer: nobody clicks anything before the caller hears it ring.
//
// Two sides, as with chat: the centre whose PBX overflowed the call owns its
// contact (PlaceCall; the contact is offered until the volunteer picks up,
// then connected until it ends), and the centre whose volunteer was reserved
// holds the call (a received with a heldCall). When both are this centre,
// progress goes straight from the held call to the contact; otherwise over
// the relay of the offer protocol, as events.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// CallTokens issues the one-time token a phone system redeems to reach a
// reserved call (the SIP ingress's store). Issue must not call back into
// the switchboard: it runs under its lock.
type CallTokens interface {
	Issue(call *Call, lease time.Duration) string
}

// Placed is where a call the PBX overflowed goes: the answering centre
// (ours or another) and the token its phone system redeems there.
type Placed struct {
	Centre string
	Token  string
}

// maxCallRing bounds a call that arrived but whose progress never came (a
// bug or a lost ingress): the volunteer is freed. The ingress's own ring
// time-out is far shorter.
const maxCallRing = 2 * time.Minute

// heldCall is a phone volunteer held for one call, on a received.
type heldCall struct {
	token, phone          string
	arrived, picked, over bool
	owner                 *contact      // our own contact, when the volunteer is ours too
	peer                  Peer          // the relay to the call's owner, once connected
	pending               []Event       // progress before the relay was connected
	done                  chan struct{} // closed when over
}

// Call is the SIP ingress's grip on a held call: it says when the call
// arrived, was picked up and ended. It implements sip.Call.
type Call struct {
	s  *Switchboard
	rc *received
}

// callerSink stands in for the visitor of a phone contact: the caller is in
// the PBX, and nothing is said to them through the desk.
type callerSink struct{}

func (callerSink) Queued(int, Estimate) {}
func (callerSink) Connected(string)     {}
func (callerSink) Event(Event)          {}
func (callerSink) Requeued(int)         {}
func (callerSink) Closed(string)        {}

// PlaceCall finds a phone volunteer for a call the centre's PBX overflowed:
// one of ours who is free now, else another centre's, asked in gossip's
// order. It never waits for Raft, and returns within ctx. ErrNoVolunteer
// means nobody is free anywhere: the PBX keeps the caller queued.
func (s *Switchboard) PlaceCall(ctx context.Context, language string) (Placed, error) {
	return s.PlaceCallWith(ctx, language, ContactOptions{})
}

// PlaceCallWith is PlaceCall with the caller's options: an urgent call
// (the PBX's menu choice, passed in the INVITE) is marked on the
// volunteer's offer, here or at the centre that takes it, and counted
// apart (urgent.go). Ahead means nothing for a call.
func (s *Switchboard) PlaceCallWith(ctx context.Context, language string, o ContactOptions) (Placed, error) {
	if !slices.Contains(s.cfg.Languages(), language) {
		return Placed{}, fmt.Errorf("place call: language %q is not served: %w", clip(language), ErrBadRequest)
	}
	arrived, id := s.now(), newID()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Placed{}, ErrClosed
	}
	if s.drained != nil {
		s.mu.Unlock()
		return Placed{}, fmt.Errorf("place call: %w", ErrDraining)
	}
	if rc, err := s.reserveCallLocked(id, "", language, o.Urgent); err == nil {
		c := s.newCallLocked(id, language, "", arrived, o.Urgent)
		c.call, rc.call.owner = rc, c
		s.mu.Unlock()
		return Placed{Centre: s.cfg.Centre, Token: rc.call.token}, nil
	}
	s.mu.Unlock()
	if s.cfg.Overflow == nil {
		return Placed{}, fmt.Errorf("place call: %w", ErrNoVolunteer)
	}
	var c *contact
	for _, cand := range s.cfg.Overflow.Candidates(ChannelPhone, language) {
		if cand.Centre == s.cfg.Centre || ctx.Err() != nil {
			continue
		}
		if placed, ok := s.offerCall(ctx, cand.Centre, id, language, o.Urgent, arrived, &c); ok {
			return placed, nil
		}
	}
	if c != nil {
		// Created for an answer whose confirmation then failed: the PBX
		// gets 480 and keeps the caller.
		s.mu.Lock()
		if s.contacts[c.id] == c && c.state == StateOffered {
			s.moveLocked(c, StateReturned)
			s.forgetContactLocked(c)
		}
		s.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return Placed{}, fmt.Errorf("place call: %w", err)
	}
	return Placed{}, fmt.Errorf("place call: %w", ErrNoVolunteer)
}

// offerCall asks one centre to hold a phone volunteer for the call. *c is
// the call's contact, made at the first answer and kept for the next
// candidate if confirming fails.
func (s *Switchboard) offerCall(ctx context.Context, centre, id, language string, urgent bool, arrived time.Time, c **contact) (Placed, bool) {
	ans, err := s.cfg.Overflow.Offer(ctx, centre, OutgoingOffer{Contact: id, Channel: ChannelPhone, Language: language, Ring: s.cfg.CallLease, Urgent: urgent})
	s.mu.Lock()
	if err != nil {
		result := OfferFailed
		switch {
		case ctx.Err() != nil:
			result = OfferWithdrawn
		case errors.Is(err, ErrDeclined):
			result = OfferDeclined
		}
		s.offerSentLocked(centre, ChannelPhone, result)
		s.mu.Unlock()
		s.log.Debug("call offer not taken", "to", centre, "err", err)
		return Placed{}, false
	}
	tok := ans.Token()
	if s.closed || !validCallToken(tok) {
		s.offerSentLocked(centre, ChannelPhone, OfferFailed)
		s.mu.Unlock()
		ans.Cancel("no call token")
		return Placed{}, false
	}
	if *c == nil {
		*c = s.newCallLocked(id, language, centre, arrived, urgent)
	}
	ct := *c
	ct.callAt = centre
	// A call the node held (trunk.go) follows the other centre's report
	// from the moment it may send one.
	wasTrunk := ct.trunk
	ct.trunk = false
	s.mu.Unlock()

	peer, err := ans.Confirm(&callOwnerHandler{s: s, c: ct})
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		ct.trunk = wasTrunk
		s.offerSentLocked(centre, ChannelPhone, OfferFailed)
		s.log.Warn("call offer confirm failed", "to", centre, "err", err)
		return Placed{}, false
	}
	s.offerSentLocked(centre, ChannelPhone, OfferAccepted)
	if s.contacts[ct.id] != ct {
		// Over already (the relay died at once, or we closed).
		peer.Close("call over")
	} else {
		ct.conv = &conv{id: ct.id, visitor: ct, peer: peer, other: centre}
	}
	return Placed{Centre: centre, Token: tok}, true
}

// validCallToken: what another centre returns as a token goes into a SIP
// URI's user part, so it must be plainly one.
func validCallToken(t string) bool {
	if len(t) == 0 || len(t) > 64 {
		return false
	}
	for _, r := range t {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// newCallLocked makes the contact of a call we placed. It is offered at
// once: the caller waited in the PBX's queue, not in ours.
func (s *Switchboard) newCallLocked(id, language, at string, arrived time.Time, urgent bool) *contact {
	c := &contact{
		id: id, channel: ChannelPhone, language: language, created: arrived, state: StateQueued,
		visitor: callerSink{}, out: s.newOutbox(), declined: map[*volunteer]time.Time{}, tried: map[string]uint64{},
		lastPos: -1, callAt: at, urgent: urgent,
	}
	s.contacts[id] = c
	s.tallyLocked(c, func(t *Tally) { t.Offered++ })
	s.countUrgentLocked(c)
	s.moveLocked(c, StateOffered)
	return c
}

// callEventLocked moves a call's contact on what its held call reported.
func (s *Switchboard) callEventLocked(c *contact, e Event) {
	if s.contacts[c.id] != c {
		return
	}
	switch e.Kind {
	case EventAnswered:
		if c.state != StateOffered {
			return
		}
		s.moveLocked(c, StateConnected)
		s.observeAnswerLocked(c, s.now())
	case EventEnded:
		s.callOverForOwnerLocked(c, e.By == ByCaller)
	}
}

// callOverForOwnerLocked ends a call's contact: answered if the volunteer
// had picked up, abandoned if the caller hung up first, else returned to
// the PBX's queue.
func (s *Switchboard) callOverForOwnerLocked(c *contact, callerLeft bool) {
	if c.trunk && c.state != StateConnected && !callerLeft {
		// A call the node holds itself (trunk.go): the volunteer rung did
		// not answer; the node rings the next or overflows, and Close ends
		// the contact.
		return
	}
	switch {
	case c.state == StateConnected:
		s.moveLocked(c, StateEnded)
	case callerLeft:
		s.moveLocked(c, StateAbandoned)
	default:
		s.moveLocked(c, StateReturned)
	}
	s.forgetContactLocked(c)
}

// callOwnerHandler hears a held call's progress from the answering centre.
type callOwnerHandler struct {
	s *Switchboard
	c *contact
}

func (h *callOwnerHandler) OnEvent(e Event) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if !h.s.closed {
		h.s.callEventLocked(h.c, e)
	}
}

// OnLost: the answering centre is gone. A call already picked up goes on
// between the PBXs (the media never passed through either node), so it is
// counted as answered; one not picked up yet falls back to a PBX's queue.
func (h *callOwnerHandler) OnLost(int) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	if !h.s.closed && h.s.contacts[h.c.id] == h.c {
		h.s.callOverForOwnerLocked(h.c, false)
	}
}

// reserveCallLocked holds the longest-idle free phone volunteer for one
// call and issues its token. from is the owning centre ("" for ours).
func (s *Switchboard) reserveCallLocked(id, from, language string, urgent bool) (*received, error) {
	return s.reserveCallExceptLocked(id, from, language, urgent, nil, false)
}

// reserveCallExceptLocked is reserveCallLocked passing over the volunteers
// in except (by ID), those already rung for this call, and with
// browserOnly those whose calls ring on a SIP phone: a call the node holds
// itself can only ring in a console.
func (s *Switchboard) reserveCallExceptLocked(id, from, language string, urgent bool, except map[string]bool, browserOnly bool) (*received, error) {
	if s.cfg.CallTokens == nil {
		return nil, fmt.Errorf("reserve call: this centre takes no calls: %w", ErrNoVolunteer)
	}
	var best *volunteer
	for _, v := range s.volunteers {
		if v.freeForCalls(language) && !except[v.ID] && (!browserOnly || v.phone == BrowserPhone) && (best == nil || longerIdle(v, best)) {
			best = v
		}
	}
	if best == nil {
		return nil, fmt.Errorf("reserve call: %w", ErrNoVolunteer)
	}
	lease := s.cfg.CallLease
	rc := &received{id: id, from: from, channel: ChannelPhone, language: language, vol: best, decided: make(chan error, 1), accepted: true}
	rc.call = &heldCall{phone: best.phone, done: make(chan struct{})}
	if best.phone == BrowserPhone {
		rc.call.phone = BrowserPhonePrefix + best.ID
	}
	r := &ringing{vol: best, received: rc}
	rc.ring, best.ring = r, r
	s.received[id] = rc
	r.timer = s.afterFunc(lease, func() { s.callLapsed(rc) })
	rc.call.token = s.cfg.CallTokens.Issue(&Call{s: s, rc: rc}, lease)
	rc.decided <- nil // the phone ringing is the acceptance: Wait returns at once
	offer := Offer{Contact: id, Channel: ChannelPhone, Language: language, From: from, Until: s.now().Add(lease), Urgent: urgent}
	best.out.post(func() { best.sink.Offer(offer) })
	s.postAvailabilityLocked(best)
	s.changedLocked()
	return rc, nil
}

// callLapsed: the lease ran out before the call arrived, or a call that
// arrived never reported its end.
func (s *Switchboard) callLapsed(rc *received) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callOverLocked(rc, ByUnanswered)
}

// callProgressLocked tells the call's owner what happened.
func (s *Switchboard) callProgressLocked(rc *received, e Event) {
	hc := rc.call
	switch {
	case hc.owner != nil:
		s.callEventLocked(hc.owner, e)
	case hc.peer != nil:
		if err := hc.peer.Send(e); err != nil {
			s.log.Debug("call progress not sent", "err", err)
		}
	default:
		hc.pending = append(hc.pending, e)
	}
}

// callOverLocked ends a held call, once: the volunteer is freed (and asked
// to categorise if they talked), and the owner is told.
func (s *Switchboard) callOverLocked(rc *received, by string) {
	s.callOverBecauseLocked(rc, by, "")
}

// callOverBecauseLocked is callOverLocked with the reason the console
// hears if the call never connected ("" : said from by).
func (s *Switchboard) callOverBecauseLocked(rc *received, by, reason string) {
	hc := rc.call
	if hc.over {
		return
	}
	hc.over = true
	close(hc.done)
	rc.ring.timer.Stop()
	v, id := rc.vol, rc.id
	if cv, live := v.active[id]; live && hc.picked {
		delete(v.active, id)
		s.careConversationOverLocked(v, cv.started)
		v.ended[id] = s.now()
		v.idleSince = s.now()
		v.out.post(func() { v.sink.Event(id, Event{Kind: EventEnded, By: by}) })
		s.postAvailabilityLocked(v)
	} else if v.ring == rc.ring {
		v.ring = nil
		switch {
		case reason != "":
		case by == ByCaller:
			reason = "the caller hung up"
		default:
			reason = "the call did not come through"
		}
		v.out.post(func() { v.sink.OfferWithdrawn(id, reason) })
		s.postAvailabilityLocked(v)
	}
	s.callProgressLocked(rc, Event{Kind: EventEnded, By: by})
	if hc.peer != nil {
		hc.peer.Close("call over")
	}
	s.forgetReceivedLocked(rc)
	s.dispatchLocked()
}

// connectCallLocked joins a held call to the relay from its owner, and
// passes on what happened before.
func (s *Switchboard) connectCallLocked(rc *received, peer Peer) PeerHandler {
	hc := rc.call
	hc.peer = peer
	for _, e := range hc.pending {
		_ = peer.Send(e)
	}
	hc.pending = nil
	s.settleReceivedLocked(rc, OfferAccepted)
	if hc.over {
		peer.Close("call over")
	}
	return &heldCallHandler{s: s, rc: rc}
}

// heldCallHandler hears the call's owner over the relay: nothing is
// expected from it, and losing it changes nothing for the call, which goes
// on between the PBXs; there is then no one to tell.
type heldCallHandler struct {
	s  *Switchboard
	rc *received
}

func (h *heldCallHandler) OnEvent(Event) {}

func (h *heldCallHandler) OnLost(int) {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.rc.call.peer = nil
}

// Token is the call's one-time token ("" for a chat).
func (res *Reservation) Token() string {
	if res.r.call == nil {
		return ""
	}
	return res.r.call.token
}

// Phone is the SIP URI the reserved volunteer's phone rings at, or
// BrowserPhonePrefix and the volunteer's ID when they answer in the
// console.
func (c *Call) Phone() string { return c.rc.call.phone }

// Over is closed when the hold is over, whatever ended it: the volunteer
// declined or signed out, the lease ran out, or the SIP side said Ended.
// The node's own phone (a browser call) hangs up on it.
func (c *Call) Over() <-chan struct{} { return c.rc.call.done }

// Arrived says the call reached this centre's phone system and is about to
// ring the volunteer's phone. ErrOfferGone means the hold is over (lapsed,
// released, or the call already came once): the PBX queues the caller.
func (c *Call) Arrived() error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	hc := c.rc.call
	if hc.over || hc.arrived || s.received[c.rc.id] != c.rc {
		return fmt.Errorf("call arrived: %w", ErrOfferGone)
	}
	hc.arrived = true
	c.rc.ring.timer.Reset(maxCallRing)
	return nil
}

// PickedUp says the volunteer's phone answered: the console shows the call
// as connected, and the owner counts it answered.
func (c *Call) PickedUp() {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	rc, hc := c.rc, c.rc.call
	if hc.over || hc.picked {
		return
	}
	hc.picked = true
	rc.ring.timer.Stop()
	v := rc.vol
	if v.ring == rc.ring {
		v.ring = nil
	}
	rc.conv = &conv{id: rc.id, vol: v, other: rc.from, received: rc, started: s.now()}
	if s.volunteers[v.ID] == v {
		v.active[rc.id] = rc.conv
		id, from := rc.id, rc.from
		v.out.post(func() { v.sink.Connected(id, from) })
		s.postAvailabilityLocked(v)
	}
	s.callProgressLocked(rc, Event{Kind: EventAnswered})
	// Held, the volunteer could take nothing else; in the call, they may
	// take chats up to their capacity.
	s.dispatchLocked()
}

// Ended says the call is over; by is ByCaller, ByVolunteer or ByUnanswered.
func (c *Call) Ended(by string) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.callOverLocked(c.rc, by)
}

// SetPhone sets where this volunteer's calls ring: a SIP URI, or an
// extension (digits) of the centre's PBX when the centre has a PhoneDomain.
// An empty phone switches calls off.
func (c *Console) SetPhone(phone string) error {
	uri, err := c.s.checkPhone(phone)
	if err != nil {
		return err
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.volunteers[c.v.ID] != c.v {
		return ErrNotSignedIn
	}
	c.v.phone = uri
	s.postAvailabilityLocked(c.v)
	s.dispatchLocked()
	return nil
}

// Phone returns the SIP URI this volunteer's calls ring at ("" if none).
func (c *Console) Phone() string {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.v.phone
}

func (s *Switchboard) checkPhone(p string) (string, error) {
	p = strings.TrimSpace(p)
	switch {
	case p == "":
		return "", nil
	case p == BrowserPhone:
		if !s.cfg.BrowserPhones {
			return "", fmt.Errorf("phone: this centre has no browser phone; give an extension or a sip: address: %w", ErrBadRequest)
		}
		return p, nil
	case len(p) > MaxPhoneBytes:
		return "", fmt.Errorf("phone: at most %d bytes: %w", MaxPhoneBytes, ErrBadRequest)
	case isExtension(p):
		if s.cfg.PhoneDomain == "" {
			return "", fmt.Errorf("phone: this centre has no PBX for extensions; give a sip: address: %w", ErrBadRequest)
		}
		return "sip:" + p + "@" + s.cfg.PhoneDomain, nil
	case !strings.HasPrefix(p, "sip:") || !strings.Contains(p, "@") || strings.ContainsFunc(p, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune("<>\"\\,", r)
	}):
		return "", fmt.Errorf("phone: want an extension or sip:user@host[:port]: %w", ErrBadRequest)
	}
	return p, nil
}

func isExtension(p string) bool {
	if len(p) < 2 || len(p) > 15 {
		return false
	}
	for _, r := range p {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
