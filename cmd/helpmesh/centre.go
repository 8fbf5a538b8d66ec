package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// defaultDrainTimeout bounds a graceful stop: long enough for most chats
// to reach a natural end, short enough for an upgrade window. The service
// manager's stop timeout must be longer (systemd TimeoutStopSec, compose
// stop_grace_period).
const defaultDrainTimeout = 10 * time.Minute

// startWithin bounds a centre's start-up: long enough to join a federation
// across a country, short enough that a service manager sees a failure.
const startWithin = 2 * time.Minute

// serve runs the centre cfg describes until ctx ends (the first SIGINT or
// SIGTERM), then shuts it down gracefully: it drains, so that no
// conversation is cut short by a restart, for at most drain (a second
// signal cuts the drain short), then stops. started, if not nil, runs once
// the centre is ready.
func serve(ctx context.Context, cfg centre.Config, drain time.Duration, log *slog.Logger, started func()) error {
	sctx, cancel := context.WithTimeout(ctx, startWithin)
	c, err := centre.Start(sctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	if started != nil {
		started()
	}
	addrs := []any{"http", c.Addr()}
	if a := c.StaffAddr(); a != "" {
		addrs = append(addrs, "staff", a)
	}
	if a := c.MetricsAddr(); a != "" {
		addrs = append(addrs, "metrics", a)
	}
	log.Info("serving", append(addrs, "tls", cfg.API.TLSCert != "", "p2p", c.Node().P2PAddrs(), "gossip", c.Node().GossipAddr())...)
	<-ctx.Done()
	dctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dctx, cancel = context.WithTimeout(dctx, drain)
	defer cancel()
	return c.Shutdown(dctx)
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	dir := fs.String("dir", "", "the centre's data directory (from helpmesh init)")
	join := fs.String("join", "", "multiaddr of a member to join through, with /p2p/<peer id> (only the first start of an admitted centre)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	fast := fs.Bool("fast-timing", false, "loopback timings (tests only)")
	drain := fs.Duration("drain-timeout", defaultDrainTimeout, "on SIGTERM, how long to let conversations end before stopping (a second signal stops at once)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("run: --dir is required")
	}
	log := newLogger(stderr, *logLevel)
	cfg, err := centre.ConfigFromDir(*dir, *join, log)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	if *fast {
		cfg.Node.Timing = timing.Test
	}
	if err := serve(ctx, cfg, *drain, log, nil); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

func cmdInit(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	dir := fs.String("dir", "", "data directory to create")
	nf := addNewCentreFlags(fs, "127.0.0.1:8080")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fc := nf.fileConfig()
	if *dir == "" || fc.Centre == "" {
		return fmt.Errorf("init: --dir and --centre are required")
	}
	res, err := node.Init(*dir, fc)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "centre %s initialised in %s\n", fc.Centre, *dir)
	fmt.Fprintf(stdout, "peer id:     %s\n", res.PeerID)
	fmt.Fprintf(stdout, "admin token: %s/%s (keep it secret)\n\n", *dir, node.AdminTokenFile)
	fmt.Fprintf(stdout, "First centre of a new federation:  helpmesh run --dir %s\n", *dir)
	fmt.Fprintf(stdout, "Joining a federation: a coordinator admits this centre at any member with\n")
	fmt.Fprintf(stdout, "  helpmesh centre admit --server http://MEMBER:PORT --token-file TOKEN \\\n")
	fmt.Fprintf(stdout, "    --id %s --name %q --peer-id %s \\\n", fc.Centre, fc.Name, res.PeerID)
	fmt.Fprintf(stdout, "    --addr %s --gossip %s --http %s\n", fc.P2PAddr, fc.GossipAddr, fc.HTTPAddr)
	fmt.Fprintf(stdout, "(replace 0.0.0.0 with this server's address), then here:\n")
	fmt.Fprintf(stdout, "  helpmesh run --dir %s --join MEMBER_P2P_MULTIADDR\n", *dir)
	return nil
}

// newCentreFlags are the flags that describe a new centre (helpmesh init
// and up).
type newCentreFlags struct {
	id, name, http, p2p, gossip, sip *string
	sipListen, pbx, phoneDomain      *string
	// The browser phone (docs/phone.md): --media-host makes the node the
	// centre's phone.
	mediaHost, rtpPorts, icePorts, iceServers *string
	// Going live (docs/operations.md, "Going live over HTTPS"): staff and
	// metrics apart from the public listener, and TLS files.
	staff, metrics, tlsCert, tlsKey, publicURL *string
}

// addNewCentreFlags adds them to fs; httpAddr is the HTTP listen address's
// default.
func addNewCentreFlags(fs *flag.FlagSet, httpAddr string) newCentreFlags {
	return newCentreFlags{
		id:     fs.String("centre", "", "the centre's id: 1-32 of a-z, 0-9 and -"),
		name:   fs.String("name", "", "the centre's name as people say it (default: its id)"),
		http:   fs.String("http", httpAddr, "HTTP listen address"),
		p2p:    fs.String("p2p", "/ip4/0.0.0.0/tcp/4001", "libp2p listen multiaddr"),
		gossip: fs.String("gossip", "0.0.0.0:7946", "gossip listen address (TCP and UDP)"),
		sip: fs.String("sip", "", "the SIP ingress address host:port other centres' PBXs call, published in the roster (optional; "+
			"empty: the centre takes no calls from other centres' PBXs)"),
		sipListen:   fs.String("sip-listen", "", "UDP address of the node's SIP ingress for the centre's own PBX (optional; docs/pbx.md)"),
		pbx:         fs.String("pbx", "", "comma-separated IPs or CIDR ranges of the centre's PBX, the only senders the SIP ingress accepts"),
		phoneDomain: fs.String("phone-domain", "", "the PBX host volunteers' extensions live on (sip:EXT@host); empty: volunteers give SIP addresses"),
		mediaHost: fs.String("media-host", "", "for a centre without a PBX: the node's IP its SIP trunk's callers send voice to; "+
			"volunteers then answer in the browser and --pbx lists the trunk (docs/phone.md)"),
		rtpPorts:   fs.String("rtp-ports", "", "with --media-host: the callers' RTP port range, e.g. 10000-10999 (default: any port)"),
		icePorts:   fs.String("ice-ports", "", "with --media-host: the UDP port range of the browsers' voice at the node, e.g. 20000-20999 (default: any port)"),
		iceServers: fs.String("ice-servers", "", "with --media-host: comma-separated STUN/TURN URLs for the browsers (TURN credentials go in the config file)"),
		staff: fs.String("staff", "", "listen address of the staff side (console, enrolment, overview, admin API, and /metrics without --metrics); "+
			"the --http address then serves visitors only (optional)"),
		metrics: fs.String("metrics", "", "listen address for /metrics alone, plain HTTP (optional)"),
		publicURL: fs.String("public-url", "", "the origin visitors open this centre's chat at, e.g. https://chat.bergen.example; "+
			"published in the roster so that other centres' chat pages can start a chat here when theirs cannot (optional)"),
		tlsCert: fs.String("tls-cert", "", "PEM certificate (with its chain) for HTTPS on --http and --staff, read again when it changes; "+
			"relative to the data directory (optional, with --tls-key)"),
		tlsKey: fs.String("tls-key", "", "PEM key of --tls-cert"),
	}
}

// fileConfig is the centre the flags describe.
func (f newCentreFlags) fileConfig() node.FileConfig {
	name := *f.name
	if name == "" {
		name = *f.id
	}
	var pbx []string
	for _, p := range strings.Split(*f.pbx, ",") {
		if p = strings.TrimSpace(p); p != "" {
			pbx = append(pbx, p)
		}
	}
	fc := node.FileConfig{Centre: *f.id, Name: name, HTTPAddr: *f.http, P2PAddr: *f.p2p, GossipAddr: *f.gossip, SIPAddr: *f.sip,
		Phone: node.PhoneConfig{Listen: *f.sipListen, PBX: pbx, Domain: *f.phoneDomain},
		Web:   node.WebConfig{StaffAddr: *f.staff, MetricsAddr: *f.metrics, TLSCert: *f.tlsCert, TLSKey: *f.tlsKey, PublicURL: *f.publicURL}}
	if *f.mediaHost != "" {
		b := &node.BrowserPhone{MediaHost: *f.mediaHost, RTPPorts: *f.rtpPorts, ICEPorts: *f.icePorts}
		for _, u := range strings.Split(*f.iceServers, ",") {
			if u = strings.TrimSpace(u); u != "" {
				b.ICEServers = append(b.ICEServers, node.ICEServer{URLs: []string{u}})
			}
		}
		fc.Phone.Browser = b
	}
	return fc
}
