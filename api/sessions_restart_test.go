package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
)

// pageLogin logs id in at pc over HTTP and returns the session cookie.
func pageLogin(t *testing.T, pc *pageCentre, id, password string) *http.Cookie {
	t.Helper()
	b, _ := json.Marshal(LoginRequest{Volunteer: id, Password: password})
	resp, err := http.Post(pc.url+"/v1/volunteer/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("login %s: HTTP %d %s", id, resp.StatusCode, body)
	}
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			return c
		}
	}
	t.Fatalf("login %s set no cookie", id)
	return nil
}

// pageCall sends a bodiless request with cookie and returns status and body.
func pageCall(t *testing.T, pc *pageCentre, method, path string, cookie *http.Cookie) (int, string) {
	t.Helper()
	status, b := cookieCall(t, pc, method, path, cookie, nil)
	return status, string(b)
}

// openConsoleWith dials pc's console with cookie: the socket and its first
// frame's type, or the refusal's status and body.
func openConsoleWith(t *testing.T, pc *pageCentre, cookie *http.Cookie) (conn *websocket.Conn, first string, status int, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}}
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(pc.url, "http")+"/v1/console", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial console: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		return nil, "", resp.StatusCode, string(b)
	}
	_, msg, err := conn.Read(ctx)
	if err != nil {
		t.Fatalf("console's first frame: %v", err)
	}
	var f struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(msg, &f)
	return conn, f.Type, http.StatusSwitchingProtocols, ""
}

// consoleAfterRestart opens the console with cookie once the restarted
// centre can serve it: a 503 (switchboard not yet running) or a roster
// that has not caught up yet is waited out; "log in first" is final.
func consoleAfterRestart(t *testing.T, pc *pageCentre, cookie *http.Cookie) (*websocket.Conn, int, string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, first, status, body := openConsoleWith(t, pc, cookie)
		switch {
		case conn != nil:
			if first != "policy" {
				t.Fatalf("console's first frame %q, want policy", first)
			}
			return conn, status, body
		case strings.Contains(body, "log in first"), time.Now().After(deadline):
			return nil, status, body
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A real centre stopped and started on the same data directory: a live
// session's cookie opens the console again without a login; sessions ended
// by logout, logout everywhere and by the staff stay ended; the sessions
// file holds no token.
func TestSessionsSurviveCentreRestart(t *testing.T) {
	fed := newPageFederation(t, 1)
	pc := fed.Member("c1")
	for _, id := range []string{"v-kari", "v-ola", "v-ida"} {
		staffEnrol(t, pc, consensus.Volunteer{ID: id, Centre: "c1", Alias: id, Channels: []string{"chat"},
			Languages: []string{"nb"}, Capacity: 1, Role: "volunteer"}, "correct horse battery")
	}
	live := pageLogin(t, pc, "v-kari", "correct horse battery")
	loggedOut := pageLogin(t, pc, "v-kari", "correct horse battery")
	olaHere, olaThere := pageLogin(t, pc, "v-ola", "correct horse battery"), pageLogin(t, pc, "v-ola", "correct horse battery")
	ida := pageLogin(t, pc, "v-ida", "correct horse battery")

	conn, first, status, body := openConsoleWith(t, pc, live)
	if conn == nil || first != "policy" {
		t.Fatalf("console before the restart: %d %s %q", status, body, first)
	}
	if st, b := pageCall(t, pc, http.MethodPost, "/v1/volunteer/logout", loggedOut); st != http.StatusNoContent {
		t.Fatalf("logout: %d %s", st, b)
	}
	if st, b := pageCall(t, pc, http.MethodPost, "/v1/volunteer/logout?everywhere=1", olaHere); st != http.StatusNoContent {
		t.Fatalf("logout everywhere: %d %s", st, b)
	}
	var ended SessionsEnded
	staffAdmin(t, pc, http.MethodDelete, "/v1/volunteers/v-ida/sessions", nil, &ended)
	if ended != (SessionsEnded{Volunteer: "v-ida", Ended: 1}) {
		t.Fatalf("staff ended %+v", ended)
	}

	var file []byte
	var err error
	fed.Stop("c1") // as on SIGTERM: the console gets "the centre is shutting down"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	var msg []byte
	for !bytes.Contains(msg, []byte(`"closed"`)) {
		if _, msg, err = conn.Read(ctx); err != nil {
			t.Fatalf("console: no closed frame before the socket ended: %v", err)
		}
	}
	cancel()
	if !strings.Contains(string(msg), "the centre is shutting down") {
		t.Fatalf("console's last frame %s", msg)
	}
	file, err = os.ReadFile(filepath.Join(pc.node.DataDir(), SessionsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*http.Cookie{live, loggedOut, olaHere, olaThere, ida} {
		if bytes.Contains(file, []byte(c.Value)) {
			t.Fatalf("the sessions file holds a token: %s", file)
		}
	}
	if _, f := readSessionFile(t, pc.node.DataDir()); len(f.Sessions) != 1 {
		t.Fatalf("%d sessions on disk, want 1 (kari's live one)", len(f.Sessions))
	}

	pc = fed.Restart("c1")
	conn, status, body = consoleAfterRestart(t, pc, live)
	if conn == nil {
		t.Fatalf("the live session's console after the restart: HTTP %d %s", status, body)
	}
	_ = conn.CloseNow()
	if st, b := pageCall(t, pc, http.MethodGet, "/v1/volunteer/session", live); st != http.StatusOK || !strings.Contains(b, `"v-kari"`) {
		t.Fatalf("session after the restart: %d %s", st, b)
	}
	for name, c := range map[string]*http.Cookie{"logged out": loggedOut, "logged out everywhere (this one)": olaHere,
		"logged out everywhere (the other)": olaThere, "ended by the staff": ida} {
		if conn, status, body := consoleAfterRestart(t, pc, c); conn != nil || status != http.StatusUnauthorized {
			t.Fatalf("%s: the console after the restart: HTTP %d %s, want 401", name, status, body)
		}
		if st, b := pageCall(t, pc, http.MethodGet, "/v1/volunteer/session", c); st != http.StatusUnauthorized {
			t.Fatalf("%s: session after the restart: %d %s, want 401", name, st, b)
		}
	}
}

// The console page, signed in, rides out a restart of its centre: it
// reconnects with its cookie and never shows the login form.
func TestConsolePageReconnectsAfterRestart(t *testing.T) {
	fed := newPageFederation(t, 1)
	pc := fed.Member("c1")
	staffEnrol(t, pc, consensus.Volunteer{ID: "v-kari", Centre: "c1", Alias: "Kari", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 1, Role: "volunteer"}, "correct horse battery")
	ctx := newBrowser(t)
	consoleLogin(t, ctx, pc, "v-kari", "correct horse battery")
	// Record whether the login form is ever shown from now on.
	browsertest.Run(t, ctx, "watch the login form", chromedp.Evaluate(`window.__loginShown = false;
		new MutationObserver(() => { if (!document.querySelector('#login').hidden) window.__loginShown = true; })
		  .observe(document.querySelector('#login'), { attributes: true });`, nil))

	addr := pc.srv.Addr()
	fed.Stop("c1")
	browsertest.Wait(t, ctx, "reconnecting", `/Reconnecting/.test(document.querySelector('#status').textContent)`, 15*time.Second)
	pc = fed.RestartWith("c1", func(c *pageConfig) { c.api = addr })
	browsertest.Wait(t, ctx, "reconnected", `/Reconnected/.test(document.querySelector('#announce').textContent) && !document.querySelector('#desk').hidden`, 60*time.Second)
	var shown bool
	browsertest.Eval(t, ctx, `window.__loginShown`, &shown)
	if shown {
		t.Fatal("the console showed the login form during the restart")
	}
	// The reconnected console is live: it goes available.
	browsertest.Run(t, ctx, "go available", chromedp.Click("#available-chat", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "available for chat", `document.querySelector('#available-chat').checked && /Available for chat/.test(document.querySelector('#load').textContent)`, 10*time.Second)

	// An ended session is final: the page shows the form, no reconnect.
	staffAdmin(t, pc, http.MethodDelete, "/v1/volunteers/v-kari/sessions", nil, nil)
	browsertest.Wait(t, ctx, "the login form", `!document.querySelector('#login').hidden && document.querySelector('#desk').hidden`, 15*time.Second)
}
