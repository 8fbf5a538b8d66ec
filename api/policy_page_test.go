package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
)

// recordPatches makes the page keep the body of every PATCH it sends, in
// window.__patches, so a test can see which fields a save sent.
const recordPatches = `(() => {
  window.__patches = [];
  const f = window.fetch;
  window.fetch = function (u, o) {
    if (o && o.method === 'PATCH') window.__patches.push(JSON.parse(o.body));
    return f.apply(this, arguments);
  };
  return true;
})()`

// lastPatchFields are the top-level fields of the page's last PATCH.
func lastPatchFields(t *testing.T, ctx context.Context) []string {
	t.Helper()
	var fields []string
	browsertest.Eval(t, ctx, `Object.keys(window.__patches[window.__patches.length - 1] || {}).sort()`, &fields)
	return fields
}

// textOf is the text of the element sel in ctx.
func textOf(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	var s string
	browsertest.Eval(t, ctx, `(document.querySelector(`+jsString(sel)+`) || {}).textContent || ''`, &s)
	return s
}

// TestOverviewPolicyForm: a coordinator edits the policy in the overview's
// form. A save sends only the changed fields and lands in GET /v1/policy
// and the roster with every other field as it was; a value the roster
// refuses shows the server's words under that field and changes nothing;
// a change made by someone else between loading and saving is a "changed
// by someone else" message that keeps the edits, overwrites nothing, and
// can put the edits on the current policy to save again.
func TestOverviewPolicyForm(t *testing.T) {
	c := startPageFederation(t, 1)[0]
	ctx := newBrowser(t)
	browsertest.Run(t, ctx, "open the overview", chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(c.url+"/overview"), chromedp.WaitVisible("#token", chromedp.ByQuery),
		chromedp.SendKeys("#token", c.token, chromedp.ByQuery), chromedp.Click("#token-submit", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "the policy in the form", `document.querySelector('#pf-service-level').value === '60' &&
		document.querySelectorAll('#pf-emergency .emergency-row').length === 2 && document.querySelectorAll('#pf-topics input').length === 11`, 20*time.Second)
	var unnamed []string
	browsertest.Eval(t, ctx, accessibleNameProblems, &unnamed)
	if len(unnamed) > 0 {
		t.Errorf("controls without an accessible name: %v", unnamed)
	}
	browsertest.Eval(t, ctx, recordPatches, nil)
	base, _ := getPolicy(t, c.url, c.token)

	// Save: a new service level, and a Norwegian name for 113.
	nbName := `#pf-emergency .emergency-row:nth-child(1) input.name-in[data-lang="nb"]`
	browsertest.Run(t, ctx, "edit and save",
		chromedp.SetValue("#pf-service-level", "45", chromedp.ByQuery),
		chromedp.SendKeys(nbName, "Medisinsk nødhjelp", chromedp.ByQuery),
		chromedp.Click("#policy-save", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "saved", `document.querySelector('#policy-status').getAttribute('data-i18n') === 'overview.policy_saved'`, 15*time.Second)
	if got := lastPatchFields(t, ctx); !slices.Equal(got, []string{"emergency_numbers", "service_level_seconds"}) {
		t.Errorf("the save sent %q, want only the two fields changed", got)
	}
	want := base
	want.ServiceLevelSeconds = 45
	want.EmergencyNumbers = slices.Clone(base.EmergencyNumbers)
	want.EmergencyNumbers[0].Names = map[string]string{"nb": "Medisinsk nødhjelp"}
	saved, savedTag := getPolicy(t, c.url, c.token)
	if saved.Version() != want.Version() {
		g, _ := json.Marshal(saved)
		w, _ := json.Marshal(want)
		t.Fatalf("GET /v1/policy after the save:\n%s\nwant (the rest unchanged):\n%s", g, w)
	}
	waitRoster(t, c.node, "the saved policy in the roster", func(r consensus.Roster) bool { return r.Policy.Version() == want.Version() })

	// Refused values: the server's words under the field, nothing written.
	refused := func(what, input, value, field, says string) {
		t.Helper()
		browsertest.Run(t, ctx, what, chromedp.SetValue(input, value, chromedp.ByQuery), chromedp.Click("#policy-save", chromedp.ByQuery))
		browsertest.Wait(t, ctx, what+": the error at "+field, `document.querySelector('#pf-err-`+field+`').textContent.includes(`+jsString(says)+`) &&
			document.querySelector(`+jsString(input)+`).getAttribute('aria-invalid') === 'true'`, 15*time.Second)
		if g := textOf(t, ctx, "#policy-error"); g != "" {
			t.Errorf("%s: a general error too: %q", what, g)
		}
		if p, _ := getPolicy(t, c.url, c.token); p.Version() != want.Version() {
			t.Errorf("%s: the policy changed to %+v", what, p)
		}
	}
	refused("service level 0", "#pf-service-level", "0", "service_level_seconds", "service_level_seconds 0 must be 1-3600")
	browsertest.Run(t, ctx, "service level back", chromedp.SetValue("#pf-service-level", "45", chromedp.ByQuery))
	refused("a bad language code", "#pf-languages", "nb, en, zz", "languages", `unknown language code "zz"`)
	browsertest.Run(t, ctx, "languages back", chromedp.SetValue("#pf-languages", strings.Join(base.Languages, ", "), chromedp.ByQuery))
	screenshot(t, ctx, "overview-policy-refused")

	// Someone else changes the topics while this form has an edit.
	browsertest.Run(t, ctx, "edit the service level", chromedp.SetValue("#pf-service-level", "30", chromedp.ByQuery))
	theirs, _ := json.Marshal(map[string]any{"topics": append(slices.Clone(base.Topics), "bullying")})
	if r := policyCall(t, c.url, c.token, http.MethodPatch, theirs, map[string]string{"If-Match": savedTag}); r.status != http.StatusOK {
		t.Fatalf("the other coordinator's PATCH: %d %s", r.status, r.body)
	}
	browsertest.Run(t, ctx, "save on the old version", chromedp.Click("#policy-save", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "changed by someone else", `!document.querySelector('#policy-conflict').hidden &&
		!!document.querySelector('#policy-theirs li[data-field="topics"]') && document.querySelectorAll('#policy-theirs li').length === 1`, 15*time.Second)
	var kept string
	browsertest.Eval(t, ctx, `document.querySelector('#pf-service-level').value`, &kept)
	if kept != "30" {
		t.Errorf("the edit was not kept: the form shows service level %q", kept)
	}
	after, _ := getPolicy(t, c.url, c.token)
	if after.ServiceLevelSeconds != 45 || !slices.Contains(after.Topics, "bullying") {
		t.Errorf("after the conflict: service level %d (want 45: nothing of ours written), topics %q (want theirs kept)", after.ServiceLevelSeconds, after.Topics)
	}
	screenshot(t, ctx, "overview-policy-conflict")

	// Keep my edits on the current policy, and save again: both land.
	browsertest.Run(t, ctx, "keep my edits", chromedp.Click("#policy-rebase", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "their topic and my service level in the form", `document.querySelector('#policy-conflict').hidden &&
		[...document.querySelectorAll('#pf-topics input')].some(i => i.value === 'bullying') && document.querySelector('#pf-service-level').value === '30'`, 10*time.Second)
	browsertest.Run(t, ctx, "save again", chromedp.Click("#policy-save", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "saved again", `document.querySelector('#policy-status').getAttribute('data-i18n') === 'overview.policy_saved'`, 15*time.Second)
	if got := lastPatchFields(t, ctx); !slices.Equal(got, []string{"service_level_seconds"}) {
		t.Errorf("the second save sent %q, want only service_level_seconds", got)
	}
	final, _ := getPolicy(t, c.url, c.token)
	if final.ServiceLevelSeconds != 30 || !slices.Contains(final.Topics, "bullying") || final.EmergencyNumbers[0].Names["nb"] != "Medisinsk nødhjelp" {
		t.Errorf("final policy %+v: want service level 30, their topic and the Norwegian name", final)
	}
}

// TestConsoleChangePassword: a volunteer changes their password in the
// console. A wrong current password is shown at that field, a weak new
// one shows the rule (and is not sent), one the same as the current shows
// the server's words at the new one; a good change says the other devices
// were signed out: the old password no longer logs in, a session opened
// before elsewhere has ended, and this console is still connected.
func TestConsoleChangePassword(t *testing.T) {
	c := startPageFederation(t, 1)[0]
	const id, oldPassword, newPassword = "v-pw", "correct horse battery", "a brand new passphrase 7"
	staffEnrol(t, c, consensus.Volunteer{ID: id, Centre: "c1", Alias: "Pia", Languages: []string{"nb"}, Channels: []string{"chat"}, Capacity: 1, Role: "volunteer"}, oldPassword)

	// Another device, logged in before the change.
	other := newCookieClient(t)
	if code := other.post(t, c.url+"/v1/volunteer/login", LoginRequest{Volunteer: id, Password: oldPassword}); code != http.StatusNoContent {
		t.Fatalf("the other device's login: HTTP %d", code)
	}
	if code := other.get(t, c.url+"/v1/volunteer/session"); code != http.StatusOK {
		t.Fatalf("the other device's session: HTTP %d", code)
	}

	ctx := newBrowser(t)
	consoleLogin(t, ctx, c, id, oldPassword)
	browsertest.Eval(t, ctx, `window.__posts = 0; { const f = window.fetch; window.fetch = function (u, o) { if (String(u).includes('/v1/volunteer/password')) window.__posts++; return f.apply(this, arguments); }; } true`, nil)
	fill := func(what, current, next, repeat string) {
		t.Helper()
		browsertest.Eval(t, ctx, `['#pw-current', '#pw-new', '#pw-repeat'].forEach(s => { document.querySelector(s).value = ''; }); true`, nil)
		browsertest.Run(t, ctx, what,
			chromedp.SendKeys("#pw-current", current, chromedp.ByQuery), chromedp.SendKeys("#pw-new", next, chromedp.ByQuery), chromedp.SendKeys("#pw-repeat", repeat, chromedp.ByQuery),
			chromedp.Click("#pw-submit", chromedp.ByQuery))
	}
	browsertest.Run(t, ctx, "open the form", chromedp.Click("#pw-change summary", chromedp.ByQuery), chromedp.WaitVisible("#pw-current", chromedp.ByQuery))

	fill("a wrong current password", "not my password", newPassword, newPassword)
	browsertest.Wait(t, ctx, "wrong at the current field", `document.querySelector('#pw-current-error').getAttribute('data-i18n') === 'console.pw_wrong_current' &&
		document.querySelector('#pw-current').getAttribute('aria-invalid') === 'true' && document.querySelector('#pw-new-error').textContent === ''`, 15*time.Second)

	fill("a weak new password", oldPassword, "short1", "short1")
	browsertest.Wait(t, ctx, "the rule at the new field", `/at least 10 characters/.test(document.querySelector('#pw-new-error').textContent) &&
		document.querySelector('#pw-strength-bar').dataset.level === 'weak' && document.querySelector('#pw-current-error').textContent === ''`, 10*time.Second)
	var posts int
	browsertest.Eval(t, ctx, `window.__posts`, &posts)
	if posts != 1 {
		t.Errorf("%d password changes posted, want 1 (the weak one is refused in the page)", posts)
	}

	fill("the same password again", oldPassword, oldPassword, oldPassword)
	browsertest.Wait(t, ctx, "the server's words at the new field", `document.querySelector('#pw-new-error').textContent.includes('the same as the current one')`, 15*time.Second)
	screenshot(t, ctx, "console-password-refused")

	fill("a good change", oldPassword, newPassword, newPassword)
	browsertest.Wait(t, ctx, "changed", `document.querySelector('#pw-done').getAttribute('data-i18n') === 'console.pw_changed' &&
		/other devices were signed out/.test(document.querySelector('#pw-done').textContent) && document.querySelector('#pw-new').value === ''`, 15*time.Second)
	screenshot(t, ctx, "console-password-changed")

	if code := other.get(t, c.url+"/v1/volunteer/session"); code != http.StatusUnauthorized {
		t.Errorf("the other device's session after the change: HTTP %d, want 401", code)
	}
	if code := loginStatus(t, c, id, oldPassword); code != http.StatusUnauthorized {
		t.Errorf("login with the old password: HTTP %d, want 401", code)
	}
	// This console still speaks to the centre: going available is a round
	// trip over its socket.
	browsertest.Run(t, ctx, "go available", chromedp.Click("#available-chat", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "available, still at the desk", `document.querySelector('#availability').classList.contains('is-on') && !document.querySelector('#desk').hidden`, 10*time.Second)
	if code := loginStatus(t, c, id, newPassword); code != http.StatusNoContent {
		t.Errorf("login with the new password: HTTP %d, want 204", code)
	}
}

// cookieClient is another device: an HTTP client with its own cookies.
type cookieClient struct{ *http.Client }

func newCookieClient(t *testing.T) cookieClient {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return cookieClient{&http.Client{Jar: jar, Timeout: 20 * time.Second}}
}

func (c cookieClient) post(t *testing.T, url string, body any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := c.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (c cookieClient) get(t *testing.T, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
