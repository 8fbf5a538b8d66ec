package api

import (
	"net/http"
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
