package media

import (
	_ "embed"
	"encoding/binary"
	"fmt"
	"time"
)

// MaxPromptBytes bounds a prompt's WAV file: 2 MiB is two minutes of
// 8 kHz 16-bit speech, far more than a "please call again" needs.
const MaxPromptBytes = 2 << 20

// Prompt is a recorded message the node can play to a caller: 8 kHz mono
// 16-bit linear PCM, held in memory (nothing is read from disk during a
// call).
type Prompt struct {
	pcm []int16
}

// Duration is how long the prompt plays.
func (p *Prompt) Duration() time.Duration {
	return time.Duration(len(p.pcm)) * time.Second / 8000
}

// defaultPromptWAV was made with espeak-ng 1.51 and sox 14.4.2:
//
//	espeak-ng -v en -s 195 -w p.wav "All our volunteers are busy. Please call again in a few minutes. If you are in danger, call 1 1 2, or 1 1 3."
//	sox p.wav -r 8000 -c 1 -b 16 -e signed-integer prompt.wav silence 1 0.05 0.1% reverse silence 1 0.05 0.1% reverse
//
// (6.2 s, 99 KB; the silence effects trim the leading and trailing
// quiet; 195 words a minute and the numbers read digit by digit keep it
// under 100 KB.)
//
//go:embed prompt.wav
var defaultPromptWAV []byte

// DefaultPrompt is the message played when no volunteer is free anywhere:
// a synthetic voice saying all volunteers are busy, to call again in a
// few minutes, and 112 or 113 in danger. A centre replaces it with its
// own recording (an 8 kHz mono 16-bit PCM WAV, see LoadPrompt).
func DefaultPrompt() *Prompt {
	p, err := LoadPrompt(defaultPromptWAV)
	if err != nil { // the embedded file is checked by TestDefaultPrompt
		panic(fmt.Sprintf("media: embedded prompt: %v", err))
	}
	return p
}

// LoadPrompt reads a prompt from a WAV file's bytes: RIFF/WAVE, PCM
// (format 1), one channel, 8000 Hz, 16 bits, at most MaxPromptBytes.
// Anything else is ErrBadPrompt, saying what the file is instead: the
// node does not resample, so a centre converts its recording once, e.g.
// with `sox in.wav -r 8000 -c 1 -b 16 -e signed-integer out.wav`.
func LoadPrompt(wav []byte) (*Prompt, error) {
	if len(wav) > MaxPromptBytes {
		return nil, fmt.Errorf("load prompt: %d bytes, at most %d: %w", len(wav), MaxPromptBytes, ErrBadPrompt)
	}
	if len(wav) < 12 || string(wav[0:4]) != "RIFF" || string(wav[8:12]) != "WAVE" {
		return nil, fmt.Errorf("load prompt: not a RIFF WAVE file: %w", ErrBadPrompt)
	}
	fmtSeen := false
	for p := 12; p+8 <= len(wav); {
		id := string(wav[p : p+4])
		n := int64(binary.LittleEndian.Uint32(wav[p+4 : p+8]))
		body := wav[p+8:]
		switch id {
		case "fmt ":
			if n < 16 || int64(len(body)) < 16 {
				return nil, fmt.Errorf("load prompt: short fmt chunk: %w", ErrBadPrompt)
			}
			format := binary.LittleEndian.Uint16(body[0:2])
			channels := binary.LittleEndian.Uint16(body[2:4])
			rate := binary.LittleEndian.Uint32(body[4:8])
			bits := binary.LittleEndian.Uint16(body[14:16])
			if format != 1 || channels != 1 || rate != 8000 || bits != 16 {
				return nil, fmt.Errorf("load prompt: format %d, %d channels, %d Hz, %d bits; want PCM (1), 1 channel, 8000 Hz, 16 bits: %w",
					format, channels, rate, bits, ErrBadPrompt)
			}
			fmtSeen = true
		case "data":
			if !fmtSeen {
				return nil, fmt.Errorf("load prompt: data before fmt: %w", ErrBadPrompt)
			}
			// A streamed WAV (espeak-ng to a pipe) may claim more data than
			// follows: take what is there.
			body = body[:min(int64(len(body)), n)]
			pcm := make([]int16, len(body)/2)
			for i := range pcm {
				pcm[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
			if len(pcm) == 0 {
				return nil, fmt.Errorf("load prompt: no samples: %w", ErrBadPrompt)
			}
			return &Prompt{pcm: pcm}, nil
		}
		next := int64(p) + 8 + n + n%2
		if next > int64(len(wav)) {
			break
		}
		p = int(next)
	}
	return nil, fmt.Errorf("load prompt: no data chunk: %w", ErrBadPrompt)
}
