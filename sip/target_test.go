package sip

import (
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/helpmesh/helpmesh/internal/refusal"
)

func TestParseUser(t *testing.T) {
	tok := "K7QJ2M4XWZ3ABCDEFGHIJKLMNO"
	for _, c := range []struct {
		user  string
		kind  Kind
		value string
		err   error
	}{
		{"queue-nb", KindQueue, "nb", nil},
		{"queue-en", KindQueue, "en", nil},
		{"queue-xx", 0, "", ErrUnknownLanguage},
		{"queue-NB", 0, "", ErrUnknownLanguage},
		{"queue-", 0, "", ErrUnknownLanguage},
		{"queue-nbb", 0, "", ErrUnknownLanguage},
		{tok, KindToken, tok, nil},
		{strings.ToLower(tok), KindToken, tok, nil}, // a PBX that folds case still matches
		{tok[:25], 0, "", ErrUnknownUser},
		{tok[:25] + "1", 0, "", ErrUnknownUser}, // 1 is not base32
		{tok[:25] + "-", 0, "", ErrUnknownUser},
		{"1000", 0, "", ErrUnknownUser},
		{"", 0, "", ErrUnknownUser},
		{"nb", 0, "", ErrUnknownUser},
		{strings.Repeat("a", 65), 0, "", ErrUserTooLong},
		{"queue-" + strings.Repeat("n", 100), 0, "", ErrUserTooLong},
	} {
		kind, value, err := ParseUser(c.user)
		if kind != c.kind || value != c.value || !errors.Is(err, c.err) {
			t.Errorf("ParseUser(%q) = %v, %q, %v; want %v, %q, %v", c.user, kind, value, err, c.kind, c.value, c.err)
		}
	}
}

// FuzzParseUser: the Request-URI user part is the one piece of a SIP
// request the project parses itself. Whatever the PBX (or anyone who spoofs
// it) sends, the parser must not panic, must accept only the two forms, and
// must return a value that is one of them.
func FuzzParseUser(f *testing.F) {
	for _, s := range []string{"queue-nb", "queue-zz", "K7QJ2M4XWZ3ABCDEFGHIJKLMNO", "k7qj2m4xwz3abcdefghijklmno", "", "1000", "queue-\x00\xff", strings.Repeat("Z", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, user string) {
		kind, value, err := ParseUser(user)
		if err != nil {
			if kind != 0 || value != "" {
				t.Fatalf("error %v with kind %v value %q", err, kind, value)
			}
			return
		}
		if len(user) > maxUserLen {
			t.Fatalf("accepted %d bytes", len(user))
		}
		switch kind {
		case KindQueue:
			if user != queuePrefix+value || len(value) != 2 {
				t.Fatalf("queue %q from %q", value, user)
			}
		case KindToken:
			if len(value) != tokenLen || strings.ToUpper(user) != value || strings.Trim(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
				t.Fatalf("token %q from %q", value, user)
			}
		default:
			t.Fatalf("kind %v", kind)
		}
	})
}

// FuzzScreen: every datagram passes the screen (sipgo's parser, run by this
// package before sipgo's own read) without a panic; what it keeps is the
// datagram unchanged and parses as a well-formed request or response; and
// from a source that is neither the PBX nor a proxied call's phone, no
// response is ever kept.
func FuzzScreen(f *testing.F) {
	f.Add([]byte("OPTIONS sip:127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-1\r\nFrom: <sip:h@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1:5090>\r\nCall-ID: 1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("INVITE sip:queue-nb@127.0.0.1 SIP/2.0\r\nFrom: \"A\\\x01\" <sip:1@b\r\n\r\n"))
	f.Add([]byte("hello"))
	f.Add([]byte("SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-2\r\nRecord-Route: <sip:127.0.0.1:5090;transport=udp;lr>\r\nFrom: <sip:c@127.0.0.1>;tag=1\r\nTo: <sip:vol@127.0.0.3>;tag=2\r\nCall-ID: 2\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-2\r\nCSeq: 1 INVITE\r\nContent-Length: 4\r\n\r\nv=0\n"))
	f.Add([]byte("SIP/2.0 99999999999 X\r\n\r\n"))
	refused, err := refusal.New(refusal.Config{What: "SIP request", Metric: "fuzz_refused_total", Reasons: []string{reasonMalformed, reasonNotPBX}})
	if err != nil {
		f.Fatal(err)
	}
	known := screen(newScreenParser(), refused, func(net.Addr) bool { return true })
	stranger := screen(newScreenParser(), refused, func(net.Addr) bool { return false })
	check := sip.NewParser()
	f.Fuzz(func(t *testing.T, data []byte) {
		in := append([]byte(nil), data...)
		out, err := known(sip.TransportReadProps{}, data)
		if err != nil {
			t.Fatalf("filter returned an error (would stop sipgo's read loop): %v", err)
		}
		if out != nil {
			if !bytes.Equal(out, in) {
				t.Fatalf("filter changed the datagram")
			}
			msg, err := check.ParseSIP(append([]byte(nil), out...))
			if err != nil || !wellFormed(msg) {
				t.Fatalf("kept a datagram that is not well formed: %v", err)
			}
		}
		out, err = stranger(sip.TransportReadProps{}, append([]byte(nil), in...))
		if err != nil {
			t.Fatalf("filter returned an error: %v", err)
		}
		if out != nil {
			if msg, _ := check.ParseSIP(append([]byte(nil), out...)); msg != nil {
				if _, ok := msg.(*sip.Response); ok {
					t.Fatalf("kept a stranger's response")
				}
			}
		}
	})
}
