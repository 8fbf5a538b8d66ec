package node

import (
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/helpmesh/helpmesh/overflow"
)

// redialIfBack clears libp2p's dial backoff for a centre that gossip sees
// alive again. While a centre was down, every failed dial to it (Raft
// heartbeats, release probes) lengthened the swarm's backoff, and a
// restarted centre then waited many seconds for its leader to reach it:
// it stayed unready (its roster not yet caught up) though it was back.
// Gossip is the better witness that it is back.
func (n *Node) redialIfBack(centre string) {
	if n.late.get() == nil {
		return // still starting: gossip and the roster are not wired yet
	}
	alive := false
	for _, s := range n.gossip.View() {
		if s.Centre == centre {
			alive = s.State == overflow.StateAlive
		}
	}
	if !alive {
		return
	}
	c, ok := n.consensus.Roster().Centres[centre]
	if !ok {
		return
	}
	pid, err := peer.Decode(c.PeerID)
	if err != nil {
		return
	}
	if sw, ok := n.host.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(pid)
	}
}
