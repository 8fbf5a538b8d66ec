package consensus

import (
	"fmt"
	"net"
	"regexp"
	"strconv"
)

// hostPattern is loosely a DNS name or an IPv4 address: letters, digits,
// hyphens and dots (it lets through a few things no resolver would, such as
// 1.2.3.999, which only fail later at dialling). Checked by shape only, never
// resolved: apply must be deterministic on every centre.
var hostPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.?)*$`)

// checkSIPAddr refuses anything but host:port with a port of 1-65535, within
// maxAddr bytes. An IPv6 host goes in brackets, as net.JoinHostPort writes it.
func checkSIPAddr(addr string, bad badFunc) error {
	if len(addr) > maxAddr {
		return bad("sip address is %d bytes, limit %d", len(addr), maxAddr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return bad("sip address %q must be host:port", clip(addr))
	}
	if host == "" || (net.ParseIP(host) == nil && (len(host) > 253 || !hostPattern.MatchString(host))) {
		return bad("sip address %q: host must be a DNS name or an IP address", clip(addr))
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return bad("sip address %q: port must be 1-65535", clip(addr))
	}
	return nil
}

// CheckSIPAddr applies set_centre_sip's check to addr, so that a centre can
// refuse a bad address in its configuration at start instead of having
// every proposal of it refused; the error wraps ErrBadCommand.
func CheckSIPAddr(addr string) error {
	return checkSIPAddr(addr, func(format string, args ...any) error {
		return fmt.Errorf(format+": %w", append(args, ErrBadCommand)...)
	})
}
