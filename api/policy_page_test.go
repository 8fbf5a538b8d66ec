package api

import (
	"context"
	"encoding/json"
	"net/http"
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
