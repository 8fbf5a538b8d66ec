package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/helpmesh/helpmesh/api"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// defaultDrainTimeout bounds a graceful stop: long enough for most chats
// to reach a natural end, short enough for an upgrade window. The service
// manager's stop timeout must be longer (systemd TimeoutStopSec, compose
// stop_grace_period).
const defaultDrainTimeout = 10 * time.Minute

// startCentre runs a node and its HTTP API from a data directory.
func startCentre(ctx context.Context, dir, join string, profile timing.Profile, log *slog.Logger) (*node.Node, *api.Server, error) {
	fc, err := node.LoadFileConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	token, err := node.LoadAdminToken(dir)
	if err != nil {
		return nil, nil, err
	}
	proxies, err := node.ParseTrustedProxies(fc.Web.TrustedProxies) // checked by LoadFileConfig
	if err != nil {
		return nil, nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	n, err := node.Start(sctx, node.Config{
		Centre: fc.Centre, Name: fc.Name, DataDir: dir,
		P2PAddr: fc.P2PAddr, GossipAddr: fc.GossipAddr, HTTPAddr: fc.HTTPAddr,
		Join: join, Timing: profile, Logger: log, MaxQueue: fc.Web.MaxQueue,
	})
	if err != nil {
		return nil, nil, err
	}
	srv, err := api.Start(api.Config{
		Addr: fc.HTTPAddr, Centre: n, AdminToken: token, Logger: log,
		AllowedOrigins: fc.Web.AllowedOrigins, TrustedProxies: proxies,
		ChatStartsPerMinute: fc.Web.ChatStartsPerMinute, ChatStartBurst: fc.Web.ChatStartBurst,
		MaxChatsPerAddress: fc.Web.MaxChatsPerAddress,
		QuickExitURL:       fc.Web.QuickExitURL,
	})
	if err != nil {
		_ = n.Stop()
		return nil, nil, err
	}
	return n, srv, nil
}

// drainThenStop is a centre's graceful stop (SIGTERM): it drains, so that
// no conversation is cut short by a restart, for at most timeout (a second
// signal cuts the drain short), then stops.
func drainThenStop(n *node.Node, srv *api.Server, timeout time.Duration, log *slog.Logger) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	defer cancelTimeout()
	log.Info("draining: no new chats; finishing conversations before stopping", "timeout", timeout)
	start := time.Now()
	if err := n.Drain(ctx); err != nil {
		log.Warn("stopping before every conversation ended", "err", err)
	} else {
		log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	}
	return stopCentre(n, srv)
}

func stopCentre(n *node.Node, srv *api.Server) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Stop(ctx)
	if nerr := n.Stop(); nerr != nil {
		return nerr
	}
	return err
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
	profile := timing.National
	if *fast {
		profile = timing.Test
	}
	n, srv, err := startCentre(ctx, *dir, *join, profile, log)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	log.Info("serving", "http", srv.Addr(), "p2p", n.P2PAddrs(), "gossip", n.GossipAddr())
	<-ctx.Done()
	return drainThenStop(n, srv, *drain, log)
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
	id := fs.String("centre", "", "the centre's id: 1-32 of a-z, 0-9 and -")
	name := fs.String("name", "", "the centre's name as people say it")
	httpAddr := fs.String("http", "127.0.0.1:8080", "HTTP listen address")
	p2p := fs.String("p2p", "/ip4/0.0.0.0/tcp/4001", "libp2p listen multiaddr")
	gossip := fs.String("gossip", "0.0.0.0:7946", "gossip listen address (TCP and UDP)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *id == "" {
		return fmt.Errorf("init: --dir and --centre are required")
	}
	if *name == "" {
		*name = *id
	}
	res, err := node.Init(*dir, node.FileConfig{Centre: *id, Name: *name, HTTPAddr: *httpAddr, P2PAddr: *p2p, GossipAddr: *gossip})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "centre %s initialised in %s\n", *id, *dir)
	fmt.Fprintf(stdout, "peer id:     %s\n", res.PeerID)
	fmt.Fprintf(stdout, "admin token: %s/%s (keep it secret)\n\n", *dir, node.AdminTokenFile)
	fmt.Fprintf(stdout, "First centre of a new federation:  helpmesh run --dir %s\n", *dir)
	fmt.Fprintf(stdout, "Joining a federation: a coordinator admits this centre at any member with\n")
	fmt.Fprintf(stdout, "  helpmesh centre admit --server http://MEMBER:PORT --token-file TOKEN \\\n")
	fmt.Fprintf(stdout, "    --id %s --name %q --peer-id %s \\\n", *id, *name, res.PeerID)
	fmt.Fprintf(stdout, "    --addr %s --gossip %s --http %s\n", *p2p, *gossip, *httpAddr)
	fmt.Fprintf(stdout, "(replace 0.0.0.0 with this server's address), then here:\n")
	fmt.Fprintf(stdout, "  helpmesh run --dir %s --join MEMBER_P2P_MULTIADDR\n", *dir)
	return nil
}
