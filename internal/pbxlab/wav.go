package pbxlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"testing"
	"time"
)

var (
	// ErrNotWAV is returned for a file that is not a RIFF/WAVE file with
	// a fmt and a data chunk.
	ErrNotWAV = errors.New("not a WAV file")
	// ErrWAVFormat is returned for a WAV that is not 16-bit PCM mono, the
	// only format espeak-ng+sox and baresip's recorder write here.
	ErrWAVFormat = errors.New("WAV is not 16-bit PCM mono")
)

// readWAV returns a 16-bit PCM mono WAV's samples (scaled to [-1, 1)) and
// sample rate. A data chunk whose size is 0 or beyond the file (a recorder
// that has not rewritten its header yet) is read to the end of the file.
func readWAV(path string) ([]float64, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read WAV: %w", err)
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, fmt.Errorf("read WAV %s: %w", path, ErrNotWAV)
	}
	rate := 0
	for p := 12; p+8 <= len(b); {
		id, n := string(b[p:p+4]), int(binary.LittleEndian.Uint32(b[p+4:p+8]))
		p += 8
		switch id {
		case "fmt ":
			if n < 16 || p+16 > len(b) {
				return nil, 0, fmt.Errorf("read WAV %s: short fmt chunk: %w", path, ErrNotWAV)
			}
			format := binary.LittleEndian.Uint16(b[p:])
			channels := binary.LittleEndian.Uint16(b[p+2:])
			bits := binary.LittleEndian.Uint16(b[p+14:])
			// 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which sox writes for some
			// outputs; with 16 bits and one channel it is plain PCM here.
			if (format != 1 && format != 0xFFFE) || channels != 1 || bits != 16 {
				return nil, 0, fmt.Errorf("read WAV %s: format %d, %d channels, %d bits: %w", path, format, channels, bits, ErrWAVFormat)
			}
			rate = int(binary.LittleEndian.Uint32(b[p+4:]))
		case "data":
			if rate == 0 {
				return nil, 0, fmt.Errorf("read WAV %s: data before fmt: %w", path, ErrNotWAV)
			}
			end := p + n
			if n == 0 || end > len(b) {
				end = len(b)
			}
			s := make([]float64, (end-p)/2)
			for i := range s {
				s[i] = float64(int16(binary.LittleEndian.Uint16(b[p+2*i:]))) / 32768
			}
			return s, rate, nil
		}
		p += n + n%2
	}
	return nil, 0, fmt.Errorf("read WAV %s: no data chunk: %w", path, ErrNotWAV)
}

// Level is a WAV's RMS level in dBFS: about -20 for espeak-ng speech, below
// -90 for digital silence. It tells "some audio arrived"; Correlate tells
// whose.
func Level(path string) (float64, error) {
	s, _, err := readWAV(path)
	if err != nil {
		return 0, fmt.Errorf("level: %w", err)
	}
	var sum float64
	for _, v := range s {
		sum += v * v
	}
	if len(s) == 0 {
		return math.Inf(-1), nil
	}
	return 20 * math.Log10(math.Sqrt(sum/float64(len(s)))+1e-12), nil
}

// TrimWAV writes a copy of the 16-bit PCM mono WAV at path without its
// first d, and returns the copy's path (in dir). A browser's fake
// microphone plays its file from the moment the microphone opened, which
// may be seconds before the call: the speech the other side can have
// heard starts d later.
func TrimWAV(t testing.TB, dir, path string, d time.Duration) string {
	t.Helper()
	s, rate, err := readWAV(path)
	if err != nil {
		t.Fatalf("pbxlab: trim: %v", err)
	}
	skip := min(len(s), int(d.Seconds()*float64(rate)))
	out, err := tempName(dir, "trimmed-*.wav")
	if err != nil {
		t.Fatalf("pbxlab: trim: %v", err)
	}
	if err := WriteWAV(out, s[skip:], rate); err != nil {
		t.Fatalf("pbxlab: trim: %v", err)
	}
	return out
}

// WriteWAV writes samples (-1..1) as a 16-bit PCM mono WAV at rate.
func WriteWAV(path string, samples []float64, rate int) error {
	pcm := make([]byte, 44+2*len(samples))
	copy(pcm, "RIFF")
	binary.LittleEndian.PutUint32(pcm[4:], uint32(36+2*len(samples)))
	copy(pcm[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(pcm[16:], 16)
	binary.LittleEndian.PutUint16(pcm[20:], 1) // PCM
	binary.LittleEndian.PutUint16(pcm[22:], 1) // mono
	binary.LittleEndian.PutUint32(pcm[24:], uint32(rate))
	binary.LittleEndian.PutUint32(pcm[28:], uint32(2*rate))
	binary.LittleEndian.PutUint16(pcm[32:], 2)
	binary.LittleEndian.PutUint16(pcm[34:], 16)
	copy(pcm[36:], "data")
	binary.LittleEndian.PutUint32(pcm[40:], uint32(2*len(samples)))
	for i, v := range samples {
		binary.LittleEndian.PutUint16(pcm[44+2*i:], uint16(int16(max(-32768, min(32767, math.Round(v*32767))))))
	}
	if err := os.WriteFile(path, pcm, 0o600); err != nil {
		return fmt.Errorf("write WAV: %w", err)
	}
	return nil
}
