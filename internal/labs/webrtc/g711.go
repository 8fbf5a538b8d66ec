package main

// G.711 µ-law (ITU-T G.711, the classic Sun g711.c algorithm). Decoding is a
// 256-entry table; encoding is the segment search, cheap enough per sample.

const (
	ulawBias = 0x84
	ulawClip = 32635
)

// ulawDecode maps a µ-law byte to 16-bit linear PCM.
var ulawDecode = func() [256]int16 {
	var t [256]int16
	for i := range t {
		u := ^byte(i)
		exp := (u >> 4) & 7
		mant := int(u & 0x0f)
		v := ((mant << 3) + ulawBias) << exp
		v -= ulawBias
		if u&0x80 != 0 {
			v = -v
		}
		t[i] = int16(v)
	}
	return t
}()

// ulawEncode maps 16-bit linear PCM to a µ-law byte.
func ulawEncode(s int16) byte {
	v := int(s)
	sign := 0
	if v < 0 {
		v = -v
		sign = 0x80
	}
	v = min(v, ulawClip) + ulawBias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}
