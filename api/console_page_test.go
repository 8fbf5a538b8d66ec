package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
)

// ---- helpers shared by the console and overview page tests ----

// staffAdmin calls one of pc's admin endpoints and decodes the JSON answer.
func staffAdmin(t *testing.T, pc *pageCentre, method, path string, body, out any) {
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
	req.Header.Set("Authorization", "Bearer "+pc.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// staffEnrol writes v to the roster through pc's admin API and sets the
// volunteer's password with the enrolment code it returned.
func staffEnrol(t *testing.T, pc *pageCentre, v consensus.Volunteer, password string) {
	t.Helper()
	var w struct {
		EnrolmentCode string `json:"enrolment_code"`
	}
	staffAdmin(t, pc, http.MethodPost, "/v1/volunteers", v, &w)
	if w.EnrolmentCode == "" {
		t.Fatalf("no enrolment code for %s at %s", v.ID, pc.url)
	}
	b, _ := json.Marshal(map[string]string{"volunteer": v.ID, "code": w.EnrolmentCode, "password": password})
	resp, err := http.Post(pc.url+"/v1/volunteer/enrol", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("enrol %s: HTTP %d", v.ID, resp.StatusCode)
	}
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// consoleLogin opens pc's console in ctx and logs in with the form.
func consoleLogin(t *testing.T, ctx context.Context, pc *pageCentre, id, password string) {
	t.Helper()
	browsertest.Run(t, ctx, "log in",
		chromedp.EmulateViewport(1280, 860),
		chromedp.Navigate(pc.url+"/console"),
		chromedp.WaitVisible("#login-submit", chromedp.ByQuery),
		chromedp.SendKeys("#volunteer", id, chromedp.ByQuery),
		chromedp.SendKeys("#password", password, chromedp.ByQuery),
		chromedp.Click("#login-submit", chromedp.ByQuery),
	)
	// 30 s: signing in (an Argon2 hash, under -race) has taken longer
	// than 15 s on a busy two-core machine.
	browsertest.Wait(t, ctx, "the desk after login", `!document.querySelector('#desk').hidden && document.querySelector('#login').hidden`, 30*time.Second)
}

// waitFreeAt waits until observer's gossip view shows centre with a free
// chat volunteer for lang.
func waitFreeAt(t *testing.T, observer *pageCentre, centre, lang string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, c := range observer.node.Federation().Centres {
			if c.ID == centre && c.Availability != nil && c.Availability.Channels["chat"].Free[lang] > 0 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never saw %s free for chat in %s", observer.url, centre, lang)
}

// goVisitor is a visitor driven from Go over /v1/chat.
type goVisitor struct {
	t    *testing.T
	conn *websocket.Conn
	mu   sync.Mutex
	seen []map[string]any
	more chan struct{}
}

func dialGoVisitor(t *testing.T, pc *pageCentre, lang string) *goVisitor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(pc.url, "http")+"/v1/chat?channel=chat&lang="+lang, nil)
	if err != nil {
		t.Fatalf("visitor dial: %v", err)
	}
	return watchGoVisitor(t, conn)
}

// watchGoVisitor keeps every frame that comes on conn.
func watchGoVisitor(t *testing.T, conn *websocket.Conn) *goVisitor {
	v := &goVisitor{t: t, conn: conn, more: make(chan struct{}, 1)}
	t.Cleanup(func() { _ = conn.CloseNow() })
	go func() {
		for {
			_, b, err := conn.Read(context.Background())
			if err != nil {
				return
			}
			var f map[string]any
			if json.Unmarshal(b, &f) != nil {
				continue
			}
			v.mu.Lock()
			v.seen = append(v.seen, f)
			v.mu.Unlock()
			select {
			case v.more <- struct{}{}:
			default:
			}
		}
	}()
	return v
}

// await waits for a frame for which match is true.
func (v *goVisitor) await(what string, match func(map[string]any) bool) map[string]any {
	v.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		v.mu.Lock()
		for _, f := range v.seen {
			if match(f) {
				v.mu.Unlock()
				return f
			}
		}
		v.mu.Unlock()
		select {
		case <-v.more:
		case <-deadline:
			v.mu.Lock()
			defer v.mu.Unlock()
			v.t.Fatalf("visitor: no %s; frames: %v", what, v.seen)
		}
	}
}

func (v *goVisitor) send(f map[string]any) {
	v.t.Helper()
	b, _ := json.Marshal(f)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := v.conn.Write(ctx, websocket.MessageText, b); err != nil {
		v.t.Fatalf("visitor write: %v", err)
	}
}

func frameIs(typ string) func(map[string]any) bool {
	return func(f map[string]any) bool { return f["type"] == typ }
}

// chatPageReady says whether the visitor chat page (built alongside) is
// there yet; until then the visitor is driven from Go.
func chatPageReady() bool {
	html, err := web.ReadFile("web/chat.html")
	if err != nil || !bytes.Contains(html, []byte(`id="start"`)) {
		return false
	}
	js, err := web.ReadFile("web/static/chat.js")
	return err == nil && len(js) > 2000
}

// accessibleNameProblems lists the form controls without an accessible name.
const accessibleNameProblems = `(() => {
  const bad = [];
  for (const e of document.querySelectorAll('button, input, select, textarea')) {
    let n = (e.getAttribute('aria-label') || '') + (e.getAttribute('title') || '');
    const lb = e.getAttribute('aria-labelledby');
    if (lb) n += lb.split(/\s+/).map(id => (document.getElementById(id) || {}).textContent || '').join(' ');
    if (e.labels) for (const l of e.labels) n += l.textContent;
    if (e.tagName === 'BUTTON') n += e.textContent;
    if (!n.trim()) bad.push(e.outerHTML.slice(0, 160));
  }
  return bad;
})()`

// tabTo presses Tab until the focused element matches sel.
func tabTo(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	check := fmt.Sprintf(`!!(document.activeElement && document.activeElement.matches(%s))`, jsString(sel))
	for range 80 {
		var ok bool
		browsertest.Eval(t, ctx, check, &ok)
		if ok {
			return
		}
		browsertest.Run(t, ctx, "press Tab", chromedp.KeyEvent(kb.Tab))
	}
	var at string
	browsertest.Eval(t, ctx, `document.activeElement ? document.activeElement.outerHTML.slice(0, 200) : 'none'`, &at)
	t.Fatalf("Tab never reached %s (focus is on %s)", sel, at)
}

// ---- the tests ----

// TestConsolePageOverflowedConversationEndToEnd: a visitor at A overflows to
// a volunteer at B who answers in the console, chats, and ends with a
// categorisation.
func TestConsolePageOverflowedConversationEndToEnd(t *testing.T) {
	fed := startPageFederation(t, 2)
	a, b := fed[0], fed[1]
	staffEnrol(t, b, consensus.Volunteer{ID: "v-b1", Centre: "c2", Alias: "Kari", Channels: []string{"chat"},
		Languages: []string{"nb", "en"}, Capacity: 2, Role: "volunteer"}, "correct horse battery")

	browser := newBrowser(t)
	vol := browser
	consoleLogin(t, vol, b, "v-b1", "correct horse battery")
	// Only the volunteer's own channels are shown.
	var phoneHidden bool
	browsertest.Eval(t, vol, `document.querySelector('#available-phone-label').hidden`, &phoneHidden)
	if !phoneHidden {
		t.Error("a chat-only volunteer is offered the phone switch")
	}
	browsertest.Run(t, vol, "go available", chromedp.Click("#available-chat", chromedp.ByQuery))
	browsertest.Wait(t, vol, "available for chat", `document.querySelector('#available-chat').checked && /Available for chat/.test(document.querySelector('#load').textContent)`, 10*time.Second)
	waitFreeAt(t, a, "c2", "nb")

	// The visitor comes to A, where nobody is signed in: it overflows to B.
	usePage := chatPageReady()
	var visTab context.Context
	var gv *goVisitor
	if usePage {
		t.Log("visitor: driving A's /chat page in a browser tab")
		visTab = newTab(t, browser)
		browsertest.Run(t, visTab, "open the chat page", chromedp.Navigate(a.url+"/chat"),
			chromedp.WaitVisible("#start", chromedp.ByQuery),
			chromedp.SetValue("#lang", "nb", chromedp.ByQuery),
			chromedp.Click("#start", chromedp.ByQuery))
	} else {
		t.Log("visitor: the chat page is not built yet; driving the visitor from Go over /v1/chat")
		gv = dialGoVisitor(t, a, "nb")
	}

	browsertest.Wait(t, vol, "the overflowed offer", `(() => { const o = document.querySelector('#offers .offer[data-contact]');
		return !!o && /c1/.test(o.querySelector('.offer-from').textContent) && +o.querySelector('.countdown').textContent > 0
		  && !!o.querySelector('button.accept') && !!o.querySelector('button.decline'); })()`, 30*time.Second)
	var contact string
	browsertest.Eval(t, vol, `document.querySelector('#offers .offer').dataset.contact`, &contact)
	browsertest.Wait(t, vol, "the offer announced", `document.querySelector('#announce').getAttribute('role') === 'alert' && /c1/.test(document.querySelector('#announce').textContent)`, 5*time.Second)
	// The countdown ticks.
	var first int
	browsertest.Eval(t, vol, `+document.querySelector('#offers .offer .countdown').textContent`, &first)
	browsertest.Wait(t, vol, "the countdown to tick", fmt.Sprintf(`+document.querySelector('#offers .offer .countdown').textContent < %d`, first), 5*time.Second)
	screenshot(t, vol, "volunteer-offer")

	sel := fmt.Sprintf(`.chat[data-contact=%s]`, jsString(contact))
	browsertest.Run(t, vol, "accept", chromedp.Click(`#offers .offer button.accept`, chromedp.ByQuery))
	browsertest.Wait(t, vol, "the chat with the centre badge", fmt.Sprintf(`(() => { const c = document.querySelector(%s);
		return !!c && /c1/.test(c.querySelector('.badge-centre').textContent) && !document.querySelector('#offers .offer'); })()`, jsString(sel)), 15*time.Second)

	// Visitor -> volunteer.
	if usePage {
		browsertest.Wait(t, visTab, "the visitor's composer", `(() => { const m = document.querySelector('#message'); return !!m && m.offsetParent !== null && !m.disabled; })()`, 15*time.Second)
		browsertest.Run(t, visTab, "visitor writes", chromedp.SendKeys("#message", "Hei, er det noen der?", chromedp.ByQuery),
			chromedp.Click("#send", chromedp.ByQuery))
	} else {
		gv.await("connected", frameIs("connected"))
		gv.send(map[string]any{"type": "message", "id": "c1", "text": "Hei, er det noen der?"})
	}
	browsertest.Wait(t, vol, "the visitor's message", fmt.Sprintf(`[...document.querySelectorAll(%s)].some(m => m.textContent.includes('er det noen der?'))`,
		jsString(sel+" .messages[role=log][aria-live=polite] .msg.visitor")), 15*time.Second)

	// Volunteer -> visitor, sent with Enter.
	browsertest.Run(t, vol, "volunteer replies", chromedp.SendKeys(sel+" textarea.reply", "Ja, jeg er her. Fortell.\r", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the reply on the console", fmt.Sprintf(`[...document.querySelectorAll(%s)].some(m => m.textContent.includes('jeg er her'))`,
		jsString(sel+" .msg.volunteer")), 5*time.Second)
	if usePage {
		browsertest.Wait(t, visTab, "the reply on the visitor page", `[...document.querySelectorAll('#messages .msg.volunteer')].some(m => m.textContent.includes('jeg er her'))`, 15*time.Second)
		browsertest.Wait(t, visTab, "the visitor's own message", `[...document.querySelectorAll('#messages .msg.visitor')].some(m => m.textContent.includes('er det noen der?'))`, 5*time.Second)
	} else {
		gv.await("the volunteer's message", func(f map[string]any) bool {
			return f["type"] == "message" && strings.Contains(fmt.Sprint(f["text"]), "jeg er her")
		})
	}
	browsertest.Wait(t, vol, "delivered mark", fmt.Sprintf(`!!document.querySelector(%s)`, jsString(sel+" .msg.volunteer.delivered")), 10*time.Second)

	// A second, local visitor at B: two chats side by side.
	gv2 := dialGoVisitor(t, b, "en")
	browsertest.Wait(t, vol, "a local offer", `(() => { const o = document.querySelector('#offers .offer[data-contact]'); return !!o && !o.querySelector('.offer-from'); })()`, 20*time.Second)
	browsertest.Run(t, vol, "accept the local chat", chromedp.Click(`#offers .offer button.accept`, chromedp.ByQuery))
	browsertest.Wait(t, vol, "two chats", `document.querySelectorAll('#chats .chat').length === 2`, 10*time.Second)
	gv2.await("connected", frameIs("connected"))
	gv2.send(map[string]any{"type": "message", "id": "c1", "text": "Hi, I just need to talk."})
	browsertest.Wait(t, vol, "the second visitor's message", `[...document.querySelectorAll('#chats .msg.visitor')].some(m => m.textContent.includes('need to talk'))`, 10*time.Second)
	var sideBySide bool
	browsertest.Eval(t, vol, `(() => { const c = document.querySelectorAll('#chats .chat'); const a = c[0].getBoundingClientRect(), b = c[1].getBoundingClientRect(); return Math.abs(a.top - b.top) < 2 && b.left >= a.right - 1; })()`, &sideBySide)
	if !sideBySide {
		t.Error("two chats are not side by side on a laptop-sized window")
	}
	screenshot(t, vol, "volunteer-chats")

	// The volunteer ends the overflowed chat with a categorisation.
	browsertest.Run(t, vol, "end", chromedp.Click(sel+" button.end", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the categorisation form", fmt.Sprintf(`(() => { const f = document.querySelector(%s); return !!f && f.querySelectorAll('input[name=topic]').length >= 5 && !!f.querySelector('select.age-group'); })()`,
		jsString(sel+" .categorise")), 5*time.Second)
	browsertest.Run(t, vol, "categorise",
		chromedp.Click(sel+` .categorise input[name=topic][value="family"]`, chromedp.ByQuery),
		chromedp.SetValue(sel+" .categorise select.age-group", "16-18", chromedp.ByQuery),
		chromedp.Click(sel+" .categorise button.submit-categorisation", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the chat to go", fmt.Sprintf(`!document.querySelector(%s) && document.querySelectorAll('#chats .chat').length === 1`, jsString(sel)), 10*time.Second)

	if usePage {
		browsertest.Wait(t, visTab, "the visitor page to show the end", `(() => { const a = document.querySelector('#again'); const m = document.querySelector('#message');
			return (!!a && !a.hidden) || (!!m && m.disabled); })()`, 15*time.Second)
	} else {
		f := gv.await("ended", frameIs("ended"))
		if f["by"] != "volunteer" {
			t.Errorf("visitor got %v, want ended by volunteer", f)
		}
	}
	st := b.node.Switchboard().Stats()
	if st.Categorised() != 1 || st.Topics["family"] != 1 || st.AgeGroups["16-18"] != 1 {
		t.Errorf("B's stats: categorised %d, topics %v, age groups %v; want 1, family, 16-18", st.Categorised(), st.Topics, st.AgeGroups)
	}

	// Log out: back to the login form.
	browsertest.Run(t, vol, "log out", chromedp.Click("#logout", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the login form", `!document.querySelector('#login').hidden && document.querySelector('#desk').hidden`, 10*time.Second)
}

// TestConsolePageKeyboardOnly runs accept -> chat -> end with the keyboard
// alone and checks every control has an accessible name.
func TestConsolePageKeyboardOnly(t *testing.T) {
	fed := startPageFederation(t, 1)
	c := fed[0]
	staffEnrol(t, c, consensus.Volunteer{ID: "v-k1", Centre: "c1", Alias: "Ola", Channels: []string{"chat", "phone"},
		Languages: []string{"nb"}, Capacity: 2, Role: "volunteer"}, "keyboard only please")
	ctx := newBrowser(t)
	browsertest.Run(t, ctx, "open the console", chromedp.EmulateViewport(1024, 768), chromedp.Navigate(c.url+"/console"),
		chromedp.WaitVisible("#login-submit", chromedp.ByQuery))
	var bad []string
	browsertest.Eval(t, ctx, accessibleNameProblems, &bad)
	if len(bad) > 0 {
		t.Errorf("controls without an accessible name on the login page: %v", bad)
	}
	var label string
	browsertest.Eval(t, ctx, `document.querySelector('#volunteer').labels[0].textContent`, &label)
	if label != "Volunteer id" {
		t.Errorf("volunteer field label %q", label)
	}

	tabTo(t, ctx, "#volunteer")
	browsertest.Run(t, ctx, "type the id", chromedp.KeyEvent("v-k1"))
	tabTo(t, ctx, "#password")
	browsertest.Run(t, ctx, "type the password and Enter", chromedp.KeyEvent("keyboard only please"), chromedp.KeyEvent(kb.Enter))
	browsertest.Wait(t, ctx, "the desk", `!document.querySelector('#desk').hidden`, 15*time.Second)
	tabTo(t, ctx, "#available-chat")
	browsertest.Run(t, ctx, "Space", chromedp.KeyEvent(" "))
	browsertest.Wait(t, ctx, "available", `document.querySelector('#available-chat').checked && /Available for chat/.test(document.querySelector('#load').textContent)`, 10*time.Second)

	v := dialGoVisitor(t, c, "nb")
	browsertest.Wait(t, ctx, "the offer", `!!document.querySelector('#offers .offer button.accept')`, 20*time.Second)
	tabTo(t, ctx, "#offers .offer button.accept")
	browsertest.Run(t, ctx, "Enter on accept", chromedp.KeyEvent(kb.Enter))
	browsertest.Wait(t, ctx, "the chat", `!!document.querySelector('#chats .chat textarea.reply')`, 10*time.Second)
	v.await("connected", frameIs("connected"))
	v.send(map[string]any{"type": "message", "id": "c1", "text": "Kan noen hjelpe meg?"})
	browsertest.Wait(t, ctx, "the message in a live log", `[...document.querySelectorAll('#chats .messages[role=log][aria-live=polite] .msg.visitor')].some(m => m.textContent.includes('hjelpe meg'))`, 10*time.Second)

	tabTo(t, ctx, "#chats .chat textarea.reply")
	browsertest.Run(t, ctx, "reply with Enter", chromedp.KeyEvent("Ja, jeg lytter."), chromedp.KeyEvent(kb.Enter))
	v.await("the reply", func(f map[string]any) bool { return f["type"] == "message" && f["text"] == "Ja, jeg lytter." })

	tabTo(t, ctx, "#chats .chat button.end")
	browsertest.Run(t, ctx, "Enter on end", chromedp.KeyEvent(kb.Enter))
	browsertest.Wait(t, ctx, "the categorisation form", `!!document.querySelector('#chats .categorise input[name=topic]')`, 5*time.Second)
	browsertest.Eval(t, ctx, accessibleNameProblems, &bad)
	if len(bad) > 0 {
		t.Errorf("controls without an accessible name in a chat: %v", bad)
	}
	tabTo(t, ctx, `#chats .categorise input[name=topic]`)
	browsertest.Run(t, ctx, "Space on a topic", chromedp.KeyEvent(" "))
	browsertest.Wait(t, ctx, "a topic checked", `document.querySelectorAll('#chats .categorise input[name=topic]:checked').length === 1`, 5*time.Second)
	tabTo(t, ctx, "#chats .categorise select.age-group")
	browsertest.Run(t, ctx, "ArrowDown on the age group", chromedp.KeyEvent(kb.ArrowDown))
	tabTo(t, ctx, "#chats .categorise button.submit-categorisation")
	browsertest.Run(t, ctx, "Enter on submit", chromedp.KeyEvent(kb.Enter))
	browsertest.Wait(t, ctx, "the chat to close", `document.querySelectorAll('#chats .chat').length === 0`, 10*time.Second)
	v.await("ended", frameIs("ended"))
	if got := c.node.Switchboard().Stats().Categorised(); got != 1 {
		t.Errorf("categorised %d, want 1", got)
	}
}

// TestStaffPagesLoadNothingFromOtherOrigins: the console and the overview
// (and the enrolment page, whose browser run is enrol_page_test.go's) load
// only from their own origin, under a CSP without inline script.
func TestStaffPagesLoadNothingFromOtherOrigins(t *testing.T) {
	fed := startPageFederation(t, 1)
	c := fed[0]
	staffEnrol(t, c, consensus.Volunteer{ID: "v-o1", Centre: "c1", Alias: "Siri", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 1, Role: "volunteer"}, "same origin only")
	for _, path := range []string{"/console", "/overview", "/enrol", "/static/console.js", "/static/overview.js", "/static/enrol.js", "/static/password.js",
		"/static/console.css", "/static/overview.css", "/static/enrol.css", "/supervisor", "/static/supervisor.js", "/static/supervisor.css"} {
		resp, err := http.Get(c.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != http.StatusOK || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("%s: HTTP %d, CSP %q", path, resp.StatusCode, csp)
		}
	}

	ctx := newBrowser(t)
	var mu sync.Mutex
	var urls []string
	var cspErrors []string
	chromedp.ListenTarget(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			urls = append(urls, e.Request.URL)
		case *network.EventWebSocketCreated:
			urls = append(urls, e.URL)
		case *network.EventLoadingFailed:
			if e.BlockedReason != "" {
				cspErrors = append(cspErrors, string(e.BlockedReason))
			}
		}
	})
	browsertest.Run(t, ctx, "enable network events", network.Enable())
	consoleLogin(t, ctx, c, "v-o1", "same origin only")
	browsertest.Run(t, ctx, "go available", chromedp.Click("#available-chat", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "available", `document.querySelector('#available-chat').checked`, 10*time.Second)
	browsertest.Run(t, ctx, "open the overview", chromedp.Navigate(c.url+"/overview"),
		chromedp.WaitVisible("#token", chromedp.ByQuery),
		chromedp.SendKeys("#token", c.token, chromedp.ByQuery),
		chromedp.Click("#token-submit", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "the live view", `!!document.querySelector('#centres tr[data-centre="c1"] .gossip') && document.querySelector('#centres tr[data-centre="c1"] .gossip').textContent === 'alive'`, 20*time.Second)

	mu.Lock()
	defer mu.Unlock()
	host := strings.TrimPrefix(c.url, "http://")
	var sawWS, sawStream bool
	for _, u := range urls {
		switch {
		case strings.HasPrefix(u, "ws://"+host+"/v1/console"):
			sawWS = true
		case strings.HasPrefix(u, c.url+"/v1/federation/events"):
			sawStream = true
		case strings.HasPrefix(u, c.url+"/"):
		default:
			t.Errorf("request to another origin: %s", u)
		}
	}
	if !sawWS || !sawStream {
		t.Errorf("saw console socket %v, event stream %v; requests: %v", sawWS, sawStream, urls)
	}
	if len(cspErrors) > 0 {
		t.Errorf("blocked loads: %v", cspErrors)
	}
}
