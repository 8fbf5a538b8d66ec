package api

import (
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/time/rate"
)

func TestLimiterSetIsBounded(t *testing.T) {
	ls := newLimiterSet(rate.Limit(0), 1, 3)
	for _, k := range []string{"a", "b", "c"} {
		if ok, _ := ls.allow(k); !ok {
			t.Fatalf("first use of %s refused", k)
		}
	}
	if ok, wait := ls.allow("a"); ok || wait <= 0 {
		t.Fatalf("second use of a: %v %v, want refused with a wait", ok, wait)
	}
	ls.allow("d") // evicts b, the least recently used
	if n := ls.len(); n != 3 {
		t.Fatalf("%d keys, want 3", n)
	}
	if ok, _ := ls.allow("b"); !ok {
		t.Fatal("b was not the one forgotten")
	}
	if ok, _ := ls.allow("a"); ok {
		t.Fatal("a was forgotten though recently used")
	}
}

func TestClientAddr(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("10.9.0.0/16")}
	for _, c := range []struct {
		what   string
		remote string
		xff    []string
		want   string
	}{
		{"no header", "192.0.2.1:1234", nil, "192.0.2.1"},
		{"spoofed header from an untrusted peer", "198.51.100.50:1234", []string{"203.0.113.5"}, "198.51.100.50"},
		{"through a trusted proxy", "192.0.2.1:1234", []string{"198.51.100.9"}, "198.51.100.9"},
		{"spoofed leftmost entry through a trusted proxy", "192.0.2.1:1234", []string{"203.0.113.5, 198.51.100.9"}, "198.51.100.9"},
		{"a chain of trusted proxies", "192.0.2.1:1234", []string{"203.0.113.5, 198.51.100.9, 10.9.3.4"}, "198.51.100.9"},
		{"headers concatenated in order", "192.0.2.1:1234", []string{"203.0.113.5", "198.51.100.9 ", "10.9.0.7"}, "198.51.100.9"},
		{"malformed header", "192.0.2.1:1234", []string{"not an address"}, "192.0.2.1"},
		{"malformed hop right of the visitor", "192.0.2.1:1234", []string{"198.51.100.9, unknown"}, "192.0.2.1"},
		{"malformed spoofed entry left of the visitor", "192.0.2.1:1234", []string{"<script>, 198.51.100.9"}, "198.51.100.9"},
		{"empty header", "192.0.2.1:1234", []string{""}, "192.0.2.1"},
		{"only trusted hops", "192.0.2.1:1234", []string{"10.9.1.1"}, "192.0.2.1"},
		{"hop with a port", "192.0.2.1:1234", []string{"198.51.100.9:5555"}, "198.51.100.9"},
		{"IPv6 hop in brackets", "192.0.2.1:1234", []string{"[2001:db8::5]"}, "2001:db8::5"},
		{"IPv4-mapped trusted peer", "[::ffff:192.0.2.1]:1234", []string{"198.51.100.9"}, "198.51.100.9"},
		{"zone dropped", "[2001:db8::1%eth0]:443", nil, "2001:db8::1"},
		{"mapped peer unmapped", "[::ffff:192.0.2.7]:443", nil, "192.0.2.7"},
		{"garbage peer", "garbage", nil, "::"},
	} {
		r := httptest.NewRequest("GET", "/v1/chat", nil)
		r.RemoteAddr = c.remote
		for _, x := range c.xff {
			r.Header.Add("X-Forwarded-For", x)
		}
		if got := clientAddr(r, proxies); got != netip.MustParseAddr(c.want) {
			t.Errorf("%s: clientAddr(%q, %q) = %v, want %s", c.what, c.remote, c.xff, got, c.want)
		}
		if got := clientAddr(r, nil); got != peerAddr(r) {
			t.Errorf("%s: with no trusted proxies clientAddr = %v, want the peer %v", c.what, got, peerAddr(r))
		}
	}
}

func TestCheckTrustedProxies(t *testing.T) {
	got, err := checkTrustedProxies([]netip.Prefix{netip.MustParsePrefix("172.18.0.9/16"), netip.MustParsePrefix("::ffff:10.0.0.1/128")})
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{netip.MustParsePrefix("172.18.0.0/16"), netip.MustParsePrefix("10.0.0.1/32")}; !slices.Equal(got, want) {
		t.Fatalf("normalised to %v, want %v", got, want)
	}
	for _, bad := range []netip.Prefix{{}, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		if _, err := checkTrustedProxies([]netip.Prefix{bad}); err == nil {
			t.Errorf("trusted proxy %v accepted", bad)
		}
	}
	c := &deskCentre{id: "oslo", dir: t.TempDir()}
	_, err = newServer(Config{Centre: c, AdminToken: "x", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}})
	if err == nil || !strings.Contains(err.Error(), "trusts every address") {
		t.Fatalf("a server trusting every address: %v, want a clear error", err)
	}
}

func TestAddrKeysAreSaltedHashesPerSlash64(t *testing.T) {
	a := newAddrLimiter(5, 5, nil)
	key := func(remote string) string {
		r := httptest.NewRequest("GET", "/v1/chat", nil)
		r.RemoteAddr = remote
		return a.key(r)
	}
	k1, k2 := key("[2001:db8:1:2::1]:1"), key("[2001:db8:1:2:ffff::9]:2")
	if k1 != k2 {
		t.Fatal("two addresses of one /64 count separately")
	}
	if key("[2001:db8:1:3::1]:1") == k1 {
		t.Fatal("two /64s count as one")
	}
	if len(k1) != 32 {
		t.Fatalf("key of %d bytes, want a SHA-256", len(k1))
	}
	if newAddrLimiter(5, 5, nil).key(httptest.NewRequest("GET", "/", nil)) == key("192.0.2.1:1234") {
		t.Fatal("two servers share a salt")
	}
}
