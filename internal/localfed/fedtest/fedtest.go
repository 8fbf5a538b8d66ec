// Package fedtest is localfed for tests: a federation whose operations fail
// the test instead of returning errors, and which is stopped when the test
// ends. It imports neither node nor api, so that their own tests use it.
package fedtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/localfed"
)

// startWithin bounds a centre's admission and start-up in a test.
const startWithin = time.Minute

// Federation is a localfed.Federation tied to a test.
type Federation[C, M any] struct {
	*localfed.Federation[C, M]
	t testing.TB
}

// New returns an empty federation of d's centres, stopped when t ends.
// Register the centres' data directories (t.TempDir) before calling New:
// cleanups run last-registered first, and the directories must outlive the
// centres.
func New[C, M any](t testing.TB, d localfed.Driver[C, M]) *Federation[C, M] {
	f := &Federation[C, M]{Federation: localfed.New(d), t: t}
	t.Cleanup(func() { _ = f.StopAll() })
	return f
}

// Start returns a federation of n centres c1..cn: c1 starts it, the others
// are admitted at c1 and join through it.
func Start[C, M any](t testing.TB, d localfed.Driver[C, M], n int) *Federation[C, M] {
	t.Helper()
	f := New(t, d)
	for i := 1; i <= n; i++ {
		f.Add(fmt.Sprintf("c%d", i))
	}
	return f
}

// Add prepares, admits and starts a new centre.
func (f *Federation[C, M]) Add(id string) M {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startWithin)
	defer cancel()
	m, err := f.Federation.Add(ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

// Member returns centre id, or the zero M (nil) if it is not running.
func (f *Federation[C, M]) Member(id string) M {
	m, _ := f.Running(id)
	return m
}

// Restart starts a stopped or killed centre again on its data directory.
func (f *Federation[C, M]) Restart(id string) M {
	f.t.Helper()
	return f.RestartWith(id, nil)
}

// RestartWith is Restart with the centre's configuration adjusted first
// (kept for later restarts), like a new binary on the same data directory.
func (f *Federation[C, M]) RestartWith(id string, change func(*C)) M {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startWithin)
	defer cancel()
	m, err := f.Federation.Restart(ctx, id, change)
	if err != nil {
		f.t.Fatal(err)
	}
	return m
}

// Stop stops centre id gracefully; a failure to stop is logged.
func (f *Federation[C, M]) Stop(id string) {
	f.t.Helper()
	if err := f.Federation.Stop(id); err != nil {
		f.t.Logf("stop %s: %v", id, err)
	}
}

// FreePort returns a loopback port (TCP and UDP) that was free a moment ago; see localfed.FreePort.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := localfed.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Eventually polls cond until it holds, failing t if within passes first. It
// waits on the event (the condition), with a deadline, never a fixed sleep.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
