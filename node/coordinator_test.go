package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
)

// A centre on the release before the coordinator role (roster level 5)
// holds back a roster entry with that role, wherever it is proposed:
// ErrNotEverywhere naming it, nothing in the log, no centre's roster
// lists the entry. A supervisor's entry (level 1) goes through. Upgraded,
// the coordinator's entry reaches every centre's roster.
func TestLevel5CentreHoldsBackTheCoordinatorRole(t *testing.T) {
	f := newFederation(t, 3, fedOptions{configure: func(id string, cfg *Config) {
		if id == "c3" {
			cfg.testRosterLevel = 5
		}
	}})
	leader := f.leaderSeeingLevel("c3", 5)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	put := func(id, role string) consensus.Command {
		return consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpPutVolunteer, Volunteer: &consensus.Volunteer{
			ID: id, Centre: "c1", Alias: "Staff " + id, Channels: []string{"chat"}, Languages: []string{"nb"}, Capacity: 1, Role: role,
		}}
	}
	for _, via := range []*Node{leader, f.node("c3")} {
		_, lastBefore, _ := leader.Consensus().LogBounds()
		err := via.Propose(ctx, put("coord1", consensus.RoleCoordinator))
		if !errors.Is(err, consensus.ErrNotEverywhere) || !strings.Contains(err.Error(), "put_volunteer with the coordinator role needs roster level 6") ||
			!strings.Contains(err.Error(), "c3 speaks level 5") {
			t.Fatalf("through %s: %v, want ErrNotEverywhere naming c3 at level 5", via.Centre(), err)
		}
		if _, lastAfter, _ := leader.Consensus().LogBounds(); lastAfter != lastBefore {
			t.Fatalf("a refused coordinator entry reached the log (%d -> %d)", lastBefore, lastAfter)
		}
	}
	if err := f.node("c3").Propose(ctx, put("super1", consensus.RoleSupervisor)); err != nil {
		t.Fatalf("a supervisor's entry with c3 at level 5: %v", err)
	}
	for _, n := range f.live() {
		eventually(t, 10*time.Second, n.Centre()+" lists the supervisor", func() bool {
			return n.Roster().Volunteers["super1"].Role == consensus.RoleSupervisor
		})
		if _, ok := n.Roster().Volunteers["coord1"]; ok {
			t.Fatalf("%s lists the coordinator refused by the gate", n.Centre())
		}
	}

	f.kill("c3")
	f.restartWith("c3", func(cfg *Config) { cfg.testRosterLevel = 0 })
	f.leaderSeeingLevel("c3", consensus.RosterLevel)
	if err := f.node("c3").Propose(ctx, put("coord1", consensus.RoleCoordinator)); err != nil {
		t.Fatalf("a coordinator's entry with c3 upgraded: %v", err)
	}
	for _, n := range f.live() {
		eventually(t, 10*time.Second, n.Centre()+" lists the coordinator", func() bool {
			return n.Roster().Volunteers["coord1"].Role == consensus.RoleCoordinator
		})
	}
}
