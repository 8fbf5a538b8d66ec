package media

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
)

const (
	tagCaller   = 0xC0
	tagBrowser  = 0xB0
	tagStranger = 0xEE
	tagWrongPT  = 0xDD
	want        = 50 // packets each way: one second of audio
)

// sendCaller sends caller packets every 20 ms from conn to to, until stop;
// before each, a stranger's packet (other socket) and a caller packet with
// another payload type, neither of which may be relayed.
func sendCaller(t testing.TB, c call, stranger *net.UDPConn, codec Codec, stop <-chan struct{}) {
	to := c.leg.Local()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		mk := func(tag byte, pt uint8) []byte {
			b, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: uint16(1000 + i),
				Timestamp: uint32(5000 + 160*i), SSRC: 0xCA11E7}, Payload: payloadFor(tag, i)}).Marshal()
			return b
		}
		if stranger != nil {
			_, _ = stranger.WriteToUDPAddrPort(mk(tagStranger, codec.PayloadType), to)
			_, _ = c.caller.WriteToUDPAddrPort(mk(tagWrongPT, 18), to)
			_, _ = c.caller.WriteToUDPAddrPort([]byte("not rtp"), to)
		}
		if _, err := c.caller.WriteToUDPAddrPort(mk(tagCaller, codec.PayloadType), to); err != nil {
			t.Errorf("caller send: %v", err)
			return
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}

// sendBrowser sends browser packets every 20 ms, each with a header
// extension (as Chromium's carry) that must not reach the caller.
func sendBrowser(t testing.TB, b *browser, codec Codec, stop <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: codec.PayloadType, SequenceNumber: uint16(i),
			Timestamp: uint32(160 * i)}, Payload: payloadFor(tagBrowser, i)}
		if err := p.Header.SetExtension(1, []byte{0x5a}); err != nil {
			t.Errorf("extension: %v", err)
			return
		}
		if err := b.track.WriteRTP(p); err != nil {
			t.Errorf("browser send: %v", err)
			return
		}
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}

// checkToBrowser takes want packets from the browser and checks each is a
// caller packet, byte for byte, in order, on one stream of the node's own.
func checkToBrowser(t *testing.T, b *browser, codec Codec) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	last, first := -1, true
	var ssrc uint32
	var seq uint16
	for n := 0; n < want; n++ {
		var p *rtp.Packet
		select {
		case p = <-b.got:
		case <-timeout:
			t.Fatalf("browser got %d of %d caller packets", n, want)
		}
		tag, i := index(p.Payload)
		if tag != tagCaller {
			t.Fatalf("browser got a packet tagged %#x (stranger %#x, wrong payload type %#x): relayed what it must not", tag, tagStranger, tagWrongPT)
		}
		if !bytes.Equal(p.Payload, payloadFor(tagCaller, i)) {
			t.Fatalf("caller packet %d changed on the way: % x", i, p.Payload[:8])
		}
		if p.PayloadType != codec.PayloadType {
			t.Fatalf("browser got payload type %d, want %d", p.PayloadType, codec.PayloadType)
		}
		if i <= last {
			t.Fatalf("caller packet %d after %d", i, last)
		}
		if !first && (p.SSRC != ssrc || p.SequenceNumber != seq+uint16(i-last)) {
			t.Fatalf("stream broken: ssrc %x seq %d after %x %d", p.SSRC, p.SequenceNumber, ssrc, seq)
		}
		if p.SSRC == 0xCA11E7 {
			t.Fatalf("caller's SSRC passed through")
		}
		first, last, ssrc, seq = false, i, p.SSRC, p.SequenceNumber
	}
}

// checkToCaller reads want packets at the caller and checks each comes
// from the leg, is a browser packet byte for byte, without extensions.
func checkToCaller(t *testing.T, c call, codec Codec) {
	t.Helper()
	buf := make([]byte, 1500)
	_ = c.caller.SetReadDeadline(time.Now().Add(15 * time.Second))
	last := -1
	for n := 0; n < want; n++ {
		k, from, err := c.caller.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("caller got %d of %d browser packets: %v", n, want, err)
		}
		if from != c.leg.Local() {
			t.Fatalf("packet from %v, not the leg %v", from, c.leg.Local())
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:k]); err != nil {
			t.Fatal(err)
		}
		tag, i := index(p.Payload)
		if tag != tagBrowser || !bytes.Equal(p.Payload, payloadFor(tagBrowser, i)) {
			t.Fatalf("browser packet changed on the way: % x", p.Payload[:8])
		}
		if p.PayloadType != codec.PayloadType || p.Extension || len(p.CSRC) != 0 || i <= last {
			t.Fatalf("packet %d (after %d): payload type %d, extension %v, csrc %v", i, last, p.PayloadType, p.Extension, p.CSRC)
		}
		last = i
	}
}

// G.711 passes through both ways unchanged, in either law.
func TestBridgeRelaysG711(t *testing.T) {
	for _, codec := range []Codec{PCMU, PCMA} {
		t.Run(codec.Name, func(t *testing.T) {
			e := newTestEngine(t, nil)
			c := bridged(t, e, codec)
			stop := make(chan struct{})
			done := make(chan struct{}, 2)
			go func() { sendCaller(t, c, nil, codec, stop); done <- struct{}{} }()
			go func() { sendBrowser(t, c.browser, codec, stop); done <- struct{}{} }()
			checkToBrowser(t, c.browser, codec)
			checkToCaller(t, c, codec)
			close(stop)
			<-done
			<-done
		})
	}
}

// Packets from anyone but the caller's address, of another payload type,
// or not RTP at all, are not relayed.
func TestBridgeIgnoresStrangers(t *testing.T) {
	e := newTestEngine(t, nil)
	c := bridged(t, e, PCMU)
	stranger := udpEnd(t)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { sendCaller(t, c, stranger, PCMU, stop); close(done) }()
	checkToBrowser(t, c.browser, PCMU) // fails on a stranger's or wrong-type packet
	close(stop)
	<-done
}

// Lost fires when the browser closes its PeerConnection, not before, and
// not for the node's own Close.
func TestLostWhenBrowserCloses(t *testing.T) {
	e := newTestEngine(t, nil)
	c := bridged(t, e, PCMU)
	select {
	case <-c.leg.Lost():
		t.Fatal("Lost before the browser left")
	default:
	}
	start := time.Now()
	if err := c.browser.pc.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Lost after the browser closed", c.leg.Lost(), 20*time.Second)
	t.Logf("Lost %v after the browser closed", time.Since(start).Round(time.Millisecond))

	other := bridged(t, e, PCMA)
	if err := other.leg.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-other.leg.Lost():
		t.Fatal("Lost fired for the node's own Close")
	default:
	}
}

func TestBridgeRefuses(t *testing.T) {
	e := newTestEngine(t, nil)
	caller := udpEnd(t)
	leg, err := e.Open(context.Background(), Offer{Remote: addrOf(caller), Codec: PCMU})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pcmaOnly := newBrowser(t, []Codec{PCMA}, PCMA)
	for _, tc := range []struct {
		name, offer string
		want        error
	}{
		{"garbage", "hello", ErrBadSDP},
		{"empty", "", ErrBadSDP},
		{"too long", pcmaOnly.offer + strings.Repeat("a=x:y\r\n", MaxSDPBytes/7), ErrBadSDP},
		{"SDP but not WebRTC", baresipOffer, ErrBadSDP},
		{"no PCMU", pcmaOnly.offer, ErrNoCodec},
	} {
		if _, err := leg.Bridge(ctx, tc.offer); !errors.Is(err, tc.want) {
			t.Errorf("%s: Bridge: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The refusals left the leg free; a good offer bridges, a second does not.
	b := newBrowser(t, []Codec{PCMU, PCMA}, PCMU)
	if _, err := leg.Bridge(ctx, b.offer); err != nil {
		t.Fatalf("Bridge after refusals: %v", err)
	}
	if _, err := leg.Bridge(ctx, newBrowser(t, []Codec{PCMU}, PCMU).offer); !errors.Is(err, ErrBridged) {
		t.Fatalf("second Bridge: %v, want ErrBridged", err)
	}
	if err := leg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := leg.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := leg.Bridge(ctx, b.offer); !errors.Is(err, ErrClosed) {
		t.Fatalf("Bridge after Close: %v, want ErrClosed", err)
	}
}

// Close ends every goroutine the engine started, pion's included.
func TestCloseEndsGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		e, err := NewEngine(Config{Host: mustAddr("127.0.0.1"), Loopback: true})
		if err != nil {
			t.Fatal(err)
		}
		var calls []call
		for _, codec := range []Codec{PCMU, PCMA} {
			calls = append(calls, bridged(t, e, codec))
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { sendBrowser(t, calls[0].browser, PCMU, stop); close(done) }()
		checkToCaller(t, calls[0], PCMU)
		close(stop)
		<-done
		if _, err := e.Open(context.Background(), Offer{Remote: addrOf(calls[0].caller), Codec: PCMU}); err != nil {
			t.Fatal(err) // a leg never bridged, closed by the engine
		}
		// A leg whose browser never answers back: only the leg's Close can
		// end its PeerConnection (nobody says goodbye over DTLS).
		half, err := e.Open(context.Background(), Offer{Remote: addrOf(calls[0].caller), Codec: PCMU})
		if err != nil {
			t.Fatal(err)
		}
		silent := newBrowser(t, []Codec{PCMU}, PCMU)
		if _, err := half.Bridge(context.Background(), silent.offer); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = silent.pc.GracefulClose() }() // after the engine's Close
		for _, c := range calls {
			_ = c.browser.pc.GracefulClose()
		}
		if err := e.Close(); err != nil {
			t.Fatalf("engine Close: %v", err)
		}
		if _, err := e.Open(context.Background(), Offer{Remote: addrOf(calls[0].caller), Codec: PCMU}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Open after Close: %v", err)
		}
	}()
	// pion's and the test browser's last goroutines finish asynchronously
	// for a moment after Close returns: wait for the count, bounded.
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Lost fires when the browser vanishes without closing anything (its
// socket goes dead): after the engine's ICE disconnected and failed
// timeouts (2 s + 2 s in these tests).
func TestLostWhenBrowserVanishes(t *testing.T) {
	e := newTestEngine(t, nil)
	caller := udpEnd(t)
	leg, err := e.Open(context.Background(), Offer{Remote: addrOf(caller), Codec: PCMU})
	if err != nil {
		t.Fatal(err)
	}
	sock := udpEnd(t)
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: sock})
	t.Cleanup(func() { _ = mux.Close() })
	b := newBrowserOn(t, []Codec{PCMU}, PCMU, mux, nil)
	answer, err := leg.Bridge(context.Background(), b.offer)
	if err != nil {
		t.Fatal(err)
	}
	b.accept(t, answer)
	waitFor(t, "browser connected", b.connected, 10*time.Second)
	start := time.Now()
	_ = sock.Close()
	select {
	case <-leg.Lost():
		t.Fatalf("Lost at once: the silent path was not what fired it")
	case <-time.After(time.Second):
	}
	waitFor(t, "Lost after the browser went silent", leg.Lost(), 20*time.Second)
	t.Logf("Lost %v after the browser went silent", time.Since(start).Round(time.Millisecond))
}

// A Bridge that fails, or one the SIP side undoes (the call ended while
// the browser was being answered), closes only that browser: the leg is
// not lost, and the next volunteer's browser bridges and carries the
// voice (review finding: a failed Bridge's closing PeerConnection used to
// close Lost for good, so the next answer was hung up at once).
func TestFailedOrUndoneBridgeIsNotALoss(t *testing.T) {
	e := newTestEngine(t, nil)
	caller := udpEnd(t)
	leg, err := e.Open(context.Background(), Offer{Remote: addrOf(caller), Codec: PCMU})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leg.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := leg.Bridge(ctx, baresipOffer); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("a SIP offer as a browser's: %v", err)
	}
	first := newBrowser(t, []Codec{PCMU}, PCMU)
	answer, err := leg.Bridge(ctx, first.offer)
	if err != nil {
		t.Fatal(err)
	}
	first.accept(t, answer)
	waitFor(t, "the first browser connected", first.connected, 10*time.Second)
	leg.Unbridge()

	second := newBrowser(t, []Codec{PCMU}, PCMU)
	answer, err = leg.Bridge(ctx, second.offer)
	if err != nil {
		t.Fatalf("bridge after Unbridge: %v", err)
	}
	second.accept(t, answer)
	waitFor(t, "the second browser connected", second.connected, 10*time.Second)
	c := call{leg: leg, caller: caller, browser: second}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); sendCaller(t, c, nil, PCMU, stop) }()
	checkToBrowser(t, second, PCMU)
	close(stop)
	<-done
	select {
	case <-leg.Lost():
		t.Fatal("Lost closed by a failed or undone Bridge")
	default:
	}
}
