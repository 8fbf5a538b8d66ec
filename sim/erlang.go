package sim

import "math"

// Erlang's formulas for one pooled queue, written out so that the
// simulator can be checked against them (erlang_test.go) and a report can
// show what a planner's spreadsheet would have said.

// ErlangC is the M/M/c queue: arrivals per second lambda, service rate per
// server mu (1/mean talk time), c servers. It returns the probability that
// a contact waits at all and the mean wait over all contacts, in seconds.
// ok is false when the queue is unstable (lambda >= c mu).
func ErlangC(lambda, mu float64, c int) (pWait, meanWait float64, ok bool) {
	a := lambda / mu
	if a >= float64(c) {
		return 1, math.Inf(1), false
	}
	// Sum A^k/k! for k < c, and the A^c/c! term, in a running product so
	// that large c does not overflow.
	sum, term := 0.0, 1.0
	for k := range c {
		sum += term
		term *= a / float64(k+1)
	}
	top := term * float64(c) / (float64(c) - a)
	pWait = top / (sum + top)
	return pWait, pWait / (float64(c)*mu - lambda), true
}

// ErlangA is the M/M/c+M queue: as ErlangC, and every waiting contact
// leaves at rate theta (1/mean patience). It returns the probability that
// a contact waits at all, that it abandons, and the mean wait over all
// contacts (answered or not), from the birth-death chain's stationary
// distribution.
func ErlangA(lambda, mu, theta float64, c int) (pWait, pAbandon, meanWait float64) {
	// π_n ∝ Π_{k<n} λ / death(k+1), death(n) = min(n,c)μ + max(n-c,0)θ.
	const maxExtra = 100000
	probs := []float64{1}
	total, p := 1.0, 1.0
	for n := 1; n < c+maxExtra; n++ {
		death := float64(min(n, c))*mu + float64(max(n-c, 0))*theta
		p *= lambda / death
		probs = append(probs, p)
		total += p
		if n > c && p < 1e-15*total {
			break
		}
	}
	var queue float64
	for n, p := range probs {
		if n >= c {
			pWait += p / total
		}
		if n > c {
			queue += float64(n-c) * p / total
		}
	}
	return pWait, theta * queue / lambda, queue / lambda
}
