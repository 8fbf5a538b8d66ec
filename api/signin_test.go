package api

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
)

// Logout everywhere closes the console opened with another of the
// volunteer's sessions and ends them all; its parameter and the staff's
// endpoint refuse what they do not know.
func TestLogoutEverywhere(t *testing.T) {
	rig := newChatRig(t, nil)
	desk := rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")
	phone := sessionCookie(t, rig.login("v1", "correct horse battery"))
	rig.addVolunteer(testVolunteer("b1", "bergen", "Per", 1))
	cookie := func(c *http.Cookie) http.Header { return http.Header{"Cookie": {c.Name + "=" + c.Value}} }

	wantError(t, "everywhere=yes", rig.call("POST", "/v1/volunteer/logout?everywhere=yes", nil, cookie(phone)), 400, "bad_request")
	wantError(t, "another centre's volunteer", rig.call("DELETE", "/v1/volunteers/b1/sessions", nil, rig.adminHeader()), 404, "not_found")
	if rep := rig.call("GET", "/v1/volunteer/session", nil, cookie(desk)); rep.status != 200 {
		t.Fatalf("session: %d %s", rep.status, rep.body)
	}

	con := rig.console("console", desk)
	con.expect("policy")
	if rep := rig.call("POST", "/v1/volunteer/logout?everywhere=1", nil, cookie(phone)); rep.status != http.StatusNoContent {
		t.Fatalf("logout everywhere: %d %s", rep.status, rep.body)
	}
	if cl := con.expect("closed"); cl.Reason != "logged out everywhere" {
		t.Fatalf("closed frame %s", cl.raw)
	}
	con.expectClose(websocket.StatusPolicyViolation)
	for _, c := range []*http.Cookie{desk, phone} {
		wantError(t, "session after logout everywhere", rig.call("GET", "/v1/volunteer/session", nil, cookie(c)), 401, "unauthorized")
	}
}

// A stranger hammering GET /v1/volunteer/session with made-up cookies
// (2000 requests from 8 connections at once) gets 401 each, at the cost
// of a hash and a look-up: a signed-in volunteer's session answers 200
// throughout, and the sessions file is never written by the flood.
func TestSessionCheckFloodCostsOthersNothing(t *testing.T) {
	rig := newChatRig(t, nil)
	desk := rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")
	file := filepath.Join(rig.centre.dir, SessionsFile)
	before, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	var refused, other atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 250 {
				req, _ := http.NewRequest(http.MethodGet, rig.url+"/v1/volunteer/session", nil)
				req.AddCookie(&http.Cookie{Name: SessionCookie, Value: fmt.Sprintf("made-up-%d-%d", w, i)})
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusUnauthorized {
					refused.Add(1)
				} else {
					other.Add(1)
				}
			}
		})
	}
	cookie := http.Header{"Cookie": {desk.Name + "=" + desk.Value}}
	for range 20 {
		if rep := rig.call("GET", "/v1/volunteer/session", nil, cookie); rep.status != http.StatusOK {
			t.Fatalf("the volunteer's session during the flood: %d %s", rep.status, rep.body)
		}
	}
	wg.Wait()
	if refused.Load() != 2000 || other.Load() != 0 {
		t.Fatalf("the flood: %d refused with 401, %d otherwise; want 2000 and 0", refused.Load(), other.Load())
	}
	after, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Fatalf("the sessions file was written during the flood: %v %d -> %v %d", before.ModTime(), before.Size(), after.ModTime(), after.Size())
	}
}
