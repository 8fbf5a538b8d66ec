package media

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
)

// The TURN user the test's coturn knows (--lt-cred-mech --user).
const (
	turnUser   = "helpmesh"
	turnSecret = "secret"
	turnRealm  = "helpmesh.test"
)

// A volunteer whose browser can reach the node only through the centre's
// TURN server (issue 13): a real coturn on 127.0.0.1, the node's engine
// given it as its ICE server, and a browser stand-in with the same server
// and ICETransportPolicy relay, so it gathers relay candidates only and
// every packet it sends goes through coturn. Voice passes both ways
// unchanged, and the pair the browser selected is a relay one. With a
// wrong password the relay-only browser has no path and never connects.
func TestBridgeThroughTURN(t *testing.T) {
	srv := startCoturn(t)
	url := "turn:" + srv.addr.String() + "?transport=udp"
	e, err := NewEngine(Config{Host: mustAddr("127.0.0.1"), Loopback: true,
		ICEServers:             []ICEServer{{URLs: []string{url}, Username: turnUser, Credential: turnSecret}},
		ICEDisconnectedTimeout: 2 * time.Second, ICEFailedTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	relayOnly := func(password string) webrtc.Configuration {
		return webrtc.Configuration{
			ICEServers:         []webrtc.ICEServer{{URLs: []string{url}, Username: turnUser, Credential: password}},
			ICETransportPolicy: webrtc.ICETransportPolicyRelay,
		}
	}
	open := func(t *testing.T) (*Leg, *net.UDPConn) {
		caller := udpEnd(t)
		leg, err := e.Open(context.Background(), Offer{Remote: addrOf(caller), Codec: PCMU})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = leg.Close() })
		return leg, caller
	}
	bridge := func(t *testing.T, leg *Leg, b *browser) string {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		answer, err := leg.Bridge(ctx, b.offer)
		if err != nil {
			t.Fatalf("Bridge: %v", err)
		}
		return answer
	}

	t.Run("relay", func(t *testing.T) {
		leg, caller := open(t)
		start := time.Now()
		b := newBrowserWith(t, []Codec{PCMU, PCMA}, PCMU, nil, relayOnly(turnSecret), nil)
		if got := candidateTypes(b.offer); got["relay"] == 0 || len(got) != 1 {
			t.Fatalf("relay-only browser offered candidates %v, want relay ones only", got)
		}
		t.Logf("browser gathered its relay candidate in %v", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		answer := bridge(t, leg, b)
		// The engine's IP filter (loopback only here) limits its host
		// candidates, not the relay one coturn allocated for it: pion
		// gathers that from Config.ICEServers on its own socket.
		if got := candidateTypes(answer); got["relay"] == 0 || got["host"] == 0 {
			t.Fatalf("node answered with candidates %v, want host and relay", got)
		}
		t.Logf("node gathered (host and relay) and answered in %v", time.Since(start).Round(time.Millisecond))
		start = time.Now()
		b.accept(t, answer)
		waitFor(t, "browser connected through TURN", b.connected, 15*time.Second)
		// About 2 s: pion, controlling here as the offerer, waits
		// RelayAcceptanceMinWait (2 s) before it nominates a relay pair.
		t.Logf("ICE and DTLS connected through coturn in %v", time.Since(start).Round(time.Millisecond))

		pair, err := b.pc.GetSenders()[0].Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil {
			t.Fatalf("browser's selected candidate pair: %v, %v", pair, err)
		}
		if pair.Local.Typ != webrtc.ICECandidateTypeRelay {
			t.Fatalf("browser's selected pair is local %s, remote %s: want a relay local candidate", pair.Local.Typ, pair.Remote.Typ)
		}
		t.Logf("browser's selected pair: local %s, remote %s", pair.Local.Typ, pair.Remote.Typ)

		c := call{leg: leg, caller: caller, browser: b}
		stop := make(chan struct{})
		done := make(chan struct{}, 2)
		go func() { sendCaller(t, c, nil, PCMU, stop); done <- struct{}{} }()
		go func() { sendBrowser(t, c.browser, PCMU, stop); done <- struct{}{} }()
		checkToBrowser(t, c.browser, PCMU)
		checkToCaller(t, c, PCMU)
		close(stop)
		<-done
		<-done
	})

	t.Run("wrong password", func(t *testing.T) {
		leg, _ := open(t)
		b := newBrowserWith(t, []Codec{PCMU, PCMA}, PCMU, nil, relayOnly("not-"+turnSecret), nil)
		if got := candidateTypes(b.offer); len(got) != 0 {
			t.Fatalf("relay-only browser with a wrong TURN password offered candidates %v, want none", got)
		}
		// Replaces newBrowserWith's handler: here every state counts.
		states := make(chan webrtc.PeerConnectionState, 16)
		b.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			select {
			case states <- s:
			default:
			}
		})
		b.accept(t, bridge(t, leg, b))
		const patience = 5 * time.Second // the right password connects in about 2 s
		timeout := time.After(patience)
		for {
			select {
			case s := <-states:
				switch s {
				case webrtc.PeerConnectionStateConnected:
					t.Fatal("browser connected without a relay it may use")
				case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
					t.Logf("browser went %s", s)
					return
				}
			case <-timeout:
				t.Logf("browser not connected within %v, as it must not be", patience)
				return
			}
		}
	})
}

var candidateType = regexp.MustCompile(`(?m)^a=candidate:.* typ ([a-z]+)`)

// candidateTypes counts an SDP's candidates by type (host, srflx, relay).
func candidateTypes(sdp string) map[string]int {
	n := map[string]int{}
	for _, m := range candidateType.FindAllStringSubmatch(sdp, -1) {
		n[m[1]]++
	}
	return n
}

// coturn is a turnserver child process listening on addr (UDP).
type coturn struct {
	addr netip.AddrPort
}

// startCoturn runs Debian's coturn on 127.0.0.1: no config file, no TLS,
// one long-term user, loopback peers allowed (coturn refuses them by
// default, and here every peer is on loopback). Its SQLite user database
// and pid file go to a temp dir, its log to the test's output if the
// test fails. It returns once coturn answers a STUN binding request.
func startCoturn(t *testing.T) coturn {
	t.Helper()
	bin, err := exec.LookPath("turnserver")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("turnserver not on PATH (Debian package coturn; .ci/run installs it): %v", err)
		}
		t.Skipf("turnserver not on PATH: apt-get install coturn to run this test: %v", err)
	}
	dir := t.TempDir()
	port := fedtest.FreePort(t)
	relayMin := 50000 + 2*rand.IntN(4000) // 32 relay ports somewhere in 50000-58031
	args := []string{
		"-n", // no config file: not /etc/turnserver.conf
		"--listening-ip=127.0.0.1", "--listening-port=" + strconv.Itoa(port),
		"--relay-ip=127.0.0.1",
		"--min-port=" + strconv.Itoa(relayMin), "--max-port=" + strconv.Itoa(relayMin+31),
		"--lt-cred-mech", "--user=" + turnUser + ":" + turnSecret, "--realm=" + turnRealm,
		"--no-cli", "--no-tls", "--no-dtls", "--no-tcp",
		"--allow-loopback-peers",
		"--log-file=stdout", // else it also writes /var/log or /var/tmp files
		"--userdb=" + dir + "/turndb",
		"--pidfile=" + dir + "/turnserver.pid",
	}
	var out syncBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start turnserver: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("turnserver %v\n%s", args, out.String())
		}
	})
	addr := netip.AddrPortFrom(mustAddr("127.0.0.1"), uint16(port))
	if err := stunPing(addr, exited, 10*time.Second); err != nil {
		t.Fatalf("turnserver on %v: %v", addr, err)
	}
	t.Logf("coturn answered STUN %v after start", time.Since(start).Round(time.Millisecond))
	return coturn{addr: addr}
}

// stunPing sends STUN binding requests to addr until one is answered,
// the process exits, or within passes.
func stunPing(addr netip.AddrPort, exited <-chan error, within time.Duration) error {
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return err
	}
	defer conn.Close()
	// RFC 5389 binding request: type 0x0001, length 0, magic cookie,
	// 12-byte transaction ID.
	req := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42}
	id := make([]byte, 12)
	for i := range id {
		id[i] = byte(rand.N(256))
	}
	req = append(req, id...)
	deadline := time.After(within)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	buf := make([]byte, 1500)
	for {
		if _, err := conn.Write(req); err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			// Before coturn binds, the read fails at once (ICMP port
			// unreachable) or times out; either way, try again.
			if n, err := conn.Read(buf); err == nil && n >= 20 &&
				buf[0] == 0x01 && buf[1] == 0x01 && bytes.Equal(buf[8:20], id) {
				return nil
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before answering STUN: %v", err)
		case <-deadline:
			return fmt.Errorf("no STUN answer within %v", within)
		case <-tick.C:
		}
	}
}

// syncBuffer collects a child process's output from its copying
// goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
