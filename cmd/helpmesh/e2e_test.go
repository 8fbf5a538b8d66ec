package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/node"
)

// The real binary, driven only through its CLI and HTTP API, as a centre's
// staff would: init three centres, run the first, admit the others, join
// them, then kill -9 a follower and start it again.
func TestBinaryFederationJoinAndKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	bin := buildBinary(t)
	root := t.TempDir()
	type centre struct {
		id, dir, http string
		proc          *process
	}
	centres := []*centre{{id: "oslo"}, {id: "bergen"}, {id: "tromso"}}
	for _, c := range centres {
		c.dir = filepath.Join(root, c.id)
		c.http = fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t))
		out := run(t, bin, "init", "--dir", c.dir, "--centre", c.id, "--name", "Centre "+c.id,
			"--http", c.http,
			"--p2p", fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", fedtest.FreePort(t)),
			"--gossip", fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t)))
		if !strings.Contains(out, "peer id:") {
			t.Fatalf("init printed no peer id:\n%s", out)
		}
		if st, err := os.Stat(filepath.Join(c.dir, node.IdentityFile)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("identity file must exist with mode 0600: %v %v", st, err)
		}
	}
	first := centres[0]
	first.proc = start(t, bin, "run", "--dir", first.dir)
	waitReady(t, first.http)

	joinRe := regexp.MustCompile(`--join (\S+)`)
	for _, c := range centres[1:] {
		out := run(t, bin, "centre", "admit", "--dir", first.dir, "--from", c.dir)
		m := joinRe.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("admit printed no join address:\n%s", out)
		}
		c.proc = start(t, bin, "run", "--dir", c.dir, "--join", m[1])
		waitReady(t, c.http)
	}

	var view node.FederationView
	waitFor(t, 60*time.Second, "status --json to show three alive centres and one leader", func() bool {
		out, err := runErr(bin, "status", "--dir", first.dir, "--json")
		if err != nil {
			return false
		}
		view = node.FederationView{}
		if json.Unmarshal([]byte(out), &view) != nil || len(view.Centres) != 3 {
			return false
		}
		leaders := 0
		for _, c := range view.Centres {
			if c.Gossip != "alive" {
				return false
			}
			if c.RaftRole == "leader" {
				leaders++
			}
		}
		return leaders == 1 && view.Leader != ""
	})
	t.Logf("federation up: leader %s", view.Leader)

	// Kill -9 a follower; write to the roster while it is down.
	var victim *centre
	for _, c := range centres {
		if c.id != view.Leader {
			victim = c
			break
		}
	}
	victim.proc.kill9(t)
	vol := `{"id":"v-during-outage","centre":"oslo","alias":"Kari","channels":["chat"],"languages":["nb"],"capacity":2,"role":"volunteer"}`
	if code, body := httpDo(t, http.MethodPost, first.http, "/v1/volunteers", first.dir, vol); code != http.StatusOK {
		t.Fatalf("write during outage: %d %s", code, body)
	}

	victim.proc = start(t, bin, "run", "--dir", victim.dir)
	waitReady(t, victim.http)
	waitFor(t, 30*time.Second, "the restarted centre to catch up with its data", func() bool {
		code, body := httpDo(t, http.MethodGet, victim.http, "/v1/roster", victim.dir, "")
		return code == http.StatusOK && strings.Contains(body, "v-during-outage") && strings.Contains(body, `"oslo"`) && strings.Contains(body, `"tromso"`)
	})
	waitFor(t, 60*time.Second, "every centre alive again in the leader's view", func() bool {
		out, err := runErr(bin, "status", "--dir", first.dir, "--json")
		if err != nil {
			return false
		}
		var v node.FederationView
		if json.Unmarshal([]byte(out), &v) != nil || len(v.Centres) != 3 {
			return false
		}
		for _, c := range v.Centres {
			if c.Gossip != "alive" || c.RaftRole == "none" {
				return false
			}
		}
		return true
	})
	// The readable table names every centre.
	table := run(t, bin, "status", "--dir", victim.dir)
	for _, c := range centres {
		if !strings.Contains(table, c.id) {
			t.Fatalf("status table lacks %s:\n%s", c.id, table)
		}
	}

	// A coordinator removes a centre with the CLI: it leaves the roster and
	// the Raft group at every remaining centre.
	removed := centres[2]
	if removed.id == view.Leader {
		removed = centres[1]
	}
	run(t, bin, "centre", "remove", "--dir", first.dir, "--id", removed.id)
	waitFor(t, 30*time.Second, removed.id+" gone from the federation view", func() bool {
		out, err := runErr(bin, "status", "--dir", first.dir, "--json")
		var v node.FederationView
		if err != nil || json.Unmarshal([]byte(out), &v) != nil {
			return false
		}
		for _, c := range v.Centres {
			if c.ID == removed.id {
				return false
			}
		}
		return len(v.Centres) == 2 && !slices.Contains(v.Raft.Voters, removed.id) && !slices.Contains(v.Raft.Nonvoters, removed.id)
	})
	if out, err := runErr(bin, "centre", "remove", "--dir", first.dir, "--id", removed.id); err == nil || !strings.Contains(out, "unknown centre") {
		t.Fatalf("removing it again should fail with 'unknown centre': %v %s", err, out)
	}
}

// The binary is built once for all tests of this package.
var built struct {
	once sync.Once
	path string
	err  error
}

func buildBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "helpmesh-bin-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "helpmesh")
		cmd := exec.Command("go", "build", "-o", built.path, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("build helpmesh: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

func runErr(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := runErr(bin, args...)
	if err != nil {
		t.Fatalf("helpmesh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// process is a running helpmesh whose log is kept for failure reports.
type process struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  bytes.Buffer
	done chan struct{}
}

func start(t *testing.T, bin string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("log of helpmesh %s:\n%s", strings.Join(args, " "), lastLines(p.log.String(), 40))
			p.mu.Unlock()
		}
	})
	return p
}

// stop interrupts the process and waits for it to exit cleanly.
func (p *process) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("centre did not stop within 20 s of an interrupt")
	}
}

// output is everything the process logged so far.
func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *process) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func waitReady(t *testing.T, addr string) {
	t.Helper()
	waitFor(t, 60*time.Second, "ready at "+addr, func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func httpDo(t *testing.T, method, addr, path, dir, body string) (int, string) {
	t.Helper()
	token, err := node.LoadAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	begin := time.Now()
	deadline := begin.Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s: %v", what, time.Since(begin).Round(time.Millisecond))
}
