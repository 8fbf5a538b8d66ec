package sip

import "github.com/emiago/sipgo/sip"

// sipgo refuses to send a UDP message over 1300 bytes (its UDPMTUSize less
// 200), following RFC 3261 18.1.1, which wants such a request sent over TCP.
// This ingress is UDP only (TCP is not built), and a real call's INVITE
// outgrows 1300 bytes on the way: baresip's SDP, then a Via and a
// Record-Route from each PBX and from us. Kamailio and the phones send such
// messages over UDP anyway (IP fragments them), so the node must relay what
// it accepts: up to the screen's limit. sipgo keeps the size in a package
// variable; setting it in init, before any goroutine reads it, is the only
// race-free way. Found by the two-PBX voice test (centre/voice_test.go),
// where node B's INVITE to the volunteer's phone failed with "size of
// packet larger than MTU".
func init() { sip.UDPMTUSize = maxMessageLen + 200 }
