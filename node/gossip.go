package node

// Joining the availability gossip, and joining it again when it has lost
// centres the roster lists.

import (
	"context"
	"slices"
	"time"
)

// joinGossip joins the memberlist of the centres we know. Failure is not
// fatal: the rejoin loop keeps trying, and routing works on what we see.
func (n *Node) joinGossip(ctx context.Context, extra []string) {
	addrs := slices.Clone(extra)
	for _, c := range n.consensus.Roster().Centres {
		if c.ID != n.cfg.Centre && c.GossipAddr != "" {
			addrs = append(addrs, c.GossipAddr)
		}
	}
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	if len(addrs) == 0 {
		return
	}
	jctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := n.gossip.Join(jctx, addrs); err != nil {
		n.log.Debug("gossip join", "err", err)
	}
}

// gossipRejoinLoop rejoins centres the gossip has lost (after a partition
// healed, or when we restarted while they were down).
func (n *Node) gossipRejoinLoop(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		alive := map[string]bool{}
		for _, s := range n.gossip.View() {
			if s.State == "alive" {
				alive[s.Centre] = true
			}
		}
		var missing []string
		for _, c := range n.consensus.Roster().Centres {
			if !alive[c.ID] && c.GossipAddr != "" {
				missing = append(missing, c.GossipAddr)
			}
		}
		if len(missing) > 0 {
			jctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, _ = n.gossip.Join(jctx, missing)
			cancel()
		}
	}
}
