package node

import (
	"log/slog"
	"sync"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/helpmesh/helpmesh/internal/refusal"
)

// Reasons a libp2p peer is refused: the values of helpmesh_p2p_refused_total's
// reason label.
const (
	// refusedNotInRoster: an inbound connection whose proven peer id the
	// roster does not list (a stranger, or a removed centre).
	refusedNotInRoster = "not_in_roster"
	// refusedJoinNotAdmitted: a join request whose peer id is not the one
	// admitted for the centre it names.
	refusedJoinNotAdmitted = "join_not_admitted"
)

var p2pRefusedReasons = []string{refusedNotInRoster, refusedJoinNotAdmitted}

// gater admits only centres in the roster (and, while joining, the member we
// join through and the centres it vouches for). The check runs after the
// Noise handshake, so the peer id is proven, not claimed.
type gater struct {
	mu      sync.RWMutex
	allowed map[peer.ID]struct{}
	// cut holds peers a test has partitioned away.
	cut map[peer.ID]struct{}
	// refused counts refused inbound peers and logs a sample: a stranger
	// can retry as fast as it can handshake, and a line per attempt would
	// hand it the centre's disk.
	refused *refusal.Log
}

func newGater(refused *refusal.Log) *gater {
	return &gater{allowed: map[peer.ID]struct{}{}, cut: map[peer.ID]struct{}{}, refused: refused}
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
	allowed, _ := g.check(p)
	return allowed
}

// check also says whether a refusal is a test's partition, which is not a
// refusal worth counting.
func (g *gater) check(p peer.ID) (allowed, cut bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if _, cut := g.cut[p]; cut {
		return false, true
	}
	_, ok := g.allowed[p]
	return ok, false
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

// InterceptSecured runs after the Noise handshake, so p is proven. Only
// inbound refusals are counted: an outbound one is our own dial, already
// refused by InterceptPeerDial.
func (g *gater) InterceptSecured(dir network.Direction, p peer.ID, addrs network.ConnMultiaddrs) bool {
	allowed, cut := g.check(p)
	if !allowed && !cut && dir == network.DirInbound && g.refused != nil {
		from := ""
		if addrs != nil && addrs.RemoteMultiaddr() != nil {
			from = addrs.RemoteMultiaddr().String()
		}
		g.refused.Refuse(refusedNotInRoster, slog.String("peer", refusal.Value(p.String())), slog.String("from", refusal.Value(from)))
	}
	return allowed
}
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }
