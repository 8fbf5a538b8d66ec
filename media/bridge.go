package media

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// Bridge connects the leg to a volunteer's browser. browserOffer is the
// browser's SDP offer with ICE gathering complete (no trickle); the
// returned answer carries the node's candidates, gathering complete too.
// The answer names only the leg's G.711, so the browser sends and
// expects exactly what the caller does, and from then on audio is
// relayed both ways with only the RTP headers rewritten.
//
// Errors: ErrBadSDP (longer than MaxSDPBytes, or unparsable), ErrNoCodec
// (no audio stream offering the leg's codec), ErrBridged (the leg has a
// browser already, or a Bridge is under way), ErrClosed, or ctx's error.
// A Bridge that fails leaves the leg free for another.
func (l *Leg) Bridge(ctx context.Context, browserOffer string) (string, error) {
	if len(browserOffer) > MaxSDPBytes {
		return "", fmt.Errorf("bridge: offer of %d bytes, at most %d: %w", len(browserOffer), MaxSDPBytes, ErrBadSDP)
	}
	l.mu.Lock()
	switch {
	case l.closed:
		l.mu.Unlock()
		return "", fmt.Errorf("bridge: %w", ErrClosed)
	case l.bridging:
		l.mu.Unlock()
		return "", fmt.Errorf("bridge: %w", ErrBridged)
	}
	l.bridging = true
	l.mu.Unlock()

	answer, err := l.bridge(ctx, browserOffer)
	if err != nil {
		l.Unbridge()
		return "", fmt.Errorf("bridge: %w", err)
	}
	return answer, nil
}

// Unbridge closes the browser's side, if any, and leaves the leg free for
// another Bridge: a failed Bridge does it, and so does the SIP side when
// the call ended while the browser was being answered (a second
// volunteer may then be rung on the same leg). Closing that browser does
// not count as losing it: Lost stays open.
func (l *Leg) Unbridge() {
	l.mu.Lock()
	pc := l.pc
	l.pc, l.bridging = nil, false
	l.mu.Unlock()
	l.toBrowser.Store(nil)
	if pc != nil {
		_ = pc.GracefulClose()
	}
}

func (l *Leg) bridge(ctx context.Context, offer string) (string, error) {
	if err := offersCodec(offer, l.codec); err != nil {
		return "", err
	}
	api, err := l.e.api(l.codec)
	if err != nil {
		return "", err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: l.e.iceServers()})
	if err != nil {
		return "", fmt.Errorf("peer connection: %w", err)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		_ = pc.GracefulClose()
		return "", ErrClosed
	}
	l.pc = pc
	l.mu.Unlock()

	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		l.log.Debug("browser connection", "local", l.local, "state", s.String())
		if s != webrtc.PeerConnectionStateFailed && s != webrtc.PeerConnectionStateClosed {
			return
		}
		// Only the browser the leg is bridged to: one a failed Bridge or
		// Unbridge closed is not a lost call.
		l.mu.Lock()
		current := l.pc == pc
		l.mu.Unlock()
		if current {
			l.markLost()
		}
	})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		l.spawn(func() { l.readBrowser(tr) })
	})
	track, err := webrtc.NewTrackLocalStaticRTP(capability(l.codec), "audio", "helpmesh")
	if err != nil {
		return "", fmt.Errorf("track: %w", err)
	}
	// Added before the offer is set, the track takes the browser's
	// sendrecv transceiver instead of asking for a second one.
	sender, err := pc.AddTrack(track)
	if err != nil {
		return "", fmt.Errorf("add track: %w", err)
	}
	// RTCP from the browser (receiver reports) must be read for pion's
	// interceptors to see it; nothing here needs it otherwise.
	l.spawn(func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	})
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadSDP, err)
	}
	// An offer pion takes but cannot answer (no usable codec after all,
	// contradictory directions) is the offer's fault.
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", fmt.Errorf("answer: %w: %w", ErrBadSDP, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("answer: %w: %w", ErrBadSDP, err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("gathering: %w", ctx.Err())
	case <-l.done:
		return "", ErrClosed
	}
	l.toBrowser.Store(track)
	return pc.LocalDescription().SDP, nil
}

// offersCodec checks that the browser's offer parses and has a live audio
// stream offering c: by its static payload type, or by name at 8000 Hz
// under a dynamic one. pion would answer an offer without it with a
// rejected stream and no error; this says why instead.
func offersCodec(offer string, c Codec) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(offer); err != nil {
		return fmt.Errorf("browser offer: %w", ErrBadSDP)
	}
	if len(sd.MediaDescriptions) == 0 {
		return fmt.Errorf("browser offer: no media: %w", ErrBadSDP)
	}
	pt := strconv.Itoa(int(c.PayloadType))
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != "audio" || md.MediaName.Port.Value == 0 {
			continue
		}
		if slices.Contains(md.MediaName.Formats, pt) {
			return nil
		}
		for _, a := range md.Attributes {
			if a.Key != "rtpmap" {
				continue
			}
			f, enc, ok := strings.Cut(a.Value, " ")
			if ok && strings.EqualFold(enc, c.Name+"/8000") && slices.Contains(md.MediaName.Formats, f) {
				return nil
			}
		}
	}
	return fmt.Errorf("browser offer: no audio with %s: %w", c.Name, ErrNoCodec)
}
