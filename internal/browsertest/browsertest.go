// Package browsertest starts the headless Chromium the page tests drive
// (chromedp), with a fake microphone for the browser phone's tests
// (docs/dev/webrtc-lab.md, trial 1 and gotchas 1-5).
package browsertest

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// FindChromium locates Debian's Chromium. On a laptop without it the
// browser tests skip with a message; in CI (CI=true) they fail instead.
func FindChromium(t testing.TB) string {
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

// NewMediaBrowser starts a headless Chromium whose microphone is granted
// without a prompt and is fake: the WAV at mic (played once), or
// Chromium's own tone when mic is "". WebRTC may use loopback. The
// returned context drives one tab.
func NewMediaBrowser(t testing.TB, mic string) context.Context {
	t.Helper()
	path := aboveTheServer(t, FindChromium(t))
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("headless", true),
		chromedp.WindowSize(1280, 860),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		// A second disable-features replaces chromedp's list: repeat it.
		chromedp.Flag("disable-features", "site-per-process,Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns"),
	)
	if mic != "" {
		opts = append(opts, chromedp.Flag("use-file-for-fake-audio-capture", mic+"%noloop"))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// aboveTheServer returns a launcher that runs chromium at a higher CPU
// priority than the test process. A media browser stands in for a
// volunteer's own computer, whose audio never competes with a centre's
// server for the CPU; on a 2-core test machine it does, and a flood the
// server handles would starve Chromium's audio thread and measure the test
// machine, not helpmesh. Without the right to raise a priority (not root)
// nice says so and runs chromium as it is.
func aboveTheServer(t testing.TB, chromium string) string {
	t.Helper()
	nice, err := exec.LookPath("nice")
	if err != nil {
		return chromium
	}
	launcher := filepath.Join(t.TempDir(), "chromium-above-the-server")
	script := "#!/bin/sh\nexec " + shellQuote(nice) + " -n -10 " + shellQuote(chromium) + " \"$@\"\n"
	if err := os.WriteFile(launcher, []byte(script), 0o755); err != nil {
		t.Fatalf("write the chromium launcher: %v", err)
	}
	return launcher
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Run runs chromedp actions, failing the test with what on an error.
func Run(t testing.TB, ctx context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Wait polls a JavaScript expression in the tab until it is truthy; on a
// time-out it fails the test with the page's text.
func Wait(t testing.TB, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	var ok bool
	if err := chromedp.Run(ctx, chromedp.Poll(expr, &ok, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		var dump string
		_ = chromedp.Run(ctx, chromedp.Evaluate(`document.body ? document.body.innerText.slice(0, 1500) : ''`, &dump))
		t.Fatalf("waiting for %s (%s): %v\npage text:\n%s", what, expr, err, dump)
	}
}

// Eval evaluates a JavaScript expression into out.
func Eval(t testing.TB, ctx context.Context, expr string, out any) {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.Evaluate(expr, out)); err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
}

// Samples decodes the console page's softphoneCapture.samplesBase64()
// (8 kHz mono, little-endian float32, base64) for pbxlab.WriteWAV.
func Samples(samplesBase64 string) ([]float64, error) {
	raw, err := base64.StdEncoding.DecodeString(samplesBase64)
	if err != nil {
		return nil, fmt.Errorf("browser samples: %w", err)
	}
	out := make([]float64, len(raw)/4)
	for i := range out {
		out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
	}
	return out, nil
}
