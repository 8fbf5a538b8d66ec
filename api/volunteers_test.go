package api

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

var codePattern = regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$`)

func TestEnrolmentCodeSingleUse(t *testing.T) {
	rig := newChatRig(t, nil)
	w := rig.addVolunteer(testVolunteer("v1", "oslo", "Kari", 1))
	if !codePattern.MatchString(w.EnrolmentCode) {
		t.Fatalf("enrolment code %q is not XXXX-XXXX-XXXX", w.EnrolmentCode)
	}
	if w.EnrolmentExpires == nil || time.Until(*w.EnrolmentExpires) < 71*time.Hour || time.Until(*w.EnrolmentExpires) > 72*time.Hour {
		t.Fatalf("enrolment expires %v, want in 72 h", w.EnrolmentExpires)
	}

	wantError(t, "wrong code", rig.enrol("v1", "AAAA-BBBB-CCCC", "correct horse battery"), 401, "bad_enrolment")
	wantError(t, "short password", rig.enrol("v1", w.EnrolmentCode, "short"), 400, "bad_password")
	wantError(t, "long password", rig.enrol("v1", w.EnrolmentCode, strings.Repeat("x", maxPasswordBytes+1)), 400, "bad_password")
	wantError(t, "another volunteer's code", rig.enrol("v2", w.EnrolmentCode, "correct horse battery"), 401, "bad_enrolment")
	wantError(t, "no code", rig.enrol("v1", "", "correct horse battery"), 400, "bad_request")
	wantError(t, "not JSON", rig.call("POST", "/v1/volunteer/enrol", []byte(`{"volunteer":"v1"`), nil), 400, "bad_request")
	wantError(t, "form post", rig.call("POST", "/v1/volunteer/enrol", nil, http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}), 415, "unsupported_media_type")

	// Refused attempts did not use the code up. Typing is forgiving.
	typed := strings.ToLower(strings.ReplaceAll(w.EnrolmentCode, "-", " "))
	if rep := rig.enrol("v1", typed, "correct horse battery"); rep.status != http.StatusNoContent {
		t.Fatalf("enrol: %d %s", rep.status, rep.body)
	}
	wantError(t, "second use", rig.enrol("v1", w.EnrolmentCode, "another password!"), 401, "bad_enrolment")
	sessionCookie(t, rig.login("v1", "correct horse battery"))
	wantError(t, "second password", rig.login("v1", "another password!"), 401, "unauthorized")

	// A new code replaces the pending one and can reset the password; the
	// old sessions end.
	old := rig.login("v1", "correct horse battery")
	w2 := rig.addVolunteer(testVolunteer("v1", "oslo", "Kari", 2))
	w3 := rig.addVolunteer(testVolunteer("v1", "oslo", "Kari", 2))
	wantError(t, "replaced code", rig.enrol("v1", w2.EnrolmentCode, "a new password"), 401, "bad_enrolment")
	if rep := rig.enrol("v1", w3.EnrolmentCode, "a new password"); rep.status != http.StatusNoContent {
		t.Fatalf("re-enrol: %d %s", rep.status, rep.body)
	}
	if _, resp, err := rig.dial("/v1/console", dialOpts{cookie: sessionCookie(t, old)}); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("console with a session from before the reset: %v, want 401", err)
	}
	wantError(t, "old password", rig.login("v1", "correct horse battery"), 401, "unauthorized")
	sessionCookie(t, rig.login("v1", "a new password"))

	// The admin can issue a new code without a roster write.
	w5 := rig.call("POST", "/v1/volunteers/v1/enrolment", nil, rig.adminHeader())
	var reissued VolunteerWritten
	if err := json.Unmarshal(w5.body, &reissued); err != nil || w5.status != 200 || !codePattern.MatchString(reissued.EnrolmentCode) {
		t.Fatalf("reissue: %d %s", w5.status, w5.body)
	}
	wantError(t, "reissue for another centre's volunteer", rig.call("POST", "/v1/volunteers/b0/enrolment", nil, rig.adminHeader()), 404, "not_found")
	wantError(t, "reissue without the token", rig.call("POST", "/v1/volunteers/v1/enrolment", nil, nil), 401, "unauthorized")
	if rep := rig.enrol("v1", reissued.EnrolmentCode, "a new password"); rep.status != http.StatusNoContent {
		t.Fatalf("enrol with a reissued code: %d %s", rep.status, rep.body)
	}

	// Codes expire after 72 h.
	w4 := rig.addVolunteer(testVolunteer("v4", "oslo", "Ola", 1))
	rig.srv.creds.mu.Lock()
	rig.srv.creds.now = func() time.Time { return time.Now().Add(enrolmentTTL + time.Minute) }
	rig.srv.creds.mu.Unlock()
	wantError(t, "expired code", rig.enrol("v4", w4.EnrolmentCode, "correct horse battery"), 401, "bad_enrolment")

	// A volunteer of another centre gets no code here.
	if w := rig.addVolunteer(testVolunteer("b1", "bergen", "Per", 1)); w.EnrolmentCode != "" || w.EnrolmentExpires != nil {
		t.Fatalf("a Bergen volunteer got an enrolment code at Oslo: %+v", w)
	}

	// The file: 0600, only hashes, and it reloads.
	path := filepath.Join(rig.centre.dir, CredentialsFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	for _, secret := range []string{w.EnrolmentCode, w3.EnrolmentCode, w4.EnrolmentCode, normaliseCode(w4.EnrolmentCode), "a new password", "correct horse"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Fatalf("%s holds %q", path, secret)
		}
	}
	entries, _ := os.ReadDir(rig.centre.dir)
	for _, e := range entries {
		if e.Name() != CredentialsFile && e.Name() != SessionsFile && e.Name() != AuditFile {
			t.Fatalf("data directory holds %v, want only %s, %s and %s", entries, CredentialsFile, SessionsFile, AuditFile)
		}
	}
	// The audit log names the volunteers acted on, never a code or a
	// password.
	ab, err := os.ReadFile(filepath.Join(rig.centre.dir, AuditFile))
	if err != nil || !bytes.Contains(ab, []byte(`"target":"v1"`)) {
		t.Fatalf("%s does not record the enrolment of v1 (%v): %s", AuditFile, err, ab)
	}
	for _, secret := range []string{w.EnrolmentCode, w3.EnrolmentCode, w4.EnrolmentCode, normaliseCode(w4.EnrolmentCode), "a new password", "correct horse"} {
		if bytes.Contains(ab, []byte(secret)) {
			t.Fatalf("%s holds %q", AuditFile, secret)
		}
	}
	roster := rig.call("GET", "/v1/roster", nil, rig.adminHeader())
	if bytes.Contains(roster.body, []byte("hash")) || bytes.Contains(roster.body, []byte("salt")) {
		t.Fatalf("the roster holds credentials: %s", roster.body)
	}
	reloaded, err := openCredStore(rig.centre.dir, cheapArgon)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := reloaded.verify("v1", "a new password", true, false); !ok || err != nil {
		t.Fatalf("reloaded store refuses the password: %v %v", ok, err)
	}

	// Removing the volunteer forgets the credential.
	if rep := rig.call("DELETE", "/v1/volunteers/v1", nil, rig.adminHeader()); rep.status != 200 {
		t.Fatalf("remove: %d %s", rep.status, rep.body)
	}
	b, _ = os.ReadFile(path)
	if bytes.Contains(b, []byte(`"v1"`)) {
		t.Fatalf("%s still holds v1 after removal: %s", path, b)
	}
	// And their sessions.
	if sb, err := os.ReadFile(filepath.Join(rig.centre.dir, SessionsFile)); err != nil || bytes.Contains(sb, []byte(`"v1"`)) {
		t.Fatalf("%s still holds v1's sessions after removal (%v): %s", SessionsFile, err, sb)
	}
	// Expired codes go with the next write.
	if bytes.Contains(b, []byte(`"v4"`)) {
		t.Fatalf("%s still holds v4's expired code: %s", path, b)
	}
}

func TestLoginRefusesWrongPassword(t *testing.T) {
	rig := newChatRig(t, nil)
	rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")
	rig.signUp(testVolunteer("v2", "oslo", "Ola", 1), "another fine password")
	rig.addVolunteer(testVolunteer("b1", "bergen", "Per", 1))
	rig.addVolunteer(testVolunteer("v3", "oslo", "Ida", 1)) // not enrolled yet

	wrong := rig.login("v1", "correct horse battery staple")
	wantError(t, "wrong password", wrong, 401, "unauthorized")
	for _, c := range []struct{ who, id, password string }{
		{"unknown volunteer", "ghost", "correct horse battery"},
		{"another volunteer's password", "v1", "another fine password"},
		{"another centre's volunteer", "b1", "correct horse battery"},
		{"a volunteer not enrolled", "v3", "correct horse battery"},
	} {
		rep := rig.login(c.id, c.password)
		wantError(t, c.who, rep, 401, "unauthorized")
		if !bytes.Equal(rep.body, wrong.body) {
			t.Fatalf("%s answered %s, a wrong password %s: the answer must not tell them apart", c.who, rep.body, wrong.body)
		}
	}
	wantError(t, "no password", rig.login("v1", ""), 400, "bad_request")
	wantError(t, "unknown field", rig.call("POST", "/v1/volunteer/login", []byte(`{"volunteer":"v1","password":"x","remember":true}`), nil), 400, "bad_request")

	rep := rig.login("v1", "correct horse battery")
	c := sessionCookie(t, rep)
	if len(c.Value) != 64 || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Secure || c.MaxAge != 12*3600 {
		t.Fatalf("session cookie %+v", c)
	}
	con := rig.console("console", c)
	con.expect("policy")

	// Logout ends the session and closes its console.
	if rep := rig.call("POST", "/v1/volunteer/logout", nil, http.Header{"Cookie": {c.Name + "=" + c.Value}}); rep.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", rep.status, rep.body)
	}
	if cl := con.expect("closed"); cl.Reason != "logged out" {
		t.Fatalf("closed frame %s", cl.raw)
	}
	con.expectClose(websocket.StatusPolicyViolation)
	if _, resp, err := rig.dial("/v1/console", dialOpts{cookie: c}); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("console after logout: %v, want 401", err)
	}

	// Guessing is slowed: after the free failures even the right password
	// waits (from this address; see TestStrangerCannotLockOutVolunteer).
	for i := range attemptFreeFailures {
		rep := rig.login("v2", "guess number "+string(rune('a'+i)))
		if rep.status != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d %s", i, rep.status, rep.body)
		}
	}
	limited := rig.login("v2", "another fine password")
	wantError(t, "after the burst", limited, 429, "too_many_attempts")
	if limited.header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	// Other volunteers are not affected.
	sessionCookie(t, rig.login("v1", "correct horse battery"))
}

func TestSessionCookieSecureOverTLS(t *testing.T) {
	rig := newChatRig(t, nil)
	rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")
	req := httptest.NewRequest("POST", "https://helpmesh.example/v1/volunteer/login",
		strings.NewReader(`{"volunteer":"v1","password":"correct horse battery"}`))
	req.Header.Set("Content-Type", "application/json")
	req.TLS = &tls.ConnectionState{}
	rec := httptest.NewRecorder()
	rig.srv.Handler().ServeHTTP(rec, req)
	c := sessionCookie(t, httpReply{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()})
	if !c.Secure {
		t.Fatalf("session cookie over TLS is not Secure: %+v", c)
	}
}

func TestCredentialStoreRefusesCorruptFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, CredentialsFile), []byte(`{"version":1,"volunteers":{`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openCredStore(dir, cheapArgon); err == nil {
		t.Fatal("a corrupt credentials file was accepted (and would be overwritten)")
	}
	if _, err := openCredStore("", cheapArgon); err == nil {
		t.Fatal("no data directory accepted")
	}
}

func TestEnrolmentCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := newEnrolmentCode()
		if !codePattern.MatchString(c) || seen[c] {
			t.Fatalf("code %q (seen before: %v)", c, seen[c])
		}
		seen[c] = true
		if normaliseCode(c) != strings.ReplaceAll(c, "-", "") {
			t.Fatalf("normalise %q = %q", c, normaliseCode(c))
		}
	}
	for in, want := range map[string]string{
		"abcd-efgh-jkmn": "ABCDEFGHJKMN", "O0O0 IiLl 1111": "000011111111", "ABCD-EFGH-JKM": "",
		"ABCD-EFGH-JKMU": "", "ÅBCD-EFGH-JKMN": "", strings.Repeat("-", 100): "",
	} {
		if got := normaliseCode(in); got != want {
			t.Errorf("normalise %q = %q, want %q", in, got, want)
		}
	}
}

func TestStartRefusesBadOriginPattern(t *testing.T) {
	c := &deskCentre{id: "oslo", dir: t.TempDir()}
	if _, err := newServer(Config{Centre: c, AdminToken: "x", AllowedOrigins: []string{"[embed.example"}}); err == nil {
		t.Fatal("a malformed origin pattern was accepted")
	}
}
