package consensus

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// addServer takes an admitted centre into the group as a non-voter. The
// reconciler promotes it when a voter seat is free: adding straight as a voter
// could stall the quorum while the newcomer catches up.
func (c *Consensus) addServer(centre, peerID string, timeout time.Duration) error {
	r := c.fsm.read()
	ce, ok := r.Centres[centre]
	if !ok || ce.PeerID != peerID {
		return fmt.Errorf("centre %q with peer %s: %w", clip(centre), clip(peerID), ErrNotAdmitted)
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raftError(err)
	}
	for _, s := range f.Configuration().Servers {
		if s.ID == raft.ServerID(centre) && s.Address == raft.ServerAddress(peerID) {
			return nil
		}
	}
	if err := c.raft.AddNonvoter(raft.ServerID(centre), raft.ServerAddress(peerID), 0, timeout).Error(); err != nil {
		return raftError(err)
	}
	c.log.Info("centre joined the roster group", "joined", centre)
	c.reconcile()
	return nil
}

// reconcileLoop keeps the Raft configuration in line with the roster while
// this node leads: removed centres leave the group, and voter seats are
// filled by promoting non-voters, at most MaxVoters.
func (c *Consensus) reconcileLoop(ctx context.Context) {
	// A member that has just started leads nothing yet: becoming leader,
	// a change or the tick wakes the loop.
	_ = c.watch(ctx, Wake{Every: time.Second, WaitFirst: true}, c.raft.LeaderCh(), func(Roster) bool {
		c.reconcile()
		return false
	})
}

func (c *Consensus) reconcile() {
	if !c.IsLeader() {
		return
	}
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	roster := c.fsm.read()
	self := raft.ServerID(c.cfg.Centre)
	var voters, nonvoters []raft.Server
	for _, s := range f.Configuration().Servers {
		if _, admitted := roster.Centres[string(s.ID)]; !admitted && s.ID != self {
			if err := c.raft.RemoveServer(s.ID, 0, 5*time.Second).Error(); err != nil {
				c.log.Warn("remove centre from the roster group", "removed", s.ID, "err", err)
			} else {
				c.log.Info("removed centre from the roster group", "removed", s.ID)
			}
			continue
		}
		if s.Suffrage == raft.Voter {
			voters = append(voters, s)
		} else {
			nonvoters = append(nonvoters, s)
		}
	}
	// Promote reachable non-voters first, in id order, so the choice is stable.
	slices.SortFunc(nonvoters, func(a, b raft.Server) int {
		ra, rb := c.reachable(a), c.reachable(b)
		if ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		return compareIDs(a.ID, b.ID)
	})
	for _, s := range nonvoters {
		if len(voters) >= c.cfg.MaxVoters {
			break
		}
		if !c.reachable(s) {
			break
		}
		if err := c.raft.AddVoter(s.ID, s.Address, 0, 5*time.Second).Error(); err != nil {
			c.log.Warn("promote centre to voter", "promoted", s.ID, "err", err)
			return
		}
		c.log.Info("promoted centre to voter", "promoted", s.ID)
		voters = append(voters, s)
	}
	for len(voters) > c.cfg.MaxVoters {
		victim := voters[len(voters)-1]
		voters = voters[:len(voters)-1]
		if victim.ID == self {
			continue
		}
		if err := c.raft.DemoteVoter(victim.ID, 0, 5*time.Second).Error(); err != nil {
			c.log.Warn("demote voter", "demoted", victim.ID, "err", err)
			return
		}
	}
}

func (c *Consensus) reachable(s raft.Server) bool {
	pid, err := peer.Decode(string(s.Address))
	return err == nil && c.cfg.Host.Network().Connectedness(pid) == network.Connected
}

func compareIDs(a, b raft.ServerID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
