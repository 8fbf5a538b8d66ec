package api

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestChatPageWaitEstimate: what the chat page shows of the queued frame's
// wait (issue 14) in Chromium: "less than a minute" while a volunteer is
// free for the visitor; with nobody on duty anywhere, the place, "no one is
// free right now" and the emergency numbers as tel: links.
func TestChatPageWaitEstimate(t *testing.T) {
	cats := vpCatalogues(t)
	browser := newBrowser(t)
	c := startPageFederation(t, 1)[0]
	fill := func(s string, kv ...string) string {
		for i := 0; i+1 < len(kv); i += 2 {
			s = strings.ReplaceAll(s, "{"+kv[i]+"}", kv[i+1])
		}
		return s
	}

	// A volunteer is free: the offer rings while the visitor waits.
	con, kari := vpSignIn(t, c, "Kari")
	tab := vpOpenChat(t, browser, c.url)
	var lang string
	vpEval(t, tab, `document.documentElement.getAttribute('data-lang-loaded')`, &lang)
	cat := cats[lang]
	vpRun(t, tab, "start the chat", chromedp.Click("#start", chromedp.ByID))
	vpWaitPhase(t, tab, "queued")
	kari.awaitOffer(t)
	want := fill(cat["status_queued"], "position", "1", "wait", cat["wait_under_minute"])
	vpWait(t, tab, "the status "+want, `document.getElementById('status').textContent === `+vpQuote(want))
	var hidden bool
	vpEval(t, tab, `document.getElementById('notice').hidden`, &hidden)
	if !hidden {
		t.Errorf("a notice shows while a volunteer is free")
	}
	screenshot(t, tab, "visitor-wait-free")
	vpRun(t, tab, "end the chat", chromedp.Click("#end", chromedp.ByID))
	vpWaitPhase(t, tab, "ended")
	con.SignOut()
	deadline := time.Now().Add(10 * time.Second)
	for c.node.Switchboard().Stats().Total().Waiting != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first visitor still waits after ending the chat")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Nobody is on duty here, and there is no other centre.
	tab = vpOpenChat(t, browser, c.url)
	vpEval(t, tab, `document.documentElement.getAttribute('data-lang-loaded')`, &lang)
	cat = cats[lang]
	vpRun(t, tab, "start the chat", chromedp.Click("#start", chromedp.ByID))
	vpWaitPhase(t, tab, "queued")
	want = fill(cat["status_queued_place"], "position", "1")
	vpWait(t, tab, "the status "+want, `document.getElementById('status').textContent === `+vpQuote(want))
	vpWait(t, tab, "the no-one-free notice", `!document.getElementById('notice').hidden && document.querySelectorAll('#emergency a[href^="tel:"]').length === 2`)
	var notice string
	vpEval(t, tab, `document.getElementById('notice-text').textContent`, &notice)
	if notice != cat["notice_busy"] {
		t.Errorf("notice %q, want %q", notice, cat["notice_busy"])
	}
	if !strings.HasPrefix(cats["en"]["notice_busy"], "No one is free right now") {
		t.Errorf("en notice_busy %q no longer says no one is free right now", cats["en"]["notice_busy"])
	}
	var hrefs []string
	vpEval(t, tab, `[...document.querySelectorAll('#emergency a')].map(a => a.getAttribute('href'))`, &hrefs)
	if !slices.Equal(hrefs, []string{"tel:113", "tel:112"}) {
		t.Errorf("emergency links %q", hrefs)
	}
	screenshot(t, tab, "visitor-wait-no-one")
}
