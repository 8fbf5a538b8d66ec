package api

// The credential store: DataDir()/credentials.json (mode 0600, replaced
// atomically). An admin who writes a volunteer of this centre gets a one-time
// enrolment code; the volunteer sets a password with it. Only a SHA-256 of the
// code and an argon2id hash of the password are stored, so the file alone
// lets nobody log in.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/helpmesh/helpmesh/internal/atomicfile"
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
	cs.dummy = credential{Hash: make([]byte, params.KeyLen), Salt: newSalt(), Params: params}
	return cs, nil
}

// newSalt is a fresh random salt for one password.
func newSalt() []byte {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	return salt
}

// hashNew hashes password, about to be stored, with a fresh salt and the
// store's parameters (hash says what known means).
func (cs *credStore) hashNew(password string, known bool) (hash, salt []byte, err error) {
	salt = newSalt()
	hash, err = cs.hash([]byte(password), salt, cs.params, known)
	return hash, salt, err
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
	hash, salt, err := cs.hashNew(password, true)
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

// change sets id's password to password once current is shown to be the
// one it has (exists and known as for verify). errWrongPassword when it
// is not, or when the password changed while this one was being checked;
// errBusy when no argon2id run is free.
func (cs *credStore) change(id, current, password string, exists, known bool) error {
	cs.mu.Lock()
	before, had := cs.data.Volunteers[id]
	cs.mu.Unlock()
	ok, err := cs.verify(id, current, exists, known)
	if err != nil {
		return err
	}
	if !ok {
		return errWrongPassword
	}
	hash, salt, err := cs.hashNew(password, known)
	if err != nil {
		return err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	// Another change (or a reset) may have landed while we were hashing:
	// the password shown is no longer the one it has.
	now, still := cs.data.Volunteers[id]
	if !had || !still || subtle.ConstantTimeCompare(now.Hash, before.Hash) != 1 {
		return errWrongPassword
	}
	cs.data.Volunteers[id] = credential{Hash: hash, Salt: salt, Params: cs.params, SetAt: cs.now().UTC()}
	if err := cs.saveLocked(); err != nil {
		cs.data.Volunteers[id] = now
		return err
	}
	return nil
}

// login verifies id's password as verify does and, when it is right,
// runs open (which creates the session) under the store's lock, once it
// has seen that the credential is still the one checked. Without that, a
// password change or reset landing while argon2id ran would end the
// volunteer's sessions before this one existed, and a login with the old
// password would outlive the change. A credential that changed meanwhile
// counts as a wrong password.
func (cs *credStore) login(id, password string, exists, known bool, open func() error) (bool, error) {
	cs.mu.Lock()
	before, had := cs.data.Volunteers[id]
	cs.mu.Unlock()
	ok, err := cs.verify(id, password, exists, known)
	if err != nil || !ok {
		return false, err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if now, still := cs.data.Volunteers[id]; !had || !still || subtle.ConstantTimeCompare(now.Hash, before.Hash) != 1 {
		return false, nil
	}
	return true, open()
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
