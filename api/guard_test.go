package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"

	"github.com/helpmesh/helpmesh/switchboard"
)

// frameLog reads a socket in the background, as a normal client does, and
// keeps every frame it read. It never falls behind: the point is to show
// that a console closes only when its own reader is slow.
type frameLog struct {
	t        *testing.T
	p        *sockPeer
	mu       sync.Mutex
	frames   []wireFrame
	err      error
	more     chan struct{}
	answered map[string]bool // contacts the test has answered (see floodScenario)
}

func readAll(t *testing.T, p *sockPeer) *frameLog {
	l := &frameLog{t: t, p: p, more: make(chan struct{}, 1), answered: map[string]bool{}}
	go func() {
		for {
			// No deadline: a read that times out would close the socket.
			typ, b, err := p.conn.Read(context.Background())
			var f wireFrame
			if err == nil {
				if typ != websocket.MessageText {
					err = fmt.Errorf("a %v frame", typ)
				} else if err = json.Unmarshal(b, &f); err == nil {
					f.raw = string(b)
				}
			}
			l.mu.Lock()
			if err != nil {
				l.err = err
			} else {
				l.frames = append(l.frames, f)
			}
			l.mu.Unlock()
			select {
			case l.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return l
}

// waitFor waits until a frame read so far satisfies ok, or fails.
func (l *frameLog) waitFor(what string, ok func(wireFrame) bool) wireFrame {
	l.t.Helper()
	deadline := time.After(15 * time.Second)
	seen := 0
	for {
		l.mu.Lock()
		for ; seen < len(l.frames); seen++ {
			if ok(l.frames[seen]) {
				f := l.frames[seen]
				l.mu.Unlock()
				return f
			}
		}
		err := l.err
		l.mu.Unlock()
		if err != nil {
			l.t.Fatalf("%s: socket ended while waiting for %s: %v", l.p.name, what, err)
		}
		select {
		case <-l.more:
		case <-deadline:
			l.t.Fatalf("%s: no %s in 15 s", l.p.name, what)
		}
	}
}

func (l *frameLog) count(ok func(wireFrame) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, f := range l.frames {
		if ok(f) {
			n++
		}
	}
	return n
}

func (l *frameLog) closed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// floodResult is what a flooding visitor saw.
type floodResult struct {
	sent, slowDowns, flooding int
	closeCode                 websocket.StatusCode
	closeReason               string
}

// flood sends n messages on vis as fast as the socket takes them, while
// reading what comes back, until the server closes the socket.
func flood(t *testing.T, vis *sockPeer, n int) floodResult {
	t.Helper()
	var res floodResult
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := vis.conn.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"message","id":"f%d","text":"flood %d"}`, i, i))
			cancel()
			if err != nil {
				return
			}
			res.sent++
		}
	}()
	for {
		f, err := vis.next()
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("flooder: socket ended without a close frame: %v", err)
			}
			res.closeCode, res.closeReason = ce.Code, ce.Reason
			break
		}
		if f.Type == "error" {
			switch f.Code {
			case "slow_down":
				if f.RetryAfterSeconds == nil || *f.RetryAfterSeconds < 1 || f.ID == "" {
					t.Fatalf("slow_down without retry_after_seconds or id: %s", f.raw)
				}
				res.slowDowns++
			case "flooding":
				res.flooding++
			default:
				t.Fatalf("flooder got %s", f.raw)
			}
		}
	}
	wg.Wait()
	return res
}

// floodScenario: one volunteer in two conversations; one visitor floods.
// The flooder is slowed, then cut off; the volunteer's console stays open
// and the other conversation carries on. entry is the visitors' centre,
// answer the volunteer's (the same for a local chat).
func floodScenario(t *testing.T, entry, answer *chatRig, con *sockPeer, fromCentre string) {
	t.Helper()
	console := readAll(t, con)
	console.waitFor("policy", func(f wireFrame) bool { return f.Type == "policy" })
	con.send(obj{"type": "available", "channel": "chat", "on": true})

	answerOne := func(name string) (*sockPeer, string) {
		vis := entry.visitor(name, "nb")
		offer := console.waitFor("an offer for "+name, func(f wireFrame) bool { return f.Type == "offer" && f.Contact != "" && !console.answered[f.Contact] })
		if got := deref(offer.FromCentre); got != fromCentre {
			t.Fatalf("offer %s: from_centre %q, want %q", offer.raw, got, fromCentre)
		}
		con.send(obj{"type": "accept", "contact": offer.Contact})
		vis.expect("connected")
		console.waitFor("connected "+name, func(f wireFrame) bool { return f.Type == "connected" && f.Contact == offer.Contact })
		console.answered[offer.Contact] = true
		return vis, offer.Contact
	}
	flooder, floodContact := answerOne("flooder")
	other, otherContact := answerOne("other visitor")

	res := flood(t, flooder, 1000)
	t.Logf("flood: %d messages written, %d slow_down, %d flooding, closed %v %q", res.sent, res.slowDowns, res.flooding, res.closeCode, res.closeReason)
	if res.slowDowns == 0 || res.flooding != 1 || res.closeCode != websocket.StatusPolicyViolation || !strings.Contains(res.closeReason, "too many messages") {
		t.Fatalf("flooder: %+v; want slow_down first, then one flooding error and a 1008 close", res)
	}

	// The console heard the flooder leave, and at most the pace's burst of
	// their messages (plus what refilled during the flood).
	console.waitFor("the flooder's conversation ending", func(f wireFrame) bool {
		return f.Type == "ended" && f.Contact == floodContact && f.By == "visitor"
	})
	got := console.count(func(f wireFrame) bool { return f.Type == "message" && f.Contact == floodContact })
	if got < 1 || got > 15 {
		t.Fatalf("the console received %d of the flooder's messages; want the burst (10) or a few more", got)
	}

	// The other conversation carries on, both ways, on the same console.
	other.send(obj{"type": "message", "id": "o1", "text": "are you still there?"})
	console.waitFor("the other visitor's message", func(f wireFrame) bool {
		return f.Type == "message" && f.Contact == otherContact && f.ID == "o1"
	})
	other.expect("delivered")
	con.send(obj{"type": "message", "contact": otherContact, "id": "v1", "text": "yes, I am here"})
	if m := other.expect("message"); m.ID != "v1" {
		t.Fatalf("other visitor got %s", m.raw)
	}
	con.send(obj{"type": "end", "contact": floodContact, "topics": []string{"other"}, "age_group": "unknown"})
	console.waitFor("the flooder's contact categorised", func(f wireFrame) bool { return f.Type == "categorised" && f.Contact == floodContact })
	if err := console.closed(); err != nil {
		t.Fatalf("the console closed: %v", err)
	}
	if n := console.count(func(f wireFrame) bool { return f.Type == "requeued" || f.Type == "lost" || f.Type == "closed" }); n != 0 {
		t.Fatalf("the console saw %d lost/closed frames", n)
	}
	if v := refusalCount(t, entry.srv, whoVisitor, refusedFlooding); v != 1 {
		t.Fatalf("helmesh_refusals_total{reason=flooding} = %v at the entry centre, want 1", v)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func TestVisitorFloodLocal(t *testing.T) {
	rig := newChatRig(t, nil)
	cookie := rig.signUp(testVolunteer("v-kari", "oslo", "Kari", 2), "correct horse battery")
	con := rig.mustDial("console", "/v1/console", dialOpts{cookie: cookie})
	floodScenario(t, rig, rig, con, "")
}

func TestVisitorFloodOverTheRelay(t *testing.T) {
	fed := startPageFederation(t, 2)
	entry := &chatRig{t: t, url: fed[0].url, token: fed[0].token, srv: fed[0].srv}
	answer := &chatRig{t: t, url: fed[1].url, token: fed[1].token, srv: fed[1].srv}
	cookie := answer.signUp(testVolunteer("v-ola", "c2", "Ola", 2), "correct horse battery")
	con := answer.mustDial("console", "/v1/console", dialOpts{cookie: cookie})
	// c1 has nobody for chat, so its contacts overflow to c2 at once, once
	// c1's gossip view shows c2's free volunteer: floodScenario waits for
	// the offer.
	floodScenario(t, entry, answer, con, "c1")
}

// refusalCount reads helpmesh_refusals_total{who,reason} on srv.
func refusalCount(t *testing.T, srv *Server, who, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := srv.refusals.vec.WithLabelValues(who, reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// 40 addresses try 10 chats each and hold them open: each address holds
// at most the cap, a real visitor from a new address is queued no further
// back than the cap allows, and a volunteer working through the queue
// reaches them.
func TestQueueFloodFromManyAddresses(t *testing.T) {
	const addresses, tries = 40, 10
	rig := newChatRig(t, func(c *Config, _ *Server) { c.TrustedProxies = loopbackProxies })
	capPer := defaultMaxChatsPerAddress
	held := 0
	for a := range addresses {
		xff := fmt.Sprintf("203.0.113.%d", a+1)
		ok := 0
		for range tries {
			conn, resp, err := rig.dial("/v1/chat?lang=nb", dialOpts{xff: xff})
			if err != nil {
				if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
					t.Fatalf("address %s: %v (%v), want 429", xff, err, resp)
				}
				continue
			}
			t.Cleanup(func() { _ = conn.CloseNow() })
			ok++
		}
		if ok != capPer {
			t.Fatalf("address %s holds %d chats, want the cap %d", xff, ok, capPer)
		}
		held += ok
	}
	if v := refusalCount(t, rig.srv, whoVisitor, refusedChatsOpen); v != float64(addresses*(tries-capPer)) {
		t.Fatalf("chats_open refusals %v, want %d", v, addresses*(tries-capPer))
	}
	real := rig.mustDial("real visitor", "/v1/chat?lang=nb", dialOpts{xff: "198.51.100.20"})
	q := real.expect("queued")
	real.noise["queued"] = true // its place, as the queue moves
	if *q.Position > held+1 {
		t.Fatalf("real visitor at position %d, want at most %d", *q.Position, held+1)
	}
	t.Logf("%d chats held by %d addresses; the real visitor is at position %d", held, addresses, *q.Position)

	// A volunteer answers the queue in order, ending each flood chat at
	// once, and reaches the real visitor.
	cookie := rig.signUp(testVolunteer("v-kari", "oslo", "Kari", 1), "correct horse battery")
	con := rig.console("console", cookie)
	con.noise["policy"], con.noise["categorised"], con.noise["offer_withdrawn"] = true, true, true
	con.send(obj{"type": "available", "channel": "chat", "on": true})
	start := time.Now()
	for i := 0; ; i++ {
		if i > held {
			t.Fatalf("the volunteer answered %d contacts without reaching the real visitor", i)
		}
		offer := con.expect("offer")
		con.send(obj{"type": "accept", "contact": offer.Contact})
		con.expect("connected")
		if i == held {
			if c := real.expect("connected"); c.Alias != "Kari" {
				t.Fatalf("real visitor connected to %q", c.Alias)
			}
			t.Logf("the real visitor was answered after %d flood chats, %v", i, time.Since(start).Round(time.Millisecond))
			return
		}
		con.send(obj{"type": "end", "contact": offer.Contact, "topics": []string{"other"}, "age_group": "unknown"})
	}
}

// A full queue is answered honestly, with the emergency numbers, and a
// close that tells the page to try again later.
func TestQueueFullIsAnsweredWithEmergencyNumbers(t *testing.T) {
	rig := newChatRig(t, func(c *Config, _ *Server) { c.TrustedProxies = loopbackProxies })
	old := rig.centre.sb
	rig.centre.sb = switchboard.New(switchboard.Config{Centre: "oslo", MaxQueue: 2,
		Languages: func() []string { return rig.centre.Roster().Policy.Languages }})
	old.Close()
	for i := range 2 {
		rig.mustDial("queued", "/v1/chat?lang=nb", dialOpts{xff: fmt.Sprintf("203.0.113.%d", i+1)}).expect("queued")
	}
	late := rig.mustDial("late", "/v1/chat?lang=nb", dialOpts{xff: "198.51.100.1"})
	f := late.expectError("queue_full")
	if len(f.EmergencyNumbers) == 0 || f.EmergencyNumbers[0]["number"] == "" {
		t.Fatalf("queue_full without emergency numbers: %s", f.raw)
	}
	if reason := late.expectClose(websocket.StatusTryAgainLater); reason == "" {
		t.Fatal("no close reason")
	}
	if v := refusalCount(t, rig.srv, whoVisitor, refusedQueueFull); v != 1 {
		t.Fatalf("queue_full refusals %v, want 1", v)
	}
}

// Refused handshakes (a foreign origin, not a WebSocket) spend nothing:
// the same address still starts its full allowance afterwards.
func TestRefusedHandshakeSpendsNoChatStart(t *testing.T) {
	rig := newChatRig(t, func(c *Config, _ *Server) {
		c.TrustedProxies, c.ChatStartsPerMinute, c.ChatStartBurst, c.MaxChatsPerAddress = loopbackProxies, 5, 5, 10
	})
	const school = "203.0.113.50"
	for range 20 {
		if _, resp, err := rig.dial("/v1/chat?lang=nb", dialOpts{xff: school, origin: "https://evil.example"}); err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("cross-origin start: %v, want 403", err)
		}
	}
	rep := rig.call(http.MethodGet, "/v1/chat?lang=nb", nil, http.Header{"X-Forwarded-For": {school}})
	wantError(t, "a plain GET", rep, http.StatusUpgradeRequired, "bad_handshake")
	for i := range 5 {
		rig.mustDial(fmt.Sprintf("visitor %d", i), "/v1/chat?lang=nb", dialOpts{xff: school}).expect("queued")
	}
	if v := refusalCount(t, rig.srv, whoVisitor, refusedHandshake); v != 21 {
		t.Fatalf("bad_handshake refusals %v, want 21", v)
	}
}

// Only the chat may be framed, by the embedding origins; staff pages never.
func TestStaffPagesAreNeverFramed(t *testing.T) {
	rig := newChatRig(t, func(c *Config, _ *Server) { c.AllowedOrigins = []string{"https://www.partner.example"} })
	for path, want := range map[string]string{
		"/chat":      "frame-ancestors 'self' https://www.partner.example",
		"/widget.js": "frame-ancestors 'self' https://www.partner.example",
		"/console":   "frame-ancestors 'none'",
		"/overview":  "frame-ancestors 'none'",
		"/enrol":     "frame-ancestors 'none'",
	} {
		rep := rig.call(http.MethodGet, path, nil, nil)
		if rep.status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, rep.status)
		}
		if csp := rep.header.Get("Content-Security-Policy"); !strings.HasSuffix(csp, want) {
			t.Fatalf("GET %s: CSP %q, want it to end with %q", path, csp, want)
		}
	}
}

// Directories are never listed; files are served.
func TestNoDirectoryListings(t *testing.T) {
	rig := newChatRig(t, nil)
	for _, path := range []string{"/static/", "/i18n/", "/static/.", "/i18n/nope.json", "/static/%2e%2e/chat.html"} {
		rep := rig.call(http.MethodGet, path, nil, nil)
		if strings.Contains(string(rep.body), "<pre>") || strings.Contains(string(rep.body), `href="chat.js"`) {
			t.Fatalf("GET %s listed a directory: %s", path, rep.body)
		}
		if rep.status != http.StatusNotFound {
			t.Fatalf("GET %s: %d %q, want 404", path, rep.status, rep.body[:min(len(rep.body), 80)])
		}
	}
	for _, path := range []string{"/static/chat.js", "/i18n/nb.json"} {
		if rep := rig.call(http.MethodGet, path, nil, nil); rep.status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, rep.status)
		}
	}
}

// One address guessing resume secrets (a stranger hammering
// /v1/chat/resume) gets the same one refusal for each guess until its own
// start allowance is spent, then 429 before any upgrade; meanwhile a
// conversation from another address carries every message both ways, and
// another address can still start a chat.
func TestResumeGuessFloodCostsOthersNothing(t *testing.T) {
	rig := newChatRig(t, func(c *Config, _ *Server) {
		c.TrustedProxies, c.ChatStartsPerMinute, c.ChatStartBurst, c.MaxChatsPerAddress = loopbackProxies, 5, 5, 10
	})
	con := availableConsole(t, rig)
	vis := rig.mustDial("visitor", "/v1/chat?channel=chat&lang=nb", dialOpts{xff: "198.51.100.7"})
	contact := connect(t, vis, con, "Kari")

	const guesser = "203.0.113.66"
	refused, limited := 0, 0
	for i := range 40 {
		conn, resp, err := rig.dial("/v1/chat/resume", dialOpts{xff: guesser})
		if err != nil {
			if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("guess %d: %v, want a refusal frame or 429", i, err)
			}
			limited++
			continue
		}
		g := &sockPeer{t: t, name: fmt.Sprintf("guess %d", i), conn: conn, noise: map[string]bool{"beat": true}}
		g.send(obj{"type": "resume", "secret": fmt.Sprintf("%043d", i), "received": 0})
		if f := g.expectError("resume_refused"); f.Error != switchboard.ErrResumeRefused.Error() {
			t.Fatalf("guess %d: %s, want the one refusal", i, f.raw)
		}
		refused++
		_ = conn.CloseNow()
		// The conversation goes on between guesses.
		vis.send(obj{"type": "message", "id": fmt.Sprintf("v%d", i), "text": "still here"})
		if m := con.expect("message"); m.Text != "still here" {
			t.Fatalf("console got %s", m.raw)
		}
		vis.expect("delivered")
		if err := con.conn.Write(context.Background(), websocket.MessageText, []byte(fmt.Sprintf(`{"type":"message","contact":%q,"id":"w%d","text":"I hear you"}`, contact, i))); err != nil {
			t.Fatal(err)
		}
		if m := vis.expect("message"); m.Text != "I hear you" {
			t.Fatalf("visitor got %s", m.raw)
		}
		con.expect("delivered")
	}
	if refused != 5 || limited != 35 {
		t.Fatalf("%d guesses refused by frame, %d by 429; want 5 and 35 (the guesser's own start allowance)", refused, limited)
	}
	if v := refusalCount(t, rig.srv, whoVisitor, refusedResume); v != 5 {
		t.Fatalf("resume refusals counted %v, want 5", v)
	}
	rig.mustDial("another visitor", "/v1/chat?channel=chat&lang=nb", dialOpts{xff: "198.51.100.8"}).expect("queued")
}
