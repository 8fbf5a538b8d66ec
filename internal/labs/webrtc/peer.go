package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// newAPI is a pion API that speaks only PCMU (payload 0) and gathers only
// host candidates on loopback, no mDNS, no STUN/TURN.
func newAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000},
		PayloadType:        0,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("register PCMU: %w", err)
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)), nil
}

// answer sets offer on pc, answers it and waits until gathering is done
// (no trickle: the answer carries the candidates).
func answer(ctx context.Context, pc *webrtc.PeerConnection, offer webrtc.SessionDescription) (*webrtc.SessionDescription, error) {
	if err := pc.SetRemoteDescription(offer); err != nil {
		return nil, fmt.Errorf("answer: remote description: %w", err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		return nil, fmt.Errorf("answer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(ans); err != nil {
		return nil, fmt.Errorf("answer: local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, fmt.Errorf("answer: gathering: %w", ctx.Err())
	}
	return pc.LocalDescription(), nil
}

// sendWAV sends an 8 kHz WAV as PCMU, 160 bytes (20 ms) a packet, paced by
// a ticker, until it ends or ctx does.
func sendWAV(ctx context.Context, track *webrtc.TrackLocalStaticSample, path string) error {
	s, rate, err := readWAV(path)
	if err != nil {
		return err
	}
	if rate != 8000 {
		return fmt.Errorf("send wav: %d Hz, want 8000", rate)
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; i+160 <= len(s); i += 160 {
		buf := make([]byte, 160)
		for j := range buf {
			buf[j] = ulawEncode(s[i+j])
		}
		if err := track.WriteSample(media.Sample{Data: buf, Duration: 20 * time.Millisecond}); err != nil {
			return fmt.Errorf("send wav: %w", err)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// pcmuRecorder lays received PCMU payloads out by RTP timestamp (a lost
// packet stays silence) and writes them as an 8 kHz WAV.
type pcmuRecorder struct {
	started bool
	ts0     uint32
	pcm     []int16
	packets int
	pts     map[uint8]int
}

func (r *pcmuRecorder) add(pt uint8, ts uint32, payload []byte) {
	if r.pts == nil {
		r.pts = map[uint8]int{}
	}
	r.pts[pt]++
	if pt != 0 {
		return
	}
	if !r.started {
		r.started, r.ts0 = true, ts
	}
	off := int(int32(ts - r.ts0))
	if off < 0 || off > 8000*120 {
		return
	}
	if need := off + len(payload); need > len(r.pcm) {
		r.pcm = append(r.pcm, make([]int16, need-len(r.pcm))...)
	}
	for i, b := range payload {
		r.pcm[off+i] = ulawDecode[b]
	}
	r.packets++
}

func (r *pcmuRecorder) write(path string) error { return writeWAV(path, r.pcm, 8000) }
