// Package consensus holds the federation's roster: a hashicorp/raft group
// whose log and stable store live in Pebble and whose RPCs travel over
// libp2p. Routing never waits on it: readers take the local copy, which may be
// a little stale. See DESIGN.md in this folder for why it is shaped this way.
package consensus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"

	"github.com/helpmesh/helpmesh/internal/logadapt"
	"github.com/helpmesh/helpmesh/internal/stopper"
	"github.com/helpmesh/helpmesh/internal/timing"
)

// DefaultMaxVoters keeps the quorum small and quick: every other centre is a
// non-voter that still receives the roster.
const DefaultMaxVoters = 5

// Config configures one centre's consensus module.
type Config struct {
	// Centre is this centre's id, used as the Raft server id.
	Centre string
	// Dir holds the Pebble store and the snapshots.
	Dir string
	// Host is the centre's libp2p host; its peer id is the Raft address.
	Host host.Host
	// Logger receives Raft's and this package's logs.
	Logger *slog.Logger
	// Bootstrap makes this node a federation of one if it has no Raft state.
	Bootstrap bool
	// MaxVoters caps the voters; 0 means DefaultMaxVoters.
	MaxVoters int
	// Timing picks Raft's timeouts.
	Timing timing.Profile
	// SnapshotThreshold and TrailingLogs override Raft's defaults when set.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// ReleaseLevels tells the leader which roster level the other servers
	// speak, before it proposes an operation of a level above 1 (see
	// release.go). Nil means no centre is known to speak any: such
	// operations are refused while the group has another server.
	ReleaseLevels LevelsFunc
}

// Consensus is one centre's member of the roster Raft group.
type Consensus struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	fsm   *fsm
	store *Store
	trans *fencedTransport
	stop  *stopper.Stopper

	subMu sync.Mutex
	subs  map[chan struct{}]struct{}

	// bootstrapped is set when this Start created a new federation.
	bootstrapped bool

	stopOnce sync.Once
	stopErr  error
}

// Start opens the store, starts Raft and returns once Raft is running. It
// does not wait for a leader: routing never needs one.
func Start(ctx context.Context, cfg Config) (*Consensus, error) {
	if cfg.MaxVoters <= 0 {
		cfg.MaxVoters = DefaultMaxVoters
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Consensus{cfg: cfg, log: cfg.Logger.With("centre", cfg.Centre), stop: stopper.New(), subs: map[chan struct{}]struct{}{}}
	if err := c.start(); err != nil {
		c.closeParts()
		return nil, fmt.Errorf("start consensus: %w", err)
	}
	return c, ctx.Err()
}

func (c *Consensus) start() error {
	if err := os.MkdirAll(c.cfg.Dir, 0o700); err != nil {
		return err
	}
	store, err := OpenStore(filepath.Join(c.cfg.Dir, "raft"))
	if err != nil {
		return err
	}
	c.store = store
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(c.cfg.Dir, "snapshots"), 2, logadapt.HCLog(c.log, "raft-snapshots"))
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	if c.trans, err = newTransport(c.cfg.Host, c.log); err != nil {
		return err
	}
	c.fsm = newFSM(c.notify)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.cfg.Centre)
	rc.Logger = logadapt.HCLog(c.log, "raft")
	if c.cfg.Timing == timing.Test {
		// Quick on loopback, but not so quick that a CI machine running
		// -race tests on 2 busy cores makes a healthy leader step down.
		rc.HeartbeatTimeout = 700 * time.Millisecond
		rc.ElectionTimeout = 700 * time.Millisecond
		rc.LeaderLeaseTimeout = 350 * time.Millisecond
		rc.CommitTimeout = 20 * time.Millisecond
	}
	if c.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = c.cfg.SnapshotThreshold
	}
	if c.cfg.TrailingLogs > 0 {
		rc.TrailingLogs = c.cfg.TrailingLogs
	}
	existing, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}
	if c.raft, err = raft.NewRaft(rc, c.fsm, logs, store, snaps, c.trans); err != nil {
		return fmt.Errorf("new raft: %w", err)
	}
	if c.cfg.Bootstrap && !existing {
		boot := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: raft.ServerAddress(c.cfg.Host.ID().String()),
		}}}
		if err := c.raft.BootstrapCluster(boot).Error(); err != nil {
			return fmt.Errorf("bootstrap federation: %w", err)
		}
		c.bootstrapped = true
		c.log.Info("bootstrapped a federation of one")
	}
	c.cfg.Host.SetStreamHandler(rosterProtocol, c.serveRoster)
	c.stop.Go(c.reconcileLoop)
	return nil
}

// Stop shuts Raft down and closes the store. It is idempotent.
func (c *Consensus) Stop() error {
	c.stopOnce.Do(func() {
		c.handOverLeadership()
		c.cfg.Host.RemoveStreamHandler(rosterProtocol)
		c.stop.Stop()
		c.stopErr = c.closeParts()
	})
	return c.stopErr
}

// handOverLeadership lets a stopping leader pick its successor, so a
// rolling restart costs the roster one quick hand-over per centre instead
// of an election timeout: writes wait less, and nobody sees a leaderless
// federation.
func (c *Consensus) handOverLeadership() {
	if c.raft == nil || c.raft.State() != raft.Leader {
		return
	}
	f := c.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	voters := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	if voters < 2 {
		return
	}
	if err := c.raft.LeadershipTransfer().Error(); err != nil {
		c.log.Warn("leadership not handed over before stop; the others will elect", "err", err)
		return
	}
	c.log.Info("leadership handed over before stop")
}

func (c *Consensus) closeParts() error {
	var errs []error
	if c.raft != nil {
		errs = append(errs, c.raft.Shutdown().Error())
	}
	if c.trans != nil {
		c.trans.fence()
		errs = append(errs, c.trans.Close())
	}
	if c.store != nil {
		errs = append(errs, c.store.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop consensus: %w", err)
	}
	return nil
}

// Roster returns this centre's local copy of the roster. It may lag the
// leader slightly; routing is built to tolerate that.
func (c *Consensus) Roster() Roster { return c.fsm.read() }

// Centre returns one centre of the applied roster, without copying the
// whole roster as Roster does.
func (c *Consensus) Centre(id string) (Centre, bool) { return c.fsm.centre(id) }

// Subscribe returns a channel poked after every roster change (coalesced)
// and a function to stop the subscription.
func (c *Consensus) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.subMu.Lock()
	c.subs[ch] = struct{}{}
	c.subMu.Unlock()
	return ch, func() {
		c.subMu.Lock()
		delete(c.subs, ch)
		c.subMu.Unlock()
	}
}

func (c *Consensus) notify() {
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for ch := range c.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Status is what a coordinator sees of this centre's Raft member.
type Status struct {
	Centre       string    `json:"centre"`
	State        string    `json:"state"`
	Leader       string    `json:"leader"`
	LeaderPeer   string    `json:"leader_peer"`
	LastContact  time.Time `json:"last_contact"`
	AppliedIndex uint64    `json:"applied_index"`
	Voters       []string  `json:"voters"`
	Nonvoters    []string  `json:"nonvoters"`
}

// Status reports this member's view of the group.
func (c *Consensus) Status() Status {
	addr, id := c.raft.LeaderWithID()
	st := Status{
		Centre:       c.cfg.Centre,
		State:        c.raft.State().String(),
		Leader:       string(id),
		LeaderPeer:   string(addr),
		AppliedIndex: c.raft.AppliedIndex(),
	}
	if st.State == raft.Leader.String() {
		st.LastContact = time.Now()
	} else {
		st.LastContact = c.raft.LastContact()
	}
	if f := c.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			if s.Suffrage == raft.Voter {
				st.Voters = append(st.Voters, string(s.ID))
			} else {
				st.Nonvoters = append(st.Nonvoters, string(s.ID))
			}
		}
	}
	return st
}

// Bootstrapped reports whether this Start created a new federation of one.
func (c *Consensus) Bootstrapped() bool { return c.bootstrapped }

// IsLeader reports whether this centre leads the roster group now.
func (c *Consensus) IsLeader() bool { return c.raft.State() == raft.Leader }

// Servers returns the peer ids in the current Raft configuration. The node's
// allowlist includes them so a restarted centre accepts its leader even before
// its roster has caught up.
func (c *Consensus) Servers() []string {
	var out []string
	for _, m := range c.Members() {
		out = append(out, m.PeerID)
	}
	return out
}

// LogBounds returns the first and last index held in the local Raft log;
// after compaction the first moves past what a lagging centre had.
func (c *Consensus) LogBounds() (first, last uint64, err error) {
	if first, err = c.store.FirstIndex(); err != nil {
		return 0, 0, fmt.Errorf("log bounds: %w", err)
	}
	if last, err = c.store.LastIndex(); err != nil {
		return 0, 0, fmt.Errorf("log bounds: %w", err)
	}
	return first, last, nil
}

// Snapshot asks Raft to snapshot and compact the log now.
func (c *Consensus) Snapshot() error {
	if err := c.raft.Snapshot().Error(); err != nil {
		return fmt.Errorf("snapshot roster: %w", err)
	}
	return nil
}

// WaitForLeader blocks until a leader is known or ctx ends.
func (c *Consensus) WaitForLeader(ctx context.Context) (string, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if _, id := c.raft.LeaderWithID(); id != "" {
			return string(id), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("wait for roster leader: %w: %w", ErrNotLeader, ctx.Err())
		case <-c.stop.Done():
			return "", ErrStopped
		case <-t.C:
		}
	}
}

// WaitForIndex blocks until this member has applied index, or ctx ends.
func (c *Consensus) WaitForIndex(ctx context.Context, index uint64) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	applied := func() bool {
		if a := c.fsm.appliedIndex(); a > 0 {
			return a >= index
		}
		// Nothing applied since a restore from a snapshot too old to say
		// what it holds: Raft's own count is the best there is.
		return c.raft.AppliedIndex() >= index
	}
	for !applied() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for roster index %d: %w", index, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func timeoutFrom(ctx context.Context, fallback time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left > 0 {
			return left
		}
		return time.Millisecond
	}
	return fallback
}
