package node

import (
	"context"
	"errors"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
)

// publishSIPEvery is how often a centre whose roster entry lacks its SIP
// address tries again, besides after every roster change.
const publishSIPEvery = 5 * time.Second

// publishSIPLoop keeps this centre's SIP address in the roster true to its
// configuration, like refreshSelfLoop the rest of its entry. set_centre_sip
// is roster level 3: while some centre of the group runs an older release
// the leader refuses it (consensus.ErrNotEverywhere), which is the expected
// state of a federation mid-upgrade, so the loop waits at debug level and
// says one info line when the address lands. Settle keeps a busy roster
// (volunteers enrolling) from turning every write into another refused
// proposal: at most one try per publishSIPEvery.
func (n *Node) publishSIPLoop(ctx context.Context) {
	warned := false
	_ = n.consensus.Watch(ctx, consensus.Wake{Every: publishSIPEvery, Settle: publishSIPEvery}, func(r consensus.Roster) bool {
		have, ok := r.Centres[n.cfg.Centre]
		if !ok {
			return false
		}
		if have.SIPAddr == n.cfg.SIPAddr {
			return true
		}
		cmd := consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetCentreSIP,
			CentreSIP: &consensus.CentreSIP{Centre: n.cfg.Centre, SIPAddr: n.cfg.SIPAddr}}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := n.consensus.Propose(pctx, cmd)
		cancel()
		switch {
		case err == nil:
			n.log.Info("published own SIP address in the roster", "sip_addr", n.cfg.SIPAddr)
		case ctx.Err() != nil:
		case errors.Is(err, consensus.ErrNotEverywhere):
			n.log.Debug("own SIP address waits until every centre speaks roster level 3", "err", err)
		case !warned:
			// Once per streak: a leader election or a lost quorum would
			// otherwise repeat it every few seconds.
			warned = true
			n.log.Warn("could not publish own SIP address yet; retrying", "err", err)
		default:
			n.log.Debug("could not publish own SIP address yet", "err", err)
		}
		return false
	})
}
