package api

// Volunteer sessions, kept in DataDir()/sessions.json (mode 0600, replaced
// atomically) so that a restart of the centre, such as a rolling upgrade,
// does not log volunteers out. The cookie's value is the token; the file
// holds only its SHA-256, the volunteer id and the session's creation and
// absolute expiry: never the token, an address or a user agent. The file
// alone lets nobody in.
//
// The file is written when a session begins or ends (login, logout, a
// password set, a volunteer removed), never per request, and it is bounded:
// maxSessionsPerVol per volunteer and maxSessions in all, the oldest going
// first.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/helpmesh/helpmesh/internal/atomicfile"
)

// SessionsFile is the session store's name in the data directory.
const SessionsFile = "sessions.json"

// maxSessions bounds the sessions of all volunteers together, so that the
// file stays small (about 200 bytes a session) whatever the roster's size.
const maxSessions = 10000

const sessionFileVersion = 1

// session is a logged-in volunteer, keyed by the SHA-256 of the cookie's
// token.
type session struct {
	key       string
	volunteer string
	created   time.Time
	expires   time.Time
}

// storedSession is a session as written to disk.
type storedSession struct {
	TokenSHA256 []byte    `json:"token_sha256"`
	Volunteer   string    `json:"volunteer"`
	Created     time.Time `json:"created"`
	Expires     time.Time `json:"expires"`
}

type sessionFile struct {
	Version  int             `json:"version"`
	Sessions []storedSession `json:"sessions"`
}

type sessionStore struct {
	path string
	now  func() time.Time
	// perVolunteer and total are maxSessionsPerVol and maxSessions (tests
	// lower them).
	perVolunteer, total int

	mu sync.Mutex
	m  map[string]*session
}

// openSessionStore loads dir's sessions, dropping expired ones. A file that
// cannot be read or is not understood is logged and ignored: losing it only
// asks volunteers to log in again, and no ended session can come back from
// it, since it is replaced at the next login.
func openSessionStore(dir string, log *slog.Logger) (*sessionStore, error) {
	return loadSessionStore(dir, log, time.Now, maxSessionsPerVol, maxSessions)
}

// loadSessionStore is openSessionStore with its clock and bounds given.
func loadSessionStore(dir string, log *slog.Logger, now func() time.Time, perVolunteer, total int) (*sessionStore, error) {
	if dir == "" {
		return nil, errors.New("the centre has no data directory for volunteer sessions")
	}
	ss := &sessionStore{path: filepath.Join(dir, SessionsFile), now: now, perVolunteer: perVolunteer, total: total, m: map[string]*session{}}
	b, err := os.ReadFile(ss.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return ss, nil
	case err != nil:
		log.Warn("volunteer sessions not read: volunteers log in again", "err", err)
		return ss, nil
	}
	f, err := decodeSessionFile(b)
	if err != nil {
		log.Warn("volunteer sessions not read: volunteers log in again", "file", ss.path, "err", err)
		return ss, nil
	}
	_ = os.Chmod(ss.path, 0o600)
	at := now()
	for _, st := range f.Sessions {
		if len(st.TokenSHA256) != sha256.Size || st.Volunteer == "" || !at.Before(st.Expires) {
			continue
		}
		s := &session{key: string(st.TokenSHA256), volunteer: st.Volunteer, created: st.Created, expires: st.Expires}
		ss.m[s.key] = s
	}
	ss.boundLocked("")
	return ss, nil
}

func decodeSessionFile(b []byte) (sessionFile, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f sessionFile
	if err := dec.Decode(&f); err != nil {
		return sessionFile{}, fmt.Errorf("decode sessions: %w", err)
	}
	if f.Version != sessionFileVersion {
		return sessionFile{}, fmt.Errorf("decode sessions: version %d, this build reads %d", f.Version, sessionFileVersion)
	}
	return f, nil
}

func sessionKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return string(sum[:])
}

// create returns a new session's token (32 random bytes, hex), once the
// session is on disk.
func (ss *sessionStore) create(volunteer string) (token string, s *session, err error) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	now := ss.now()
	s = &session{key: sessionKey(token), volunteer: volunteer, created: now, expires: now.Add(sessionTTL)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	before := maps.Clone(ss.m)
	ss.m[s.key] = s
	ss.boundLocked(volunteer)
	if err := ss.saveLocked(); err != nil {
		ss.m = before
		return "", nil, err
	}
	return token, s, nil
}

// boundLocked drops expired sessions, then the oldest of volunteer's beyond
// maxSessionsPerVol (volunteer "": of every volunteer), then the oldest of
// all beyond maxSessions.
func (ss *sessionStore) boundLocked(volunteer string) {
	now := ss.now()
	byVol := map[string][]*session{}
	for k, o := range ss.m {
		if !now.Before(o.expires) {
			delete(ss.m, k)
			continue
		}
		if volunteer == "" || o.volunteer == volunteer {
			byVol[o.volunteer] = append(byVol[o.volunteer], o)
		}
	}
	oldestFirst := func(a, b *session) int { return a.created.Compare(b.created) }
	for _, mine := range byVol {
		if len(mine) > ss.perVolunteer {
			slices.SortFunc(mine, oldestFirst)
			for _, o := range mine[:len(mine)-ss.perVolunteer] {
				delete(ss.m, o.key)
			}
		}
	}
	if len(ss.m) > ss.total {
		all := make([]*session, 0, len(ss.m))
		for _, o := range ss.m {
			all = append(all, o)
		}
		slices.SortFunc(all, oldestFirst)
		for _, o := range all[:len(all)-ss.total] {
			delete(ss.m, o.key)
		}
	}
}

// saveLocked writes the live sessions atomically (atomicfile: temp file,
// fsync, rename, fsync of the directory).
func (ss *sessionStore) saveLocked() error {
	now := ss.now()
	f := sessionFile{Version: sessionFileVersion, Sessions: make([]storedSession, 0, len(ss.m))}
	for _, s := range ss.m {
		if now.Before(s.expires) {
			f.Sessions = append(f.Sessions, storedSession{
				TokenSHA256: []byte(s.key), Volunteer: s.volunteer, Created: s.created.UTC(), Expires: s.expires.UTC(),
			})
		}
	}
	// A stable order keeps the file's diffs readable and tests simple.
	slices.SortFunc(f.Sessions, func(a, b storedSession) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return bytes.Compare(a.TokenSHA256, b.TokenSHA256)
	})
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode sessions: %w", err)
	}
	if err := atomicfile.Write(ss.path, b, 0o600); err != nil {
		return fmt.Errorf("save sessions: %w", err)
	}
	return nil
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

// live says whether the session stored under key is still there and
// unexpired (a console checks its own now and then).
func (ss *sessionStore) live(key string) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[key]
	return ok && ss.now().Before(s.expires)
}

// drop ends one session. It is gone from memory even when the file could
// not be written; the error says it may come back after a restart.
func (ss *sessionStore) drop(key string) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.m[key]; !ok {
		return nil
	}
	delete(ss.m, key)
	return ss.saveLocked()
}

// dropVolunteer ends every session of volunteer and says how many there
// were; as for drop, they are gone from memory whatever the error.
func (ss *sessionStore) dropVolunteer(volunteer string) (int, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := 0
	for k, s := range ss.m {
		if s.volunteer == volunteer {
			delete(ss.m, k)
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	return n, ss.saveLocked()
}

// dropVolunteerExcept ends every session of volunteer but the one keyed
// keep, and says how many it ended; as for drop, they are gone from memory
// whatever the error.
func (ss *sessionStore) dropVolunteerExcept(volunteer, keep string) (int, error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := 0
	for k, s := range ss.m {
		if s.volunteer == volunteer && k != keep {
			delete(ss.m, k)
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	return n, ss.saveLocked()
}
