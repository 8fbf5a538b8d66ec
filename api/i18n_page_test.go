package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
)

// staffTextProblems lists, after a language switch, what the page shows
// wrongly: keys the helper had no text for (window.i18nMissing, which also
// catches an English fallback), an element showing its raw key, and
// the page not being in the language asked for.
const staffTextProblems = `((l) => {
  const out = (window.i18nMissing || []).map(m => 'missing ' + m);
  if (document.documentElement.lang !== l) out.push('html lang ' + document.documentElement.lang);
  for (const e of document.querySelectorAll('[data-i18n]')) {
    const k = e.getAttribute('data-i18n');
    if (e.textContent.trim() === k || e.textContent.trim() === '') out.push('raw or empty: ' + k);
  }
  for (const e of document.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of e.getAttribute('data-i18n-attr').split(';')) {
      const [a, k] = pair.split(':').map(s => s.trim());
      if ((e.getAttribute(a) || '') === k) out.push('raw attribute ' + a + ': ' + k);
    }
  }
  if (/^[a-z]+\.[a-z_]+$/.test(document.title)) out.push('raw title ' + document.title);
  return out;
})`

// switchEveryStaffLanguage picks each language of the page's picker, as a
// person does, and checks the texts after each.
func switchEveryStaffLanguage(t *testing.T, ctx context.Context, page string) {
	t.Helper()
	browsertest.Wait(t, ctx, page+": the first catalogue", `!!document.documentElement.getAttribute('data-lang-loaded') && document.querySelectorAll('#lang option').length > 0`, 15*time.Second)
	var langs []string
	browsertest.Eval(t, ctx, `[...document.querySelectorAll('#lang option')].map(o => o.value)`, &langs)
	for _, l := range ShippedLanguages() {
		if !strings.Contains(strings.Join(langs, ","), l) {
			t.Errorf("%s: the picker lacks %s: %q", page, l, langs)
		}
	}
	// Twice round, so each language also follows another one.
	for _, l := range append(append([]string{}, langs[1:]...), langs...) {
		browsertest.Eval(t, ctx, `(() => { const s = document.getElementById('lang'); s.value = `+jsString(l)+`; s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`, nil)
		browsertest.Wait(t, ctx, page+" in "+l, `document.documentElement.getAttribute('data-lang-loaded') === `+jsString(l), 10*time.Second)
		var problems []string
		browsertest.Eval(t, ctx, staffTextProblems+`(`+jsString(l)+`)`, &problems)
		if len(problems) > 0 {
			t.Errorf("%s in %s: %q", page, l, problems)
		}
	}
	var kept string
	browsertest.Eval(t, ctx, `localStorage.getItem('helpmesh.staff.lang')`, &kept)
	if kept != langs[len(langs)-1] {
		t.Errorf("%s: the choice kept is %q, want %q", page, kept, langs[len(langs)-1])
	}
}

// TestStaffPagesEveryLanguage: the console (logged in, at the desk), the
// overview (with the federation's live table) and the enrolment page switch
// through every language the server offers, with no key or English
// fallback left; the choice outlives a reload.
func TestStaffPagesEveryLanguage(t *testing.T) {
	browser := newBrowser(t)
	c := startPageFederation(t, 1)[0]
	staffEnrol(t, c, consensus.Volunteer{ID: "v-lang", Centre: "c1", Alias: "Lin", Languages: []string{"nb"}, Channels: []string{"chat", "phone"}, Capacity: 2, Role: "volunteer"}, "correct horse battery")

	con := newTab(t, browser)
	consoleLogin(t, con, c, "v-lang", "correct horse battery")
	browsertest.Run(t, con, "go available", chromedp.Click("#available-chat", chromedp.ByQuery))
	browsertest.Wait(t, con, "available", `document.querySelector('#availability').classList.contains('is-on')`, 10*time.Second)
	switchEveryStaffLanguage(t, con, "console")
	browsertest.Run(t, con, "reload", chromedp.Reload())
	browsertest.Wait(t, con, "the kept language after a reload", `document.documentElement.getAttribute('data-lang-loaded') === 'de'`, 15*time.Second)

	ov := newTab(t, browser)
	browsertest.Run(t, ov, "open the overview", chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(c.url+"/overview"), chromedp.WaitVisible("#token", chromedp.ByQuery),
		chromedp.SendKeys("#token", c.token, chromedp.ByQuery), chromedp.Click("#token-submit", chromedp.ByQuery))
	browsertest.Wait(t, ov, "the live table", `!!document.querySelector('#centres tr[data-centre="c1"] .gossip[data-i18n]') && document.querySelectorAll('#volunteers tbody tr').length > 0`, 20*time.Second)
	switchEveryStaffLanguage(t, ov, "overview")

	en := newTab(t, browser)
	browsertest.Run(t, en, "open the enrolment page", chromedp.Navigate(c.url+"/enrol"), chromedp.WaitVisible("#code", chromedp.ByQuery),
		chromedp.SendKeys("#password", "short", chromedp.ByQuery))
	browsertest.Wait(t, en, "the strength text", `document.querySelector('#strength-text').textContent !== ''`, 10*time.Second)
	switchEveryStaffLanguage(t, en, "enrol")
}

// TestChatPageNorwegianEmergencyNames: the visitor page in nb shows the
// emergency numbers by the policy's Norwegian names, and in en by the
// English ones, when nobody is on duty.
func TestChatPageNorwegianEmergencyNames(t *testing.T) {
	browser := newBrowser(t)
	c := startPageFederation(t, 1)[0]
	// The coordinator names the numbers per language (the default policy
	// has only the English names: consensus.DefaultPolicy).
	names := `{"emergency_numbers": [
		{"name": "Medical emergency", "number": "113", "names": {"nb": "Medisinsk nødhjelp", "nn": "Medisinsk naudhjelp"}},
		{"name": "Police", "number": "112", "names": {"nb": "Politi", "nn": "Politi"}}]}`
	if r := policyCall(t, c.url, c.token, http.MethodPatch, []byte(names), nil); r.status != http.StatusOK {
		t.Fatalf("PATCH the names: %d %s", r.status, r.body)
	}
	ctx := newTab(t, browser)
	vpRun(t, ctx, "open /chat in nb", chromedp.Navigate(c.url+"/chat?lang=nb"), chromedp.WaitVisible("#start", chromedp.ByID))
	vpWait(t, ctx, "nb", `document.documentElement.getAttribute('data-lang-loaded') === 'nb'`)
	vpRun(t, ctx, "start the chat", chromedp.Click("#start", chromedp.ByID))
	vpWait(t, ctx, "the notice with the numbers", `!document.getElementById('notice').hidden && document.querySelectorAll('#emergency li').length === 2`)
	var shown string
	vpEval(t, ctx, `document.getElementById('emergency').textContent`, &shown)
	if !strings.Contains(shown, "Medisinsk nødhjelp: 113") || !strings.Contains(shown, "Politi: 112") {
		t.Errorf("nb emergency numbers %q", shown)
	}
	vpSwitchLanguage(t, ctx, vpCatalogues(t), "nb", "en")
	vpEval(t, ctx, `document.getElementById('emergency').textContent`, &shown)
	if !strings.Contains(shown, "Medical emergency: 113") || !strings.Contains(shown, "Police: 112") {
		t.Errorf("en emergency numbers %q", shown)
	}
}
