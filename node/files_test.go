package node

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadFileConfigTrustedProxies(t *testing.T) {
	write := func(web string) string {
		dir := t.TempDir()
		b := `{"centre":"oslo","name":"Oslo","http_addr":"127.0.0.1:0","p2p_addr":"","gossip_addr":"","web":` + web + `}`
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(b), 0o600); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	c, err := LoadFileConfig(write(`{"trusted_proxies":["127.0.0.1","10.0.0.0/8"," ::1 "]}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseTrustedProxies(c.Web.TrustedProxies)
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("trusted proxies %v (%v), want %v", got, err, want)
	}

	// An old configuration must not start with the proxy quietly untrusted.
	_, err = LoadFileConfig(write(`{"trust_proxy":true}`))
	if !errors.Is(err, ErrTrustProxyRemoved) || !strings.Contains(err.Error(), "trusted_proxies") {
		t.Fatalf("trust_proxy true: %v, want an error naming trusted_proxies", err)
	}
	if _, err := LoadFileConfig(write(`{"trust_proxy":false}`)); err != nil {
		t.Fatalf("trust_proxy false (meant nothing) refused: %v", err)
	}
	_, err = LoadFileConfig(write(`{"trusted_proxies":["proxy.example"]}`))
	if err == nil || !strings.Contains(err.Error(), `"proxy.example"`) {
		t.Fatalf("a host name as a trusted proxy: %v, want a clear error", err)
	}
}
