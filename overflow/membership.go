package overflow

// Membership: joining, the states this node derives from memberlist's
// events, and telling OnChange about them.

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
)

// Join contacts the given centres (host:port) and exchanges full state with
// each one that answers. It returns how many answered, and an error wrapping
// ErrJoinFailed if none did. ctx cancellation returns at once; the attempt
// itself, bounded by the profile's TCP timeout per address, finishes in the
// background and Stop waits for it.
func (g *Gossip) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("overflow: join: %w", err)
	}
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return 0, fmt.Errorf("overflow: join: %w", ErrStopped)
	}
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	addrs = slices.Clone(addrs)
	g.stop.Go(func(context.Context) {
		n, err := g.ml.Join(addrs)
		res <- result{n, err}
	})
	g.mu.Unlock()
	select {
	case r := <-res:
		if r.err != nil {
			return r.n, fmt.Errorf("overflow: join %v: %w: %w", addrs, ErrJoinFailed, r.err)
		}
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("overflow: join %v: %w", addrs, ctx.Err())
	}
}

// setMember records a membership event; alive is false for NotifyLeave.
func (g *Gossip) setMember(n *memberlist.Node, alive bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	state := StateAlive
	if alive {
		delete(g.leaveIntent, n.Name) // a rejoin makes an old announcement void
	} else {
		state = StateDead
		_, announced := g.leaveIntent[n.Name]
		if announced || (n.Name == g.cfg.Centre && g.leaving) {
			state = StateLeft
		}
	}
	m := g.members[n.Name]
	if m == nil {
		if len(g.members) >= MaxCentres {
			g.log.Warn("overflow: ignoring member beyond limit", "centre", n.Name, "limit", MaxCentres)
			return
		}
		m = &member{}
		g.members[n.Name] = m
	}
	changed := m.state != state || m.port != n.Port || !m.addr.Equal(n.Addr)
	m.state, m.addr, m.port = state, slices.Clone(n.Addr), n.Port
	if changed {
		g.recountLocked()
		g.markChangedLocked(n.Name)
	}
}

// markSuspect is fed by the memberlist log line for a failed probe of ours.
// memberlist raises no event for suspicion, and reading Node.State through
// Members() races with memberlist's writes, so this is the one race-free
// signal; suspicion raised by other nodes is not seen here.
func (g *Gossip) markSuspect(name string) { g.moveMember(name, StateAlive, StateSuspect) }

// clearSuspect is called when one of our probes of name is acknowledged.
func (g *Gossip) clearSuspect(name string) { g.moveMember(name, StateSuspect, StateAlive) }

// moveMember changes a known member's state from one to another; a member
// in any other state (dead, left, unknown) keeps it.
func (g *Gossip) moveMember(name, from, to string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m := g.members[name]; m != nil && m.state == from {
		m.state = to
		g.markChangedLocked(name)
	}
}

func (g *Gossip) recountLocked() {
	var n int64
	for _, m := range g.members {
		if m.state == StateAlive || m.state == StateSuspect {
			n++
		}
	}
	g.numLive.Store(n)
}

func (g *Gossip) markChangedLocked(centre string) {
	if g.cfg.OnChange == nil {
		return
	}
	g.pending[centre] = struct{}{}
	kick(g.changeKick)
}

// kick wakes a worker without blocking: the channel has room for one wake-up
// and the worker reads shared state when it runs, so extra kicks coalesce.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// whenKicked is a worker: it runs work after each kick until ctx ends.
func whenKicked(ctx context.Context, kicks <-chan struct{}, work func()) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-kicks:
		}
		work()
	}
}

// runNotifier delivers OnChange outside every lock, so the callback may call
// View without deadlocking memberlist, which invokes our event delegate while
// holding its node lock.
func (g *Gossip) runNotifier(ctx context.Context) {
	whenKicked(ctx, g.changeKick, func() {
		g.mu.Lock()
		names := make([]string, 0, len(g.pending))
		for name := range g.pending {
			names = append(names, name)
		}
		clear(g.pending)
		g.mu.Unlock()
		slices.Sort(names)
		for _, name := range names {
			if ctx.Err() != nil {
				return
			}
			g.cfg.OnChange(name)
		}
	})
}
