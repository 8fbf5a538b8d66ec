// Package nginx_test runs Debian's nginx, configured from the samples in
// this directory, and drives real centres through it over HTTPS:
// helpmesh.conf in front of two centres (visitors, a volunteer and the
// admin API), and national.conf, one address in front of three centres of
// which one drains and one stops (national_test.go).
//
// Without nginx (or jq, for the national address) a test skips with a
// message; in CI (CI=true) it fails instead (.ci/run installs both).
package nginx_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
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

// nginxBinary finds nginx: skip on a laptop without it, fail in CI.
func nginxBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx not found: .ci/run installs Debian's nginx package")
	}
	t.Skip("nginx not found (apt-get install nginx); skipping")
	return ""
}

// sides is where nginx listens for one centre and where it proxies to.
type sides struct {
	public, staff         string // nginx's addresses, host:port
	nodePublic, nodeStaff string // the node's listeners
}

// render fills in deploy/nginx/helpmesh.conf as docs/operations.md tells an
// operator to (envsubst of the listed placeholders), and fails if one is
// left over.
func render(t *testing.T, s sides, cert, key string) string {
	t.Helper()
	return renderFile(t, "helpmesh.conf", map[string]string{
		"PUBLIC_LISTEN": s.public, "PUBLIC_NAME": "127.0.0.1",
		"STAFF_LISTEN": s.staff, "STAFF_NAME": "127.0.0.1", "STAFF_ALLOW": "127.0.0.1",
		"CERT": cert, "KEY": key, "NODE_PUBLIC": s.nodePublic, "NODE_STAFF": s.nodeStaff,
	})
}

// renderFile fills in the placeholders of a sample in this directory, and
// fails if a directive keeps one.
func renderFile(t *testing.T, name string, vars map[string]string) string {
	t.Helper()
	tmpl, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	out := string(tmpl)
	for k, v := range vars {
		out = strings.ReplaceAll(out, "${"+k+"}", v)
	}
	// Comments may name placeholders; directives may not keep one.
	for _, line := range strings.Split(out, "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") {
			if m := regexp.MustCompile(`\$\{[A-Z_]+\}`).FindString(l); m != "" {
				t.Fatalf("%s: placeholder %s is not documented for rendering: %q", name, m, l)
			}
		}
	}
	return out
}

// checkNginx writes nginx.conf in dir around the rendered servers, has
// nginx -t check it, and returns the arguments that run it.
func checkNginx(t *testing.T, bin, dir string, servers []string) []string {
	t.Helper()
	var conf strings.Builder
	if os.Geteuid() == 0 {
		// As root nginx would run its workers as nobody, who cannot read
		// the test's directory.
		conf.WriteString("user root;\n")
	}
	fmt.Fprintf(&conf, "worker_processes 1;\nevents { worker_connections 256; }\nhttp {\n")
	for _, d := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&conf, "  %s_temp_path %s;\n", d, filepath.Join(dir, d))
	}
	conf.WriteString("  access_log off;\n")
	for i, s := range servers {
		name := filepath.Join(dir, fmt.Sprintf("centre%d.conf", i))
		if err := os.WriteFile(name, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&conf, "  include %s;\n", name)
	}
	conf.WriteString("}\n")
	confPath, errorLog := filepath.Join(dir, "nginx.conf"), filepath.Join(dir, "error.log")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-p", dir, "-c", confPath, "-e", errorLog, "-g", "daemon off; pid " + filepath.Join(dir, "nginx.pid") + ";"}
	if out, err := exec.Command(bin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	return args
}

// startNginx runs nginx as this user in dir with the rendered servers, in
// the foreground, and returns once every listen address answers TLS.
func startNginx(t *testing.T, bin, dir string, servers []string, listen []string, ca *testcert.CA) {
	t.Helper()
	args := checkNginx(t, bin, dir, servers)
	errorLog := filepath.Join(dir, "error.log")
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt) // fast shutdown, then the master exits
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(errorLog)
			t.Logf("nginx error log:\n%s\nnginx output:\n%s", b, stderr.String())
		}
	})
	for _, addr := range listen {
		deadline := time.Now().Add(15 * time.Second)
		for {
			conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
			if err == nil {
				conn.Close()
				break
			}
			select {
			case err := <-exited:
				t.Fatalf("nginx exited: %v\n%s", err, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("nginx does not answer TLS at %s: %v", addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// browser is one person's HTTPS client: a cookie jar, trusting the test CA.
type browser struct {
	t  *testing.T
	hc *http.Client
}

func newBrowser(t *testing.T, ca *testcert.CA) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, hc: &http.Client{
		Jar: jar, Timeout: 20 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends one request; token, if set, is the admin token.
func (b *browser) do(method, url, token string, body any) (*http.Response, []byte) {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

// socket reads JSON frames into a channel so the test can wait for a type.
type socket struct {
	t      *testing.T
	name   string
	conn   *websocket.Conn
	frames chan map[string]any
}

func dial(t *testing.T, ctx context.Context, b *browser, url, origin, name string) *socket {
	t.Helper()
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: b.hc, HTTPHeader: http.Header{"Origin": {origin}}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("%s: dial %s: HTTP %d: %v", name, url, status, err)
	}
	s := &socket{t: t, name: name, conn: conn, frames: make(chan map[string]any, 64)}
	go func() {
		defer close(s.frames)
		for {
			var m map[string]any
			if err := wsjson.Read(ctx, conn, &m); err != nil {
				return
			}
			s.frames <- m
		}
	}()
	t.Cleanup(func() { conn.CloseNow() })
	return s
}

func (s *socket) send(m map[string]any) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := wsjson.Write(ctx, s.conn, m); err != nil {
		s.t.Fatalf("%s: send %v: %v", s.name, m["type"], err)
	}
}

func (s *socket) expect(typ string) map[string]any {
	s.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-s.frames:
			if !ok {
				s.t.Fatalf("%s: socket closed waiting for %q", s.name, typ)
			}
			if m["type"] == typ {
				return m
			}
		case <-timeout:
			s.t.Fatalf("%s: no %q within 20 s", s.name, typ)
		}
	}
}

// Two centres, each with its public and staff listeners apart and nginx
// (rendered from helpmesh.conf) in front of both sides over HTTPS:
//
//   - a volunteer of c2 is registered, enrols and logs in through c2's
//     staff side; the session cookie is Secure (X-Forwarded-Proto from a
//     trusted proxy), HttpOnly and SameSite=Strict, and the console's
//     WebSocket opens through nginx;
//   - a visitor opens the chat through c1's public side, where no volunteer
//     is signed in: it overflows to the volunteer at c2, and text flows both
//     ways through nginx, c1, the libp2p stream, c2 and nginx again;
//   - through the public side the staff, admin and metrics paths answer 404,
//     and through the staff side they are served.
func TestNginxInFrontOfTwoCentres(t *testing.T) {
	bin := nginxBinary(t)
	begin := time.Now()
	root := t.TempDir()
	ca, err := testcert.NewCA("helpmesh nginx test ca")
	if err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(root, "cert.pem"), filepath.Join(root, "key.pem")
	if _, err := ca.Issue(cert, key, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}

	local := centre.Local{Root: filepath.Join(root, "centres"), Timing: timing.Test, Logger: slog.New(slog.DiscardHandler),
		Web: func(string, int) node.WebConfig {
			return node.WebConfig{StaffAddr: "127.0.0.1:0", TrustedProxies: []string{"127.0.0.1"}}
		}}
	f := fedtest.Start(t, local.Driver(), 2)
	c1, c2 := f.Member("c1"), f.Member("c2")

	var proxied [2]sides
	var servers, listen []string
	for i, c := range []*centre.Centre{c1, c2} {
		s := sides{
			public:     fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t)),
			staff:      fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t)),
			nodePublic: c.Addr(), nodeStaff: c.StaffAddr(),
		}
		if s.nodeStaff == "" {
			t.Fatalf("%s has no staff listener", c.Node().Centre())
		}
		proxied[i] = s
		servers = append(servers, render(t, s, cert, key))
		listen = append(listen, s.public, s.staff)
	}
	nginxDir := filepath.Join(root, "nginx")
	if err := os.MkdirAll(nginxDir, 0o700); err != nil {
		t.Fatal(err)
	}
	startNginx(t, bin, nginxDir, servers, listen, ca)
	public1, staff2 := "https://"+proxied[0].public, "https://"+proxied[1].staff
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// (b) The volunteer, all through c2's staff side.
	admin := newBrowser(t, ca)
	token2, err := node.LoadAdminToken(filepath.Join(root, "centres", "c2"))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := admin.do(http.MethodPost, staff2+"/v1/volunteers", token2, map[string]any{
		"id": "c2-kari", "centre": "c2", "alias": "Kari", "channels": []string{"chat"}, "languages": []string{"nb"},
		"capacity": 1, "role": "volunteer",
	})
	var enrolment struct {
		Code string `json:"enrolment_code"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &enrolment) != nil || enrolment.Code == "" {
		t.Fatalf("register the volunteer through nginx: %s %s", resp.Status, body)
	}
	kari := newBrowser(t, ca)
	const password = "a long enough password"
	if resp, body := kari.do(http.MethodPost, staff2+"/v1/volunteer/enrol", "", map[string]string{
		"volunteer": "c2-kari", "code": enrolment.Code, "password": password}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("enrol through nginx: %s %s", resp.Status, body)
	}
	resp, body = kari.do(http.MethodPost, staff2+"/v1/volunteer/login", "", map[string]string{"volunteer": "c2-kari", "password": password})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("login through nginx: %s %s", resp.Status, body)
	}
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "helpmesh_session" {
			session = c
		}
	}
	if session == nil || !session.Secure || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Fatalf("the session cookie through nginx: %q, want Secure, HttpOnly, SameSite=Strict", resp.Header.Values("Set-Cookie"))
	}
	console := dial(t, ctx, kari, "wss://"+proxied[1].staff+"/v1/console", staff2, "console")
	console.expect("availability")
	console.send(map[string]any{"type": "available", "channel": "chat", "on": true})

	// c1 overflows only once gossip has carried c2's free volunteer; its
	// public page says so (volunteers_free), through nginx as well.
	visitorBrowser := newBrowser(t, ca)
	fedtest.Eventually(t, 20*time.Second, "c1's public page sees a volunteer free", func() bool {
		resp, body := visitorBrowser.do(http.MethodGet, public1+"/v1/info", "", nil)
		var info struct {
			Free bool `json:"volunteers_free"`
		}
		return resp.StatusCode == http.StatusOK && json.Unmarshal(body, &info) == nil && info.Free
	})

	// (a) The visitor at c1's public side; nobody at c1.
	visitor := dial(t, ctx, visitorBrowser, "wss://"+proxied[0].public+"/v1/chat?channel=chat&lang=nb", public1, "visitor")
	offer := console.expect("offer")
	if offer["from_centre"] != "c1" {
		t.Fatalf("offer %v, want one from c1", offer)
	}
	contact, _ := offer["contact"].(string)
	console.send(map[string]any{"type": "accept", "contact": contact})
	if m := visitor.expect("connected"); m["alias"] != "Kari" {
		t.Fatalf("visitor connected to %v, want Kari", m)
	}
	console.expect("connected")
	visitor.send(map[string]any{"type": "message", "id": "m1", "text": "hello through nginx"})
	if m := console.expect("message"); m["text"] != "hello through nginx" {
		t.Fatalf("the volunteer got %v", m)
	}
	console.send(map[string]any{"type": "message", "contact": contact, "id": "r1", "text": "hello back from c2"})
	if m := visitor.expect("message"); m["text"] != "hello back from c2" {
		t.Fatalf("the visitor got %v", m)
	}
	visitor.send(map[string]any{"type": "end"})
	visitor.expect("ended")

	// (c) What faces whom, through nginx: each staff path once through the
	// public side (404, as a path that does not exist) and once through the
	// staff side (served: 200, or the handler's own refusal without a
	// token, body or session).
	token1, err := node.LoadAdminToken(filepath.Join(root, "centres", "c1"))
	if err != nil {
		t.Fatal(err)
	}
	staff1 := "https://" + proxied[0].staff
	for _, c := range []struct {
		method, path string
		staff        int // status on the staff side
	}{
		{http.MethodGet, "/metrics", http.StatusOK},
		{http.MethodPost, "/v1/volunteers", http.StatusUnauthorized},
		{http.MethodPut, "/v1/policy", http.StatusUnauthorized},
		{http.MethodGet, "/v1/roster", http.StatusUnauthorized},
		{http.MethodGet, "/overview", http.StatusOK},
		{http.MethodGet, "/console", http.StatusOK},
		{http.MethodGet, "/enrol", http.StatusOK},
		{http.MethodPost, "/v1/volunteer/login", http.StatusUnsupportedMediaType},
		{http.MethodGet, "/v1/volunteer/session", http.StatusUnauthorized},
		{http.MethodGet, "/v1/console", http.StatusUnauthorized},
	} {
		if resp, _ := admin.do(c.method, public1+c.path, "", nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s through the public side: %s, want 404", c.method, c.path, resp.Status)
		}
		if resp, _ := admin.do(c.method, staff1+c.path, "", nil); resp.StatusCode != c.staff {
			t.Errorf("%s %s through the staff side: %s, want %d", c.method, c.path, resp.Status, c.staff)
		}
	}
	// With the token, the admin API answers through the staff side only.
	if resp, _ := admin.do(http.MethodGet, staff1+"/v1/roster", token1, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/roster with the token through the staff side: %s", resp.Status)
	}
	if resp, _ := admin.do(http.MethodGet, public1+"/v1/roster", token1, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /v1/roster with the token through the public side: %s, want 404", resp.Status)
	}
	// And the visitor's paths are served on the public side.
	for _, p := range []string{"/chat", "/widget.js", "/static/chat.css", "/i18n/en.json", "/v1/info", "/readyz"} {
		if resp, _ := admin.do(http.MethodGet, public1+p, "", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s through the public side: %s", p, resp.Status)
		}
	}
	t.Logf("two centres, nginx, an overflowed chat and the path checks took %v", time.Since(begin).Round(time.Millisecond))
}
