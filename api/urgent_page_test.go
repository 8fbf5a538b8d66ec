package api

// Urgent contacts end to end (issue 17): the visitor page's optional
// choice, the queue, and the volunteer's console.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
)

// A visitor waits (nobody on duty); a second visitor ticks the urgent
// choice on the chat page and starts: the first hears, with its new place,
// that someone urgent came in ahead; the volunteer who then goes available
// is offered the urgent one first, and the console marks the offer urgent
// in words, for screen readers too.
func TestUrgentChoiceMarksTheConsoleOffer(t *testing.T) {
	fed := startPageFederation(t, 1)
	a := fed[0]
	staffEnrol(t, a, consensus.Volunteer{ID: "v-a1", Centre: "c1", Alias: "Kari", Channels: []string{"chat"},
		Languages: []string{"nb", "en"}, Capacity: 1, Role: "volunteer"}, "correct horse battery")
	browser := newBrowser(t)
	vol := newTab(t, browser)
	consoleLogin(t, vol, a, "v-a1", "correct horse battery")

	waiting := dialGoVisitor(t, a, "nb")
	waiting.await("queued at place 1", func(f map[string]any) bool { return f["type"] == "queued" && f["position"] == float64(1) })

	page := vpOpenChat(t, browser, a.url)
	vpEval(t, page, `(() => { const s = document.getElementById('lang'); s.value = 'nb'; s.dispatchEvent(new Event('change', {bubbles: true})); return true; })()`, nil)
	vpWait(t, page, "the nb catalogue", `document.documentElement.getAttribute('data-lang-loaded') === 'nb'`)
	var label string
	vpEval(t, page, `document.querySelector('label[for=urgent]').textContent`, &label)
	if !strings.Contains(label, "nå") {
		t.Errorf("the urgent choice reads %q, not the nb catalogue's", label)
	}
	vpRun(t, page, "tick urgent and start", chromedp.Click("#urgent", chromedp.ByID), chromedp.Click("#start", chromedp.ByID))
	vpWaitPhase(t, page, "queued")
	vpWait(t, page, "first in the queue", `/\b1\b/.test(document.getElementById('status').textContent)`)

	moved := waiting.await("queued with moved_back", func(f map[string]any) bool { return f["type"] == "queued" && f["moved_back"] == true })
	if moved["position"] != float64(2) {
		t.Errorf("the moved-back visitor is told place %v, want 2", moved["position"])
	}

	browsertest.Run(t, vol, "go available", chromedp.Click("#available-chat", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the urgent offer, marked in words", `(() => {
		const o = document.querySelector('#offers .offer[data-contact]');
		if (!o || o.dataset.urgent !== 'true' || !o.classList.contains('offer-urgent')) return false;
		const b = o.querySelector('.badge-urgent');
		return !!b && b.textContent.trim().length > 0 && o.getAttribute('aria-describedby') === b.id; })()`, 30*time.Second)
	var badge, announce string
	browsertest.Eval(t, vol, `document.querySelector('#offers .offer .badge-urgent').textContent`, &badge)
	browsertest.Wait(t, vol, "the offer announced as urgent", `document.querySelector('#announce').textContent.length > 0`, 5*time.Second)
	browsertest.Eval(t, vol, `document.querySelector('#announce').textContent`, &announce)
	if !strings.Contains(announce, strings.SplitN(badge, ":", 2)[0]) {
		t.Errorf("the announcement %q does not say the offer is urgent (badge %q)", announce, badge)
	}
	screenshot(t, vol, "volunteer-urgent-offer")
	browsertest.Run(t, vol, "accept", chromedp.Click(`#offers .offer button.accept`, chromedp.ByQuery))
	vpWaitPhase(t, page, "connected")
}

// urgent=1 queues an urgent contact; any other value than 0 or 1 is a
// clear 400, and nothing starts.
func TestVisitorUrgentParameter(t *testing.T) {
	fed := startPageFederation(t, 1)
	a := fed[0]
	resp, err := http.Get(a.url + "/v1/chat?channel=chat&lang=nb&urgent=yes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("urgent=yes: HTTP %d, want 400", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(a.url, "http")+"/v1/chat?channel=chat&lang=nb&urgent=1", nil)
	if err != nil {
		t.Fatalf("dial urgent: %v", err)
	}
	v := watchGoVisitor(t, conn)
	v.await("queued", frameIs("queued"))
	if n := a.node.Switchboard().Stats().UrgentContacts["chat"]; n != 1 {
		t.Errorf("urgent chats counted %d, want 1", n)
	}
}
