package media

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// baresipOffer is the shape of baresip 1.0's offer (docs/dev/webrtc-lab.md):
// PCMA first, then PCMU and DTMF; its o= line names the caller.
const baresipOffer = "v=0\r\n" +
	"o=4790012345 2189810635 1136942678 IN IP4 127.0.0.1\r\n" +
	"s=-\r\n" +
	"c=IN IP4 127.0.0.1\r\n" +
	"t=0 0\r\n" +
	"m=audio 33498 RTP/AVP 8 0 101\r\n" +
	"a=rtpmap:8 PCMA/8000\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n" +
	"a=rtpmap:101 telephone-event/8000\r\n" +
	"a=sendrecv\r\n"

// A PBX that puts c= on the media and offers Opus before PCMU.
const mediaLevelOffer = "v=0\r\n" +
	"o=- 1 1 IN IP6 2001:db8::1\r\n" +
	"s=call\r\n" +
	"t=0 0\r\n" +
	"m=video 0 RTP/AVP 96\r\n" +
	"m=audio 40000 RTP/AVP 111 0\r\n" +
	"c=IN IP6 2001:db8::7\r\n" +
	"a=rtpmap:111 opus/48000/2\r\n" +
	"a=rtpmap:0 PCMU/8000\r\n"

func TestParseOffer(t *testing.T) {
	for _, tc := range []struct {
		name, sdp string
		want      Offer
	}{
		{"baresip: the caller's first G.711", baresipOffer, Offer{Remote: netip.MustParseAddrPort("127.0.0.1:33498"), Codec: PCMA}},
		{"media-level address, Opus skipped", mediaLevelOffer, Offer{Remote: netip.MustParseAddrPort("[2001:db8::7]:40000"), Codec: PCMU}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseOffer([]byte(tc.sdp))
			if err != nil || got != tc.want {
				t.Fatalf("ParseOffer = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestParseOfferRefuses(t *testing.T) {
	swap := func(old, new string) string { return strings.Replace(baresipOffer, old, new, 1) }
	for _, tc := range []struct {
		name, sdp string
		want      error
	}{
		{"not SDP", "hello", ErrBadSDP},
		{"too long", baresipOffer + "a=x:" + strings.Repeat("y", MaxSDPBytes) + "\r\n", ErrBadSDP},
		{"no audio", swap("m=audio 33498", "m=video 33498"), ErrNoAudio},
		{"audio rejected", swap("m=audio 33498", "m=audio 0"), ErrNoAudio},
		{"Opus only", swap("RTP/AVP 8 0 101", "RTP/AVP 111"), ErrNoCodec},
		{"SRTP", swap("RTP/AVP", "RTP/SAVP"), ErrNoCodec},
		{"no address", swap("c=IN IP4 127.0.0.1\r\n", ""), ErrBadSDP},
		{"a host name", swap("c=IN IP4 127.0.0.1", "c=IN IP4 pbx.example"), ErrBadSDP},
		{"unspecified", swap("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"), ErrBadSDP},
		{"multicast", swap("c=IN IP4 127.0.0.1", "c=IN IP4 224.2.1.1"), ErrBadSDP},
		{"family mismatch", swap("c=IN IP4 127.0.0.1", "c=IN IP4 ::1"), ErrBadSDP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseOffer([]byte(tc.sdp)); !errors.Is(err, tc.want) {
				t.Fatalf("ParseOffer: %v, want %v", err, tc.want)
			}
		})
	}
}

// The answer parses as an offer would, carries the one codec, and names
// nobody: no caller's o= user, no session name.
func TestAnswer(t *testing.T) {
	for _, local := range []netip.AddrPort{netip.MustParseAddrPort("192.0.2.10:20000"), netip.MustParseAddrPort("[2001:db8::10]:20002")} {
		for _, c := range []Codec{PCMU, PCMA} {
			a := Answer(local, c, 42)
			got, err := ParseOffer(a)
			if err != nil || got != (Offer{Remote: local, Codec: c}) {
				t.Fatalf("answer %q read back as %+v, %v", a, got, err)
			}
			if !strings.Contains(string(a), "o=- 42 42 ") || !strings.Contains(string(a), "\r\ns=-\r\n") {
				t.Fatalf("answer names someone:\n%s", a)
			}
		}
	}
}

// FuzzParseOffer: any offer either parses into a usable leg or is refused
// with one of the package's errors, never a panic; what parses answers.
func FuzzParseOffer(f *testing.F) {
	f.Add([]byte(baresipOffer))
	f.Add([]byte(mediaLevelOffer))
	f.Add([]byte("v=0\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ParseOffer(b)
		if err != nil {
			if !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrNoAudio) && !errors.Is(err, ErrNoCodec) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if !o.Remote.IsValid() || o.Remote.Port() == 0 || (o.Codec != PCMU && o.Codec != PCMA) {
			t.Fatalf("parsed an unusable leg: %+v", o)
		}
		if _, err := ParseOffer(Answer(o.Remote, o.Codec, 1)); err != nil {
			t.Fatalf("our answer to %+v does not parse: %v", o, err)
		}
	})
}
