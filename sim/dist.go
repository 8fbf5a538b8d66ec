package sim

import (
	"math"
	"math/rand/v2"
	"time"
)

// draw returns one duration of d. ok is false for "none" (never).
func (d Dist) draw(r *rand.Rand) (time.Duration, bool) {
	var sec float64
	switch d.Kind {
	case "none":
		return 0, false
	case "fixed":
		sec = d.Mean
	case "exponential":
		sec = r.ExpFloat64() * d.Mean
	case "lognormal":
		// The mean and SD given are of the durations themselves.
		v := d.SD * d.SD / (d.Mean * d.Mean)
		sigma := math.Sqrt(math.Log1p(v))
		mu := math.Log(d.Mean) - sigma*sigma/2
		sec = math.Exp(mu + sigma*r.NormFloat64())
	}
	return time.Duration(sec * float64(time.Second)), true
}
