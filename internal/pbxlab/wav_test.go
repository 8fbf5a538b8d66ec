package pbxlab

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// wavBytes is a minimal WAV: fmt chunk, then a data chunk whose header
// claims dataSize bytes, holding samples.
func wavBytes(channels, bits uint16, dataSize uint32, samples []int16) []byte {
	b := []byte("RIFF\x00\x00\x00\x00WAVEfmt ")
	b = binary.LittleEndian.AppendUint32(b, 16)
	b = binary.LittleEndian.AppendUint16(b, 1) // PCM
	b = binary.LittleEndian.AppendUint16(b, channels)
	b = binary.LittleEndian.AppendUint32(b, 8000)
	b = binary.LittleEndian.AppendUint32(b, 8000*uint32(channels)*uint32(bits)/8)
	b = binary.LittleEndian.AppendUint16(b, channels*bits/8)
	b = binary.LittleEndian.AppendUint16(b, bits)
	b = append(b, "data"...)
	b = binary.LittleEndian.AppendUint32(b, dataSize)
	for _, s := range samples {
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	return b
}

// A recorder that has not rewritten its header yet (data size 0) still
// yields its samples; other formats are refused, not misread.
func TestReadWAV(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	samples := []int16{0, 16384, -16384, 32767}
	for _, size := range []uint32{8, 0, 1 << 30} {
		s, rate, err := readWAV(write("ok.wav", wavBytes(1, 16, size, samples)))
		if err != nil || rate != 8000 || len(s) != 4 || s[1] != 0.5 || s[2] != -0.5 {
			t.Errorf("data size %d: %v %d %v", size, s, rate, err)
		}
	}
	if _, _, err := readWAV(write("stereo.wav", wavBytes(2, 16, 8, samples))); !errors.Is(err, ErrWAVFormat) {
		t.Errorf("stereo: %v, want ErrWAVFormat", err)
	}
	if _, _, err := readWAV(write("8bit.wav", wavBytes(1, 8, 8, samples))); !errors.Is(err, ErrWAVFormat) {
		t.Errorf("8 bit: %v, want ErrWAVFormat", err)
	}
	if _, _, err := readWAV(write("short.wav", []byte("RIFF"))); !errors.Is(err, ErrNotWAV) {
		t.Errorf("short: %v, want ErrNotWAV", err)
	}
}
