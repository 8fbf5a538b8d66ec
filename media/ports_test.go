package media

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The firewall's ranges hold: a caller leg binds in PortMin-PortMax (an
// even port), and the node's side of the browser's voice in
// ICEPortMin-ICEPortMax, as the candidates in its answer say.
func TestPortsStayInTheirRanges(t *testing.T) {
	e, err := NewEngine(Config{Host: netip.MustParseAddr("127.0.0.1"), Loopback: true,
		PortMin: 41000, PortMax: 41099, ICEPortMin: 42000, ICEPortMax: 42099})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	caller := udpEnd(t)
	leg, err := e.Open(context.Background(), Offer{Remote: addrOf(caller), Codec: PCMU})
	if err != nil {
		t.Fatal(err)
	}
	defer leg.Close()
	if p := leg.Local().Port(); p < 41000 || p > 41099 || p%2 != 0 {
		t.Fatalf("caller leg on port %d, want an even port in 41000-41099", p)
	}
	b := newBrowser(t, []Codec{PCMU}, PCMU)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := leg.Bridge(ctx, b.offer)
	if err != nil {
		t.Fatal(err)
	}
	candidates := 0
	for _, line := range strings.Split(answer, "\r\n") {
		f := strings.Fields(line)
		if !strings.HasPrefix(line, "a=candidate:") || len(f) < 6 {
			continue
		}
		candidates++
		if p, err := strconv.Atoi(f[5]); err != nil || p < 42000 || p > 42099 {
			t.Errorf("candidate outside 42000-42099: %s", line)
		}
	}
	if candidates == 0 {
		t.Fatalf("the answer has no candidates:\n%s", answer)
	}
	b.accept(t, answer)
	waitFor(t, "browser connected", b.connected, 10*time.Second)
}
