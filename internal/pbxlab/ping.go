package pbxlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"time"
)

// Ping sends one SIP OPTIONS over UDP to addr ("host:port") and returns the
// status line of the answer ("SIP/2.0 200 OK"). Hand-written on purpose: no
// SIP stack, no transaction state, nothing to clean up between retries.
func Ping(ctx context.Context, addr string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "udp4", addr)
	if err != nil {
		return "", fmt.Errorf("ping %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	} else {
		conn.SetDeadline(time.Now().Add(2 * time.Second))
	}
	id := make([]byte, 8)
	rand.Read(id)
	branch := "z9hG4bK-pbxlab-" + hex.EncodeToString(id)
	local := conn.LocalAddr().String()
	msg := "OPTIONS sip:" + addr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=" + branch + "\r\n" +
		"From: <sip:ping@" + local + ">;tag=" + hex.EncodeToString(id[:4]) + "\r\n" +
		"To: <sip:" + addr + ">\r\n" +
		"Call-ID: " + hex.EncodeToString(id) + "@pbxlab\r\n" +
		"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(msg)); err != nil {
		return "", fmt.Errorf("ping %s: %w", addr, err)
	}
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return "", fmt.Errorf("ping %s: %w", addr, err)
		}
		// Only the answer to this ping: a late answer to an earlier
		// attempt carries another branch.
		if resp := string(buf[:n]); strings.Contains(resp, branch) {
			status, _, _ := strings.Cut(resp, "\r\n")
			return status, nil
		}
	}
}
