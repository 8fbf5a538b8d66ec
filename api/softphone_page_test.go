package api

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/helpmesh/helpmesh/internal/browsertest"
	"github.com/helpmesh/helpmesh/switchboard"
)

// pionPeer answers a browser offer as the node would: PCMU only, host
// candidates on loopback, no mDNS; connected is closed at ICE connected.
type pionPeer struct {
	pc        *webrtc.PeerConnection
	connected chan struct{}
}

func answerWithPion(ctx context.Context, offer string) (*pionPeer, string, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000},
		PayloadType:        0,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, "", err
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, "", err
	}
	p := &pionPeer{pc: pc, connected: make(chan struct{})}
	var done bool
	pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected && !done {
			done = true
			close(p.connected)
		}
	})
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "node")
	if err != nil {
		return nil, "", err
	}
	if _, err := pc.AddTrack(track); err != nil {
		return nil, "", err
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return nil, "", fmt.Errorf("pion: %w: %w", ErrBadSDP, err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, "", err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return nil, "", err
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	return p, pc.LocalDescription().SDP, nil
}

// TestConsolePageSoftphone: the volunteer switches the browser phone on, a
// call rings in the page, Answer sends a real browser offer that a pion
// peer (the node's stand-in) answers and connects to; Mute and Hang up
// work, and the categorisation follows.
func TestConsolePageSoftphone(t *testing.T) {
	vol := browsertest.NewMediaBrowser(t, "")
	fake := newFakeSoftphones()
	fake.ice = []ICEServer{}
	rig, calls := newSoftphoneRig(t, fake)
	rig.signUp(phoneVolunteer("v1"), "correct horse battery")

	peers := make(chan *pionPeer, 1)
	var call *switchboard.Call
	callSet := make(chan struct{})
	fake.setAnswer(func(ctx context.Context, _, offer string) (string, error) {
		<-callSet
		p, answer, err := answerWithPion(ctx, offer)
		if err != nil {
			return "", err
		}
		t.Cleanup(func() { _ = p.pc.Close() })
		if err := call.Arrived(); err != nil {
			return "", err
		}
		call.PickedUp()
		peers <- p
		return answer, nil
	})
	hungUp := make(chan struct{}, 1)
	go func() {
		// The node's side of a hang-up: the switchboard hears the end.
		<-fake.hangUps
		<-callSet
		call.Ended(switchboard.ByVolunteer)
		hungUp <- struct{}{}
	}()

	browsertest.Run(t, vol, "log in",
		chromedp.Navigate(rig.url+"/console"),
		chromedp.WaitVisible("#login-submit", chromedp.ByQuery),
		chromedp.SendKeys("#volunteer", "v1", chromedp.ByQuery),
		chromedp.SendKeys("#password", "correct horse battery", chromedp.ByQuery),
		chromedp.Click("#login-submit", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the browser phone choice", `!document.querySelector('#desk').hidden && !document.querySelector('#phone-browser-label').hidden
		&& /microphone/.test(document.querySelector('#phone-browser-help').textContent)`, 15*time.Second)
	browsertest.Run(t, vol, "browser phone on", chromedp.Click("#phone-browser", chromedp.ByQuery))
	browsertest.Wait(t, vol, "calls ring in this browser", `/Calls ring in this browser/.test(document.querySelector('#phone-in-use').textContent)
		&& document.querySelector('#phone-browser').checked && window.softphone.stream && window.softphone.stream.getAudioTracks()[0].readyState === 'live'`, 10*time.Second)
	browsertest.Run(t, vol, "phone on", chromedp.Click("#available-phone", chromedp.ByQuery))
	browsertest.Wait(t, vol, "available for phone", `document.querySelector('#available-phone').checked`, 10*time.Second)
	var bad []string
	browsertest.Eval(t, vol, accessibleNameProblems, &bad)
	if len(bad) > 0 {
		t.Errorf("controls without an accessible name: %v", bad)
	}

	call = placeCall(t, rig, calls)
	close(callSet)
	browsertest.Wait(t, vol, "the ringing card", `(() => { const o = document.querySelector('#offers .offer[data-browser]');
		return !!o && /Call for you/.test(o.textContent) && /language nb/.test(o.textContent) && !!o.querySelector('button.answer-call')
		  && !!o.querySelector('button.decline') && window.softphone.ringing; })()`, 10*time.Second)
	screenshot(t, vol, "volunteer-softphone-ringing")
	browsertest.Run(t, vol, "answer", chromedp.Click("#offers .offer button.answer-call", chromedp.ByQuery))

	offer := waitFor(t, "the browser's offer", fake.offers)
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		t.Fatalf("the browser's offer does not parse: %v", err)
	}
	audio := false
	for _, m := range sd.MediaDescriptions {
		audio = audio || m.MediaName.Media == "audio"
	}
	if !audio || !strings.Contains(offer, "PCMU/8000") {
		t.Fatalf("the browser's offer has no audio m-line with PCMU:\n%s", offer)
	}
	if len(offer) > MaxSDPBytes {
		t.Errorf("the browser's offer is %d bytes, over MaxSDPBytes", len(offer))
	}
	t.Logf("browser offer: %d bytes", len(offer))
	peer := waitFor(t, "pion's answer", peers)
	waitFor(t, "ICE connected at pion", peer.connected)
	browsertest.Wait(t, vol, "the in-call card", `(() => { const c = document.querySelector('#chats .chat.call[data-browser]');
		return !!c && !window.softphone.ringing && !document.querySelector('#offers .offer') && /In a call in this browser/.test(c.textContent)
		  && window.softphone.pc && window.softphone.pc.connectionState === 'connected' && !!c.querySelector('button.mute') && !!c.querySelector('button.hang-up'); })()`, 10*time.Second)
	screenshot(t, vol, "volunteer-softphone-in-call")

	browsertest.Run(t, vol, "mute", chromedp.Click("#chats .chat.call button.mute", chromedp.ByQuery))
	browsertest.Wait(t, vol, "muted", `!window.softphone.stream.getAudioTracks()[0].enabled && document.querySelector('button.mute').getAttribute('aria-pressed') === 'true'`, 5*time.Second)
	browsertest.Run(t, vol, "unmute", chromedp.Click("#chats .chat.call button.mute", chromedp.ByQuery))
	browsertest.Wait(t, vol, "unmuted", `window.softphone.stream.getAudioTracks()[0].enabled`, 5*time.Second)

	browsertest.Run(t, vol, "hang up", chromedp.Click("#chats .chat.call button.hang-up", chromedp.ByQuery))
	waitFor(t, "the node's hang-up", hungUp)
	browsertest.Wait(t, vol, "the categorisation form", `(() => { const c = document.querySelector('#chats .chat.call');
		return !!c && !!c.querySelector('.categorise') && /You hung up/.test(c.textContent) && window.softphone.pc === null; })()`, 10*time.Second)
}
