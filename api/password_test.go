package api

import (
	"net/http"
	"testing"

	"github.com/coder/websocket"
)

// cookieHeader sends c as the request's cookie.
func cookieHeader(c *http.Cookie) http.Header {
	return http.Header{"Cookie": {c.Name + "=" + c.Value}}
}

// sessionAlive reports whether c's session still answers GET
// /v1/volunteer/session with 200.
func (r *chatRig) sessionAlive(c *http.Cookie) bool {
	r.t.Helper()
	rep := r.call(http.MethodGet, "/v1/volunteer/session", nil, cookieHeader(c))
	if rep.status != http.StatusOK && rep.status != http.StatusUnauthorized {
		r.t.Fatalf("GET /v1/volunteer/session: %d %s", rep.status, rep.body)
	}
	return rep.status == http.StatusOK
}

func (r *chatRig) changePassword(c *http.Cookie, current, next string) httpReply {
	r.t.Helper()
	return r.call(http.MethodPost, "/v1/volunteer/password", PasswordChange{Current: current, New: next}, cookieHeader(c))
}

// A volunteer changes their own password: a wrong current password and a
// weak new one are refused naming the field and the rule; a right change
// ends their other sessions (and closes the console opened with one)
// while the session that made it lives on; the old password no longer
// opens a session, the new one does; another volunteer is untouched.
func TestVolunteerChangesPassword(t *testing.T) {
	rig := newChatRig(t, nil)
	here := rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")
	other := sessionCookie(t, rig.login("v1", "correct horse battery"))
	third := sessionCookie(t, rig.login("v1", "correct horse battery"))
	bystander := rig.signUp(testVolunteer("v2", "oslo", "Ola", 1), "another fine password")
	con := rig.console("console on another session", other)
	con.expect("policy")

	e := wantError(t, "wrong current", rig.changePassword(here, "wrong horse battery", "a brand new password"), 403, "wrong_password")
	if e.Field != "current" {
		t.Errorf("wrong current names field %q, want current", e.Field)
	}
	e = wantError(t, "weak new", rig.changePassword(here, "correct horse battery", "short"), 400, "bad_password")
	if e.Field != "new" || e.Error != "the password must have at least 10 characters" {
		t.Errorf("weak new: %+v, want field new and the enrolment's rule", e)
	}
	e = wantError(t, "same password", rig.changePassword(here, "correct horse battery", "correct horse battery"), 400, "bad_password")
	if e.Field != "new" {
		t.Errorf("same password names field %q", e.Field)
	}
	if e := wantError(t, "no current", rig.changePassword(here, "", "a brand new password"), 400, "bad_request"); e.Field != "current" {
		t.Errorf("no current names field %q", e.Field)
	}
	wantError(t, "no session", rig.call(http.MethodPost, "/v1/volunteer/password", PasswordChange{Current: "correct horse battery", New: "a brand new password"}, nil), 401, "unauthorized")
	wantError(t, "form post", rig.call(http.MethodPost, "/v1/volunteer/password", []byte(`current=a&new=b`),
		http.Header{"Cookie": cookieHeader(here)["Cookie"], "Content-Type": {"application/x-www-form-urlencoded"}}), 415, "unsupported_media_type")
	wantError(t, "unknown field", rig.call(http.MethodPost, "/v1/volunteer/password", []byte(`{"current":"x","new":"y","confirm":"y"}`), cookieHeader(here)), 400, "bad_request")
	for _, c := range []*http.Cookie{here, other, third} {
		if !rig.sessionAlive(c) {
			t.Fatal("a refused change ended a session")
		}
	}
	sessionCookie(t, rig.login("v1", "correct horse battery"))

	if rep := rig.changePassword(here, "correct horse battery", "a brand new password"); rep.status != http.StatusNoContent {
		t.Fatalf("change: %d %s", rep.status, rep.body)
	}
	if cl := con.expect("closed"); cl.Reason != "your password was changed" {
		t.Fatalf("the other session's console: %s", cl.raw)
	}
	con.expectClose(websocket.StatusPolicyViolation)
	if !rig.sessionAlive(here) {
		t.Fatal("the session that changed the password ended")
	}
	for _, c := range []*http.Cookie{other, third} {
		if rig.sessionAlive(c) {
			t.Fatal("another session outlived the change")
		}
	}
	if !rig.sessionAlive(bystander) {
		t.Fatal("another volunteer's session ended")
	}
	wantError(t, "old password", rig.login("v1", "correct horse battery"), 401, "unauthorized")
	sessionCookie(t, rig.login("v1", "a brand new password"))
	// The session kept still opens a console.
	rig.console("console on the kept session", here).expect("policy")
}

// Guessing the current password through a stolen session is slowed as a
// login is, in the same table: after the free failures even the right
// password waits, and logins of that volunteer from that address too.
func TestPasswordChangeLimitedAsLogin(t *testing.T) {
	rig := newChatRig(t, nil)
	here := rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")
	for i := range attemptFreeFailures {
		wantError(t, "guess", rig.changePassword(here, "guess number "+string(rune('a'+i)), "a brand new password"), 403, "wrong_password")
	}
	limited := rig.changePassword(here, "correct horse battery", "a brand new password")
	wantError(t, "after the burst", limited, 429, "too_many_attempts")
	if limited.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	wantError(t, "login after the guesses", rig.login("v1", "correct horse battery"), 429, "too_many_attempts")
}

// A staff reset (a new enrolment code) ends every session of the volunteer
// once the code is used, and the old password stops working. Issuing the
// code alone ends none: the volunteer may be in a conversation, and a
// code may be reissued for a lost one (DELETE .../sessions ends them at
// once when that is what staff want).
func TestStaffResetEndsEverySession(t *testing.T) {
	rig := newChatRig(t, nil)
	first := rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")
	second := sessionCookie(t, rig.login("v1", "correct horse battery"))
	con := rig.console("console", second)
	con.expect("policy")

	rep := rig.call(http.MethodPost, "/v1/volunteers/v1/enrolment", nil, rig.adminHeader())
	var reset VolunteerWritten
	decodeStrictReply(t, rep, &reset)
	if !rig.sessionAlive(first) || !rig.sessionAlive(second) {
		t.Fatal("issuing a code ended a session")
	}
	if rep := rig.enrol("v1", reset.EnrolmentCode, "a brand new password"); rep.status != http.StatusNoContent {
		t.Fatalf("enrol with the reset code: %d %s", rep.status, rep.body)
	}
	if cl := con.expect("closed"); cl.Reason != "your password was changed" {
		t.Fatalf("console after the reset: %s", cl.raw)
	}
	for _, c := range []*http.Cookie{first, second} {
		if rig.sessionAlive(c) {
			t.Fatal("a session outlived the reset")
		}
	}
	wantError(t, "old password", rig.login("v1", "correct horse battery"), 401, "unauthorized")
	sessionCookie(t, rig.login("v1", "a brand new password"))
}

func decodeStrictReply(t *testing.T, rep httpReply, v any) {
	t.Helper()
	if rep.status != http.StatusOK {
		t.Fatalf("%d %s", rep.status, rep.body)
	}
	decodeStrict(t, rep.body, v)
}
