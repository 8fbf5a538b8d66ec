package overflow

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/helpmesh/helpmesh/internal/goroutines"
	"github.com/helpmesh/helpmesh/switchboard"
)

// centres is a Directory over a fixed map.
type centres map[string]peer.ID

func (c centres) PeerOf(centre string) (peer.ID, bool) { p, ok := c[centre]; return p, ok }
func (c centres) CentreOf(p peer.ID) (string, bool) {
	for centre, id := range c {
		if id == p {
			return centre, true
		}
	}
	return "", false
}

// acceptingDesk reserves a volunteer who accepts at once.
type acceptingDesk struct{ lost chan int }

func (d acceptingDesk) Reserve(switchboard.IncomingOffer) (Reservation, error) {
	return acceptingReservation(d), nil
}

type acceptingReservation struct{ lost chan int }

func (acceptingReservation) Wait(context.Context) (string, error) { return "Kari", nil }
func (r acceptingReservation) Connect(switchboard.Peer) switchboard.PeerHandler {
	return lossProbe(r)
}
func (acceptingReservation) Release(string) {}

func (acceptingReservation) Token() string { return "" }

func (acceptingReservation) Resumable() bool { return false }

// lossProbe is a conversation's end that records the relay's loss.
type lossProbe struct{ lost chan int }

func (lossProbe) OnEvent(switchboard.Event) {}
func (p lossProbe) OnLost(n int)            { p.lost <- n }

func testHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

// relayGoroutines are the goroutines a Router starts for offers and relays.
var relayGoroutines = []string{"overflow.(*relay).writeLoop", "overflow.(*relay).readLoop",
	"overflow.(*Router).Offer.func", "overflow.(*Router).serveOffer.func"}

// A conversation relayed between two routers is live (heartbeats both
// ways) when both routers close while their hosts and the stream stay up:
// Close ends every goroutine of the offer and the relay itself, checked as
// soon as it returns.
func TestRouterCloseEndsRelayGoroutines(t *testing.T) {
	ha, hb := testHost(t), testHost(t)
	ha.Peerstore().AddAddrs(hb.ID(), hb.Addrs(), time.Hour)
	dir := centres{"a": ha.ID(), "b": hb.ID()}
	ra := NewRouter(RouterConfig{Centre: "a", Host: ha, Directory: dir, Logger: testLogger()})
	rb := NewRouter(RouterConfig{Centre: "b", Host: hb, Directory: dir, Logger: testLogger()})
	lostA, lostB := make(chan int, 1), make(chan int, 1)
	rb.Serve(acceptingDesk{lostB}, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ans, err := ra.Offer(ctx, "b", switchboard.OutgoingOffer{Contact: strings.Repeat("ab", 8), Channel: "chat", Language: "nb", Ring: 5 * time.Second})
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	if ans.Alias() != "Kari" {
		t.Fatalf("alias %q", ans.Alias())
	}
	peerA, err := ans.Confirm(lossProbe{lostA})
	if err != nil {
		t.Fatalf("confirm: %v", err)
	}
	if err := peerA.Send(switchboard.Event{Kind: switchboard.EventTyping}); err != nil {
		t.Fatal(err)
	}
	if len(goroutines.Await(5*time.Second, relayGoroutines...)) == 0 {
		t.Fatal("no relay goroutine found while the conversation is live: the test checks nothing")
	}

	ra.Close()
	rb.Close()
	if left := goroutines.Running(relayGoroutines...); len(left) > 0 {
		t.Fatalf("%d router goroutines outlived Close:\n%s", len(left), strings.Join(left, "\n\n"))
	}
	// A closed router starts nothing.
	if _, err := ra.Offer(ctx, "b", switchboard.OutgoingOffer{Contact: strings.Repeat("cd", 8), Channel: "chat", Language: "nb", Ring: time.Second}); err == nil {
		t.Fatal("a closed router's offer succeeded")
	}
}
