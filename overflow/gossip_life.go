package overflow

// Leaving and stopping: a graceful leave is announced so peers report
// "left" rather than "dead".

import (
	"fmt"
	"time"
)

// Leave tells the federation this centre is going away on purpose, so peers
// mark it "left" at once instead of "dead" after a suspicion timeout. The node
// keeps running until Stop. It waits up to timeout in total for the leave
// announcement and memberlist's own leave message to go out.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	g.mu.Lock()
	stopped := g.stopped
	g.mu.Unlock()
	if stopped {
		return fmt.Errorf("overflow: leave: %w", ErrStopped)
	}
	if err := g.leaveLocked(timeout); err != nil {
		return fmt.Errorf("overflow: leave: %w", err)
	}
	return nil
}

// leaveLocked runs with lifeMu held and memberlist not shut down. The leave
// announcement goes first and gets up to half the budget: memberlist's dead
// message overtaking it is harmless (receivers turn "dead" into "left" when
// the announcement arrives), but a peer that never hears it reports "dead".
func (g *Gossip) leaveLocked(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	g.mu.Lock()
	g.leaving = true
	version := max(g.version+1, uint64(time.Now().UnixMicro()))
	g.version = version
	g.mu.Unlock()

	sent := make(chan struct{}, 1)
	g.queue.QueueBroadcast(&stateBroadcast{
		name:     leaveBroadcastName(g.cfg.Centre),
		msg:      encodeLeave(g.cfg.Centre, version),
		finished: sent,
	})
	if g.numLive.Load() > 1 {
		wait := time.NewTimer(timeout / 2)
		select {
		case <-sent:
		case <-wait.C:
		}
		wait.Stop()
	}
	// memberlist treats a zero timeout as "wait forever".
	return g.ml.Leave(max(time.Until(deadline), time.Millisecond))
}

// leaveBroadcastName keeps leave announcements from displacing the same
// centre's last state in the queue; ':' cannot occur in a centre id.
func leaveBroadcastName(centre string) string { return "leave:" + centre }

// Stop leaves the federation (waiting briefly for the leave message), shuts
// memberlist down and waits for every goroutine this Gossip started. It is
// idempotent; later calls return the first call's result.
func (g *Gossip) Stop() error {
	return g.shutdown(true)
}

// crash stops without leaving, as a killed process would; tests use it to
// check that peers detect the failure.
func (g *Gossip) crash() error {
	return g.shutdown(false)
}

func (g *Gossip) shutdown(leave bool) error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return g.stopErr
	}
	g.stopped = true
	g.mu.Unlock()

	if leave {
		// A leave that times out only means peers will see "dead" instead
		// of "left"; that is not a reason to fail Stop.
		if err := g.leaveLocked(g.leaveTimeout); err != nil {
			g.log.Warn("overflow: leave before stop did not complete", "err", err)
		}
	}
	err := g.ml.Shutdown()
	g.stop.Stop()
	// Reports the refusals since the last line now: nothing would later.
	g.refused.Close()
	if err != nil {
		g.stopErr = fmt.Errorf("overflow: stop: %w", err)
	}
	return g.stopErr
}
