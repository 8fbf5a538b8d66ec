package main

import (
	"math"
	"testing"
)

// correlateFine is pbxlab.Correlate's measure (RMS envelopes of 20 ms
// frames, 0.5 s trend removed, Pearson maximised over ±2 s of lag) with the
// frames taken every 5 ms instead of every 20 ms, so the lag search moves
// in 5 ms steps: a lab question, does the half-frame misalignment
// (section 5 of the notebook) account for the browser figures?
func correlateFine(t *testing.T, a, b string) float64 {
	t.Helper()
	sa, ra, err := readWAV(a)
	if err != nil {
		t.Fatal(err)
	}
	sb, rb, err := readWAV(b)
	if err != nil || ra != rb {
		t.Fatalf("correlate fine: %v (rates %d, %d)", err, ra, rb)
	}
	frame, hop := ra/50, ra/200
	env := func(s []int16) []float64 {
		var e []float64
		for lo := 0; lo+frame <= len(s); lo += hop {
			var sum float64
			for _, v := range s[lo : lo+frame] {
				f := float64(v) / 32768
				sum += f * f
			}
			e = append(e, math.Sqrt(sum/float64(frame)))
		}
		// detrend: subtract the moving mean over 0.5 s (100 hops)
		out := make([]float64, len(e))
		for i := range e {
			lo, hi := max(0, i-50), min(len(e), i+50)
			var m float64
			for _, v := range e[lo:hi] {
				m += v
			}
			out[i] = e[i] - m/float64(hi-lo)
		}
		return out
	}
	ea, eb := env(sa), env(sb)
	best := 0.0
	for lag := -400; lag <= 400; lag++ {
		lo, hi := max(0, -lag), min(len(ea), len(eb)-lag)
		if hi-lo < 200 {
			continue
		}
		var ma, mb float64
		for i := lo; i < hi; i++ {
			ma += ea[i]
			mb += eb[i+lag]
		}
		n := float64(hi - lo)
		ma, mb = ma/n, mb/n
		var sab, saa, sbb float64
		for i := lo; i < hi; i++ {
			da, db := ea[i]-ma, eb[i+lag]-mb
			sab += da * db
			saa += da * da
			sbb += db * db
		}
		if saa > 0 && sbb > 0 {
			best = max(best, sab/math.Sqrt(saa*sbb))
		}
	}
	t.Logf("fine correlation (5 ms steps), %s vs %s: %.3f", a[len(a)-min(len(a), 24):], b[len(b)-min(len(b), 24):], best)
	return best
}
