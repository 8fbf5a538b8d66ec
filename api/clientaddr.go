package api

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// maxForwardedHops bounds how far X-Forwarded-For is walked: a real chain
// of proxies is a handful of hops, and the header is the client's to make
// long.
const maxForwardedHops = 32

// clientAddr is the address a request came from, for rate limits only (the
// result is never stored or logged, DESIGN.md invariant 2).
//
// It is the TCP peer, unless the peer is one of the trusted proxies: then
// X-Forwarded-For (every such header, concatenated in order) is walked from
// the right, skipping trusted proxies, and the first hop that is not one is
// the visitor. Entries left of it were written by the client and are its
// word only, so a spoofed leftmost entry changes nothing. A malformed entry
// met on the walk means the chain cannot be read: the peer is used, so a
// broken header never lets anyone pick an address.
func clientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := peerAddr(r)
	if !isTrusted(peer, trusted) {
		return peer
	}
	xff := r.Header.Values("X-Forwarded-For")
	if len(xff) == 0 {
		return peer
	}
	hops := strings.Split(strings.Join(xff, ","), ",")
	for i, n := len(hops)-1, 0; i >= 0 && n < maxForwardedHops; i, n = i-1, n+1 {
		addr, ok := parseHop(hops[i])
		if !ok {
			return peer
		}
		if !isTrusted(addr, trusted) {
			return addr
		}
	}
	// Every hop read was a trusted proxy: the request began at one of them.
	return peer
}

// peerAddr is the TCP peer's address; the unspecified address when
// RemoteAddr cannot be read (only in tests that build requests by hand).
func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.IPv6Unspecified()
	}
	return addr.Unmap().WithZone("")
}

// parseHop reads one X-Forwarded-For entry: an address, optionally with a
// port or in brackets, as some proxies write it.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return addr.Unmap().WithZone(""), true
}

func isTrusted(addr netip.Addr, trusted []netip.Prefix) bool {
	return slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(addr) })
}

// trustedPeer says whether r arrived through one of the trusted proxies,
// whose X-Forwarded-* headers may then be believed.
func trustedPeer(r *http.Request, trusted []netip.Prefix) bool {
	return isTrusted(peerAddr(r), trusted)
}

// checkTrustedProxies refuses a list that could not mean what an operator
// wants, and returns it in the form clientAddr compares against.
func checkTrustedProxies(list []netip.Prefix) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, p := range list {
		if !p.IsValid() {
			return nil, fmt.Errorf("trusted proxy %q is not an address range", p)
		}
		if p.Bits() == 0 {
			// Trusting every address would let any visitor pick their
			// address in X-Forwarded-For and so escape every limit.
			return nil, fmt.Errorf("trusted proxy %s trusts every address; list the proxies in front of the centre", p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
