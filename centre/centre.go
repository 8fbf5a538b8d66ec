// Package centre is helpmesh's composition root, in the style of etcd's
// server/embed: Start wires one centre's parts (its node, its HTTP API and,
// with a PBX, its SIP ingress) and returns once they are ready, and the Centre it returns is
// their one lifecycle owner: Drain, Stop and Shutdown end them in one order.
// The binary, the demo and the test rigs that run whole centres all start
// them here, so the wiring is written once and not copied by each.
package centre

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/helpmesh/helpmesh/api"
	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
	"github.com/helpmesh/helpmesh/sip"
)

// stopWithin bounds the HTTP server's graceful stop after a drain: open
// requests and sockets get this long to end.
const stopWithin = 10 * time.Second

// Config configures a centre.
type Config struct {
	Node node.Config
	// API configures the HTTP API; Start sets its Centre to the node.
	API api.Config
	// SIP configures the ingress for the centre's PBX (Listen "" : none).
	SIP SIPConfig
}

// ConfigFromDir is the configuration of the centre in data directory dir
// (made by helpmesh init): its config file and admin token. join is the
// member to join through on an admitted centre's first start ("" to start
// a new federation or run an existing member). log goes to every part. The
// timing is a real federation's: a loopback rig sets Node.Timing.
func ConfigFromDir(dir, join string, log *slog.Logger) (Config, error) {
	fc, err := node.LoadFileConfig(dir)
	if err != nil {
		return Config{}, err
	}
	token, err := node.LoadAdminToken(dir)
	if err != nil {
		return Config{}, err
	}
	proxies, err := node.ParseTrustedProxies(fc.Web.TrustedProxies) // checked by LoadFileConfig
	if err != nil {
		return Config{}, err
	}
	pbx, err := fc.Phone.Prefixes() // checked by LoadFileConfig
	if err != nil {
		return Config{}, err
	}
	browser, err := browserPhoneConfig(fc.Phone.Browser)
	if err != nil {
		return Config{}, err
	}
	peers, err := node.ParseTrustedProxies(fc.Phone.Peers) // checked by LoadFileConfig
	if err != nil {
		return Config{}, err
	}
	cert, key := fc.Web.TLSFiles(dir)
	return Config{
		SIP: SIPConfig{Listen: fc.Phone.Listen, Host: fc.Phone.Host, PBX: pbx, Peers: peers, Browser: browser},
		Node: node.Config{
			Centre: fc.Centre, Name: fc.Name, DataDir: dir, PhoneDomain: fc.Phone.Domain,
			P2PAddr: fc.P2PAddr, GossipAddr: fc.GossipAddr, HTTPAddr: fc.HTTPAddr, SIPAddr: fc.SIPAddr,
			PublicURL: fc.Web.PublicURL,
			Join:      join, Timing: timing.National, Logger: log, MaxQueue: fc.Web.MaxQueue,
		},
		API: api.Config{
			Addr: fc.HTTPAddr, AdminToken: token, Logger: log,
			AllowedOrigins: fc.Web.AllowedOrigins, TrustedProxies: proxies,
			ChatStartsPerMinute: fc.Web.ChatStartsPerMinute, ChatStartBurst: fc.Web.ChatStartBurst,
			MaxChatsPerAddress: fc.Web.MaxChatsPerAddress,
			QuickExitURL:       fc.Web.QuickExitURL,
			StaffAddr:          fc.Web.StaffAddr, MetricsAddr: fc.Web.MetricsAddr,
			TLSCert: cert, TLSKey: key,
			CatalogueDir: filepath.Join(dir, "i18n"),
		},
	}, nil
}

// Centre is a running centre.
type Centre struct {
	node *node.Node
	api  *api.Server
	sip  *sip.Ingress // nil without a PBX
	// phone is the node's own phone (nil unless SIP.Browser).
	phone *browserPhone
	log   *slog.Logger

	stopOnce sync.Once
	stopErr  error
}

// Start starts the node, then its HTTP API, and returns once both are
// ready: the node in its federation, the API listening. ctx bounds the
// start-up; on an error nothing is left running.
func Start(ctx context.Context, cfg Config) (*Centre, error) {
	var tokens *sip.TokenStore
	if cfg.SIP.Listen != "" {
		tokens = sip.NewTokenStore()
		cfg.Node.CallTokens = callTokens{tokens}
		cfg.Node.BrowserPhones = cfg.SIP.Browser != nil
	}
	n, err := node.Start(ctx, cfg.Node)
	if err != nil {
		return nil, err
	}
	log := cfg.Node.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Centre{node: n, log: log}
	if tokens != nil {
		router := callRouter{n: n, ownSIP: cfg.Node.SIPAddr}
		sc := sip.Config{
			Addr: cfg.SIP.Listen, Host: cfg.SIP.Host, PBX: cfg.SIP.PBX, Router: router, Tokens: tokens,
			RouteTimeout: cfg.SIP.RouteTimeout, RingTimeout: cfg.SIP.RingTimeout, MaxHeldCalls: cfg.SIP.MaxHeldCalls,
			Logger: log, Registerer: n.Registry(),
		}
		if cfg.SIP.Browser != nil {
			if c.phone, err = startBrowserPhone(cfg.SIP.Browser, log); err != nil {
				_ = n.Stop()
				return nil, fmt.Errorf("start centre %s: %w", cfg.Node.Centre, err)
			}
			sc.Voice, sc.Softphones, sc.Trunk = voice{c.phone}, c.phone.softphones, trunk{router}
			sc.Peers = (&peers{n: n, listed: cfg.SIP.Peers}).has
			cfg.API.Softphones, cfg.API.SoftphoneRaw = consoles{c.phone}, cfg.SIP.Browser.RawAudio
		}
		c.sip, err = sip.Start(ctx, sc)
		if err != nil {
			c.stopPhone()
			_ = n.Stop()
			return nil, fmt.Errorf("start centre %s: %w", cfg.Node.Centre, err)
		}
	}
	cfg.API.Centre = n
	c.api, err = api.Start(cfg.API)
	if err != nil {
		c.stopSIP(ctx)
		c.stopPhone()
		_ = n.Stop()
		return nil, err
	}
	return c, nil
}

// stopPhone ends every voice leg still open: after the ingress, which
// hangs up the calls it answered first.
func (c *Centre) stopPhone() {
	if c.phone != nil {
		_ = c.phone.engine.Close()
	}
}

// SIPAddr returns the SIP ingress's bound UDP address ("" without one).
func (c *Centre) SIPAddr() string {
	if c.sip == nil {
		return ""
	}
	return c.sip.Addr().String()
}

func (c *Centre) stopSIP(ctx context.Context) error {
	if c.sip == nil {
		return nil
	}
	return c.sip.Stop(ctx)
}

// Node returns the centre's node.
func (c *Centre) Node() *node.Node { return c.node }

// API returns the centre's HTTP server.
func (c *Centre) API() *api.Server { return c.api }

// Addr returns the HTTP API's bound address, host:port: its public side
// when staff or metrics listen apart.
func (c *Centre) Addr() string { return c.api.Addr() }

// StaffAddr returns the staff listener's bound address ("" : staff are
// served on Addr).
func (c *Centre) StaffAddr() string { return c.api.StaffAddr() }

// MetricsAddr returns the metrics listener's bound address ("" : /metrics
// is served on StaffAddr or Addr).
func (c *Centre) MetricsAddr() string { return c.api.MetricsAddr() }

// Propose writes cmd into the federation's roster through this centre.
func (c *Centre) Propose(ctx context.Context, cmd consensus.Command) error {
	return c.node.Propose(ctx, cmd)
}

// P2PAddrs returns the multiaddrs other centres join through.
func (c *Centre) P2PAddrs() []string { return c.node.P2PAddrs() }

// Drain takes no new contact and returns once every conversation here has
// ended, or with ctx's error (see node.Node.Drain).
func (c *Centre) Drain(ctx context.Context) error { return c.node.Drain(ctx) }

// Stop stops the HTTP API, within ctx, then the node. Idempotent.
func (c *Centre) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() {
		// The ingress goes after the drain, not before: a call in progress
		// still needs it for its hang-up.
		apiErr := c.api.Stop(ctx)
		sipErr := c.stopSIP(ctx)
		c.stopPhone()
		c.stopErr = errors.Join(apiErr, sipErr, c.node.Stop())
	})
	return c.stopErr
}

// Shutdown is a centre's graceful stop (SIGTERM): it drains until ctx ends,
// so that no conversation is cut short by a restart, then stops.
func (c *Centre) Shutdown(ctx context.Context) error {
	var within []any
	if d, ok := ctx.Deadline(); ok {
		within = []any{"timeout", time.Until(d).Round(time.Second)}
	}
	c.log.Info("draining: no new chats; finishing conversations before stopping", within...)
	start := time.Now()
	if err := c.Drain(ctx); err != nil {
		c.log.Warn("stopping before every conversation ended", "err", err)
	} else {
		c.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	}
	sctx, cancel := context.WithTimeout(context.Background(), stopWithin)
	defer cancel()
	if err := c.Stop(sctx); err != nil {
		return fmt.Errorf("shut down centre %s: %w", c.node.Centre(), err)
	}
	return nil
}
