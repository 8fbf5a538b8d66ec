package api

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// startSplit runs a real node behind a server configured by cfg (Addr,
// StaffAddr, MetricsAddr, TLS); Centre and the token are filled in.
func startSplit(t *testing.T, cfg Config) *Server {
	t.Helper()
	dir := t.TempDir()
	res, err := node.Init(dir, node.FileConfig{Centre: "oslo"})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, node.Config{Centre: "oslo", DataDir: dir, Timing: timing.Test})
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("stop node: %v", err)
		}
	})
	cfg.Centre, cfg.AdminToken = n, res.AdminToken
	srv, err := Start(cfg)
	if err != nil {
		t.Fatalf("start api: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop api: %v", err)
		}
	})
	return srv
}

// sample is a request that reaches route pattern's handler: the method of
// the pattern and a path it matches.
func sample(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.ReplaceAll(path, "{id}", "nobody")
	path = strings.TrimSuffix(path, "{$}")
	switch path {
	case "/static/":
		path = "/static/chat.css"
	case "/i18n/":
		path = "/i18n/en.json"
	}
	return method, path
}

// served sends one request without credentials or body and says whether
// a handler answered it: the mux's own 404 for a path it does not route is
// text/plain, while the API's 404s (an unknown volunteer) are JSON.
func served(t *testing.T, addr, method, path string) (bool, int) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s at %s: %v", method, path, addr, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	routed := resp.StatusCode != http.StatusNotFound || !strings.HasPrefix(string(body), "404 page not found")
	return routed, resp.StatusCode
}

// Three listeners: each serves exactly the rows of the route table that
// face it, and a path of another audience is a 404 as if it did not exist.
// The brief's own list of what must never face the internet is checked by
// name too, so that an edit of the table that exposes one fails here.
func TestListenersServeOnlyTheirFaces(t *testing.T) {
	srv := startSplit(t, Config{Addr: "127.0.0.1:0", StaffAddr: "127.0.0.1:0", MetricsAddr: "127.0.0.1:0"})
	if srv.StaffAddr() == "" || srv.MetricsAddr() == "" || srv.StaffAddr() == srv.Addr() {
		t.Fatalf("addresses: public %q staff %q metrics %q", srv.Addr(), srv.StaffAddr(), srv.MetricsAddr())
	}
	listeners := []struct {
		name  string
		addr  string
		faces face
	}{{"public", srv.Addr(), visitors}, {"staff", srv.StaffAddr(), staff}, {"metrics", srv.MetricsAddr(), scrape}}
	for _, r := range srv.routes(everyone) {
		method, path := sample(r.pattern)
		for _, l := range listeners {
			want := r.faces&l.faces != 0
			if got, status := served(t, l.addr, method, path); got != want {
				t.Errorf("%s %s on the %s listener: served=%v (HTTP %d), want served=%v", method, path, l.name, got, status, want)
			}
		}
	}
	for _, p := range []string{"GET /metrics", "POST /v1/volunteers", "PUT /v1/policy", "GET /v1/roster", "GET /overview",
		"GET /console", "GET /enrol", "POST /v1/volunteer/login", "GET /v1/console", "POST /v1/centres",
		"POST /v1/volunteer/password", "PATCH /v1/policy", "GET /v1/policy", "POST /v1/volunteer/enrol",
		"DELETE /v1/volunteers/x/sessions", "POST /v1/federation/gossip-key", "GET /v1/federation", "GET /v1/audit",
		"GET /supervisor", "GET /v1/supervisor"} {
		method, path := sample(p)
		if got, status := served(t, srv.Addr(), method, path); got || status != http.StatusNotFound {
			t.Errorf("%s on the public listener: HTTP %d, want 404", p, status)
		}
	}
	for _, p := range []string{"GET /chat", "GET /v1/info", "GET /widget.js", "GET /readyz"} {
		method, path := sample(p)
		if got, status := served(t, srv.MetricsAddr(), method, path); got {
			t.Errorf("%s on the metrics listener: HTTP %d, want 404", p, status)
		}
	}
	if _, status := served(t, srv.MetricsAddr(), "GET", "/metrics"); status != http.StatusOK {
		t.Errorf("GET /metrics on the metrics listener: HTTP %d", status)
	}
	// The bare address leads each side to its own page.
	for _, c := range []struct{ addr, want string }{{srv.Addr(), "/chat"}, {srv.StaffAddr(), "/console"}} {
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get("http://" + c.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || loc != c.want {
			t.Errorf("GET / at %s: %d to %q, want 302 to %q", c.addr, resp.StatusCode, loc, c.want)
		}
	}
}

// Without StaffAddr and MetricsAddr there is one listener and it serves
// every row of the table, as before the split.
func TestOneListenerServesEverything(t *testing.T) {
	srv := startSplit(t, Config{Addr: "127.0.0.1:0"})
	if srv.StaffAddr() != "" || srv.MetricsAddr() != "" {
		t.Fatalf("staff %q metrics %q, want none", srv.StaffAddr(), srv.MetricsAddr())
	}
	for _, r := range srv.routes(everyone) {
		method, path := sample(r.pattern)
		if got, status := served(t, srv.Addr(), method, path); !got {
			t.Errorf("%s %s: HTTP %d, not served", method, path, status)
		}
	}
}

// Which listener faces whom for each combination of the settings.
func TestListenerSplit(t *testing.T) {
	type l = listenerSpec
	for _, c := range []struct {
		cfg  Config
		want []l
	}{
		{Config{Addr: "a"}, []l{{"public", "a", everyone, false}}},
		{Config{Addr: "a", TLSCert: "c", TLSKey: "k"}, []l{{"public", "a", everyone, true}}},
		{Config{Addr: "a", StaffAddr: "s"}, []l{{"public", "a", visitors, false}, {"staff", "s", staff | scrape, false}}},
		{Config{Addr: "a", MetricsAddr: "m"}, []l{{"public", "a", visitors | staff, false}, {"metrics", "m", scrape, false}}},
		{Config{Addr: "a", StaffAddr: "s", MetricsAddr: "m", TLSCert: "c", TLSKey: "k"},
			[]l{{"public", "a", visitors, true}, {"staff", "s", staff, true}, {"metrics", "m", scrape, false}}},
	} {
		got := c.cfg.listeners()
		if len(got) != len(c.want) {
			t.Errorf("%+v: %+v, want %+v", c.cfg, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%+v: listener %d is %+v, want %+v", c.cfg, i, got[i], c.want[i])
			}
		}
	}
}
