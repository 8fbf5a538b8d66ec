package api

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/internal/browsertest"
	"github.com/helpmesh/helpmesh/switchboard"
)

// TestOverviewReflectsCentreDownAndBack: the overview shows a centre go
// down and come back, live, without reloading.
func TestOverviewReflectsCentreDownAndBack(t *testing.T) {
	f := newPageFederation(t, 2)
	c1 := f.Member("c1")
	f.Add("c3") // stopped and started again below

	ctx := newBrowser(t)
	browsertest.Run(t, ctx, "open the overview", chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(c1.url+"/overview"),
		chromedp.WaitVisible("#token", chromedp.ByQuery))
	var bad []string
	browsertest.Eval(t, ctx, accessibleNameProblems, &bad)
	if len(bad) > 0 {
		t.Errorf("controls without an accessible name: %v", bad)
	}
	browsertest.Run(t, ctx, "enter the token", chromedp.SendKeys("#token", c1.token, chromedp.ByQuery),
		chromedp.Click("#token-submit", chromedp.ByQuery))
	allAlive := `['c1','c2','c3'].every(id => { const r = document.querySelector('#centres tr[data-centre="' + id + '"]');
		return !!r && r.querySelector('.gossip').textContent === 'alive' && !r.classList.contains('down'); })`
	browsertest.Wait(t, ctx, "three alive centres", allAlive, 30*time.Second)
	browsertest.Wait(t, ctx, "the leader", `/^c[123]$/.test(document.querySelector('#leader').textContent)`, 10*time.Second)
	// A visitor waits at c2 (nobody is on duty anywhere). c2 publishes when
	// its desk changes, not as the wait grows: the page adds the time since
	// to the published wait, so the wait it shows grows.
	c2 := f.Member("c2")
	if _, err := c2.node.Switchboard().StartContact("chat", "nb", quietVisitor{}); err != nil {
		t.Fatal(err)
	}
	browsertest.Wait(t, ctx, "c2's oldest wait growing past 4 s", `(() => { const r = document.querySelector('#centres tr[data-centre="c2"]');
		return !!r && r.querySelector('.queue').textContent === '1' && parseInt(r.querySelector('.oldest-wait').textContent, 10) >= 4; })()`, 30*time.Second)
	var stored string
	browsertest.Eval(t, ctx, `sessionStorage.getItem('helpmesh_admin_token') || ''`, &stored)
	if stored != c1.token {
		t.Error("the token is not kept in sessionStorage")
	}
	var local string
	browsertest.Eval(t, ctx, `JSON.stringify(localStorage)`, &local)
	if local != "{}" {
		t.Errorf("localStorage holds %s", local)
	}
	browsertest.Eval(t, ctx, `window.__sameDocument = 'yes'`, nil)

	// Roster management: add a volunteer, get an enrolment code.
	browsertest.Run(t, ctx, "add a volunteer",
		chromedp.SendKeys("#nv-id", "v-new", chromedp.ByQuery),
		chromedp.SendKeys("#nv-alias", "Ingrid", chromedp.ByQuery),
		chromedp.SendKeys("#nv-languages", "nb, en", chromedp.ByQuery),
		chromedp.Click("#nv-submit", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "the enrolment code", `/^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$/.test((document.querySelector('#enrolment-code') || {}).textContent || '')`, 15*time.Second)
	browsertest.Wait(t, ctx, "the new volunteer listed", `!!document.querySelector('#volunteers tr[data-volunteer="v-new"]')`, 15*time.Second)
	if v, ok := c1.node.Roster().Volunteers["v-new"]; !ok || v.Centre != "c1" || v.Capacity != 2 || len(v.Languages) != 2 {
		t.Errorf("roster volunteer %+v", v)
	}
	// The policy form is filled from GET /v1/policy (its editing is
	// policy_page_test.go's).
	browsertest.Wait(t, ctx, "the policy form", `document.querySelector('#pf-service-level').value === '60' && document.querySelectorAll('#pf-emergency .emergency-row').length === 2`, 15*time.Second)
	screenshot(t, ctx, "overview")

	f.Stop("c3")
	browsertest.Wait(t, ctx, "c3 down", `(() => { const r = document.querySelector('#centres tr[data-centre="c3"]');
		return !!r && r.classList.contains('down') && /^(dead|left)$/.test(r.querySelector('.gossip').textContent); })()`, 60*time.Second)
	var state string
	browsertest.Eval(t, ctx, `document.querySelector('#centres tr[data-centre="c3"] .gossip').textContent`, &state)
	t.Logf("c3 shown as %q after its node stopped", state)
	screenshot(t, ctx, "overview-centre-down")

	f.Restart("c3")
	browsertest.Wait(t, ctx, "c3 back", allAlive, 60*time.Second)
	var same string
	browsertest.Eval(t, ctx, `window.__sameDocument || ''`, &same)
	if same != "yes" {
		t.Error("the page was reloaded")
	}
}

// quietVisitor is a visitor who only waits.
type quietVisitor struct{}

func (quietVisitor) Queued(int, switchboard.Estimate) {}
func (quietVisitor) Connected(string)                 {}
func (quietVisitor) Event(switchboard.Event)          {}
func (quietVisitor) Requeued(int)                     {}
func (quietVisitor) Closed(string)                    {}
