package overflow

// Getting a state to the others: the broadcast queue's entries, and direct
// sends for a state too large for one packet.

import (
	"context"

	"github.com/hashicorp/memberlist"
)

// runFanout sends a local state too large for one packet straight to every
// live peer over TCP, one at a time, giving up early when a newer state
// supersedes it. Each send is bounded by the profile's TCP timeout.
func (g *Gossip) runFanout(ctx context.Context) {
	whenKicked(ctx, g.fanoutKick, func() {
		g.mu.Lock()
		msg, version := g.fanout, g.fanoutVersion
		var peers []*memberlist.Node
		for name, m := range g.members {
			if name != g.cfg.Centre && (m.state == StateAlive || m.state == StateSuspect) {
				peers = append(peers, &memberlist.Node{Name: name, Addr: m.addr, Port: m.port})
			}
		}
		g.mu.Unlock()
		if msg == nil {
			return
		}
		for _, peer := range peers {
			if ctx.Err() != nil {
				return
			}
			if err := g.ml.SendReliable(peer, msg); err != nil {
				g.log.Warn("overflow: direct send of large state failed; push/pull will repair",
					"peer", peer.Name, "err", err)
			}
			g.mu.Lock()
			superseded := g.fanoutVersion != version
			g.mu.Unlock()
			if superseded {
				return
			}
		}
	})
}

// stateBroadcast is one message in the broadcast queue. States are named by
// centre, so queueing a newer state drops the older one still waiting:
// bursts of changes coalesce into the newest.
type stateBroadcast struct {
	name     string
	msg      []byte
	finished chan struct{} // optional; signalled once the queue is done with msg
}

func (b *stateBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*stateBroadcast)
	return ok && o.name == b.name
}

func (b *stateBroadcast) Name() string    { return b.name }
func (b *stateBroadcast) Message() []byte { return b.msg }

func (b *stateBroadcast) Finished() {
	if b.finished != nil {
		kick(b.finished)
	}
}
