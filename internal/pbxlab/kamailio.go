package pbxlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/logsink"
)

// Kamailio is one running PBX, listening on its own loopback UDP port.
type Kamailio struct {
	port int
	cmd  *exec.Cmd
	log  *logsink.Buffer
	proc *process
}

// ConfigPath is the absolute path of deploy/pbx/kamailio.cfg, found by
// walking up from the test's working directory to the module root, so a test
// in any package can start the centre's real PBX configuration.
func ConfigPath(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("pbxlab: config path: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "deploy", "pbx", "kamailio.cfg")
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("pbxlab: config path: no go.mod above the working directory")
		}
		dir = up
	}
}

// Quote makes a string define's value: Kamailio's preprocessor needs the
// double quotes in -A 'NODE="sip:..."'.
func Quote(s string) string { return `"` + s + `"` }

// StartKamailio runs `kamailio -DD -E` with cfgPath on a fresh loopback UDP
// port (the LISTEN define; defines must not set it) and the given -A
// defines, values verbatim (wrap strings with Quote). It returns once the PBX
// answers an OPTIONS with 200 and owns its port alone, and stops it with
// SIGTERM to its PID in t.Cleanup.
func StartKamailio(t testing.TB, cfgPath string, defines map[string]string) *Kamailio {
	t.Helper()
	if _, ok := defines["LISTEN"]; ok {
		t.Fatal("pbxlab: StartKamailio picks LISTEN itself")
	}
	port := freeUDPPort(t)
	args := []string{"-DD", "-E", "-m", "32", "-M", "4", "-Y", t.TempDir(), "-f", cfgPath,
		"-A", fmt.Sprintf("LISTEN=udp:127.0.0.1:%d", port)}
	names := make([]string, 0, len(defines))
	for name := range defines {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		args = append(args, "-A", name+"="+defines[name])
	}
	k := &Kamailio{port: port, log: &logsink.Buffer{}}
	k.cmd = exec.Command("kamailio", args...)
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	// Its own process group: if SIGTERM is not enough, SIGKILL reaches the
	// workers Kamailio forked too.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	proc, err := startProcess(k.cmd)
	if err != nil {
		t.Fatalf("pbxlab: start kamailio: %v", err)
	}
	k.proc = proc
	t.Cleanup(func() {
		if err := k.Stop(); err != nil {
			t.Errorf("pbxlab: %v\n%s", err, tail(k.log.String(), 40))
		}
		if t.Failed() {
			t.Logf("kamailio %s log (tail):\n%s", k.Addr(), tail(k.log.String(), 40))
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := k.waitReady(ctx); err != nil {
		t.Fatalf("pbxlab: kamailio on %s: %v\n%s", k.Addr(), err, tail(k.log.String(), 40))
	}
	if n, err := udpSockets(port); err != nil || n != 1 {
		t.Fatalf("pbxlab: kamailio on %s: %d sockets on the port (want 1: another process shares it): %v", k.Addr(), n, err)
	}
	return k
}

// waitReady pings until the PBX answers 200 or its process ends.
func (k *Kamailio) waitReady(ctx context.Context) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		status, err := Ping(pctx, k.Addr())
		cancel()
		if err == nil && strings.HasPrefix(status, "SIP/2.0 200") {
			return nil
		}
		select {
		case <-k.proc.done:
			return fmt.Errorf("wait ready: exited early: %w", k.proc.err)
		case <-ctx.Done():
			return fmt.Errorf("wait ready: no 200 to OPTIONS (last %q, %v): %w", status, err, ctx.Err())
		case <-time.After(50 * time.Millisecond): // a refused ping returns at once
		}
	}
}

// Addr is the PBX's SIP address, "127.0.0.1:port" (UDP).
func (k *Kamailio) Addr() string { return fmt.Sprintf("127.0.0.1:%d", k.port) }

// URI is user's SIP URI at this PBX, e.g. sip:1000@127.0.0.1:port.
func (k *Kamailio) URI(user string) string { return "sip:" + user + "@" + k.Addr() }

// Log is what Kamailio wrote so far (stderr and stdout); the config's
// NOTICE lines say which way each call went.
func (k *Kamailio) Log() string { return k.log.String() }

// Stop sends SIGTERM to Kamailio's main process and waits for it (SIGKILL to
// its process group after 5 s). Safe to call more than once; t.Cleanup calls
// it too.
func (k *Kamailio) Stop() error {
	if err := k.proc.stop(syscall.SIGTERM, 5*time.Second); err != nil {
		return fmt.Errorf("stop kamailio %s: %w", k.Addr(), err)
	}
	return nil
}

// udpSockets counts the distinct sockets bound to 127.0.0.1:port in
// /proc/net/udp. Kamailio's workers share one socket (one inode); a second
// inode is another process on the same port (gotcha 4).
func udpSockets(port int) (int, error) {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0, fmt.Errorf("count udp sockets: %w", err)
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 9 && f[1] == local {
			inodes[f[9]] = true
		}
	}
	if len(inodes) == 0 {
		return 0, errors.New("count udp sockets: none bound")
	}
	return len(inodes), nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
