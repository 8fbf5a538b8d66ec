package overflow

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helpmesh/helpmesh/internal/refusal"
	"github.com/helpmesh/helpmesh/internal/stopper"
	"github.com/helpmesh/helpmesh/internal/timing"
)

// Membership states reported in Seen.State.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// GossipConfig configures one centre's gossip node.
type GossipConfig struct {
	// Centre is this centre's id and the memberlist node name. It must be
	// unique in the federation; two nodes with one id fight over it.
	Centre string
	// BindAddr is host:port to listen on, UDP and TCP; port 0 picks a free one.
	BindAddr string
	// AdvertiseAddr is host:port peers should use, when it differs from
	// BindAddr (NAT, 0.0.0.0 binds). Optional. With a BindAddr port of 0 the
	// bound port is advertised whatever port is given here.
	AdvertiseAddr string
	// Key is the 32-byte federation gossip key (AES-256-GCM). Required: the
	// data describes crisis services and must not be readable or forgeable
	// by anyone outside the federation.
	Key []byte
	// Label is the federation label; peers with another label are refused
	// before decryption, which keeps two federations sharing a network apart
	// with a clear log line instead of decryption errors.
	Label string
	// Logger receives memberlist's and this package's logs. Nil discards.
	// Input refused before it is authenticated (wrong label or key, junk) is
	// not logged line by line: see Registry and DESIGN.md, "Refused input".
	Logger *slog.Logger
	// Registry receives helpmesh_gossip_refused_total, the count of such
	// refused input by reason. Nil keeps it unregistered (RefusedCount
	// still reads it).
	Registry prometheus.Registerer
	// Timing is timing.National (the zero value: see lanConfig) or
	// timing.Test, which detects a dead node in about a second on loopback
	// and would mark healthy centres dead across a real network.
	Timing timing.Profile
	// OnChange, if set, is called with a centre id whenever that centre's
	// availability version or membership state changes here. Calls come
	// from one goroutine, in order per centre, coalesced when they arrive
	// faster than OnChange returns. Stop waits for a running OnChange, so
	// OnChange must return promptly and must not call Stop.
	OnChange func(centre string)
}

// Seen is one centre as this node currently sees it.
type Seen struct {
	Centre string
	// State is StateAlive, StateSuspect, StateDead or StateLeft. Suspect is
	// only reported when this node's own probe failed (see DESIGN.md).
	State string
	// Availability is the newest version received; Version 0 means none yet.
	Availability Availability
	// ReceivedAt is when this node got that version, on the local clock.
	ReceivedAt time.Time
	// Age is time since ReceivedAt. It is measured on the local clock, so
	// clock skew between centres cannot make it wrong.
	Age time.Duration
	// Addr is the centre's gossip address, host:port.
	Addr string
}

// Gossip is one centre's membership in the federation. Its methods are safe
// for concurrent use.
type Gossip struct {
	cfg            GossipConfig
	log            *slog.Logger
	ml             *memberlist.Memberlist
	keys           keyring // see keyring.go
	refused        *refusal.Log
	queue          *memberlist.TransmitLimitedQueue
	broadcastLimit int
	leaveTimeout   time.Duration
	localAddr      string

	// numLive feeds the broadcast queue's retransmit count. It is kept apart
	// from mu because memberlist asks for it while holding its own locks.
	numLive atomic.Int64

	// mu guards the fields below. Lock order: memberlist's internal node lock
	// (held while it calls the event delegate), then mu, then the queue's
	// lock. Nothing here calls into memberlist while holding mu.
	mu            sync.Mutex
	stopped       bool
	version       uint64 // highest version used or seen for this centre
	hasLocal      bool
	states        map[string]*stored
	members       map[string]*member
	pending       map[string]struct{} // centres with an OnChange not yet delivered
	fanout        []byte              // newest local state too big for a broadcast
	fanoutVersion uint64
	leaving       bool              // our own Leave has started
	leaveIntent   map[string]uint64 // centre -> version of its leave announcement

	// lifeMu serialises Leave with Stop: memberlist panics on a Leave after
	// Shutdown.
	lifeMu  sync.Mutex
	stopErr error

	changeKick chan struct{}
	fanoutKick chan struct{}
	// stop owns the notifier, the fan-out and Join's attempts; it is only
	// given work under mu while stopped is false, so nothing starts once
	// Stop waits.
	stop *stopper.Stopper
}

type stored struct {
	a          Availability
	wire       []byte // EncodeAvailability output, kept for relaying and push/pull
	receivedAt time.Time
}

// member is copied out of memberlist inside its event callbacks, the only
// place memberlist's Node fields can be read without racing its own writes
// (hashicorp/memberlist#250, #306); Members() pointers are never dereferenced.
// The state is ours too: memberlist keeps alive/suspect/dead/left in a field
// of its private nodeState and leaves the public Node.State at its zero value
// (StateAlive) in every Node it hands out.
type member struct {
	state string
	addr  net.IP
	port  uint16
}

// StartGossip creates this centre's node and returns once it is listening. It
// does not contact anyone; call Join with the addresses of known centres.
func StartGossip(ctx context.Context, cfg GossipConfig) (*Gossip, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("overflow: start gossip: %w", err)
	}
	mc, leaveTimeout, err := memberlistConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("overflow: start gossip: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("centre", cfg.Centre)

	refused, err := refusal.New(refusal.Config{
		Logger: logger.With("component", "memberlist"),
		What:   "gossip packet",
		Metric: "helpmesh_gossip_refused_total",
		Help: "Gossip packets and streams refused before authentication (no or another label, " +
			"not decryptable with the federation key, plaintext, malformed), by reason.",
		ConstLabels: prometheus.Labels{"centre": cfg.Centre},
		Reasons:     refusedReasons,
		Registerer:  cfg.Registry,
	})
	if err != nil {
		return nil, fmt.Errorf("overflow: start gossip: %w", err)
	}

	g := &Gossip{
		cfg:            cfg,
		refused:        refused,
		log:            logger,
		broadcastLimit: broadcastLimit(mc),
		leaveTimeout:   leaveTimeout,
		states:         make(map[string]*stored),
		members:        make(map[string]*member),
		pending:        make(map[string]struct{}),
		leaveIntent:    make(map[string]uint64),
		stop:           stopper.New(),
		changeKick:     make(chan struct{}, 1),
		fanoutKick:     make(chan struct{}, 1),
	}
	g.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return int(g.numLive.Load()) },
		RetransmitMult: mc.RetransmitMult,
	}
	d := &delegate{g: g}
	mc.Delegate = d
	mc.Events = d
	mc.Ping = d
	mc.Alive = d
	mc.Conflict = d
	mc.Logger = log.New(&logWriter{log: logger.With("component", "memberlist"), onSuspect: g.markSuspect, refused: refused}, "", 0)

	// Create calls back into the delegate (NotifyJoin for ourselves) before it
	// returns, which is why g is complete except for ml at this point.
	ml, err := memberlist.Create(mc)
	if err != nil {
		refused.Close()
		return nil, fmt.Errorf("overflow: start gossip: %w", err)
	}
	g.ml, g.keys.ring = ml, mc.Keyring
	g.mu.Lock()
	if self := g.members[cfg.Centre]; self != nil {
		g.localAddr = hostPort(self.addr, self.port)
	}
	g.mu.Unlock()
	if g.localAddr == "" {
		g.localAddr = net.JoinHostPort(mc.AdvertiseAddr, strconv.Itoa(mc.BindPort))
	}
	if err := ctx.Err(); err != nil {
		_ = ml.Shutdown()
		refused.Close()
		return nil, fmt.Errorf("overflow: start gossip: %w", err)
	}

	g.stop.Go(g.runFanout)
	if cfg.OnChange != nil {
		g.stop.Go(g.runNotifier)
	}
	return g, nil
}

// RefusedCount is how many gossip packets and streams this node refused
// before authentication, for reason (one of the Refused* constants; all
// reasons when empty), since the counter was created.
func (g *Gossip) RefusedCount(reason string) uint64 { return g.refused.Count(reason) }

// View returns every centre this node knows of, itself included, sorted by
// centre id. The result is a copy the caller owns. A centre whose state was
// relayed here before memberlist reported the centre itself is left out until
// it does: it cannot be routed to before then. Dead and left centres stay,
// with their last availability, so callers can tell them from unknown ones.
func (g *Gossip) View() []Seen {
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Seen, 0, len(g.members))
	for name, m := range g.members {
		s := Seen{Centre: name, State: m.state, Addr: hostPort(m.addr, m.port)}
		if st := g.states[name]; st != nil {
			s.Availability = st.a.Clone()
			s.ReceivedAt = st.receivedAt
			s.Age = now.Sub(st.receivedAt)
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Seen) int { return strings.Compare(a.Centre, b.Centre) })
	return out
}

// Members is the number of centres memberlist considers alive or suspect,
// this one included.
func (g *Gossip) Members() int {
	return g.ml.NumMembers()
}

// LocalAddr is the host:port peers should Join, with the port actually bound.
func (g *Gossip) LocalAddr() string {
	return g.localAddr
}
