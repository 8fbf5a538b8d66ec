package node

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
)

// levelsConfirmed reports whether n has confirmed, for every other server
// of its Raft group, the level want, and whether that group has size
// servers.
func levelsConfirmed(n *Node, size, want int) bool {
	members := n.Consensus().Members()
	if len(members) != size {
		return false
	}
	for _, m := range members {
		if m.Centre == n.Centre() {
			continue
		}
		if info, ok := n.releaseOf(m.Centre); !ok || info.Level != want {
			return false
		}
	}
	return true
}

// waitLevels waits until every live centre has confirmed every other one
// at this release's level.
func waitLevels(t *testing.T, f *federation, size int) {
	t.Helper()
	for _, n := range f.live() {
		eventually(t, 15*time.Second, n.Centre()+" confirmed every centre's roster level", func() bool {
			return levelsConfirmed(n, size, consensus.RosterLevel)
		})
	}
}

// Three centres of this release learn each other's level in the
// background, show it in the federation view, and rotate the gossip key
// through the gate.
func TestCentresConfirmEachOthersRelease(t *testing.T) {
	f := newFederation(t, 3, fedOptions{})
	waitLevels(t, f, 3)
	for _, n := range f.live() {
		for _, cv := range n.Federation().Centres {
			if cv.RosterLevel != consensus.RosterLevel {
				t.Errorf("%s's federation view: %s at roster level %d, want %d", n.Centre(), cv.ID, cv.RosterLevel, consensus.RosterLevel)
			}
		}
	}
	k := rotateAt(t, f.follower())
	for _, n := range f.live() {
		eventually(t, 10*time.Second, n.Centre()+" applies the rotation", func() bool {
			got, ok := n.Consensus().GossipKey()
			return ok && got.Generation == k.Generation
		})
	}
}

// A centre on the release before (simulated: it does not serve the release
// protocol) holds back rotate_gossip_key: the leader refuses it with
// ErrNotEverywhere naming that centre, wherever it is proposed, and nothing
// reaches the log; ordinary writes go on. Once the centre runs this release
// the rotation goes through.
func TestOlderReleaseHoldsBackNewOperations(t *testing.T) {
	f := newFederation(t, 3, fedOptions{configure: func(id string, cfg *Config) {
		cfg.testNoReleaseProtocol = id == "c3"
	}})
	leader := f.leaderSeeingOldRelease("c3")
	var fedView CentreView
	for _, cv := range leader.Federation().Centres {
		if cv.ID == "c3" {
			fedView = cv
		}
	}
	if fedView.RosterLevel != 1 {
		t.Errorf("the leader's federation view shows c3 at roster level %d, want 1", fedView.RosterLevel)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, via := range []*Node{leader, f.node("c3")} {
		_, lastBefore, _ := leader.Consensus().LogBounds()
		_, err := via.RotateGossipKey(ctx)
		if !errors.Is(err, consensus.ErrNotEverywhere) {
			t.Fatalf("rotation through %s: %v, want ErrNotEverywhere", via.Centre(), err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "c3 speaks level 1") || !strings.Contains(msg, "upgrade c3") {
			t.Errorf("rotation through %s: %q does not name c3 and what to do", via.Centre(), msg)
		}
		t.Logf("rotation through %s refused: %s", via.Centre(), msg)
		if strings.Contains(msg, "c1") || strings.Contains(msg, "c2") {
			t.Errorf("rotation through %s: %q names a centre of this release", via.Centre(), msg)
		}
		if _, lastAfter, _ := leader.Consensus().LogBounds(); lastAfter != lastBefore {
			t.Fatalf("a refused rotation reached the log (%d -> %d)", lastBefore, lastAfter)
		}
	}
	for _, n := range f.live() {
		if _, ok := n.Consensus().GossipKey(); ok {
			t.Fatalf("%s has a rotated key", n.Centre())
		}
	}
	// Level-1 writes are not held back, from the old centre either.
	if err := f.node("c3").Propose(ctx, putVolunteer("v-old", "c3")); err != nil {
		t.Fatalf("put_volunteer with an old centre in the group: %v", err)
	}
	if _, ok := leader.Roster().Volunteers["v-old"]; !ok {
		t.Fatal("the leader did not apply the put_volunteer")
	}

	// c3 upgraded: same data directory, this release.
	f.kill("c3")
	f.restartWith("c3", func(cfg *Config) { cfg.testNoReleaseProtocol = false })
	leader = f.leader()
	eventually(t, 15*time.Second, "the leader sees c3 at this release's level", func() bool {
		info, ok := leader.releaseOf("c3")
		return ok && info.Level == consensus.RosterLevel
	})
	k := rotateAt(t, leader)
	for _, n := range f.live() {
		eventually(t, 10*time.Second, n.Centre()+" applies the rotation", func() bool {
			got, ok := n.Consensus().GossipKey()
			return ok && got.Generation == k.Generation
		})
	}
}

// leaderSeeingOldRelease makes sure the centre id, started with
// testNoReleaseProtocol, does not lead (a leader never asks itself its
// level) and returns the leader once it has seen id at level 1.
func (f *federation) leaderSeeingOldRelease(id string) *Node {
	f.t.Helper()
	return f.leaderSeeingLevel(id, 1)
}

// leaderSeeingLevel is leaderSeeingOldRelease for a centre that says it
// speaks level (testRosterLevel).
func (f *federation) leaderSeeingLevel(id string, level int) *Node {
	f.t.Helper()
	for f.leader().Centre() == id {
		f.kill(id)
		f.leader()
		f.restart(id)
	}
	leader := f.leader()
	eventually(f.t, 15*time.Second, fmt.Sprintf("the leader sees %s at level %d", id, level), func() bool {
		info, ok := leader.releaseOf(id)
		return ok && info.Level == level
	})
	return leader
}

// A centre on the release before emergency-number names (level 3) holds
// back a set_policy with names or with a version check, wherever it is
// proposed: ErrNotEverywhere naming it, nothing in the log. A plain
// set_policy goes through. Upgraded, the names go through and reach every
// centre's roster, also after a restart.
func TestLevel3CentreHoldsBackPolicyNames(t *testing.T) {
	f := newFederation(t, 3, fedOptions{configure: func(id string, cfg *Config) {
		if id == "c3" {
			cfg.testRosterLevel = 3
		}
	}})
	leader := f.leaderSeeingLevel("c3", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	named := consensus.DefaultPolicy()
	named.EmergencyNumbers[1].Names = map[string]string{"nb": "Politi", "de": "Polizei"}
	withNames := consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetPolicy, Policy: &named}
	plain := consensus.DefaultPolicy()
	plain.ServiceLevelSeconds = 45
	checked := consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetPolicy, Policy: &plain,
		ExpectedPolicyVersion: leader.Roster().Policy.Version()}
	for _, via := range []*Node{leader, f.node("c3")} {
		for _, cmd := range []consensus.Command{withNames, checked} {
			_, lastBefore, _ := leader.Consensus().LogBounds()
			err := via.Propose(ctx, cmd)
			if !errors.Is(err, consensus.ErrNotEverywhere) || !strings.Contains(err.Error(), "needs roster level 4") ||
				!strings.Contains(err.Error(), "c3 speaks level 3") || !strings.Contains(err.Error(), "upgrade c3") {
				t.Fatalf("through %s: %v, want ErrNotEverywhere naming c3 at level 3", via.Centre(), err)
			}
			t.Logf("through %s refused: %s", via.Centre(), err)
			if _, lastAfter, _ := leader.Consensus().LogBounds(); lastAfter != lastBefore {
				t.Fatalf("a refused set_policy reached the log (%d -> %d)", lastBefore, lastAfter)
			}
		}
	}
	if err := f.node("c3").Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetPolicy, Policy: &plain}); err != nil {
		t.Fatalf("a plain set_policy with c3 at level 3: %v", err)
	}
	for _, n := range f.live() {
		eventually(t, 10*time.Second, n.Centre()+" applies the plain policy", func() bool {
			return n.Roster().Policy.ServiceLevelSeconds == 45
		})
	}

	f.kill("c3")
	f.restartWith("c3", func(cfg *Config) { cfg.testRosterLevel = 0 })
	leader = f.leaderSeeingLevel("c3", consensus.RosterLevel)
	withNames.ExpectedPolicyVersion = plain.Version()
	if err := f.node("c3").Propose(ctx, withNames); err != nil {
		t.Fatalf("names with c3 upgraded: %v", err)
	}
	for _, n := range f.live() {
		eventually(t, 10*time.Second, n.Centre()+" holds the names", func() bool {
			return reflect.DeepEqual(n.Roster().Policy, named)
		})
	}
	f.kill("c2")
	c2 := f.restart("c2")
	eventually(t, 15*time.Second, "c2 holds the names after a restart", func() bool {
		return reflect.DeepEqual(c2.Roster().Policy, named)
	})
}
