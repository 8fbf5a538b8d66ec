package api

// The visitor's chat socket, GET /v1/chat: one anonymous contact, from
// queued to ended. The protocol (frames, error codes, limits, closes) is in
// docs/api.md, "Visitor chat"; the checks before the upgrade are in the
// order DESIGN.md explains.
//
// Nothing a visitor sends or is, no text, address, user agent or cookie, is
// ever logged or stored (DESIGN.md invariants 1 and 2).

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/switchboard"
)

// visitorConn is one visitor's socket and their grip on the contact. It is
// the contact's switchboard.VisitorSink.
type visitorConn struct {
	ws       *wsock
	refusals *refusals
	// emergency returns the policy's emergency numbers now, for a queued
	// frame that says nobody is free.
	emergency func() []consensus.EmergencyNumber
	h         contactGrip
	connected atomic.Bool // a volunteer is connected
	// resumed: this socket resumed a conversation at its volunteer's
	// centre (resume.go); its first Connected is the resumed frame.
	resumed bool
	resume  *pageResume // nil unless the page asked to be able to resume
	over    atomic.Bool // the volunteer ended it or the centre closed it
	// movedBack: why the place grew since the last queued frame (an urgent
	// contact, or a returning one, came in ahead); the next one says so
	// (set and read on the outbox goroutine).
	movedBack string
	endOnce   sync.Once
}

func (s *Server) visitorChat(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	channel, lang := q.Get("channel"), q.Get("lang")
	if channel == "" {
		channel = switchboard.ChannelChat
	}
	if channel != switchboard.ChannelChat {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("channel %q: only chat is served here (phone calls come through the PBX)", clipText(channel)))
		return
	}
	if !consensus.KnownLanguage(lang) {
		writeError(w, http.StatusBadRequest, "bad_request", "lang must be an ISO 639-1 language code the centre serves, e.g. lang=nb")
		return
	}
	var opts switchboard.ContactOptions
	switch q.Get("urgent") {
	case "", "0":
	case "1":
		// The visitor's own pre-chat choice: they need someone right now
		// (switchboard/urgent.go). Never logged: it says something about
		// them.
		opts.Urgent = true
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "urgent must be 1 (the visitor needs someone right now) or 0")
		return
	}
	sb, ok := s.desk(w, "the centre is not taking chats yet")
	if !ok {
		return
	}
	if sb.Draining() {
		// Refused before the upgrade: nothing was started, so nothing is
		// lost, and the page can try again here or at another centre.
		w.Header().Set("Retry-After", strconv.Itoa(drainRetryAfterSeconds))
		writeError(w, http.StatusServiceUnavailable, "draining", drainMessage)
		return
	}
	ws, release, ok := s.acceptChatSocket(w, r)
	if !ok {
		return
	}
	defer release()
	defer ws.finish()
	v := &visitorConn{ws: ws, refusals: s.refusals, emergency: s.emergencyNumbers}
	var sink switchboard.VisitorSink = v
	verdict, ticket := ticketIgnored, ticketBody{}
	if q.Get("resume") == "1" {
		v.resume = &pageResume{publicURL: s.publicURLOf, ticket: s.issueTicket}
		sink = resumableConn{v}
		ws.beat = resumeBeat
		ws.renewEvery, ws.renew = ticketRenew, v.renewTicket
		if t := q.Get("ticket"); t != "" {
			verdict, ticket = s.judgeTicket(t, time.Now())
		}
		if verdict == ticketAhead {
			// Their centre died mid-conversation: they wait first here
			// (after urgent contacts only).
			opts.Ahead = true
		}
	}
	h, err := sb.StartContactWith(channel, lang, sink, opts)
	if errors.Is(err, switchboard.ErrDraining) {
		// Drain began during the upgrade: 1013 tells the page to try again.
		ws.refuse(errorFrame{Type: "error", Code: "draining", Error: drainMessage},
			websocket.StatusTryAgainLater, "the centre is restarting")
		return
	}
	if errors.Is(err, switchboard.ErrQueueFull) {
		// An honest answer instead of a place nobody reaches: the page
		// shows the policy's emergency numbers (also in /v1/info).
		s.refusals.count(whoVisitor, refusedQueueFull)
		ws.refuse(s.queueFullFrame(), websocket.StatusTryAgainLater, "the queue is full")
		return
	}
	if err != nil {
		ws.refuseErr(err, "the chat could not start")
		return
	}
	v.h = h
	var promotion sync.WaitGroup
	promoting, stopPromoting := context.WithCancel(ws.ctx)
	if verdict == ticketLater {
		promotion.Go(func() { s.promoteWhenDown(promoting, ticket, h.MoveAhead) })
	}
	ws.run(v.handle)
	stopPromoting()
	promotion.Wait()
	if v.resume != nil {
		// The socket dropped: a page that can resume elsewhere may be on
		// its way there (switchboard's Leave).
		v.endOnce.Do(func() {
			if !v.over.Load() {
				h.Leave()
			}
		})
	}
	v.end()
}

// acceptChatSocket admits a visitor's chat socket, a new chat's or a
// resume's: the origin, the chats open from the address and the starts
// allowed it are checked, in that order, before the upgrade. On failure
// the response is written. release gives back the open-chat place.
func (s *Server) acceptChatSocket(w http.ResponseWriter, r *http.Request) (ws *wsock, release func(), ok bool) {
	// Checked before anything is counted: a page on a foreign site, or a
	// broken client, must not spend a visitor's allowance.
	// The federation's own chat pages may open it too: a page from another
	// centre starts the chat here when its own centre refuses.
	origins := s.chatOriginPatterns()
	if status, msg := handshakeError(r, origins); status != 0 {
		s.refusals.count(whoVisitor, refusedHandshake)
		writeError(w, status, "bad_handshake", msg)
		return nil, nil, false
	}
	addrKey := s.chatStarts.key(r)
	if !s.openChats.acquire(addrKey) {
		s.refusals.count(whoVisitor, refusedChatsOpen)
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, "too_many_chats",
			fmt.Sprintf("%d chats are already open from this address; end one first", s.openChats.limit))
		return nil, nil, false
	}
	release = func() { s.openChats.release(addrKey) }
	if ok, wait := s.chatStarts.allow(r); !ok {
		release()
		s.refusals.count(whoVisitor, refusedChatStarts)
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
		writeError(w, http.StatusTooManyRequests, "too_many_requests",
			fmt.Sprintf("too many chats started from this address; try again in %d seconds", retryAfterSeconds(wait)))
		return nil, nil, false
	}
	ws, ok = s.acceptSocket(w, r, whoVisitor, &websocket.AcceptOptions{OriginPatterns: origins})
	if !ok {
		release()
		return nil, nil, false
	}
	return ws, release, true
}

// contactGrip is what a visitor's socket holds of their conversation: a
// contact here (switchboard.VisitorHandle) or, resumed, a conversation
// held at its volunteer's centre (switchboard.ResumedVisitor).
type contactGrip interface {
	Send(id, text string) error
	Typing() error
	End()
}

// end ends the contact once, unless the other side already did.
func (v *visitorConn) end() {
	v.endOnce.Do(func() {
		if !v.over.Load() && v.h != nil {
			v.h.End()
		}
	})
}

func (v *visitorConn) handle(typ websocket.MessageType, b []byte) {
	f, ok := readFrame(v.ws, typ, b, decodeVisitorFrame)
	if !ok {
		return
	}
	switch f.Type {
	case "message":
		if v.over.Load() {
			v.ws.send(errorFrame{Type: "error", Code: "ended", Error: "the conversation has ended", ID: f.ID})
			return
		}
		err := v.h.Send(f.ID, f.Text)
		var slow *switchboard.SlowDownError
		switch {
		case err == nil:
		case errors.Is(err, switchboard.ErrFlooding):
			// The switchboard has ended the contact; the volunteer heard
			// "ended by visitor" and their other conversations go on.
			v.refusals.count(whoVisitor, refusedFlooding)
			v.over.Store(true)
			v.ws.sendThenClose(errorFrame{Type: "error", Code: "flooding", Error: err.Error(), ID: f.ID},
				websocket.StatusPolicyViolation, "too many messages too fast")
		case errors.As(err, &slow):
			v.refusals.count(whoVisitor, refusedSlowDown)
			v.ws.send(errorFrame{Type: "error", Code: "slow_down", Error: err.Error(), ID: f.ID, RetryAfterSeconds: retryAfterSeconds(slow.RetryAfter)})
		default:
			code := errorCode(err)
			if code == "bad_request" && !v.connected.Load() {
				code = "not_connected"
			}
			v.ws.send(errorFrame{Type: "error", Code: code, Error: err.Error(), ID: f.ID})
		}
	case "typing":
		if !v.over.Load() && v.connected.Load() {
			_ = v.h.Typing() // a race with the end is harmless
		}
	case "stay":
		// After a move, the page could not resume at its volunteer's
		// centre: it waits here again, at the front.
		if h, ok := v.h.(*switchboard.VisitorHandle); ok {
			h.Stay()
		}
	case "end":
		v.end()
		v.ws.sendThenClose(endedFrame{Type: "ended", By: switchboard.ByVisitor}, websocket.StatusNormalClosure, "conversation ended")
	}
}

// The switchboard.VisitorSink methods: called in order from the contact's
// outbox goroutine; they only queue frames.

// MovedBack: the next queued frame says why the place grew
// (switchboard.MovedBackVisitor).
func (v *visitorConn) MovedBack(why string) { v.movedBack = why }

func (v *visitorConn) Queued(position int, wait switchboard.Estimate) {
	f := queuedFrame{Type: "queued", Position: position, Wait: string(wait.Kind), WaitMinutes: wait.Minutes, MovedBack: v.movedBack != "", MovedBackFor: v.movedBack}
	v.movedBack = ""
	if wait.Kind != switchboard.WaitFreeNow {
		f.EmergencyNumbers = v.emergency()
	}
	v.ws.send(f)
}

func (v *visitorConn) Connected(alias string) {
	v.connected.Store(true)
	if v.resumed {
		v.resumed = false // once: a later Connected is a new volunteer
		v.ws.send(aliasFrame{Type: "resumed", Alias: alias})
		return
	}
	f := aliasFrame{Type: "connected", Alias: alias}
	if v.resume != nil {
		f.Resume = v.resume.info()
		f.Ticket = v.resume.localTicket()
	}
	v.ws.send(f)
}

// renewTicket sends a page in a conversation answered here a fresh ticket
// before the last one expires.
func (v *visitorConn) renewTicket() {
	if v.connected.Load() && !v.over.Load() {
		if t := v.resume.localTicket(); t != "" {
			v.ws.send(ticketFrame{Type: "ticket", Ticket: t})
		}
	}
}

func (v *visitorConn) Event(e switchboard.Event) {
	switch e.Kind {
	case switchboard.EventMessage:
		v.ws.send(messageFrame{Type: "message", ID: e.ID, Text: e.Text, Alias: e.Alias})
	case switchboard.EventTyping:
		v.ws.sendLossy(contactFrame{Type: "typing"})
	case switchboard.EventDelivered:
		v.ws.send(idFrame{Type: "delivered", ID: e.ID})
	case switchboard.EventEnded:
		v.over.Store(true)
		v.connected.Store(false)
		by := e.By
		if by == "" {
			by = switchboard.ByVolunteer
		}
		v.ws.sendThenClose(endedFrame{Type: "ended", By: by}, websocket.StatusNormalClosure, "conversation ended")
	case switchboard.EventMove, switchboard.EventStayed, switchboard.EventSupervised:
		// supervised: a supervisor reads along now (the policy tells).
		v.ws.send(contactFrame{Type: string(e.Kind)})
	}
}

// Transferred says the conversation goes on with another volunteer
// (switchboard/transfer.go); the socket stays.
func (v *visitorConn) Transferred(alias string) {
	v.ws.send(aliasFrame{Type: "transferred", Alias: alias})
}

func (v *visitorConn) Requeued(undelivered int) {
	v.connected.Store(false)
	v.ws.send(undeliveredFrame{Type: "requeued", Undelivered: undelivered})
}

func (v *visitorConn) Closed(reason string) {
	v.over.Store(true)
	v.connected.Store(false)
	v.ws.sendThenClose(closedFrame{Type: "closed", Reason: reason}, websocket.StatusGoingAway, reason)
}

// queueFullFrame is the answer to a visitor when the queue is full: where
// else to turn, now.
func (s *Server) queueFullFrame() queueFullFrame {
	f := queueFullFrame{
		Type: "error", Code: "queue_full",
		// Never null: the page shows the list, empty or not.
		EmergencyNumbers: s.emergencyNumbers(),
		Error:            "Everyone here is busy and the queue is full. Please try again in a few minutes. If you are in danger now, call an emergency number.",
	}
	return f
}

// emergencyNumbers are the policy's, never nil.
func (s *Server) emergencyNumbers() []consensus.EmergencyNumber {
	return append([]consensus.EmergencyNumber{}, s.cfg.Centre.Roster().Policy.EmergencyNumbers...)
}
