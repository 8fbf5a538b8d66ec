package api

// The visitor's chat socket, and the WebSocket plumbing it shares with the
// volunteer console (console.go).
//
// # GET /v1/chat?channel=chat&lang=nb
//
// Opens one anonymous chat. channel is "chat" (the default; phone calls come
// through the PBX); lang is an ISO 639-1 code the federation serves.
//
// Before the upgrade, with a JSON error body {"code":...,"error":...}:
//
//	400 bad_request        channel is not chat, or lang is not an ISO 639-1 code
//	429 too_many_requests  this address started too many chats; Retry-After
//	                       says when to try again (Config.ChatStartsPerMinute,
//	                       ChatStartBurst; the address is counted only as a
//	                       salted hash held in memory)
//	503 not_ready          the centre has no switchboard yet, or is stopping
//	403 (text/plain)       the Origin is neither the page's own host nor one of
//	                       Config.AllowedOrigins
//
// After the upgrade every frame is one JSON object in a text frame. The
// server reads frames of at most maxFrameBytes (16 KiB); a bigger frame
// closes the socket with status 1009 (message too big).
//
// Server to visitor:
//
//	{"type":"queued","position":1,"estimated_wait_seconds":30}
//	    The place in this centre's queue for the channel and language, and a
//	    rough wait (rounded to 5 s). Sent on arrival and whenever either
//	    changes, also while an offer is ringing.
//	{"type":"connected","alias":"Kari"}
//	    A volunteer answered; alias is all the visitor learns of them.
//	{"type":"message","id":"v17","text":"..."}
//	    The volunteer's message; id is the volunteer's message id.
//	{"type":"typing"}
//	    The volunteer is typing.
//	{"type":"delivered","id":"c1"}
//	    The visitor's message c1 reached the volunteer's centre.
//	{"type":"ended","by":"volunteer"}
//	    The conversation is over: "volunteer" (the volunteer ended it) or
//	    "visitor" (the answer to the visitor's own "end"). The server then
//	    closes the socket with 1000 "conversation ended".
//	{"type":"requeued","undelivered":2}
//	    The volunteer (or their centre) was lost mid-conversation; the
//	    visitor is back at the front of the queue ("queued" follows, then a
//	    new "connected"). undelivered counts the visitor's messages that were
//	    never acknowledged with "delivered": the page may offer to resend.
//	{"type":"error","code":"bad_message","error":"...","id":"c1"}
//	    The visitor's last frame was refused; nothing else changed and the
//	    chat goes on. id is the refused message's id, when there was one.
//	    Codes: malformed (not JSON, unknown field, trailing data, not UTF-8),
//	    bad_frame (a binary frame, a missing type, a missing or extra
//	    field), unknown_type, bad_message (empty, over 4000 bytes of text or
//	    64 bytes of id), not_connected (no volunteer yet: keep the message
//	    and send it after "connected"), ended, bad_request, internal.
//	    A chat that cannot start (the language is not served, the centre is
//	    closing) gets one error frame (bad_request or closed), then the
//	    socket closes with 1008.
//	{"type":"closed","reason":"the centre is shutting down"}
//	    The centre ends the chat; the socket closes with 1001. The page may
//	    reconnect (to any centre) and start again.
//
// Visitor to server:
//
//	{"type":"message","id":"c1","text":"..."}
//	    id: 1-64 bytes chosen by the page, echoed in "delivered" or "error";
//	    text: 1-4000 bytes of UTF-8. Only after "connected".
//	{"type":"typing"}
//	    Ignored while nobody is connected.
//	{"type":"end"}
//	    Leave: ends the conversation, or gives up the place in the queue.
//	    Answered with {"type":"ended","by":"visitor"} and a 1000 close.
//
// Unknown fields, a field another type uses, or trailing data make the frame
// malformed or bad_frame. Closing the socket for any reason is the same as
// "end". The server pings every 30 s; a socket from which nothing arrives
// (no frame, no pong) for 10 minutes is closed with 1001. A visitor who
// cannot keep up (256 frames unread) is closed with 1008.
//
// Nothing a visitor sends or is, no text, address, user agent or cookie, is
// ever logged or stored (DESIGN.md invariants 1 and 2).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/switchboard"
)

const (
	// maxFrameBytes bounds one incoming frame: a 4000-byte message leaves
	// room for JSON escaping.
	maxFrameBytes = 16 << 10
	// outQueue bounds the frames waiting for one socket's writer.
	outQueue = 256
	// maxCloseReason is the WebSocket limit on a close reason.
	maxCloseReason = 123
)

// socketTiming is how long sockets may stay silent and how often they are
// pinged.
type socketTiming struct {
	idle        time.Duration
	ping        time.Duration
	pingTimeout time.Duration
	write       time.Duration
}

var defaultSocketTiming = socketTiming{
	idle: 10 * time.Minute, ping: 30 * time.Second, pingTimeout: 20 * time.Second, write: 10 * time.Second,
}

// ---- frames ----

// frameError is a refused frame: code goes into the error frame.
type frameError struct {
	code string
	msg  string
}

func (e *frameError) Error() string { return e.msg }

func badFrame(code, format string, args ...any) error {
	return &frameError{code: code, msg: fmt.Sprintf(format, args...)}
}

// decodeFrame parses one frame strictly into v.
func decodeFrame(b []byte, v any) error {
	if len(b) > maxFrameBytes {
		return badFrame("too_large", "frame of %d bytes, limit %d", len(b), maxFrameBytes)
	}
	if !utf8.Valid(b) {
		return badFrame("malformed", "frame is not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badFrame("malformed", "malformed frame: %s", clipText(err.Error()))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badFrame("malformed", "malformed frame: trailing data after the JSON object")
	}
	return nil
}

// visitorFrame is what a visitor may send.
type visitorFrame struct {
	Type string `json:"type"`
	ID   string `json:"id,omitempty"`
	Text string `json:"text,omitempty"`
}

// decodeVisitorFrame parses and shape-checks one visitor frame. Sizes and
// encoding of id and text are the switchboard's to check.
func decodeVisitorFrame(b []byte) (visitorFrame, error) {
	var f visitorFrame
	if err := decodeFrame(b, &f); err != nil {
		return visitorFrame{}, err
	}
	switch f.Type {
	case "message":
		if f.ID == "" || f.Text == "" {
			return visitorFrame{}, badFrame("bad_frame", "a message needs an id and a text")
		}
	case "typing", "end":
		if f.ID != "" || f.Text != "" {
			return visitorFrame{}, badFrame("bad_frame", "%s takes no id or text", f.Type)
		}
	case "":
		return visitorFrame{}, badFrame("bad_frame", "the frame has no type")
	default:
		return visitorFrame{}, badFrame("unknown_type", "unknown type %q (want message, typing or end)", clipText(f.Type))
	}
	return f, nil
}

// Outgoing frames. Contact is set only on the console.
type (
	queuedFrame struct {
		Type                 string `json:"type"`
		Position             int    `json:"position"`
		EstimatedWaitSeconds int    `json:"estimated_wait_seconds"`
	}
	aliasFrame struct {
		Type  string `json:"type"`
		Alias string `json:"alias"`
	}
	contactFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact,omitempty"`
	}
	idFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact,omitempty"`
		ID      string `json:"id"`
	}
	messageFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact,omitempty"`
		ID      string `json:"id"`
		Text    string `json:"text"`
	}
	endedFrame struct {
		Type    string `json:"type"`
		Contact string `json:"contact,omitempty"`
		By      string `json:"by"`
	}
	undeliveredFrame struct {
		Type        string `json:"type"`
		Contact     string `json:"contact,omitempty"`
		Undelivered int    `json:"undelivered"`
	}
	closedFrame struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}
	errorFrame struct {
		Type    string `json:"type"`
		Code    string `json:"code"`
		Error   string `json:"error"`
		Contact string `json:"contact,omitempty"`
		ID      string `json:"id,omitempty"`
		// RetryAfterSeconds comes with slow_down: when to send the
		// refused message again.
		RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
	}
	queueFullFrame struct {
		Type             string                `json:"type"`
		Code             string                `json:"code"`
		Error            string                `json:"error"`
		EmergencyNumbers []emergencyNumberView `json:"emergency_numbers"`
	}
)

func encodeFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own frame types are encoded; they always marshal.
		b, _ = json.Marshal(errorFrame{Type: "error", Code: "internal", Error: "a frame could not be encoded"})
	}
	return b
}

// errorCode maps a switchboard refusal to an error frame code.
func errorCode(err error) string {
	var fe *frameError
	switch {
	case errors.As(err, &fe):
		return fe.code
	case errors.Is(err, switchboard.ErrBadMessage):
		return "bad_message"
	case errors.Is(err, switchboard.ErrUnknownContact):
		return "unknown_contact"
	case errors.Is(err, switchboard.ErrOfferGone):
		return "offer_gone"
	case errors.Is(err, switchboard.ErrNotSignedIn):
		return "not_signed_in"
	case errors.Is(err, switchboard.ErrEnded):
		return "ended"
	case errors.Is(err, switchboard.ErrClosed):
		return "closed"
	case errors.Is(err, switchboard.ErrBadRequest):
		return "bad_request"
	case errors.Is(err, switchboard.ErrDraining):
		return "draining"
	case errors.Is(err, switchboard.ErrFlooding):
		return "flooding"
	case errors.Is(err, switchboard.ErrSlowDown):
		return "slow_down"
	case errors.Is(err, switchboard.ErrQueueFull):
		return "queue_full"
	}
	return "internal"
}

func clipText(s string) string {
	if len(s) <= 80 {
		return s
	}
	cut := 80
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// ---- sockets ----

type outItem struct {
	frame  []byte
	close  bool
	code   websocket.StatusCode
	reason string
}

// wsock is one accepted WebSocket: a reader (the handler's goroutine), a
// writer fed by a bounded queue, and a pinger. Anything may call send; it
// never blocks. The writer alone closes the connection, with the first
// reason given to shutdown.
type wsock struct {
	srv    *Server
	who    string    // whoVisitor or whoVolunteer, for the refusal counts
	counts *refusals // nil in unit tests
	frames *rate.Limiter
	conn   *websocket.Conn
	timing socketTiming
	out    chan outItem
	stop   chan struct{}
	once   sync.Once
	// closing is set once a last frame and a close are queued: nothing the
	// peer sends after that is handled (a flooder cut off stays cut off).
	closing atomic.Bool
	code    websocket.StatusCode
	reason  string
	idle    *time.Timer

	ctx        context.Context
	cancel     context.CancelFunc
	writerDone chan struct{}
	pingerDone chan struct{}
}

// acceptSocket upgrades the request. On failure the response is written.
func (s *Server) acceptSocket(w http.ResponseWriter, r *http.Request, who string, opts *websocket.AcceptOptions) (*wsock, bool) {
	ws := &wsock{
		srv: s, who: who, counts: s.refusals, frames: newFrameGate(who), timing: s.timing, out: make(chan outItem, outQueue), stop: make(chan struct{}),
		writerDone: make(chan struct{}), pingerDone: make(chan struct{}),
	}
	ws.ctx, ws.cancel = context.WithCancel(context.Background())
	ws.idle = time.AfterFunc(ws.timing.idle, func() {
		ws.shutdown(websocket.StatusGoingAway, "idle for "+ws.timing.idle.String())
	})
	ws.idle.Stop()
	opts.OnPongReceived = func(context.Context, []byte) { ws.touch() }

	s.sockMu.Lock()
	if s.stopping {
		s.sockMu.Unlock()
		ws.cancel()
		writeError(w, http.StatusServiceUnavailable, "not_ready", "the centre is shutting down")
		return nil, false
	}
	s.socks[ws] = struct{}{}
	s.sockWG.Add(1)
	s.sockMu.Unlock()

	// The server's read and write timeouts would otherwise cut the socket.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	conn, err := websocket.Accept(w, r, opts)
	if err != nil {
		ws.unregister()
		return nil, false
	}
	conn.SetReadLimit(maxFrameBytes)
	ws.conn = conn
	ws.touch()
	return ws, true
}

func (ws *wsock) unregister() {
	ws.cancel()
	s := ws.srv
	s.sockMu.Lock()
	delete(s.socks, ws)
	s.sockMu.Unlock()
	s.sockWG.Done()
}

func (ws *wsock) touch() { ws.idle.Reset(ws.timing.idle) }

// send queues one frame. A full queue means the peer cannot keep up: the
// socket is closed rather than anyone waiting.
func (ws *wsock) send(v any) {
	ws.put(outItem{frame: encodeFrame(v)})
}

// sendThenClose queues a last frame and a close behind it.
func (ws *wsock) sendThenClose(v any, code websocket.StatusCode, reason string) {
	ws.closing.Store(true)
	ws.put(outItem{frame: encodeFrame(v)})
	ws.put(outItem{close: true, code: code, reason: reason})
}

func (ws *wsock) put(it outItem) {
	select {
	case <-ws.stop:
		return
	default:
	}
	select {
	case ws.out <- it:
	default:
		// Only this socket pays for its reader's slowness. What is sent
		// to it is paced at its source (switchboard.Pace), so a normal
		// reader never gets here because of what somebody else did.
		ws.counts.count(ws.who, refusedSlowReader)
		ws.shutdown(websocket.StatusPolicyViolation, "too slow: "+strconv.Itoa(outQueue)+" frames unread")
	}
}

// sendLossy queues a frame that may be dropped, such as typing: when the
// queue is half full the reader is behind, and "still typing" is worth
// less than the messages behind it.
func (ws *wsock) sendLossy(v any) {
	if len(ws.out) >= outQueue/2 {
		return
	}
	ws.send(v)
}

// shutdown asks the writer to close the socket; the first reason wins.
func (ws *wsock) shutdown(code websocket.StatusCode, reason string) {
	ws.once.Do(func() {
		if len(reason) > maxCloseReason {
			reason = reason[:maxCloseReason]
			for len(reason) > 0 && !utf8.ValidString(reason) {
				reason = reason[:len(reason)-1]
			}
		}
		ws.code, ws.reason = code, reason
		close(ws.stop)
	})
}

func (ws *wsock) stopped() bool {
	select {
	case <-ws.stop:
		return true
	default:
		return false
	}
}

// run serves the socket until it closes, handing each frame to handle.
func (ws *wsock) run(handle func(websocket.MessageType, []byte)) {
	go ws.writer()
	go ws.pinger()
	for {
		typ, b, err := ws.conn.Read(ws.ctx)
		if err != nil {
			break
		}
		ws.touch()
		if ws.closing.Load() {
			continue
		}
		if ws.frames != nil && !ws.frames.Allow() {
			ws.counts.count(ws.who, refusedFrames)
			ws.shutdown(websocket.StatusPolicyViolation, "too many frames too fast")
			continue
		}
		if !ws.stopped() {
			handle(typ, b)
		}
	}
	ws.idle.Stop()
	ws.shutdown(websocket.StatusNormalClosure, "")
}

// finish waits for the writer and pinger after run.
func (ws *wsock) finish() {
	<-ws.writerDone
	ws.cancel()
	<-ws.pingerDone
	ws.unregister()
}

func (ws *wsock) writer() {
	defer close(ws.writerDone)
	for {
		select {
		case <-ws.stop:
			_ = ws.conn.Close(ws.code, ws.reason)
			return
		default:
		}
		select {
		case <-ws.stop:
		case it := <-ws.out:
			if it.close {
				ws.shutdown(it.code, it.reason)
				continue
			}
			ctx, cancel := context.WithTimeout(ws.ctx, ws.timing.write)
			err := ws.conn.Write(ctx, websocket.MessageText, it.frame)
			cancel()
			if err != nil {
				ws.shutdown(websocket.StatusGoingAway, "write failed")
			}
		}
	}
}

func (ws *wsock) pinger() {
	defer close(ws.pingerDone)
	if ws.timing.ping <= 0 {
		<-ws.stop
		return
	}
	t := time.NewTicker(ws.timing.ping)
	defer t.Stop()
	for {
		select {
		case <-ws.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(ws.ctx, ws.timing.pingTimeout)
			err := ws.conn.Ping(ctx)
			cancel()
			if err != nil {
				ws.shutdown(websocket.StatusGoingAway, "no answer to ping")
				return
			}
		}
	}
}

// closeSockets closes every socket and refuses new ones.
func (s *Server) closeSockets(reason string) {
	s.sockMu.Lock()
	defer s.sockMu.Unlock()
	s.stopping = true
	for ws := range s.socks {
		ws.sendThenClose(closedFrame{Type: "closed", Reason: reason}, websocket.StatusGoingAway, reason)
	}
}

// waitSockets waits for every socket's goroutines to end.
func (s *Server) waitSockets(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.sockWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("websockets still open: %w", ctx.Err())
	}
}

// ---- the visitor's chat ----

// visitorConn is one visitor's socket and their grip on the contact. It is
// the contact's switchboard.VisitorSink.
type visitorConn struct {
	ws        *wsock
	refusals  *refusals
	h         *switchboard.VisitorHandle
	connected atomic.Bool // a volunteer is connected
	over      atomic.Bool // the volunteer ended it or the centre closed it
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
	sb := s.cfg.Centre.Switchboard()
	if sb == nil {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "the centre is not taking chats yet")
		return
	}
	if sb.Draining() {
		// Refused before the upgrade: nothing was started, so nothing is
		// lost, and the page can try again here or at another centre.
		w.Header().Set("Retry-After", strconv.Itoa(drainRetryAfterSeconds))
		writeError(w, http.StatusServiceUnavailable, "draining", drainMessage)
		return
	}
	// Checked before anything is counted: a page on a foreign site, or a
	// broken client, must not spend a visitor's allowance.
	if status, msg := handshakeError(r, s.cfg.AllowedOrigins); status != 0 {
		s.refusals.count(whoVisitor, refusedHandshake)
		writeError(w, status, "bad_handshake", msg)
		return
	}
	addrKey := s.chatStarts.key(r)
	if !s.openChats.acquire(addrKey) {
		s.refusals.count(whoVisitor, refusedChatsOpen)
		w.Header().Set("Retry-After", "60")
		writeError(w, http.StatusTooManyRequests, "too_many_chats",
			fmt.Sprintf("%d chats are already open from this address; end one first", s.openChats.max))
		return
	}
	defer s.openChats.release(addrKey)
	if ok, wait := s.chatStarts.allow(r); !ok {
		s.refusals.count(whoVisitor, refusedChatStarts)
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(wait)))
		writeError(w, http.StatusTooManyRequests, "too_many_requests",
			fmt.Sprintf("too many chats started from this address; try again in %d seconds", retryAfterSeconds(wait)))
		return
	}
	ws, ok := s.acceptSocket(w, r, whoVisitor, &websocket.AcceptOptions{OriginPatterns: s.cfg.AllowedOrigins})
	if !ok {
		return
	}
	defer ws.finish()
	v := &visitorConn{ws: ws, refusals: s.refusals}
	h, err := sb.StartContact(channel, lang, v)
	if errors.Is(err, switchboard.ErrDraining) {
		// Drain began during the upgrade: 1013 tells the page to try again.
		ws.sendThenClose(errorFrame{Type: "error", Code: "draining", Error: drainMessage},
			websocket.StatusTryAgainLater, "the centre is restarting")
		ws.run(func(websocket.MessageType, []byte) {})
		return
	}
	if errors.Is(err, switchboard.ErrQueueFull) {
		// An honest answer instead of a place nobody reaches: the page
		// shows the policy's emergency numbers (also in /v1/info).
		s.refusals.count(whoVisitor, refusedQueueFull)
		ws.sendThenClose(s.queueFullFrame(), websocket.StatusTryAgainLater, "the queue is full")
		ws.run(func(websocket.MessageType, []byte) {})
		return
	}
	if err != nil {
		ws.sendThenClose(errorFrame{Type: "error", Code: errorCode(err), Error: err.Error()},
			websocket.StatusPolicyViolation, "the chat could not start: "+errorCode(err))
		ws.run(func(websocket.MessageType, []byte) {})
		return
	}
	v.h = h
	ws.run(v.handle)
	v.end()
}

// end ends the contact once, unless the other side already did.
func (v *visitorConn) end() {
	v.endOnce.Do(func() {
		if !v.over.Load() {
			v.h.End()
		}
	})
}

func (v *visitorConn) handle(typ websocket.MessageType, b []byte) {
	if typ != websocket.MessageText {
		v.ws.send(errorFrame{Type: "error", Code: "bad_frame", Error: "send JSON in text frames, not binary"})
		return
	}
	f, err := decodeVisitorFrame(b)
	if err != nil {
		v.ws.send(errorFrame{Type: "error", Code: errorCode(err), Error: err.Error()})
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
	case "end":
		v.end()
		v.ws.sendThenClose(endedFrame{Type: "ended", By: switchboard.ByVisitor}, websocket.StatusNormalClosure, "conversation ended")
	}
}

// The switchboard.VisitorSink methods: called in order from the contact's
// outbox goroutine; they only queue frames.

func (v *visitorConn) Queued(position int, estimatedWait time.Duration) {
	v.ws.send(queuedFrame{Type: "queued", Position: position, EstimatedWaitSeconds: int(estimatedWait.Round(time.Second) / time.Second)})
}

func (v *visitorConn) Connected(alias string) {
	v.connected.Store(true)
	v.ws.send(aliasFrame{Type: "connected", Alias: alias})
}

func (v *visitorConn) Event(e switchboard.Event) {
	switch e.Kind {
	case switchboard.EventMessage:
		v.ws.send(messageFrame{Type: "message", ID: e.ID, Text: e.Text})
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
	}
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
		Type: "error", Code: "queue_full", EmergencyNumbers: []emergencyNumberView{},
		Error: "Everyone here is busy and the queue is full. Please try again in a few minutes. If you are in danger now, call an emergency number.",
	}
	for _, e := range s.cfg.Centre.Roster().Policy.EmergencyNumbers {
		f.EmergencyNumbers = append(f.EmergencyNumbers, emergencyNumberView{e.Name, e.Number})
	}
	return f
}
