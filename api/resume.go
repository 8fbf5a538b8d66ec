package api

// Resumed conversations (issue 15): a page whose conversation was answered
// at another centre can go on with it there, directly, when its own centre
// dies, is cut off or restarts. The page holds a one-time secret in memory;
// the answering centre holds only its hash (switchboard/resume.go). The
// protocol is in docs/api.md, "Resumed conversations".
//
// The secret is never logged, stored or put in a URL: it travels in the
// connected frame to the page and in the page's first frame back.

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/switchboard"
)

const (
	// resumeBeat is how often a page that can resume hears from its
	// centre; the page takes 3 s of silence for a dead centre.
	resumeBeat = time.Second
	// resumeFirstFrame bounds the wait for a resuming page's first frame.
	resumeFirstFrame = 5 * time.Second
	// resumeSecretBytes: 32 random bytes, 43 characters of base64url.
	resumeSecretBytes = 32
	resumeSecretChars = 43
	// maxResumeReceived bounds the page's count of messages received.
	maxResumeReceived = 1 << 20
)

// beatFrame keeps a resumable page's socket audibly alive.
var beatFrame = contactFrame{Type: "beat"}

// resumeInfo is where and how the page may resume.
type resumeInfo struct {
	URL    string `json:"url"`
	Secret string `json:"secret"`
}

// pageResume is a resumable page's secret and where its conversation was
// answered. The switchboard makes a new secret for every centre it offers
// the contact to (under its lock) and says who answered (from the contact's
// outbox), so it is guarded.
type pageResume struct {
	publicURL func(centre string) string
	ticket    func() string // a new front-of-queue ticket (ticket.go)

	mu     sync.Mutex
	secret string
	url    string
	local  bool // answered here: the page gets tickets instead
}

// localTicket is a new ticket while the conversation is answered here,
// else "".
func (p *pageResume) localTicket() string {
	p.mu.Lock()
	local := p.local
	p.mu.Unlock()
	if !local {
		return ""
	}
	return p.ticket()
}

// info is what the connected frame tells the page, nil when the
// conversation is here or the answering centre has no public address.
func (p *pageResume) info() *resumeInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.url == "" || p.secret == "" {
		return nil
	}
	return &resumeInfo{URL: p.url, Secret: p.secret}
}

// resumableConn is a visitorConn whose page asked to be able to resume: it
// is a switchboard.ResumableVisitor.
type resumableConn struct{ *visitorConn }

func (r resumableConn) NewResume() string {
	b := make([]byte, resumeSecretBytes)
	_, _ = rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	p := r.resume
	p.mu.Lock()
	p.secret, p.url = secret, ""
	p.mu.Unlock()
	return switchboard.ResumeHash(secret)
}

func (r resumableConn) AnsweredAt(centre string) {
	url := ""
	if centre != "" {
		url = r.resume.publicURL(centre)
	}
	p := r.resume
	p.mu.Lock()
	p.url, p.local = url, centre == ""
	p.mu.Unlock()
}

func (r resumableConn) CanResume() bool { return r.resume.info() != nil }

// publicURLOf is a centre's public origin from the roster, "" if it has
// none.
func (s *Server) publicURLOf(centre string) string {
	c, ok := s.cfg.Centre.Roster().Centres[centre]
	if !ok || c.PublicURL == "" {
		return ""
	}
	return consensus.PublicOrigin(c.PublicURL)
}

// resumeFrame is a resuming page's first frame.
type resumeFrame struct {
	Type     string `json:"type"`
	Secret   string `json:"secret"`
	Received int    `json:"received"`
}

// decodeResumeFrame parses and shape-checks a resume frame.
func decodeResumeFrame(b []byte) (resumeFrame, error) {
	var f resumeFrame
	if err := decodeFrame(b, &f); err != nil {
		return resumeFrame{}, err
	}
	if f.Type != "resume" {
		return resumeFrame{}, badFrame("bad_frame", "the first frame must be a resume frame")
	}
	if len(f.Secret) != resumeSecretChars {
		return resumeFrame{}, badFrame("resume_refused", "%s", switchboard.ErrResumeRefused.Error())
	}
	if _, err := base64.RawURLEncoding.DecodeString(f.Secret); err != nil {
		return resumeFrame{}, badFrame("resume_refused", "%s", switchboard.ErrResumeRefused.Error())
	}
	if f.Received < 0 || f.Received > maxResumeReceived {
		return resumeFrame{}, badFrame("bad_frame", "received must be 0-%d", maxResumeReceived)
	}
	return f, nil
}

// resumeChat is GET /v1/chat/resume: a page goes on with its conversation
// here, at its volunteer's centre. The checks before the upgrade are the
// chat's: a flood of guesses spends the guesser's own allowance.
func (s *Server) resumeChat(w http.ResponseWriter, r *http.Request) {
	sb, ok := s.desk(w, "the centre is not taking chats yet")
	if !ok {
		return
	}
	ws, release, ok := s.acceptChatSocket(w, r)
	if !ok {
		return
	}
	defer release()
	defer ws.finish()
	ws.beat = resumeBeat
	v := &visitorConn{ws: ws, refusals: s.refusals, emergency: s.emergencyNumbers}
	rc := &resumingConn{v: v, sb: sb}
	late := time.AfterFunc(resumeFirstFrame, func() {
		if !rc.begun.Load() {
			ws.sendThenClose(errorFrame{Type: "error", Code: "bad_frame", Error: "no resume frame came"},
				websocket.StatusPolicyViolation, "no resume frame")
		}
	})
	ws.run(rc.handle)
	late.Stop()
	v.end()
}

// resumingConn reads a resuming page's socket: a resume frame first, then
// the chat's frames.
type resumingConn struct {
	v     *visitorConn
	sb    *switchboard.Switchboard
	begun atomic.Bool
}

func (rc *resumingConn) handle(typ websocket.MessageType, b []byte) {
	v := rc.v
	if rc.begun.Load() {
		v.handle(typ, b)
		return
	}
	rc.begun.Store(true) // one try per socket
	f, err := decodeResumeFrame(b)
	if err == nil && typ != websocket.MessageText {
		err = badFrame("bad_frame", "send JSON in text frames, not binary")
	}
	var h *switchboard.ResumedVisitor
	if err == nil {
		v.resumed = true
		h, err = rc.sb.Resume(switchboard.ResumeHash(f.Secret), f.Received, v)
	}
	if err != nil {
		// One answer for every refusal: a forged, used or expired secret,
		// an ended conversation and a garbled frame look alike.
		code := "resume_refused"
		if errors.Is(err, switchboard.ErrClosed) {
			code = errorCode(err)
		}
		v.refusals.count(whoVisitor, refusedResume)
		v.over.Store(true)
		v.ws.sendThenClose(errorFrame{Type: "error", Code: code, Error: switchboard.ErrResumeRefused.Error()},
			websocket.StatusPolicyViolation, "resume refused")
		return
	}
	v.h = h
}
