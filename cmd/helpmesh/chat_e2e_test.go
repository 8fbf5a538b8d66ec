package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
)

// The real binary, two centres: a visitor at A (no volunteer there) talks
// with B's volunteer through the relay, and another visitor talks with the
// same volunteer locally at B. A unique canary string is sent both ways in
// both chats; afterwards it appears in no file under either data directory,
// in no log line (debug level) and in no /metrics output, and neither do the
// visitors' addresses, user agent or cookie.
func TestBinaryOverflowChatAndPrivacyCanary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildBinary(t)
	root := t.TempDir()
	type centre struct {
		id, dir, http string
		proc          *process
	}
	a := &centre{id: "alta"}
	b := &centre{id: "bodo"}
	for _, c := range []*centre{a, b} {
		c.dir = filepath.Join(root, c.id)
		c.http = fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t))
		run(t, bin, "init", "--dir", c.dir, "--centre", c.id, "--http", c.http,
			"--p2p", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", fedtest.FreePort(t)),
			"--gossip", fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t)))
	}
	a.proc = start(t, bin, "run", "--dir", a.dir, "--log-level", "debug")
	waitReady(t, a.http)
	out := run(t, bin, "centre", "admit", "--dir", a.dir, "--from", b.dir)
	join := regexp.MustCompile(`--join (\S+)`).FindStringSubmatch(out)
	if join == nil {
		t.Fatalf("admit printed no join address:\n%s", out)
	}
	b.proc = start(t, bin, "run", "--dir", b.dir, "--join", join[1], "--log-level", "debug")
	waitReady(t, b.http)

	// B's staff enrol a volunteer; the volunteer sets a password and signs in.
	code, body := httpDo(t, http.MethodPost, b.http, "/v1/volunteers", b.dir,
		`{"id":"bodo-kari","centre":"bodo","alias":"Kari","channels":["chat"],"languages":["nb","en"],"capacity":2,"role":"volunteer"}`)
	if code != http.StatusOK {
		t.Fatalf("enrol volunteer: %d %s", code, body)
	}
	var written struct {
		Code string `json:"enrolment_code"`
	}
	if err := json.Unmarshal([]byte(body), &written); err != nil || written.Code == "" {
		t.Fatalf("no enrolment code in %s", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	vol := newVolunteerClient(ctx, t, b.http, "bodo-kari", written.Code)

	canary := "canary-" + randomHex(t)
	visitorUA := "visitor-agent-" + randomHex(t)
	visitorCookie := "cookie-" + randomHex(t)

	// 1. Overflow: a visitor at A, where nobody is on duty.
	waitFor(t, 30*time.Second, "A to see B's free volunteer", func() bool {
		code, body := httpDo(t, http.MethodGet, a.http, "/v1/federation", a.dir, "")
		return code == http.StatusOK && strings.Contains(body, `"free_volunteers": 1`)
	})
	v1, addr1 := dialVisitor(ctx, t, a.http, visitorUA, visitorCookie)
	offer := vol.expect("offer")
	if offer["from_centre"] != "alta" {
		t.Fatalf("overflowed offer should name alta: %v", offer)
	}
	contact := offer["contact"].(string)
	vol.send(map[string]any{"type": "accept", "contact": contact})
	if m := v1.expect("connected"); m["alias"] != "Kari" {
		t.Fatalf("visitor connected to %v", m["alias"])
	}
	v1.send(map[string]any{"type": "message", "id": "m1", "text": "visitor says " + canary})
	if m := vol.expect("message"); m["text"] != "visitor says "+canary {
		t.Fatalf("volunteer got %v", m)
	}
	v1.expect("delivered")
	vol.send(map[string]any{"type": "message", "contact": contact, "id": "r1", "text": "volunteer says " + canary})
	if m := v1.expect("message"); m["text"] != "volunteer says "+canary {
		t.Fatalf("visitor got %v", m)
	}
	vol.send(map[string]any{"type": "end", "contact": contact, "topics": []string{"loneliness"}, "age_group": "16-18"})
	v1.expect("ended")
	vol.expect("categorised")

	// 2. Local: a visitor at B talks with B's volunteer.
	v2, addr2 := dialVisitor(ctx, t, b.http, visitorUA, visitorCookie)
	contact2 := vol.expect("offer")["contact"].(string)
	vol.send(map[string]any{"type": "accept", "contact": contact2})
	v2.expect("connected")
	v2.send(map[string]any{"type": "message", "id": "m1", "text": "local " + canary})
	vol.expect("message")
	vol.send(map[string]any{"type": "message", "contact": contact2, "id": "r1", "text": "local reply " + canary})
	v2.expect("message")
	v2.send(map[string]any{"type": "end"})
	vol.expect("ended")
	vol.send(map[string]any{"type": "end", "contact": contact2, "topics": []string{"family"}, "age_group": "13-15"})
	vol.expect("categorised")

	var metrics []string
	for _, c := range []*centre{a, b} {
		resp, err := http.Get("http://" + c.http + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = append(metrics, string(m))
	}
	// Stop both centres cleanly so every log line and file is flushed.
	for _, c := range []*centre{a, b} {
		c.proc.stop(t)
	}

	secrets := map[string]string{"canary text": canary, "visitor user agent": visitorUA, "visitor cookie": visitorCookie,
		"visitor address at A": addr1, "visitor address at B": addr2}
	for what, secret := range secrets {
		for _, c := range []*centre{a, b} {
			if log := c.proc.output(); strings.Contains(log, secret) {
				t.Errorf("%s found in %s's log", what, c.id)
			}
			if log := c.proc.output(); len(log) < 1000 || !strings.Contains(log, c.id) {
				t.Fatalf("%s's log is not what the scan expects: the scan would prove nothing", c.id)
			}
			_ = filepath.WalkDir(c.dir, func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s found in %s", what, path)
				}
				return nil
			})
		}
		for i, m := range metrics {
			if strings.Contains(m, secret) {
				t.Errorf("%s found in /metrics of centre %d", what, i)
			}
		}
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// wsClient reads JSON frames into a channel so tests can wait for a type.
type wsClient struct {
	t      *testing.T
	ctx    context.Context
	conn   *websocket.Conn
	frames chan map[string]any
}

func newWSClient(ctx context.Context, t *testing.T, conn *websocket.Conn) *wsClient {
	c := &wsClient{t: t, ctx: ctx, conn: conn, frames: make(chan map[string]any, 256)}
	go func() {
		defer close(c.frames)
		for {
			var m map[string]any
			if err := wsjson.Read(ctx, conn, &m); err != nil {
				return
			}
			c.frames <- m
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return c
}

func (c *wsClient) send(m map[string]any) {
	c.t.Helper()
	if err := wsjson.Write(c.ctx, c.conn, m); err != nil {
		c.t.Fatalf("send %v: %v", m["type"], err)
	}
}

// expect returns the next frame of the given type, skipping others.
func (c *wsClient) expect(typ string) map[string]any {
	c.t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("socket closed waiting for %q", typ)
			}
			if m["type"] == typ {
				return m
			}
			if m["type"] == "error" {
				c.t.Logf("error frame while waiting for %q: %v", typ, m)
			}
		case <-timeout:
			c.t.Fatalf("timed out waiting for %q", typ)
		}
	}
}

// dialVisitor opens a chat as a browser would, and returns the client's own
// address (what a careless server would log).
func dialVisitor(ctx context.Context, t *testing.T, addr, ua, cookie string) (*wsClient, string) {
	t.Helper()
	var mu sync.Mutex
	local := ""
	dialer := &net.Dialer{}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, a)
		if err == nil {
			mu.Lock()
			local = conn.LocalAddr().String()
			mu.Unlock()
		}
		return conn, err
	}}}
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/chat?channel=chat&lang=nb", &websocket.DialOptions{
		HTTPClient: hc,
		HTTPHeader: http.Header{"Origin": {"http://" + addr}, "User-Agent": {ua}, "Cookie": {"visitor=" + cookie}},
	})
	if err != nil {
		t.Fatalf("visitor dial: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return newWSClient(ctx, t, conn), local
}

type volunteerClient struct{ *wsClient }

func newVolunteerClient(ctx context.Context, t *testing.T, addr, id, code string) *volunteerClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	post := func(path string, body any) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", "http://"+addr)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, msg)
		}
	}
	post("/v1/volunteer/enrol", map[string]string{"volunteer": id, "code": code, "password": "a long enough password"})
	post("/v1/volunteer/login", map[string]string{"volunteer": id, "password": "a long enough password"})
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/v1/console", &websocket.DialOptions{HTTPClient: hc, HTTPHeader: http.Header{"Origin": {"http://" + addr}}})
	if err != nil {
		t.Fatalf("console dial: %v", err)
	}
	c := &volunteerClient{newWSClient(ctx, t, conn)}
	c.send(map[string]any{"type": "available", "channel": "chat", "on": true})
	return c
}
