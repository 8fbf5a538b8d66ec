package sip

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/helpmesh/helpmesh/internal/siptest"
)

// runSipp runs one sipp scenario from testdata against the ingress, in its
// own temporary working directory (sipp writes its logs there), and returns
// its exit code with its error log.
func runSipp(t *testing.T, scenario string, h *harness, args ...string) (int, string) {
	t.Helper()
	sipp := siptest.NeedSipp(t)
	sf, err := filepath.Abs(filepath.Join("testdata", scenario))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"-sf", sf, h.in.Addr().String(), "-i", "127.0.0.1",
		"-nostdin", "-trace_err", "-timeout", "40s", "-timeout_error"}, args...)
	cmd := exec.CommandContext(ctx, sipp, full...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = nil, nil
	err = cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("sipp: %v", err)
		}
		code = ee.ExitCode()
	}
	var errs strings.Builder
	logs, _ := filepath.Glob(filepath.Join(dir, "*_errors.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		errs.Write(b)
	}
	return code, errs.String()
}

// sipp as the PBX: 20 INVITEs for queue-nb, each answered 302 with the
// Router's Contact (checked by the scenario) and ACKed.
func TestSippRedirect(t *testing.T) {
	h := startIngress(t, redirectTo("sip:vol@127.0.0.1:5064"), nil)
	code, errs := runSipp(t, "uac_302.xml", h, "-s", "queue-nb", "-m", "20", "-r", "50", "-l", "20")
	if code != 0 {
		t.Fatalf("sipp exit %d; errors:\n%s", code, errs)
	}
	if n := h.router.calls.Load(); n != 20 {
		t.Fatalf("router called %d times, want 20", n)
	}
	// The scenario's From carries a canary number and display name.
	if logs := h.logs.String(); strings.Contains(logs, "4790000001") || strings.Contains(logs, "Canary") {
		t.Fatalf("the caller's From reached the logs:\n%s", logs)
	}
}

// A sipp flood, 500 INVITEs at 200/s, against a Router that takes 50 ms
// (at most 80 calls/s through a cap of 4): every INVITE is answered, 302 or
// 480 + Retry-After (the scenario fails a call on anything else or on
// silence), the Router never runs more than the cap at once, every call is
// either routed or refused as overload, and the ingress answers at once
// afterwards.
func TestSippFlood(t *testing.T) {
	const calls, capRoutes = 500, 4
	h := startIngress(t, func(ctx context.Context, _ string) (Decision, error) {
		select {
		case <-time.After(50 * time.Millisecond):
			return Decision{Contact: "sip:vol@127.0.0.1:5064"}, nil
		case <-ctx.Done():
			return Decision{}, ctx.Err()
		}
	}, func(c *Config) { c.MaxConcurrentRoutes = capRoutes })
	start := time.Now()
	code, errs := runSipp(t, "uac_flood.xml", h, "-s", "queue-nb", "-m", "500", "-r", "200", "-l", "500")
	took := time.Since(start)
	if code != 0 {
		t.Fatalf("sipp exit %d after %v; errors:\n%s", code, took, errs)
	}
	routed, overload := h.router.calls.Load(), h.refused(t, reasonOverload)
	t.Logf("FIGURE sip flood: %d INVITEs at 200/s in %v: %d routed (302), %d refused at once (480), router peak concurrency %d (cap %d)",
		calls, took.Round(time.Millisecond), routed, overload, h.router.peak.Load(), capRoutes)
	if routed+int64(overload) != calls {
		t.Fatalf("routed %d + overload %d != %d INVITEs", routed, overload, calls)
	}
	if peak := h.router.peak.Load(); peak > capRoutes {
		t.Fatalf("router peak concurrency %d over the cap %d", peak, capRoutes)
	}
	if overload == 0 || routed == 0 {
		t.Fatalf("the flood should both route and shed calls: routed %d, overload %d", routed, overload)
	}
	p := newPhone(t, "127.0.0.1")
	after := time.Now()
	if res := p.do(t, sip.INVITE, "queue-nb", h.in.Addr()); res.StatusCode != 302 {
		t.Fatalf("after the flood: %d", res.StatusCode)
	}
	if d := time.Since(after); d > time.Second {
		t.Fatalf("after the flood an INVITE took %v", d)
	}
}
