package consensus

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p"

	"github.com/helpmesh/helpmesh/internal/timing"
)

// startOne runs a real one-centre federation: Raft on Pebble over a libp2p
// host on loopback.
func startOne(t *testing.T) *Consensus {
	t.Helper()
	return startOneWith(t, nil)
}

// startOneWith is startOne with levels as Config.ReleaseLevels.
func startOneWith(t *testing.T, levels LevelsFunc) *Consensus {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c, err := Start(context.Background(), Config{Centre: "oslo", Dir: t.TempDir(), Host: h, Bootstrap: true, Timing: timing.Test, ReleaseLevels: levels})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	self := admit("oslo", h.ID().String())
	if err := c.Propose(ctx, self); err != nil {
		t.Fatal(err)
	}
	if err := c.Propose(ctx, volunteer("v0", "oslo", "nb")); err != nil {
		t.Fatal(err)
	}
	return c
}

// Bad roster commands proposed through real Raft are refused with a clear
// error, reach neither the log nor the roster.
func TestProposeRefusesBadCommandsBeforeTheLog(t *testing.T) {
	c := startOne(t)
	// Make "duplicate peer id" collide with the real centre's peer.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range badCommands() {
		if tc.cmd.Centre != nil && tc.cmd.Centre.PeerID == testPeer {
			cc := *tc.cmd.Centre
			cc.PeerID = c.Roster().Centres["oslo"].PeerID
			tc.cmd.Centre = &cc
		}
		t.Run(tc.name, func(t *testing.T) {
			before := c.Roster()
			_, lastBefore, _ := c.LogBounds()
			err := c.Propose(ctx, tc.cmd)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			_, lastAfter, _ := c.LogBounds()
			if lastAfter != lastBefore {
				t.Fatalf("a refused command reached the log (%d -> %d)", lastBefore, lastAfter)
			}
			if !reflect.DeepEqual(before, c.Roster()) {
				t.Fatal("a refused command changed the roster")
			}
		})
	}
}

// A command that passed the leader's check but is refused when applied
// (two racing admissions of one id) changes nothing: the FSM checks again.
func TestFSMRefusesAtApplyTime(t *testing.T) {
	c := startOne(t)
	before := c.Roster()
	b, err := EncodeCommand(admit("oslo", testPeer2))
	if err != nil {
		t.Fatal(err)
	}
	f := c.raft.Apply(b, 5*time.Second)
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	res, _ := f.Response().(applyResult)
	if !errors.Is(res.err, ErrDuplicate) {
		t.Fatalf("apply-time refusal: got %v, want ErrDuplicate", res.err)
	}
	if !reflect.DeepEqual(before, c.Roster()) {
		t.Fatal("refused entry changed the roster")
	}
}

// A linearizable read sees a write that completed before it began.
func TestReadRosterSeesCompletedWrites(t *testing.T) {
	c := startOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Propose(ctx, volunteer("v9", "oslo", "en")); err != nil {
		t.Fatal(err)
	}
	r, err := c.ReadRoster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Volunteers["v9"]; !ok {
		t.Fatal("read missed a completed write")
	}
}

// addSilentServer admits bergen and adds it to the Raft group as a non-voter
// that never answers, so the leader still commits alone but must know
// bergen's roster level before proposing an operation above level 1.
func addSilentServer(ctx context.Context, t *testing.T, c *Consensus) {
	t.Helper()
	if err := c.Propose(ctx, admit("bergen", testPeer)); err != nil {
		t.Fatal(err)
	}
	if err := c.raft.AddNonvoter("bergen", raft.ServerAddress(testPeer), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
}

// applyAndSnapshot applies cmds to a new FSM and returns it with its
// persisted snapshot.
func applyAndSnapshot(t *testing.T, cmds ...Command) (*fsm, []byte) {
	t.Helper()
	f := newFSM(func() {})
	for _, cmd := range cmds {
		b, _ := EncodeCommand(cmd)
		if res, _ := f.Apply(&raft.Log{Type: raft.LogCommand, Data: b}).(applyResult); res.err != nil {
			t.Fatal(res.err)
		}
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	return f, sink.Bytes()
}
