package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/localfed"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/switchboard"
)

// federation is an in-process federation of real nodes on loopback: real
// libp2p, Raft, Pebble and memberlist. The federation logic (admission
// order, kill, restart, cut off) is internal/localfed's; this adapter gives
// it bare nodes and their unexported fault hooks (crash, the gater's cut).
type federation struct {
	*fedtest.Federation[Config, *Node]
	t    testing.TB
	opts fedOptions
	base string
}

type fedOptions struct {
	snapshotThreshold, trailingLogs uint64
	maxVoters                       int
	ringTimeout                     time.Duration
	// logger, if set, gives each centre its logger (default testLogger).
	logger func(id string) *slog.Logger
	// configure, if set, adjusts each new centre's configuration.
	configure func(id string, cfg *Config)
}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("HELPMESH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newFederation starts n centres c1..cn: c1 bootstraps, the others are
// admitted at c1 and join through it.
func newFederation(t testing.TB, n int, opts fedOptions) *federation {
	t.Helper()
	// The data directory's cleanup must run after the nodes stop: cleanups
	// run last-registered first, so register the directory first.
	f := &federation{t: t, opts: opts, base: t.TempDir()}
	f.Federation = fedtest.New(t, localfed.Driver[Config, *Node]{
		Prepare: f.prepare,
		Start: func(ctx context.Context, cfg Config, join string) (*Node, error) {
			cfg.Join = join
			return Start(ctx, cfg)
		},
		Member: func(n *Node) localfed.Member { return n },
		Stop:   (*Node).Stop,
		Crash:  (*Node).crash,
		Cut:    cutNodes,
	})
	for i := 1; i <= n; i++ {
		f.add(fmt.Sprintf("c%d", i))
	}
	return f
}

// prepare makes a new centre's configuration; only the first has a data
// directory made by Init, the others get theirs from the centre they join.
func (f *federation) prepare(id string, i int) (Config, *consensus.Centre, error) {
	cfg := f.config(id)
	if i == 0 {
		if _, err := Init(cfg.DataDir, FileConfig{Centre: id}); err != nil {
			return cfg, nil, err
		}
	}
	c, err := admission(id, cfg)
	return cfg, &c, err
}

func (f *federation) config(id string) Config {
	// Every call gets a directory of its own (a new identity), like a new
	// server; restart reuses the config and so the directory.
	dir, err := os.MkdirTemp(f.base, id+"-")
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := Config{
		Centre:            id,
		Name:              "Centre " + id,
		DataDir:           dir,
		P2PAddr:           fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", fedtest.FreePort(f.t)),
		GossipAddr:        fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(f.t)),
		Timing:            timing.Test,
		MaxVoters:         f.opts.maxVoters,
		SnapshotThreshold: f.opts.snapshotThreshold,
		TrailingLogs:      f.opts.trailingLogs,
		RingTimeout:       f.opts.ringTimeout,
		// These tests measure order, loss and hand-offs, not the pace
		// (switchboard's and api's tests do): messages are sent as fast as
		// a loop can.
		Pace:   unpaced,
		Logger: f.logger(id),
	}
	if f.opts.configure != nil {
		f.opts.configure(id, &cfg)
	}
	return cfg
}

// unpaced is a pace no test loop reaches.
var unpaced = switchboard.Pace{
	VisitorEvery: time.Microsecond, VisitorBurst: 1 << 20,
	VolunteerEvery: time.Microsecond, VolunteerBurst: 1 << 20, TypingEvery: time.Nanosecond,
}

func (f *federation) logger(id string) *slog.Logger {
	if f.opts.logger != nil {
		return f.opts.logger(id)
	}
	return testLogger(f.t)
}

// admission is centre id as the roster admits it, with cfg's identity.
func admission(id string, cfg Config) (consensus.Centre, error) {
	key, err := LoadOrCreateIdentity(filepath.Join(cfg.DataDir, IdentityFile))
	if err != nil {
		return consensus.Centre{}, err
	}
	pid, err := PeerIDOf(key)
	if err != nil {
		return consensus.Centre{}, err
	}
	return consensus.Centre{ID: id, Name: cfg.Name, PeerID: pid.String(), Addrs: []string{cfg.P2PAddr}, GossipAddr: cfg.GossipAddr}, nil
}

// add creates, admits and starts a new centre.
func (f *federation) add(id string) *Node {
	f.t.Helper()
	return f.Add(id)
}

// admit does what a coordinator does: writes the new centre into the roster.
func (f *federation) admit(via *Node, id string, cfg Config) {
	f.t.Helper()
	c, err := admission(id, cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := localfed.Admit(ctx, via, c); err != nil {
		f.t.Fatalf("admit %s: %v", id, err)
	}
}

// node returns centre id, nil unless it is running.
func (f *federation) node(id string) *Node { return f.Member(id) }

// live returns the running centres in the order they were added.
func (f *federation) live() []*Node { return f.Live() }

// kill stops a centre abruptly (no gossip leave) and forgets it.
func (f *federation) kill(id string) { f.Kill(id) }

// restart starts a killed centre again on its data directory (no --join).
func (f *federation) restart(id string) *Node {
	f.t.Helper()
	return f.Restart(id)
}

// restartWith is restart with the centre's configuration adjusted first
// (kept for later restarts), like a new binary on the same data directory.
func (f *federation) restartWith(id string, change func(*Config)) *Node {
	f.t.Helper()
	return f.RestartWith(id, change)
}

// partition cuts id off from every other live centre, both ways, at the
// libp2p layer (Raft, roster and join traffic). heal undoes it.
func (f *federation) partition(id string) { f.Partition(id) }

func (f *federation) heal(id string) { f.Heal(id) }

// cutNodes cuts (or heals) the libp2p link between a and b, both ways.
func cutNodes(a, b *Node, cut bool) { CutLink(a, b, cut) }

// leader waits until the live centres agree on one leader and returns it.
func (f *federation) leader() *Node {
	f.t.Helper()
	var found *Node
	eventually(f.t, 20*time.Second, "one agreed leader", func() bool {
		found = nil
		leaderID := ""
		for _, n := range f.live() {
			st := n.consensus.Status()
			if leaderID == "" {
				leaderID = st.Leader
			}
			if st.Leader == "" || st.Leader != leaderID {
				return false
			}
		}
		found = f.node(leaderID)
		return found != nil
	})
	return found
}

func (f *federation) follower() *Node {
	l := f.leader()
	for _, n := range f.live() {
		if n != l {
			return n
		}
	}
	f.t.Fatal("no follower")
	return nil
}

// eventually is fedtest.Eventually, by the name node's tests know.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	fedtest.Eventually(t, within, what, cond)
}
