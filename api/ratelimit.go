package api

import (
	"container/list"
	"crypto/rand"
	"crypto/sha256"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
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

	// Login and enrolment attempts per volunteer id: a burst of 5, then one
	// every 20 s.
	loginBurst   = 5
	loginEvery   = 20 * time.Second
	maxLoginKeys = 4096
)

// limiterSet is a bounded set of token buckets keyed by string. When full,
// the least recently used bucket is dropped.
type limiterSet struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	ll *list.List // of *limiterEntry, most recently used first
	m  map[string]*list.Element
}

type limiterEntry struct {
	key string
	lim *rate.Limiter
}

func newLimiterSet(limit rate.Limit, burst, maxKeys int) *limiterSet {
	return &limiterSet{limit: limit, burst: burst, max: maxKeys, ll: list.New(), m: map[string]*list.Element{}}
}

// allow takes one token for key. When there is none it says how long until
// there will be.
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
	if el, ok := ls.m[key]; ok {
		ls.ll.MoveToFront(el)
		return el.Value.(*limiterEntry).lim
	}
	for ls.ll.Len() >= ls.max {
		old := ls.ll.Back()
		ls.ll.Remove(old)
		delete(ls.m, old.Value.(*limiterEntry).key)
	}
	lim := rate.NewLimiter(ls.limit, ls.burst)
	ls.m[key] = ls.ll.PushFront(&limiterEntry{key: key, lim: lim})
	return lim
}

func (ls *limiterSet) len() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.ll.Len()
}

// addrLimiter limits chat starts per visitor address, keyed by a salted hash.
type addrLimiter struct {
	salt       [32]byte
	trustProxy bool
	set        *limiterSet
}

func newAddrLimiter(perMinute, burst int, trustProxy bool) *addrLimiter {
	if perMinute <= 0 {
		perMinute = defaultChatStartsPerMinute
	}
	if burst <= 0 {
		burst = defaultChatStartBurst
	}
	a := &addrLimiter{trustProxy: trustProxy, set: newLimiterSet(rate.Limit(float64(perMinute)/60), burst, maxChatStartKeys)}
	_, _ = rand.Read(a.salt[:])
	return a
}

// allow counts one chat start from r's address.
func (a *addrLimiter) allow(r *http.Request) (bool, time.Duration) {
	return a.set.allow(a.key(r))
}

// key is SHA-256(salt || address). An IPv6 address counts as its /64, the
// block one household or host usually holds.
func (a *addrLimiter) key(r *http.Request) string {
	addr := clientAddr(r, a.trustProxy)
	if addr.Is6() {
		if p, err := addr.Prefix(64); err == nil {
			addr = p.Addr()
		}
	}
	b := addr.As16()
	h := sha256.New()
	h.Write(a.salt[:])
	h.Write(b[:])
	return string(h.Sum(nil))
}

// clientAddr is the address a request came from: the TCP peer, or with
// trustProxy the last X-Forwarded-For entry (the one the proxy appended; the
// entries before it are the client's word). The result is never stored.
func clientAddr(r *http.Request, trustProxy bool) netip.Addr {
	if trustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if addr, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return addr.Unmap().WithZone("")
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.IPv6Unspecified()
	}
	return addr.Unmap().WithZone("")
}

// retryAfterSeconds renders a wait for the Retry-After header.
func retryAfterSeconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}
