package media

// G.711 (ITU-T G.711) in the classic Sun g711.c form: the node encodes
// only its own prompts (calls pass through untouched), so a per-sample
// segment search is cheap enough and needs no tables. Decoding is here for
// the tests and for anyone checking what a prompt sounds like.

const (
	ulawBias = 0x84
	ulawClip = 32635
)

// encode writes pcm into dst in c's law, one byte a sample.
func (c Codec) encode(dst []byte, pcm []int16) {
	convert(dst, pcm, lawOf(c, ulawEncode, alawEncode))
}

// decode is encode's inverse (up to G.711's quantisation).
func (c Codec) decode(dst []int16, b []byte) {
	convert(dst, b, lawOf(c, ulawDecode, alawDecode))
}

// lawOf is c's function of the two: a for PCMA, else u.
func lawOf[F any](c Codec, u, a F) F {
	if c == PCMA {
		return a
	}
	return u
}

// convert sets dst[i] to f(src[i]) for every sample of src.
func convert[S, D any](dst []D, src []S, f func(S) D) {
	for i, v := range src {
		dst[i] = f(v)
	}
}

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

// ulawDecode maps a µ-law byte to 16-bit linear PCM.
func ulawDecode(b byte) int16 {
	u := ^b
	exp := (u >> 4) & 7
	v := ((int(u&0x0f) << 3) + ulawBias) << exp
	v -= ulawBias
	if u&0x80 != 0 {
		v = -v
	}
	return int16(v)
}

// alawEncode maps 16-bit linear PCM to an A-law byte (even bits inverted,
// as G.711 sends them).
func alawEncode(s int16) byte {
	v := int(s) >> 3
	mask := byte(0xd5)
	if v < 0 {
		mask = 0x55
		v = -v - 1
	}
	seg := 0
	for end := 0x1f; seg < 8 && v > end; end = end<<1 | 1 {
		seg++
	}
	if seg >= 8 {
		return 0x7f ^ mask
	}
	a := byte(seg << 4)
	if seg < 2 {
		a |= byte(v>>1) & 0x0f
	} else {
		a |= byte(v>>seg) & 0x0f
	}
	return a ^ mask
}

// alawDecode maps an A-law byte to 16-bit linear PCM.
func alawDecode(b byte) int16 {
	a := b ^ 0x55
	t := int(a&0x0f) << 4
	switch seg := (a & 0x70) >> 4; seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t += 0x108
		t <<= seg - 1
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}
