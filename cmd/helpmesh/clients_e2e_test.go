package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/logsink"
	"github.com/helpmesh/helpmesh/node"
)

// cli is the binary running in the background: its output kept, its stdin
// a pipe, its exit awaited.
type cli struct {
	cmd   *exec.Cmd
	out   *logsink.Buffer
	stdin io.WriteCloser
	done  chan struct{}
	code  int
}

func startCLI(t *testing.T, bin string, args ...string) *cli {
	t.Helper()
	p := &cli{cmd: exec.Command(bin, args...), out: &logsink.Buffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = in
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			p.code = exit.ExitCode()
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of helpmesh %s:\n%s", strings.Join(args, " "), lastLines(p.out.String(), 40))
		}
	})
	return p
}

func (p *cli) say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func (p *cli) await(t *testing.T, want string) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%q from helpmesh %s", want, p.cmd.Args[1]), func() bool { return strings.Contains(p.out.String(), want) })
}

// exited waits up to within for the process to exit and returns its status.
func (p *cli) exited(t *testing.T, within time.Duration, why string) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(within):
		t.Fatalf("helpmesh %s did not exit within %v of %s", p.cmd.Args[1], within, why)
		return 0
	}
}

// interrupt sends SIGINT and returns how long the process took to exit and
// its status.
func (p *cli) interrupt(t *testing.T, within time.Duration) (time.Duration, int) {
	t.Helper()
	begin := time.Now()
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	code := p.exited(t, within, "SIGINT")
	return time.Since(begin), code
}

// -h and --help print the usage and succeed, on every subcommand.
func TestBinaryHelpFlag(t *testing.T) {
	bin := buildBinary(t)
	for _, args := range [][]string{{"chat", "-h"}, {"volunteer", "--help"}, {"status", "-h"}, {"demo", "-h"}, {"centre", "admit", "-h"}} {
		out, err := runErr(bin, args...)
		if err != nil || !strings.Contains(out, "Usage of") || strings.Contains(out, "help requested") {
			t.Errorf("helpmesh %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// The terminal clients, status and the demo, through the real binary, as
// the README has a newcomer use them. Port base is taken, so oslo moves
// and the demo says so. A visitor (Norwegian) at oslo, where nobody is on
// duty, sees the emergency numbers and types before anyone joins; Kari at
// bergen (three languages) signs in, sees the topics as a list, accepts;
// the visitor's early line reaches her; status counts her once; she ends
// the conversation and the chat exits 0. A second visitor and Kari are
// stopped with Ctrl-C, each within a second; then the demo, quietly.
func TestBinaryClientsAndDemoStop(t *testing.T) {
	bin := buildBinary(t)
	base := fedtest.FreePort(t)
	taken, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	demo := startCLI(t, bin, "demo", "--base-port", fmt.Sprint(base), "--dir", dir)
	waitFor(t, 90*time.Second, "the demo ready", func() bool { return strings.Contains(demo.out.String(), "ready; press Ctrl-C") })
	out := demo.out.String()
	httpOf, tokenOf := map[string]string{}, map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  (\w+)\s+http://(\S+)\s+admin token: (\S+)$`).FindAllStringSubmatch(out, -1) {
		httpOf[m[1]], tokenOf[m[1]] = m[2], m[3]
	}
	if want := fmt.Sprintf("port %d is taken; oslo is on http://%s\n", base, httpOf["oslo"]); httpOf["oslo"] == "" || !strings.Contains(out, want) {
		t.Fatalf("the demo should say %q:\n%s", want, out)
	}
	for _, id := range []string{"oslo", "bergen"} {
		token, err := node.LoadAdminToken(filepath.Join(dir, id))
		if err != nil || tokenOf[id] != token {
			t.Fatalf("the demo should print %s's admin token itself, printed %q (%v)", id, tokenOf[id], err)
		}
	}

	// A visitor before anyone is on duty: the emergency numbers, in
	// Norwegian, and an early line kept, not refused in raw JSON.
	chat := startCLI(t, bin, "chat", "--server", "http://"+httpOf["oslo"], "--lang", "nb")
	chat.await(t, "Koblet til.")
	chat.await(t, "Ingen er ledige akkurat nå")
	chat.await(t, "Medisinsk nødhjelp: 113")
	chat.say(t, "hei, tidlig")
	chat.await(t, "[Ingen er her ennå; meldingen sendes når en frivillig er klar.]")

	vol := startCLI(t, bin, "volunteer", "--server", "http://"+httpOf["bergen"], "--id", "bergen-kari", "--password", DemoPassword)
	vol.await(t, "[topics: mental-health, abuse-violence, family,")
	vol.await(t, "age groups: unknown, under-13, 13-15,")
	vol.await(t, "[offer from oslo")
	vol.say(t, "/accept")
	chat.await(t, "[Du snakker med Kari.]")
	vol.await(t, "visitor: hei, tidlig")
	if s := chat.out.String(); strings.Contains(s, `{"`) || strings.Contains(s, "not_connected") {
		t.Fatalf("the chat printed raw JSON:\n%s", s)
	}

	// status: Kari speaks nb, nn and en; she is one free person.
	var bergen *node.CentreView
	waitFor(t, 30*time.Second, "status to show Kari free at bergen", func() bool {
		out, err := runErr(bin, "status", "--dir", filepath.Join(dir, "oslo"), "--json")
		var v node.FederationView
		if err != nil || json.Unmarshal([]byte(out), &v) != nil {
			return false
		}
		for _, c := range v.Centres {
			if c.ID == "bergen" && c.Availability != nil && len(c.Availability.Channels["chat"].Free) == 3 {
				bergen = &c
				return true
			}
		}
		return false
	})
	if n := bergen.Availability.Channels["chat"].FreeVolunteers; n != 1 {
		t.Errorf("status --json: free_volunteers at bergen = %d, want 1", n)
	}
	js := run(t, bin, "status", "--dir", filepath.Join(dir, "oslo"), "--json")
	if m := regexp.MustCompile(`"[A-Z][A-Za-z]*":`).FindString(js); m != "" {
		t.Errorf("status --json has a Go field name %s:\n%s", m, js)
	}
	if strings.Contains(js, "null") {
		t.Errorf("status --json has a null where an empty list or map belongs:\n%s", js)
	}
	table := run(t, bin, "status", "--dir", filepath.Join(dir, "oslo"))
	if !regexp.MustCompile(`(?m)^bergen\s+Bergen\s+alive\s+\w+\s+true\s+1\s+0\s`).MatchString(table) {
		t.Errorf("status should count Kari once as free chat at bergen:\n%s", table)
	}

	// Kari ends the conversation: the chat says so and exits 0.
	vol.say(t, "/end family 16-18")
	chat.await(t, "Samtalen er avsluttet.")
	if code := chat.exited(t, 5*time.Second, "the end of the conversation"); code != 0 {
		t.Fatalf("chat exited %d after the conversation ended, want 0", code)
	}
	vol.await(t, "[categorisation recorded]")

	// Ctrl-C ends a waiting chat, and the volunteer, each within a second.
	chat2 := startCLI(t, bin, "chat", "--server", "http://"+httpOf["oslo"], "--lang", "en")
	chat2.await(t, "Connected to the helpline.")
	chat2.await(t, "[You are number")
	waitFor(t, 30*time.Second, "a second offer at Kari", func() bool { return strings.Count(vol.out.String(), "[offer from oslo") == 2 })
	took, code := chat2.interrupt(t, 5*time.Second)
	t.Logf("chat: SIGINT to exit %v, status %d", took, code)
	if took > time.Second || code != 0 {
		t.Errorf("chat took %v to end after SIGINT with status %d; want within 1 s, 0", took, code)
	}
	took, code = vol.interrupt(t, 5*time.Second)
	t.Logf("volunteer: SIGINT to exit %v, status %d", took, code)
	if took > time.Second || code != 0 || !strings.Contains(vol.out.String(), "signed out") {
		t.Errorf("volunteer took %v to end after SIGINT with status %d; want within 1 s, 0, signed out", took, code)
	}

	// The demo stops cleanly and quietly.
	took, code = demo.interrupt(t, 60*time.Second)
	t.Logf("demo: SIGINT to exit %v, status %d", took, code)
	if code != 0 {
		t.Errorf("demo exited %d after SIGINT, want 0", code)
	}
	if errs := regexp.MustCompile(`(?m)^.*level=ERROR.*$`).FindAllString(demo.out.String(), -1); len(errs) > 0 {
		t.Errorf("a clean stop logged %d errors:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}
