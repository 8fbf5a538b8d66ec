package api

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// restartableCentre is a centre (node only, no HTTP) that a test can stop
// and start again on the same data directory and ports.
type restartableCentre struct {
	t    *testing.T
	cfg  node.Config
	node *node.Node
}

// addRestartableCentre admits and starts centre id into seed's federation,
// the way startPageFederation does, but keeps its config for restarts.
func addRestartableCentre(t *testing.T, seed *pageCentre, id string) *restartableCentre {
	t.Helper()
	dir := filepath.Join(t.TempDir(), id)
	p2p := "/ip4/127.0.0.1/tcp/" + itoa(pagesFreePort(t))
	gossip := "127.0.0.1:" + itoa(pagesFreePort(t))
	name := "Centre " + id
	res, err := node.Init(dir, node.FileConfig{Centre: id, Name: name})
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.Config{Centre: id, Name: name, DataDir: dir, P2PAddr: p2p, GossipAddr: gossip,
		Timing: timing.Test, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := consensus.Centre{ID: id, Name: name, PeerID: res.PeerID, Addrs: []string{p2p}, GossipAddr: gossip}
	if err := seed.node.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpAdmitCentre, Centre: &c}); err != nil {
		t.Fatal(err)
	}
	rc := &restartableCentre{t: t, cfg: cfg}
	cfg.Join = seed.node.P2PAddrs()[0]
	rc.node, err = node.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if rc.node != nil {
			_ = rc.node.Stop()
		}
	})
	return rc
}

func itoa(n int) string {
	return strconv.Itoa(n)
}

func (rc *restartableCentre) stop() {
	rc.t.Helper()
	if err := rc.node.Stop(); err != nil {
		rc.t.Logf("stop %s: %v", rc.cfg.Centre, err)
	}
	rc.node = nil
}

// start starts the centre again on its data directory (no join).
func (rc *restartableCentre) start() {
	rc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nd, err := node.Start(ctx, rc.cfg)
	if err != nil {
		rc.t.Fatalf("restart %s: %v", rc.cfg.Centre, err)
	}
	rc.node = nd
}

// TestOverviewReflectsCentreDownAndBack: the overview shows a centre go
// down and come back, live, without reloading.
func TestOverviewReflectsCentreDownAndBack(t *testing.T) {
	fed := startPageFederation(t, 2)
	c1 := fed[0]
	c3 := addRestartableCentre(t, c1, "c3")

	ctx := newBrowser(t)
	staffRun(t, ctx, "open the overview", chromedp.EmulateViewport(1280, 900),
		chromedp.Navigate(c1.url+"/overview"),
		chromedp.WaitVisible("#token", chromedp.ByQuery))
	var bad []string
	staffEval(t, ctx, accessibleNameProblems, &bad)
	if len(bad) > 0 {
		t.Errorf("controls without an accessible name: %v", bad)
	}
	staffRun(t, ctx, "enter the token", chromedp.SendKeys("#token", c1.token, chromedp.ByQuery),
		chromedp.Click("#token-submit", chromedp.ByQuery))
	allAlive := `['c1','c2','c3'].every(id => { const r = document.querySelector('#centres tr[data-centre="' + id + '"]');
		return !!r && r.querySelector('.gossip').textContent === 'alive' && !r.classList.contains('down'); })`
	staffWait(t, ctx, "three alive centres", allAlive, 30*time.Second)
	staffWait(t, ctx, "the leader", `/^c[123]$/.test(document.querySelector('#leader').textContent)`, 10*time.Second)
	var stored string
	staffEval(t, ctx, `sessionStorage.getItem('helpmesh_admin_token') || ''`, &stored)
	if stored != c1.token {
		t.Error("the token is not kept in sessionStorage")
	}
	var local string
	staffEval(t, ctx, `JSON.stringify(localStorage)`, &local)
	if local != "{}" {
		t.Errorf("localStorage holds %s", local)
	}
	staffEval(t, ctx, `window.__sameDocument = 'yes'`, nil)

	// Roster management: add a volunteer, get an enrolment code.
	staffRun(t, ctx, "add a volunteer",
		chromedp.SendKeys("#nv-id", "v-new", chromedp.ByQuery),
		chromedp.SendKeys("#nv-alias", "Ingrid", chromedp.ByQuery),
		chromedp.SendKeys("#nv-languages", "nb, en", chromedp.ByQuery),
		chromedp.Click("#nv-submit", chromedp.ByQuery))
	staffWait(t, ctx, "the enrolment code", `/^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$/.test((document.querySelector('#enrolment-code') || {}).textContent || '')`, 15*time.Second)
	staffWait(t, ctx, "the new volunteer listed", `!!document.querySelector('#volunteers tr[data-volunteer="v-new"]')`, 15*time.Second)
	if v, ok := c1.node.Roster().Volunteers["v-new"]; !ok || v.Centre != "c1" || v.Capacity != 2 || len(v.Languages) != 2 {
		t.Errorf("roster volunteer %+v", v)
	}
	// A bad policy shows the server's error.
	staffRun(t, ctx, "save a bad policy", chromedp.SetValue("#policy", `{"topics": []}`, chromedp.ByQuery),
		chromedp.Click("#policy-save", chromedp.ByQuery))
	staffWait(t, ctx, "the policy error", `/Not saved/.test(document.querySelector('#policy-error').textContent)`, 15*time.Second)
	staffRun(t, ctx, "reload the policy", chromedp.Click("#policy-reload", chromedp.ByQuery))
	staffWait(t, ctx, "the policy back", `/"topics"/.test(document.querySelector('#policy').value) && /mental-health/.test(document.querySelector('#policy').value)`, 10*time.Second)
	screenshot(t, ctx, "overview")

	c3.stop()
	staffWait(t, ctx, "c3 down", `(() => { const r = document.querySelector('#centres tr[data-centre="c3"]');
		return !!r && r.classList.contains('down') && /^(dead|left)$/.test(r.querySelector('.gossip').textContent); })()`, 60*time.Second)
	var state string
	staffEval(t, ctx, `document.querySelector('#centres tr[data-centre="c3"] .gossip').textContent`, &state)
	t.Logf("c3 shown as %q after its node stopped", state)
	screenshot(t, ctx, "overview-centre-down")

	c3.start()
	staffWait(t, ctx, "c3 back", allAlive, 60*time.Second)
	var same string
	staffEval(t, ctx, `window.__sameDocument || ''`, &same)
	if same != "yes" {
		t.Error("the page was reloaded")
	}
}
