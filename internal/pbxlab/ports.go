package pbxlab

import (
	"fmt"
	"net"
	"testing"
)

// freeUDPPort returns a loopback UDP port nobody is bound to. Binding it
// without SO_REUSEADDR is the check: Kamailio sets SO_REUSEADDR, so a stale
// Kamailio on the port (which a second Kamailio would silently share,
// telephony-lab gotcha 4) makes this bind fail.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pbxlab: free UDP port: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// freeSIPPort returns a port free for UDP and TCP (baresip's sip_listen
// binds both) and whose TCP successor is free too (baresip's SIP over TLS).
func freeSIPPort(t testing.TB) int {
	t.Helper()
	for range 50 {
		p := freeUDPPort(t)
		if portsFree(p, p, true) && portsFree(p+1, p+1, true) {
			return p
		}
	}
	t.Fatal("pbxlab: no free SIP port after 50 tries")
	return 0
}

// freeTCPPort returns a loopback TCP port nobody listens on.
func freeTCPPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pbxlab: free TCP port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freeRTPRange returns an even first port of n free consecutive UDP ports,
// so each phone draws its RTP (and RTCP, port+1) from its own range and two
// phones in one test never collide.
func freeRTPRange(t testing.TB, n int) (first, last int) {
	t.Helper()
	for range 50 {
		p := freeUDPPort(t) &^ 1
		if p+n > 65535 {
			continue
		}
		if portsFree(p, p+n-1, false) {
			return p, p + n - 1
		}
	}
	t.Fatalf("pbxlab: no %d free consecutive UDP ports after 50 tries", n)
	return 0, 0
}

// portsFree binds every UDP (and, with tcp, TCP) port from first to last on
// loopback and releases them again.
func portsFree(first, last int, tcp bool) bool {
	var held []interface{ Close() error }
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for p := first; p <= last; p++ {
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		u, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return false
		}
		held = append(held, u)
		if tcp {
			l, err := net.Listen("tcp4", addr)
			if err != nil {
				return false
			}
			held = append(held, l)
		}
	}
	return true
}
