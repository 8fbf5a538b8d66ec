package api

// The centre's own TLS: a certificate and key from PEM files, read again
// when they change on disk, so that a renewal (certbot, an ACME client, an
// operator copying files) takes effect without a restart and without
// cutting a conversation. See docs/operations.md, "Going live over HTTPS".

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckEvery bounds how often the files are looked at: a handshake
// stats them at most this often, so a renewal is served within it.
const certCheckEvery = 2 * time.Second

// fileStamp is what tells a changed file: its size, modification time and
// identity (an atomic rename or a symlink moved to a new file changes it
// even when size and time happen to match).
type fileStamp struct {
	info os.FileInfo
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path) // follows symlinks, as ACME clients lay them out
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{info: fi}, nil
}

func (a fileStamp) same(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == b.info
	}
	return a.info.Size() == b.info.Size() && a.info.ModTime().Equal(b.info.ModTime()) && os.SameFile(a.info, b.info)
}

// certFiles serves the certificate in certPath and keyPath, loading the
// pair again when either file changed, checked at most every `every`. A new
// pair that does not load (half written, a key that does not match) is
// logged once and the last good pair goes on being served.
type certFiles struct {
	certPath, keyPath string
	every             time.Duration
	now               func() time.Time
	log               *slog.Logger

	mu      sync.Mutex
	current *tls.Certificate
	// certAt and keyAt are the stamps of the files last tried (loaded or
	// not): a pair that failed is not tried again until a file changes.
	certAt, keyAt fileStamp
	checked       time.Time
}

// loadCertFiles loads the pair once; a centre that cannot do so does not
// start.
func loadCertFiles(certPath, keyPath string, log *slog.Logger) (*certFiles, error) {
	c := &certFiles{certPath: certPath, keyPath: keyPath, every: certCheckEvery, now: time.Now, log: log}
	certAt, keyAt, err := c.stamps()
	if err != nil {
		return nil, fmt.Errorf("load tls certificate: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, fmt.Errorf("load tls certificate %s with key %s: %w", certPath, keyPath, err)
	}
	c.current, c.certAt, c.keyAt, c.checked = &pair, certAt, keyAt, c.now()
	return c, nil
}

func (c *certFiles) stamps() (cert, key fileStamp, err error) {
	if cert, err = stampOf(c.certPath); err != nil {
		return cert, key, err
	}
	key, err = stampOf(c.keyPath)
	return cert, key, err
}

// getCertificate is tls.Config.GetCertificate.
func (c *certFiles) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= c.every {
		c.checked = now
		c.reload()
	}
	return c.current, nil
}

// reload loads the pair again if a file changed since the last try. Called
// with mu held: handshakes wait for one reload rather than each doing it.
func (c *certFiles) reload() {
	certAt, keyAt, err := c.stamps()
	if err != nil {
		// A file missing for a moment while it is replaced: keep serving.
		if !c.certAt.same(fileStamp{}) {
			c.log.Warn("tls certificate files unreadable; serving the last good certificate", "err", err)
		}
		c.certAt, c.keyAt = fileStamp{}, fileStamp{}
		return
	}
	if certAt.same(c.certAt) && keyAt.same(c.keyAt) {
		return
	}
	c.certAt, c.keyAt = certAt, keyAt
	pair, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		c.log.Warn("tls certificate files changed but do not load; serving the last good certificate",
			"cert", c.certPath, "key", c.keyPath, "err", err)
		return
	}
	c.current = &pair
	c.log.Info("tls certificate reloaded", "cert", c.certPath, "not_after", notAfter(&pair))
}

func notAfter(pair *tls.Certificate) time.Time {
	if pair.Leaf == nil {
		return time.Time{}
	}
	return pair.Leaf.NotAfter.UTC()
}

// tlsConfig is the listeners' TLS: TLS 1.2 at least, Go's default cipher
// suites, and HTTP/1.1 only (every long-lived exchange here is a WebSocket,
// which browsers open over HTTP/1.1; one protocol keeps the server's
// timeouts and hijacking the same with and without TLS).
func (c *certFiles) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: c.getCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}
