package consensus

import (
	"context"
	"time"
)

// Wake says when Watch calls its function again after the first call.
type Wake struct {
	// Every is the period of a tick that calls the function even when the
	// roster has not changed (0: no tick). The tick is the safety net for
	// work that failed, or that depends on more than the roster.
	Every time.Duration
	// Settle delays the call after a roster change, so that a burst of
	// writes makes one call, not one per write (0: at once). A tick does
	// not wait.
	Settle time.Duration
	// WaitFirst skips the call at once: for a watcher whose owner has done
	// the work itself before starting it.
	WaitFirst bool
}

// Watch calls f with the local roster at once (unless wake.WaitFirst), then
// again after every roster change and every tick, until f reports that it
// is done (Watch returns nil) or ctx ends (Watch returns ctx.Err()).
// Changes are coalesced: f sees the roster as it is when it runs, not each
// write. f runs on the caller's goroutine, one call at a time.
func (c *Consensus) Watch(ctx context.Context, wake Wake, f func(Roster) (done bool)) error {
	return c.watch(ctx, wake, nil, f)
}

// watch is Watch, woken also by every receive on also (Raft's leadership
// changes, for the reconciler).
func (c *Consensus) watch(ctx context.Context, wake Wake, also <-chan bool, f func(Roster) bool) error {
	changes, unsubscribe := c.Subscribe()
	defer unsubscribe()
	var tick <-chan time.Time
	if wake.Every > 0 {
		t := time.NewTicker(wake.Every)
		defer t.Stop()
		tick = t.C
	}
	if !wake.WaitFirst && f(c.Roster()) {
		return nil
	}
	var settled <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changes:
			if wake.Settle > 0 {
				if settled == nil {
					settled = time.After(wake.Settle)
				}
				continue
			}
		case <-settled:
		case <-tick:
		case <-also:
		}
		settled = nil
		if f(c.Roster()) {
			return nil
		}
	}
}
