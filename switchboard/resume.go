package switchboard

// Resumed conversations (issue 15). A contact overflowed from centre A to
// our volunteer travels page <-> A <-> relay <-> us. If A dies, is cut off
// or restarts, both people are still there: the page comes to us directly
// with a one-time secret that only it holds, and the conversation goes on
// with the same volunteer. A keeps the contact, its state and its KPIs; we
// keep only what we always had (the volunteer's side) plus, for as long as
// the conversation lasts, the volunteer's last messages in memory so that
// the page is sent exactly those it missed. See DESIGN.md, "Resumed
// conversations".

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"time"
)

// ResumableVisitor is a VisitorSink whose page can go on with an overflowed
// conversation at the answering centre should ours be lost. The switchboard
// asks it for a fresh secret's hash whenever it offers the contact to
// another centre (only the hash travels), and tells it who answered.
type ResumableVisitor interface {
	VisitorSink
	// NewResume makes a new one-time secret, keeps it, and returns its
	// ResumeHash for the centre the contact is offered to.
	NewResume() string
	// AnsweredAt says which centre's volunteer answered ("" for ours),
	// just before Connected.
	AnsweredAt(centre string)
	// CanResume says whether the page was told where and how to resume.
	CanResume() bool
}

// ResumeHash is what a centre keeps of a resume secret: hex SHA-256. The
// secret is 32 random bytes, so a hash without salt is safe to compare.
func ResumeHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

var resumeHashPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Resume timing and bounds.
const (
	// DefaultResumeGrace is how long we hold a volunteer's side of a
	// conversation whose visitor's centre was lost.
	DefaultResumeGrace = 30 * time.Second
	// resumeKeep bounds the volunteer's messages kept for a page that
	// missed them (the last ones; older ones are reported undelivered).
	resumeKeep = 64
	// resumeSeenIDs bounds the visitor message ids remembered to pass each
	// on at most once.
	resumeSeenIDs = 256
	// DefaultMoveWait is how long the owner waits, after telling a page to
	// resume at the answering centre, for the page to say it stays (it
	// could not resume) or to leave, before it requeues the contact.
	DefaultMoveWait = 10 * time.Second
)

// moveVisitorLocked: the relay to the answering centre died, but the page
// may still reach that centre (we may be the one cut off). It is told to
// resume there; the contact stays connected until the page leaves (ended,
// answered there) or stays (requeued here at the front, as without a
// resume).
func (s *Switchboard) moveVisitorLocked(c *contact, rv ResumableVisitor, undelivered int) {
	cv := c.conv
	cv.peer = nil
	c.out.post(func() { rv.Event(Event{Kind: EventMove}) })
	c.moving = s.afterFunc(s.cfg.MoveWait, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.closed && c.conv == cv && c.moving != nil {
			c.moving = nil
			s.requeueLocked(c, undelivered, cv.other)
		}
	})
	c.movingUndelivered = undelivered
}

// Leave ends the contact because the page's socket dropped without the
// visitor ending it. A conversation the page may resume at the answering
// centre is not ended there: the relay closes, so that centre holds it for
// the page (a phone changing networks, a proxy closing, a centre's port
// going away look just like this). Anything else ends as End would.
func (h *VisitorHandle) Leave() {
	s := h.s
	s.mu.Lock()
	c := h.c
	rv, ok := c.visitor.(ResumableVisitor)
	if s.closed || !ok || c.state != StateConnected || c.conv == nil || c.conv.other == "" || !rv.CanResume() {
		s.mu.Unlock()
		h.End()
		return
	}
	defer s.mu.Unlock()
	// Ended here, answered by overflow; the relay's bye tells the
	// answering centre to hold its side, not that the visitor ended it.
	s.endLocked(c.conv)
}

// Resumable says the reservation took the page's resume hash.
func (res *Reservation) Resumable() bool { return res.r.resumeHash != "" }

// Stay says the page could not resume at the answering centre: the contact
// waits here again, at the front.
func (h *VisitorHandle) Stay() {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	c := h.c
	if s.closed {
		return
	}
	if c.moving == nil {
		// A drain's move: the relay still carries the conversation.
		if rv, ok := c.visitor.(ResumableVisitor); ok && c.state == StateConnected && c.conv != nil && c.conv.peer != nil {
			c.out.post(func() { rv.Event(Event{Kind: EventStayed}) })
		}
		return
	}
	c.moving.Stop()
	c.moving = nil
	if c.conv != nil {
		s.requeueLocked(c, c.movingUndelivered, c.conv.other)
	}
}

// resumable is what a received chat conversation keeps so that it can be
// resumed: nil for one whose owner gave no secret (an older release, or a
// page that did not ask).
type resumable struct {
	hash    string
	sent    []Event // the volunteer's last messages, oldest first
	total   int     // the volunteer's messages in this conversation
	seen    map[string]bool
	order   []string
	hold    Timer // running while the visitor's centre is lost
	held    int   // the volunteer's messages written while held
	resumed bool
}

func (r *resumable) keepSent(e Event) {
	r.total++
	r.sent = append(r.sent, e)
	if len(r.sent) > resumeKeep {
		r.sent = r.sent[len(r.sent)-resumeKeep:]
	}
}

// firstTime reports whether the visitor's message id is new, and
// remembers it.
func (r *resumable) firstTime(id string) bool {
	if r.seen[id] {
		return false
	}
	r.seen[id] = true
	r.order = append(r.order, id)
	if len(r.order) > resumeSeenIDs {
		delete(r.seen, r.order[0])
		r.order = r.order[1:]
	}
	return true
}

// holdLocked keeps a conversation whose relay died: the volunteer stays
// in it and sees "reconnecting", until the page resumes or grace ends.
func (s *Switchboard) holdLocked(cv *conv, undelivered int) {
	r := cv.resume
	cv.peer = nil
	r.held = undelivered
	v, id := cv.vol, cv.id
	v.out.post(func() { v.sink.Event(id, Event{Kind: EventReconnecting}) })
	r.hold = s.afterFunc(s.cfg.ResumeGrace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed || cv.peer != nil || cv.resume.hold == nil {
			return
		}
		if _, live := v.active[id]; !live {
			s.finishReceivedLocked(cv.received) // ended meanwhile
			return
		}
		s.loseReceivedLocked(cv, cv.resume.held)
	})
}

// loseReceivedLocked ends a received conversation whose visitor is gone for
// good: the console hears how many of the volunteer's messages never
// arrived.
func (s *Switchboard) loseReceivedLocked(cv *conv, undelivered int) {
	v, id := cv.vol, cv.id
	s.endSupportOfConvLocked(cv, "the visitor's centre was lost")
	delete(v.active, id)
	v.idleSince = s.now()
	s.careConversationOverLocked(v, cv.started)
	s.finishReceivedLocked(cv.received)
	v.out.post(func() { v.sink.Lost(id, undelivered) })
	s.postAvailabilityLocked(v)
	s.dispatchLocked()
}

// ResumedVisitor is a resumed visitor's grip on the conversation, at the
// volunteer's centre.
type ResumedVisitor struct {
	s  *Switchboard
	cv *conv
}

// Resume joins a visitor's page to the held (or still relayed) conversation
// whose secret hashes to hash. received is how many of the volunteer's
// messages the page has; it is sent the rest, in order. Every refusal is the
// same ErrResumeRefused: a forged, used or expired secret and an ended
// conversation look alike.
func (s *Switchboard) Resume(hash string, received int, sink VisitorSink) (*ResumedVisitor, error) {
	if !resumeHashPattern.MatchString(hash) || received < 0 {
		return nil, ErrResumeRefused
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	rc := s.resumables[hash]
	if rc == nil || rc.conv == nil || rc.conv.resume == nil {
		return nil, ErrResumeRefused
	}
	delete(s.resumables, hash) // single use, whatever follows
	cv := rc.conv
	v, id := cv.vol, cv.id
	if _, live := v.active[id]; !live {
		return nil, ErrResumeRefused
	}
	r := cv.resume
	if r.hold != nil {
		r.hold.Stop()
		r.hold = nil
	}
	if old := cv.peer; old != nil {
		// The visitor's centre is still there (it drains, or we have not
		// noticed it die yet): it ends its side as handed over, counted
		// once there as answered.
		_ = old.Send(Event{Kind: EventEnded, By: ByResumed})
		old.Close("resumed at the answering centre")
	}
	r.resumed = true
	out := s.newOutbox()
	dp := &directPeer{s: s, cv: cv, sink: sink, out: out}
	cv.peer = dp
	alias := v.Alias
	out.post(func() { sink.Connected(alias) })
	// What the page missed: the volunteer's messages after its count. Ones
	// older than what we keep are told to the volunteer as undelivered.
	first := r.total - len(r.sent) // messages before r.sent[0]
	lost := max(0, first-received)
	for i, e := range r.sent {
		if first+i >= received {
			dp.Send(e)
		}
	}
	v.out.post(func() { v.sink.Event(id, Event{Kind: EventResumed}) })
	if sr := cv.support; sr != nil && sr.taken && !sr.over && s.readAlongNoticeLocked() {
		// The notice went to the lost relay, or nowhere while held: the
		// page is told again here.
		dp.Send(Event{Kind: EventSupervised})
	}
	if lost > 0 {
		// Rare (over resumeKeep messages unseen). Counted, never the text.
		s.log.Info("resumed conversation: some of the volunteer's earlier messages were no longer kept", "missed", lost)
	}
	return &ResumedVisitor{s: s, cv: cv}, nil
}

// Send passes the resumed visitor's message on, once per id: the page
// sends again what it never saw delivered.
func (h *ResumedVisitor) Send(id, text string) error {
	if err := checkMessage(id, text); err != nil {
		return err
	}
	return h.event(Event{Kind: EventMessage, ID: id, Text: text})
}

// Typing tells the volunteer the visitor is typing.
func (h *ResumedVisitor) Typing() error { return h.event(Event{Kind: EventTyping}) }

// End ends the conversation on the visitor's side. It is idempotent.
func (h *ResumedVisitor) End() { _ = h.event(Event{Kind: EventEnded, By: ByVisitor}) }

func (h *ResumedVisitor) event(e Event) error {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	cv := h.cv
	if _, live := cv.vol.active[cv.id]; !live {
		return ErrEnded
	}
	dp, ok := cv.peer.(*directPeer)
	if !ok || dp.cv != cv || dp.closed {
		return ErrEnded
	}
	if e.Kind == EventEnded {
		dp.closed = true // the page said it: it hears ended, not closed
	}
	s.visitorEventLocked(cv, e)
	return nil
}

// directPeer is a resumed visitor in place of the relay: what our volunteer
// says goes straight to the page.
type directPeer struct {
	s      *Switchboard
	cv     *conv
	sink   VisitorSink
	out    *outbox
	closed bool
}

// Send is called under the switchboard's lock, like a relay's.
func (p *directPeer) Send(e Event) error {
	if p.closed {
		return ErrEnded
	}
	sink := p.sink
	p.out.post(func() { sink.Event(e) })
	if e.Kind == EventMessage {
		// On the page's socket now: as delivered as a relay's ack.
		v, id := p.cv.vol, p.cv.id
		v.out.post(func() { v.sink.Event(id, Event{Kind: EventDelivered, ID: e.ID}) })
	}
	if e.Kind == EventEnded {
		p.closed = true
	}
	return nil
}

// Close ends the page's side; reason is told unless the page already heard
// the end.
func (p *directPeer) Close(reason string) {
	if p.closed {
		return
	}
	p.closed = true
	sink := p.sink
	p.out.post(func() { sink.Closed(reason) })
}

func (s *Switchboard) newResumable(hash string) *resumable {
	if !resumeHashPattern.MatchString(hash) {
		return nil
	}
	return &resumable{hash: hash, seen: map[string]bool{}}
}

// forgetResumableLocked drops what a received conversation kept for a
// resume: called whenever it ends.
func (s *Switchboard) forgetResumableLocked(rc *received) {
	if rc.conv == nil || rc.conv.resume == nil {
		return
	}
	r := rc.conv.resume
	if r.hold != nil {
		r.hold.Stop()
		r.hold = nil
	}
	if s.resumables[r.hash] == rc {
		delete(s.resumables, r.hash)
	}
	r.sent = nil
}
