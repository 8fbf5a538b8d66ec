package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

var errNotPCM16 = errors.New("not a 16-bit mono PCM WAV")

// readWAV reads a 16-bit mono PCM WAV (as sox and espeak-ng write them).
func readWAV(path string) ([]int16, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("read wav: %w", err)
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, fmt.Errorf("read wav %s: %w", path, errNotPCM16)
	}
	rate := 0
	for p := 12; p+8 <= len(b); {
		id, n := string(b[p:p+4]), int(binary.LittleEndian.Uint32(b[p+4:p+8]))
		body := b[p+8 : min(len(b), p+8+n)]
		switch id {
		case "fmt ":
			if binary.LittleEndian.Uint16(body[2:4]) != 1 || binary.LittleEndian.Uint16(body[14:16]) != 16 {
				return nil, 0, fmt.Errorf("read wav %s: %w", path, errNotPCM16)
			}
			rate = int(binary.LittleEndian.Uint32(body[4:8]))
		case "data":
			s := make([]int16, len(body)/2)
			for i := range s {
				s[i] = int16(binary.LittleEndian.Uint16(body[2*i:]))
			}
			return s, rate, nil
		}
		p += 8 + n + n%2
	}
	return nil, 0, fmt.Errorf("read wav %s: no data chunk: %w", path, errNotPCM16)
}

// writeWAV writes 16-bit mono PCM at rate.
func writeWAV(path string, s []int16, rate int) error {
	b := make([]byte, 44+2*len(s))
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*len(s)))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(2*rate))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*len(s)))
	for i, v := range s {
		binary.LittleEndian.PutUint16(b[44+2*i:], uint16(v))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write wav: %w", err)
	}
	return nil
}

// decimate turns samples at rate into 8 kHz by averaging each window (a box
// filter: crude, but the envelope correlation only needs loudness).
func decimate(s []float32, rate int) []int16 {
	if rate == 8000 {
		out := make([]int16, len(s))
		for i, v := range s {
			out[i] = int16(max(-1, min(1, v)) * 32767)
		}
		return out
	}
	n := len(s) * 8000 / rate
	out := make([]int16, n)
	for i := range out {
		lo, hi := i*rate/8000, min(len(s), (i+1)*rate/8000)
		var sum float32
		for _, v := range s[lo:hi] {
			sum += v
		}
		if hi > lo {
			out[i] = int16(max(-1, min(1, sum/float32(hi-lo))) * 32767)
		}
	}
	return out
}
