// Package media is the node's side of a call's voice, for a centre whose
// node is its own phone (issue 13, started): what the node reads of a
// caller leg's SDP offer, and the answer it gives. The node passes G.711
// through between the caller's RTP and the volunteer's browser without
// transcoding (docs/dev/webrtc-lab.md: Chromium and baresip both speak
// PCMU and PCMA), so an offer without G.711 is refused (SIP 488).
//
// The SDP comes from a caller's PBX, a trunk or another centre: it is
// size-limited before parsing, parsed by pion/sdp, and only the first
// audio stream's connection address, port, protocol and formats are read.
// Nothing of it is logged: its o= and s= lines and a=ssrc cname may name
// the caller.
package media

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/pion/sdp/v3"
)

var (
	// ErrBadSDP is an offer that is too long, does not parse, or whose
	// audio has no usable address (the node answers 400).
	ErrBadSDP = errors.New("malformed SDP")
	// ErrNoAudio is an offer with no audio stream the node could take: none
	// at all, or only rejected ones (port 0) (488).
	ErrNoAudio = errors.New("no audio stream offered")
	// ErrNoCodec is an audio stream without G.711 over plain RTP (488).
	ErrNoCodec = errors.New("no G.711 over RTP/AVP offered")
)

// MaxSDPBytes bounds an offer: a PBX's or a browser's is 1-4 KiB.
const MaxSDPBytes = 8 << 10

// Codec is a G.711 variant with its static RTP payload type (RFC 3551).
type Codec struct {
	Name        string
	PayloadType uint8
}

// The codecs the node passes through.
var (
	PCMU = Codec{Name: "PCMU", PayloadType: 0}
	PCMA = Codec{Name: "PCMA", PayloadType: 8}
)

// Offer is what the node reads of a caller leg's SDP offer.
type Offer struct {
	// Remote is where the caller's side wants its RTP.
	Remote netip.AddrPort
	// Codec is the caller's first G.711 in its order of preference.
	Codec Codec
}

// ParseOffer reads a caller leg's SDP offer: the first audio stream that
// is not rejected, over RTP/AVP, with PCMU or PCMA among its formats.
func ParseOffer(b []byte) (Offer, error) {
	if len(b) > MaxSDPBytes {
		return Offer{}, fmt.Errorf("parse offer: %d bytes, at most %d: %w", len(b), MaxSDPBytes, ErrBadSDP)
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(b); err != nil {
		return Offer{}, fmt.Errorf("parse offer: %w", ErrBadSDP)
	}
	var audio *sdp.MediaDescription
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media == "audio" && md.MediaName.Port.Value != 0 {
			audio = md
			break
		}
	}
	if audio == nil {
		return Offer{}, fmt.Errorf("parse offer: %w", ErrNoAudio)
	}
	if !slices.Equal(audio.MediaName.Protos, []string{"RTP", "AVP"}) {
		return Offer{}, fmt.Errorf("parse offer: protocol is not RTP/AVP: %w", ErrNoCodec)
	}
	codec, ok := firstG711(audio.MediaName.Formats)
	if !ok {
		return Offer{}, fmt.Errorf("parse offer: %w", ErrNoCodec)
	}
	conn := audio.ConnectionInformation
	if conn == nil {
		conn = sd.ConnectionInformation
	}
	if conn == nil || conn.NetworkType != "IN" || conn.Address == nil {
		return Offer{}, fmt.Errorf("parse offer: no connection address: %w", ErrBadSDP)
	}
	// A literal address only: the node resolves no name a caller sends.
	addr, err := netip.ParseAddr(conn.Address.Address)
	if err != nil || addr.IsUnspecified() || addr.IsMulticast() ||
		conn.AddressType == "IP4" && !addr.Is4() || conn.AddressType == "IP6" && !addr.Is6() {
		return Offer{}, fmt.Errorf("parse offer: connection address is not a unicast IP literal: %w", ErrBadSDP)
	}
	port := audio.MediaName.Port.Value
	if port < 1 || port > 65535 {
		return Offer{}, fmt.Errorf("parse offer: audio port %d: %w", port, ErrBadSDP)
	}
	return Offer{Remote: netip.AddrPortFrom(addr, uint16(port)), Codec: codec}, nil
}

// firstG711 is the first PCMU or PCMA among an m= line's formats, which
// are in the caller's order of preference. Static payload types are used
// as RFC 3551 assigns them; a dynamic type named PCMU is not looked for.
func firstG711(formats []string) (Codec, bool) {
	for _, f := range formats {
		switch pt, err := strconv.Atoi(f); {
		case err != nil:
		case pt == int(PCMU.PayloadType):
			return PCMU, true
		case pt == int(PCMA.PayloadType):
			return PCMA, true
		}
	}
	return Codec{}, false
}

// Answer is the node's SDP answer: one audio stream at local in codec, and
// nothing that names anyone (the origin's user is "-", the session "-").
// sessionID should be random per call (RFC 4566 o= sess-id).
func Answer(local netip.AddrPort, c Codec, sessionID uint64) []byte {
	family := "IP4"
	if local.Addr().Is6() && !local.Addr().Is4In6() {
		family = "IP6"
	}
	host := local.Addr().Unmap().String()
	id := strconv.FormatUint(sessionID, 10)
	return []byte("v=0\r\n" +
		"o=- " + id + " " + id + " IN " + family + " " + host + "\r\n" +
		"s=-\r\n" +
		"c=IN " + family + " " + host + "\r\n" +
		"t=0 0\r\n" +
		"m=audio " + strconv.Itoa(int(local.Port())) + " RTP/AVP " + strconv.Itoa(int(c.PayloadType)) + "\r\n" +
		"a=rtpmap:" + strconv.Itoa(int(c.PayloadType)) + " " + c.Name + "/8000\r\n" +
		"a=ptime:20\r\n" +
		"a=sendrecv\r\n")
}
