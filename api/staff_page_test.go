package api

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
)

// cookieCall sends one request to pc with cookie and an optional JSON body.
func cookieCall(t *testing.T, pc *pageCentre, method, path string, cookie *http.Cookie, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, pc.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.AddCookie(cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Two real centres. A supervisor and a coordinator of c1 log in as
// volunteers do. The supervisor cannot touch c2's volunteer (403 naming
// the reason) nor change the policy; the coordinator can, and the policy
// reaches c2. The audit log is kept where the action was taken: c1's
// file has the entries, c2's has none of them. In Chromium, the
// supervisor's session opens the overview without the admin token, adds a
// volunteer with its form, and the audit table shows the action at once.
func TestStaffAccountsAcrossCentresAndTheOverviewsAuditLog(t *testing.T) {
	f := newPageFederation(t, 2)
	c1, c2 := f.Member("c1"), f.Member("c2")
	person := func(id, centre, role string) consensus.Volunteer {
		return consensus.Volunteer{ID: id, Centre: centre, Alias: "Staff " + id, Channels: []string{"chat"},
			Languages: []string{"nb"}, Capacity: 1, Role: role}
	}
	const supPw, coordPw = "supervisor pass 1", "coordinator pass 2"
	staffEnrol(t, c1, person("sup1", "c1", consensus.RoleSupervisor), supPw)
	staffEnrol(t, c1, person("coord1", "c1", consensus.RoleCoordinator), coordPw)
	staffEnrol(t, c2, person("v-c2", "c2", consensus.RoleVolunteer), "correct horse battery")
	for _, pc := range []*pageCentre{c1, c2} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			r := pc.node.Roster()
			if r.Volunteers["v-c2"].ID != "" && r.Volunteers["coord1"].ID != "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's roster lacks the staff and v-c2 after 15 s", pc.node.Centre())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	sup := pageLogin(t, c1, "sup1", supPw)
	coord := pageLogin(t, c1, "coord1", coordPw)

	status, body := cookieCall(t, c1, http.MethodDelete, "/v1/volunteers/v-c2/sessions", sup, nil)
	if status != http.StatusForbidden || !strings.Contains(string(body), "a supervisor manages only c1's volunteers; v-c2 belongs to c2") {
		t.Fatalf("supervisor of c1 ends c2's volunteer's sessions: %d %s", status, body)
	}
	status, body = cookieCall(t, c1, http.MethodPatch, "/v1/policy", sup, map[string]int{"service_level_seconds": 30})
	if status != http.StatusForbidden || !strings.Contains(string(body), `"coordinator role needed to change the national policy"`) {
		t.Fatalf("supervisor PATCH /v1/policy: %d %s", status, body)
	}
	status, body = cookieCall(t, c1, http.MethodPatch, "/v1/policy", coord, map[string]int{"service_level_seconds": 30})
	if status != http.StatusOK {
		t.Fatalf("coordinator PATCH /v1/policy: %d %s", status, body)
	}
	version := c1.node.Roster().Policy.Version()
	deadline := time.Now().Add(15 * time.Second)
	for c2.node.Roster().Policy.ServiceLevelSeconds != 30 {
		if time.Now().After(deadline) {
			t.Fatal("c2 did not get the coordinator's policy in 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Kept at the acting centre only.
	a1, err := os.ReadFile(filepath.Join(c1.node.DataDir(), AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := `"actor":"coord1","role":"coordinator","action":"policy.patch","target":"` + version + `","status":200`; !bytes.Contains(a1, []byte(want)) {
		t.Errorf("c1's audit log lacks %s:\n%s", want, a1)
	}
	if bytes.Contains(a1, []byte(`"status":403`)) {
		t.Errorf("c1's audit log holds a refusal (refusals are counted, not written):\n%s", a1)
	}
	a2, _ := os.ReadFile(filepath.Join(c2.node.DataDir(), AuditFile))
	if bytes.Contains(a2, []byte("sup1")) || bytes.Contains(a2, []byte("coord1")) {
		t.Errorf("c2's audit log holds c1's staff actions:\n%s", a2)
	}

	// The overview with the supervisor's session.
	ctx := newBrowser(t)
	consoleLogin(t, ctx, c1, "sup1", supPw)
	browsertest.Run(t, ctx, "open the overview", chromedp.Navigate(c1.url+"/overview"))
	browsertest.Wait(t, ctx, "the overview without a token", `!document.querySelector('#view').hidden && document.querySelector('#token-form').hidden`, 15*time.Second)
	browsertest.Wait(t, ctx, "the audit table with the earlier entries",
		`document.querySelector('#audit tbody tr[data-actor="coord1"][data-action="policy.patch"]') !== null`, 15*time.Second)
	browsertest.Wait(t, ctx, "the form knows its centre", `document.querySelector('#volunteers tbody tr[data-volunteer="sup1"]') !== null`, 15*time.Second)
	browsertest.Run(t, ctx, "add a volunteer with the form",
		chromedp.SendKeys("#nv-id", "v-nora", chromedp.ByQuery),
		chromedp.SendKeys("#nv-alias", "Nora", chromedp.ByQuery),
		chromedp.SendKeys("#nv-languages", "nb", chromedp.ByQuery),
		chromedp.Click("#nv-submit", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "the supervisor's action in the audit table",
		`(() => { const r = document.querySelector('#audit tbody tr'); return r !== null && r.dataset.actor === 'sup1' &&
		  r.dataset.action === 'volunteer.put' && r.textContent.includes('v-nora') && r.textContent.includes('200'); })()`, 15*time.Second)
	var heading string
	browsertest.Eval(t, ctx, `document.querySelector('#audit-title').textContent`, &heading)
	if heading != "Audit log" {
		t.Errorf("the audit section's heading is %q", heading)
	}
	screenshot(t, ctx, "overview-audit")
}
