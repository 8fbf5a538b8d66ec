package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
)

// withCookie is a request header carrying a session cookie.
func withCookie(c *http.Cookie) http.Header {
	return http.Header{"Cookie": {c.Name + "=" + c.Value}}
}

// staffPerson is testVolunteer with a role.
func staffPerson(id, centre, role string) consensus.Volunteer {
	v := testVolunteer(id, centre, "Staff "+id, 1)
	v.Role = role
	return v
}

// readAudit returns the audit log through GET /v1/audit, newest first.
func readAudit(t *testing.T, rig *chatRig, header http.Header) []auditEntry {
	t.Helper()
	rep := rig.call(http.MethodGet, "/v1/audit?limit=500", nil, header)
	if rep.status != http.StatusOK {
		t.Fatalf("GET /v1/audit: %d %s", rep.status, rep.body)
	}
	var out AuditLog
	dec := json.NewDecoder(bytes.NewReader(rep.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("GET /v1/audit answer %s: %v", rep.body, err)
	}
	return out.Entries
}

// hasEntry reports whether entries hold one with actor, action, target and
// status.
func hasEntry(entries []auditEntry, actor, action, target string, status int) bool {
	for _, e := range entries {
		if e.Actor == actor && e.Action == action && e.Target == target && e.Status == status {
			return true
		}
	}
	return false
}

// Roles on the staff API, with the session cookie of a supervisor, a
// coordinator and a volunteer of the centre, and the admin token; while a
// visitor talks with a volunteer. A supervisor registers a volunteer here
// (audited with their id) but cannot change the policy, admit a centre,
// touch another centre's volunteer or a coordinator's account, or give the
// coordinator role: each a 403 naming what is missing, audited as refused.
// A coordinator changes the policy (audited with the version written); a
// volunteer is refused on every staff route; the admin token still works
// (audited as admin-token); a demoted supervisor loses the rights at the
// next request. The audit file holds no password, enrolment code or
// message text.
func TestStaffRolesOnTheAPI(t *testing.T) {
	rig := newChatRig(t, nil)
	const supPw, coordPw, volPw = "supervisor pass 1", "coordinator pass 2", "correct horse battery"
	var codes []string
	signUp := func(v consensus.Volunteer, pw string) *http.Cookie {
		w := rig.addVolunteer(v)
		codes = append(codes, w.EnrolmentCode)
		if rep := rig.enrol(v.ID, w.EnrolmentCode, pw); rep.status != http.StatusNoContent {
			t.Fatalf("enrol %s: %d %s", v.ID, rep.status, rep.body)
		}
		return sessionCookie(t, rig.login(v.ID, pw))
	}
	sup := signUp(staffPerson("sup1", "oslo", consensus.RoleSupervisor), supPw)
	coord := signUp(staffPerson("coord1", "oslo", consensus.RoleCoordinator), coordPw)
	vol := signUp(testVolunteer("v-kari", "oslo", "Kari", 2), volPw)
	// A volunteer of another centre, in this centre's roster.
	if err := rig.centre.Propose(t.Context(), consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpPutVolunteer,
		Volunteer: ptr(testVolunteer("v-bergen", "bergen", "Berit", 1))}); err != nil {
		t.Fatal(err)
	}

	// A visitor talks with Kari through the whole test.
	con := rig.console("console", vol)
	con.expect("policy")
	con.expect("availability")
	con.send(obj{"type": "available", "channel": "chat", "on": true})
	con.expect("availability")
	vis := rig.visitor("visitor", "nb")
	contact := connect(t, vis, con, "Kari")
	const canary = "canary-audit-5be21 jeg vil ikke leve"
	vis.send(obj{"type": "message", "id": "m1", "text": canary})
	if m := con.expect("message"); m.Text != canary {
		t.Fatalf("console got %s", m.raw)
	}

	// The supervisor registers a volunteer of their centre.
	rep := rig.call(http.MethodPost, "/v1/volunteers", testVolunteer("v-new", "oslo", "Nora", 1), withCookie(sup))
	if rep.status != http.StatusOK {
		t.Fatalf("supervisor registers a volunteer: %d %s", rep.status, rep.body)
	}
	var written VolunteerWritten
	if err := json.Unmarshal(rep.body, &written); err != nil || written.EnrolmentCode == "" {
		t.Fatalf("supervisor's registration answer %s: %v", rep.body, err)
	}
	codes = append(codes, written.EnrolmentCode)
	if rep := rig.call(http.MethodPost, "/v1/volunteers/v-new/enrolment", nil, withCookie(sup)); rep.status != http.StatusOK {
		t.Fatalf("supervisor's new enrolment code: %d %s", rep.status, rep.body)
	} else if err := json.Unmarshal(rep.body, &written); err == nil {
		codes = append(codes, written.EnrolmentCode)
	}
	for _, p := range []string{"/v1/roster", "/v1/policy", "/v1/federation", "/v1/audit"} {
		if rep := rig.call(http.MethodGet, p, nil, withCookie(sup)); rep.status != http.StatusOK {
			t.Errorf("supervisor GET %s: %d %s", p, rep.status, rep.body)
		}
	}

	// What a supervisor may not do, each refused naming what is missing.
	coordinatorEntry := staffPerson("sup2", "oslo", consensus.RoleCoordinator)
	for _, tc := range []struct {
		method, path string
		body         any
		action       string
		target       string
		want         string
	}{
		{http.MethodPatch, "/v1/policy", json.RawMessage(`{"service_level_seconds":30}`), "policy.patch", "",
			"coordinator role needed to change the national policy"},
		{http.MethodPut, "/v1/policy", consensus.DefaultPolicy(), "policy.put", "",
			"coordinator role needed to change the national policy"},
		{http.MethodPost, "/v1/centres", consensus.Centre{ID: "tromso", Name: "Tromsø"}, "centre.admit", "tromso",
			"coordinator role needed to admit or remove a centre"},
		{http.MethodDelete, "/v1/centres/bergen", nil, "centre.remove", "bergen",
			"coordinator role needed to admit or remove a centre"},
		{http.MethodPost, "/v1/federation/gossip-key", nil, "gossip_key.rotate", "",
			"coordinator role needed to rotate the federation's gossip key"},
		{http.MethodDelete, "/v1/volunteers/v-bergen", nil, "volunteer.remove", "v-bergen",
			"a supervisor manages only oslo's volunteers; v-bergen belongs to bergen"},
		{http.MethodDelete, "/v1/volunteers/v-bergen/sessions", nil, "volunteer.end_sessions", "v-bergen",
			"a supervisor manages only oslo's volunteers; v-bergen belongs to bergen"},
		{http.MethodPost, "/v1/volunteers", testVolunteer("v-b2", "bergen", "Bo", 1), "volunteer.put", "v-b2",
			"a supervisor manages only oslo's volunteers, not bergen's"},
		{http.MethodPost, "/v1/volunteers", coordinatorEntry, "volunteer.put", "sup2",
			"coordinator role needed to give the coordinator role"},
		{http.MethodPost, "/v1/volunteers/coord1/enrolment", nil, "volunteer.enrolment", "coord1",
			"coordinator role needed to manage a coordinator's account"},
		{http.MethodDelete, "/v1/volunteers/coord1", nil, "volunteer.remove", "coord1",
			"coordinator role needed to manage a coordinator's account"},
		// One supervisor may not take over another's account with a code.
		{http.MethodPost, "/v1/volunteers/sup1/enrolment", nil, "volunteer.enrolment", "sup1",
			"coordinator role needed to manage a supervisor's account"},
		{http.MethodPost, "/v1/volunteers", staffPerson("v-o9", "oslo", consensus.RoleSupervisor), "volunteer.put", "v-o9",
			"coordinator role needed to give the supervisor role"},
	} {
		what := "supervisor " + tc.method + " " + tc.path
		e := wantError(t, what, rig.call(tc.method, tc.path, tc.body, withCookie(sup)), http.StatusForbidden, "forbidden")
		if e.Error != tc.want {
			t.Errorf("%s: %q, want %q", what, e.Error, tc.want)
		}
		// Refusals are counted, not written: a flood of them must not push
		// the real actions out of the log.
		if hasEntry(readAudit(t, rig, withCookie(coord)), "sup1", tc.action, tc.target, http.StatusForbidden) {
			t.Errorf("%s: the refusal was written to the audit log", what)
		}
	}
	if r := rig.centre.Roster(); r.Policy.ServiceLevelSeconds != consensus.DefaultPolicy().ServiceLevelSeconds ||
		r.Volunteers["v-bergen"].ID == "" || r.Volunteers["sup2"].ID != "" || r.Volunteers["v-b2"].ID != "" {
		t.Fatalf("refused requests changed the roster: %+v", r)
	}

	// The coordinator changes the policy.
	rep = rig.call(http.MethodPatch, "/v1/policy", json.RawMessage(`{"service_level_seconds":30}`), withCookie(coord))
	if rep.status != http.StatusOK {
		t.Fatalf("coordinator PATCH /v1/policy: %d %s", rep.status, rep.body)
	}
	version := rig.centre.Roster().Policy.Version()
	if !hasEntry(readAudit(t, rig, withCookie(sup)), "coord1", "policy.patch", version, http.StatusOK) {
		t.Errorf("no audit entry of coord1's policy.patch to version %s", version)
	}

	// A volunteer holds no staff right: 403 on every staff route.
	for _, r := range rig.srv.routes(everyone) {
		if !strings.Contains(r.pattern, "/v1/") || !isStaffRoute(r.pattern) {
			continue
		}
		method, path := sample(r.pattern)
		e := wantError(t, "volunteer "+r.pattern, rig.call(method, path, nil, withCookie(vol)), http.StatusForbidden, "forbidden")
		if !strings.Contains(e.Error, "role needed") {
			t.Errorf("volunteer %s: %q does not name the role needed", r.pattern, e.Error)
		}
	}

	// A session write from another site's page is refused.
	h := withCookie(sup)
	h.Set("Sec-Fetch-Site", "same-site")
	wantError(t, "cross-origin write", rig.call(http.MethodPost, "/v1/volunteers/v-new/enrolment", nil, h), http.StatusForbidden, "forbidden")

	// The admin token keeps every right, audited as admin-token.
	if rep := rig.call(http.MethodDelete, "/v1/volunteers/v-bergen", nil, rig.adminHeader()); rep.status != http.StatusOK {
		t.Fatalf("admin token DELETE /v1/volunteers/v-bergen: %d %s", rep.status, rep.body)
	}
	if !hasEntry(readAudit(t, rig, rig.adminHeader()), adminActor, "volunteer.remove", "v-bergen", http.StatusOK) {
		t.Error("no audit entry of the admin token's removal")
	}
	entries := readAudit(t, rig, rig.adminHeader())
	if !hasEntry(entries, "sup1", "volunteer.put", "v-new", http.StatusOK) {
		t.Error("no audit entry of sup1's registration of v-new")
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Time.After(entries[i-1].Time) {
			t.Fatalf("audit entries not newest first: %v before %v", entries[i-1].Time, entries[i].Time)
		}
	}

	// Demoted, the supervisor loses the rights at the next request.
	demoted := staffPerson("sup1", "oslo", consensus.RoleVolunteer)
	if rep := rig.call(http.MethodPost, "/v1/volunteers", demoted, withCookie(coord)); rep.status != http.StatusOK {
		t.Fatalf("coordinator demotes sup1: %d %s", rep.status, rep.body)
	}
	codes = append(codes, jsonField(rep.body, "enrolment_code"))
	e := wantError(t, "demoted supervisor", rig.call(http.MethodGet, "/v1/roster", nil, withCookie(sup)), http.StatusForbidden, "forbidden")
	if e.Error != rightRead.needs() {
		t.Errorf("demoted supervisor: %q", e.Error)
	}

	// Without credentials: 401.
	wantError(t, "no credentials", rig.call(http.MethodGet, "/v1/audit", nil, nil), http.StatusUnauthorized, "unauthorized")

	// The file: 0600, and nothing secret or said in it.
	path := filepath.Join(rig.centre.dir, AuditFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v, want 0600", path, err, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	secrets := append([]string{supPw, coordPw, volPw, canary, "canary", contact}, codes...)
	for _, c := range codes {
		if c != "" {
			secrets = append(secrets, normaliseCode(c))
		}
	}
	for _, s := range secrets {
		if s != "" && bytes.Contains(b, []byte(s)) {
			t.Errorf("the audit log holds %q", s)
		}
	}
	t.Logf("audit log: %d bytes, %d entries", len(b), bytes.Count(b, []byte("\n")))
}

// isStaffRoute reports whether pattern is one of the routes behind s.staff
// (or, the supervisor console, behind the same role check).
func isStaffRoute(pattern string) bool {
	for _, p := range []string{"/v1/federation", "/v1/roster", "/v1/audit", "/v1/centres", "/v1/policy", "/v1/volunteers", "/v1/supervisor"} {
		_, path, _ := strings.Cut(pattern, " ")
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

func ptr[T any](v T) *T { return &v }

// jsonField returns a top-level string field of a JSON object.
func jsonField(b []byte, field string) string {
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	s, _ := m[field].(string)
	return s
}

// The audit file is bounded: past its limit it becomes audit.log.1 (the
// one before is replaced) and a new file starts; the reader still finds
// the newest entries across both, newest first.
func TestAuditLogRotates(t *testing.T) {
	dir := t.TempDir()
	a, err := openAuditLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	a.max = 1000
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a.now = func() time.Time { at = at.Add(time.Second); return at }
	log := slog.New(slog.DiscardHandler)
	for i := range 60 {
		if err := a.record(log, auditEntry{Actor: "sup1", Role: "supervisor", Action: "volunteer.put", Target: fmt.Sprintf("v%d", i), Status: 200}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{AuditFile, AuditFile + ".1"} {
			if fi, err := os.Stat(filepath.Join(dir, p)); err == nil && fi.Size() > a.max {
				t.Fatalf("%s is %d bytes, over the bound %d", p, fi.Size(), a.max)
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("data directory holds %v, want %s and %s.1", entries, AuditFile, AuditFile)
	}
	for _, e := range entries {
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", e.Name(), fi.Mode().Perm())
		}
	}
	got, err := a.newest(12)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 12 {
		t.Fatalf("newest(12) gave %d entries", len(got))
	}
	for i, e := range got {
		if want := fmt.Sprintf("v%d", 59-i); e.Target != want {
			t.Fatalf("entry %d is %s, want %s (newest first, across the rotation)", i, e.Target, want)
		}
	}
	// The oldest are gone: at most two files' worth is kept.
	all, _ := a.newest(maxAuditLimit)
	if len(all) >= 60 || all[len(all)-1].Target == "v0" {
		t.Fatalf("kept %d entries down to %s; the rotation should have dropped the oldest", len(all), all[len(all)-1].Target)
	}
}

// limit is a decimal 1..500 or absent (100); anything else is refused.
func TestParseAuditLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"", defaultAuditLimit, true}, {"1", 1, true}, {"42", 42, true}, {"500", 500, true},
		{"0", 0, false}, {"501", 0, false}, {"-1", 0, false}, {"+5", 0, false}, {"05", 0, false},
		{"1e2", 0, false}, {" 5", 0, false}, {"5 ", 0, false}, {"99999999999999999999", 0, false},
		{"abc", 0, false}, {"0x10", 0, false}, {"٣", 0, false},
	} {
		got, err := parseAuditLimit(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseAuditLimit(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "1 to 500") {
			t.Errorf("parseAuditLimit(%q): %q does not say what is wanted", tc.in, err)
		}
	}
}

// Whatever the query, the limit is refused or within 1..500, and accepted
// exactly when it is the canonical decimal of such a number.
func FuzzAuditLimit(f *testing.F) {
	for _, s := range []string{"", "1", "500", "501", "0", "-3", "007", "1e3", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseAuditLimit(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("refused %q with %d", s, n)
			}
			return
		}
		if s == "" {
			if n != defaultAuditLimit {
				t.Fatalf("default %d", n)
			}
			return
		}
		if n < 1 || n > maxAuditLimit || fmt.Sprint(n) != s {
			t.Fatalf("accepted %q as %d", s, n)
		}
	})
}
