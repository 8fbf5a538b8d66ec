package node

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/switchboard"
)

// federation is an in-process federation of real nodes on loopback: real
// libp2p, Raft, Pebble and memberlist.
type federation struct {
	t     testing.TB
	mu    sync.Mutex
	nodes map[string]*Node
	cfgs  map[string]Config
	order []string
	opts  fedOptions
	base  string
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

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// newFederation starts n centres c1..cn: c1 bootstraps, the others are
// admitted at c1 and join through it.
func newFederation(t testing.TB, n int, opts fedOptions) *federation {
	t.Helper()
	f := &federation{t: t, nodes: map[string]*Node{}, cfgs: map[string]Config{}, opts: opts}
	// The data directory's cleanup must run after the nodes stop: cleanups
	// run last-registered first, so register the directory before stopAll.
	f.base = t.TempDir()
	t.Cleanup(f.stopAll)
	for i := 1; i <= n; i++ {
		f.add(fmt.Sprintf("c%d", i))
	}
	return f
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
		P2PAddr:           fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(f.t)),
		GossipAddr:        fmt.Sprintf("127.0.0.1:%d", freePort(f.t)),
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

// add creates, admits and starts a new centre.
func (f *federation) add(id string) *Node {
	f.t.Helper()
	cfg := f.config(id)
	if len(f.order) == 0 {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			f.t.Fatal(err)
		}
		if _, err := Init(cfg.DataDir, FileConfig{Centre: id}); err != nil {
			f.t.Fatal(err)
		}
	} else {
		first := f.node(f.order[0])
		f.admit(first, id, cfg)
		cfg.Join = first.P2PAddrs()[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		f.t.Fatalf("start %s: %v", id, err)
	}
	f.mu.Lock()
	f.nodes[id], f.cfgs[id] = n, cfg
	f.order = append(f.order, id)
	f.mu.Unlock()
	return n
}

// admit does what a coordinator does: writes the new centre into the roster.
func (f *federation) admit(via *Node, id string, cfg Config) {
	f.t.Helper()
	key, err := LoadOrCreateIdentity(filepath.Join(cfg.DataDir, IdentityFile))
	if err != nil {
		f.t.Fatal(err)
	}
	pid, _ := PeerIDOf(key)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = via.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpAdmitCentre, Centre: &consensus.Centre{
		ID: id, Name: cfg.Name, PeerID: pid.String(), Addrs: []string{cfg.P2PAddr}, GossipAddr: cfg.GossipAddr,
	}})
	if err != nil {
		f.t.Fatalf("admit %s: %v", id, err)
	}
}

func (f *federation) node(id string) *Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[id]
}

func (f *federation) live() []*Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*Node
	for _, id := range f.order {
		if n := f.nodes[id]; n != nil {
			out = append(out, n)
		}
	}
	return out
}

// kill stops a centre abruptly (no gossip leave) and forgets it.
func (f *federation) kill(id string) {
	f.t.Helper()
	f.mu.Lock()
	n := f.nodes[id]
	f.nodes[id] = nil
	f.mu.Unlock()
	if n == nil {
		return
	}
	n.crash()
}

// restart starts a killed centre again on its data directory (no --join).
func (f *federation) restart(id string) *Node {
	f.t.Helper()
	return f.restartWith(id, nil)
}

// restartWith is restart with the centre's configuration adjusted first
// (kept for later restarts), like a new binary on the same data directory.
func (f *federation) restartWith(id string, change func(*Config)) *Node {
	f.t.Helper()
	f.mu.Lock()
	cfg := f.cfgs[id]
	if change != nil {
		change(&cfg)
		f.cfgs[id] = cfg
	}
	f.mu.Unlock()
	cfg.Join = ""
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err != nil {
		f.t.Fatalf("restart %s: %v", id, err)
	}
	f.mu.Lock()
	f.nodes[id] = n
	f.mu.Unlock()
	return n
}

func (f *federation) stopAll() {
	for _, n := range f.live() {
		_ = n.Stop()
	}
}

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

// eventually polls cond until it holds or the deadline passes. It waits on
// the event (the condition), with a deadline, never a fixed sleep.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// partition cuts id off from every other live centre, both ways, at the
// libp2p layer (Raft, roster and join traffic). heal undoes it.
func (f *federation) partition(id string) {
	f.setCut(id, true)
}

func (f *federation) heal(id string) {
	f.setCut(id, false)
}

func (f *federation) setCut(id string, cut bool) {
	f.t.Helper()
	a := f.node(id)
	if a == nil {
		return
	}
	for _, b := range f.live() {
		if b == a {
			continue
		}
		a.gater.setCut(b.host.ID(), cut)
		b.gater.setCut(a.host.ID(), cut)
		if cut {
			_ = a.host.Network().ClosePeer(b.host.ID())
			_ = b.host.Network().ClosePeer(a.host.ID())
		}
	}
}
