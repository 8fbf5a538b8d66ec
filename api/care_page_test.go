package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
)

// TestConsolePageCoolDownAfterAHeavyConversation: with a policy cool-down
// of 3 s after suicidal-thoughts, a volunteer who categorises a chat so
// sees the cool-down notice with the switchboard's end time; a visitor who
// arrives meanwhile is not offered to them; the notice goes and the offer
// comes when the switchboard ends the cool-down, which is the end time the
// console was told (checked against the page's own clock, polled, never
// slept for).
func TestConsolePageCoolDownAfterAHeavyConversation(t *testing.T) {
	fed := startPageFederation(t, 1)
	c := fed[0]
	staffAdmin(t, c, http.MethodPatch, "/v1/policy", map[string]any{
		"care": map[string]any{"heavy_topics": []string{"suicidal-thoughts"}, "cool_down_seconds": 3},
	}, nil)
	staffEnrol(t, c, consensus.Volunteer{ID: "v-c1", Centre: "c1", Alias: "Ola", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 1, Role: "volunteer"}, "take a breath please")
	ctx := newBrowser(t)
	consoleLogin(t, ctx, c, "v-c1", "take a breath please")
	browsertest.Run(t, ctx, "available for chat", chromedp.Click("#available-chat", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "available", `document.querySelector('#available-chat').checked`, 10*time.Second)

	v1 := dialGoVisitor(t, c, "nb")
	browsertest.Wait(t, ctx, "the first offer", `!!document.querySelector('#offers .offer button.accept')`, 20*time.Second)
	browsertest.Run(t, ctx, "accept", chromedp.Click("#offers .offer button.accept", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "the chat", `!!document.querySelector('#chats .chat button.end')`, 10*time.Second)
	v1.await("connected", frameIs("connected"))
	browsertest.Run(t, ctx, "end", chromedp.Click("#chats .chat button.end", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "the categorisation form", `!!document.querySelector('#chats .categorise input[value="suicidal-thoughts"]')`, 5*time.Second)
	browsertest.Run(t, ctx, "categorise heavy",
		chromedp.Click(`#chats .categorise input[value="suicidal-thoughts"]`, chromedp.ByQuery),
		chromedp.Click("#chats .categorise button.submit-categorisation", chromedp.ByQuery))

	browsertest.Wait(t, ctx, "the cool-down notice", `!document.querySelector('#care').hidden && document.querySelector('#care').dataset.state === 'cool_down'`, 10*time.Second)
	var notice struct {
		Text, Until string
		Ready       bool
	}
	browsertest.Eval(t, ctx, `({Text: document.querySelector('#care-text').textContent, Until: document.querySelector('#care').dataset.until,
		Ready: !document.querySelector('#care-ready').hidden})`, &notice)
	until, err := time.Parse(time.RFC3339Nano, notice.Until)
	if err != nil {
		t.Fatalf("the notice's end time %q: %v", notice.Until, err)
	}
	if notice.Text == "" || !notice.Ready {
		t.Fatalf("the notice says %q, ready button shown %v", notice.Text, notice.Ready)
	}
	if !containsAll(notice.Text, "Take a breath", "heavy conversation") {
		t.Errorf("the notice says %q", notice.Text)
	}
	// The page notes when the next offer appears, by its own clock.
	browsertest.Run(t, ctx, "watch for the next offer", chromedp.Evaluate(`(() => {
		const o = document.querySelector('#offers');
		new MutationObserver((_, obs) => { if (o.querySelector('.offer')) { window.__offerAt = Date.now(); obs.disconnect(); } })
			.observe(o, { childList: true, subtree: true });
	})()`, nil))
	dialGoVisitor(t, c, "nb")
	// Waiting: the visitor is queued, the volunteer is resting.
	var offered bool
	browsertest.Eval(t, ctx, `!!document.querySelector('#offers .offer')`, &offered)
	if offered && time.Now().Before(until) {
		t.Fatal("offered a contact during the cool-down")
	}
	browsertest.Wait(t, ctx, "the notice to go and the offer to come", `document.querySelector('#care').hidden && typeof window.__offerAt === 'number'`, 15*time.Second)
	var at struct{ Offer, Over float64 }
	browsertest.Eval(t, ctx, `({Offer: window.__offerAt, Over: Number(document.querySelector('#care').dataset.over)})`, &at)
	offerAt := time.UnixMilli(int64(at.Offer))
	overAt := time.UnixMilli(int64(at.Over))
	// Date.now() is in whole milliseconds: allow that much early.
	if offerAt.Before(until.Add(-time.Millisecond)) || overAt.Before(until.Add(-time.Millisecond)) {
		t.Fatalf("the rest ended at %v and the offer came at %v, before the stated end %v", overAt, offerAt, until)
	}
	if late := offerAt.Sub(until); late > 1500*time.Millisecond {
		t.Fatalf("the offer came %v after the stated end of the cool-down", late)
	}
	t.Logf("cool-down stated to end %v; the console heard it end %v later and the offer %v later",
		until.Format(time.RFC3339Nano), overAt.Sub(until), offerAt.Sub(until))
	if st := c.node.Switchboard().Stats(); st.Care["cool_down"] != 1 {
		t.Errorf("care counts %v, want one cool-down", st.Care)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
