package api

// Browser tests of the chat page's side of resumed conversations
// (static/chat.js; docs/api.md, the resume protocol) against scripted
// centres: each fake serves the real embedded page and answers the chat
// and resume sockets as a test says, so the page's part (beats, the resume
// frame, re-sent messages, the fallback with a ticket) is checked frame by
// frame. The real centres' side is in the tests beside the entry tests.

import (
	"context"
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
)

// fakeCentre serves the embedded chat page, a /v1/info naming others as
// entry points, and hands each chat or resume socket to the test.
type fakeCentre struct {
	url     string
	others  []string
	chats   chan *fakeSock
	resumes chan *fakeSock
}

// fakeSock is one socket a page opened at a fake centre.
type fakeSock struct {
	t      *testing.T
	conn   *websocket.Conn
	query  url.Values
	frames chan map[string]any
	mu     sync.Mutex
	beats  bool // while true, a beat every second (as with resume=1)
	done   chan struct{}
}

func newFakeCentre(t *testing.T) *fakeCentre {
	t.Helper()
	fc := &fakeCentre{chats: make(chan *fakeSock, 4), resumes: make(chan *fakeSock, 4)}
	web := webFS()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /chat", func(w http.ResponseWriter, r *http.Request) { http.ServeFileFS(w, r, web, "chat.html") })
	mux.Handle("GET /static/", http.FileServerFS(web))
	mux.HandleFunc("GET /i18n/{file}", func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(web, "i18n/"+r.PathValue("file"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"open": true, "languages": []string{"nb", "en"},
			"age_groups": []string{"unknown", "16-18"}, "emergency_numbers": []any{}, "entry_points": fc.others})
	})
	accept := func(to chan *fakeSock) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			s := &fakeSock{t: t, conn: conn, query: r.URL.Query(), frames: make(chan map[string]any, 32),
				beats: r.URL.Query().Get("resume") == "1" || strings.HasSuffix(r.URL.Path, "/resume"), done: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				tick := time.NewTicker(time.Second)
				defer tick.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-tick.C:
						if s.beating() {
							_ = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"beat"}`))
						}
					}
				}
			}()
			to <- s
			defer close(s.done)
			for {
				_, b, err := conn.Read(ctx)
				if err != nil {
					return
				}
				var f map[string]any
				if json.Unmarshal(b, &f) == nil {
					s.frames <- f
				}
			}
		}
	}
	mux.HandleFunc("GET /v1/chat", accept(fc.chats))
	mux.HandleFunc("GET /v1/chat/resume", accept(fc.resumes))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	fc.url = srv.URL
	return fc
}

func (s *fakeSock) beating() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.beats }

// silence stops the beats and every answer without closing: a centre cut
// off, or dead without its kernel closing the connection.
func (s *fakeSock) silence() { s.mu.Lock(); s.beats = false; s.mu.Unlock() }

func (s *fakeSock) send(f map[string]any) {
	s.t.Helper()
	b, _ := json.Marshal(f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.conn.Write(ctx, websocket.MessageText, b); err != nil {
		s.t.Fatalf("fake centre sending %s: %v", b, err)
	}
}

// await returns the next frame from the page, failing on one of another
// type (typing frames aside).
func (s *fakeSock) await(typ string) map[string]any {
	s.t.Helper()
	select {
	case f := <-s.frames:
		if f["type"] == "typing" && typ != "typing" {
			return s.await(typ)
		}
		if f["type"] != typ {
			s.t.Fatalf("the page sent %v, want a %s frame", f, typ)
		}
		return f
	case <-time.After(20 * time.Second):
		s.t.Fatalf("the page sent no %s frame", typ)
	}
	return nil
}

func awaitSock(t *testing.T, ch chan *fakeSock, what string) *fakeSock {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(20 * time.Second):
		t.Fatalf("the page never opened %s", what)
	}
	return nil
}

// fakeChatStarted opens the page at a, starts the chat and answers it as
// connected with connected's extra fields; the page's socket is returned.
func fakeChatStarted(t *testing.T, a *fakeCentre, connected map[string]any) (context.Context, *fakeSock) {
	t.Helper()
	ctx := vpOpenChat(t, newBrowser(t), a.url)
	vpRun(t, ctx, "choose nb", chromedp.SetValue("#lang", "nb", chromedp.ByID))
	vpEval(t, ctx, `window.__phases = []; new MutationObserver(function () {
		var p = document.body.getAttribute('data-phase'); if (window.__phases[window.__phases.length - 1] !== p) window.__phases.push(p);
	}).observe(document.body, { attributes: true }); window.__samePage = 'yes'; true`, nil)
	vpRun(t, ctx, "start", chromedp.Click("#start", chromedp.ByID))
	s := awaitSock(t, a.chats, "the chat socket")
	if s.query.Get("resume") != "1" {
		t.Errorf("the chat socket's query %v lacks resume=1", s.query)
	}
	s.send(map[string]any{"type": "queued", "position": 1, "wait": "free_now"})
	f := map[string]any{"type": "connected", "alias": "Ada"}
	for k, v := range connected {
		f[k] = v
	}
	s.send(f)
	vpWaitPhase(t, ctx, "connected")
	return ctx, s
}

func visitorWrites(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	vpRun(t, ctx, "write "+text, chromedp.SendKeys("#message", text, chromedp.ByID), chromedp.Click("#send", chromedp.ByID))
}

func pageShows(t *testing.T, ctx context.Context, sel, text string) {
	t.Helper()
	vpWait(t, ctx, sel+" "+text, `[...document.querySelectorAll(`+vpQuote(sel)+`)].some(m => m.textContent.includes(`+vpQuote(text)+`))`)
}

// An overflowed conversation whose entry centre goes silent (no beats, no
// close) resumes at the volunteer's centre: the page sends the secret and
// how many volunteer messages it has seen, shows the ones after, re-sends
// its undelivered message with the same id (not the delivered one), and
// keeps the transcript and the page.
func TestChatPageResumesAtTheVolunteersCentre(t *testing.T) {
	a, b := newFakeCentre(t), newFakeCentre(t)
	a.others = []string{b.url}
	secret := strings.Repeat("s", 43)
	ctx, s := fakeChatStarted(t, a, map[string]any{"resume": map[string]any{"url": b.url, "secret": secret}})

	s.send(map[string]any{"type": "message", "id": "v1", "text": "Hello, I am Ada."})
	pageShows(t, ctx, "#messages .msg.volunteer", "Hello, I am Ada.")
	visitorWrites(t, ctx, "first, delivered")
	m1 := s.await("message")
	s.send(map[string]any{"type": "delivered", "id": m1["id"]})
	visitorWrites(t, ctx, "second, never delivered")
	m2 := s.await("message")

	s.silence()
	r := awaitSock(t, b.resumes, "the resume socket at the volunteer's centre")
	f := r.await("resume")
	if f["secret"] != secret || f["received"] != float64(1) {
		t.Fatalf("resume frame %v, want the secret and received 1", f)
	}
	vpWait(t, ctx, "the reconnecting status", `document.body.getAttribute('data-phase') === 'reconnecting' || window.__phases.indexOf('reconnecting') >= 0`)
	r.send(map[string]any{"type": "resumed", "alias": "Ada"})
	r.send(map[string]any{"type": "message", "id": "v2", "text": "Are you still there?"})
	again := r.await("message")
	if again["id"] != m2["id"] || again["text"] != "second, never delivered" {
		t.Errorf("re-sent %v, want id %v with the same text", again, m2["id"])
	}
	r.send(map[string]any{"type": "delivered", "id": again["id"]})
	pageShows(t, ctx, "#messages .msg.volunteer", "Are you still there?")
	visitorWrites(t, ctx, "yes, after the gap")
	if m3 := r.await("message"); m3["text"] != "yes, after the gap" {
		t.Errorf("after the resume the page sent %v", m3)
	}

	var got struct {
		Same   string
		Texts  []string
		Phases []string
		Status string
	}
	vpEval(t, ctx, `({Same: window.__samePage, Texts: [...document.querySelectorAll('#messages .msg .text')].map(e => e.textContent),
		Phases: window.__phases, Status: document.getElementById('status').textContent})`, &got)
	if got.Same != "yes" {
		t.Error("the page was reloaded")
	}
	want := []string{"Hello, I am Ada.", "first, delivered", "second, never delivered", "Are you still there?", "yes, after the gap"}
	if strings.Join(got.Texts, "|") != strings.Join(want, "|") {
		t.Errorf("transcript %q, want %q", got.Texts, want)
	}
	if !strings.Contains(got.Status, "Ada") || strings.Join(got.Phases, ",") != "connecting,queued,connected,reconnecting,connected" {
		t.Errorf("status %q, phases %v", got.Status, got.Phases)
	}
}

// A resumed conversation that the volunteer's centre then closes (its
// volunteer's console went, or it shut down) starts anew at a third
// centre, keeping the transcript: the visitor is not left with "closed".
func TestChatPageStartsAnewWhenTheResumedCentreCloses(t *testing.T) {
	a, b, c := newFakeCentre(t), newFakeCentre(t), newFakeCentre(t)
	a.others = []string{b.url, c.url}
	ctx, s := fakeChatStarted(t, a, map[string]any{"resume": map[string]any{"url": b.url, "secret": strings.Repeat("c", 43)}})
	s.send(map[string]any{"type": "message", "id": "v1", "text": "Hello from Ada."})
	pageShows(t, ctx, "#messages .msg.volunteer", "Hello from Ada.")
	_ = s.conn.CloseNow()
	r := awaitSock(t, b.resumes, "the resume socket")
	r.await("resume")
	r.send(map[string]any{"type": "resumed", "alias": "Ada"})
	vpWaitPhase(t, ctx, "connected")
	r.send(map[string]any{"type": "closed", "reason": "the volunteer's console closed"})
	n := awaitSock(t, c.chats, "a new chat at the third centre")
	if n.query.Get("resume") != "1" {
		t.Errorf("the new chat's query %v lacks resume=1", n.query)
	}
	n.send(map[string]any{"type": "queued", "position": 1, "wait": "free_now"})
	n.send(map[string]any{"type": "connected", "alias": "Bo"})
	n.send(map[string]any{"type": "message", "id": "v1", "text": "Hi, I am Bo."})
	pageShows(t, ctx, "#messages .msg.volunteer", "Hi, I am Bo.")
	pageShows(t, ctx, "#messages .msg.volunteer", "Hello from Ada.")
	var phases []string
	vpEval(t, ctx, `window.__phases`, &phases)
	if slices.Contains(phases, "ended") {
		t.Errorf("the page went through %v: it ended instead of starting anew", phases)
	}
}

// A move frame (the entry centre drains) resumes at once, without an error.
func TestChatPageMovesOnMove(t *testing.T) {
	a, b := newFakeCentre(t), newFakeCentre(t)
	a.others = []string{b.url}
	ctx, s := fakeChatStarted(t, a, map[string]any{"resume": map[string]any{"url": b.url, "secret": strings.Repeat("m", 43)}})
	s.send(map[string]any{"type": "move"})
	r := awaitSock(t, b.resumes, "the resume socket after move")
	if f := r.await("resume"); f["received"] != float64(0) {
		t.Errorf("resume frame %v, want received 0", f)
	}
	r.send(map[string]any{"type": "resumed", "alias": "Ada"})
	r.send(map[string]any{"type": "message", "id": "v1", "text": "Moved along."})
	pageShows(t, ctx, "#messages .msg.volunteer", "Moved along.")
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Error("the page kept the draining centre's socket open")
	}
}

// A local conversation whose centre dies starts anew at another centre
// with the ticket, and says so; a refused resume does the same.
func TestChatPageStartsAnewWithItsTicket(t *testing.T) {
	for _, variant := range []string{"local", "refused"} {
		t.Run(variant, func(t *testing.T) {
			a, b := newFakeCentre(t), newFakeCentre(t)
			a.others = []string{b.url}
			extra := map[string]any{"ticket": "tkt-" + variant}
			if variant == "refused" {
				extra["resume"] = map[string]any{"url": b.url, "secret": strings.Repeat("r", 43)}
			}
			ctx, s := fakeChatStarted(t, a, extra)
			s.send(map[string]any{"type": "message", "id": "v1", "text": "Hi from A."})
			pageShows(t, ctx, "#messages .msg.volunteer", "Hi from A.")
			_ = s.conn.CloseNow() // dies: no ended, no closed
			if variant == "refused" {
				r := awaitSock(t, b.resumes, "the resume socket")
				r.await("resume")
				r.send(map[string]any{"type": "error", "code": "resume_refused", "error": "This conversation cannot be continued here."})
				_ = r.conn.Close(websocket.StatusPolicyViolation, "")
			}
			n := awaitSock(t, b.chats, "a new chat at the other centre")
			if n.query.Get("ticket") != "tkt-"+variant || n.query.Get("resume") != "1" {
				t.Errorf("the new chat's query %v, want ticket=tkt-%s and resume=1", n.query, variant)
			}
			vpWait(t, ctx, "the honest note", `!!document.querySelector('#messages .msg.system [data-i18n="status_centre_offline_first"]')`)
			n.send(map[string]any{"type": "queued", "position": 1, "wait": "free_now"})
			n.send(map[string]any{"type": "connected", "alias": "Bo"})
			n.send(map[string]any{"type": "message", "id": "v1", "text": "Hi, I am Bo."})
			pageShows(t, ctx, "#messages .msg.volunteer", "Hi, I am Bo.")
			pageShows(t, ctx, "#messages .msg.volunteer", "Hi from A.")
		})
	}
}

// Told to move, with a resume the volunteer's centre refuses: the page
// stays at its centre (a stay frame on the socket it kept), which requeues
// it at the front, and no new chat starts.
func TestChatPageStaysWhenMoveCannotResume(t *testing.T) {
	a, b := newFakeCentre(t), newFakeCentre(t)
	a.others = []string{b.url}
	ctx, s := fakeChatStarted(t, a, map[string]any{"resume": map[string]any{"url": b.url, "secret": strings.Repeat("x", 43)}})
	s.send(map[string]any{"type": "move"})
	r := awaitSock(t, b.resumes, "the resume socket after move")
	r.await("resume")
	r.send(map[string]any{"type": "error", "code": "resume_refused", "error": "This conversation cannot be continued here."})
	_ = r.conn.Close(websocket.StatusPolicyViolation, "")
	s.await("stay")
	s.send(map[string]any{"type": "requeued"})
	vpWaitPhase(t, ctx, "queued")
	select {
	case n := <-b.chats:
		t.Errorf("a new chat started at the other centre (%v)", n.query)
	case <-a.chats:
		t.Error("a new chat started at the page's centre")
	default:
	}
	s.send(map[string]any{"type": "connected", "alias": "Cy"})
	s.send(map[string]any{"type": "message", "id": "v1", "text": "Cy here."})
	pageShows(t, ctx, "#messages .msg.volunteer", "Cy here.")
}
