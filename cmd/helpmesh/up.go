package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/helpmesh/helpmesh/api"
	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// Files `helpmesh up` keeps in the data directory besides the centre's own.
const (
	upJoinFile   = "up-join"   // the member multiaddr to join through, once admitted
	upJoinedFile = "up-joined" // written once the centre has run joined
)

// cmdUp brings a centre up without hand work, for a trusted private network
// such as a compose project: it initialises an empty data directory, and a
// non-first centre admits itself at the first centre with that centre's
// admin token (shared through a volume), then runs. With data present it
// just runs. Real centres are admitted by a coordinator (helpmesh centre admit).
func cmdUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError) // flags
	dir := fs.String("dir", "/data", "the centre's data directory")
	id := fs.String("centre", "", "the centre's id")
	name := fs.String("name", "", "the centre's name")
	httpAddr := fs.String("http", "0.0.0.0:8080", "HTTP listen address")
	p2p := fs.String("p2p", "/ip4/0.0.0.0/tcp/4001", "libp2p listen multiaddr")
	gossip := fs.String("gossip", "0.0.0.0:7946", "gossip listen address")
	advertise := fs.String("advertise", "", "host name other centres reach this one by (default: the host name)")
	bootstrap := fs.Bool("bootstrap", false, "this is the first centre: start a new federation and share the admin token")
	joinVia := fs.String("join-via", "", "the first centre's API, e.g. http://centre-a:8080, to admit this centre at")
	tokenFile := fs.String("token-file", "", "where the first centre writes its admin token and the others read it")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	wait := fs.Duration("wait", 3*time.Minute, "how long a joining centre waits for the first one")
	trustedProxies := fs.String("trusted-proxies", "", "on first start, record the reverse proxies in front, whose X-Forwarded-For is read: addresses or CIDR ranges, comma-separated (web.trusted_proxies)")
	drain := fs.Duration("drain-timeout", defaultDrainTimeout, "on SIGTERM, how long to let conversations end before stopping (a second signal stops at once)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" {
		return fmt.Errorf("up: --centre is required")
	}
	if *bootstrap == (*joinVia != "") {
		return fmt.Errorf("up: say exactly one of --bootstrap or --join-via")
	}
	if *tokenFile == "" {
		return fmt.Errorf("up: --token-file is required")
	}
	if *name == "" {
		*name = *id
	}
	if *advertise == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("up: %w", err)
		}
		*advertise = h
	}
	var proxies []string
	for p := range strings.SplitSeq(*trustedProxies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			proxies = append(proxies, p)
		}
	}
	if _, err := node.ParseTrustedProxies(proxies); err != nil {
		return fmt.Errorf("up: --trusted-proxies: %w", err)
	}
	log := newLogger(stderr, *logLevel)

	if _, err := os.Stat(filepath.Join(*dir, node.ConfigFile)); errors.Is(err, iofs.ErrNotExist) {
		res, err := node.Init(*dir, node.FileConfig{
			Centre: *id, Name: *name, HTTPAddr: *httpAddr, P2PAddr: *p2p, GossipAddr: *gossip,
			Web: node.WebConfig{TrustedProxies: proxies},
		})
		if err != nil {
			return fmt.Errorf("up: %w", err)
		}
		log.Info("initialised", "dir", *dir, "peer", res.PeerID)
		if *bootstrap {
			// Marks the start as the federation's first: nothing to join.
			if err := os.WriteFile(filepath.Join(*dir, upJoinedFile), []byte("bootstrap\n"), 0o600); err != nil {
				return fmt.Errorf("up: %w", err)
			}
		}
	} else if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if *bootstrap {
		tok, err := node.LoadAdminToken(*dir)
		if err != nil {
			return fmt.Errorf("up: %w", err)
		}
		if err := writeTokenFile(*tokenFile, tok); err != nil {
			return fmt.Errorf("up: share the admin token: %w", err)
		}
	}

	join := ""
	if _, err := os.Stat(filepath.Join(*dir, upJoinedFile)); errors.Is(err, iofs.ErrNotExist) {
		// Not yet run joined: admit (once) and join through the member.
		if b, err := os.ReadFile(filepath.Join(*dir, upJoinFile)); err == nil {
			join = strings.TrimSpace(string(b))
		} else {
			if join, err = upAdmit(ctx, *dir, *joinVia, *tokenFile, *advertise, *wait, log.Info); err != nil {
				return fmt.Errorf("up: %w", err)
			}
			if err := os.WriteFile(filepath.Join(*dir, upJoinFile), []byte(join+"\n"), 0o600); err != nil {
				return fmt.Errorf("up: %w", err)
			}
		}
		log.Info("joining", "through", join)
	}

	n, srv, err := startCentre(ctx, *dir, join, timing.National, log)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if join != "" {
		if err := os.WriteFile(filepath.Join(*dir, upJoinedFile), []byte(join+"\n"), 0o600); err != nil {
			log.Warn("could not record the join", "err", err)
		}
	}
	log.Info("serving", "http", srv.Addr(), "p2p", n.P2PAddrs(), "gossip", n.GossipAddr())
	<-ctx.Done()
	return drainThenStop(n, srv, *drain, log)
}

func writeTokenFile(path, tok string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// upAdmit admits the centre in dir at the member behind joinVia and returns
// the member's libp2p address to join through.
func upAdmit(ctx context.Context, dir, joinVia, tokenFile, advertise string, wait time.Duration, info func(string, ...any)) (string, error) {
	fc, err := node.LoadFileConfig(dir)
	if err != nil {
		return "", err
	}
	key, err := node.LoadOrCreateIdentity(filepath.Join(dir, node.IdentityFile))
	if err != nil {
		return "", err
	}
	pid, err := node.PeerIDOf(key)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	// memberlist wants an address it can dial; the roster takes any multiaddr.
	var ip string
	for {
		ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", advertise)
		if err == nil && len(ips) > 0 {
			ip = ips[0].String()
			break
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return "", fmt.Errorf("resolve %s: %w", advertise, err)
		}
	}
	c := consensus.Centre{
		ID: fc.Centre, Name: fc.Name, PeerID: pid.String(),
		Addrs:      []string{"/dns4/" + advertise + "/tcp/" + portOf(fc.P2PAddr), "/ip4/" + ip + "/tcp/" + portOf(fc.P2PAddr)},
		GossipAddr: net.JoinHostPort(ip, hostPortPort(fc.GossipAddr)),
		HTTPAddr:   net.JoinHostPort(advertise, hostPortPort(fc.HTTPAddr)),
	}
	for {
		join, err := tryAdmit(ctx, joinVia, tokenFile, c)
		if err == nil {
			info("admitted", "at", joinVia, "join", join)
			return join, nil
		}
		info("waiting to be admitted", "at", joinVia, "err", err)
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return "", fmt.Errorf("admit at %s: %w", joinVia, err)
		}
	}
}

func tryAdmit(ctx context.Context, joinVia, tokenFile string, c consensus.Centre) (string, error) {
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return "", err
	}
	client := &adminClient{base: strings.TrimRight(joinVia, "/"), token: strings.TrimSpace(string(b)), http: &http.Client{Timeout: 30 * time.Second}}
	var resp api.AdmitResponse
	if err := client.do(ctx, http.MethodPost, "/v1/centres", c, &resp); err != nil {
		return "", err
	}
	for _, a := range resp.JoinAddrs {
		if !strings.HasPrefix(a, "/ip4/127.") && !strings.HasPrefix(a, "/ip6/::1/") {
			return a, nil
		}
	}
	return "", fmt.Errorf("the member offered no reachable join address: %v", resp.JoinAddrs)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// portOf returns the port of a /ip4/HOST/tcp/PORT multiaddr.
func portOf(ma string) string {
	parts := strings.Split(ma, "/")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "tcp" {
			return parts[i+1]
		}
	}
	return "4001"
}

func hostPortPort(hp string) string {
	if _, p, err := net.SplitHostPort(hp); err == nil {
		if _, err := strconv.Atoi(p); err == nil {
			return p
		}
	}
	return "0"
}
