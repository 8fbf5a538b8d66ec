package overflow

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/helpmesh/helpmesh/internal/wire"
	"github.com/helpmesh/helpmesh/switchboard"
)

// callDesk holds a phone volunteer at once and hands out a token, as a
// switchboard does for a call; it records what the relay brings.
type callDesk struct {
	mu       sync.Mutex
	offers   []switchboard.IncomingOffer
	peer     switchboard.Peer
	released string
}

func (d *callDesk) Reserve(o switchboard.IncomingOffer) (Reservation, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.offers = append(d.offers, o)
	return &callReservation{d: d}, nil
}

type callReservation struct{ d *callDesk }

func (r *callReservation) Wait(context.Context) (string, error) { return "Kari", nil }
func (r *callReservation) Token() string                        { return "K7QJ2M4XWZ3ABCDEFGHIJKLMNO" }
func (r *callReservation) Resumable() bool                      { return false }
func (r *callReservation) Release(reason string) {
	r.d.mu.Lock()
	r.d.released = reason
	r.d.mu.Unlock()
}
func (r *callReservation) Connect(p switchboard.Peer) switchboard.PeerHandler {
	r.d.mu.Lock()
	r.d.peer = p
	r.d.mu.Unlock()
	return lossProbe{make(chan int, 1)}
}

// eventProbe records what a relay delivers to the owner.
type eventProbe struct{ events chan switchboard.Event }

func (p eventProbe) OnEvent(e switchboard.Event) { p.events <- e }
func (p eventProbe) OnLost(int)                  { close(p.events) }

// A phone offer travels on the call protocol: the answering centre's
// acceptance carries the token, and the call's progress comes back over
// the relay.
func TestCallOfferCarriesTheTokenAndTheProgress(t *testing.T) {
	ha, hb := testHost(t), testHost(t)
	ha.Peerstore().AddAddrs(hb.ID(), hb.Addrs(), time.Hour)
	dir := centres{"a": ha.ID(), "b": hb.ID()}
	ra := NewRouter(RouterConfig{Centre: "a", Host: ha, Directory: dir, Logger: testLogger()})
	rb := NewRouter(RouterConfig{Centre: "b", Host: hb, Directory: dir, Logger: testLogger()})
	defer ra.Close()
	defer rb.Close()
	desk := &callDesk{}
	rb.Serve(desk, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ans, err := ra.Offer(ctx, "b", switchboard.OutgoingOffer{Contact: "c0ffeec0ffeec0ffee", Channel: switchboard.ChannelPhone, Language: "nb", Ring: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if ans.Token() != "K7QJ2M4XWZ3ABCDEFGHIJKLMNO" {
		t.Fatalf("token %q", ans.Token())
	}
	probe := eventProbe{make(chan switchboard.Event, 4)}
	if _, err := ans.Confirm(probe); err != nil {
		t.Fatal(err)
	}
	var peer switchboard.Peer
	for peer == nil {
		desk.mu.Lock()
		peer = desk.peer
		desk.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	_ = peer.Send(switchboard.Event{Kind: switchboard.EventAnswered})
	_ = peer.Send(switchboard.Event{Kind: switchboard.EventEnded, By: switchboard.ByCaller})
	peer.Close("call over")
	for _, want := range []switchboard.EventKind{switchboard.EventAnswered, switchboard.EventEnded} {
		select {
		case e := <-probe.events:
			if e.Kind != want {
				t.Fatalf("got %+v, want %s", e, want)
			}
		case <-ctx.Done():
			t.Fatalf("no %s", want)
		}
	}
	if o := desk.offers[0]; o.Channel != switchboard.ChannelPhone || o.From != "a" {
		t.Fatalf("offer %+v", o)
	}
}

// A centre on a release without the call protocol cannot take a call: the
// attempt counts as a decline, so the caller goes to the next centre.
func TestCallOfferToAnOlderCentreIsADecline(t *testing.T) {
	ha, hb := testHost(t), testHost(t)
	ha.Peerstore().AddAddrs(hb.ID(), hb.Addrs(), time.Hour)
	dir := centres{"a": ha.ID(), "b": hb.ID()}
	ra := NewRouter(RouterConfig{Centre: "a", Host: ha, Directory: dir, Logger: testLogger()})
	defer ra.Close()
	// What an older release serves: offer/1 only.
	hb.SetStreamHandler(offerProtocol, func(s network.Stream) { _ = s.Reset() })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := ra.Offer(ctx, "b", switchboard.OutgoingOffer{Contact: "c0ffeec0ffeec0ffee", Channel: switchboard.ChannelPhone, Language: "nb", Ring: time.Second})
	if !errors.Is(err, switchboard.ErrDeclined) {
		t.Fatalf("call offer to an older centre: %v, want ErrDeclined", err)
	}
}

// A phone offer that arrives on the chat protocol (what an older owner
// would never send, and a confused one must not get rung as a chat) is
// declined, and so is a chat on the call protocol.
func TestCallOfferOnlyOnTheCallProtocol(t *testing.T) {
	ha, hb := testHost(t), testHost(t)
	ha.Peerstore().AddAddrs(hb.ID(), hb.Addrs(), time.Hour)
	dir := centres{"a": ha.ID(), "b": hb.ID()}
	rb := NewRouter(RouterConfig{Centre: "b", Host: hb, Directory: dir, Logger: testLogger()})
	defer rb.Close()
	desk := &callDesk{}
	rb.Serve(desk, nil)
	for _, tc := range []struct {
		proto, channel string
	}{{offerProtocol, switchboard.ChannelPhone}, {callOfferProtocol, switchboard.ChannelChat}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := ha.NewStream(ctx, hb.ID(), protocol.ID(tc.proto))
		if err != nil {
			t.Fatal(err)
		}
		if err := wire.Write(s, frame{Type: frameOffer, Contact: "c0ffeec0ffeec0ffee", Channel: tc.channel, Language: "nb", RingMillis: 1000}, maxFrame); err != nil {
			t.Fatal(err)
		}
		var f frame
		err = wire.Read(s, &f, maxFrame)
		cancel()
		if err != nil || f.Type != frameDeclined {
			t.Fatalf("%s on %s: %+v %v, want declined", tc.channel, tc.proto, f, err)
		}
	}
	if len(desk.offers) != 0 {
		t.Fatalf("the desk was asked: %+v", desk.offers)
	}
}
