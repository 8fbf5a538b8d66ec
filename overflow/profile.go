package overflow

// The memberlist configuration each timing profile gets, and the sizes
// that follow from it.

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/helpmesh/helpmesh/internal/timing"
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
