package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

// FuzzClientAddr: whatever X-Forwarded-For says, an untrusted peer is
// itself, and a trusted proxy's visitor is either the peer or an address
// written in the header that is not a trusted proxy.
func FuzzClientAddr(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "198.51.100.9, 203.0.113.7", "[2001:db8::1]:443", "10.0.0.1,,x", "127.0.0.1, 127.0.0.2", strings.Repeat("1.2.3.4,", 100)} {
		f.Add(s, true)
		f.Add(s, false)
	}
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	f.Fuzz(func(t *testing.T, xff string, fromProxy bool) {
		r := httptest.NewRequest(http.MethodGet, "/v1/chat", nil)
		r.RemoteAddr = "192.0.2.10:5555"
		if fromProxy {
			r.RemoteAddr = "127.0.0.1:5555"
		}
		r.Header.Set("X-Forwarded-For", xff)
		got := clientAddr(r, trusted)
		peer := peerAddr(r)
		switch {
		case !fromProxy && got != peer:
			t.Fatalf("untrusted peer with X-Forwarded-For %q counted as %v", xff, got)
		case got == peer:
		case isTrusted(got, trusted):
			t.Fatalf("visitor %v is a trusted proxy (header %q)", got, xff)
		case !inHeader(got, xff):
			t.Fatalf("visitor %v does not come from the header %q", got, xff)
		}
	})
}

// FuzzHandshake: the pre-upgrade check never panics and never lets a
// foreign Origin through.
func FuzzHandshake(f *testing.F) {
	for _, o := range []string{"", "https://evil.example", "http://127.0.0.1:8080", "https://embed.example", "%zz", "null", "https://EMBED.example:443"} {
		f.Add(o, "websocket", "Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ==")
	}
	f.Fuzz(func(t *testing.T, origin, upgrade, connection, version, key string) {
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/v1/chat", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Upgrade", upgrade)
		r.Header.Set("Connection", connection)
		r.Header.Set("Sec-WebSocket-Version", version)
		r.Header.Set("Sec-WebSocket-Key", key)
		status, msg := handshakeError(r, []string{"embed.example"})
		if status != 0 && msg == "" {
			t.Fatalf("refused (%d) without a message", status)
		}
		if status == 0 && origin != "" && strings.Contains(strings.ToLower(origin), "evil.example") &&
			!strings.Contains(strings.ToLower(origin), "127.0.0.1:8080") && !strings.Contains(strings.ToLower(origin), "embed.example") {
			t.Fatalf("origin %q accepted", origin)
		}
	})
}

// inHeader says whether addr is written, in any form, as one entry of xff.
func inHeader(addr netip.Addr, xff string) bool {
	for _, e := range strings.Split(xff, ",") {
		e = strings.TrimSpace(e)
		if ap, err := netip.ParseAddrPort(e); err == nil && ap.Addr().Unmap() == addr {
			return true
		}
		if a, err := netip.ParseAddr(strings.Trim(e, "[]")); err == nil && a.Unmap().WithZone("") == addr {
			return true
		}
	}
	return false
}

// FuzzDecodeBody: the one decoder of every JSON body a stranger may send
// (login, enrolment, and the admin endpoints behind the token) answers
// anything with either a decoded value or a 400/413 JSON error.
func FuzzDecodeBody(f *testing.F) {
	for _, s := range []string{`{"volunteer":"v1","password":"x"}`, `{"volunteer":"v1","code":"c","password":"p"}`, `{}`, `{"volunteer":1}`, `{"x":1}`, `{} }`, `[`, "\xff", strings.Repeat(`{"a":`, 1000)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&LoginRequest{}, &EnrolRequest{}} {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/v1/volunteer/login", bytes.NewReader(body))
			if decodeBody(w, r, v) {
				if !json.Valid(body) {
					t.Fatalf("accepted invalid JSON %q", body)
				}
				continue
			}
			if w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d for %q", w.Code, body)
			}
			var e ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" || e.Error == "" {
				t.Fatalf("error body %q: %v", w.Body.Bytes(), err)
			}
		}
	})
}
