package api

import (
	"crypto/rand"
	"crypto/sha256"
	"math"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate limits. A visitor's address is never kept: chat starts are counted
// under SHA-256(salt || address), the salt random and in memory only
// (DESIGN.md invariant 2).
const (
	defaultChatStartsPerMinute = 5
	defaultChatStartBurst      = 5
	// maxChatStartKeys bounds the address map; the least recently seen
	// address is forgotten first.
	maxChatStartKeys = 10000
)

// limiterSet is a bounded set of token buckets keyed by string. When full,
// the least recently used bucket is dropped.
type limiterSet struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets *lru[*rate.Limiter]
}

func newLimiterSet(limit rate.Limit, burst, maxKeys int) *limiterSet {
	return &limiterSet{limit: limit, burst: burst, buckets: newLRU[*rate.Limiter](maxKeys)}
}

// allow takes one token for key. When there is none it says how long until
// there will be.
// take spends one of l's tokens if it has one now; otherwise it spends
// nothing and says how long until it would (a socket's own pace: asking
// for support, changing duty).
func take(l *rate.Limiter) (bool, time.Duration) {
	r := l.Reserve()
	if wait := r.Delay(); wait > 0 {
		r.Cancel()
		return false, wait
	}
	return true, 0
}

func (ls *limiterSet) allow(key string) (bool, time.Duration) {
	lim := ls.get(key)
	now := time.Now()
	if lim.AllowN(now, 1) {
		return true, 0
	}
	wait := time.Second
	if ls.limit > 0 {
		missing := 1 - lim.TokensAt(now)
		wait = max(time.Duration(missing/float64(ls.limit)*float64(time.Second)), time.Second)
	}
	return false, wait
}

func (ls *limiterSet) get(key string) *rate.Limiter {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if lim, ok := ls.buckets.get(key); ok {
		return lim
	}
	lim := rate.NewLimiter(ls.limit, ls.burst)
	ls.buckets.add(key, lim, always)
	return lim
}

func (ls *limiterSet) len() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.buckets.len()
}

// addrLimiter limits chat starts per visitor address, keyed by a salted hash.
type addrLimiter struct {
	addrs *addrHasher
	set   *limiterSet
}

func newAddrLimiter(perMinute, burst int, proxies []netip.Prefix) *addrLimiter {
	if perMinute <= 0 {
		perMinute = defaultChatStartsPerMinute
	}
	if burst <= 0 {
		burst = defaultChatStartBurst
	}
	return &addrLimiter{addrs: newAddrHasher(proxies), set: newLimiterSet(rate.Limit(float64(perMinute)/60), burst, maxChatStartKeys)}
}

// allow counts one chat start from r's address.
func (a *addrLimiter) allow(r *http.Request) (bool, time.Duration) {
	return a.set.allow(a.key(r))
}

// key is the salted hash of r's client address (see addrHasher).
func (a *addrLimiter) key(r *http.Request) string { return a.addrs.key(r) }

// addrHasher names a request's client address (see clientAddr) without
// keeping it: SHA-256(salt || address), the salt random and in memory only.
type addrHasher struct {
	salt    [32]byte
	proxies []netip.Prefix // trusted proxies
}

func newAddrHasher(proxies []netip.Prefix) *addrHasher {
	h := &addrHasher{proxies: proxies}
	_, _ = rand.Read(h.salt[:])
	return h
}

// key hashes r's client address. An IPv6 address counts as its /64, the
// block one household or host usually holds.
func (h *addrHasher) key(r *http.Request) string {
	addr := clientAddr(r, h.proxies)
	if addr.Is6() {
		if p, err := addr.Prefix(64); err == nil {
			addr = p.Addr()
		}
	}
	b := addr.As16()
	sum := sha256.New()
	sum.Write(h.salt[:])
	sum.Write(b[:])
	return string(sum.Sum(nil))
}

// retryAfterSeconds renders a wait for the Retry-After header.
func retryAfterSeconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}
