package pbxlab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
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
