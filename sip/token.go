package sip

import (
	"crypto/rand"
	"errors"
	"sync"
	"time"
)

var (
	// ErrTokenUnknown is a token this store never issued (or forgot: see
	// TokenStore).
	ErrTokenUnknown = errors.New("unknown token")
	// ErrTokenUsed is a token that was already redeemed once.
	ErrTokenUsed = errors.New("token already used")
	// ErrTokenExpired is a token whose lease ran out before it was redeemed.
	ErrTokenExpired = errors.New("token expired")
)

// tombstoneFor is how long a used or expired token is remembered, so that a
// second use or a late call gets 410 Gone (the PBX queues the caller itself)
// rather than 404; afterwards it is forgotten and answers 404, which sends the
// caller to the same place.
const tombstoneFor = 10 * time.Minute

// TokenStore holds the one-time tokens this centre issued for reserved
// volunteers (issue 12, flow point 5). A token is single use, so a 302 that a
// PBX follows twice (a retransmission, a replay by whoever saw it) cannot ring
// the volunteer twice, and it dies with its lease, so a reservation released
// by time-out cannot be rung late. Safe for concurrent use.
type TokenStore struct {
	mu        sync.Mutex
	live      map[string]liveToken
	dead      map[string]deadToken
	lastSweep time.Time
}

// sweepEvery bounds how often a call walks the maps: a PBX sending forged
// tokens as fast as it can costs one map look-up each, not a walk.
const sweepEvery = time.Second

type liveToken struct {
	call    Call
	expires time.Time
}

type deadToken struct {
	err    error // ErrTokenUsed or ErrTokenExpired
	forget time.Time
}

// NewTokenStore returns an empty store.
func NewTokenStore() *TokenStore {
	return &TokenStore{live: map[string]liveToken{}, dead: map[string]deadToken{}}
}

// Issue returns a new token that rings call's volunteer, once and within
// lease (the ingress proxies the call to call.Phone()). The token is 26 characters of
// base32 from crypto/rand (130 bits): safe in a SIP user part as it is, and
// unguessable.
func (s *TokenStore) Issue(call Call, lease time.Duration) string {
	tok := rand.Text()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	s.live[tok] = liveToken{call: call, expires: now.Add(lease)}
	return tok
}

// Redeem consumes token and returns its call, or ErrTokenUnknown,
// ErrTokenUsed or ErrTokenExpired.
func (s *TokenStore) Redeem(token string) (Call, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	if d, ok := s.dead[token]; ok && now.Before(d.forget) {
		return nil, d.err
	}
	t, ok := s.live[token]
	if !ok {
		return nil, ErrTokenUnknown
	}
	delete(s.live, token)
	if !now.Before(t.expires) { // expired since the last sweep
		s.dead[token] = deadToken{err: ErrTokenExpired, forget: t.expires.Add(tombstoneFor)}
		return nil, ErrTokenExpired
	}
	s.dead[token] = deadToken{err: ErrTokenUsed, forget: now.Add(tombstoneFor)}
	return t.call, nil
}

// Len returns how many tokens are live (issued, not redeemed, not expired).
func (s *TokenStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.sweep(now)
	n := 0
	for _, t := range s.live {
		if now.Before(t.expires) {
			n++
		}
	}
	return n
}

// sweep turns expired tokens into tombstones and forgets old tombstones, at
// most once per sweepEvery (Redeem checks its own token's expiry). The maps
// hold only tokens this node issued for reservations; a sender of forged
// tokens adds nothing to them.
func (s *TokenStore) sweep(now time.Time) {
	if now.Sub(s.lastSweep) < sweepEvery {
		return
	}
	s.lastSweep = now
	for tok, t := range s.live {
		if !now.Before(t.expires) {
			delete(s.live, tok)
			s.dead[tok] = deadToken{err: ErrTokenExpired, forget: t.expires.Add(tombstoneFor)}
		}
	}
	for tok, d := range s.dead {
		if !now.Before(d.forget) {
			delete(s.dead, tok)
		}
	}
}
