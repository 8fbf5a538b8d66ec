package media

import (
	"math/rand/v2"
	"time"

	"github.com/pion/rtp"
)

// stream is one RTP stream the node sends on a leg: its own SSRC, and
// sequence numbers and timestamps that start at random values. Packets
// from a source keep their steps (a gap stays a gap, so the far jitter
// buffer sees loss as loss); when the source changes (the browser's SSRC
// changes, a prompt starts or ends) the new source continues where the
// last left off, with the marker bit set, so the far end sees one stream
// with a talkspurt rather than a jump. The payload passes untouched.
type stream struct {
	ssrc    uint32
	started bool
	src     uint64 // the current source: an SSRC, or 1<<32|n for prompt n
	seqOff  uint16
	tsOff   uint32
	lastSeq uint16
	lastTS  uint32
	lastAt  time.Time
}

func newStream() *stream {
	return &stream{ssrc: rand.Uint32(), lastSeq: uint16(rand.Uint32()), lastTS: rand.Uint32()}
}

// frame is the timestamp step assumed for a packet (20 ms at 8 kHz), the
// least gap left when sources change.
const frame = 160

// rewrite moves h, from source src and handled at now, onto the stream.
func (s *stream) rewrite(h *rtp.Header, src uint64, now time.Time) {
	if !s.started || src != s.src {
		gap := uint32(frame)
		if s.started {
			gap = max(gap, uint32(now.Sub(s.lastAt)/(time.Second/8000)))
		}
		s.seqOff = s.lastSeq + 1 - h.SequenceNumber
		s.tsOff = s.lastTS + gap - h.Timestamp
		s.src, s.started = src, true
		h.Marker = true
	}
	h.SSRC = s.ssrc
	h.SequenceNumber += s.seqOff
	h.Timestamp += s.tsOff
	// Header extensions and CSRCs of the source mean nothing on the other
	// leg (Chromium sends transport-wide-cc and others): drop them.
	h.Extension, h.Extensions, h.ExtensionProfile = false, nil, 0
	h.CSRC = nil
	if int16(h.SequenceNumber-s.lastSeq) > 0 { // a late packet does not move the stream back
		s.lastSeq, s.lastTS = h.SequenceNumber, h.Timestamp
	}
	s.lastAt = now
}
