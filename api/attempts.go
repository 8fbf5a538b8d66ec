package api

// Login and enrolment throttling (issue 10).
//
// Limits keyed by volunteer id alone let a stranger who knows an id lock
// its volunteer out, and a table of ids that forgets its oldest entry lets a
// flood of made-up ids clear the limit on a real one. So an attempt is
// judged by three separate tables, none of which the others can crowd out:
//
//   - per (volunteer id, address) pair: a few free failures, then a wait
//     that doubles with every further failure. Guessing one volunteer's
//     password from one address slows down; the same volunteer at another
//     address is not affected.
//   - per address: a token bucket for attempts from pairs that have not
//     succeeded before. It bounds how many pairs, made-up ids and argon2
//     runs one address can cause, so no single address can fill the other
//     tables. When its table is full of addresses still being limited, a new
//     address is refused (503 busy) rather than an old one forgotten: a
//     forgotten bucket would start full again.
//   - known pairs: (id, address) pairs that logged in with the right
//     password. They skip the per-address bucket and may use the argon2
//     slot kept for them, so the volunteer at their usual address logs in
//     while others flood the centre. Only the right password adds to this
//     table, so a flood cannot evict it.
//
// Addresses are salted hashes (addrHasher), and pairs are hashes of those
// with the id, so no table holds an address or grows by the attacker's
// choice of id length.

import (
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const (
	// attemptFreeFailures is how many wrong passwords (or codes) one pair
	// may give before it must wait; the wait starts at attemptBackoffBase
	// and doubles with every further failure up to attemptBackoffMax.
	attemptFreeFailures = 5
	attemptBackoffBase  = 20 * time.Second
	attemptBackoffMax   = 15 * time.Minute
	// attemptForget is how long after its last failure a pair starts afresh
	// (a volunteer who mistyped last week does not begin at a long wait).
	attemptForget = time.Hour

	// Attempts per address from pairs not known to succeed: a burst of 20
	// (a centre's office behind one NAT logging in at a shift change), then
	// one every 6 s.
	addrAttemptBurst = 20
	addrAttemptEvery = 6 * time.Second

	maxAttemptAddrs = 10000
	maxAttemptPairs = 20000
	maxKnownPairs   = 4096
	// knownPairFor is how long a successful login keeps its pair known.
	// Memory only: a restart forgets it.
	knownPairFor = 30 * 24 * time.Hour

	// busyRetry is the Retry-After of a 503 busy: the argon2 slots free up
	// within a fraction of a second.
	busyRetry = time.Second
)

// attemptGuard throttles one kind of attempt (logins, or enrolments).
type attemptGuard struct {
	now   func() time.Time
	addrs *addrHasher
	salt  [32]byte // for pair keys

	mu      sync.Mutex
	byAddr  *lru[*rate.Limiter]
	byPair  *lru[*pairState]
	knownAt *lru[time.Time] // last success of a pair
}

// pairState is one (id, address) pair's failures.
type pairState struct {
	fails int
	last  time.Time // of the last failure
	until time.Time // refused before this
}

func newAttemptGuard(addrs *addrHasher) *attemptGuard {
	g := &attemptGuard{
		now: time.Now, addrs: addrs,
		byAddr:  newLRU[*rate.Limiter](maxAttemptAddrs),
		byPair:  newLRU[*pairState](maxAttemptPairs),
		knownAt: newLRU[time.Time](maxKnownPairs),
	}
	_, _ = rand.Read(g.salt[:])
	return g
}

// attempt is one admitted attempt; the caller reports how it ended.
type attempt struct {
	g    *attemptGuard
	pair string
	// known says the pair succeeded before: the volunteer at a usual
	// address, who may use the argon2 slot kept for them.
	known bool
	res   *rate.Reservation // the address's token, nil for a known pair
	at    time.Time         // when res was made
}

// admit decides whether r may make an attempt for volunteer id. A refusal
// is errTooManyAttempts (this pair or address must wait) or errBusy (the
// tables are full of addresses still limited), with the wait.
func (g *attemptGuard) admit(r *http.Request, id string) (attempt, time.Duration, error) {
	addr := g.addrs.key(r)
	pair := g.pairKey(addr, id)
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	a := attempt{g: g, pair: pair}
	if at, ok := g.knownAt.get(pair); ok && now.Sub(at) < knownPairFor {
		a.known = true
	}
	ps, ok := g.byPair.get(pair)
	if ok {
		ps.decay(now)
		if now.Before(ps.until) {
			return a, ps.until.Sub(now), errTooManyAttempts
		}
	}
	if !a.known {
		lim, found := g.byAddr.get(addr)
		if !found {
			lim = rate.NewLimiter(rate.Every(addrAttemptEvery), addrAttemptBurst)
			// Only a bucket that has refilled may be forgotten: forgetting
			// any other would hand its address a fresh burst.
			full := func(old *rate.Limiter) bool { return old.TokensAt(now) >= addrAttemptBurst }
			if !g.byAddr.add(addr, lim, full) {
				return a, busyRetry, errBusy
			}
		}
		res := lim.ReserveN(now, 1)
		if wait := res.DelayFrom(now); wait > 0 {
			res.CancelAt(now)
			return a, wait, errTooManyAttempts
		}
		a.res, a.at = res, now
	}
	if !ok {
		// A pair without failures holds nothing worth keeping, and a new
		// pair costs its address a token, so the oldest may go.
		g.byPair.add(pair, &pairState{}, always)
	}
	return a, 0, nil
}

func (g *attemptGuard) pairKey(addr, id string) string {
	h := sha256.New()
	h.Write(g.salt[:])
	h.Write([]byte(addr))
	h.Write([]byte(id))
	return string(h.Sum(nil))
}

// failed records a wrong password or code.
func (a attempt) failed() {
	g := a.g
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	ps, ok := g.byPair.get(a.pair)
	if !ok {
		ps = &pairState{}
		g.byPair.add(a.pair, ps, always)
	}
	ps.decay(now)
	ps.fails++
	ps.last = now
	if ps.fails >= attemptFreeFailures {
		ps.until = now.Add(backoff(ps.fails - attemptFreeFailures))
	}
}

// succeeded clears the pair's failures and makes it known.
func (a attempt) succeeded() {
	g := a.g
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.byPair.remove(a.pair)
	g.knownAt.add(a.pair, now, always)
}

// know makes r's address known for volunteer id, as a success does: a
// volunteer who just set their password from here logs in from here next.
func (g *attemptGuard) know(r *http.Request, id string) {
	pair := g.pairKey(g.addrs.key(r), id)
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.knownAt.add(pair, now, always)
}

// unused gives back the address's token of an attempt that was not made
// (the server was busy): a retry should not cost twice.
func (a attempt) unused() {
	if a.res == nil {
		return
	}
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	// Cancelled as of when it was made: rate gives nothing back for a
	// reservation it thinks already used.
	a.res.CancelAt(a.at)
}

// decay forgets failures long past.
func (ps *pairState) decay(now time.Time) {
	if ps.fails > 0 && now.Sub(ps.last) >= attemptForget {
		*ps = pairState{}
	}
}

// backoff is the wait after n failures beyond the free ones.
func backoff(n int) time.Duration {
	if n >= 16 {
		return attemptBackoffMax
	}
	return min(attemptBackoffBase<<n, attemptBackoffMax)
}
