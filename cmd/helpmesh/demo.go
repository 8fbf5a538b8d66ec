package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/internal/localfed"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// demoNames are regional centres as a Norwegian helpline has them, so the
// demo reads like a real federation.
var demoNames = []string{"oslo", "bergen", "trondheim", "stavanger", "tromso", "kristiansand", "bodo", "alesund", "drammen", "hamar", "molde"}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	centres := fs.Int("centres", 3, "how many centres")
	dir := fs.String("dir", "", "keep the demo's data here (default: a temporary directory, removed at exit)")
	basePort := fs.Int("base-port", 8080, "first centre's HTTP port; the others follow (taken ports fall back to free ones)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *centres < 1 || *centres > 50 {
		return fmt.Errorf("demo: --centres must be 1-50")
	}
	if *dir == "" {
		tmp, err := os.MkdirTemp("", "helpmesh-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		*dir = tmp
	}
	return runDemo(ctx, demoOptions{centres: *centres, dir: *dir, basePort: *basePort}, stdout, newLogger(stderr, *logLevel))
}

type demoOptions struct {
	centres  int
	dir      string
	basePort int
}

// runDemo starts a federation on loopback, prints how to reach it and runs
// until ctx ends. A --dir from an earlier run is started again as it was.
func runDemo(ctx context.Context, o demoOptions, stdout io.Writer, log *slog.Logger) error {
	var stopping atomic.Bool
	log = slog.New(quietStop{Handler: log.Handler(), stopping: &stopping})
	// moved says which centres did not get their port (taken), so that
	// the demo says so instead of quietly printing other addresses.
	moved := map[string]string{}
	local := centre.Local{
		Root: o.dir,
		Name: func(id string) string { return strings.ToUpper(id[:1]) + id[1:] },
		HTTPAddr: func(id string, i int) string {
			want := fmt.Sprintf("127.0.0.1:%d", o.basePort+i)
			got := freeOr(want)
			if got != want {
				moved[id] = want
			}
			return got
		},
		// The demo has no PBX: each node is its centre's phone (the browser
		// phone, docs/phone.md), any program on this machine is its trunk,
		// and volunteers answer in the console.
		Phone: func(_ string, i int) (node.PhoneConfig, string) {
			addr := freeUDPOr(fmt.Sprintf("127.0.0.1:%d", 5060+i))
			return node.PhoneConfig{Listen: addr, PBX: []string{"127.0.0.1/32"},
				Browser: &node.BrowserPhone{MediaHost: "127.0.0.1", Loopback: true}}, addr
		},
		Timing: timing.National,
		Logger: log,
	}
	fed := localfed.New(local.Driver())
	defer func() { _ = fed.StopAll() }()
	type running struct {
		http       string
		sip        string
		id         string
		dir        string
		token      string
		volunteers []string
	}
	var centres []running
	for i := range o.centres {
		id := demoName(i)
		dir := filepath.Join(o.dir, id)
		existing, err := centre.Initialised(dir)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		sctx, cancel := context.WithTimeout(ctx, startWithin)
		c, err := fed.Add(sctx, id)
		cancel()
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		r := running{http: c.Addr(), id: id, dir: dir, sip: c.SIPAddr()}
		// A local demo: its admin tokens are printed to be pasted.
		if r.token, err = node.LoadAdminToken(dir); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if existing {
			for _, v := range c.Node().Roster().Volunteers {
				if v.Centre == id {
					r.volunteers = append(r.volunteers, v.ID)
				}
			}
		} else {
			client := newAdminClient("http://"+r.http, r.token)
			if i == 0 {
				if err := seedPolicy(ctx, client); err != nil {
					return fmt.Errorf("demo: %w", err)
				}
			}
			if r.volunteers, err = seedVolunteers(ctx, client, id, i); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
		}
		centres = append(centres, r)
	}
	fmt.Fprintf(stdout, "helpmesh demo: %d centres on loopback, data in %s\n\n", len(centres), o.dir)
	for _, c := range centres {
		if want, ok := moved[c.id]; ok {
			_, port, _ := net.SplitHostPort(want)
			fmt.Fprintf(stdout, "  port %s is taken; %s is on http://%s\n", port, c.id, c.http)
		}
	}
	if len(moved) > 0 {
		fmt.Fprintln(stdout)
	}
	for _, c := range centres {
		fmt.Fprintf(stdout, "  %-12s http://%s   admin token: %s\n", c.id, c.http, c.token)
	}
	fmt.Fprintf(stdout, "\nVolunteers (password %q):\n", DemoPassword)
	for _, c := range centres {
		for _, v := range c.volunteers {
			fmt.Fprintf(stdout, "  helpmesh volunteer --server http://%s --id %s --password %s\n", c.http, v, DemoPassword)
		}
	}
	fmt.Fprintf(stdout, "\nA visitor at %s, which has no volunteer on duty, overflows to a centre where one has signed in:\n", centres[0].id)
	fmt.Fprintf(stdout, "  helpmesh chat --server http://%s\n", centres[0].http)
	fmt.Fprintf(stdout, "\nIn a browser:\n")
	fmt.Fprintf(stdout, "  visitor chat       http://%s/chat\n", centres[0].http)
	if len(centres) > 1 {
		fmt.Fprintf(stdout, "  volunteer console  http://%s/console   (e.g. %s / %s)\n", centres[1].http, firstOr(centres[1].volunteers), DemoPassword)
	}
	fmt.Fprintf(stdout, "  overview           http://%s/overview  (admin token: %s)\n", centres[0].http, centres[0].token)
	if centres[0].sip != "" {
		fmt.Fprintf(stdout, "\nPhone calls (docs/phone.md). The demo has no PBX: each centre's node is its phone.\n")
		fmt.Fprintf(stdout, "  1. A volunteer ticks \"Answer calls in this browser\" in the console (the browser asks for the microphone)\n")
		fmt.Fprintf(stdout, "     and switches phone on.\n")
		fmt.Fprintf(stdout, "  2. A SIP softphone on this machine calls %s: sip:queue-nb@%s\n", centres[0].id, centres[0].sip)
		fmt.Fprintf(stdout, "     The console rings; nobody free there within the policy's time, the call is redirected (302) to\n")
		fmt.Fprintf(stdout, "     another centre's free volunteer; nobody free anywhere, the caller hears the busy message.\n")
	}
	fmt.Fprintf(stdout, "\nThe federation:\n  helpmesh status --dir %s\n", centres[0].dir)
	fmt.Fprintf(stdout, "  curl http://%s/healthz\n", centres[0].http)
	fmt.Fprintf(stdout, "\nready; press Ctrl-C to stop\n")
	<-ctx.Done()
	stopping.Store(true)
	return nil
}

func firstOr(ids []string) string {
	if len(ids) == 0 {
		return "-"
	}
	return ids[0]
}

func demoName(i int) string {
	if i < len(demoNames) {
		return demoNames[i]
	}
	return fmt.Sprintf("centre-%d", i+1)
}

// freeOr returns addr if it can be bound now (TCP), else a free loopback
// address.
func freeOr(addr string) string {
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		return addr
	}
	return freeLoopback()
}

// freeUDPOr is freeOr for a UDP address.
func freeUDPOr(addr string) string {
	if c, err := net.ListenPacket("udp", addr); err == nil {
		c.Close()
		return addr
	}
	return freeLoopback()
}

func freeLoopback() string {
	p, _ := localfed.FreePort()
	return fmt.Sprintf("127.0.0.1:%d", p)
}
