package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/overflow"
)

func putVolunteer(id, centre string) consensus.Command {
	return consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpPutVolunteer, Volunteer: &consensus.Volunteer{
		ID: id, Centre: centre, Alias: "Alias " + id, Channels: []string{"chat"}, Languages: []string{"nb", "en"}, Capacity: 2, Role: "volunteer",
	}}
}

func visibleEverywhere(t *testing.T, f *federation, volunteer string) {
	t.Helper()
	eventually(t, 10*time.Second, "volunteer "+volunteer+" on every centre", func() bool {
		for _, n := range f.live() {
			if _, ok := n.Roster().Volunteers[volunteer]; !ok {
				return false
			}
		}
		return true
	})
}

// A write at a follower reaches the leader and every centre; the federation
// survives the leader's death; a restarted centre catches up from a snapshot
// after the log was compacted past what it had.
func TestFederationRosterWritesSurviveLeaderLoss(t *testing.T) {
	f := newFederation(t, 3, fedOptions{snapshotThreshold: 8, trailingLogs: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	follower := f.follower()
	if err := follower.Propose(ctx, putVolunteer("v-follower", follower.Centre())); err != nil {
		t.Fatalf("write at follower: %v", err)
	}
	visibleEverywhere(t, f, "v-follower")

	old := f.leader()
	oldID := old.Centre()
	_, oldLast, err := old.consensus.LogBounds()
	if err != nil {
		t.Fatal(err)
	}
	f.kill(oldID)
	newLeader := f.leader()
	if newLeader.Centre() == oldID {
		t.Fatalf("killed leader %s still leads", oldID)
	}
	// Writes go on: enough of them, then a snapshot, that the log the
	// killed centre had is compacted away.
	for i := range 20 {
		if err := f.follower().Propose(ctx, putVolunteer(volID(i), newLeader.Centre())); err != nil {
			t.Fatalf("write %d after leader loss: %v", i, err)
		}
	}
	for _, n := range f.live() {
		if err := n.consensus.Snapshot(); err != nil {
			t.Fatalf("snapshot at %s: %v", n.Centre(), err)
		}
	}
	visibleEverywhere(t, f, volID(19))
	first, _, err := f.leader().consensus.LogBounds()
	if err != nil {
		t.Fatal(err)
	}
	if first <= oldLast+1 {
		t.Fatalf("log not compacted past the killed centre's last index %d (first is %d): the restart would not need a snapshot", oldLast, first)
	}

	back := f.restart(oldID)
	visibleEverywhere(t, f, volID(19))
	if got, want := len(back.Roster().Volunteers), len(newLeader.Roster().Volunteers); got != want {
		t.Fatalf("restarted centre has %d volunteers, leader %d", got, want)
	}
	// And it takes part again: a write through it lands everywhere.
	if err := back.Propose(ctx, putVolunteer("v-after-restart", oldID)); err != nil {
		t.Fatalf("write through restarted centre: %v", err)
	}
	visibleEverywhere(t, f, "v-after-restart")
}

func volID(i int) string { return "v-" + string(rune('a'+i)) }

// A change of availability at one centre is seen at the others; a killed
// centre is marked dead at the survivors, in the federation view coordinators
// read.
func TestAvailabilityChangeAndDeadCentreInFederationView(t *testing.T) {
	f := newFederation(t, 3, fedOptions{})
	c1, c2 := f.node("c1"), f.node("c2")
	// A volunteer switches on at c1 and a visitor waits there in a language
	// nobody speaks: c1's published state changes on its own.
	signIn(t, c1, "v-1", "Ola")
	if _, err := c1.Switchboard().StartContact("chat", "nn", newVisitorProbe()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "c1's new availability at c2", func() bool {
		for _, c := range c2.Federation().Centres {
			if c.ID == "c1" && c.Availability != nil {
				ch := c.Availability.Channels["chat"]
				return ch.Free["nb"] == 1 && ch.Free["en"] == 1 && ch.QueueLength == 1 && c.Availability.Accepting
			}
		}
		return false
	})
	f.kill("c3")
	for _, id := range []string{"c1", "c2"} {
		eventually(t, 15*time.Second, "c3 dead at "+id, func() bool {
			for _, c := range f.node(id).Federation().Centres {
				if c.ID == "c3" {
					return c.Gossip == overflow.StateDead
				}
			}
			return false
		})
	}
}

// A write through a follower is in that follower's own roster the moment
// Propose returns (read your writes), every time.
func TestFollowerReadsItsOwnWrites(t *testing.T) {
	f := newFederation(t, 3, fedOptions{})
	leader := f.leader()
	var follower *Node
	for _, n := range f.live() {
		if n != leader {
			follower = n
			break
		}
	}
	for i := range 200 {
		id := fmt.Sprintf("ryw-%d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := follower.Propose(ctx, putVolunteer(id, follower.Centre()))
		cancel()
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if _, ok := follower.Roster().Volunteers[id]; !ok {
			t.Fatalf("write %d returned before it was in the follower's roster", i)
		}
	}
}

// An idle federation falls quiet: a centre publishes its availability
// when it changes, not each time another centre's news re-runs its
// dispatch. Before this held, two centres republished each other about
// twenty times a second for ever (the capacity simulator found it: its
// virtual clock never got past the ping-pong).
func TestIdleFederationStopsRepublishing(t *testing.T) {
	f := newFederation(t, 3, fedOptions{})
	c1, c2 := f.node("c1"), f.node("c2")
	signIn(t, c1, "v-1", "Ola")
	versionAt := func(n *Node, centre string) uint64 {
		for _, s := range n.Gossip().View() {
			if s.Centre == centre {
				return s.Availability.Version
			}
		}
		return 0
	}
	eventually(t, 10*time.Second, "c1's volunteer free in c2's view", func() bool {
		for _, s := range c2.Gossip().View() {
			if s.Centre == "c1" {
				return s.Availability.Channels["chat"].Free["nb"] == 1
			}
		}
		return false
	})
	// Let the sign-in's own round of news settle, then watch: nothing
	// changes at any centre, so no centre has anything new to say.
	time.Sleep(time.Second)
	before := map[string]uint64{"c1": versionAt(c2, "c1"), "c2": versionAt(c1, "c2"), "c3": versionAt(c1, "c3")}
	time.Sleep(2 * time.Second)
	after := map[string]uint64{"c1": versionAt(c2, "c1"), "c2": versionAt(c1, "c2"), "c3": versionAt(c1, "c3")}
	for id := range before {
		if before[id] != after[id] {
			t.Errorf("idle %s published again: version %d then %d", id, before[id], after[id])
		}
	}
}
