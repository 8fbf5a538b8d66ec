package overflow

import (
	"bytes"
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
	"github.com/helpmesh/helpmesh/internal/timing"
)

// Membership states reported in Seen.State.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// Overheads memberlist subtracts from UDPBufferSize before it asks the
// delegate for broadcasts (net.go and security.go in memberlist v0.7.0). They
// are unexported there, so they are repeated here to know in advance whether a
// state can travel by broadcast at all; memberlist would otherwise keep an
// over-sized broadcast queued forever without ever sending it.
const (
	mlCompoundHeaderOverhead = 2
	mlCompoundOverhead       = 2
	mlUserMsgOverhead        = 1
	mlMaxEncryptOverhead     = 45 // encryption version 0, the larger of the two
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

	done       chan struct{}
	changeKick chan struct{}
	fanoutKick chan struct{}
	wg         sync.WaitGroup
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
		done:           make(chan struct{}),
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

	g.wg.Add(1)
	go g.runFanout()
	if cfg.OnChange != nil {
		g.wg.Add(1)
		go g.runNotifier()
	}
	return g, nil
}

func memberlistConfig(cfg GossipConfig) (*memberlist.Config, time.Duration, error) {
	if err := validateCentre(cfg.Centre); err != nil {
		return nil, 0, err
	}
	if len(cfg.Key) != 32 {
		return nil, 0, fmt.Errorf("%w: got %d bytes", ErrInvalidKey, len(cfg.Key))
	}
	if len(cfg.Label) > memberlist.LabelMaxSize {
		return nil, 0, fmt.Errorf("%w: label longer than %d bytes", ErrInvalidConfig, memberlist.LabelMaxSize)
	}

	var mc *memberlist.Config
	var leaveTimeout time.Duration
	switch cfg.Timing {
	case timing.National:
		mc, leaveTimeout = lanConfig()
	case timing.Test:
		mc, leaveTimeout = testConfig()
	default:
		return nil, 0, fmt.Errorf("%w: %d", ErrUnknownTiming, int(cfg.Timing))
	}

	host, port, err := splitAddr(cfg.BindAddr)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: bind address: %w", ErrInvalidConfig, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = "", port
	if cfg.AdvertiseAddr != "" {
		host, port, err := splitAddr(cfg.AdvertiseAddr)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: advertise address: %w", ErrInvalidConfig, err)
		}
		mc.AdvertiseAddr, mc.AdvertisePort = host, port
	}

	mc.Name = cfg.Centre
	mc.Label = cfg.Label
	// Keyring is built by memberlist from SecretKey; both verify flags stay on
	// so that plaintext from a misconfigured node is dropped, never merged.
	mc.SecretKey = slices.Clone(cfg.Key)
	mc.GossipVerifyIncoming = true
	mc.GossipVerifyOutgoing = true
	return mc, leaveTimeout, nil
}

// lanConfig is memberlist.DefaultLANConfig with two changes, and returns the
// timeout Stop gives its leave broadcast.
//
// DefaultWANConfig was rejected: its 5 s probe interval, 3 s probe timeout and
// suspicion multiplier of 6 take 30-60 s to declare a centre dead, and for that
// long callers would be routed to a centre that cannot answer. A national
// network has tens of milliseconds of RTT, so the LAN 500 ms probe timeout
// still leaves a 5-10x margin, and memberlist's Lifeguard extensions (awareness
// backs probes off under local load; suspicion needs confirmations to shorten)
// absorb the extra jitter and loss of the public internet.
//
// Expected dead detection with these values, from memberlist's formulas:
// someone probes the dead centre within about one ProbeInterval (1 s), the
// probe and its indirect probes fail within the same interval (1 s), then the
// suspicion timeout runs: min = SuspicionMult(4) * max(1, log10(N)) *
// ProbeInterval = 4 s for N <= 10 (5.2 s for N = 20), and max = 6 * min = 24 s,
// shortened towards min as SuspicionMult-2 = 2 peers confirm. With 3 centres
// no confirmations are expected so the timeout is min: about 6 s in total.
// With 10 centres it is typically 6-12 s and at worst about 26 s.
func lanConfig() (*memberlist.Config, time.Duration) {
	mc := memberlist.DefaultLANConfig()
	// Push/pull is the repair path for a lost broadcast and the only path
	// for states too large to broadcast; 15 s instead of 30 s bounds how
	// long a lost update can hide, at a cost of a few KB per exchange.
	mc.PushPullInterval = 15 * time.Second
	// Lets a centre that restarted on a new address reclaim its id once its
	// old incarnation has been dead this long, instead of being refused.
	mc.DeadNodeReclaimTime = 30 * time.Second
	return mc, 2 * time.Second
}

// testConfig detects a dead node in about a second on loopback: the
// suspicion timeout is SuspicionMult(2) * ProbeInterval = 400 ms for up to 10
// nodes, and SuspicionMult-2 = 0 confirmations are required, so it starts at
// that minimum.
func testConfig() (*memberlist.Config, time.Duration) {
	mc := memberlist.DefaultLANConfig()
	mc.ProbeInterval = 200 * time.Millisecond
	mc.ProbeTimeout = 100 * time.Millisecond
	mc.GossipInterval = 50 * time.Millisecond
	mc.SuspicionMult = 2
	// Long enough that tests see broadcasts, not push/pull, deliver updates.
	mc.PushPullInterval = 3 * time.Second
	mc.TCPTimeout = time.Second
	mc.GossipToTheDeadTime = 2 * time.Second
	mc.DeadNodeReclaimTime = time.Second
	return mc, 500 * time.Millisecond
}

// broadcastLimit is the largest state that fits one gossip packet after
// memberlist's framing, label and encryption overheads.
func broadcastLimit(mc *memberlist.Config) int {
	labelOverhead := 0
	if mc.Label != "" {
		labelOverhead = 2 + len(mc.Label)
	}
	return mc.UDPBufferSize - mlCompoundHeaderOverhead - labelOverhead - mlMaxEncryptOverhead -
		mlCompoundOverhead - mlUserMsgOverhead
}

func splitAddr(hostport string) (string, int, error) {
	host, portText, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", portText, err)
	}
	return host, int(port), nil
}

func hostPort(ip net.IP, port uint16) string {
	if ip == nil {
		return ""
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port)))
}

// RefusedCount is how many gossip packets and streams this node refused
// before authentication, for reason (one of the Refused* constants; all
// reasons when empty), since the counter was created.
func (g *Gossip) RefusedCount(reason string) uint64 { return g.refused.Count(reason) }

// Join contacts the given centres (host:port) and exchanges full state with
// each one that answers. It returns how many answered, and an error wrapping
// ErrJoinFailed if none did. ctx cancellation returns at once; the attempt
// itself, bounded by the profile's TCP timeout per address, finishes in the
// background and Stop waits for it.
func (g *Gossip) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("overflow: join: %w", err)
	}
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return 0, fmt.Errorf("overflow: join: %w", ErrStopped)
	}
	g.wg.Add(1)
	g.mu.Unlock()

	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	addrs = slices.Clone(addrs)
	go func() {
		defer g.wg.Done()
		n, err := g.ml.Join(addrs)
		res <- result{n, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return r.n, fmt.Errorf("overflow: join %v: %w: %w", addrs, ErrJoinFailed, r.err)
		}
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("overflow: join %v: %w", addrs, ctx.Err())
	}
}

// SetLocal publishes this centre's availability. It fills in Centre when
// empty, assigns the next Version and stamps UpdatedUnixMilli, and returns
// what was published. Version is at least the wall clock in microseconds so
// that it keeps increasing across a restart, when the counter starts afresh.
func (g *Gossip) SetLocal(a Availability) (Availability, error) {
	published, err := g.publish(a)
	if err != nil {
		return Availability{}, fmt.Errorf("overflow: set local: %w", err)
	}
	return published, nil
}

func (g *Gossip) publish(a Availability) (Availability, error) {
	a = a.Clone()
	if a.Centre == "" {
		a.Centre = g.cfg.Centre
	}
	if a.Centre != g.cfg.Centre {
		return Availability{}, fmt.Errorf("%w: %q is not this node's centre %q", ErrCentreMismatch, a.Centre, g.cfg.Centre)
	}
	now := time.Now()

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return Availability{}, ErrStopped
	}
	a.Version = max(g.version+1, uint64(now.UnixMicro()))
	a.UpdatedUnixMilli = now.UnixMilli()
	wire, err := EncodeAvailability(a)
	if err != nil {
		return Availability{}, err
	}
	g.version = a.Version
	g.hasLocal = true
	g.states[a.Centre] = &stored{a: a, wire: wire, receivedAt: now}
	g.markChangedLocked(a.Centre)
	if len(wire) <= g.broadcastLimit {
		g.fanout, g.fanoutVersion = nil, 0
		g.queue.QueueBroadcast(&stateBroadcast{name: a.Centre, msg: wire})
	} else {
		g.fanout, g.fanoutVersion = wire, a.Version
		kick(g.fanoutKick)
	}
	return a.Clone(), nil
}

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

// Leave tells the federation this centre is going away on purpose, so peers
// mark it "left" at once instead of "dead" after a suspicion timeout. The node
// keeps running until Stop. It waits up to timeout in total for the leave
// announcement and memberlist's own leave message to go out.
func (g *Gossip) Leave(timeout time.Duration) error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	g.mu.Lock()
	stopped := g.stopped
	g.mu.Unlock()
	if stopped {
		return fmt.Errorf("overflow: leave: %w", ErrStopped)
	}
	if err := g.leaveLocked(timeout); err != nil {
		return fmt.Errorf("overflow: leave: %w", err)
	}
	return nil
}

// leaveLocked runs with lifeMu held and memberlist not shut down. The leave
// announcement goes first and gets up to half the budget: memberlist's dead
// message overtaking it is harmless (receivers turn "dead" into "left" when
// the announcement arrives), but a peer that never hears it reports "dead".
func (g *Gossip) leaveLocked(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	g.mu.Lock()
	g.leaving = true
	version := max(g.version+1, uint64(time.Now().UnixMicro()))
	g.version = version
	g.mu.Unlock()

	sent := make(chan struct{}, 1)
	g.queue.QueueBroadcast(&stateBroadcast{
		name:     leaveBroadcastName(g.cfg.Centre),
		msg:      encodeLeave(g.cfg.Centre, version),
		finished: sent,
	})
	if g.numLive.Load() > 1 {
		wait := time.NewTimer(timeout / 2)
		select {
		case <-sent:
		case <-wait.C:
		}
		wait.Stop()
	}
	// memberlist treats a zero timeout as "wait forever".
	return g.ml.Leave(max(time.Until(deadline), time.Millisecond))
}

// leaveBroadcastName keeps leave announcements from displacing the same
// centre's last state in the queue; ':' cannot occur in a centre id.
func leaveBroadcastName(centre string) string { return "leave:" + centre }

// Stop leaves the federation (waiting briefly for the leave message), shuts
// memberlist down and waits for every goroutine this Gossip started. It is
// idempotent; later calls return the first call's result.
func (g *Gossip) Stop() error {
	return g.shutdown(true)
}

// crash stops without leaving, as a killed process would; tests use it to
// check that peers detect the failure.
func (g *Gossip) crash() error {
	return g.shutdown(false)
}

func (g *Gossip) shutdown(leave bool) error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	g.mu.Lock()
	if g.stopped {
		g.mu.Unlock()
		return g.stopErr
	}
	g.stopped = true
	g.mu.Unlock()

	if leave {
		// A leave that times out only means peers will see "dead" instead
		// of "left"; that is not a reason to fail Stop.
		if err := g.leaveLocked(g.leaveTimeout); err != nil {
			g.log.Warn("overflow: leave before stop did not complete", "err", err)
		}
	}
	close(g.done)
	err := g.ml.Shutdown()
	g.wg.Wait()
	// Reports the refusals since the last line now: nothing would later.
	g.refused.Close()
	if err != nil {
		g.stopErr = fmt.Errorf("overflow: stop: %w", err)
	}
	return g.stopErr
}

// receive handles one message from a broadcast or a direct send. memberlist
// may reuse b after return, hence the copies kept for relaying.
func (g *Gossip) receive(b []byte) {
	if len(b) >= headerLen && b[0] == WireVersion && b[1] == kindLeave {
		g.receiveLeave(b)
		return
	}
	a, err := DecodeAvailability(b)
	if err != nil {
		g.log.Warn("overflow: dropped gossip message", "err", err)
		return
	}
	g.apply(a, bytes.Clone(b))
}

// receiveLeave records a centre's leave announcement and relays it, so that
// NotifyLeave for that centre (before or after this) reports "left".
func (g *Gossip) receiveLeave(b []byte) {
	centre, version, err := decodeLeave(b)
	if err != nil {
		g.log.Warn("overflow: dropped leave message", "err", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if centre == g.cfg.Centre {
		return
	}
	prev, known := g.leaveIntent[centre]
	if known && prev >= version {
		return
	}
	if st := g.states[centre]; st != nil && st.a.Version > version {
		return // from an earlier run of a centre that has since restarted
	}
	if !known && len(g.leaveIntent) >= MaxCentres {
		return
	}
	g.leaveIntent[centre] = version
	if m := g.members[centre]; m != nil && m.state == StateDead {
		m.state = StateLeft
		g.markChangedLocked(centre)
	}
	g.queue.QueueBroadcast(&stateBroadcast{name: leaveBroadcastName(centre), msg: bytes.Clone(b)})
}

// merge handles a peer's full view from push/pull.
func (g *Gossip) merge(b []byte) {
	states, err := decodeSnapshot(b)
	if err != nil {
		g.log.Warn("overflow: dropped push/pull state", "err", err)
		return
	}
	for _, a := range states {
		g.apply(a, nil)
	}
}

// apply keeps a if it is newer than what is known for its centre, and then
// relays it, because memberlist only retransmits what each node itself
// queues: without the relay an update would reach only the publisher's
// direct gossip targets.
func (g *Gossip) apply(a Availability, wire []byte) {
	now := time.Now()
	g.mu.Lock()
	if a.Centre == g.cfg.Centre {
		// A newer version of ourselves can only come from before a restart
		// with a clock that stepped back. Move past it, or peers would
		// ignore everything we publish until the clock caught up.
		if a.Version <= g.version || g.stopped {
			g.mu.Unlock()
			return
		}
		g.version = a.Version
		var local Availability
		if st := g.states[g.cfg.Centre]; g.hasLocal && st != nil {
			local = st.a
		}
		g.mu.Unlock()
		if local.Centre != "" {
			if _, err := g.publish(local); err != nil {
				g.log.Warn("overflow: republish after stale echo failed", "err", err)
			}
		}
		return
	}
	defer g.mu.Unlock()
	cur := g.states[a.Centre]
	if cur != nil && cur.a.Version >= a.Version {
		return
	}
	if cur == nil && len(g.states) >= MaxCentres {
		g.log.Warn("overflow: ignoring centre beyond limit", "centre", a.Centre, "limit", MaxCentres)
		return
	}
	if wire == nil {
		var err error
		if wire, err = EncodeAvailability(a); err != nil {
			// Unreachable for decoded input, which was validated; kept so a
			// future change cannot store an unrelayable state silently.
			g.log.Error("overflow: re-encode failed", "centre", a.Centre, "err", err)
			return
		}
	}
	g.states[a.Centre] = &stored{a: a, wire: wire, receivedAt: now}
	g.markChangedLocked(a.Centre)
	// Large states reach everyone by the publisher's direct sends and by
	// push/pull; a relay could never fit in a packet.
	if len(wire) <= g.broadcastLimit {
		g.queue.QueueBroadcast(&stateBroadcast{name: a.Centre, msg: wire})
	}
}

// snapshot is the push/pull payload: this centre first, so truncation at
// MaxSnapshotBytes never drops our own state, then the others by id.
func (g *Gossip) snapshot() []byte {
	g.mu.Lock()
	bodies := make([][]byte, 0, len(g.states))
	if st := g.states[g.cfg.Centre]; st != nil {
		bodies = append(bodies, st.wire[headerLen:])
	}
	names := make([]string, 0, len(g.states))
	for name := range g.states {
		if name != g.cfg.Centre {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		bodies = append(bodies, g.states[name].wire[headerLen:])
	}
	out, omitted := encodeSnapshot(bodies)
	g.mu.Unlock()
	if omitted > 0 {
		g.log.Warn("overflow: push/pull state truncated", "omitted", omitted, "limit", MaxSnapshotBytes)
	}
	return out
}

// setMember records a membership event; alive is false for NotifyLeave.
func (g *Gossip) setMember(n *memberlist.Node, alive bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	state := StateAlive
	if alive {
		delete(g.leaveIntent, n.Name) // a rejoin makes an old announcement void
	} else {
		state = StateDead
		_, announced := g.leaveIntent[n.Name]
		if announced || (n.Name == g.cfg.Centre && g.leaving) {
			state = StateLeft
		}
	}
	m := g.members[n.Name]
	if m == nil {
		if len(g.members) >= MaxCentres {
			g.log.Warn("overflow: ignoring member beyond limit", "centre", n.Name, "limit", MaxCentres)
			return
		}
		m = &member{}
		g.members[n.Name] = m
	}
	changed := m.state != state || m.port != n.Port || !m.addr.Equal(n.Addr)
	m.state, m.addr, m.port = state, slices.Clone(n.Addr), n.Port
	if changed {
		g.recountLocked()
		g.markChangedLocked(n.Name)
	}
}

// markSuspect is fed by the memberlist log line for a failed probe of ours.
// memberlist raises no event for suspicion, and reading Node.State through
// Members() races with memberlist's writes, so this is the one race-free
// signal; suspicion raised by other nodes is not seen here.
func (g *Gossip) markSuspect(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m := g.members[name]; m != nil && m.state == StateAlive {
		m.state = StateSuspect
		g.markChangedLocked(name)
	}
}

// clearSuspect is called when one of our probes of name is acknowledged.
func (g *Gossip) clearSuspect(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if m := g.members[name]; m != nil && m.state == StateSuspect {
		m.state = StateAlive
		g.markChangedLocked(name)
	}
}

func (g *Gossip) recountLocked() {
	var n int64
	for _, m := range g.members {
		if m.state == StateAlive || m.state == StateSuspect {
			n++
		}
	}
	g.numLive.Store(n)
}

func (g *Gossip) markChangedLocked(centre string) {
	if g.cfg.OnChange == nil {
		return
	}
	g.pending[centre] = struct{}{}
	kick(g.changeKick)
}

// kick wakes a worker without blocking: the channel has room for one wake-up
// and the worker reads shared state when it runs, so extra kicks coalesce.
func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// runNotifier delivers OnChange outside every lock, so the callback may call
// View without deadlocking memberlist, which invokes our event delegate while
// holding its node lock.
func (g *Gossip) runNotifier() {
	defer g.wg.Done()
	for {
		select {
		case <-g.done:
			return
		case <-g.changeKick:
		}
		g.mu.Lock()
		names := make([]string, 0, len(g.pending))
		for name := range g.pending {
			names = append(names, name)
		}
		clear(g.pending)
		g.mu.Unlock()
		slices.Sort(names)
		for _, name := range names {
			select {
			case <-g.done:
				return
			default:
			}
			g.cfg.OnChange(name)
		}
	}
}

// runFanout sends a local state too large for one packet straight to every
// live peer over TCP, one at a time, giving up early when a newer state
// supersedes it. Each send is bounded by the profile's TCP timeout.
func (g *Gossip) runFanout() {
	defer g.wg.Done()
	for {
		select {
		case <-g.done:
			return
		case <-g.fanoutKick:
		}
		g.mu.Lock()
		msg, version := g.fanout, g.fanoutVersion
		var peers []*memberlist.Node
		for name, m := range g.members {
			if name != g.cfg.Centre && (m.state == StateAlive || m.state == StateSuspect) {
				peers = append(peers, &memberlist.Node{Name: name, Addr: m.addr, Port: m.port})
			}
		}
		g.mu.Unlock()
		if msg == nil {
			continue
		}
		for _, peer := range peers {
			select {
			case <-g.done:
				return
			default:
			}
			if err := g.ml.SendReliable(peer, msg); err != nil {
				g.log.Warn("overflow: direct send of large state failed; push/pull will repair",
					"peer", peer.Name, "err", err)
			}
			g.mu.Lock()
			superseded := g.fanoutVersion != version
			g.mu.Unlock()
			if superseded {
				break
			}
		}
	}
}

// stateBroadcast is one message in the broadcast queue. States are named by
// centre, so queueing a newer state drops the older one still waiting:
// bursts of changes coalesce into the newest.
type stateBroadcast struct {
	name     string
	msg      []byte
	finished chan struct{} // optional; signalled once the queue is done with msg
}

func (b *stateBroadcast) Invalidates(other memberlist.Broadcast) bool {
	o, ok := other.(*stateBroadcast)
	return ok && o.name == b.name
}

func (b *stateBroadcast) Name() string    { return b.name }
func (b *stateBroadcast) Message() []byte { return b.msg }
func (b *stateBroadcast) Finished() {
	if b.finished != nil {
		kick(b.finished)
	}
}

// delegate adapts memberlist's callback interfaces; it is separate from
// Gossip so those methods do not become part of the public API.
type delegate struct{ g *Gossip }

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.PingDelegate     = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.NamedBroadcast   = (*stateBroadcast)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	meta := encodeMeta(d.g.cfg.Centre)
	if len(meta) > limit {
		// Unreachable with MaxCentreIDLen far below memberlist's 512 bytes;
		// returning more than limit would make memberlist panic.
		return nil
	}
	return meta
}

func (d *delegate) NotifyMsg(b []byte) { d.g.receive(b) }
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.queue.GetBroadcasts(overhead, limit)
}
func (d *delegate) LocalState(bool) []byte            { return d.g.snapshot() }
func (d *delegate) MergeRemoteState(b []byte, _ bool) { d.g.merge(b) }

func (d *delegate) NotifyJoin(n *memberlist.Node)   { d.g.setMember(n, true) }
func (d *delegate) NotifyUpdate(n *memberlist.Node) { d.g.setMember(n, true) }
func (d *delegate) NotifyLeave(n *memberlist.Node)  { d.g.setMember(n, false) }

func (d *delegate) AckPayload() []byte { return nil }
func (d *delegate) NotifyPingComplete(n *memberlist.Node, _ time.Duration, _ []byte) {
	d.g.clearSuspect(n.Name)
}

// NotifyAlive admits only nodes speaking our protocol version under their own
// centre id, so an incompatible release is kept out of the membership instead
// of joining and then failing to decode every message.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	centre, err := decodeMeta(n.Meta)
	if err != nil {
		return fmt.Errorf("overflow: admit %q: %w", n.Name, err)
	}
	if centre != n.Name {
		return fmt.Errorf("overflow: admit %q: %w: meta names %q", n.Name, ErrCentreMismatch, centre)
	}
	return nil
}

func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.g.log.Error("overflow: two nodes claim one centre id; the second is refused",
		"centre", existing.Name, "existing", hostPort(existing.Addr, existing.Port),
		"other", hostPort(other.Addr, other.Port))
}

// logWriter turns memberlist's log.Logger lines ("[WARN] memberlist: ...")
// into slog records at the matching level, so operators filter them with the
// rest of the node's logs. Lines about input refused before authentication
// go to the refusal log instead, which counts each and logs a sample: anyone
// who can reach the port causes them, one per packet.
type logWriter struct {
	log       *slog.Logger
	onSuspect func(node string)
	refused   *refusal.Log // nil: refusals are logged like any line
}

func (w *logWriter) Write(p []byte) (int, error) {
	level, msg := splitLevel(strings.TrimSpace(string(p)))
	if w.refused != nil {
		if r, ok := classifyRefused(msg); ok {
			w.refused.Refuse(r.reason, r.attrs(refusal.Value)...)
			return len(p), nil
		}
		if followsRefusal(msg) {
			level = slog.LevelDebug
		}
	}
	w.log.Log(context.Background(), level, msg)
	if node, ok := suspectedNode(msg); ok && w.onSuspect != nil {
		w.onSuspect(node)
	}
	return len(p), nil
}

func splitLevel(line string) (slog.Level, string) {
	for _, p := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[DEBUG]", slog.LevelDebug},
		{"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn},
		{"[ERR]", slog.LevelError},
		{"[ERROR]", slog.LevelError},
	} {
		if rest, ok := strings.CutPrefix(line, p.prefix); ok {
			return p.level, strings.TrimSpace(rest)
		}
	}
	return slog.LevelInfo, line
}

// suspectedNode recognises memberlist v0.7.0's message for a failed probe
// (state.go, probeNode). TestKilledCentreMarkedDead fails if the text changes.
func suspectedNode(msg string) (string, bool) {
	rest, ok := strings.CutPrefix(msg, "memberlist: Suspect ")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, " has failed, no acks received")
}
