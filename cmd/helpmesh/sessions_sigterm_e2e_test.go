package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
)

// TestBinarySessionsSurviveSIGTERM restarts the real binary as a rolling
// upgrade does (SIGTERM, drain, start on the same data directory): a
// signed-in volunteer's session opens the console again without a login,
// and a session logged out before the restart stays dead after it.
func TestBinarySessionsSurviveSIGTERM(t *testing.T) {
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "bergen")
	addr := fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t))
	run(t, bin, "init", "--dir", dir, "--centre", "bergen", "--name", "Bergen", "--http", addr,
		"--p2p", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", fedtest.FreePort(t)), "--gossip", fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t)))
	begin := time.Now()
	first := start(t, bin, "run", "--dir", dir)
	waitReady(t, addr)

	status, body := httpDo(t, http.MethodPost, addr, "/v1/volunteers", dir,
		`{"id":"bergen-kari","centre":"bergen","alias":"Kari","channels":["chat"],"languages":["nb"],"capacity":1,"role":"volunteer"}`)
	var written struct {
		Code string `json:"enrolment_code"`
	}
	if status != http.StatusOK || json.Unmarshal([]byte(body), &written) != nil {
		t.Fatalf("register Kari: %d %s", status, body)
	}
	const password = "a long enough password"
	stay, gone := newSessionClient(t), newSessionClient(t)
	stay.post(t, addr, "/v1/volunteer/enrol", fmt.Sprintf(`{"volunteer":"bergen-kari","code":%q,"password":%q}`, written.Code, password), http.StatusNoContent)
	login := fmt.Sprintf(`{"volunteer":"bergen-kari","password":%q}`, password)
	stay.post(t, addr, "/v1/volunteer/login", login, http.StatusNoContent)
	gone.post(t, addr, "/v1/volunteer/login", login, http.StatusNoContent)
	gone.post(t, addr, "/v1/volunteer/logout", "", http.StatusNoContent)

	// The restart: SIGTERM (a drain, then exit 0), then the same directory.
	t.Logf("signed in and out, %v after the start", time.Since(begin).Round(time.Millisecond))
	if err := first.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the centre did not stop within 30 s of SIGTERM")
	}
	if code := first.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("the centre exited %d after SIGTERM, want 0", code)
	}
	t.Logf("stopped after SIGTERM, %v after the start", time.Since(begin).Round(time.Millisecond))
	start(t, bin, "run", "--dir", dir)
	waitReady(t, addr)

	if got := stay.session(t, addr); got != http.StatusOK {
		t.Fatalf("the signed-in session after the restart: HTTP %d, want 200", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+addr+"/v1/console", &websocket.DialOptions{HTTPClient: stay.hc, HTTPHeader: http.Header{"Origin": {"http://" + addr}}})
	if err != nil {
		t.Fatalf("the console with the kept session after the restart: %v (%v)", err, resp)
	}
	c.CloseNow()
	if got := gone.session(t, addr); got != http.StatusUnauthorized {
		t.Fatalf("the logged-out session after the restart: HTTP %d, want 401", got)
	}
}

// sessionClient is one browser: its own cookie jar.
type sessionClient struct{ hc *http.Client }

func newSessionClient(t *testing.T) *sessionClient {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &sessionClient{hc: &http.Client{Jar: jar, Timeout: 20 * time.Second}}
}

func (v *sessionClient) post(t *testing.T, addr, path, body string, want int) {
	t.Helper()
	resp, err := v.hc.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("POST %s: HTTP %d, want %d", path, resp.StatusCode, want)
	}
}

func (v *sessionClient) session(t *testing.T, addr string) int {
	t.Helper()
	resp, err := v.hc.Get("http://" + addr + "/v1/volunteer/session")
	if err != nil {
		t.Fatalf("GET /v1/volunteer/session: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
