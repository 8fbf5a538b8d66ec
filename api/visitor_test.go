package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/logsink"
	"github.com/helpmesh/helpmesh/node"
	"github.com/helpmesh/helpmesh/switchboard"
)

// deskCentre is a centre for API tests: a real switchboard and an in-memory
// roster that Propose writes to directly.
type deskCentre struct {
	id  string
	dir string
	sb  *switchboard.Switchboard

	mu     sync.Mutex
	roster consensus.Roster
}

func (c *deskCentre) Centre() string                        { return c.id }
func (c *deskCentre) P2PAddrs() []string                    { return nil }
func (c *deskCentre) Ready() error                          { return nil }
func (c *deskCentre) Federation() node.FederationView       { return node.FederationView{Observer: c.id} }
func (c *deskCentre) Switchboard() *switchboard.Switchboard { return c.sb }
func (c *deskCentre) DataDir() string                       { return c.dir }
func (c *deskCentre) Registry() *prometheus.Registry        { return prometheus.NewRegistry() }
func (c *deskCentre) Sign([]byte) ([]byte, error)           { return nil, errors.New("no identity key") }

func (c *deskCentre) Roster() consensus.Roster {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.roster.Clone()
}

func (c *deskCentre) Propose(_ context.Context, cmd consensus.Command) error {
	if err := cmd.Validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch cmd.Op {
	case consensus.OpPutVolunteer:
		if _, ok := c.roster.Centres[cmd.Volunteer.Centre]; !ok {
			return fmt.Errorf("centre %q: %w", cmd.Volunteer.Centre, consensus.ErrUnknownCentre)
		}
		c.roster.Volunteers[cmd.Volunteer.ID] = *cmd.Volunteer
	case consensus.OpRemoveVolunteer:
		if _, ok := c.roster.Volunteers[cmd.ID]; !ok {
			return fmt.Errorf("volunteer %q: %w", cmd.ID, consensus.ErrUnknownVolunteer)
		}
		delete(c.roster.Volunteers, cmd.ID)
	case consensus.OpSetPolicy:
		c.roster.Policy = *cmd.Policy
	default:
		return fmt.Errorf("the test centre does not do %s: %w", cmd.Op, consensus.ErrBadCommand)
	}
	return nil
}

// chatRig is one centre's API on an httptest server.
type chatRig struct {
	t      *testing.T
	centre *deskCentre
	srv    *Server
	hs     *httptest.Server
	url    string
	token  string
	logs   *logsink.Buffer
}

// cheapArgon keeps tests fast; production uses defaultArgon.
var cheapArgon = argonParams{Time: 1, MemoryKiB: 64, Threads: 1, KeyLen: 32}

func newChatRig(t *testing.T, configure func(*Config, *Server)) *chatRig {
	t.Helper()
	return newDeskRig(t, nil, configure)
}

// newDeskRig is newChatRig with the switchboard's configuration open to
// the test too (board may be nil).
func newDeskRig(t *testing.T, board func(*switchboard.Config), configure func(*Config, *Server)) *chatRig {
	t.Helper()
	logs := &logsink.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := &deskCentre{id: "oslo", dir: t.TempDir(), roster: consensus.NewRoster()}
	for _, id := range []string{"oslo", "bergen"} {
		c.roster.Centres[id] = consensus.Centre{ID: id, Name: id}
	}
	sbCfg := switchboard.Config{
		Centre:        "oslo",
		RingTimeout:   time.Minute,
		OverflowAfter: func(string) time.Duration { return time.Hour },
		Languages:     func() []string { return c.Roster().Policy.Languages },
		Topics:        func() []string { return c.Roster().Policy.Topics },
		Logger:        logger,
	}
	if board != nil {
		board(&sbCfg)
	}
	c.sb = switchboard.New(sbCfg)
	cfg := Config{Centre: c, AdminToken: "test-admin-token", Logger: logger, argon: cheapArgon}
	if configure != nil {
		configure(&cfg, nil)
	}
	srv, err := newServer(cfg)
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	if configure != nil {
		configure(&cfg, srv)
	}
	hs := httptest.NewServer(srv.Handler())
	r := &chatRig{t: t, centre: c, srv: srv, hs: hs, url: hs.URL, token: cfg.AdminToken, logs: logs}
	t.Cleanup(func() {
		srv.closeSockets("test over")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.waitSockets(ctx); err != nil {
			t.Errorf("sockets did not close: %v", err)
		}
		hs.Close()
		c.sb.Close()
	})
	return r
}

type httpReply struct {
	status int
	header http.Header
	body   []byte
}

// call sends one request with a JSON body (nil for none).
func (r *chatRig) call(method, path string, body any, header http.Header) httpReply {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				r.t.Fatal(err)
			}
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, r.url+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return httpReply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (r *chatRig) adminHeader() http.Header {
	return http.Header{"Authorization": {"Bearer " + r.token}}
}

// wantError checks a JSON error reply.
func wantError(t *testing.T, what string, rep httpReply, status int, code string) ErrorBody {
	t.Helper()
	if rep.status != status {
		t.Fatalf("%s: status %d, want %d (body %s)", what, rep.status, status, rep.body)
	}
	var e ErrorBody
	dec := json.NewDecoder(bytes.NewReader(rep.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("%s: body %q is not an error body: %v", what, rep.body, err)
	}
	if e.Code != code || strings.TrimSpace(e.Error) == "" {
		t.Fatalf("%s: error %+v, want code %q and a message", what, e, code)
	}
	return e
}

func testVolunteer(id, centre, alias string, capacity int) consensus.Volunteer {
	return consensus.Volunteer{ID: id, Centre: centre, Alias: alias, Channels: []string{"chat"},
		Languages: []string{"nb", "en"}, Capacity: capacity, Role: "volunteer"}
}

// addVolunteer writes v through the admin API and returns the answer.
func (r *chatRig) addVolunteer(v consensus.Volunteer) VolunteerWritten {
	r.t.Helper()
	rep := r.call(http.MethodPost, "/v1/volunteers", v, r.adminHeader())
	if rep.status != http.StatusOK {
		r.t.Fatalf("POST /v1/volunteers: %d %s", rep.status, rep.body)
	}
	var out VolunteerWritten
	dec := json.NewDecoder(bytes.NewReader(rep.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		r.t.Fatalf("POST /v1/volunteers answer %s: %v", rep.body, err)
	}
	if !reflect.DeepEqual(out.Volunteer, v) {
		r.t.Fatalf("POST /v1/volunteers answered %+v, want %+v", out.Volunteer, v)
	}
	return out
}

func (r *chatRig) enrol(id, code, password string) httpReply {
	r.t.Helper()
	return r.call(http.MethodPost, "/v1/volunteer/enrol", EnrolRequest{Volunteer: id, Code: code, Password: password}, nil)
}

func (r *chatRig) login(id, password string) httpReply {
	r.t.Helper()
	return r.call(http.MethodPost, "/v1/volunteer/login", LoginRequest{Volunteer: id, Password: password}, nil)
}

func sessionCookie(t *testing.T, rep httpReply) *http.Cookie {
	t.Helper()
	if rep.status != http.StatusNoContent {
		t.Fatalf("login: %d %s", rep.status, rep.body)
	}
	for _, c := range (&http.Response{Header: rep.header}).Cookies() {
		if c.Name == SessionCookie {
			return c
		}
	}
	t.Fatalf("login set no %s cookie: %v", SessionCookie, rep.header)
	return nil
}

// signUp enrols v and logs them in.
func (r *chatRig) signUp(v consensus.Volunteer, password string) *http.Cookie {
	r.t.Helper()
	w := r.addVolunteer(v)
	if rep := r.enrol(v.ID, w.EnrolmentCode, password); rep.status != http.StatusNoContent {
		r.t.Fatalf("enrol %s: %d %s", v.ID, rep.status, rep.body)
	}
	return sessionCookie(r.t, r.login(v.ID, password))
}

// wireFrame is every field either socket sends; decoding is strict, so a
// field the protocol does not name fails the test.
type wireFrame struct {
	Type              string          `json:"type"`
	Position          *int            `json:"position"`
	Wait              string          `json:"wait"`
	WaitMinutes       *int            `json:"wait_minutes"`
	Alias             string          `json:"alias"`
	ID                string          `json:"id"`
	Text              string          `json:"text"`
	By                string          `json:"by"`
	Undelivered       *int            `json:"undelivered"`
	Code              string          `json:"code"`
	Error             string          `json:"error"`
	Reason            string          `json:"reason"`
	Contact           string          `json:"contact"`
	Channel           string          `json:"channel"`
	Language          string          `json:"language"`
	FromCentre        *string         `json:"from_centre"`
	RingSeconds       *int            `json:"ring_seconds"`
	Channels          map[string]bool `json:"channels"`
	Active            *int            `json:"active"`
	Capacity          *int            `json:"capacity"`
	Topics            []string        `json:"topics"`
	AgeGroups         []string        `json:"age_groups"`
	RetryAfterSeconds *int            `json:"retry_after_seconds"`
	EmergencyNumbers  []obj           `json:"emergency_numbers"`
	Phone             *string         `json:"phone"`
	SDP               string          `json:"sdp"`
	ICEServers        []ICEServer     `json:"ice_servers"`
	AudioProcessing   *bool           `json:"audio_processing"`
	// Transfer (issue 16): the policy frame's choices, a transfer offer's
	// mark and note, transfer_accepted's warm.
	Centres   []obj    `json:"centres"`
	Languages []string `json:"languages"`
	Transfer  *bool    `json:"transfer"`
	Note      string   `json:"note"`
	Warm      *bool    `json:"warm"`

	raw string
}

// sockPeer is a test's end of a socket.
type sockPeer struct {
	t     *testing.T
	name  string
	conn  *websocket.Conn
	noise map[string]bool // frame types skipped unless expected
}

type dialOpts struct {
	origin string
	cookie *http.Cookie
	xff    string
}

func (r *chatRig) dial(path string, o dialOpts) (*websocket.Conn, *http.Response, error) {
	h := http.Header{}
	if o.origin != "" {
		h.Set("Origin", o.origin)
	}
	if o.cookie != nil {
		h.Set("Cookie", o.cookie.Name+"="+o.cookie.Value)
	}
	if o.xff != "" {
		h.Set("X-Forwarded-For", o.xff)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return websocket.Dial(ctx, "ws"+strings.TrimPrefix(r.url, "http")+path, &websocket.DialOptions{HTTPHeader: h})
}

func (r *chatRig) mustDial(name, path string, o dialOpts, noise ...string) *sockPeer {
	r.t.Helper()
	conn, resp, err := r.dial(path, o)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		r.t.Fatalf("%s: dial %s: %v (HTTP %d)", name, path, err, status)
	}
	p := &sockPeer{t: r.t, name: name, conn: conn, noise: map[string]bool{}}
	for _, n := range noise {
		p.noise[n] = true
	}
	r.t.Cleanup(func() { _ = conn.CloseNow() })
	return p
}

func (r *chatRig) visitor(name, lang string) *sockPeer {
	return r.mustDial(name, "/v1/chat?channel=chat&lang="+lang, dialOpts{}, "queued")
}

func (r *chatRig) console(name string, cookie *http.Cookie) *sockPeer {
	return r.mustDial(name, "/v1/console", dialOpts{cookie: cookie}, "availability")
}

func (p *sockPeer) sendRaw(s string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.conn.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		p.t.Fatalf("%s: write: %v", p.name, err)
	}
}

func (p *sockPeer) send(v any) {
	p.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		p.t.Fatal(err)
	}
	p.sendRaw(string(b))
}

// next reads one frame, waiting at most 10 s.
func (p *sockPeer) next() (wireFrame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	typ, b, err := p.conn.Read(ctx)
	if err != nil {
		return wireFrame{}, err
	}
	if typ != websocket.MessageText {
		return wireFrame{}, fmt.Errorf("a %v frame", typ)
	}
	var f wireFrame
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return wireFrame{}, fmt.Errorf("frame %s: %w", b, err)
	}
	f.raw = string(b)
	return f, nil
}

// expect reads until a frame of type typ, skipping only the peer's noise.
func (p *sockPeer) expect(typ string) wireFrame {
	p.t.Helper()
	for {
		f, err := p.next()
		if err != nil {
			p.t.Fatalf("%s: waiting for %q: %v", p.name, typ, err)
		}
		if f.Type == typ {
			return f
		}
		if !p.noise[f.Type] {
			p.t.Fatalf("%s: got %s while waiting for %q", p.name, f.raw, typ)
		}
	}
}

// expectError reads the next error frame and checks its code.
func (p *sockPeer) expectError(code string) wireFrame {
	p.t.Helper()
	f := p.expect("error")
	if f.Code != code || f.Error == "" {
		p.t.Fatalf("%s: error %s, want code %q", p.name, f.raw, code)
	}
	return f
}

// expectClose reads until the socket closes and checks the close status.
func (p *sockPeer) expectClose(code websocket.StatusCode) string {
	p.t.Helper()
	for {
		f, err := p.next()
		if err == nil {
			if !p.noise[f.Type] {
				p.t.Fatalf("%s: got %s while waiting for the close", p.name, f.raw)
			}
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			p.t.Fatalf("%s: closed without a close frame: %v", p.name, err)
		}
		if ce.Code != code {
			p.t.Fatalf("%s: closed with %v %q, want %v", p.name, ce.Code, ce.Reason, code)
		}
		return ce.Reason
	}
}

type obj = map[string]any

// connect has a visitor answered by the console (which must be available).
func connect(t *testing.T, vis, con *sockPeer, alias string) (contact string) {
	t.Helper()
	q := vis.expect("queued")
	if q.Position == nil || *q.Position != 1 || q.Wait != "free_now" || q.WaitMinutes != nil || q.EmergencyNumbers != nil {
		t.Fatalf("queued frame %s: want position 1 and wait free_now (the console is available)", q.raw)
	}
	offer := con.expect("offer")
	if offer.Contact == "" || offer.Channel != "chat" || offer.Language != "nb" || offer.FromCentre != nil ||
		offer.RingSeconds == nil || *offer.RingSeconds <= 0 {
		t.Fatalf("offer %s: want a local chat in nb with ring_seconds", offer.raw)
	}
	con.send(obj{"type": "accept", "contact": offer.Contact})
	if c := vis.expect("connected"); c.Alias != alias {
		t.Fatalf("visitor connected to %q, want %q", c.Alias, alias)
	}
	if c := con.expect("connected"); c.Contact != offer.Contact || c.FromCentre != nil {
		t.Fatalf("console connected frame %s, want contact %s without from_centre", c.raw, offer.Contact)
	}
	return offer.Contact
}

func TestLocalChatEndToEnd(t *testing.T) {
	for _, endedBy := range []string{"volunteer", "visitor"} {
		t.Run("ended by "+endedBy, func(t *testing.T) {
			rig := newChatRig(t, nil)
			cookie := rig.signUp(testVolunteer("v-kari", "oslo", "Kari", 2), "correct horse battery")
			con := rig.console("console", cookie)
			pol := con.expect("policy")
			if !slices.Equal(pol.Topics, consensus.DefaultPolicy().Topics) || !slices.Equal(pol.AgeGroups, switchboard.AgeGroups) {
				t.Fatalf("policy frame %s", pol.raw)
			}
			av := con.expect("availability")
			if !reflect.DeepEqual(av.Channels, map[string]bool{"chat": false}) || *av.Active != 0 || *av.Capacity != 2 {
				t.Fatalf("first availability %s", av.raw)
			}
			con.send(obj{"type": "available", "channel": "chat", "on": true})
			if av := con.expect("availability"); !av.Channels["chat"] {
				t.Fatalf("availability after going available: %s", av.raw)
			}

			vis := rig.visitor("visitor", "nb")
			contact := connect(t, vis, con, "Kari")

			const fromVisitor, fromVolunteer = "canary-visitor-7f3a9 hei, jeg har det vondt", "canary-volunteer-c41d0 Jeg er her"
			vis.send(obj{"type": "message", "id": "c1", "text": fromVisitor})
			if m := con.expect("message"); m.Contact != contact || m.ID != "c1" || m.Text != fromVisitor {
				t.Fatalf("console got %s", m.raw)
			}
			if d := vis.expect("delivered"); d.ID != "c1" || d.Contact != "" {
				t.Fatalf("visitor delivered %s", d.raw)
			}
			con.send(obj{"type": "message", "contact": contact, "id": "v1", "text": fromVolunteer})
			if m := vis.expect("message"); m.ID != "v1" || m.Text != fromVolunteer || m.Contact != "" {
				t.Fatalf("visitor got %s", m.raw)
			}
			if d := con.expect("delivered"); d.Contact != contact || d.ID != "v1" {
				t.Fatalf("console delivered %s", d.raw)
			}
			vis.send(obj{"type": "typing"})
			if ty := con.expect("typing"); ty.Contact != contact {
				t.Fatalf("console typing %s", ty.raw)
			}
			con.send(obj{"type": "typing", "contact": contact})
			if ty := vis.expect("typing"); ty.raw != `{"type":"typing"}` {
				t.Fatalf("visitor typing %s", ty.raw)
			}

			cat := obj{"type": "end", "contact": contact, "topics": []string{"family"}, "age_group": "16-18"}
			switch endedBy {
			case "volunteer":
				con.send(cat)
				if c := con.expect("categorised"); c.Contact != contact {
					t.Fatalf("categorised %s", c.raw)
				}
				if e := vis.expect("ended"); e.By != "volunteer" {
					t.Fatalf("visitor ended %s", e.raw)
				}
			case "visitor":
				vis.send(obj{"type": "end"})
				if e := vis.expect("ended"); e.By != "visitor" {
					t.Fatalf("visitor ended %s", e.raw)
				}
				if e := con.expect("ended"); e.Contact != contact || e.By != "visitor" {
					t.Fatalf("console ended %s", e.raw)
				}
				con.send(cat)
				if c := con.expect("categorised"); c.Contact != contact {
					t.Fatalf("categorised %s", c.raw)
				}
			}
			if reason := vis.expectClose(websocket.StatusNormalClosure); reason != "conversation ended" {
				t.Fatalf("visitor close reason %q", reason)
			}
			// The volunteer is free again, and the console still works.
			if st := rig.centre.sb.Stats().Total(); st.InProgress != 0 || st.Waiting != 0 {
				t.Fatalf("after the end: %d in progress, %d waiting", st.InProgress, st.Waiting)
			}
			con.send(obj{"type": "decline", "contact": contact})
			con.expectError("offer_gone")

			st := rig.centre.sb.Stats()
			if st.Total().AnsweredLocal != 1 || st.Categorised() != 1 || st.Topics["family"] != 1 || st.AgeGroups["16-18"] != 1 {
				t.Fatalf("stats %+v", st)
			}
			// Invariants 1 and 2: no text or address in logs or files.
			checkNoTrace(t, rig, fromVisitor, fromVolunteer, "127.0.0.1")
		})
	}
}

// checkNoTrace fails if any needle is in the logs or the data directory.
func checkNoTrace(t *testing.T, rig *chatRig, needles ...string) {
	t.Helper()
	logs := rig.logs.String()
	err := filepath.WalkDir(rig.centre.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				t.Errorf("%s holds %q", path, n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range needles {
		if strings.Contains(logs, n) {
			t.Errorf("the logs hold %q", n)
		}
	}
}

func TestCrossOriginUpgradeRefused(t *testing.T) {
	rig := newChatRig(t, func(c *Config, _ *Server) { c.AllowedOrigins = []string{"embed.example"} })
	cookie := rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")

	refused := func(what, path string, o dialOpts, status int) {
		t.Helper()
		conn, resp, err := rig.dial(path, o)
		if err == nil {
			_ = conn.CloseNow()
			t.Fatalf("%s: upgrade accepted", what)
		}
		if resp == nil || resp.StatusCode != status {
			t.Fatalf("%s: %v (response %v), want HTTP %d", what, err, resp, status)
		}
	}
	refused("chat from evil.example", "/v1/chat?lang=nb", dialOpts{origin: "https://evil.example"}, http.StatusForbidden)
	refused("console from evil.example", "/v1/console", dialOpts{origin: "https://evil.example", cookie: cookie}, http.StatusForbidden)
	refused("console from the embedding site", "/v1/console", dialOpts{origin: "https://embed.example", cookie: cookie}, http.StatusForbidden)
	refused("console without a session", "/v1/console", dialOpts{}, http.StatusUnauthorized)

	// The page's own origin, and the configured embedding site, may chat.
	own := rig.mustDial("own origin", "/v1/chat?lang=nb", dialOpts{origin: rig.url})
	own.expect("queued")
	embedded := rig.mustDial("embedded", "/v1/chat?lang=en", dialOpts{origin: "https://embed.example"})
	embedded.expect("queued")
	con := rig.mustDial("console", "/v1/console", dialOpts{origin: rig.url, cookie: cookie})
	con.expect("policy")
	if st := rig.centre.sb.Stats().Total(); st.Offered != 2 {
		t.Fatalf("%d contacts started, want 2 (refused upgrades start none)", st.Offered)
	}
}

func TestChatStartFlood(t *testing.T) {
	rig := newChatRig(t, func(c *Config, _ *Server) {
		// The open-chat cap is tested on its own (TestQueueFloodFromManyAddresses).
		c.TrustedProxies, c.ChatStartsPerMinute, c.ChatStartBurst, c.MaxChatsPerAddress = loopbackProxies, 5, 5, 100
	})
	const flooder = "203.0.113.7"
	accepted, refused := 0, 0
	for range 20 {
		conn, resp, err := rig.dial("/v1/chat?lang=nb", dialOpts{xff: flooder})
		if err == nil {
			accepted++
			_ = conn.Close(websocket.StatusNormalClosure, "")
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("start refused with %v (%v), want 429", err, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		wantError(t, "flooded start", httpReply{status: resp.StatusCode, header: resp.Header, body: body}, http.StatusTooManyRequests, "too_many_requests")
		if resp.Header.Get("Retry-After") == "" {
			t.Fatal("429 without Retry-After")
		}
		refused++
	}
	if refused < 14 || accepted < 5 {
		t.Fatalf("%d accepted, %d refused: want the burst of 5 accepted and the rest refused", accepted, refused)
	}
	// A spoofed first X-Forwarded-For entry does not help: the proxy's is last.
	if _, resp, err := rig.dial("/v1/chat?lang=nb", dialOpts{xff: "198.51.100.9, " + flooder}); err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("spoofed start: %v, want 429", err)
	}
	// Another address is still served.
	other := rig.mustDial("other visitor", "/v1/chat?lang=nb", dialOpts{xff: "198.51.100.9"})
	other.expect("queued")

	// Only salted hashes are kept.
	rig.srv.chatStarts.set.mu.Lock()
	for k := range rig.srv.chatStarts.set.buckets.m {
		if len(k) != 32 || strings.Contains(k, flooder) {
			t.Errorf("a rate-limit key is not a hash: %q", k)
		}
	}
	rig.srv.chatStarts.set.mu.Unlock()
	checkNoTrace(t, rig, flooder, "198.51.100.9")
}

func TestBadFramesGetErrorsAndChatContinues(t *testing.T) {
	rig := newChatRig(t, nil)
	cookie := rig.signUp(testVolunteer("v1", "oslo", "Kari", 2), "correct horse battery")
	con := rig.console("console", cookie)
	con.expect("policy")
	con.send(obj{"type": "available", "channel": "chat", "on": true})
	a := rig.visitor("visitor A", "nb")
	contactA := connect(t, a, con, "Kari")
	b := rig.visitor("visitor B", "nb")
	contactB := connect(t, b, con, "Kari")

	// The visitor's bad frames.
	a.sendRaw(`{not json`)
	a.expectError("malformed")
	a.sendRaw(`{"type":"shout"}`)
	a.expectError("unknown_type")
	a.sendRaw(`{"type":"message","id":"c1","text":"hei","colour":"red"}`)
	a.expectError("malformed")
	a.sendRaw(`{"type":"message","id":"c1","text":"hei"} {"type":"end"}`)
	a.expectError("malformed")
	a.sendRaw(`{"type":"typing","text":"x"}`)
	a.expectError("bad_frame")
	a.send(obj{"type": "message", "id": "c2", "text": strings.Repeat("x", switchboard.MaxTextBytes+1)})
	if e := a.expectError("bad_message"); e.ID != "c2" {
		t.Fatalf("bad_message error without the message id: %s", e.raw)
	}
	a.send(obj{"type": "message", "id": strings.Repeat("i", switchboard.MaxMessageIDBytes+1), "text": "hei"})
	a.expectError("bad_message")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.conn.Write(ctx, websocket.MessageBinary, []byte(`{"type":"typing"}`)); err != nil {
		t.Fatal(err)
	}
	a.expectError("bad_frame")
	a.send(obj{"type": "message", "id": "c3", "text": "still here"})
	if m := con.expect("message"); m.Contact != contactA || m.ID != "c3" || m.Text != "still here" {
		t.Fatalf("console got %s", m.raw)
	}
	a.expect("delivered")

	// The volunteer's bad frames.
	con.sendRaw(`[]`)
	con.expectError("malformed")
	con.sendRaw(`{"type":"available","channel":"chat"}`)
	con.expectError("bad_frame")
	con.send(obj{"type": "available", "channel": "sms", "on": true})
	con.expectError("bad_request")
	con.send(obj{"type": "end", "contact": contactA, "topics": []string{"gossip"}, "age_group": "16-18"})
	con.expectError("bad_request")
	con.send(obj{"type": "end", "contact": contactA, "topics": []string{"family"}, "age_group": "42"})
	con.expectError("bad_request")
	if e := func() wireFrame {
		con.send(obj{"type": "message", "contact": "nobody", "id": "v1", "text": "x"})
		return con.expectError("unknown_contact")
	}(); e.Contact != "nobody" || e.ID != "v1" {
		t.Fatalf("unknown_contact error %s", e.raw)
	}
	con.send(obj{"type": "accept", "contact": contactA})
	con.expectError("offer_gone")
	con.send(obj{"type": "message", "contact": contactA, "id": "v2", "text": "fortsatt her"})
	if m := a.expect("message"); m.Text != "fortsatt her" {
		t.Fatalf("visitor A got %s", m.raw)
	}
	con.expect("delivered")

	// An oversized frame closes only that socket.
	a.sendRaw(`{"type":"message","id":"c4","text":"` + strings.Repeat("x", maxFrameBytes) + `"}`)
	a.expectClose(websocket.StatusMessageTooBig)
	if e := con.expect("ended"); e.Contact != contactA || e.By != "visitor" {
		t.Fatalf("console ended %s", e.raw)
	}
	b.send(obj{"type": "message", "id": "c1", "text": "B er her"})
	if m := con.expect("message"); m.Contact != contactB || m.Text != "B er her" {
		t.Fatalf("console got %s", m.raw)
	}
	b.expect("delivered")
	con.send(obj{"type": "message", "contact": contactB, "id": "v3", "text": "hei B"})
	if m := b.expect("message"); m.Text != "hei B" {
		t.Fatalf("visitor B got %s", m.raw)
	}
}

func TestMessageBeforeConnectedIsRefused(t *testing.T) {
	rig := newChatRig(t, nil)
	vis := rig.visitor("visitor", "nb")
	vis.expect("queued")
	vis.send(obj{"type": "message", "id": "c1", "text": "hallo?"})
	if e := vis.expectError("not_connected"); e.ID != "c1" {
		t.Fatalf("not_connected error %s", e.raw)
	}
	vis.send(obj{"type": "typing"}) // ignored while waiting
	vis.send(obj{"type": "end"})
	if e := vis.expect("ended"); e.By != "visitor" {
		t.Fatalf("ended %s", e.raw)
	}
	vis.expectClose(websocket.StatusNormalClosure)
	waitSockets(t, rig)
	if st := rig.centre.sb.Stats().Total(); st.Abandoned != 1 || st.Waiting != 0 {
		t.Fatalf("stats %+v: want the contact abandoned", st)
	}
}

func TestChatRefusesBadQueryBeforeUpgrade(t *testing.T) {
	rig := newChatRig(t, nil)
	for _, q := range []string{"channel=phone&lang=nb", "lang=", "lang=xx", "lang=nbnb", "channel=chat"} {
		wantError(t, q, rig.call(http.MethodGet, "/v1/chat?"+q, nil, nil), http.StatusBadRequest, "bad_request")
	}
	// A known code the federation does not serve: refused inside the socket.
	vis := rig.mustDial("visitor", "/v1/chat?lang=sv", dialOpts{})
	vis.expectError("bad_request")
	vis.expectClose(websocket.StatusPolicyViolation)
}

// waitSockets waits until every socket of the rig's server has finished.
func waitSockets(t *testing.T, rig *chatRig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rig.srv.waitSockets(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestIdleSocketIsClosedAndContactAbandoned(t *testing.T) {
	rig := newChatRig(t, func(_ *Config, s *Server) {
		if s != nil {
			s.timing.idle, s.timing.ping = 200*time.Millisecond, 0
		}
	})
	vis := rig.visitor("visitor", "nb")
	if reason := vis.expectClose(websocket.StatusGoingAway); !strings.Contains(reason, "idle") {
		t.Fatalf("close reason %q", reason)
	}
	waitSockets(t, rig)
	if st := rig.centre.sb.Stats().Total(); st.Abandoned != 1 {
		t.Fatalf("stats %+v: want the idle contact abandoned", st)
	}
}

func TestPingsKeepAQuietSocketOpen(t *testing.T) {
	rig := newChatRig(t, func(_ *Config, s *Server) {
		if s != nil {
			// Generous against a loaded CI machine: a pong late by more
			// than the idle period would close the socket.
			s.timing.idle, s.timing.ping, s.timing.pingTimeout = 2*time.Second, 100*time.Millisecond, 4*time.Second
		}
	})
	vis := rig.visitor("visitor", "nb")
	vis.expect("queued")
	// The client answers pings only while it reads; a read that sees
	// nothing for several idle periods proves the pongs kept it open.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := vis.conn.Read(ctx)
	// Our deadline ends the read; when it falls while a ping is being
	// answered the library reports the connection it closed for it ("use
	// of closed network connection", CI run 8) rather than the deadline.
	// Either way the socket stayed open until our deadline: a close by the
	// server would end the read before it.
	if err == nil || ctx.Err() == nil {
		t.Fatalf("read on a quiet socket: %v before our deadline, want it open until then", err)
	}
}

// TestSocketsOutliveServerTimeouts: the http.Server's read and write
// timeouts must not cut an upgraded socket.
func TestSocketsOutliveServerTimeouts(t *testing.T) {
	rig := newChatRig(t, nil)
	hs := httptest.NewUnstartedServer(rig.srv.Handler())
	hs.Config.ReadHeaderTimeout = 10 * time.Second
	hs.Config.ReadTimeout = time.Nanosecond // already past when the handler runs
	hs.Config.WriteTimeout = time.Nanosecond
	hs.Start()
	defer hs.Close()
	old := rig.url
	rig.url = hs.URL
	defer func() { rig.url = old }()
	vis := rig.visitor("visitor", "nb")
	vis.expect("queued")
	vis.send(obj{"type": "message", "id": "c1", "text": "hei"})
	vis.expectError("not_connected")
}

func TestSlowPeerIsClosedNotWaitedFor(t *testing.T) {
	ws := &wsock{out: make(chan outItem, 2), stop: make(chan struct{})}
	for range 3 {
		ws.send(contactFrame{Type: "typing"}) // never blocks
	}
	if !ws.stopped() || ws.code != websocket.StatusPolicyViolation || !strings.Contains(ws.reason, "too slow") {
		t.Fatalf("after overflowing the queue: stopped %v, %v %q", ws.stopped(), ws.code, ws.reason)
	}
	ws.send(contactFrame{Type: "typing"}) // dropped quietly once stopping
	v := &visitorConn{ws: ws}
	v.Event(switchboard.Event{Kind: switchboard.EventMessage, ID: "x", Text: "y"})
}

func TestServerStopClosesSockets(t *testing.T) {
	rig := newChatRig(t, nil)
	vis := rig.visitor("visitor", "nb")
	vis.expect("queued")
	rig.srv.closeSockets("the centre is shutting down")
	if c := vis.expect("closed"); c.Reason != "the centre is shutting down" {
		t.Fatalf("closed frame %s", c.raw)
	}
	vis.expectClose(websocket.StatusGoingAway)
	waitSockets(t, rig)
	if _, resp, err := rig.dial("/v1/chat?lang=nb", dialOpts{}); err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("chat after shutdown began: %v, want 503", err)
	}
}

func TestDecodeVisitorFrame(t *testing.T) {
	good := map[string]visitorFrame{
		`{"type":"message","id":"c1","text":"hei"}`: {Type: "message", ID: "c1", Text: "hei"},
		` {"type":"typing"} `:                       {Type: "typing"},
		`{"type":"end"}`:                            {Type: "end"},
	}
	for in, want := range good {
		if got, err := decodeVisitorFrame([]byte(in)); err != nil || got != want {
			t.Errorf("decode %s = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		``:                                       "malformed",
		`null`:                                   "bad_frame",
		`{}`:                                     "bad_frame",
		`{"type":"message","id":"c1"}`:           "bad_frame",
		`{"type":"message","text":"x"}`:          "bad_frame",
		`{"type":"end","id":"c1"}`:               "bad_frame",
		`{"type":"Message","id":"1","text":"x"}`: "unknown_type",
		`{"type":"end"}}`:                        "malformed",
		`{"type":"end"}]`:                        "malformed",
		`{"type":"end"}{"type":"end"}`:           "malformed",
		`{"type":1}`:                             "malformed",
		"{\"type\":\"end\",\"x\":\"\xff\"}":      "malformed",
		string(bytes.Repeat([]byte(" "), maxFrameBytes+1)): "too_large",
	}
	for in, code := range bad {
		_, err := decodeVisitorFrame([]byte(in))
		if err == nil || errorCode(err) != code {
			t.Errorf("decode %.60q: %v, want code %s", in, err, code)
		}
	}
}

func FuzzVisitorFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"message","id":"c1","text":"hei"}`, `{"type":"typing"}`, `{"type":"end"}`,
		`{"type":"message","id":"c1","text":"\u00e6\u00f8\u00e5 \ud83d\ude00"}`, `{"type":"x"}`, `[]`, `null`,
		`{"type":"end"} `, `{"type":"end","id":""}`, `{"type":"message","id":"c1","text":"a","text":""}`,
	} {
		f.Add([]byte(s))
	}
	f.Add(bytes.Repeat([]byte("["), maxFrameBytes+1))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeVisitorFrame(b)
		if err != nil {
			var fe *frameError
			if !errors.As(err, &fe) || fe.code == "" || fe.msg == "" {
				t.Fatalf("error %v is not a coded frame error", err)
			}
			if fr != (visitorFrame{}) {
				t.Fatalf("refused frame decoded as %+v", fr)
			}
			return
		}
		if len(b) > maxFrameBytes {
			t.Fatalf("accepted a %d-byte frame", len(b))
		}
		switch fr.Type {
		case "message":
			if fr.ID == "" || fr.Text == "" {
				t.Fatalf("accepted message %+v", fr)
			}
		case "typing", "end":
			if fr.ID != "" || fr.Text != "" {
				t.Fatalf("accepted %+v", fr)
			}
		default:
			t.Fatalf("accepted type %q", fr.Type)
		}
		enc := encodeFrame(fr)
		if len(enc) > maxFrameBytes {
			return
		}
		again, err := decodeVisitorFrame(enc)
		if err != nil || again != fr {
			t.Fatalf("round trip of %+v: %+v, %v", fr, again, err)
		}
	})
}
