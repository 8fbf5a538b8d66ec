package api

// The audit log: one JSON line per staff or admin write (who, what, on
// which id, when, with which answer), kept by the centre where it was made
// and nowhere else. It holds ids and action names only: never anything of
// a visitor or a conversation, never a password or an enrolment code (the
// wrapper in staff.go writes the entries; no handler does). It is written
// synchronously, under a mutex, before the answer leaves, and bounded:
// past maxAuditBytes the file is renamed to AuditFile+".1" (replacing the
// one before) and a new one begins, so a centre keeps between one and two
// files' worth.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

const (
	// AuditFile is the audit log's name in the data directory.
	AuditFile = "audit.log"
	// maxAuditBytes bounds one audit file (5 MiB, some 40 000 entries).
	maxAuditBytes = 5 << 20
	// maxAuditLimit bounds GET /v1/audit's limit; defaultAuditLimit is
	// its default.
	maxAuditLimit     = 500
	defaultAuditLimit = 100
	// maxAuditTarget bounds an entry's target id, which a request body
	// may name (it is checked by the handler only after).
	maxAuditTarget = 64
)

// auditEntry is one line of the audit log.
type auditEntry struct {
	Time time.Time `json:"time"`
	// Actor is the staff member's volunteer id, or "admin-token".
	Actor string `json:"actor"`
	// Role is the actor's roster role when they acted ("admin-token" for
	// the token).
	Role string `json:"role"`
	// Action is the route's name ("volunteer.put", "policy.patch").
	Action string `json:"action"`
	// Target is the id acted on: a volunteer's or a centre's id, or the
	// policy version written.
	Target string `json:"target,omitempty"`
	// Status is the HTTP status answered (403: refused).
	Status int `json:"status"`
}

// AuditLog answers GET /v1/audit: the newest entries first.
type AuditLog struct {
	Entries []auditEntry `json:"entries"`
}

// auditLog appends entries to DataDir()/audit.log.
type auditLog struct {
	path string
	max  int64 // maxAuditBytes (tests lower it)
	now  func() time.Time

	mu   sync.Mutex
	f    *os.File
	size int64
}

func openAuditLog(dir string) (*auditLog, error) {
	if dir == "" {
		return nil, errors.New("the centre has no data directory for the audit log")
	}
	a := &auditLog{path: filepath.Join(dir, AuditFile), max: maxAuditBytes, now: time.Now}
	if err := a.openLocked(); err != nil {
		return nil, err
	}
	return a, nil
}

// openLocked opens (or creates, mode 0600) the current file for appending.
func (a *auditLog) openLocked() error {
	f, err := os.OpenFile(a.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("open audit log: %w", err)
	}
	_ = f.Chmod(0o600)
	a.f, a.size = f, st.Size()
	return nil
}

// record appends e, stamped now, and syncs it to disk. A failure is logged
// (the action it records has already been done) and returned.
func (a *auditLog) record(log *slog.Logger, e auditEntry) error {
	e.Time = a.now().UTC().Truncate(time.Millisecond)
	if len(e.Target) > maxAuditTarget {
		e.Target = e.Target[:maxAuditTarget]
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode audit entry: %w", err)
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	err = a.appendLocked(b)
	if err != nil {
		log.Error("audit entry not written", "action", e.Action, "err", err)
	}
	return err
}

func (a *auditLog) appendLocked(b []byte) error {
	if a.f == nil {
		if err := a.openLocked(); err != nil {
			return err
		}
	}
	if a.size > 0 && a.size+int64(len(b)) > a.max {
		if err := a.rotateLocked(); err != nil {
			return err
		}
	}
	n, err := a.f.Write(b)
	a.size += int64(n)
	if err != nil {
		return fmt.Errorf("write audit log: %w", err)
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("sync audit log: %w", err)
	}
	return nil
}

// rotateLocked renames the current file to .1 and starts a new one.
func (a *auditLog) rotateLocked() error {
	_ = a.f.Close()
	a.f = nil
	if err := os.Rename(a.path, a.path+".1"); err != nil {
		return fmt.Errorf("rotate audit log: %w", err)
	}
	return a.openLocked()
}

// newest returns up to n entries, newest first, from the current file and
// then the one before it. Lines that do not decode are skipped.
func (a *auditLog) newest(n int) ([]auditEntry, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []auditEntry
	for _, p := range []string{a.path, a.path + ".1"} {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		var file []auditEntry
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(make([]byte, 0, 4096), 64<<10)
		for sc.Scan() {
			var e auditEntry
			if json.Unmarshal(sc.Bytes(), &e) == nil {
				file = append(file, e)
			}
		}
		slices.Reverse(file)
		out = append(out, file...)
		if len(out) >= n {
			return out[:n], nil
		}
	}
	return out, nil
}

func (a *auditLog) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// parseAuditLimit reads GET /v1/audit's limit: empty for the default, else
// a decimal 1..maxAuditLimit.
func parseAuditLimit(s string) (int, error) {
	if s == "" {
		return defaultAuditLimit, nil
	}
	if len(s) > 3 || s[0] == '0' {
		return 0, fmt.Errorf("limit=%q: want a whole number from 1 to %d", clipText(s), maxAuditLimit)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxAuditLimit || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("limit=%q: want a whole number from 1 to %d", clipText(s), maxAuditLimit)
	}
	return n, nil
}

// auditRead answers GET /v1/audit?limit=N.
func (s *Server) auditRead(w http.ResponseWriter, r *http.Request) {
	n, err := parseAuditLimit(r.URL.Query().Get("limit"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	entries, err := s.audit.newest(n)
	if err != nil {
		s.log.Error("audit log not read", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the audit log could not be read")
		return
	}
	if entries == nil {
		entries = []auditEntry{}
	}
	writeJSON(w, http.StatusOK, AuditLog{Entries: entries})
}
