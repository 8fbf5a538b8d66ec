package api

// Volunteers: enrolment, credentials, login and sessions.
//
// Credentials live only at the volunteer's home centre, in
// DataDir()/credentials.json (mode 0600, replaced atomically), never in the
// roster. An admin who writes a volunteer of this centre gets a one-time
// enrolment code (72 h); the volunteer sets a password with it. Only a
// SHA-256 of the code and an argon2id hash of the password are stored.
// Sessions are in memory only: a restart logs everyone out.
//
// Endpoints (errors are JSON {"code","error"} bodies):
//
//	POST /v1/volunteers  (admin)  roster write, as before; now answers
//	    200 {"volunteer":{...},"enrolment_code":"XXXX-XXXX-XXXX","enrolment_expires":"<RFC 3339>"}
//	    The code fields are omitted for a volunteer of another centre (enrol
//	    them at their home centre); writing such a volunteer here drops any
//	    credentials this centre held for them. Every write for a volunteer of
//	    this centre issues a new code and voids the pending one.
//	POST /v1/volunteers/{id}/enrolment  (admin)  a new code for a volunteer
//	    of this centre, no roster write needed (lost code, forgotten
//	    password); same 200 body; 404 not_found otherwise.
//	DELETE /v1/volunteers/{id}  (admin)  also drops the credentials and
//	    sessions and closes the console.
//	POST /v1/volunteer/enrol  {"volunteer":"v-7f3a","code":"XXXX-XXXX-XXXX","password":"..."}
//	    204: the password is set (or replaced), the code used up, the
//	    volunteer's other sessions ended. The code is read forgivingly (case,
//	    spaces and dashes ignored; O=0, I=L=1).
//	    400 bad_request (malformed body, missing field), 400 bad_password
//	    (under 10 characters, over 256 bytes, not UTF-8; the code stays
//	    valid), 401 bad_enrolment (wrong, used, replaced or expired code, or
//	    not a volunteer of this centre: one message for all),
//	    415 unsupported_media_type (not Content-Type: application/json),
//	    429 too_many_attempts and 503 busy (Retry-After), as for login.
//	POST /v1/volunteer/login  {"volunteer":"v-7f3a","password":"..."}
//	    204 with Set-Cookie: helpmesh_session=<64 hex>; Path=/; Max-Age=43200;
//	    HttpOnly; SameSite=Strict (and Secure over TLS, or behind a trusted
//	    proxy that says X-Forwarded-Proto: https). 401 unauthorized with one
//	    message for an unknown volunteer, another centre's volunteer, one not
//	    enrolled, and a wrong password. 400, 415 as above. 429
//	    too_many_attempts (Retry-After) after 5 failures for one volunteer
//	    id from one address (a wait of 20 s, doubling with each further
//	    failure, up to 15 min), or after 20 attempts from one address by ids
//	    that never logged in from it (then one per 6 s); 503 busy
//	    (Retry-After) when the password checks the centre runs at once are
//	    all taken. See attempts.go.
//	POST /v1/volunteer/logout  204, ends the cookie's session and closes its
//	    console; clears the cookie. Without a session also 204.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/atomicfile"
)

const (
	// CredentialsFile is the credential store's name in the data directory.
	CredentialsFile = "credentials.json"
	// SessionCookie names the volunteer's session cookie.
	SessionCookie = "helpmesh_session"

	enrolmentTTL      = 72 * time.Hour
	sessionTTL        = 12 * time.Hour
	minPasswordRunes  = 10
	maxPasswordBytes  = 256
	maxSessionsPerVol = 16
)

// Concurrent argon2id runs (64 MiB and two threads each). maxHashing() are
// for anyone; maxHashingKnown more are kept for volunteers at a usual
// address and for enrolments with a right code, so a flood of made-up
// logins can neither take every run nor more than about half the CPU (the
// kept run's share is what keeps a real login fast under a flood). Beyond
// them a check is refused at once (503 busy): queueing would let a flood
// delay everyone behind it.
const maxHashingKnown = 1

func maxHashing() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// argonParams is an argon2id cost; stored with every hash so that a later
// change of the default still verifies old hashes.
type argonParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	KeyLen    uint32 `json:"key_len"`
}

var defaultArgon = argonParams{Time: 2, MemoryKiB: 64 << 10, Threads: 2, KeyLen: 32}

func (p argonParams) valid() bool {
	return p.Time >= 1 && p.Time <= 16 && p.MemoryKiB >= 8 && p.MemoryKiB <= 1<<20 &&
		p.Threads >= 1 && p.KeyLen >= 16 && p.KeyLen <= 64
}

// credential is one volunteer's password hash.
type credential struct {
	Hash   []byte      `json:"hash"`
	Salt   []byte      `json:"salt"`
	Params argonParams `json:"params"`
	SetAt  time.Time   `json:"set_at"`
}

// enrolment is a pending one-time code: only its SHA-256 is kept.
type enrolment struct {
	CodeSHA256 []byte    `json:"code_sha256"`
	Expires    time.Time `json:"expires"`
}

const credFileVersion = 1

type credFile struct {
	Version    int                   `json:"version"`
	Volunteers map[string]credential `json:"volunteers"`
	Enrolments map[string]enrolment  `json:"enrolments"`
}

// credStore is the centre's credential file, loaded once and rewritten on
// every change.
type credStore struct {
	path   string
	params argonParams
	now    func() time.Time
	hashes chan struct{} // argon2id runs for anyone
	kept   chan struct{} // argon2id runs kept for known volunteers
	dummy  credential    // verified against when there is no credential

	// hashRuns counts argon2id runs, for tests that measure a flood's cost.
	hashRuns atomic.Int64

	mu   sync.Mutex
	data credFile
}

var (
	errBadCredentials  = errors.New("unknown volunteer or wrong password")
	errBadEnrolment    = errors.New("the enrolment code is wrong, already used or expired (ask your centre for a new one)")
	errTooManyAttempts = errors.New("too many attempts")
	errBusy            = errors.New("the centre is checking too many passwords at once")
)

func openCredStore(dir string, params argonParams) (*credStore, error) {
	if dir == "" {
		return nil, errors.New("the centre has no data directory for volunteer credentials")
	}
	if params == (argonParams{}) {
		params = defaultArgon
	}
	if !params.valid() {
		return nil, fmt.Errorf("argon2id parameters %+v out of range", params)
	}
	cs := &credStore{
		path: filepath.Join(dir, CredentialsFile), params: params, now: time.Now,
		hashes: make(chan struct{}, maxHashing()),
		kept:   make(chan struct{}, maxHashingKnown),
		data:   credFile{Version: credFileVersion, Volunteers: map[string]credential{}, Enrolments: map[string]enrolment{}},
	}
	b, err := os.ReadFile(cs.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read credentials: %w", err)
	default:
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		var f credFile
		if err := dec.Decode(&f); err != nil {
			return nil, fmt.Errorf("read credentials %s: %w", cs.path, err)
		}
		if f.Version != credFileVersion {
			return nil, fmt.Errorf("read credentials %s: version %d, this build reads %d", cs.path, f.Version, credFileVersion)
		}
		if f.Volunteers != nil {
			cs.data.Volunteers = f.Volunteers
		}
		if f.Enrolments != nil {
			cs.data.Enrolments = f.Enrolments
		}
		_ = os.Chmod(cs.path, 0o600)
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	cs.dummy = credential{Hash: make([]byte, params.KeyLen), Salt: salt, Params: params}
	return cs, nil
}

// saveLocked writes the store atomically: temp file, fsync, rename, fsync
// of the directory.
func (cs *credStore) saveLocked() error {
	now := cs.now()
	for id, e := range cs.data.Enrolments {
		if !now.Before(e.Expires) {
			delete(cs.data.Enrolments, id)
		}
	}
	b, err := json.MarshalIndent(cs.data, "", "  ")
	if err != nil {
		return fmt.Errorf("encode credentials: %w", err)
	}
	return atomicfile.Write(cs.path, b, 0o600)
}

// Enrolment codes: 12 characters of Crockford's base32 (60 bits), shown as
// XXXX-XXXX-XXXX. Input is forgiving: case, spaces and dashes are ignored,
// O reads as 0 and I or L as 1.
const codeAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

func newEnrolmentCode() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	n := binary.BigEndian.Uint64(b[:])
	var sb strings.Builder
	for i := range 12 {
		if i > 0 && i%4 == 0 {
			sb.WriteByte('-')
		}
		sb.WriteByte(codeAlphabet[n&31])
		n >>= 5
	}
	return sb.String()
}

// normaliseCode returns the code's 12 canonical characters, or "".
func normaliseCode(code string) string {
	if len(code) > 64 {
		return ""
	}
	var sb strings.Builder
	for _, r := range strings.ToUpper(code) {
		switch {
		case r == '-' || r == ' ':
			continue
		case r == 'O':
			r = '0'
		case r == 'I' || r == 'L':
			r = '1'
		}
		if r > 0x7f || !strings.ContainsRune(codeAlphabet, r) {
			return ""
		}
		sb.WriteRune(r)
	}
	if sb.Len() != 12 {
		return ""
	}
	return sb.String()
}

func codeHash(code string) []byte {
	sum := sha256.Sum256([]byte(code))
	return sum[:]
}

// newEnrolment issues a code for volunteer id, replacing any pending one.
func (cs *credStore) newEnrolment(id string) (code string, expires time.Time, err error) {
	code = newEnrolmentCode()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	old, had := cs.data.Enrolments[id]
	expires = cs.now().Add(enrolmentTTL).UTC()
	cs.data.Enrolments[id] = enrolment{CodeSHA256: codeHash(normaliseCode(code)), Expires: expires}
	if err := cs.saveLocked(); err != nil {
		if had {
			cs.data.Enrolments[id] = old
		} else {
			delete(cs.data.Enrolments, id)
		}
		return "", time.Time{}, err
	}
	return code, expires, nil
}

// checkCodeLocked reports whether code is id's pending, unexpired code.
func (cs *credStore) checkCodeLocked(id, code string) bool {
	e, ok := cs.data.Enrolments[id]
	norm := normaliseCode(code)
	if !ok || norm == "" {
		return false
	}
	return subtle.ConstantTimeCompare(codeHash(norm), e.CodeSHA256) == 1 && cs.now().Before(e.Expires)
}

// enrol consumes id's code and sets the password. A right code may use a
// kept argon2id run.
func (cs *credStore) enrol(id, code, password string) error {
	cs.mu.Lock()
	ok := cs.checkCodeLocked(id, code)
	cs.mu.Unlock()
	if !ok {
		return errBadEnrolment
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	hash, err := cs.hash([]byte(password), salt, cs.params, true)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	// Single use: someone may have used the code while we were hashing.
	if !cs.checkCodeLocked(id, code) {
		return errBadEnrolment
	}
	oldEnrol := cs.data.Enrolments[id]
	oldCred, hadCred := cs.data.Volunteers[id]
	delete(cs.data.Enrolments, id)
	cs.data.Volunteers[id] = credential{Hash: hash, Salt: salt, Params: cs.params, SetAt: cs.now().UTC()}
	if err := cs.saveLocked(); err != nil {
		cs.data.Enrolments[id] = oldEnrol
		if hadCred {
			cs.data.Volunteers[id] = oldCred
		} else {
			delete(cs.data.Volunteers, id)
		}
		return err
	}
	return nil
}

// verify checks id's password in constant time. exists says whether the
// caller considers id a volunteer who may log in here; either way the same
// work is done, so timing does not tell which part was wrong. known lets
// the check use a kept argon2id run (see maxHashingKnown). errBusy when
// no run is free.
func (cs *credStore) verify(id, password string, exists, known bool) (bool, error) {
	cs.mu.Lock()
	cred, ok := cs.data.Volunteers[id]
	cs.mu.Unlock()
	if !ok || !exists {
		cred, ok = cs.dummy, false
	}
	got, err := cs.hash([]byte(password), cred.Salt, cred.Params, known)
	if err != nil {
		return false, err
	}
	match := subtle.ConstantTimeCompare(got, cred.Hash) == 1
	return match && ok, nil
}

// hash runs argon2id if a run is free (known: a kept one too), and
// otherwise refuses at once with errBusy.
func (cs *credStore) hash(password, salt []byte, p argonParams, known bool) ([]byte, error) {
	if !p.valid() {
		return nil, fmt.Errorf("stored argon2id parameters %+v out of range", p)
	}
	slot, err := cs.takeRun(known)
	if err != nil {
		return nil, err
	}
	defer func() { <-slot }()
	cs.hashRuns.Add(1)
	return argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, p.KeyLen), nil
}

// takeRun takes an argon2id run, or refuses with errBusy. A known
// volunteer takes the kept run first (it is theirs), else one for anyone.
// Anyone else takes one for anyone, but none while a kept run is going, so
// that the volunteer shares the CPU only with runs already under way.
func (cs *credStore) takeRun(known bool) (chan struct{}, error) {
	if known {
		select {
		case cs.kept <- struct{}{}:
			return cs.kept, nil
		default:
		}
	} else if len(cs.kept) > 0 {
		return nil, errBusy
	}
	select {
	case cs.hashes <- struct{}{}:
		return cs.hashes, nil
	default:
		return nil, errBusy
	}
}

// remove forgets id's credential and pending code.
func (cs *credStore) remove(id string) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	_, c := cs.data.Volunteers[id]
	_, e := cs.data.Enrolments[id]
	if !c && !e {
		return nil
	}
	delete(cs.data.Volunteers, id)
	delete(cs.data.Enrolments, id)
	return cs.saveLocked()
}

// ---- sessions ----

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

// ---- HTTP ----

func (s *Server) initVolunteerDesk() error {
	for _, p := range s.cfg.AllowedOrigins {
		if _, err := path.Match(strings.ToLower(p), ""); err != nil || p == "" {
			return fmt.Errorf("allowed origin %q is not a valid pattern", p)
		}
	}
	creds, err := openCredStore(s.cfg.Centre.DataDir(), s.cfg.argon)
	if err != nil {
		return err
	}
	s.creds = creds
	s.sessions = newSessionStore()
	addrs := newAddrHasher(s.cfg.TrustedProxies)
	s.logins = newAttemptGuard(addrs)
	s.enrols = newAttemptGuard(addrs)
	s.chatStarts = newAddrLimiter(s.cfg.ChatStartsPerMinute, s.cfg.ChatStartBurst, s.cfg.TrustedProxies)
	s.timing = defaultSocketTiming
	s.socks = map[*wsock]struct{}{}
	s.consoles = map[string]*consoleConn{}
	return nil
}

// VolunteerWritten answers POST /v1/volunteers. A volunteer of this centre
// gets a one-time enrolment code to set a password with.
type VolunteerWritten struct {
	Volunteer     consensus.Volunteer `json:"volunteer"`
	EnrolmentCode string              `json:"enrolment_code,omitempty"`
	// EnrolmentExpires is when the code stops working.
	EnrolmentExpires *time.Time `json:"enrolment_expires,omitempty"`
}

// volunteerWritten follows a successful roster write of v.
func (s *Server) volunteerWritten(w http.ResponseWriter, v consensus.Volunteer) {
	resp := VolunteerWritten{Volunteer: v}
	if v.Centre != s.cfg.Centre.Centre() {
		// The volunteer belongs elsewhere (or moved away): nothing of theirs
		// may stay here.
		s.forgetVolunteer(v.ID, "you now belong to another centre")
		writeJSON(w, http.StatusOK, resp)
		return
	}
	code, expires, err := s.creds.newEnrolment(v.ID)
	if err != nil {
		s.log.Error("enrolment code not saved", "err", err)
		writeError(w, http.StatusInternalServerError, "internal",
			"the volunteer was saved in the roster but no enrolment code could be stored; post the volunteer again: "+err.Error())
		return
	}
	expires = expires.Truncate(time.Second)
	resp.EnrolmentCode, resp.EnrolmentExpires = code, &expires
	writeJSON(w, http.StatusOK, resp)
}

// newEnrolment issues a fresh enrolment code for a volunteer of this centre
// (a lost code, a forgotten password) without a roster write.
func (s *Server) newEnrolment(w http.ResponseWriter, r *http.Request) {
	v, ok := s.localVolunteer(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "not_found",
			fmt.Sprintf("volunteer %q is not a volunteer of %s (enrol volunteers at their home centre)", clipText(r.PathValue("id")), s.cfg.Centre.Centre()))
		return
	}
	s.volunteerWritten(w, v)
}

// forgetVolunteer drops a volunteer's credentials, sessions and console.
func (s *Server) forgetVolunteer(id, reason string) {
	if err := s.creds.remove(id); err != nil {
		s.log.Error("credentials not removed", "err", err)
	}
	s.sessions.dropVolunteer(id)
	s.closeConsole(id, "", reason)
}

// localVolunteer returns the roster volunteer id if they belong here.
func (s *Server) localVolunteer(id string) (consensus.Volunteer, bool) {
	v, ok := s.cfg.Centre.Roster().Volunteers[id]
	return v, ok && v.Centre == s.cfg.Centre.Centre()
}

// EnrolRequest sets a volunteer's password with an enrolment code.
type EnrolRequest struct {
	Volunteer string `json:"volunteer"`
	Code      string `json:"code"`
	Password  string `json:"password"`
}

// LoginRequest opens a volunteer session.
type LoginRequest struct {
	Volunteer string `json:"volunteer"`
	Password  string `json:"password"`
}

func (s *Server) enrol(w http.ResponseWriter, r *http.Request) {
	var req EnrolRequest
	if !jsonRequest(w, r) || !decodeBody(w, r, &req) {
		return
	}
	if req.Volunteer == "" || req.Code == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "volunteer and code are required")
		return
	}
	if err := checkPassword(req.Password); err != nil {
		writeError(w, http.StatusBadRequest, "bad_password", err.Error())
		return
	}
	at, wait, err := s.enrols.admit(r, req.Volunteer)
	if err != nil {
		refuseAttempt(w, "enrolment", wait, err)
		return
	}
	if _, ok := s.localVolunteer(req.Volunteer); !ok {
		at.failed()
		writeError(w, http.StatusUnauthorized, "bad_enrolment", errBadEnrolment.Error())
		return
	}
	if err := s.creds.enrol(req.Volunteer, req.Code, req.Password); err != nil {
		switch {
		case errors.Is(err, errBadEnrolment):
			at.failed()
			writeError(w, http.StatusUnauthorized, "bad_enrolment", err.Error())
			return
		case errors.Is(err, errBusy):
			at.unused()
			refuseAttempt(w, "enrolment", busyRetry, err)
			return
		}
		s.log.Error("enrolment failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the password could not be stored: "+err.Error())
		return
	}
	at.succeeded()
	s.logins.know(r, req.Volunteer)
	// A new password ends the volunteer's old sessions.
	s.sessions.dropVolunteer(req.Volunteer)
	s.closeConsole(req.Volunteer, "", "your password was changed")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func checkPassword(p string) error {
	switch {
	case !utf8.ValidString(p):
		return errors.New("the password must be UTF-8 text")
	case utf8.RuneCountInString(p) < minPasswordRunes:
		return fmt.Errorf("the password must have at least %d characters", minPasswordRunes)
	case len(p) > maxPasswordBytes:
		return fmt.Errorf("the password must be at most %d bytes", maxPasswordBytes)
	}
	return nil
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if !jsonRequest(w, r) || !decodeBody(w, r, &req) {
		return
	}
	if req.Volunteer == "" || req.Password == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "volunteer and password are required")
		return
	}
	at, wait, err := s.logins.admit(r, req.Volunteer)
	if err != nil {
		refuseAttempt(w, "login", wait, err)
		return
	}
	_, local := s.localVolunteer(req.Volunteer)
	ok, err := s.creds.verify(req.Volunteer, req.Password, local && len(req.Password) <= maxPasswordBytes, at.known)
	if err != nil {
		at.unused()
		if !errors.Is(err, errBusy) {
			s.log.Error("login not checked", "err", err)
		}
		refuseAttempt(w, "login", busyRetry, errBusy)
		return
	}
	if !ok {
		at.failed()
		writeError(w, http.StatusUnauthorized, "unauthorized", errBadCredentials.Error())
		return
	}
	at.succeeded()
	token, _ := s.sessions.create(req.Volunteer)
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: token, Path: "/",
		MaxAge: int(sessionTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: s.secure(r),
	})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if sess, ok := s.sessions.lookup(c.Value); ok {
			s.sessions.drop(sess.key)
			s.closeConsole(sess.volunteer, sess.key, "logged out")
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r),
	})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// sessionFrom returns the request's live session.
func (s *Server) sessionFrom(r *http.Request) (*session, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil, false
	}
	return s.sessions.lookup(c.Value)
}

// secure says whether the session cookie must be Secure: over TLS, or
// when a trusted proxy says the visitor's side was HTTPS.
func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || trustedPeer(r, s.cfg.TrustedProxies) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// refuseAttempt answers a login or enrolment (what) that attemptGuard or
// the argon2id slots refused: 429 too_many_attempts or 503 busy, both with
// Retry-After.
func refuseAttempt(w http.ResponseWriter, what string, wait time.Duration, err error) {
	secs := retryAfterSeconds(max(wait, time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	if errors.Is(err, errBusy) {
		writeError(w, http.StatusServiceUnavailable, "busy",
			fmt.Sprintf("the centre is too busy to check this %s now; try again in %d seconds", what, secs))
		return
	}
	writeError(w, http.StatusTooManyRequests, "too_many_attempts",
		fmt.Sprintf("too many %s attempts from your address; try again in %d seconds", what, secs))
}

// jsonRequest refuses bodies that are not declared JSON: a cross-site form
// cannot send application/json without a CORS preflight, which this API
// never grants.
func jsonRequest(w http.ResponseWriter, r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body as Content-Type: application/json")
		return false
	}
	return true
}
