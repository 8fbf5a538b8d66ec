package media

import (
	"context"
	"fmt"
	"time"

	"github.com/pion/rtp"
)

// Play sends p to the caller as RTP in the leg's codec, 160 samples
// (20 ms) a packet, paced by the clock, and returns when the last packet
// has had its 20 ms, or with ctx's error, or ErrClosed when the leg
// closes. While it plays, the browser's audio (if bridged) does not reach
// the caller; the prompt continues the node's stream to the caller (same
// SSRC, marker set). One Play at a time: a second waits for the first.
func (l *Leg) Play(ctx context.Context, p *Prompt) error {
	if p == nil || len(p.pcm) == 0 {
		return fmt.Errorf("play: empty prompt: %w", ErrBadPrompt)
	}
	select {
	case l.playSem <- struct{}{}:
		defer func() { <-l.playSem }()
	case <-ctx.Done():
		return fmt.Errorf("play: %w", ctx.Err())
	case <-l.done:
		return fmt.Errorf("play: %w", ErrClosed)
	}
	l.outMu.Lock()
	l.playing = true
	l.prompts++
	src := 1<<32 | l.prompts
	l.outMu.Unlock()
	defer func() {
		l.outMu.Lock()
		l.playing = false
		l.outMu.Unlock()
	}()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var hdr rtp.Header
	hdr.Version, hdr.PayloadType = 2, l.codec.PayloadType
	payload := make([]byte, frame)
	for off := 0; off < len(p.pcm); off += frame {
		chunk := p.pcm[off:min(off+frame, len(p.pcm))]
		l.codec.encode(payload, chunk)
		// The last frame is padded with silence to a whole packet.
		silence := l.codec.silence()
		for i := len(chunk); i < frame; i++ {
			payload[i] = silence
		}
		pkt := rtp.Packet{Header: hdr, Payload: payload}
		if err := l.send(&pkt, src, time.Now(), true); err != nil {
			select {
			case <-l.done:
				return fmt.Errorf("play: %w", ErrClosed)
			default:
				return fmt.Errorf("play: %w", err)
			}
		}
		hdr.SequenceNumber++
		hdr.Timestamp += frame
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("play: %w", ctx.Err())
		case <-l.done:
			return fmt.Errorf("play: %w", ErrClosed)
		}
	}
	return nil
}

// silence is the codec's code for zero.
func (c Codec) silence() byte {
	if c == PCMA {
		return alawEncode(0)
	}
	return ulawEncode(0)
}
