package consensus

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// maxPublicURL bounds a centre's public chat URL: an origin and nothing
// more, so a DNS name's 253 bytes, a scheme and a port fit with room.
const maxPublicURL = 300

// checkPublicURL refuses anything but an origin a visitor's browser can open
// the chat at: https://host[:port], or http:// for a loopback host only
// (tests and a laptop's demo), with no user, path (a lone "/" aside), query
// or fragment. Checked by shape only, never resolved, so apply stays
// deterministic. It is what other centres' pages connect to and what every
// centre lets open its chat socket, so a loose check here would widen the
// federation's CSP and origin checks.
func checkPublicURL(raw string, bad badFunc) error {
	if len(raw) > maxPublicURL {
		return bad("public url is %d bytes, limit %d", len(raw), maxPublicURL)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Host == "" {
		return bad("public url %q must be https://host or https://host:port", clip(raw))
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(raw, "?#\\ ") {
		return bad("public url %q must be an origin only (no user, path, query or fragment)", clip(raw))
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip == nil && (len(host) > 253 || !hostPattern.MatchString(host)) {
		return bad("public url %q: host must be a DNS name or an IP address", clip(raw))
	}
	if p := u.Port(); p != "" {
		if err := checkSIPAddr(net.JoinHostPort(host, p), bad); err != nil {
			return bad("public url %q: port must be 1-65535", clip(raw))
		}
		if u.Scheme == "https" && p == "443" || u.Scheme == "http" && p == "80" {
			return bad("public url %q: leave the default port out, as a browser's origin does", clip(raw))
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("public url %q: empty port", clip(raw))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !loopbackHost(host) {
			return bad("public url %q: http is for a loopback host only; visitors need https", clip(raw))
		}
	default:
		return bad("public url %q must start with https://", clip(raw))
	}
	if PublicOrigin(raw) != raw && PublicOrigin(raw)+"/" != raw {
		return bad("public url %q must be written in lower case, as a browser sends its origin", clip(raw))
	}
	return nil
}

// loopbackHost reports whether host names this machine: localhost or a
// loopback IP.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// PublicOrigin is the browser origin of a public url that passed the check
// (scheme://host[:port], lower case, no trailing slash): what a page served
// from it sends as Origin, and what a CSP source names.
func PublicOrigin(publicURL string) string {
	return strings.ToLower(strings.TrimSuffix(publicURL, "/"))
}

// CheckPublicURL applies set_centre_public_url's check to raw, so that a
// centre can refuse a bad web.public_url at start instead of having every
// proposal of it refused; the error wraps ErrBadCommand.
func CheckPublicURL(raw string) error {
	return checkPublicURL(raw, func(format string, args ...any) error {
		return fmt.Errorf(format+": %w", append(args, ErrBadCommand)...)
	})
}
