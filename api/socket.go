package api

// One accepted WebSocket, shared by the visitor chat and the volunteer
// console: a reader, a writer fed by a bounded queue, and a pinger. See
// DESIGN.md, "Sockets that cannot hold each other up".

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"
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
	// beat, when set before run, sends the page a beat frame that often:
	// a page that can resume takes silence for a dead centre (resume.go).
	beat time.Duration
	// renew, when set before run, is called every renewEvery.
	renew      func()
	renewEvery time.Duration

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

// refuse ends a socket that cannot go on: a last frame and a close, then
// run with nothing handled, so the close handshake completes.
func (ws *wsock) refuse(last any, code websocket.StatusCode, reason string) {
	ws.sendThenClose(last, code, reason)
	ws.run(func(websocket.MessageType, []byte) {})
}

// refuseErr refuses with err's error frame; why starts the close reason.
func (ws *wsock) refuseErr(err error, why string) {
	ws.refuse(errorFrame{Type: "error", Code: errorCode(err), Error: err.Error()},
		websocket.StatusPolicyViolation, why+": "+errorCode(err))
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
	var beats <-chan time.Time
	if ws.beat > 0 {
		b := time.NewTicker(ws.beat)
		defer b.Stop()
		beats = b.C
	}
	var renewals <-chan time.Time
	if ws.renew != nil && ws.renewEvery > 0 {
		r := time.NewTicker(ws.renewEvery)
		defer r.Stop()
		renewals = r.C
	}
	var pings <-chan time.Time
	if ws.timing.ping > 0 {
		t := time.NewTicker(ws.timing.ping)
		defer t.Stop()
		pings = t.C
	}
	for {
		select {
		case <-ws.stop:
			return
		case <-beats:
			ws.sendLossy(beatFrame)
		case <-renewals:
			ws.renew()
		case <-pings:
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
