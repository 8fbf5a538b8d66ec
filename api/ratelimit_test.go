package api

import (
	"net/http/httptest"
	"net/netip"
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
	for _, c := range []struct {
		remote string
		xff    []string
		trust  bool
		want   string
	}{
		{"192.0.2.1:1234", nil, false, "192.0.2.1"},
		{"192.0.2.1:1234", []string{"198.51.100.9"}, false, "192.0.2.1"},
		{"192.0.2.1:1234", []string{"198.51.100.9"}, true, "198.51.100.9"},
		{"192.0.2.1:1234", []string{"203.0.113.5, 198.51.100.9"}, true, "198.51.100.9"},
		{"192.0.2.1:1234", []string{"203.0.113.5", "198.51.100.9 "}, true, "198.51.100.9"},
		{"192.0.2.1:1234", []string{"not an address"}, true, "192.0.2.1"},
		{"[2001:db8::1%eth0]:443", nil, false, "2001:db8::1"},
		{"[::ffff:192.0.2.7]:443", nil, false, "192.0.2.7"},
		{"garbage", nil, false, "::"},
	} {
		r := httptest.NewRequest("GET", "/v1/chat", nil)
		r.RemoteAddr = c.remote
		for _, x := range c.xff {
			r.Header.Add("X-Forwarded-For", x)
		}
		if got := clientAddr(r, c.trust); got != netip.MustParseAddr(c.want) {
			t.Errorf("clientAddr(%q, %q, trust %v) = %v, want %s", c.remote, c.xff, c.trust, got, c.want)
		}
	}
}

func TestAddrKeysAreSaltedHashesPerSlash64(t *testing.T) {
	a := newAddrLimiter(5, 5, false)
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
	if newAddrLimiter(5, 5, false).key(httptest.NewRequest("GET", "/", nil)) == key("192.0.2.1:1234") {
		t.Fatal("two servers share a salt")
	}
}
