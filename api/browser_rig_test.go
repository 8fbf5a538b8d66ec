package api

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// findChromium locates Debian's Chromium. On a laptop without it the
// browser tests skip with a message; in CI (CI=true) they fail instead.
func findChromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("Chromium not found: .ci/run installs Debian's chromium package")
	}
	t.Skip("Chromium not found (apt-get install chromium); skipping browser tests")
	return ""
}

// newBrowser starts a headless Chromium with a phone-sized window and
// returns a context for chromedp actions in one tab.
func newBrowser(t testing.TB) context.Context {
	t.Helper()
	path := findChromium(t)
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
// chromedp capture PNG rather than JPEG).
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
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

// startPageFederation runs n real centres in-process (real Raft, libp2p,
// Pebble, memberlist) with their HTTP servers: c1 bootstraps, the others
// join through it.
func startPageFederation(t testing.TB, n int) []*pageCentre {
	t.Helper()
	var out []*pageCentre
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("c%d", i)
		dir := filepath.Join(t.TempDir(), id)
		p2p := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", pagesFreePort(t))
		gossip := fmt.Sprintf("127.0.0.1:%d", pagesFreePort(t))
		res, err := node.Init(dir, node.FileConfig{Centre: id, Name: "Centre " + strings.ToUpper(id)})
		if err != nil {
			t.Fatal(err)
		}
		cfg := node.Config{Centre: id, Name: "Centre " + strings.ToUpper(id), DataDir: dir, P2PAddr: p2p, GossipAddr: gossip,
			Timing: timing.Test, Logger: slog.New(slog.DiscardHandler)}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if i > 1 {
			c := consensus.Centre{ID: id, Name: cfg.Name, PeerID: res.PeerID, Addrs: []string{p2p}, GossipAddr: gossip}
			if err := out[0].node.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpAdmitCentre, Centre: &c}); err != nil {
				t.Fatal(err)
			}
			cfg.Join = out[0].node.P2PAddrs()[0]
		}
		nd, err := node.Start(ctx, cfg)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		srv, err := Start(Config{Addr: "127.0.0.1:0", Centre: nd, AdminToken: res.AdminToken})
		if err != nil {
			t.Fatal(err)
		}
		pc := &pageCentre{node: nd, srv: srv, url: "http://" + srv.Addr(), token: res.AdminToken}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = pc.srv.Stop(ctx)
			_ = pc.node.Stop()
		})
		out = append(out, pc)
	}
	return out
}

func pagesFreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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
