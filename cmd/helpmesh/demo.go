package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
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
	type running struct {
		stop       func() error
		http       string
		id         string
		dir        string
		admit      *node.Node
		volunteers []string
	}
	var centres []running
	defer func() {
		for i := len(centres) - 1; i >= 0; i-- {
			_ = centres[i].stop()
		}
	}()
	var firstJoin string
	for i := range o.centres {
		id := demoName(i)
		dir := filepath.Join(o.dir, id)
		fresh := false
		if _, err := os.Stat(filepath.Join(dir, node.ConfigFile)); err != nil {
			fresh = true
			fc := node.FileConfig{
				Centre: id, Name: strings.ToUpper(id[:1]) + id[1:],
				HTTPAddr:   freeOr(fmt.Sprintf("127.0.0.1:%d", o.basePort+i)),
				P2PAddr:    fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort()),
				GossipAddr: fmt.Sprintf("127.0.0.1:%d", freePort()),
			}
			res, err := node.Init(dir, fc)
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			if i > 0 {
				// What a coordinator does with `helpmesh centre admit`.
				c := consensus.Centre{ID: id, Name: fc.Name, PeerID: res.PeerID, Addrs: []string{fc.P2PAddr}, GossipAddr: fc.GossipAddr, HTTPAddr: fc.HTTPAddr}
				actx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := centres[0].admit.Propose(actx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpAdmitCentre, Centre: &c})
				cancel()
				if err != nil {
					return fmt.Errorf("demo: admit %s: %w", id, err)
				}
			}
		}
		join := ""
		if fresh && i > 0 {
			join = firstJoin
		}
		n, srv, err := startCentre(ctx, dir, join, timing.National, log)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if i == 0 {
			firstJoin = n.P2PAddrs()[0]
		}
		c := running{stop: func() error { return stopCentre(n, srv) }, http: srv.Addr(), id: id, dir: dir, admit: n}
		if fresh {
			token, err := node.LoadAdminToken(dir)
			if err != nil {
				return err
			}
			client := &adminClient{base: "http://" + c.http, token: token, http: &http.Client{Timeout: 30 * time.Second}}
			if c.volunteers, err = seedVolunteers(ctx, client, id, i); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
		} else {
			for _, v := range n.Roster().Volunteers {
				if v.Centre == id {
					c.volunteers = append(c.volunteers, v.ID)
				}
			}
		}
		centres = append(centres, c)
	}
	fmt.Fprintf(stdout, "helpmesh demo: %d centres on loopback, data in %s\n\n", len(centres), o.dir)
	for _, c := range centres {
		fmt.Fprintf(stdout, "  %-12s http://%s   admin token: %s\n", c.id, c.http, filepath.Join(c.dir, node.AdminTokenFile))
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
	fmt.Fprintf(stdout, "  overview           http://%s/overview  (admin token: %s)\n", centres[0].http, filepath.Join(centres[0].dir, node.AdminTokenFile))
	fmt.Fprintf(stdout, "\nThe federation:\n  helpmesh status --dir %s\n", centres[0].dir)
	fmt.Fprintf(stdout, "  curl http://%s/healthz\n", centres[0].http)
	fmt.Fprintf(stdout, "\nready; press Ctrl-C to stop\n")
	<-ctx.Done()
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

// freeOr returns addr if it can be bound now, else a free loopback address.
func freeOr(addr string) string {
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		return addr
	}
	return fmt.Sprintf("127.0.0.1:%d", freePort())
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
