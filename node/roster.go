package node

// The node's side of the roster: its own entry, and the allowlist and
// peerstore kept in step with what the roster admits.

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/helpmesh/helpmesh/consensus"
)

// selfEntry is this centre as the roster should list it.
func (n *Node) selfEntry() consensus.Centre {
	var addrs []string
	for _, a := range n.host.Addrs() {
		addrs = append(addrs, a.String())
	}
	if len(addrs) > 8 {
		addrs = addrs[:8]
	}
	return consensus.Centre{
		ID: n.cfg.Centre, Name: n.cfg.Name, PeerID: n.host.ID().String(),
		Addrs: addrs, GossipAddr: n.gossip.LocalAddr(), HTTPAddr: n.cfg.HTTPAddr,
	}
}

// sameCentre leaves SIPAddr out: update_centre keeps it, and
// publishOwnLoop (ownValues) alone keeps it true.
func sameCentre(a, b consensus.Centre) bool {
	return a.ID == b.ID && a.Name == b.Name && a.PeerID == b.PeerID && slices.Equal(a.Addrs, b.Addrs) &&
		a.GossipAddr == b.GossipAddr && a.HTTPAddr == b.HTTPAddr
}

// waitForSelfInRoster waits until a joining centre has caught up far enough
// to see its own admission.
func (n *Node) waitForSelfInRoster(ctx context.Context) error {
	err := n.consensus.Watch(ctx, consensus.Wake{Every: 200 * time.Millisecond}, func(r consensus.Roster) bool {
		_, ok := r.Centres[n.cfg.Centre]
		return ok
	})
	if err != nil {
		return fmt.Errorf("catch up with the roster: %w", err)
	}
	return nil
}

// refreshSelfLoop keeps this centre's roster entry true to its real
// addresses (a coordinator admits what it was told; a restart may move a
// port). It runs in the background because a centre cut off from the quorum
// must still start and answer its own visitors.
func (n *Node) refreshSelfLoop(ctx context.Context) {
	_ = n.consensus.Watch(ctx, consensus.Wake{Every: 5 * time.Second}, func(r consensus.Roster) bool {
		have, ok := r.Centres[n.cfg.Centre]
		if !ok {
			return false
		}
		want := n.selfEntry()
		if sameCentre(have, want) {
			return true
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := n.consensus.Propose(pctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpUpdateCentre, Centre: &want})
		cancel()
		if err == nil {
			n.log.Info("refreshed own roster entry")
		} else if ctx.Err() == nil {
			n.log.Warn("could not refresh own roster entry yet", "err", err)
		}
		return false
	})
}

// rosterWatch keeps the allowlist, the peerstore and the gossip in step with
// the roster. start has done it once already.
func (n *Node) rosterWatch(ctx context.Context) {
	_ = n.consensus.Watch(ctx, consensus.Wake{Every: 2 * time.Second, WaitFirst: true}, func(r consensus.Roster) bool {
		n.onRosterChange(r)
		return false
	})
}

func (n *Node) onRosterChange(r consensus.Roster) {
	for _, c := range r.Centres {
		n.learnCentre(c)
	}
	n.refreshAllowlist()
	// Only a roster that has caught up (it lists us) replaces the book.
	if _, self := r.Centres[n.cfg.Centre]; self {
		if err := saveAddressBook(n.cfg.DataDir, r); err != nil {
			n.log.Warn("address book not saved", "err", err)
		}
	}
}

// learnCentre puts a centre's addresses in the peerstore so Raft and the
// overflow protocols can dial it by peer id.
func (n *Node) learnCentre(c consensus.Centre) {
	pid, err := peer.Decode(c.PeerID)
	if err != nil || pid == n.host.ID() {
		return
	}
	var addrs []ma.Multiaddr
	for _, s := range c.Addrs {
		if a, err := ma.NewMultiaddr(s); err == nil {
			addrs = append(addrs, a)
		}
	}
	n.host.Peerstore().AddAddrs(pid, addrs, peerstore.PermanentAddrTTL)
	n.mu.Lock()
	n.seeds[pid] = struct{}{}
	n.mu.Unlock()
}

// refreshAllowlist admits the roster's centres, the Raft group's servers
// (so a restarted centre accepts its leader before its roster catches up) and
// the join seeds. A centre removed from the roster loses its connections.
func (n *Node) refreshAllowlist() {
	allowed := map[peer.ID]struct{}{}
	if n.consensus != nil {
		r := n.consensus.Roster()
		for _, c := range r.Centres {
			if pid, err := peer.Decode(c.PeerID); err == nil {
				allowed[pid] = struct{}{}
			}
		}
		for _, s := range n.consensus.Servers() {
			if pid, err := peer.Decode(s); err == nil {
				allowed[pid] = struct{}{}
			}
		}
		// Once the roster has caught up, it alone decides: seeds that the
		// roster no longer lists are dropped.
		if _, self := r.Centres[n.cfg.Centre]; self {
			n.mu.Lock()
			for pid := range n.seeds {
				if _, ok := allowed[pid]; !ok {
					delete(n.seeds, pid)
				}
			}
			n.mu.Unlock()
		}
	}
	n.mu.Lock()
	for pid := range n.seeds {
		allowed[pid] = struct{}{}
	}
	n.mu.Unlock()
	for _, pid := range n.gater.set(allowed) {
		if n.host != nil {
			n.log.Info("closing connections of a centre no longer admitted", "peer", pid.ShortString())
			_ = n.host.Network().ClosePeer(pid)
		}
	}
}
