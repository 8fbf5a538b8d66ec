//go:build faults

package faults

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// A visitor's page that opted in to resumed conversations (issue 15,
// docs/api.md): it opens /v1/chat with resume=1, keeps the resume offer of
// the `connected` frame (in memory only), counts the volunteer's messages,
// and when its socket dies (a close or error without `ended` or `closed`,
// or beatSilence without any frame: the server sends a beat every second)
// or the centre says `move`, it continues the same conversation at the
// resume URL (the volunteer's centre): a `resume` frame with the secret and
// how many of the volunteer's messages it has, `resumed`, the volunteer's
// messages after those, then its own messages that were never `delivered`,
// sent again with the same id.

const (
	// beatSilence is how long the page waits without any frame before it
	// takes its centre for dead.
	beatSilence = 3 * time.Second
	// resumeWithin bounds a resume: the dial and the `resumed` answer.
	resumeWithin = 5 * time.Second
)

// resumeOffer is a `connected` frame's resume object.
type resumeOffer struct{ url, secret string }

type ownMessage struct {
	id, text  string
	delivered bool
}

// chatSession is one visitor's conversation over one or more sockets.
// frames carries every frame but beats from every socket, in order, plus
// one event of the session's own between sockets,
// {"type":"socket_lost","why":...}; a resume's `resumed` frame is passed
// on. frames is closed when the conversation is over (after `ended` or
// `closed`) or lost (a socket died with no resume to go to, or the resume
// failed): closed() then says why (nil after `ended` or `closed`).
type chatSession struct {
	name, addr, origin string
	frames             chan map[string]any

	mu       sync.Mutex
	conn     *websocket.Conn
	resume   *resumeOffer
	offered  *resumeOffer // the last resume offer seen, kept for the test's checks
	received []string     // the volunteer's message ids, in order, over every socket
	seen     map[string]int
	dupes    []string // volunteer message ids received more than once
	mine     []*ownMessage
	why      error
	done     bool
	beats    int
	// lostAt is when the last socket was given up, resumedAt when the
	// last resume was answered, resumes how many succeeded.
	lostAt, resumedAt time.Time
	resumes           int
	resumedN          int // the received count the last resume sent
}

var (
	errMove = errors.New("the centre said move")
	errDead = errors.New("the centre is gone")
)

// newChatSession runs the session on conn, a chat socket opened with
// resume=1 at a centre whose page has origin, by a visitor from addr
// (X-Forwarded-For, again when resuming).
func newChatSession(ctx context.Context, name string, conn *websocket.Conn, origin, addr string) *chatSession {
	s := &chatSession{name: name, addr: addr, origin: origin, frames: make(chan map[string]any, 256), conn: conn, seen: map[string]int{}}
	go s.run(ctx)
	return s
}

// closeNow closes the current socket.
func (s *chatSession) closeNow() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conn.CloseNow()
}

// closed says why frames was closed: nil after `ended` or `closed`.
func (s *chatSession) closed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.why
}

// receivedIDs are the volunteer's message ids the page has, in order.
func (s *chatSession) receivedIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.received...)
}

// duplicates are the volunteer's message ids that came more than once.
func (s *chatSession) duplicates() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.dupes...)
}

// undelivered are the page's own message ids without a `delivered` yet.
func (s *chatSession) undelivered() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, m := range s.mine {
		if !m.delivered {
			out = append(out, m.id)
		}
	}
	return out
}

func (s *chatSession) resumeCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resumes
}

// send writes m on the current socket. A message is kept until it is
// `delivered`, and sent again after a resume: a message that cannot be
// written while a resume is possible is not an error.
func (s *chatSession) send(ctx context.Context, m map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return fmt.Errorf("%s: the conversation is over: %v", s.name, s.why)
	}
	if m["type"] == "message" {
		id, _ := m["id"].(string)
		text, _ := m["text"].(string)
		s.mine = append(s.mine, &ownMessage{id: id, text: text})
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := wsjson.Write(wctx, s.conn, m)
	if err != nil && m["type"] == "message" && s.resume != nil {
		return nil
	}
	return err
}

// sock is one of the session's sockets, read by readFrames.
type sock struct {
	conn   *websocket.Conn
	in     <-chan map[string]any
	closed func() error
	cancel context.CancelFunc
}

func openSock(ctx context.Context, conn *websocket.Conn) *sock {
	rctx, cancel := context.WithCancel(ctx)
	in, closed := readFrames(rctx, conn)
	return &sock{conn: conn, in: in, closed: closed, cancel: cancel}
}

// drop closes the socket and stops its reader.
func (k *sock) drop() {
	k.conn.CloseNow()
	k.cancel()
}

// run reads the sockets one after another until the conversation is over
// or lost. A socket given up stays open until the resume is answered: a
// centre that is only slow, or drains, must not take its close for the
// visitor leaving (which would end the conversation the page is about to
// resume); the answering centre ends it there as handed over.
func (s *chatSession) run(ctx context.Context) {
	cur := openSock(ctx, s.conn)
	for {
		err := s.read(ctx, cur)
		if err == nil || ctx.Err() != nil {
			cur.drop()
			s.finish(err)
			return
		}
		s.mu.Lock()
		r := s.resume
		s.lostAt = time.Now()
		s.mu.Unlock()
		if r == nil {
			cur.drop()
			s.finish(err)
			return
		}
		if !s.emit(ctx, map[string]any{"type": "socket_lost", "why": err.Error()}) {
			cur.drop()
			s.finish(ctx.Err())
			return
		}
		next, rerr := s.resumeAt(ctx, r)
		if rerr == nil {
			cur.drop()
			cur = openSock(ctx, next)
			continue
		}
		if errors.Is(err, errMove) {
			// The page could not resume: it stays where it is, and waits
			// at the front of the queue again.
			s.mu.Lock()
			werr := wsjson.Write(ctx, cur.conn, map[string]any{"type": "stay"})
			s.mu.Unlock()
			if werr == nil && s.emit(ctx, map[string]any{"type": "stayed", "why": rerr.Error()}) {
				continue
			}
		}
		cur.drop()
		s.finish(fmt.Errorf("socket lost (%w), and the resume at %s failed: %w", err, r.url, rerr))
		return
	}
}

func (s *chatSession) finish(why error) {
	s.mu.Lock()
	s.why = why
	s.done = true
	s.mu.Unlock()
	close(s.frames)
}

func (s *chatSession) emit(ctx context.Context, m map[string]any) bool {
	select {
	case s.frames <- m:
		return true
	case <-ctx.Done():
		return false
	}
}

// read passes k's frames on until the conversation ends (nil), the
// socket dies or goes silent (errDead), or the centre says move (errMove).
func (s *chatSession) read(ctx context.Context, k *sock) error {
	silence := time.NewTimer(beatSilence)
	defer silence.Stop()
	over := false
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-silence.C:
			return fmt.Errorf("%w: no frame for %v", errDead, beatSilence)
		case m, ok := <-k.in:
			if !ok {
				if over {
					return nil
				}
				return fmt.Errorf("%w: socket closed: %w", errDead, k.closed())
			}
			silence.Reset(beatSilence)
			if !s.note(m) {
				continue
			}
			switch m["type"] {
			case "ended", "closed":
				over = true
			case "move":
				s.mu.Lock()
				canMove := s.resume != nil
				s.mu.Unlock()
				if canMove {
					return errMove
				}
			}
			if !s.emit(ctx, m) {
				return ctx.Err()
			}
		}
	}
}

// note keeps the page's books on frame m; false for a frame not passed on
// (a beat).
func (s *chatSession) note(m map[string]any) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch m["type"] {
	case "beat":
		s.beats++
		return false
	case "connected":
		if r, ok := m["resume"].(map[string]any); ok {
			url, _ := r["url"].(string)
			secret, _ := r["secret"].(string)
			s.resume = &resumeOffer{url: url, secret: secret}
			s.offered = s.resume
		}
	case "requeued":
		s.resume = nil // the volunteer's centre is gone
	case "message":
		id, _ := m["id"].(string)
		s.seen[id]++
		if s.seen[id] > 1 {
			s.dupes = append(s.dupes, id)
		}
		s.received = append(s.received, id)
	case "delivered":
		for _, o := range s.mine {
			if o.id == m["id"] {
				o.delivered = true
			}
		}
	}
	return true
}

// resumeAt continues the conversation at r: one try, as the page does
// (after a refusal or no answer within resumeWithin it would start anew).
func (s *chatSession) resumeAt(ctx context.Context, r *resumeOffer) (*websocket.Conn, error) {
	s.mu.Lock()
	s.resume = nil // one resume per secret
	n := len(s.received)
	s.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, resumeWithin)
	defer cancel()
	u := "ws" + strings.TrimPrefix(strings.TrimSuffix(r.url, "/"), "http") + "/v1/chat/resume"
	conn, resp, err := websocket.Dial(rctx, u, &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {s.origin}, "X-Forwarded-For": {s.addr}},
	})
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: HTTP %d: %w", u, resp.StatusCode, err)
		}
		return nil, fmt.Errorf("dial %s: %w", u, err)
	}
	if err := wsjson.Write(rctx, conn, map[string]any{"type": "resume", "secret": r.secret, "received": n}); err != nil {
		conn.CloseNow()
		return nil, fmt.Errorf("send resume: %w", err)
	}
	for {
		var m map[string]any
		if err := wsjson.Read(rctx, conn, &m); err != nil {
			conn.CloseNow()
			return nil, fmt.Errorf("waiting for resumed: %w", err)
		}
		switch m["type"] {
		case "beat":
			continue
		case "resumed":
		default:
			conn.CloseNow()
			return nil, fmt.Errorf("refused: %v", m)
		}
		// Own messages never delivered go again, same id and text, in
		// order; under the lock, so that a message sent meanwhile goes
		// on the new socket once, after these.
		s.mu.Lock()
		s.conn = conn
		s.resumes++
		s.resumedAt = time.Now()
		s.resumedN = n
		var resend []*ownMessage
		for _, o := range s.mine {
			if !o.delivered {
				resend = append(resend, o)
			}
		}
		var werr error
		for _, o := range resend {
			if werr = wsjson.Write(rctx, conn, map[string]any{"type": "message", "id": o.id, "text": o.text}); werr != nil {
				break
			}
		}
		s.mu.Unlock()
		if werr != nil {
			conn.CloseNow()
			return nil, fmt.Errorf("resending undelivered messages: %w", werr)
		}
		m["received_sent"] = n
		if !s.emit(ctx, m) {
			conn.CloseNow()
			return nil, ctx.Err()
		}
		return conn, nil
	}
}
