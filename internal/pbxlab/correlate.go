package pbxlab

import (
	"errors"
	"fmt"
	"math"
)

const (
	// envelopeFrames per second: 20 ms frames, one RTP packet
	// of G.711, long enough to smooth single waves, short enough to keep
	// syllables apart.
	envelopeFrames = 50 // frames per second
	// maxLag is how far the recording may be shifted against the
	// original: call set-up, jitter buffer and the recorder's start.
	maxLagFrames = 2 * envelopeFrames
	// trendFrames (0.5 s) is the window of the slow trend detrend removes.
	trendFrames = 25
	// minOverlap frames (1 s) below which a lag is not judged.
	minOverlapFrames = envelopeFrames
)

// ErrRateMismatch is returned by Correlate for two WAVs of different sample
// rates (compare 8 kHz with 8 kHz: Speech and baresip both write 8 kHz).
var ErrRateMismatch = errors.New("WAV sample rates differ")

// Correlate says how much two recordings carry the same speech: the
// Pearson correlation of their loudness envelopes (RMS over 20 ms frames,
// slow trend removed), maximised over a lag of up to ±2 s. The same
// espeak-ng sentence sent through G.711 and back scores about 1.0; two
// different 8 s sentences score up to about 0.3, two different 4 s ones up
// to about 0.5 (shorter speech leaves more room for chance among the 201
// lags). A flat file (silence) scores 0.
func Correlate(a, b string) (float64, error) {
	sa, ra, err := readWAV(a)
	if err != nil {
		return 0, fmt.Errorf("correlate: %w", err)
	}
	sb, rb, err := readWAV(b)
	if err != nil {
		return 0, fmt.Errorf("correlate: %w", err)
	}
	if ra != rb {
		return 0, fmt.Errorf("correlate %d Hz with %d Hz: %w", ra, rb, ErrRateMismatch)
	}
	frame := ra / envelopeFrames
	ea, eb := detrend(envelope(sa, frame)), detrend(envelope(sb, frame))
	best := 0.0
	for lag := -maxLagFrames; lag <= maxLagFrames; lag++ {
		if c := pearsonAt(ea, eb, lag); c > best {
			best = c
		}
	}
	return best, nil
}

// envelope is the RMS of each whole frame of s.
func envelope(s []float64, frame int) []float64 {
	e := make([]float64, len(s)/frame)
	for i := range e {
		var sum float64
		for _, v := range s[i*frame : (i+1)*frame] {
			sum += v * v
		}
		e[i] = math.Sqrt(sum / float64(frame))
	}
	return e
}

// pearsonAt correlates a[i] with b[i+lag] over their overlap.
func pearsonAt(a, b []float64, lag int) float64 {
	lo, hi := max(0, -lag), min(len(a), len(b)-lag)
	n := hi - lo
	if n < minOverlapFrames {
		return 0
	}
	var ma, mb float64
	for i := lo; i < hi; i++ {
		ma += a[i]
		mb += b[i+lag]
	}
	ma, mb = ma/float64(n), mb/float64(n)
	var sab, saa, sbb float64
	for i := lo; i < hi; i++ {
		da, db := a[i]-ma, b[i+lag]-mb
		sab += da * db
		saa += da * da
		sbb += db * db
	}
	if saa == 0 || sbb == 0 {
		return 0
	}
	return sab / math.Sqrt(saa*sbb)
}

// detrend subtracts from each envelope frame the mean of the surrounding
// trendFrames, keeping the syllable rhythm and dropping the slow
// speech-then-silence shape that any two utterances share (without it two
// different sentences of the same length correlate about 0.45).
func detrend(e []float64) []float64 {
	out := make([]float64, len(e))
	for i := range e {
		lo, hi := max(0, i-trendFrames/2), min(len(e), i+trendFrames/2+1)
		var sum float64
		for _, v := range e[lo:hi] {
			sum += v
		}
		out[i] = e[i] - sum/float64(hi-lo)
	}
	return out
}
