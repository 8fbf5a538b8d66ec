// Package node is one centre: its identity, its libp2p host with the roster
// allowlist, its member of the roster Raft group and its availability gossip,
// wired together with one lifecycle. Start returns once the centre is ready;
// Stop ends every goroutine it started.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/refusal"
	"github.com/helpmesh/helpmesh/internal/stopper"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/overflow"
	"github.com/helpmesh/helpmesh/switchboard"
)

// Config configures one centre's node.
type Config struct {
	Centre string
	Name   string
	// DataDir holds the identity, the federation secrets and the roster.
	DataDir string
	// P2PAddr is the libp2p listen multiaddr, e.g. /ip4/0.0.0.0/tcp/7001.
	P2PAddr string
	// GossipAddr is the memberlist bind address, host:port.
	GossipAddr string
	// HTTPAddr is published in the roster so coordinators can find the API.
	HTTPAddr string
	// SIPAddr, host:port, is published in the roster (set_centre_sip) as
	// where other centres' PBXs reach this centre's SIP ingress; empty: it
	// takes no such calls, and an address the roster still lists is
	// cleared. It is the centre's PBX, which relays calls for this
	// centre's tokens to the node's SIP ingress (package sip, started by
	// package centre).
	SIPAddr string
	// PublicURL is the origin visitors open this centre's chat at
	// ("https://chat.bergen.example"), published in the roster
	// (set_centre_public_url, roster level 5) so that the other centres'
	// chat pages can start a chat here when their own centre refuses, and
	// let pages from here open their chat sockets. Empty: none, and a URL
	// the roster still lists is cleared.
	PublicURL string
	// CallTokens issues the tokens of phone calls held here (the SIP
	// ingress's store); nil: the centre takes no calls from a PBX.
	CallTokens switchboard.CallTokens
	// PhoneDomain is the centre's PBX host, for volunteers who give an
	// extension as their phone ("" : SIP addresses only).
	PhoneDomain string
	// BrowserPhones: the node is the centre's phone, and volunteers may
	// answer calls in the console (issue 13).
	BrowserPhones bool
	// CallLease bounds how long a held phone volunteer waits for the call
	// (0: switchboard.DefaultCallLease).
	CallLease time.Duration
	// Join is the multiaddr (with /p2p/<peer id>) of a member to join
	// through. Empty on the first centre, which bootstraps.
	Join string
	// MaxVoters caps Raft voters (0: consensus.DefaultMaxVoters).
	MaxVoters int
	// Timing picks the Raft and gossip timeouts for a deployment.
	Timing timing.Profile
	Logger *slog.Logger
	// Registry receives the node's metrics; nil makes a private one.
	Registry *prometheus.Registry
	// RingTimeout bounds how long an offer rings on a console (0: 20 s).
	RingTimeout time.Duration
	// SupportRing is how long a support request rings at one centre (0:
	// switchboard.DefaultSupportRing).
	SupportRing time.Duration
	// MaxQueue bounds the contacts waiting per channel (0:
	// switchboard.DefaultMaxQueue).
	MaxQueue int
	// Pace bounds how fast each end of a conversation may send (zero
	// fields: switchboard.DefaultPace).
	Pace switchboard.Pace
	// SnapshotThreshold and TrailingLogs tune Raft compaction (0: defaults).
	SnapshotThreshold uint64
	TrailingLogs      uint64

	// testNoReleaseProtocol makes the centre not serve releaseProtocol, so
	// that to the others it looks like a centre on the release before it
	// (roster level 1). For tests only: a real older release is the thing
	// it stands in for.
	testNoReleaseProtocol bool
	// testRosterLevel, when set, is the roster level the centre says it
	// speaks instead of consensus.RosterLevel, so that to the others it
	// looks like a centre on that older release. For tests only, as above.
	testRosterLevel int
}

var (
	// ErrBadConfig means the node was given a configuration it cannot run.
	ErrBadConfig = errors.New("bad node configuration")
	// ErrJoinRefused means the member we tried to join through said no.
	ErrJoinRefused = errors.New("join refused")
	// ErrBadRelease means a centre answered the release question (see
	// release.go) with a level no release has.
	ErrBadRelease = errors.New("bad release answer")
)

// Node is one running centre.
type Node struct {
	cfg       Config
	log       *slog.Logger
	registry  *prometheus.Registry
	host      host.Host
	gater     *gater
	refused   *refusal.Log // refused libp2p peers, see gater.go
	consensus *consensus.Consensus
	gossip    *overflow.Gossip
	fed       Federation
	stop      *stopper.Stopper
	sb        *switchboard.Switchboard
	router    *overflow.Router
	publish   chan struct{}
	rotation  gossipRotation // gossip key rotation, see gossipkey.go
	back      backAlive      // centres seen alive again, see redial.go
	releases  releaseLevels  // the others' roster levels, see release.go
	build     string         // this build's name, told to the others

	mu sync.Mutex
	// seeds are peers the join target vouched for, allowed until our own
	// roster knows them.
	seeds    map[peer.ID]struct{}
	stopOnce sync.Once
	stopErr  error
}

// Start brings a centre up and returns once it is ready: listening, in the
// roster group, gossiping, and (on a new federation) admitted to its own
// roster. ctx bounds the start-up.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if cfg.Centre == "" || cfg.DataDir == "" {
		return nil, fmt.Errorf("start node: centre and data dir are required: %w", ErrBadConfig)
	}
	if cfg.SIPAddr != "" {
		if err := consensus.CheckSIPAddr(cfg.SIPAddr); err != nil {
			return nil, fmt.Errorf("start node: sip address: %v: %w", err, ErrBadConfig)
		}
	}
	if cfg.PublicURL != "" {
		if err := consensus.CheckPublicURL(cfg.PublicURL); err != nil {
			return nil, fmt.Errorf("start node: public url: %v: %w", err, ErrBadConfig)
		}
	}
	if cfg.P2PAddr == "" {
		cfg.P2PAddr = "/ip4/127.0.0.1/tcp/0"
	}
	if cfg.GossipAddr == "" {
		cfg.GossipAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Centre
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("centre", cfg.Centre),
		registry: cfg.Registry,
		stop:     stopper.New(),
		seeds:    map[peer.ID]struct{}{},
		publish:  make(chan struct{}, 1),
		releases: releaseLevels{known: map[string]ReleaseInfo{}},
		build:    buildName(),
	}
	if n.registry == nil {
		n.registry = prometheus.NewRegistry()
	}
	refused, err := refusal.New(refusal.Config{
		Logger: n.log.With("component", "p2p"),
		What:   "libp2p peer",
		Metric: "helpmesh_p2p_refused_total",
		Help: "libp2p connections and requests refused because the peer is not admitted: an inbound " +
			"connection from a peer id not in the roster, or a join naming a centre admitted with another peer id.",
		ConstLabels: prometheus.Labels{"centre": cfg.Centre},
		Reasons:     p2pRefusedReasons,
		Registerer:  n.registry,
	})
	if err != nil {
		return nil, fmt.Errorf("start centre %s: %w", cfg.Centre, err)
	}
	n.refused, n.gater = refused, newGater(refused)
	if err := n.start(ctx); err != nil {
		_ = n.Stop()
		return nil, fmt.Errorf("start centre %s: %w", cfg.Centre, err)
	}
	n.log.Info("centre ready", "peer", n.host.ID().String(), "p2p", n.P2PAddrs(), "gossip", n.gossip.LocalAddr())
	return n, nil
}

func (n *Node) start(ctx context.Context) error {
	key, err := LoadOrCreateIdentity(filepath.Join(n.cfg.DataDir, IdentityFile))
	if err != nil {
		return err
	}
	var join *peer.AddrInfo
	if n.cfg.Join != "" {
		if join, err = peer.AddrInfoFromString(n.cfg.Join); err != nil {
			return fmt.Errorf("join address %q needs /p2p/<peer id>: %v: %w", n.cfg.Join, err, ErrBadConfig)
		}
		n.seeds[join.ID] = struct{}{}
		n.refreshAllowlist()
	}
	n.host, err = libp2p.New(
		libp2p.Identity(key),
		libp2p.ListenAddrStrings(n.cfg.P2PAddr),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.ConnectionGater(n.gater),
		libp2p.DisableRelay(),
		// libp2p's own metrics do not pass promtool's lint and say nothing
		// a coordinator acts on; the node exports its KPIs itself.
		libp2p.DisableMetrics(),
	)
	if err != nil {
		return fmt.Errorf("start libp2p host: %w", err)
	}
	if join != nil {
		n.host.Peerstore().AddAddrs(join.ID, join.Addrs, peerstore.PermanentAddrTTL)
	}
	// Before Raft starts: whoever can reach us as a roster member can ask.
	if !n.cfg.testNoReleaseProtocol {
		n.host.SetStreamHandler(releaseProtocol, n.serveRelease)
	}
	known, err := loadAddressBook(n.cfg.DataDir)
	if err != nil {
		n.log.Warn("ignoring the address book", "err", err)
	}
	var gossipSeeds []string
	for _, c := range known {
		n.learnCentre(c)
		if c.ID != n.cfg.Centre {
			gossipSeeds = append(gossipSeeds, c.GossipAddr)
		}
	}
	n.refreshAllowlist()

	n.consensus, err = consensus.Start(ctx, consensus.Config{
		Centre:            n.cfg.Centre,
		Dir:               n.cfg.DataDir,
		Host:              n.host,
		Logger:            n.cfg.Logger,
		Bootstrap:         n.cfg.Join == "",
		MaxVoters:         n.cfg.MaxVoters,
		Timing:            n.cfg.Timing,
		SnapshotThreshold: n.cfg.SnapshotThreshold,
		TrailingLogs:      n.cfg.TrailingLogs,
		ReleaseLevels:     n.confirmLevels,
	})
	if err != nil {
		return err
	}
	n.onRosterChange(n.consensus.Roster())

	if join != nil {
		resp, err := n.joinThrough(ctx, *join)
		if err != nil {
			return err
		}
		n.fed = resp.Federation
		if err := SaveFederation(n.cfg.DataDir, n.fed); err != nil {
			return err
		}
		for _, c := range resp.Centres {
			n.learnCentre(c)
			gossipSeeds = append(gossipSeeds, c.GossipAddr)
		}
		// The leader may be another member: admit every centre the member
		// vouched for before Raft starts sending us the log.
		n.refreshAllowlist()
	} else if n.fed, err = LoadFederation(n.cfg.DataDir); err != nil {
		return err
	}

	// The router first, serving nothing yet; then the switchboard that
	// overflows through it; then gossip, whose changes reach both.
	n.router = overflow.NewRouter(overflow.RouterConfig{
		Centre: n.cfg.Centre, Host: n.host, Directory: directory{n}, Logger: n.cfg.Logger,
		SupportOrder: func() []string { return n.consensus.Roster().Policy.SupervisionOrder },
	})
	n.sb = n.newSwitchboard()
	n.gossip, err = overflow.StartGossip(ctx, overflow.GossipConfig{
		Centre:   n.cfg.Centre,
		BindAddr: n.cfg.GossipAddr,
		Key:      n.fed.GossipKey,
		Label:    n.fed.Label,
		Logger:   n.cfg.Logger,
		Registry: n.registry,
		Timing:   n.cfg.Timing,
		// Another centre's availability or state changed: offers waiting
		// on a centre that is no longer alive are withdrawn, and contacts
		// waiting here may now have somewhere to go.
		OnChange: func(centre string) {
			n.router.CentreChanged(centre)
			n.redialIfBack(centre)
			n.sb.Kick()
		},
	})
	if err != nil {
		return err
	}
	n.router.Serve(desk{n.sb}, n.gossip)
	n.publishAvailability()
	// Only now do we hold the secrets a joining centre needs from us.
	n.host.SetStreamHandler(joinProtocol, n.serveJoin)

	switch {
	case n.consensus.Bootstrapped():
		// A new federation: the centre admits itself before it is ready.
		if _, err := n.consensus.WaitForLeader(ctx); err != nil {
			return err
		}
		self := n.selfEntry()
		if err := n.consensus.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpAdmitCentre, Centre: &self}); err != nil {
			return fmt.Errorf("admit self: %w", err)
		}
	case join != nil:
		if err := n.waitForSelfInRoster(ctx); err != nil {
			return err
		}
	}
	n.joinGossip(ctx, gossipSeeds)
	// The KPIs, on the node's own registry, once every part they read is up.
	if err := n.registerMetrics(); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	n.stop.Go(n.rosterWatch)
	n.stop.Go(n.gossipRejoinLoop)
	n.stop.Go(n.refreshSelfLoop)
	for _, v := range n.ownValues() {
		n.stop.Go(func(ctx context.Context) { n.publishOwnLoop(ctx, v) })
	}
	n.stop.Go(n.publishLoop)
	n.stop.Go(n.gossipKeyLoop)
	n.stop.Go(n.releaseLoop)
	return nil
}

// Stop leaves the gossip, stops Raft and closes the host. Idempotent.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() { n.stopErr = n.teardown(false) })
	return n.stopErr
}

// Crash stops the node the way a power cut would look to the others:
// streams reset, gossip shut without a goodbye. For tests and fault drills
// in other packages (a real crash needs no method).
func (n *Node) Crash() { n.crash() }

// CutLink cuts (cut true) or heals the libp2p link between two running
// centres in one process, both ways: what a network cut looks like to
// offers, relays and Raft. For tests and fault drills in other packages.
func CutLink(a, b *Node, cut bool) {
	a.gater.setCut(b.host.ID(), cut)
	b.gater.setCut(a.host.ID(), cut)
	if cut {
		_ = a.host.Network().ClosePeer(b.host.ID())
		_ = b.host.Network().ClosePeer(a.host.ID())
	}
}

// crash is Crash.
func (n *Node) crash() {
	n.stopOnce.Do(func() { _ = n.teardown(true) })
}

// teardown stops what start made, each part before those it uses: the desk
// first, so no contact is routed through a part already gone; then the
// node's own loops, which read the gossip and the roster; then the gossip,
// Raft and, last, the host they all talk through. A crash differs only in
// what the others see: streams reset rather than closed, gossip gone without
// a goodbye, and no tallies logged.
func (n *Node) teardown(crash bool) error {
	if crash && n.host != nil {
		// A crash drops every stream at once: reset the host's connections
		// before the switchboard or the relays could say goodbye on them.
		for _, c := range n.host.Network().Conns() {
			_ = c.Close()
		}
	}
	// The switchboard first, so conversations end with its own reason and
	// no new offer is taken; then the router, which ends every goroutine of
	// the offers and relays.
	if n.sb != nil {
		n.sb.Close()
	}
	if n.router != nil {
		n.router.Close()
	}
	if !crash {
		n.logFinalTallies()
	}
	n.stop.Stop()
	var errs []error
	if n.gossip != nil {
		leave := n.gossip.Stop
		if crash {
			leave = n.gossip.Crash
		}
		errs = append(errs, leave())
	}
	if n.consensus != nil {
		errs = append(errs, n.consensus.Stop())
	}
	if n.host != nil {
		errs = append(errs, n.host.Close())
	}
	n.refused.Close()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop centre %s: %w", n.cfg.Centre, err)
	}
	return nil
}

// Centre returns this centre's id.
func (n *Node) Centre() string { return n.cfg.Centre }

// PeerID returns the centre's libp2p peer id.
func (n *Node) PeerID() string { return n.host.ID().String() }

// Sign signs b with the centre's libp2p identity key: anyone holding the
// roster can check it against the centre's peer id (api's tickets).
func (n *Node) Sign(b []byte) ([]byte, error) {
	k := n.host.Peerstore().PrivKey(n.host.ID())
	if k == nil {
		return nil, fmt.Errorf("sign: no identity key")
	}
	sig, err := k.Sign(b)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return sig, nil
}

// P2PAddrs returns the full multiaddrs (with /p2p/) others reach us on.
func (n *Node) P2PAddrs() []string {
	var out []string
	for _, a := range n.host.Addrs() {
		out = append(out, a.String()+"/p2p/"+n.host.ID().String())
	}
	return out
}

// GossipAddr returns the bound gossip address.
func (n *Node) GossipAddr() string { return n.gossip.LocalAddr() }

// Registry returns the node's metrics registry.
func (n *Node) Registry() *prometheus.Registry { return n.registry }

// Consensus returns the centre's roster member.
func (n *Node) Consensus() *consensus.Consensus { return n.consensus }

// Gossip returns the centre's availability gossip.
func (n *Node) Gossip() *overflow.Gossip { return n.gossip }

// SetAvailability publishes an availability state for this centre. The
// switchboard's own state replaces it at the next change: the node calls
// this itself; it is exported for tools that run a node without volunteers.
func (n *Node) SetAvailability(a overflow.Availability) error {
	a.Centre = n.cfg.Centre
	if _, err := n.gossip.SetLocal(a); err != nil {
		return fmt.Errorf("publish availability: %w", err)
	}
	return nil
}
