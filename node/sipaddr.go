package node

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
)

// publishOwnEvery is how often a centre whose roster entry lacks a value of
// its configuration (SIP address, public URL) tries again, besides after
// every roster change.
const publishOwnEvery = 5 * time.Second

// publishSIPLoop keeps this centre's SIP address in the roster true to its
// configuration (set_centre_sip, roster level 3).
func (n *Node) publishSIPLoop(ctx context.Context) {
	n.publishOwnLoop(ctx, ownValue{
		what: "SIP address", attr: "sip_addr", level: consensus.OpLevel(consensus.OpSetCentreSIP), want: n.cfg.SIPAddr,
		have: func(c consensus.Centre) string { return c.SIPAddr },
		cmd: func() consensus.Command {
			return consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetCentreSIP,
				CentreSIP: &consensus.CentreSIP{Centre: n.cfg.Centre, SIPAddr: n.cfg.SIPAddr}}
		},
	})
}

// publishURLLoop keeps this centre's public chat URL in the roster true to
// its configuration (set_centre_public_url, roster level 5), for the other
// centres' chat pages to start chats here when their own centre refuses.
func (n *Node) publishURLLoop(ctx context.Context) {
	n.publishOwnLoop(ctx, ownValue{
		what: "public URL", attr: "public_url", level: consensus.OpLevel(consensus.OpSetCentrePublicURL), want: n.cfg.PublicURL,
		have: func(c consensus.Centre) string { return c.PublicURL },
		cmd: func() consensus.Command {
			return consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetCentrePublicURL,
				CentreURL: &consensus.CentreURL{Centre: n.cfg.Centre, PublicURL: n.cfg.PublicURL}}
		},
	})
}

// ownValue is one value of the centre's own roster entry that an operation
// of its own sets.
type ownValue struct {
	what, attr string // for the log: "SIP address", "sip_addr"
	level      int    // the operation's roster level
	want       string // the configuration's value ("" clears it)
	have       func(consensus.Centre) string
	cmd        func() consensus.Command
}

// publishOwnLoop keeps v in the roster true to the configuration, like
// refreshSelfLoop the rest of the entry. The operations are above level 1:
// while some centre of the group runs an older release the leader refuses
// them (consensus.ErrNotEverywhere), which is the expected state of a
// federation mid-upgrade, so the loop waits at debug level and says one info
// line when the value lands. Settle keeps a busy roster (volunteers
// enrolling) from turning every write into another refused proposal: at
// most one try per publishOwnEvery.
func (n *Node) publishOwnLoop(ctx context.Context, v ownValue) {
	warned := false
	waits := fmt.Sprintf("own %s waits until every centre speaks roster level %d", v.what, v.level)
	_ = n.consensus.Watch(ctx, consensus.Wake{Every: publishOwnEvery, Settle: publishOwnEvery}, func(r consensus.Roster) bool {
		have, ok := r.Centres[n.cfg.Centre]
		if !ok {
			return false
		}
		if v.have(have) == v.want {
			return true
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := n.consensus.Propose(pctx, v.cmd())
		cancel()
		switch {
		case err == nil:
			n.log.Info("published own "+v.what+" in the roster", v.attr, v.want)
		case ctx.Err() != nil:
		case errors.Is(err, consensus.ErrNotEverywhere):
			n.log.Debug(waits, "err", err)
		case !warned:
			// Once per streak: a leader election or a lost quorum would
			// otherwise repeat it every few seconds.
			warned = true
			n.log.Warn("could not publish own "+v.what+" yet; retrying", "err", err)
		default:
			n.log.Debug("could not publish own "+v.what+" yet", "err", err)
		}
		return false
	})
}
