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

// ownValues are the values of this centre's own roster entry that an
// operation of its own sets, each kept true to the configuration by a
// publishOwnLoop: the SIP address (set_centre_sip, roster level 3; update_centre
// leaves it alone) and the public chat URL (set_centre_public_url, level 5),
// for the other centres' chat pages to start chats here when their own centre
// refuses.
func (n *Node) ownValues() []ownValue {
	id := n.cfg.Centre
	return []ownValue{
		{what: "SIP address", attr: "sip_addr", op: consensus.OpSetCentreSIP, want: n.cfg.SIPAddr,
			have: func(c consensus.Centre) string { return c.SIPAddr },
			set:  func(c *consensus.Command) { c.CentreSIP = &consensus.CentreSIP{Centre: id, SIPAddr: n.cfg.SIPAddr} }},
		{what: "public URL", attr: "public_url", op: consensus.OpSetCentrePublicURL, want: n.cfg.PublicURL,
			have: func(c consensus.Centre) string { return c.PublicURL },
			set:  func(c *consensus.Command) { c.CentreURL = &consensus.CentreURL{Centre: id, PublicURL: n.cfg.PublicURL} }},
	}
}

// ownValue is one value of the centre's own roster entry that an operation
// of its own sets.
type ownValue struct {
	what, attr string       // for the log: "SIP address", "sip_addr"
	op         consensus.Op // the operation that sets it
	want       string       // the configuration's value ("" clears it)
	have       func(consensus.Centre) string
	set        func(*consensus.Command) // fills in the operation's payload
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
	waits := fmt.Sprintf("own %s waits until every centre speaks roster level %d", v.what, consensus.OpLevel(v.op))
	_ = n.consensus.Watch(ctx, consensus.Wake{Every: publishOwnEvery, Settle: publishOwnEvery}, func(r consensus.Roster) bool {
		have, ok := r.Centres[n.cfg.Centre]
		if !ok {
			return false
		}
		if v.have(have) == v.want {
			return true
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		cmd := consensus.Command{Version: consensus.CommandVersion, Op: v.op}
		v.set(&cmd)
		err := n.consensus.Propose(pctx, cmd)
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
