package consensus

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// Every operation has its level: the first release's are 1, rotation is 2,
// set_centre_sip is 3 (level 4 added fields to set_policy, see
// TestCommandLevel), set_centre_public_url is 5 (level 6 added the
// coordinator role to put_volunteer, see TestCommandLevel), none is above what this build speaks, and an unknown
// one is above all.
func TestOpLevel(t *testing.T) {
	for op, want := range map[Op]int{
		OpAdmitCentre: 1, OpUpdateCentre: 1, OpRemoveCentre: 1,
		OpPutVolunteer: 1, OpRemoveVolunteer: 1, OpSetPolicy: 1,
		OpRotateGossipKey: 2, OpSetCentreSIP: 3, OpSetCentrePublicURL: 5,
	} {
		if got := OpLevel(op); got != want {
			t.Errorf("OpLevel(%s) = %d, want %d", op, got, want)
		}
		if OpLevel(op) > RosterLevel {
			t.Errorf("%s is above RosterLevel %d", op, RosterLevel)
		}
	}
	if RosterLevel != 7 {
		t.Errorf("RosterLevel = %d, want 7", RosterLevel)
	}
	if got := OpLevel("merge_centres"); got <= RosterLevel {
		t.Errorf("an unknown operation has level %d, within what this build speaks", got)
	}
}

// The refusal names each centre that is behind or unknown, says what to
// do, and names nobody who is up to date.
func TestLevelErrorNamesEachCentreBehind(t *testing.T) {
	others := []Member{{Centre: "tromso"}, {Centre: "bergen"}, {Centre: "oslo"}, {Centre: "bodo"}}
	levels := map[string]int{"bergen": 1, "oslo": 2, "bodo": 3}
	err := levelError(string(OpRotateGossipKey), 2, others, levels)
	if !errors.Is(err, ErrNotEverywhere) {
		t.Fatalf("got %v, want ErrNotEverywhere", err)
	}
	msg := err.Error()
	for _, want := range []string{"rotate_gossip_key needs roster level 2", "bergen speaks level 1", "tromso's level is unknown",
		"upgrade bergen", "bring tromso back", "then retry"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
	for _, centre := range []string{"oslo", "bodo"} {
		if strings.Contains(msg, centre) {
			t.Errorf("%q names %s, which speaks the level", msg, centre)
		}
	}
	if err := levelError(string(OpRotateGossipKey), 2, others[2:], levels); err != nil {
		t.Fatalf("every centre at or above the level: %v", err)
	}
}

// The sentinel survives the trip from leader to follower.
func TestNotEverywhereCrossesTheWire(t *testing.T) {
	err := fromWire(codeOf(fmt.Errorf("x: %w", ErrNotEverywhere)), "x")
	if !errors.Is(err, ErrNotEverywhere) {
		t.Fatalf("got %v", err)
	}
}

// fakeLevels is a ReleaseLevels that answers from a map a test sets, and
// counts its calls.
type fakeLevels struct {
	mu     sync.Mutex
	levels map[string]int
	calls  int
}

func (f *fakeLevels) ask(ctx context.Context, others []Member) map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := map[string]int{}
	for _, m := range others {
		if l, ok := f.levels[m.Centre]; ok {
			out[m.Centre] = l
		}
	}
	return out
}

func (f *fakeLevels) set(centre string, level int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.levels[centre] = level
}

func (f *fakeLevels) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Through real Raft, with a second server in the group (a non-voter that
// never answers, so the leader alone commits): a rotation is refused before
// the log until the hook reports that server at level 2; level-1 writes
// never ask.
func TestLeaderRefusesAnOpNotSpokenEverywhere(t *testing.T) {
	levels := &fakeLevels{levels: map[string]int{}}
	c := startOneWith(t, levels.ask)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addSilentServer(ctx, t, c)

	for _, tc := range []struct {
		name  string
		level int
		says  string
	}{
		{"never answered", 0, "bergen's level is unknown"},
		{"older release", 1, "bergen speaks level 1"},
	} {
		if tc.level > 0 {
			levels.set("bergen", tc.level)
		}
		before := c.Roster()
		_, lastBefore, _ := c.LogBounds()
		err := c.Propose(ctx, rotate(1, GossipKeyBytes))
		if !errors.Is(err, ErrNotEverywhere) || !strings.Contains(err.Error(), tc.says) {
			t.Fatalf("%s: got %v, want ErrNotEverywhere saying %q", tc.name, err, tc.says)
		}
		if _, lastAfter, _ := c.LogBounds(); lastAfter != lastBefore {
			t.Fatalf("%s: a refused rotation reached the log (%d -> %d)", tc.name, lastBefore, lastAfter)
		}
		if !reflect.DeepEqual(before, c.Roster()) {
			t.Fatalf("%s: a refused rotation changed the roster", tc.name)
		}
	}

	asked := levels.count()
	if err := c.Propose(ctx, volunteer("v1", "bergen", "nb")); err != nil {
		t.Fatalf("a level-1 write while bergen is behind: %v", err)
	}
	if levels.count() != asked {
		t.Fatal("a level-1 write asked for the centres' levels")
	}

	levels.set("bergen", 2)
	if err := c.Propose(ctx, rotate(1, GossipKeyBytes)); err != nil {
		t.Fatalf("rotation with every centre at level 2: %v", err)
	}
	if k, ok := c.GossipKey(); !ok || k.Generation != 1 {
		t.Fatalf("after rotation: %v %v", k, ok)
	}
}

// Without a way to ask, a group of more than one refuses a level-2
// operation rather than guess.
func TestNoLevelHookRefusesInAGroup(t *testing.T) {
	c := startOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Propose(ctx, rotate(1, GossipKeyBytes)); err != nil {
		t.Fatalf("a group of one needs nobody's level: %v", err)
	}
	addSilentServer(ctx, t, c)
	if err := c.Propose(ctx, rotate(2, GossipKeyBytes)); !errors.Is(err, ErrNotEverywhere) {
		t.Fatalf("got %v, want ErrNotEverywhere", err)
	}
}
