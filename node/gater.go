package node

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// gater admits only centres in the roster (and, while joining, the member we
// join through and the centres it vouches for). The check runs after the
// Noise handshake, so the peer id is proven, not claimed.
type gater struct {
	mu      sync.RWMutex
	allowed map[peer.ID]struct{}
	// cut holds peers a test has partitioned away.
	cut map[peer.ID]struct{}
}

func newGater() *gater {
	return &gater{allowed: map[peer.ID]struct{}{}, cut: map[peer.ID]struct{}{}}
}

// set replaces the allowlist and returns the peers that lost admission.
func (g *gater) set(ids map[peer.ID]struct{}) (revoked []peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id := range g.allowed {
		if _, ok := ids[id]; !ok {
			revoked = append(revoked, id)
		}
	}
	g.allowed = ids
	return revoked
}

func (g *gater) allows(p peer.ID) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if _, cut := g.cut[p]; cut {
		return false
	}
	_, ok := g.allowed[p]
	return ok
}

func (g *gater) setCut(p peer.ID, cut bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cut {
		g.cut[p] = struct{}{}
	} else {
		delete(g.cut, p)
	}
}

func (g *gater) InterceptPeerDial(p peer.ID) bool                 { return g.allows(p) }
func (g *gater) InterceptAddrDial(p peer.ID, _ ma.Multiaddr) bool { return g.allows(p) }
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool      { return true }
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.allows(p)
}
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
