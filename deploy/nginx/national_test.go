package nginx_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/testcert"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// centresTLSName is the one name every centre's certificate carries for
// the national proxy to check (national.conf, CENTRE_TLS_NAME).
const centresTLSName = "centres.helpline.test"

// jqBinary finds jq, which turns the roster into the upstream list: skip on
// a laptop without it, fail in CI (.ci/run installs it).
func jqBinary(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("jq"); err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("jq not found: .ci/run installs Debian's jq package")
	}
	t.Skip("jq not found (apt-get install jq); skipping")
	return ""
}

// chat is one visitor's chat opened at the national address.
type chat struct {
	status int           // the HTTP status of a refused handshake, else 0
	err    error         // why the chat did not reach "queued"
	queued time.Duration // from the dial to the first "queued"
	conn   *websocket.Conn
	frames chan map[string]any
}

// openChat dials the chat at the national address as a visitor from addr
// (in X-Forwarded-For: the test's clients share nginx's loopback address,
// which every centre trusts as a proxy, so the header is taken as theirs
// and each visitor has its own rate limit, as on the internet) and waits
// for "queued". It runs on its own goroutine: errors are returned in the
// chat, never fatal.
func openChat(ctx context.Context, hc *http.Client, national, addr string) *chat {
	c := &chat{}
	begin := time.Now()
	conn, resp, err := websocket.Dial(ctx, "wss://"+national+"/v1/chat?channel=chat&lang=nb", &websocket.DialOptions{
		HTTPClient: hc,
		HTTPHeader: http.Header{"Origin": {"https://" + national}, "X-Forwarded-For": {addr}},
	})
	if err != nil {
		if resp != nil {
			c.status = resp.StatusCode
		}
		c.err = fmt.Errorf("open the chat as %s: %w", addr, err)
		return c
	}
	c.conn, c.frames = conn, make(chan map[string]any, 64)
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
	if _, err := c.wait("queued", 20*time.Second); err != nil {
		c.err = fmt.Errorf("%s: %w", addr, err)
		return c
	}
	c.queued = time.Since(begin)
	return c
}

// wait returns the next frame of type typ.
func (c *chat) wait(typ string, within time.Duration) (map[string]any, error) {
	timeout := time.After(within)
	for {
		select {
		case m, ok := <-c.frames:
			if !ok {
				return nil, fmt.Errorf("socket closed waiting for %q", typ)
			}
			if m["type"] == typ {
				return m, nil
			}
		case <-timeout:
			return nil, fmt.Errorf("no %q within %v", typ, within)
		}
	}
}

// wave is n visitors opening chats at once at the national address.
type wave struct {
	chats   []*chat
	refused int // handshakes answered with an HTTP error
	failed  int // every other failure to reach "queued"
}

func openWave(t *testing.T, ctx context.Context, hc *http.Client, national string, first, n int) wave {
	t.Helper()
	w := wave{chats: make([]*chat, n)}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.chats[i] = openChat(ctx, hc, national, fmt.Sprintf("203.0.113.%d", first+i))
		}()
	}
	wg.Wait()
	for _, c := range w.chats {
		switch {
		case c.status != 0:
			w.refused++
		case c.err != nil:
			w.failed++
		}
		if c.conn != nil {
			t.Cleanup(func() { c.conn.CloseNow() })
		}
	}
	return w
}

// figures are the wave's numbers for the log: time to queued, median and
// max, over the chats that got there.
func (w wave) figures() string {
	var d []time.Duration
	for _, c := range w.chats {
		if c.err == nil {
			d = append(d, c.queued)
		}
	}
	if len(d) == 0 {
		return fmt.Sprintf("%d visitors, %d refused, %d failed", len(w.chats), w.refused, w.failed)
	}
	slices.Sort(d)
	return fmt.Sprintf("%d visitors, %d refused, %d failed, time to queued median %v max %v",
		len(w.chats), w.refused, w.failed, d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
}

// check fails the test for every chat that did not reach "queued".
func (w wave) check(t *testing.T, phase string) {
	t.Helper()
	for _, c := range w.chats {
		if c.err != nil {
			t.Errorf("%s: HTTP %d: %v", phase, c.status, c.err)
		}
	}
	if w.refused+w.failed > 0 {
		t.Fatalf("%s: %s", phase, w.figures())
	}
}

// offered is how many contacts arrived at each centre so far: where the
// national address let each visitor in.
func offered(cs map[string]*centre.Centre) map[string]uint64 {
	out := map[string]uint64{}
	for id, c := range cs {
		if c != nil {
			out[id] = c.Node().Switchboard().Stats().Total().Offered
		}
	}
	return out
}

func entries(before, after map[string]uint64) string {
	var parts []string
	for _, id := range []string{"c1", "c2", "c3"} {
		parts = append(parts, fmt.Sprintf("%s=%d", id, after[id]-before[id]))
	}
	return strings.Join(parts, " ")
}

// signIn registers a chat volunteer with capacity 6 through the centre's
// staff side (admin token), enrols and logs in, opens the console and goes
// available; the console then accepts every offer by itself.
func signIn(t *testing.T, ctx context.Context, ca *testcert.CA, root string, c *centre.Centre, id string) {
	t.Helper()
	staff := "https://" + c.StaffAddr()
	token, err := node.LoadAdminToken(filepath.Join(root, "centres", c.Node().Centre()))
	if err != nil {
		t.Fatal(err)
	}
	admin := newBrowser(t, ca)
	resp, body := admin.do(http.MethodPost, staff+"/v1/volunteers", token, map[string]any{
		"id": id, "centre": c.Node().Centre(), "alias": id, "channels": []string{"chat"}, "languages": []string{"nb"},
		"capacity": 6, "role": "volunteer",
	})
	var enrolment struct {
		Code string `json:"enrolment_code"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &enrolment) != nil || enrolment.Code == "" {
		t.Fatalf("register %s: %s %s", id, resp.Status, body)
	}
	v := newBrowser(t, ca)
	const password = "a long enough password"
	if resp, body := v.do(http.MethodPost, staff+"/v1/volunteer/enrol", "", map[string]string{
		"volunteer": id, "code": enrolment.Code, "password": password}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("enrol %s: %s %s", id, resp.Status, body)
	}
	if resp, body := v.do(http.MethodPost, staff+"/v1/volunteer/login", "", map[string]string{
		"volunteer": id, "password": password}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("login %s: %s %s", id, resp.Status, body)
	}
	console := dial(t, ctx, v, "wss://"+c.StaffAddr()+"/v1/console", staff, id)
	console.expect("availability")
	console.send(map[string]any{"type": "available", "channel": "chat", "on": true})
	go func() {
		for m := range console.frames {
			if m["type"] == "offer" {
				_ = wsjson.Write(ctx, console.conn, map[string]any{"type": "accept", "contact": m["contact"]})
			}
		}
	}()
}

// One national address in front of three real centres (national.conf,
// rendered with the upstream list jq makes of the roster, as the sample's
// header says), over HTTPS on both hops (test CA): c1 has nobody signed
// in, c2 and c3 one volunteer each with capacity 6 (each sign-in costs two
// argon2id runs, the test's slowest part).
//
//   - (a) 12 visitors open chats at the one address at once: every one is
//     queued and then connected to a volunteer, whichever centre let them in;
//   - (b) c1 drains (503 draining before the upgrade, and on /readyz):
//     12 more visitors, none refused, every one queued, none of them at c1;
//   - (c) c3 stops entirely (its listener closed): 12 more, no error, all
//     at c2, the one centre left taking chats;
//   - (d) at the national address the staff, admin and metrics paths and
//     the probes answer 404, the visitor's paths are served;
//   - the same sample with CENTRE_SCHEME=http passes nginx -t.
func TestNationalEntryPoint(t *testing.T) {
	bin, jq := nginxBinary(t), jqBinary(t)
	begin := time.Now()
	root := t.TempDir()
	ca, err := testcert.NewCA("helpmesh national test ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, caFile := filepath.Join(root, "cert.pem"), filepath.Join(root, "key.pem"), filepath.Join(root, "ca.pem")
	if _, err := ca.Issue(cert, key, "127.0.0.1", centresTLSName); err != nil {
		t.Fatal(err)
	}
	if err := ca.WriteCert(caFile); err != nil {
		t.Fatal(err)
	}

	// Each centre serves its public side over HTTPS itself, publishes it
	// as its public_url, and trusts nginx (loopback) as its proxy.
	public := map[string]string{}
	for _, id := range []string{"c1", "c2", "c3"} {
		public[id] = fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t))
	}
	local := centre.Local{Root: filepath.Join(root, "centres"), Timing: timing.Test, Logger: slog.New(slog.DiscardHandler),
		HTTPAddr: func(id string, _ int) string { return public[id] },
		Web: func(id string, _ int) node.WebConfig {
			return node.WebConfig{StaffAddr: "127.0.0.1:0", TrustedProxies: []string{"127.0.0.1"},
				TLSCert: cert, TLSKey: key, PublicURL: "https://" + public[id]}
		}}
	f := fedtest.Start(t, local.Driver(), 3)
	cs := map[string]*centre.Centre{"c1": f.Member("c1"), "c2": f.Member("c2"), "c3": f.Member("c3")}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// The upstream list, from the roster as the sample's header says.
	token1, err := node.LoadAdminToken(filepath.Join(root, "centres", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	admin := newBrowser(t, ca)
	var roster []byte
	fedtest.Eventually(t, 20*time.Second, "every centre's public_url in c1's roster", func() bool {
		resp, body := admin.do(http.MethodGet, "https://"+cs["c1"].StaffAddr()+"/v1/roster", token1, nil)
		var r struct {
			Centres map[string]struct {
				PublicURL string `json:"public_url"`
			} `json:"centres"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &r) != nil {
			return false
		}
		for id, addr := range public {
			if r.Centres[id].PublicURL != "https://"+addr {
				return false
			}
		}
		roster = body
		return true
	})
	gen := exec.Command(jq, "-r", "-f", "centres-from-roster.jq")
	gen.Stdin = strings.NewReader(string(roster))
	upstreams, err := gen.Output()
	if err != nil {
		t.Fatalf("jq -f centres-from-roster.jq: %v", err)
	}
	want := ""
	for _, id := range []string{"c1", "c2", "c3"} {
		want += "server " + public[id] + " max_fails=1 fail_timeout=10s;\n"
	}
	if string(upstreams) != want {
		t.Fatalf("the upstream list from the roster:\n%s\nwant:\n%s", upstreams, want)
	}
	nginxDir := filepath.Join(root, "nginx")
	if err := os.MkdirAll(nginxDir, 0o700); err != nil {
		t.Fatal(err)
	}
	centresFile := filepath.Join(nginxDir, "helpmesh-centres.conf")
	if err := os.WriteFile(centresFile, upstreams, 0o600); err != nil {
		t.Fatal(err)
	}
	national := fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t))
	vars := map[string]string{"LISTEN": national, "NAME": "127.0.0.1", "CERT": cert, "KEY": key,
		"CENTRES_FILE": centresFile, "CENTRE_SCHEME": "https", "CENTRE_TLS_NAME": centresTLSName, "CENTRE_CA": caFile}

	// The plain HTTP variant (centres on a private network) is valid too.
	plainDir := filepath.Join(root, "nginx-plain")
	if err := os.MkdirAll(plainDir, 0o700); err != nil {
		t.Fatal(err)
	}
	plain := maps.Clone(vars)
	maps.Copy(plain, map[string]string{"CENTRE_SCHEME": "http", "CENTRE_CA": filepath.Join(root, "no-such-ca.pem")})
	checkNginx(t, bin, plainDir, []string{renderFile(t, "national.conf", plain)})

	startNginx(t, bin, nginxDir, []string{renderFile(t, "national.conf", vars)}, []string{national}, ca)

	// Volunteers at c2 and c3; nobody at c1, whose visitors overflow once
	// gossip carried the others' free volunteers (c1's own /v1/info says).
	for _, v := range []struct{ centre, id string }{{"c2", "c2-kari"}, {"c3", "c3-siri"}} {
		signIn(t, ctx, ca, root, cs[v.centre], v.id)
	}
	direct := newBrowser(t, ca)
	fedtest.Eventually(t, 20*time.Second, "c1 sees a volunteer free elsewhere", func() bool {
		resp, body := direct.do(http.MethodGet, "https://"+public["c1"]+"/v1/info", "", nil)
		var info struct {
			Free bool `json:"volunteers_free"`
		}
		return resp.StatusCode == http.StatusOK && json.Unmarshal(body, &info) == nil && info.Free
	})
	hc := newBrowser(t, ca).hc
	const n = 12

	// (a) n visitors at once: queued, then connected.
	before := offered(cs)
	a := openWave(t, ctx, hc, national, 1, n)
	a.check(t, "(a) all centres up")
	var connected atomic.Int64
	var wg sync.WaitGroup
	for _, c := range a.chats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.wait("connected", 20*time.Second); err == nil {
				connected.Add(1)
			}
		}()
	}
	wg.Wait()
	if connected.Load() != n {
		t.Fatalf("(a) %d of %d visitors connected to a volunteer", connected.Load(), n)
	}
	t.Logf("(a) all centres up: %s; connected %d; entries %s", a.figures(), connected.Load(), entries(before, offered(cs)))
	// The visitors leave, so that c1 has no conversation left to drain.
	for _, c := range a.chats {
		if err := wsjson.Write(ctx, c.conn, map[string]any{"type": "end"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.wait("ended", 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	// (b) c1 drains: its /readyz and GET /v1/chat answer 503, which nginx
	// passes on to the next centre.
	dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
	if err := cs["c1"].Drain(dctx); err != nil {
		t.Fatal(err)
	}
	dcancel()
	if resp, body := direct.do(http.MethodGet, "https://"+public["c1"]+"/readyz", "", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("c1's /readyz while draining: %s %s", resp.Status, body)
	}
	before = offered(cs)
	b := openWave(t, ctx, hc, national, 21, n)
	b.check(t, "(b) c1 draining")
	after := offered(cs)
	t.Logf("(b) c1 draining: %s; entries %s", b.figures(), entries(before, after))
	if after["c1"] != before["c1"] {
		t.Fatalf("(b) %d visitors entered at the draining c1", after["c1"]-before["c1"])
	}
	for _, c := range b.chats {
		c.conn.CloseNow()
	}

	// (c) c3 stops entirely: its listener refuses connections.
	f.Stop("c3")
	cs["c3"] = nil
	if conn, err := net.Dial("tcp", public["c3"]); err == nil {
		conn.Close()
		t.Fatal("c3's public listener still accepts connections after Stop")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial the stopped c3: %v, want connection refused", err)
	}
	before = offered(cs)
	c := openWave(t, ctx, hc, national, 41, n)
	c.check(t, "(c) c1 draining, c3 stopped")
	after = offered(cs)
	t.Logf("(c) c1 draining, c3 stopped: %s; entries %s", c.figures(), entries(before, after))
	if got := after["c2"] - before["c2"]; got != n {
		t.Fatalf("(c) %d of %d visitors entered at c2, the one centre left taking chats", got, n)
	}

	// (d) Only the visitor's paths at the national address.
	for _, p := range []struct{ method, path string }{
		{http.MethodGet, "/console"}, {http.MethodGet, "/metrics"}, {http.MethodGet, "/v1/roster"},
		{http.MethodGet, "/overview"}, {http.MethodGet, "/enrol"}, {http.MethodGet, "/v1/console"},
		{http.MethodPost, "/v1/volunteer/login"}, {http.MethodPost, "/v1/volunteers"},
		{http.MethodGet, "/v1/federation/events"}, {http.MethodGet, "/readyz"}, {http.MethodGet, "/healthz"},
		{http.MethodGet, "/static/../v1/roster"},
	} {
		if resp, _ := admin.do(p.method, "https://"+national+p.path, token1, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s at the national address: %s, want 404", p.method, p.path, resp.Status)
		}
	}
	for _, p := range []string{"/chat", "/widget.js", "/static/chat.css", "/i18n/en.json", "/v1/info"} {
		if resp, _ := admin.do(http.MethodGet, "https://"+national+p, "", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s at the national address: %s", p, resp.Status)
		}
	}
	if resp, _ := admin.do(http.MethodGet, "https://"+national+"/", "", nil); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/chat" {
		t.Errorf("GET / at the national address: %s to %q, want 302 to /chat", resp.Status, resp.Header.Get("Location"))
	}
	t.Logf("three centres, nginx at one address, %d visitors, a drain and a stop took %v", 3*n, time.Since(begin).Round(time.Millisecond))
}
