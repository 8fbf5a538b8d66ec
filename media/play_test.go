package media

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// wavBytes is a WAV file: PCM, channels, rate, bits as given.
func wavBytes(pcm []int16, channels, rate, bits int) []byte {
	b := make([]byte, 44+2*len(pcm))
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*len(pcm)))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], uint16(channels))
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*channels*bits/8))
	binary.LittleEndian.PutUint16(b[32:], uint16(channels*bits/8))
	binary.LittleEndian.PutUint16(b[34:], uint16(bits))
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*len(pcm)))
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(v))
	}
	return b
}

// tone is n samples of a 440 Hz sine with a rising envelope.
func tone(n int) []int16 {
	s := make([]int16, n)
	for i := range s {
		s[i] = int16(12000 * float64(i) / float64(n) * math.Sin(2*math.Pi*440*float64(i)/8000))
	}
	return s
}

func TestLoadPrompt(t *testing.T) {
	pcm := tone(4321)
	p, err := LoadPrompt(wavBytes(pcm, 1, 8000, 16))
	if err != nil || len(p.pcm) != len(pcm) || p.pcm[1234] != pcm[1234] {
		t.Fatalf("LoadPrompt: %v", err)
	}
	if d := p.Duration(); d != 540125*time.Microsecond {
		t.Fatalf("Duration %v", d)
	}
	// A streamed WAV claiming more data than it holds is taken as it is.
	streamed := wavBytes(pcm, 1, 8000, 16)
	binary.LittleEndian.PutUint32(streamed[40:], 0xffffffff)
	if p, err := LoadPrompt(streamed); err != nil || len(p.pcm) != len(pcm) {
		t.Fatalf("streamed WAV: %v", err)
	}
	for name, b := range map[string][]byte{
		"empty":     nil,
		"not a WAV": []byte("RIFF1234WAVX"),
		"stereo":    wavBytes(pcm, 2, 8000, 16),
		"16 kHz":    wavBytes(pcm, 1, 16000, 16),
		"8-bit":     wavBytes(pcm, 1, 8000, 8),
		"no data":   wavBytes(pcm, 1, 8000, 16)[:36],
		"no sample": wavBytes(nil, 1, 8000, 16),
		"too large": wavBytes(make([]int16, MaxPromptBytes/2), 1, 8000, 16),
		"truncated": wavBytes(pcm, 1, 8000, 16)[:30],
	} {
		if _, err := LoadPrompt(b); !errors.Is(err, ErrBadPrompt) {
			t.Errorf("%s: LoadPrompt: %v, want ErrBadPrompt", name, err)
		}
	}
}

func TestDefaultPrompt(t *testing.T) {
	if len(defaultPromptWAV) >= 100<<10 {
		t.Errorf("embedded prompt is %d bytes, keep it under 100 KiB", len(defaultPromptWAV))
	}
	if d := DefaultPrompt().Duration(); d < 4*time.Second || d > 10*time.Second {
		t.Errorf("default prompt lasts %v", d)
	}
}

// Play sends the prompt in the leg's codec, 20 ms a packet, in real time,
// on one stream, and it decodes back to the prompt within G.711's error.
func TestPlay(t *testing.T) {
	for _, codec := range []Codec{PCMU, PCMA} {
		t.Run(codec.Name, func(t *testing.T) {
			e := newTestEngine(t, nil)
			caller := udpEnd(t)
			leg, err := e.Open(context.Background(), Offer{Remote: addrOf(caller), Codec: codec})
			if err != nil {
				t.Fatal(err)
			}
			pcm := tone(8000/2 + 37) // half a second and a partial packet
			p, err := LoadPrompt(wavBytes(pcm, 1, 8000, 16))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			played := make(chan error, 1)
			go func() { played <- leg.Play(context.Background(), p) }()
			wantPackets := (len(pcm) + 159) / 160
			got := make([]int16, 0, wantPackets*160)
			buf := make([]byte, 1500)
			_ = caller.SetReadDeadline(time.Now().Add(10 * time.Second))
			var first rtp.Header
			for n := 0; n < wantPackets; n++ {
				k, from, err := caller.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("got %d of %d packets: %v", n, wantPackets, err)
				}
				var pkt rtp.Packet
				if err := pkt.Unmarshal(buf[:k]); err != nil || from != leg.Local() {
					t.Fatalf("packet from %v: %v", from, err)
				}
				if n == 0 {
					first = pkt.Header
					if !pkt.Marker {
						t.Error("first packet without marker")
					}
				}
				if pkt.PayloadType != codec.PayloadType || len(pkt.Payload) != 160 || pkt.SSRC != first.SSRC ||
					pkt.SequenceNumber != first.SequenceNumber+uint16(n) || pkt.Timestamp != first.Timestamp+uint32(160*n) {
					t.Fatalf("packet %d: pt %d, %d bytes, ssrc %x seq %d ts %d (first %x %d %d)", n, pkt.PayloadType,
						len(pkt.Payload), pkt.SSRC, pkt.SequenceNumber, pkt.Timestamp, first.SSRC, first.SequenceNumber, first.Timestamp)
				}
				dec := make([]int16, 160)
				codec.decode(dec, pkt.Payload)
				got = append(got, dec...)
			}
			if err := <-played; err != nil {
				t.Fatalf("Play: %v", err)
			}
			if el := time.Since(start); el < p.Duration()-40*time.Millisecond {
				t.Errorf("played %v of audio in %v: not paced", p.Duration(), el)
			}
			var sig, noise float64
			for i, s := range pcm {
				sig += float64(s) * float64(s)
				d := float64(got[i]) - float64(s)
				noise += d * d
			}
			for _, s := range got[len(pcm):] {
				if s > 16 || s < -16 {
					t.Fatalf("padding is not silence: %d", s)
				}
			}
			snr := 10 * math.Log10(sig/noise)
			t.Logf("%d packets, SNR %.1f dB", wantPackets, snr)
			if snr < 30 {
				t.Errorf("decoded prompt SNR %.1f dB, want >= 30 (G.711 gives ~38)", snr)
			}
			// Nothing after the prompt.
			_ = caller.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, _, err := caller.ReadFromUDPAddrPort(buf); err == nil {
				t.Error("a packet after the prompt")
			}
		})
	}
}

// Play returns when its context ends or the leg closes.
func TestPlayStops(t *testing.T) {
	e := newTestEngine(t, nil)
	caller := udpEnd(t)
	leg, err := e.Open(context.Background(), Offer{Remote: addrOf(caller), Codec: PCMU})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	ctx, cancel := context.WithCancel(context.Background())
	played := make(chan error, 1)
	go func() { played <- leg.Play(ctx, DefaultPrompt()) }()
	if _, _, err := caller.ReadFromUDPAddrPort(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-played; !errors.Is(err, context.Canceled) {
		t.Fatalf("Play after cancel: %v", err)
	}
	go func() { played <- leg.Play(context.Background(), DefaultPrompt()) }()
	if _, _, err := caller.ReadFromUDPAddrPort(buf); err != nil {
		t.Fatal(err)
	}
	if err := leg.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-played; !errors.Is(err, ErrClosed) {
		t.Fatalf("Play after Close: %v", err)
	}
}
