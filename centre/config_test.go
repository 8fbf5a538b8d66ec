package centre_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/node"
)

// The web section of helpmesh.json reaches the HTTP API as written: the
// embedding origins and trusted proxies (docs/api.md once said the binary
// ignored them), the staff and metrics listeners, and the TLS files,
// relative ones read from the data directory.
func TestConfigFromDirReadsTheWebSection(t *testing.T) {
	dir := t.TempDir()
	web := node.WebConfig{
		AllowedOrigins: []string{"https://www.kirkens-sos.example"}, TrustedProxies: []string{"127.0.0.1", "10.20.0.0/16"},
		StaffAddr: "127.0.0.1:8090", MetricsAddr: "10.0.0.5:9100", TLSCert: "tls/cert.pem", TLSKey: "/etc/helpmesh/key.pem",
	}
	if _, err := node.Init(dir, node.FileConfig{Centre: "oslo", HTTPAddr: "0.0.0.0:8443", Web: web}); err != nil {
		t.Fatal(err)
	}
	cfg, err := centre.ConfigFromDir(dir, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.API
	if !reflect.DeepEqual(a.AllowedOrigins, web.AllowedOrigins) {
		t.Errorf("AllowedOrigins %v, want %v", a.AllowedOrigins, web.AllowedOrigins)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.20.0.0/16")}; !reflect.DeepEqual(a.TrustedProxies, want) {
		t.Errorf("TrustedProxies %v, want %v", a.TrustedProxies, want)
	}
	if a.Addr != "0.0.0.0:8443" || a.StaffAddr != web.StaffAddr || a.MetricsAddr != web.MetricsAddr {
		t.Errorf("listeners %q %q %q", a.Addr, a.StaffAddr, a.MetricsAddr)
	}
	if a.TLSCert != filepath.Join(dir, "tls/cert.pem") || a.TLSKey != "/etc/helpmesh/key.pem" {
		t.Errorf("TLS files %q %q", a.TLSCert, a.TLSKey)
	}
}

// A certificate without its key (or a key alone) is refused when the file
// is read, naming both settings.
func TestConfigRefusesHalfATLSPair(t *testing.T) {
	for _, web := range []node.WebConfig{{TLSCert: "cert.pem"}, {TLSKey: "key.pem"}} {
		dir := t.TempDir()
		if _, err := node.Init(dir, node.FileConfig{Centre: "oslo"}); err != nil {
			t.Fatal(err)
		}
		// helpmesh init refuses it too: the operator edited the file.
		b, _ := json.Marshal(node.FileConfig{Centre: "oslo", Web: web})
		if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := centre.ConfigFromDir(dir, "", slog.New(slog.DiscardHandler))
		if !errors.Is(err, node.ErrBadConfig) || !strings.Contains(err.Error(), "web.tls_cert and web.tls_key") {
			t.Errorf("%+v: %v", web, err)
		}
	}
}
