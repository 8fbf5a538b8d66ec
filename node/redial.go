package node

import (
	"sync"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// backAlive clears libp2p's dial backoff for a centre that gossip sees
// alive again. While a centre was down, every failed dial to it (Raft
// heartbeats, release probes) lengthened the swarm's backoff, and a
// restarted centre then waited many seconds for its leader to reach it:
// it stayed unready (its roster not yet caught up) though it was back.
// Gossip is the better witness that it is back.
//
// Gossip's change callback also fires on every availability change, which
// is frequent; only a centre's return to alive does any work here.
type backAlive struct {
	mu    sync.Mutex
	alive map[string]bool // as last seen here
}

func (n *Node) redialIfBack(centre string) {
	// Read through the router: it sees gossip once serving, and the
	// callback may come before the node holds the gossip.
	alive := n.router.Alive(centre)
	n.back.mu.Lock()
	if n.back.alive == nil {
		n.back.alive = map[string]bool{}
	}
	wasAlive := n.back.alive[centre]
	n.back.alive[centre] = alive
	n.back.mu.Unlock()
	if !alive || wasAlive {
		return
	}
	if pid, ok := (directory{n}).PeerOf(centre); ok {
		if sw, ok := n.host.Network().(*swarm.Swarm); ok {
			sw.Backoff().Clear(pid)
		}
	}
}
