package api

// Volunteer sessions are in memory only: a restart logs everyone out, and
// no token is ever written to disk.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"sync"
	"time"
)

// session is a logged-in volunteer. Sessions are in memory only, keyed by
// the SHA-256 of the cookie's token.
type session struct {
	key       string
	volunteer string
	created   time.Time
	expires   time.Time
}

type sessionStore struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*session
}

func newSessionStore() *sessionStore {
	return &sessionStore{now: time.Now, m: map[string]*session{}}
}

func sessionKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return string(sum[:])
}

// create returns a new session's token (32 random bytes, hex).
func (ss *sessionStore) create(volunteer string) (token string, s *session) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	now := ss.now()
	s = &session{key: sessionKey(token), volunteer: volunteer, created: now, expires: now.Add(sessionTTL)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var mine []*session
	for k, o := range ss.m {
		if !now.Before(o.expires) {
			delete(ss.m, k)
		} else if o.volunteer == volunteer {
			mine = append(mine, o)
		}
	}
	if len(mine) >= maxSessionsPerVol {
		slices.SortFunc(mine, func(a, b *session) int { return a.created.Compare(b.created) })
		for _, o := range mine[:len(mine)-maxSessionsPerVol+1] {
			delete(ss.m, o.key)
		}
	}
	ss.m[s.key] = s
	return token, s
}

// lookup returns the live session for token.
func (ss *sessionStore) lookup(token string) (*session, bool) {
	if len(token) != 64 {
		return nil, false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[sessionKey(token)]
	if !ok || !ss.now().Before(s.expires) {
		return nil, false
	}
	return s, true
}

func (ss *sessionStore) drop(key string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, key)
}

func (ss *sessionStore) dropVolunteer(volunteer string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, s := range ss.m {
		if s.volunteer == volunteer {
			delete(ss.m, k)
		}
	}
}
