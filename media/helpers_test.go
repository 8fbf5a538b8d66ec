package media

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func newTestEngine(t testing.TB, observe func(bool, time.Duration)) *Engine {
	t.Helper()
	e, err := NewEngine(Config{Host: netip.MustParseAddr("127.0.0.1"), Loopback: true,
		ICEDisconnectedTimeout: 2 * time.Second, ICEFailedTimeout: 2 * time.Second, observe: observe})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// udpEnd is a plain UDP socket: the caller's phone, or a stranger.
func udpEnd(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// browser is a pion PeerConnection standing in for the volunteer's
// Chromium: it offers PCMU and PCMA (as Chromium does, among others),
// sends on track, and hands what it receives to got.
type browser struct {
	pc        *webrtc.PeerConnection
	track     *webrtc.TrackLocalStaticRTP
	got       chan *rtp.Packet
	connected chan struct{}
	offer     string
}

func newBrowser(t testing.TB, offers []Codec, send Codec) *browser {
	t.Helper()
	return newBrowserOn(t, offers, send, nil, nil)
}

// newBrowserOn is newBrowser whose ICE runs on mux's socket, if given:
// closing that socket makes the browser vanish without a word, as a
// killed tab or a dropped network does. With onRTP, each packet received
// goes to it, on the track's reader goroutine, instead of to got (the
// benchmark's load times packets as they arrive, not when a channel is
// read).
func newBrowserOn(t testing.TB, offers []Codec, send Codec, mux ice.UDPMux, onRTP func(*rtp.Packet)) *browser {
	t.Helper()
	return newBrowserWith(t, offers, send, mux, webrtc.Configuration{}, onRTP)
}

// newBrowserWith is newBrowserOn with the browser's RTCConfiguration
// (ICE servers, transport policy), as the console page would set it.
func newBrowserWith(t testing.TB, offers []Codec, send Codec, mux ice.UDPMux, conf webrtc.Configuration, onRTP func(*rtp.Packet)) *browser {
	t.Helper()
	m := &webrtc.MediaEngine{}
	for _, c := range offers {
		if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: capability(c),
			PayloadType: webrtc.PayloadType(c.PayloadType)}, webrtc.RTPCodecTypeAudio); err != nil {
			t.Fatal(err)
		}
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	if mux != nil {
		se.SetICEUDPMux(mux)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(conf)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{pc: pc, got: make(chan *rtp.Packet, 4096), connected: make(chan struct{})}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = pc.GracefulClose(); wg.Wait() })
	var once sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(b.connected) })
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if onRTP != nil {
					onRTP(p)
					continue
				}
				select {
				case b.got <- p:
				default:
				}
			}
		}()
	})
	if b.track, err = webrtc.NewTrackLocalStaticRTP(capability(send), "audio", "browser"); err != nil {
		t.Fatal(err)
	}
	sender, err := pc.AddTrack(b.track)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	b.offer = pc.LocalDescription().SDP
	return b
}

func (b *browser) accept(t testing.TB, answer string) {
	t.Helper()
	if err := b.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t testing.TB, what string, ch <-chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not within %v", what, d)
	}
}

// call is a bridged leg with its caller socket and browser, connected.
type call struct {
	leg     *Leg
	caller  *net.UDPConn
	browser *browser
}

func bridged(t testing.TB, e *Engine, c Codec) call {
	t.Helper()
	caller := udpEnd(t)
	leg, err := e.Open(context.Background(), Offer{Remote: addrOf(caller), Codec: c})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = leg.Close() })
	b := newBrowser(t, []Codec{PCMU, PCMA}, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer, err := leg.Bridge(ctx, b.offer)
	if err != nil {
		t.Fatalf("Bridge: %v", err)
	}
	b.accept(t, answer)
	waitFor(t, "browser connected", b.connected, 10*time.Second)
	return call{leg: leg, caller: caller, browser: b}
}

// payloadFor is packet i's G.711 payload: 160 bytes that tell packets
// apart (index in the first two bytes) and cover every byte value.
func payloadFor(tag byte, i int) []byte {
	p := make([]byte, 160)
	p[0], p[1], p[2] = tag, byte(i>>8), byte(i)
	for j := 3; j < len(p); j++ {
		p[j] = byte(i*7 + j)
	}
	return p
}

func index(p []byte) (byte, int) {
	if len(p) < 3 {
		return 0, -1
	}
	return p[0], int(p[1])<<8 | int(p[2])
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
