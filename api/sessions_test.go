package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/logsink"
)

// testClock is a settable clock for the session store.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openTestSessions(t *testing.T, dir string, clock *testClock, perVolunteer, total int) (*sessionStore, *logsink.Buffer) {
	t.Helper()
	logs := &logsink.Buffer{}
	ss, err := loadSessionStore(dir, slog.New(slog.NewTextHandler(logs, nil)), clock.now, perVolunteer, total)
	if err != nil {
		t.Fatal(err)
	}
	return ss, logs
}

func mustCreate(t *testing.T, ss *sessionStore, volunteer string) string {
	t.Helper()
	token, _, err := ss.create(volunteer)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func readSessionFile(t *testing.T, dir string) ([]byte, sessionFile) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, SessionsFile))
	if err != nil {
		t.Fatal(err)
	}
	f, err := decodeSessionFile(b)
	if err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return b, f
}

// The file holds the token's SHA-256, the volunteer, created and expires:
// never the token in any encoding. A reopened store knows the sessions.
func TestSessionStorePersistsOnlyHashes(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{t: time.Date(2030, 3, 1, 8, 0, 0, 0, time.UTC)}
	ss, _ := openTestSessions(t, dir, clock, maxSessionsPerVol, maxSessions)
	kari := mustCreate(t, ss, "kari")
	clock.add(time.Minute)
	ola := mustCreate(t, ss, "ola")

	b, f := readSessionFile(t, dir)
	for _, tok := range []string{kari, ola} {
		raw, _ := hex.DecodeString(tok)
		for _, enc := range []string{tok, strings.ToUpper(tok), base64.StdEncoding.EncodeToString(raw), base64.RawURLEncoding.EncodeToString(raw)} {
			if bytes.Contains(b, []byte(enc)) {
				t.Fatalf("the session file holds the token (%s): %s", enc, b)
			}
		}
	}
	if len(f.Sessions) != 2 {
		t.Fatalf("%d sessions in the file, want 2: %s", len(f.Sessions), b)
	}
	sum := sha256.Sum256([]byte(kari))
	want := storedSession{TokenSHA256: sum[:], Volunteer: "kari", Created: clock.now().Add(-time.Minute), Expires: clock.now().Add(-time.Minute + sessionTTL)}
	got := f.Sessions[0]
	if !bytes.Equal(got.TokenSHA256, want.TokenSHA256) || got.Volunteer != want.Volunteer || !got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) {
		t.Fatalf("stored %+v, want %+v", got, want)
	}
	// Nothing else is stored: each session has exactly these fields.
	var generic struct {
		Sessions []map[string]any `json:"sessions"`
	}
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	for _, m := range generic.Sessions {
		if len(m) != 4 || m["token_sha256"] == nil || m["volunteer"] == nil || m["created"] == nil || m["expires"] == nil {
			t.Fatalf("stored session %v, want token_sha256, volunteer, created, expires only", m)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, SessionsFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("session file mode: %v %v", st.Mode(), err)
	}

	again, logs := openTestSessions(t, dir, clock, maxSessionsPerVol, maxSessions)
	for tok, vol := range map[string]string{kari: "kari", ola: "ola"} {
		s, ok := again.lookup(tok)
		if !ok || s.volunteer != vol {
			t.Fatalf("after reopening, %s's session: %v %v", vol, s, ok)
		}
	}
	if _, ok := again.lookup(strings.Repeat("0", 64)); ok {
		t.Fatal("a made-up token opened a session")
	}
	if logs.String() != "" {
		t.Fatalf("reopening logged: %s", logs.String())
	}
}

// An ended session stays ended after a reopen, for one session and for a
// volunteer's every session.
func TestSessionStoreEndedSessionsStayDead(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{t: time.Date(2030, 3, 1, 8, 0, 0, 0, time.UTC)}
	ss, _ := openTestSessions(t, dir, clock, maxSessionsPerVol, maxSessions)
	kari1, kari2 := mustCreate(t, ss, "kari"), mustCreate(t, ss, "kari")
	ola1, ola2 := mustCreate(t, ss, "ola"), mustCreate(t, ss, "ola")

	s, _ := ss.lookup(kari1)
	if err := ss.drop(s.key); err != nil {
		t.Fatal(err)
	}
	if n, err := ss.dropVolunteer("ola"); err != nil || n != 2 {
		t.Fatalf("dropVolunteer: %d %v", n, err)
	}
	again, _ := openTestSessions(t, dir, clock, maxSessionsPerVol, maxSessions)
	for _, tok := range []string{kari1, ola1, ola2} {
		if _, ok := again.lookup(tok); ok {
			t.Fatal("an ended session came back after a reopen")
		}
	}
	if _, ok := again.lookup(kari2); !ok {
		t.Fatal("kari's other session was lost")
	}
	if _, f := readSessionFile(t, dir); len(f.Sessions) != 1 {
		t.Fatalf("%d sessions in the file, want 1", len(f.Sessions))
	}
}

// Sessions end at their absolute expiry, however used; expired ones are not
// loaded and leave the file at its next write.
func TestSessionStoreExpiry(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{t: time.Date(2030, 3, 1, 8, 0, 0, 0, time.UTC)}
	ss, _ := openTestSessions(t, dir, clock, maxSessionsPerVol, maxSessions)
	old := mustCreate(t, ss, "kari")
	clock.add(sessionTTL - time.Second)
	if _, ok := ss.lookup(old); !ok {
		t.Fatal("the session ended before its expiry")
	}
	young := mustCreate(t, ss, "ola")
	clock.add(time.Second)
	if _, ok := ss.lookup(old); ok {
		t.Fatal("the session outlived its expiry")
	}
	again, _ := openTestSessions(t, dir, clock, maxSessionsPerVol, maxSessions)
	if _, ok := again.lookup(old); ok {
		t.Fatal("an expired session was loaded")
	}
	if _, ok := again.lookup(young); !ok {
		t.Fatal("a live session was not loaded")
	}
	mustCreate(t, again, "ida")
	if _, f := readSessionFile(t, dir); len(f.Sessions) != 2 {
		t.Fatalf("%d sessions in the file, want 2 (the expired one dropped)", len(f.Sessions))
	}
}

// A volunteer's sessions and all sessions are bounded, the oldest going
// first, on disk too.
func TestSessionStoreBounds(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{t: time.Date(2030, 3, 1, 8, 0, 0, 0, time.UTC)}
	ss, _ := openTestSessions(t, dir, clock, 3, 5)
	var kari []string
	for range 5 {
		kari = append(kari, mustCreate(t, ss, "kari"))
		clock.add(time.Second)
	}
	for i, tok := range kari {
		if _, ok := ss.lookup(tok); ok != (i >= 2) {
			t.Fatalf("kari's session %d live: %v, want the 3 newest only", i, ok)
		}
	}
	var others []string
	for i := range 3 {
		others = append(others, mustCreate(t, ss, fmt.Sprintf("v%d", i)))
		clock.add(time.Second)
	}
	// 3 of kari's and 3 others make 6: the oldest of all (kari's third) goes.
	if _, ok := ss.lookup(kari[2]); ok {
		t.Fatal("the oldest session outlived the total bound")
	}
	_, f := readSessionFile(t, dir)
	if len(f.Sessions) != 5 {
		t.Fatalf("%d sessions in the file, want 5", len(f.Sessions))
	}
	// A file written with higher bounds is cut to the store's on loading.
	small, _ := openTestSessions(t, dir, clock, 1, 5)
	if _, ok := small.lookup(kari[3]); ok {
		t.Fatal("kari's older session was loaded beyond the bound of 1")
	}
	for _, tok := range append([]string{kari[4]}, others...) {
		if _, ok := small.lookup(tok); !ok {
			t.Fatal("a session within the bounds was not loaded")
		}
	}
}

// A file that is not understood costs a new login, never the centre's
// start, and is replaced at the next write.
func TestSessionStoreIgnoresBadFile(t *testing.T) {
	clock := &testClock{t: time.Date(2030, 3, 1, 8, 0, 0, 0, time.UTC)}
	for name, content := range map[string]string{
		"garbage":       "{not json",
		"other version": `{"version": 2, "sessions": []}`,
		"unknown field": `{"version": 1, "sessions": [], "ip": "192.0.2.1"}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, SessionsFile), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			ss, logs := openTestSessions(t, dir, clock, maxSessionsPerVol, maxSessions)
			if !strings.Contains(logs.String(), "volunteer sessions not read") {
				t.Fatalf("no warning: %q", logs.String())
			}
			tok := mustCreate(t, ss, "kari")
			again, _ := openTestSessions(t, dir, clock, maxSessionsPerVol, maxSessions)
			if _, ok := again.lookup(tok); !ok {
				t.Fatal("the replaced file does not hold the new session")
			}
		})
	}
}

// A session that cannot be written does not exist; one whose end cannot be
// written is ended in memory and the caller hears of it.
func TestSessionStoreWriteFailure(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{t: time.Date(2030, 3, 1, 8, 0, 0, 0, time.UTC)}
	ss, _ := openTestSessions(t, dir, clock, maxSessionsPerVol, maxSessions)
	tok := mustCreate(t, ss, "kari")
	ss.path = filepath.Join(dir, "gone", SessionsFile)
	if _, _, err := ss.create("kari"); err == nil {
		t.Fatal("create succeeded without a file")
	}
	if n := len(ss.m); n != 1 {
		t.Fatalf("%d sessions in memory after a failed create, want 1", n)
	}
	s, _ := ss.lookup(tok)
	if err := ss.drop(s.key); err == nil {
		t.Fatal("drop without a file said nothing")
	}
	if _, ok := ss.lookup(tok); ok {
		t.Fatal("a session whose end was not written still opens")
	}
}
