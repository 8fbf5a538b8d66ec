package overflow

import (
	"log/slog"
	"strings"
)

// Reasons a gossip packet or stream is refused before it is authenticated:
// the values of helpmesh_gossip_refused_total's reason label. A fixed set, so
// what an outsider sends can never become a label value.
const (
	// RefusedLabel: no label, or another federation's label.
	RefusedLabel = "label"
	// RefusedDecrypt: our label, but not encrypted with a key we hold.
	RefusedDecrypt = "decrypt"
	// RefusedPlaintext: a stream that was not encrypted at all.
	RefusedPlaintext = "plaintext"
	// RefusedMalformed: too short or truncated to tell; or a stream that
	// stalled or broke before it could be authenticated.
	RefusedMalformed = "malformed"
)

var refusedReasons = []string{RefusedLabel, RefusedDecrypt, RefusedPlaintext, RefusedMalformed}

// refusedLine is one of memberlist's log lines for input refused before it
// was authenticated.
type refusedLine struct {
	reason    string
	transport string // "udp" or "tcp"
	from      string // as memberlist wrote it; not yet sanitised
}

// refusedPatterns are memberlist v0.7.0's messages (net.go ingestPacket and
// handleConn, net_transport.go udpListen) for input that never passed the
// label check or decryption, so anyone who can reach the port can cause
// them. TestGossipRefusalsSampledAndCounted floods a real memberlist and fails
// if one of these texts changes and the lines reach the log again.
var refusedPatterns = []struct {
	prefix    string
	reason    string // "" : decided by the error text (streams)
	transport string
}{
	{"memberlist: discarding packet with unacceptable label ", RefusedLabel, "udp"},
	{"memberlist: unexpected double packet label header", RefusedLabel, "udp"},
	{"memberlist: Decrypt packet failed: ", RefusedDecrypt, "udp"},
	// RemoveLabelHeaderFromPacket's errors, logged bare as "%v %s".
	{"memberlist: cannot decode label; packet has been truncated", RefusedMalformed, "udp"},
	{"memberlist: label header cannot be empty when present from=", RefusedMalformed, "udp"},
	{"memberlist: UDP packet too short ", RefusedMalformed, "udp"},
	{"memberlist: discarding stream with unacceptable label ", RefusedLabel, "tcp"},
	{"memberlist: unexpected double stream label header", RefusedLabel, "tcp"},
	{"memberlist: failed to receive and remove the stream label header: ", RefusedMalformed, "tcp"},
	// readStream's errors: the stream's first message is read and
	// decrypted here, so its failures are refusals too.
	{"memberlist: failed to receive: ", "", "tcp"},
}

// classifyRefused recognises a refusal line; ok is false for every other line.
func classifyRefused(msg string) (refusedLine, bool) {
	for _, p := range refusedPatterns {
		if !strings.HasPrefix(msg, p.prefix) {
			continue
		}
		reason := p.reason
		if reason == "" {
			reason = streamReason(msg[len(p.prefix):])
		}
		return refusedLine{reason: reason, transport: p.transport, from: fromAddr(msg)}, true
	}
	return refusedLine{}, false
}

// followsRefusal recognises the line memberlist writes when the error reply
// to a refused stream cannot be sent (the sender has usually hung up): it is
// the same refusal again, so it is neither counted nor logged above Debug.
func followsRefusal(msg string) bool {
	return strings.HasPrefix(msg, "memberlist: Failed to send error: ")
}

func streamReason(errText string) string {
	switch {
	case strings.Contains(errText, "remote state is not encrypted"):
		return RefusedPlaintext
	case strings.Contains(errText, "decrypt"), strings.Contains(errText, "no installed keys"),
		strings.Contains(errText, "encryption version"):
		return RefusedDecrypt
	}
	return RefusedMalformed
}

// fromAddr is the address after memberlist's trailing "from=", which it
// writes last on every refusal line.
func fromAddr(msg string) string {
	i := strings.LastIndex(msg, "from=")
	if i < 0 {
		return ""
	}
	return strings.TrimSpace(msg[i+len("from="):])
}

func (r refusedLine) attrs(sanitise func(string) string) []slog.Attr {
	return []slog.Attr{slog.String("transport", r.transport), slog.String("from", sanitise(r.from))}
}
