package centre_test

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/testcert"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// A whole centre configured with web.tls_cert and web.tls_key (relative to
// its data directory) and a staff listener serves HTTPS on both, TLS 1.2
// at least, trusted through the test's CA; its session cookie is Secure
// over TLS; and when the files are replaced by a new certificate, new
// connections get the new one within the reload interval, without a
// restart.
func TestHTTPSFromCertFilesReloadsOnChange(t *testing.T) {
	root := t.TempDir()
	ca, err := testcert.NewCA("helpmesh test ca")
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(root, "c1", "tls", "cert.pem"), filepath.Join(root, "c1", "tls", "key.pem")
	local := centre.Local{Root: root, Timing: timing.Test, Logger: slog.New(slog.DiscardHandler),
		Web: func(id string, _ int) node.WebConfig {
			// helpmesh init makes the data directory; the operator puts
			// the files in it (relative paths are read from there).
			if err := os.MkdirAll(filepath.Dir(certPath), 0o700); err != nil {
				t.Fatal(err)
			}
			if _, err := ca.Issue(certPath, keyPath, "127.0.0.1", "localhost"); err != nil {
				t.Fatal(err)
			}
			return node.WebConfig{TLSCert: "tls/cert.pem", TLSKey: "tls/key.pem", StaffAddr: "127.0.0.1:0"}
		}}
	c := fedtest.Start(t, local.Driver(), 1).Member("c1")
	if c.StaffAddr() == "" {
		t.Fatal("no staff listener")
	}

	// serial dials addr afresh (no session resumption: a resumed session
	// would not show a new certificate) and returns the served
	// certificate's serial number and the negotiated version.
	serial := func(addr string) (string, uint16) {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"})
		if err != nil {
			t.Fatalf("TLS to %s: %v", addr, err)
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return st.PeerCertificates[0].SerialNumber.String(), st.Version
	}
	first, version := serial(c.Addr())
	if version < tls.VersionTLS12 {
		t.Errorf("negotiated %s", tls.VersionName(version))
	}
	// MinVersion too: Go's client refuses below 1.2 by itself, and then
	// the server's answer would never be seen.
	_, err = tls.Dial("tcp", c.Addr(), &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		t.Error("a TLS 1.1 client was served")
	} else if !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("a TLS 1.1 client was refused with %v, want the server's protocol version alert", err)
	}

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	fedtest.Eventually(t, 20*time.Second, "ready over HTTPS", func() bool {
		resp, err := client.Get("https://" + c.Addr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// Logging out needs no session and clears the cookie: it shows the
	// attributes any session cookie gets on this connection.
	resp, err := client.Post("https://"+c.StaffAddr()+"/v1/volunteer/logout", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) != 1 || !cookies[0].Secure || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("the session cookie over TLS: %v, want Secure, HttpOnly, SameSite=Strict", resp.Header.Values("Set-Cookie"))
	}
	// The metrics stay with staff, in TLS too.
	resp, err = client.Get("https://" + c.StaffAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics on the staff listener: %s", resp.Status)
	}

	renewed, err := ca.Issue(certPath, keyPath, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	want := renewed.SerialNumber.String()
	if want == first {
		t.Fatal("the new certificate has the old serial")
	}
	begin := time.Now()
	for _, addr := range []string{c.Addr(), c.StaffAddr()} {
		fedtest.Eventually(t, 10*time.Second, "the renewed certificate served at "+addr, func() bool {
			got, _ := serial(addr)
			return got == want
		})
	}
	t.Logf("the renewed certificate was served %v after the files were replaced", time.Since(begin).Round(time.Millisecond))
	// And the server still speaks HTTP after the swap.
	resp, err = client.Get("https://" + c.Addr() + "/v1/info")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/info after the renewal: %s", resp.Status)
	}
}
