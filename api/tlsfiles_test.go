package api

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/testcert"
)

// logBuffer is a slog handler's output a test may read while it is written.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// The reloader on a clock the test moves: a changed pair is served after
// the check interval and not before; a pair that does not load (a key that
// is not the certificate's, then a file half written) keeps the last good
// certificate, with one warning per change rather than one per handshake;
// a missing file too; and the next good pair is served again.
func TestCertFilesReloadKeepingTheLastGood(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca, err := testcert.NewCA("test ca")
	if err != nil {
		t.Fatal(err)
	}
	first, err := ca.Issue(certPath, keyPath, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	c, err := loadCertFiles(certPath, keyPath, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	c.now = func() time.Time { return now }
	serving := func() string {
		t.Helper()
		pair, err := c.getCertificate(nil)
		if err != nil || pair == nil || pair.Leaf == nil {
			t.Fatalf("getCertificate: %v, %v", pair, err)
		}
		return pair.Leaf.SerialNumber.String()
	}
	if got := serving(); got != first.SerialNumber.String() {
		t.Fatalf("serving %s, want the first certificate %s", got, first.SerialNumber)
	}

	second, err := ca.Issue(certPath, keyPath, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(certCheckEvery / 2)
	if got := serving(); got != first.SerialNumber.String() {
		t.Fatalf("the files were looked at again within %v of the last check", certCheckEvery)
	}
	now = now.Add(certCheckEvery)
	if got := serving(); got != second.SerialNumber.String() {
		t.Fatalf("serving %s after the check interval, want the new certificate %s", got, second.SerialNumber)
	}

	// A certificate whose key is another's: refused, the second goes on.
	spare := t.TempDir()
	if _, err := ca.Issue(filepath.Join(spare, "c"), filepath.Join(spare, "k"), "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	mismatched, err := os.ReadFile(filepath.Join(spare, "k"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, mismatched, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		now = now.Add(certCheckEvery)
		if got := serving(); got != second.SerialNumber.String() {
			t.Fatalf("serving %s after a mismatched key, want the last good %s", got, second.SerialNumber)
		}
	}
	if n := logs.count("do not load"); n != 1 {
		t.Errorf("%d warnings for one bad change, want 1:\n%s", n, logs.b.String())
	}
	// Half a certificate file: refused as well.
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, certPEM[:len(certPEM)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	now = now.Add(certCheckEvery)
	if got := serving(); got != second.SerialNumber.String() {
		t.Fatalf("serving %s after a truncated certificate, want %s", got, second.SerialNumber)
	}
	// Gone for a moment, as some tools replace files.
	if err := os.Remove(certPath); err != nil {
		t.Fatal(err)
	}
	now = now.Add(certCheckEvery)
	if got := serving(); got != second.SerialNumber.String() {
		t.Fatalf("serving %s with the certificate file missing, want %s", got, second.SerialNumber)
	}
	if n := logs.count("do not load") + logs.count("unreadable"); n != 3 {
		t.Errorf("%d warnings for three bad changes, want 3:\n%s", n, logs.b.String())
	}

	third, err := ca.Issue(certPath, keyPath, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(certCheckEvery)
	if got := serving(); got != third.SerialNumber.String() {
		t.Fatalf("serving %s after a good pair came back, want %s", got, third.SerialNumber)
	}
}

// A centre whose certificate does not load does not start, and a
// certificate without its key is refused before anything listens.
func TestTLSFilesMustLoadAtStart(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadCertFiles(filepath.Join(dir, "none.pem"), filepath.Join(dir, "none.key"), slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("missing files loaded")
	}
	_, err := newServer(Config{AdminToken: "t", Centre: &deskCentre{id: "c", dir: dir}, TLSCert: "cert.pem"})
	if err == nil || !strings.Contains(err.Error(), "needs its key") {
		t.Fatalf("a certificate without a key: %v", err)
	}
}
