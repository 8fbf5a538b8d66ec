package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
	"github.com/helpmesh/helpmesh/internal/localfed"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// newBrowser starts a headless Chromium with a phone-sized window and
// returns a context for chromedp actions in one tab.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	path := browsertest.FindChromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("headless", true),
		chromedp.WindowSize(390, 844),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// newTab opens another tab (same browser, separate page) in ctx's browser.
func newTab(t testing.TB, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	// A browser call that never returns (a tab that is never painted does
	// not run requestAnimationFrame or screenshots) fails this test, not
	// the whole package at go test's time-out.
	ctx, stop := context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(stop)
	return ctx
}

// screenshotDir is where browser tests save screenshots: $HELPMESH_SCREENSHOTS
// or artifacts/screenshots at the module root (kept out of git).
func screenshotDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("HELPMESH_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join("..", "artifacts", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the tab's full page as name.png (quality 100 makes
// chromedp capture PNG rather than JPEG). A screenshot is an artifact for
// people, not an assertion: one that does not come within 20 s is logged
// and the test goes on. (In two clean-clone CI runs of 2026-11-29 the
// capture of the widget's page, a cross-origin iframe, never returned,
// while it takes a second when the test runs alone; the cause is not
// known.)
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	var png []byte
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Run(sctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Logf("screenshot %s not taken: %v", name, err)
		return
	}
	path := filepath.Join(screenshotDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// pageCentre is one real centre (node + API server) for page tests.
type pageCentre struct {
	node  *node.Node
	srv   *Server
	url   string // http://127.0.0.1:port
	token string
}

// pageConfig is a page test centre's configuration.
type pageConfig struct {
	node  node.Config
	token string
	// api is the API's listen address; "" picks a port. A restart that
	// must keep the browser's origin sets the old one.
	api string // log, if set, is the API server's logger (the node's is node.Logger).
	log *slog.Logger
}

// pageFederation is an in-process federation of real centres (real Raft,
// libp2p, Pebble, memberlist) with their HTTP servers. The federation logic
// is internal/localfed's; api's tests cannot use package centre (it
// imports api), so this driver wires a node and its server itself.
type pageFederation = fedtest.Federation[pageConfig, *pageCentre]

// newPageFederation starts n centres c1..cn: c1 bootstraps, the others are
// admitted at c1 and join through it.
func newPageFederation(t testing.TB, n int) *pageFederation {
	t.Helper()
	root := t.TempDir() // before the federation, whose cleanup stops the centres first
	return fedtest.Start(t, localfed.Driver[pageConfig, *pageCentre]{
		Prepare: func(id string, _ int) (pageConfig, *consensus.Centre, error) {
			return preparePageCentre(t, filepath.Join(root, id), id)
		},
		Start:  startPageCentre,
		Member: func(pc *pageCentre) localfed.Member { return pc.node },
		Stop: func(pc *pageCentre) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return errors.Join(pc.srv.Stop(ctx), pc.node.Stop())
		},
	}, n)
}

// startPageFederation is newPageFederation's centres.
func startPageFederation(t testing.TB, n int) []*pageCentre {
	t.Helper()
	return newPageFederation(t, n).Live()
}

func preparePageCentre(t testing.TB, dir, id string) (pageConfig, *consensus.Centre, error) {
	name := "Centre " + strings.ToUpper(id)
	res, err := node.Init(dir, node.FileConfig{Centre: id, Name: name})
	if err != nil {
		return pageConfig{}, nil, err
	}
	p2p := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", fedtest.FreePort(t))
	gossip := fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t))
	cfg := node.Config{Centre: id, Name: name, DataDir: dir, P2PAddr: p2p, GossipAddr: gossip,
		Timing: timing.Test, Logger: slog.New(slog.DiscardHandler)}
	admit := &consensus.Centre{ID: id, Name: name, PeerID: res.PeerID, Addrs: []string{p2p}, GossipAddr: gossip}
	return pageConfig{node: cfg, token: res.AdminToken}, admit, nil
}

func startPageCentre(ctx context.Context, cfg pageConfig, join string) (*pageCentre, error) {
	cfg.node.Join = join
	nd, err := node.Start(ctx, cfg.node)
	if err != nil {
		return nil, err
	}
	addr := cfg.api
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	srv, err := Start(Config{Addr: addr, Centre: nd, AdminToken: cfg.token, Logger: cfg.log})
	if err != nil {
		_ = nd.Stop()
		return nil, err
	}
	return &pageCentre{node: nd, srv: srv, url: "http://" + srv.Addr(), token: cfg.token}, nil
}

// Smoke test of the rig itself: the browser loads a page with the CSP.
func TestBrowserRigLoadsAPage(t *testing.T) {
	ctx := newBrowser(t)
	fed := startPageFederation(t, 1)
	var title string
	if err := chromedp.Run(ctx, chromedp.Navigate(fed[0].url+"/chat"), chromedp.Title(&title)); err != nil {
		t.Fatal(err)
	}
	if title == "" {
		t.Fatal("page has no title")
	}
}
