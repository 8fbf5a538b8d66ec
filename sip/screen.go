package sip

import (
	"context"
	"log/slog"
	"net"
	"regexp"

	"github.com/emiago/sipgo/sip"
	"golang.org/x/time/rate"

	"github.com/helpmesh/helpmesh/internal/refusal"
)

// reasonMalformed counts datagrams that do not parse as SIP.
const reasonMalformed = "malformed"

// maxMessageLen bounds a datagram the screen lets through: an INVITE with a
// rich SDP is a few KB; sipgo's own bound is 64 KiB.
const maxMessageLen = 16 << 10

// newScreenParser returns the parser the screen uses.
func newScreenParser() *sip.Parser {
	p := sip.NewParser()
	p.MaxMessageLength = maxMessageLen
	return p
}

// strangersPerSecond and strangersBurst bound the datagrams from outside the
// PBX prefixes that reach sipgo (to be answered 403): a misconfigured sender
// still learns why it is refused, but a flood, or one with forged source
// addresses, cannot make sipgo hold an INVITE transaction (resending its 403
// for up to 32 s) per datagram, nor bounce 403s at someone else. The rest is
// dropped before parsing and counted as not_pbx.
const (
	strangersPerSecond = 20
	strangersBurst     = 40
)

// screen returns the transport's read filter: it drops a stranger's datagram
// beyond the strangers' budget before anything else, then parses each
// datagram once before sipgo does and drops what is not a well-formed
// request, or a well-formed response from an allowed source. allowed is the
// PBX's prefixes and the phones of the calls being proxied: only they answer
// the node's requests, so a stranger's response (which would reach a client
// transaction, or the stray-response path) is dropped whatever the budget.
// sipgo's UDP
// transport would otherwise log a malformed packet whole at ERROR, the
// caller's number and name included, one line per packet from anyone who can
// send one (seen in this package's tests before the filter). Dropped packets are only
// counted and sampled by refused; the sender's PBX retransmits or gives up,
// as for any lost datagram. The filter never returns an error: that would
// stop sipgo's read loop.
func screen(parser *sip.Parser, refused *refusal.Log, allowed func(net.Addr) bool) sip.TransportReadFilter {
	strangers := rate.NewLimiter(strangersPerSecond, strangersBurst)
	return func(props sip.TransportReadProps, data []byte) ([]byte, error) {
		known := allowed(props.RemoteAddr)
		if !known && !strangers.Allow() {
			refused.Refuse(reasonNotPBX)
			return nil, nil
		}
		msg, err := parser.ParseSIP(data)
		if err != nil || !wellFormed(msg) {
			refused.Refuse(reasonMalformed)
			return nil, nil
		}
		if _, ok := msg.(*sip.Response); ok && !known {
			refused.Refuse(reasonNotPBX)
			return nil, nil
		}
		return data, nil
	}
}

// wellFormed keeps requests and responses that carry the headers every
// request must (RFC 3261, 8.1.1; a response copies them), so that sipgo
// never builds a transaction, an answer or a match from less.
func wellFormed(msg sip.Message) bool {
	switch m := msg.(type) {
	case *sip.Request:
		return m.Via() != nil && m.From() != nil && m.To() != nil && m.CallID() != nil && m.CSeq() != nil
	case *sip.Response:
		return m.Via() != nil && m.From() != nil && m.To() != nil && m.CallID() != nil && m.CSeq() != nil
	}
	return false
}

// redacted wraps the handler given to sipgo's layers and blanks the
// attributes in which sipgo puts message text ("data": a raw packet; "msg",
// "req", "res": a start line), so that a line sipgo writes on a path the screen
// does not cover carries addresses and transaction keys but never headers.
type redacted struct{ slog.Handler }

// redactedKey reports whether sipgo v1.7.3 uses key for message text.
// "req" and "res" carry a start line, whose Request-URI may hold a token or
// whatever number a sender dialled.
// "callid" is a Call-ID (sipgo's "ACK missed" line).
func redactedKey(key string) bool {
	return key == "data" || key == "msg" || key == "req" || key == "res" || key == "callid"
}

// sipText is what an error from sipgo may quote of a message: a SIP URI
// (its user part may be a caller's number, a token or a volunteer's
// extension) or a quoted start line, as in `fail to write request on init
// req="INVITE sip:... SIP/2.0"`.
var sipText = regexp.MustCompile(`sips?:[^\s"'<>;,]+|"[^"]*"`)

// redact blanks a message-text attribute and scrubs an error's text.
func redact(a slog.Attr) slog.Attr {
	switch {
	case redactedKey(a.Key):
		return slog.String(a.Key, "[redacted]")
	case a.Key == "error" || a.Key == "err":
		return slog.String(a.Key, sipText.ReplaceAllString(a.Value.String(), "[redacted]"))
	}
	return a
}

func (h redacted) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redact(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redacted) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = redact(a)
	}
	return redacted{h.Handler.WithAttrs(out)}
}

func (h redacted) WithGroup(name string) slog.Handler {
	return redacted{h.Handler.WithGroup(name)}
}
