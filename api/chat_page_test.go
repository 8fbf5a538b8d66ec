package api

// Browser tests of the visitor chat page (web/chat.html, static/chat.js):
// real Chromium through the rig in browser_rig_test.go, real centres from
// startPageFederation, and a volunteer driven from Go through the
// switchboard.

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/switchboard"
)

// ---- a volunteer driven from Go ----

type vpVolunteer struct {
	offers chan switchboard.Offer
	events chan switchboard.Event
}

func (g *vpVolunteer) Offer(o switchboard.Offer) {
	select {
	case g.offers <- o:
	default:
	}
}
func (g *vpVolunteer) OfferWithdrawn(string, string) {}
func (g *vpVolunteer) Connected(string, string)      {}
func (g *vpVolunteer) Event(_ string, e switchboard.Event) {
	select {
	case g.events <- e:
	default:
	}
}
func (g *vpVolunteer) Lost(string, int)                       {}
func (g *vpVolunteer) Availability(map[string]bool, int, int) {}

// vpSignIn signs a volunteer in at c's switchboard, available for chat in
// every page language.
func vpSignIn(t *testing.T, c *pageCentre, alias string) (*switchboard.Console, *vpVolunteer) {
	t.Helper()
	g := &vpVolunteer{offers: make(chan switchboard.Offer, 16), events: make(chan switchboard.Event, 64)}
	con, err := c.node.Switchboard().SignIn(switchboard.Volunteer{ID: "v-" + strings.ToLower(alias), Alias: alias,
		Channels: []string{"chat"}, Languages: []string{"nb", "nn", "en", "fr", "de"}, Capacity: 1}, g)
	if err != nil {
		t.Fatal(err)
	}
	if err := con.SetAvailable("chat", true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(con.SignOut)
	return con, g
}

// accept takes the next offer (an offer that timed out rings again).
func (g *vpVolunteer) accept(t *testing.T, con *switchboard.Console) string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case o := <-g.offers:
			if err := con.Accept(o.Contact); err == nil {
				return o.Contact
			}
		case <-deadline:
			t.Fatal("the volunteer got no offer")
		}
	}
}

func (g *vpVolunteer) awaitOffer(t *testing.T) switchboard.Offer {
	t.Helper()
	select {
	case o := <-g.offers:
		return o
	case <-time.After(30 * time.Second):
		t.Fatal("the volunteer got no offer")
	}
	return switchboard.Offer{}
}

func (g *vpVolunteer) awaitMessage(t *testing.T, text string) {
	t.Helper()
	g.awaitMessageOr(t, text, nil)
}

// awaitMessageOr is awaitMessage that, before failing, runs why (to log
// what the page shows) and lists the events the volunteer did get.
func (g *vpVolunteer) awaitMessageOr(t *testing.T, text string, why func()) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	var got []string
	for {
		select {
		case e := <-g.events:
			if e.Kind == switchboard.EventMessage && e.Text == text {
				return
			}
			got = append(got, string(e.Kind))
		case <-deadline:
			if why != nil {
				why()
			}
			t.Fatalf("the volunteer never got %q (got events %v)", text, got)
		}
	}
}

// ---- browser helpers ----

func vpRun(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func vpEval(t *testing.T, ctx context.Context, expr string, out any) {
	t.Helper()
	vpRun(t, ctx, "evaluate "+expr, chromedp.Evaluate(expr, out))
}

// vpWait waits until the JavaScript expression is true in the page.
func vpWait(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	var ok bool
	vpRun(t, ctx, "wait for "+what, chromedp.Poll("!!("+expr+")", &ok,
		chromedp.WithPollingTimeout(30*time.Second), chromedp.WithPollingInterval(50*time.Millisecond)))
}

func vpQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// vpOpenChat opens /chat in a new tab and waits until the catalogue and
// /v1/info have arrived.
func vpOpenChat(t *testing.T, browser context.Context, base string) context.Context {
	t.Helper()
	ctx := newTab(t, browser)
	vpRun(t, ctx, "open /chat", chromedp.Navigate(base+"/chat"), chromedp.WaitVisible("#start", chromedp.ByID))
	vpWait(t, ctx, "the page to load its texts",
		`document.documentElement.getAttribute('data-lang-loaded') && document.querySelectorAll('#age-group option').length > 1`)
	return ctx
}

func vpWaitPhase(t *testing.T, ctx context.Context, phase string) {
	t.Helper()
	vpWait(t, ctx, "phase "+phase, `document.body.getAttribute('data-phase') === `+vpQuote(phase))
}

// vpTabTo presses Tab until the element with id has the focus, and checks
// that the focus is visible there.
func vpTabTo(t *testing.T, ctx context.Context, id string) {
	t.Helper()
	check := `!!document.activeElement && document.activeElement.id === ` + vpQuote(id)
	for range 40 {
		var ok bool
		vpEval(t, ctx, check, &ok)
		if ok {
			var outline string
			vpEval(t, ctx, `getComputedStyle(document.activeElement).outlineStyle`, &outline)
			if outline == "none" || outline == "" {
				t.Errorf("#%s has the focus but no visible focus outline", id)
			}
			return
		}
		vpRun(t, ctx, "press Tab", chromedp.KeyEvent(kb.Tab))
	}
	var at string
	vpEval(t, ctx, `document.activeElement ? document.activeElement.outerHTML.slice(0, 160) : 'none'`, &at)
	t.Fatalf("Tab never reached #%s (the focus is on %s)", id, at)
}

// vpNamelessControls lists controls without an accessible name: a label,
// aria-label, aria-labelledby, title or (for buttons and links) text.
const vpNamelessControls = `(() => {
  const bad = [];
  for (const e of document.querySelectorAll('button, input, select, textarea, a[href]')) {
    let n = (e.getAttribute('aria-label') || '') + (e.getAttribute('title') || '');
    const lb = e.getAttribute('aria-labelledby');
    if (lb) n += lb.split(/\s+/).map(id => (document.getElementById(id) || {}).textContent || '').join(' ');
    if (e.labels) for (const l of e.labels) n += l.textContent;
    if (e.tagName === 'BUTTON' || e.tagName === 'A') n += e.textContent;
    if (!n.trim()) bad.push(e.outerHTML.slice(0, 160));
  }
  return bad;
})()`

func vpCheckNames(t *testing.T, ctx context.Context, when string) {
	t.Helper()
	var bad []string
	vpEval(t, ctx, vpNamelessControls, &bad)
	if len(bad) > 0 {
		t.Errorf("%s: controls without an accessible name: %q", when, bad)
	}
}

// ---- quick exit ----

func TestChatPageQuickExit(t *testing.T) {
	browser := newBrowser(t)
	c := startPageFederation(t, 1)[0]
	for _, variant := range []string{"button", "escape-twice"} {
		t.Run(variant, func(t *testing.T) {
			ctx := vpOpenChat(t, browser, c.url)
			abandoned := c.node.Switchboard().Stats().Total().Abandoned
			// Plant something in both storages: quick exit must clear them.
			vpEval(t, ctx, `localStorage.setItem('planted', 'x'); sessionStorage.setItem('planted', 'x'); true`, nil)
			vpRun(t, ctx, "start the chat", chromedp.Click("#start", chromedp.ByID))
			vpWaitPhase(t, ctx, "queued")
			if variant == "button" {
				// Nobody is signed in anywhere: the page says so, with the
				// emergency numbers.
				vpWait(t, ctx, "the no-one-free notice", `!document.getElementById('notice').hidden && document.querySelectorAll('#emergency a[href^="tel:"]').length > 0`)
				screenshot(t, ctx, "visitor-no-one-free")
				vpRun(t, ctx, "quick exit", chromedp.Click("#quick-exit", chromedp.ByID))
			} else {
				// One Escape is not enough...
				vpRun(t, ctx, "one Escape", chromedp.KeyEvent(kb.Escape))
				vpRun(t, ctx, "let a second pass", chromedp.Evaluate(`new Promise(r => setTimeout(() => r(true), 1100))`, nil,
					func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
				var phase string
				vpEval(t, ctx, `document.body.getAttribute('data-phase')`, &phase)
				if phase != "queued" {
					t.Fatalf("one Escape changed the phase to %q", phase)
				}
				// ...two within a second are.
				vpRun(t, ctx, "Escape twice", chromedp.KeyEvent(kb.Escape), chromedp.KeyEvent(kb.Escape))
			}

			// The tab has left the chat.
			var loc string
			deadline := time.Now().Add(15 * time.Second)
			for {
				if err := chromedp.Run(ctx, chromedp.Location(&loc)); err == nil && loc == "about:blank" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("quick exit did not leave the page (location %q)", loc)
				}
				time.Sleep(50 * time.Millisecond)
			}
			// Back cannot return: no history entry is the chat.
			var entries []*page.NavigationEntry
			var current int64
			vpRun(t, ctx, "read the history", chromedp.ActionFunc(func(ctx context.Context) error {
				var err error
				current, entries, err = page.GetNavigationHistory().Do(ctx)
				return err
			}))
			for _, e := range entries {
				if strings.Contains(e.URL, "/chat") {
					t.Errorf("the history still holds the chat: %q", e.URL)
				}
			}
			if current > 0 {
				vpRun(t, ctx, "go back", chromedp.NavigateBack())
				vpRun(t, ctx, "location", chromedp.Location(&loc))
				if strings.Contains(loc, "/chat") {
					t.Errorf("Back returned to the chat: %s", loc)
				}
			}
			// Storage of the chat's origin is empty: in this tab
			// (sessionStorage belongs to the tab) and in a new one.
			var n int
			vpRun(t, ctx, "back on the chat's origin", chromedp.Navigate(c.url+"/v1/info"))
			vpEval(t, ctx, `localStorage.length + sessionStorage.length`, &n)
			if n != 0 {
				t.Errorf("after quick exit the origin's storage holds %d items", n)
			}
			other := newTab(t, browser)
			vpRun(t, other, "a new tab on the chat's origin", chromedp.Navigate(c.url+"/v1/info"))
			vpEval(t, other, `localStorage.length`, &n)
			if n != 0 {
				t.Errorf("after quick exit localStorage holds %d items", n)
			}
			// The centre gave up the contact.
			deadline = time.Now().Add(15 * time.Second)
			for c.node.Switchboard().Stats().Total().Abandoned != abandoned+1 {
				if time.Now().After(deadline) {
					t.Fatalf("abandoned = %d, want %d", c.node.Switchboard().Stats().Total().Abandoned, abandoned+1)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// ---- keyboard only, accessible names, live region ----

func TestChatPageKeyboardOnly(t *testing.T) {
	browser := newBrowser(t)
	c := startPageFederation(t, 1)[0]
	con, vol := vpSignIn(t, c, "Kari")
	ctx := vpOpenChat(t, browser, c.url)
	vpCheckNames(t, ctx, "before the chat")

	var roles []string
	vpEval(t, ctx, `[document.getElementById('messages').getAttribute('role'), document.getElementById('messages').getAttribute('aria-live'),
		document.getElementById('status').getAttribute('role'), document.getElementById('status').getAttribute('aria-live')]`, &roles)
	if !slices.Equal(roles, []string{"log", "polite", "status", "polite"}) {
		t.Errorf("#messages and #status roles and aria-live = %q", roles)
	}

	vpTabTo(t, ctx, "start")
	vpRun(t, ctx, "Enter on Start", chromedp.KeyEvent(kb.Enter))
	vpWaitPhase(t, ctx, "queued")
	offer := vol.awaitOffer(t)
	vpWait(t, ctx, "the queue position", `document.getElementById('status').textContent.includes('1')`)
	screenshot(t, ctx, "visitor-queued")
	contact := offer.Contact
	if err := con.Accept(contact); err != nil {
		contact = vol.accept(t, con) // the first ring timed out
	}
	vpWaitPhase(t, ctx, "connected")
	vpWait(t, ctx, "the alias", `document.getElementById('status').textContent.includes('Kari')`)
	vpCheckNames(t, ctx, "in the chat")

	vpTabTo(t, ctx, "message")
	vpRun(t, ctx, "type a line, Shift+Enter, another line",
		chromedp.KeyEvent("Hello from the keyboard"), chromedp.KeyEvent(kb.Enter, chromedp.KeyModifiers(input.ModifierShift)), chromedp.KeyEvent("second line"))
	var draft string
	vpEval(t, ctx, `document.getElementById('message').value`, &draft)
	if draft != "Hello from the keyboard\nsecond line" {
		t.Fatalf("Shift+Enter: draft = %q", draft)
	}
	vpRun(t, ctx, "Enter sends", chromedp.KeyEvent(kb.Enter))
	vol.awaitMessage(t, "Hello from the keyboard\nsecond line")
	vpWait(t, ctx, "the visitor's own message", `[...document.querySelectorAll('#messages .msg.visitor')].some(m => m.textContent.includes('Hello from the keyboard'))`)

	if err := con.Typing(contact); err != nil {
		t.Fatal(err)
	}
	vpWait(t, ctx, "the typing indicator", `!document.getElementById('typing').hidden`)
	if err := con.Send(contact, "v1", "Hi, I'm Kari. I'm listening."); err != nil {
		t.Fatal(err)
	}
	vpWait(t, ctx, "the reply inside the live log",
		`[...document.querySelectorAll('[role="log"][aria-live="polite"] .msg.volunteer')].some(m => m.textContent.includes("I'm listening"))`)
	vpWait(t, ctx, "the typing indicator to go", `document.getElementById('typing').hidden`)
	screenshot(t, ctx, "visitor-connected")

	vpTabTo(t, ctx, "end")
	vpRun(t, ctx, "Enter on End", chromedp.KeyEvent(kb.Enter))
	vpWaitPhase(t, ctx, "ended")
	vpWait(t, ctx, "the new-chat button", `!document.getElementById('again').hidden`)
	if err := con.End(contact, switchboard.Categorisation{Topics: []string{"other"}, AgeGroup: "unknown"}); err != nil {
		t.Fatal(err)
	}
	vpCheckNames(t, ctx, "after the chat")
	vpTabTo(t, ctx, "again")
	vpRun(t, ctx, "Enter on Start a new chat", chromedp.KeyEvent(kb.Enter))
	vpWait(t, ctx, "the pre-chat step again", `!document.getElementById('prechat').hidden && document.activeElement.id === 'start' && document.querySelectorAll('#messages .msg').length === 0`)
}

// ---- languages ----

// vpCatalogues reads the embedded catalogues, by language.
func vpCatalogues(t *testing.T) map[string]map[string]string {
	t.Helper()
	names, err := fs.Glob(web, "web/i18n/*.json")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, n := range names {
		b, err := web.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]string
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		for k := range c { // notes (_language, _machine_made), never shown
			if strings.HasPrefix(k, "_") {
				delete(c, k)
			}
		}
		out[strings.TrimSuffix(strings.TrimPrefix(n, "web/i18n/"), ".json")] = c
	}
	return out
}

var (
	vpKeyAttr   = regexp.MustCompile(`data-i18n="([^"]+)"`)
	vpAttrAttr  = regexp.MustCompile(`data-i18n-attr="([^"]+)"`)
	vpKeyInJS   = regexp.MustCompile(`\b(?:t|i18nEl|setStatus)\((?:[^'()]*,\s*)?'([^']+)'\s*[,)]`)
	vpPlacehold = regexp.MustCompile(`\{\w+\}`)
)

// vpUsedKeys lists the catalogue keys the page's HTML and JavaScript use.
func vpUsedKeys(html, js string) []string {
	var keys []string
	for _, m := range vpKeyAttr.FindAllStringSubmatch(html, -1) {
		keys = append(keys, m[1])
	}
	for _, m := range vpAttrAttr.FindAllStringSubmatch(html, -1) {
		for pair := range strings.SplitSeq(m[1], ";") {
			if _, k, ok := strings.Cut(pair, ":"); ok {
				keys = append(keys, strings.TrimSpace(k))
			}
		}
	}
	for _, m := range vpKeyInJS.FindAllStringSubmatch(js, -1) {
		keys = append(keys, m[1])
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func vpMissing(used []string, cat map[string]string) []string {
	var out []string
	for _, k := range used {
		if _, ok := cat[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

func TestCatalogueKeysComplete(t *testing.T) {
	cats := vpCatalogues(t)
	en, ok := cats["en"]
	if !ok {
		t.Fatal("no en.json")
	}
	for _, l := range []string{"nb", "nn", "en", "fr", "de"} {
		if _, ok := cats[l]; !ok {
			t.Errorf("no catalogue for %s", l)
		}
	}
	want := slices.Sorted(maps.Keys(en))
	for l, c := range cats {
		if got := slices.Sorted(maps.Keys(c)); !slices.Equal(got, want) {
			t.Errorf("%s.json: keys differ from en.json: missing %q, extra %q", l, vpMissing(want, c), vpMissing(got, en))
		}
		for k, v := range c {
			if strings.TrimSpace(v) == "" {
				t.Errorf("%s.json: %s is empty", l, k)
			}
			if p, q := vpPlacehold.FindAllString(v, -1), vpPlacehold.FindAllString(en[k], -1); !slices.Equal(slices.Sorted(slices.Values(p)), slices.Sorted(slices.Values(q))) {
				t.Errorf("%s.json: %s has placeholders %q, en.json has %q", l, k, p, q)
			}
		}
	}
	html, err := web.ReadFile("web/chat.html")
	if err != nil {
		t.Fatal(err)
	}
	js, err := web.ReadFile("web/static/chat.js")
	if err != nil {
		t.Fatal(err)
	}
	used := vpUsedKeys(string(html), string(js))
	for _, k := range []string{"start", "quick_exit", "message_placeholder", "status_queued", "status_ended_visitor", "notice_busy", "you"} {
		if !slices.Contains(used, k) {
			t.Errorf("the key scan missed %q: it would miss keys", k)
		}
	}
	for _, g := range switchboard.AgeGroups { // chat.js shows them as 'age.' + group
		used = append(used, "age."+g)
	}
	if m := vpMissing(used, en); len(m) > 0 {
		t.Errorf("keys used by the chat page but missing from en.json: %q", m)
	}
	// The check itself catches a missing key.
	if m := vpMissing(vpUsedKeys(`<p data-i18n="no_such_key"></p>`, `setStatus('also_missing');`), en); !slices.Equal(m, []string{"also_missing", "no_such_key"}) {
		t.Errorf("missing-key check found %q", m)
	}
}

// vpTexts describes what the page shows: the data-i18n elements and
// attributes, and every visible text node.
const vpTexts = `(() => {
  const shown = el => {
    if (el.closest('[hidden]')) return false;
    if (el.tagName === 'OPTION') el = el.closest('select');
    return el.getClientRects().length > 0;
  };
  const keyed = [...document.querySelectorAll('[data-i18n]')].map(e => ({key: e.getAttribute('data-i18n'), text: e.textContent, tag: e.tagName}));
  const attrs = [];
  for (const e of document.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of e.getAttribute('data-i18n-attr').split(';')) {
      const i = pair.indexOf(':');
      attrs.push({attr: pair.slice(0, i).trim(), key: pair.slice(i + 1).trim(), text: e.getAttribute(pair.slice(0, i).trim()) || ''});
    }
  }
  const nodes = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const text = n.textContent.trim();
    if (!text || !shown(n.parentElement)) continue;
    const p = n.parentElement;
    nodes.push({text, keyed: !!p.closest('[data-i18n]'),
      data: !!p.closest('#lang, #messages .text, #messages .from:not([data-i18n]), #emergency, #urgent-emergency, #status, #notice-text')});
  }
  return {lang: document.documentElement.lang, title: document.title, keyed, attrs, nodes,
    placeholder: document.getElementById('message').placeholder};
})()`

type vpShown struct {
	Lang  string `json:"lang"`
	Title string `json:"title"`
	Keyed []struct {
		Key, Text, Tag string
	} `json:"keyed"`
	Attrs []struct {
		Attr, Key, Text string
	} `json:"attrs"`
	Nodes []struct {
		Text  string `json:"text"`
		Keyed bool   `json:"keyed"`
		Data  bool   `json:"data"`
	} `json:"nodes"`
}

// vpSwitchLanguage picks l in #lang the way a visitor does (a change
// event) and checks every text.
func vpSwitchLanguage(t *testing.T, ctx context.Context, cats map[string]map[string]string, prev, l string) {
	t.Helper()
	vpEval(t, ctx, `(() => { const s = document.getElementById('lang'); s.value = `+vpQuote(l)+`; s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`, nil)
	vpWait(t, ctx, "the "+l+" catalogue", `document.documentElement.getAttribute('data-lang-loaded') === `+vpQuote(l))
	var got vpShown
	vpEval(t, ctx, vpTexts, &got)
	cat := cats[l]
	if got.Lang != l {
		t.Errorf("%s: <html lang=%q>", l, got.Lang)
	}
	if got.Title != cat["title"] {
		t.Errorf("%s: title %q, want %q", l, got.Title, cat["title"])
	}
	for _, k := range got.Keyed {
		if k.Text != cat[k.Key] {
			t.Errorf("%s: <%s data-i18n=%q> shows %q, want %q", l, k.Tag, k.Key, k.Text, cat[k.Key])
		}
	}
	for _, a := range got.Attrs {
		if a.Text != cat[a.Key] {
			t.Errorf("%s: %s (key %s) is %q, want %q", l, a.Attr, a.Key, a.Text, cat[a.Key])
		}
	}
	current := map[string]bool{}
	for _, v := range cat {
		current[v] = true
	}
	for _, n := range got.Nodes {
		if !n.Keyed && !n.Data {
			t.Errorf("%s: visible text %q does not come from the catalogue", l, n.Text)
		}
		for k, v := range cats[prev] {
			if n.Text == v && !current[v] {
				t.Errorf("%s: %q (%s.json %s) is still shown", l, n.Text, prev, k)
			}
		}
	}
}

func TestChatPageLanguageSwitch(t *testing.T) {
	cats := vpCatalogues(t)
	browser := newBrowser(t)
	c := startPageFederation(t, 1)[0]
	ctx := vpOpenChat(t, browser, c.url)
	screenshot(t, ctx, "visitor-prechat")
	var prev string
	vpEval(t, ctx, `document.documentElement.getAttribute('data-lang-loaded')`, &prev)
	order := []string{"de", "fr", "nn", "nb", "en", "de"}
	if prev == "de" {
		order = []string{"en", "de", "fr", "nn", "nb", "en"}
	}
	for _, l := range order {
		vpSwitchLanguage(t, ctx, cats, prev, l)
		prev = l
	}
	// In the queue the status and the notice follow the language too.
	vpRun(t, ctx, "start the chat", chromedp.Click("#start", chromedp.ByID))
	vpWaitPhase(t, ctx, "queued")
	vpWait(t, ctx, "the notice", `!document.getElementById('notice').hidden`)
	for _, l := range []string{"nb", "fr", "en", "nn", "de"} {
		if l == prev {
			continue
		}
		vpSwitchLanguage(t, ctx, cats, prev, l)
		var status, notice string
		vpEval(t, ctx, `document.getElementById('status').textContent`, &status)
		vpEval(t, ctx, `document.getElementById('notice-text').textContent`, &notice)
		head, _, _ := strings.Cut(cats[l]["status_queued"], "{")
		if !strings.HasPrefix(status, head) {
			t.Errorf("%s: status %q, want it to start %q", l, status, head)
		}
		if notice != cats[l]["notice_busy"] {
			t.Errorf("%s: notice %q, want %q", l, notice, cats[l]["notice_busy"])
		}
		prev = l
	}
}

// ---- nothing from other origins; no inline script ----

func TestChatPageLoadsNothingFromOtherOrigins(t *testing.T) {
	browser := newBrowser(t)
	c := startPageFederation(t, 1)[0]
	base, err := url.Parse(c.url)
	if err != nil {
		t.Fatal(err)
	}
	ctx := newTab(t, browser)
	var mu sync.Mutex
	var seen []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			seen = append(seen, e.Request.URL)
		case *network.EventWebSocketCreated:
			seen = append(seen, e.URL)
		}
	})
	vpRun(t, ctx, "load /chat with the network recorded", network.Enable(), chromedp.Navigate(c.url+"/chat"), chromedp.WaitVisible("#start", chromedp.ByID))
	vpWait(t, ctx, "the page to load its texts", `document.documentElement.getAttribute('data-lang-loaded') && document.querySelectorAll('#age-group option').length > 1`)
	vpRun(t, ctx, "start the chat", chromedp.Click("#start", chromedp.ByID))
	vpWaitPhase(t, ctx, "queued")
	vpWait(t, ctx, "the notice", `!document.getElementById('notice').hidden`)

	mu.Lock()
	urls := slices.Clone(seen)
	mu.Unlock()
	var sawSocket, sawScript, sawCatalogue bool
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			t.Errorf("unparsable request URL %q", raw)
			continue
		}
		switch {
		case u.Scheme == "data" || u.Scheme == "about":
		case (u.Scheme == "http" || u.Scheme == "ws") && u.Host == base.Host:
			sawSocket = sawSocket || u.Path == "/v1/chat"
			sawScript = sawScript || u.Path == "/static/chat.js"
			sawCatalogue = sawCatalogue || strings.HasPrefix(u.Path, "/i18n/")
		default:
			t.Errorf("the chat page loaded %s from another origin", raw)
		}
	}
	if !sawSocket || !sawScript || !sawCatalogue {
		t.Errorf("the recording looks incomplete (socket %v, script %v, catalogue %v): %q", sawSocket, sawScript, sawCatalogue, urls)
	}

	for _, path := range []string{"/chat", "/static/chat.js", "/widget.js", "/i18n/en.json"} {
		resp, err := http.Get(c.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != http.StatusOK || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
			strings.Contains(csp, "unsafe-eval") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: %d, CSP %q", path, resp.StatusCode, csp)
		}
	}

	html, err := web.ReadFile("web/chat.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`).FindAllStringSubmatch(string(html), -1) {
		if strings.TrimSpace(m[2]) != "" || !strings.Contains(m[1], `src="/`) {
			t.Errorf("chat.html has an inline or foreign script: %q", m[0])
		}
	}
	for _, bad := range []struct{ what, re string }{
		{"an inline event handler", `(?i)<[^>]*\son[a-z]+\s*=`},
		{"an inline style", `(?i)<[^>]*\sstyle\s*=|<style`},
		{"a resource from another origin", `(?i)(src|href|action)\s*=\s*"(https?:)?//`},
		{"a javascript: URL", `(?i)javascript:`},
	} {
		if m := regexp.MustCompile(bad.re).FindString(string(html)); m != "" {
			t.Errorf("chat.html has %s: %q", bad.what, m)
		}
	}
	// The page stores nothing.
	js, err := web.ReadFile("web/static/chat.js")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`(localStorage|sessionStorage)\.setItem|document\.cookie|indexedDB`).FindString(string(js)); m != "" {
		t.Errorf("chat.js stores something: %s", m)
	}
}

// TestInfoQuickExitURL: /v1/info carries the quick exit URL, about:blank
// by default; a bad one is refused at start.
func TestInfoQuickExitURL(t *testing.T) {
	c := startPageFederation(t, 1)[0]
	resp, err := http.Get(c.url + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var in Info
	if err := json.NewDecoder(resp.Body).Decode(&in); err != nil {
		t.Fatal(err)
	}
	if in.QuickExitURL != "about:blank" {
		t.Errorf("quick_exit_url = %q, want about:blank", in.QuickExitURL)
	}
	for _, bad := range []string{"javascript:alert(1)", "ftp://example.org", "/relative", "https://"} {
		if _, err := newServer(Config{AdminToken: "x", Centre: c.node, QuickExitURL: bad}); err == nil {
			t.Errorf("QuickExitURL %q was accepted", bad)
		}
	}
}

// ---- the widget ----

// TestChatWidgetEmbedsTheChat: a centre's own site (another origin, listed
// in AllowedOrigins) adds the one-line snippet; its button opens /chat in an
// iframe, and quick exit there replaces the host page too.
func TestChatWidgetEmbedsTheChat(t *testing.T) {
	browser := newBrowser(t)
	c := startPageFederation(t, 1)[0]
	var centre string
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		switch r.URL.Path {
		case "/":
			// The host forbids inline script too: the snippet needs none.
			w.Header().Set("Content-Security-Policy", "script-src "+centre)
			fmt.Fprintf(w, `<!doctype html><html lang="nb"><title>Centre site</title><h1>Our centre</h1>`+
				`<script src="%s/widget.js" defer></script>`, centre)
		case "/neutral":
			fmt.Fprint(w, `<!doctype html><title>Weather</title><p>Sunny.</p>`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer site.Close()
	srv, err := Start(Config{Addr: "127.0.0.1:0", Centre: c.node, AdminToken: c.token,
		AllowedOrigins: []string{site.URL}, QuickExitURL: site.URL + "/neutral"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	centre = "http://" + srv.Addr()

	// Two minutes: under CI's load (the race detector, two cores, the
	// deploy suite beside it) the steps before the screenshot once took a
	// minute.
	ctx, cancel := context.WithTimeout(newTab(t, browser), 2*time.Minute)
	defer cancel()
	vpRun(t, ctx, "open the centre's site", chromedp.Navigate(site.URL+"/"), chromedp.WaitVisible("body > button", chromedp.ByQuery))
	var label string
	vpEval(t, ctx, `document.querySelector('body > button').textContent`, &label)
	if label != "Chat med oss" {
		t.Errorf("widget button says %q, want the host page's language (nb)", label)
	}
	vpRun(t, ctx, "open the widget", chromedp.Click("body > button", chromedp.ByQuery))
	vpWait(t, ctx, "the iframe", `!!document.querySelector('iframe') && document.querySelector('iframe').src === `+vpQuote(centre+"/chat?lang=nb"))
	var frames []*cdp.Node
	vpRun(t, ctx, "find the iframe", chromedp.Nodes("iframe", &frames, chromedp.ByQuery))
	vpRun(t, ctx, "the chat inside the iframe",
		chromedp.WaitVisible("#start", chromedp.ByID, chromedp.FromNode(frames[0])),
		chromedp.WaitReady("html[data-lang-loaded]", chromedp.ByQuery, chromedp.FromNode(frames[0])),
		chromedp.WaitReady("#age-group option:nth-child(2)", chromedp.ByQuery, chromedp.FromNode(frames[0])))
	var frameLang []*cdp.Node
	vpRun(t, ctx, "the chat speaks the host page's language",
		chromedp.Nodes(`html[data-lang-loaded="nb"]`, &frameLang, chromedp.ByQuery, chromedp.FromNode(frames[0])))
	screenshot(t, ctx, "widget-open")
	vpRun(t, ctx, "quick exit inside the widget", chromedp.Click("#quick-exit", chromedp.ByID, chromedp.FromNode(frames[0])))
	var loc string
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := chromedp.Run(ctx, chromedp.Location(&loc)); err == nil && loc == site.URL+"/neutral" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("quick exit in the widget left the host page at %q", loc)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var entries []*page.NavigationEntry
	vpRun(t, ctx, "read the history", chromedp.ActionFunc(func(ctx context.Context) error {
		var err error
		_, entries, err = page.GetNavigationHistory().Do(ctx)
		return err
	}))
	for _, e := range entries {
		if e.URL == site.URL+"/" {
			t.Errorf("the history still holds the page with the chat: %q", e.URL)
		}
	}
}

// TestChatPageClosedHours: outside the policy's open hours the page says
// so at once, with the emergency numbers as tel: links.
func TestChatPageClosedHours(t *testing.T) {
	browser := newBrowser(t)
	c := startPageFederation(t, 1)[0]
	p := c.node.Roster().Policy
	p.OpenHours = []consensus.OpenPeriod{{Weekday: (int(time.Now().Weekday()) + 3) % 7, From: "03:00", To: "03:01"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.node.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetPolicy, Policy: &p}); err != nil {
		t.Fatal(err)
	}
	tab := vpOpenChat(t, browser, c.url)
	vpWait(t, tab, "the closed notice", `!document.getElementById('notice').hidden && document.querySelectorAll('#emergency a[href^="tel:"]').length === 2`)
	var lang, text string
	vpEval(t, tab, `document.documentElement.lang`, &lang)
	vpEval(t, tab, `document.getElementById('notice-text').textContent`, &text)
	if want := vpCatalogues(t)[lang]["notice_closed"]; text != want {
		t.Errorf("notice %q, want %q", text, want)
	}
	var hrefs []string
	vpEval(t, tab, `[...document.querySelectorAll('#emergency a')].map(a => a.getAttribute('href'))`, &hrefs)
	if !slices.Equal(hrefs, []string{"tel:113", "tel:112"}) {
		t.Errorf("emergency links %q", hrefs)
	}
	screenshot(t, tab, "visitor-closed")
}
