package consensus

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// The release gate. Commands are decoded strictly, so a centre on an older
// release refuses an operation it does not know when it applies it, while
// the others apply it: their rosters would fall out of step. Every
// operation therefore belongs to a roster level, the release series that
// introduced it, and the leader refuses one above level 1 until every other
// server of the Raft group is known to speak its level. The node finds that
// out over its own protocol (node/release.go); consensus only asks.

// RosterLevel is the highest roster level this build speaks: 1 is the first
// release's operations (put and remove centre and volunteer, set_policy), 2
// adds rotate_gossip_key, 3 adds set_centre_sip, 4 adds two fields to
// set_policy: emergency numbers' names per language and the expected
// policy version, 5 adds set_centre_public_url, 6 adds the coordinator
// role to put_volunteer, 7 adds five fields to set_policy: the
// supervision order, read_along_silent, wait_locally_when_busy, care and
// care_by_centre (care for volunteers). A
// release that adds an
// operation, or a field an older release would refuse, raises it.
const RosterLevel = 7

// levelCheckTimeout bounds the leader's question about the other centres'
// levels: a centre that does not answer in time counts with the level last
// confirmed for it, so a centre that is down does not hold a write for long.
const levelCheckTimeout = 2 * time.Second

// OpLevel returns the roster level that introduced op. An operation this
// build does not know is above every level it speaks.
func OpLevel(op Op) int {
	switch op {
	case OpAdmitCentre, OpUpdateCentre, OpRemoveCentre, OpPutVolunteer, OpRemoveVolunteer, OpSetPolicy:
		return 1
	case OpRotateGossipKey:
		return 2
	case OpSetCentreSIP:
		return 3
	case OpSetCentrePublicURL:
		return 5
	default:
		return RosterLevel + 1
	}
}

// CommandLevel returns the roster level a release must speak to apply cmd:
// its operation's, or higher when cmd carries a field a later level added
// to that operation. A set_policy is level 1 unless it carries emergency
// numbers' names or an expected policy version (level 4): a level-3
// release decodes commands strictly and would refuse either field at
// apply, but takes a set_policy without them as it always did, so a
// federation still mid-upgrade can set its policy (see DESIGN.md,
// Releases). A put_volunteer is level 1 unless its role is coordinator
// (level 6): a level-5 release validates roles and would refuse it at
// apply.
func CommandLevel(cmd Command) int {
	level := OpLevel(cmd.Op)
	if cmd.Op == OpSetPolicy && (cmd.ExpectedPolicyVersion != "" || cmd.Policy != nil && cmd.Policy.hasNames()) {
		level = max(level, 4)
	}
	if cmd.Op == OpPutVolunteer && cmd.Volunteer != nil && cmd.Volunteer.Role == RoleCoordinator {
		level = max(level, 6)
	}
	if cmd.Op == OpSetPolicy && cmd.Policy != nil && cmd.Policy.hasLevel7() {
		level = max(level, 7)
	}
	return level
}

// hasNames reports whether any emergency number has names per language.
func (p *Policy) hasNames() bool {
	for _, e := range p.EmergencyNumbers {
		if len(e.Names) > 0 {
			return true
		}
	}
	return false
}

// hasLevel7 reports whether p sets a field level 7 added. Each is unset
// by default and then left out of the command, so a policy without them is
// one a level-6 release applies as it always did.
func (p *Policy) hasLevel7() bool {
	return len(p.SupervisionOrder) > 0 || p.ReadAlongSilent || p.WaitLocallyWhenBusy || p.hasCare()
}

// describe names what in cmd needs its level, for the refusal.
func describe(cmd Command) string {
	if CommandLevel(cmd) > OpLevel(cmd.Op) {
		if cmd.Op == OpPutVolunteer {
			return fmt.Sprintf("%s with the %s role", cmd.Op, RoleCoordinator)
		}
		var what []string
		if cmd.Policy != nil && cmd.Policy.hasNames() {
			what = append(what, "emergency numbers' names per language")
		}
		if cmd.ExpectedPolicyVersion != "" {
			what = append(what, "a version check (If-Match, or any PATCH)")
		}
		if cmd.Policy != nil && cmd.Policy.hasLevel7() {
			what = append(what, "supervision_order, read_along_silent, wait_locally_when_busy, care or care_by_centre")
		}
		return fmt.Sprintf("%s with %s", cmd.Op, strings.Join(what, " and "))
	}
	return string(cmd.Op)
}

// LevelsFunc reports the roster level each of others speaks, by centre id: the
// level a centre confirms within ctx, or else the last level confirmed for
// it; 0 (or absent) when none ever was. The node provides it.
type LevelsFunc func(ctx context.Context, others []Member) map[string]int

// Member is one server of the roster Raft group.
type Member struct {
	// Centre is the centre id, the Raft server id.
	Centre string
	// PeerID is the centre's libp2p peer id, the Raft server address.
	PeerID string
}

// Members returns the servers of the current Raft configuration, this one
// included.
func (c *Consensus) Members() []Member {
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{Centre: string(s.ID), PeerID: string(s.Address)})
	}
	return out
}

// confirmLevel refuses cmd, on the leader, unless every other server of the
// Raft group speaks its level. Level-1 commands pass without a look at
// Raft: every release speaks them, and ordinary writes must stay quick.
func (c *Consensus) confirmLevel(ctx context.Context, cmd Command) error {
	need := CommandLevel(cmd)
	if need <= 1 {
		return nil
	}
	f := c.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raftError(err)
	}
	var others []Member
	for _, s := range f.Configuration().Servers {
		if s.ID != raft.ServerID(c.cfg.Centre) {
			others = append(others, Member{Centre: string(s.ID), PeerID: string(s.Address)})
		}
	}
	if len(others) == 0 {
		return nil
	}
	// Without a way to ask, nobody is known to speak the level: refuse
	// rather than risk a roster that falls out of step.
	var levels map[string]int
	if c.cfg.ReleaseLevels != nil {
		lctx, cancel := context.WithTimeout(ctx, levelCheckTimeout)
		levels = c.cfg.ReleaseLevels(lctx, others)
		cancel()
	}
	return levelError(describe(cmd), need, others, levels)
}

// levelError names each centre below need or of unknown level, and says what
// to do about it; nil when there is none. what names the command.
func levelError(what string, need int, others []Member, levels map[string]int) error {
	others = slices.SortedFunc(slices.Values(others), func(a, b Member) int { return strings.Compare(a.Centre, b.Centre) })
	var below, unknown, behind []string
	for _, m := range others {
		switch l := levels[m.Centre]; {
		case l <= 0:
			unknown = append(unknown, m.Centre)
			behind = append(behind, fmt.Sprintf("%s's level is unknown (it has not answered this leader)", m.Centre))
		case l < need:
			below = append(below, m.Centre)
			behind = append(behind, fmt.Sprintf("%s speaks level %d", m.Centre, l))
		}
	}
	if len(behind) == 0 {
		return nil
	}
	var todo []string
	if len(below) > 0 {
		todo = append(todo, "upgrade "+strings.Join(below, ", "))
	}
	if len(unknown) > 0 {
		todo = append(todo, "bring "+strings.Join(unknown, ", ")+" back")
	}
	return fmt.Errorf("%s needs roster level %d at every centre of the roster group, but %s: %s (or remove it from the roster), then retry: %w",
		what, need, strings.Join(behind, "; "), strings.Join(todo, " and "), ErrNotEverywhere)
}
