package main

import (
	"math/rand/v2"

	"github.com/pion/rtp"
)

// rewriter moves a stream of RTP packets onto the node's own stream: its
// SSRC, and sequence numbers and timestamps that start at random values and
// keep the source's steps (a gap stays a gap, so the far end's jitter
// buffer sees loss as loss). The payload (G.711) passes through untouched.
type rewriter struct {
	ssrc           uint32
	started        bool
	seqOff         uint16
	tsOff          uint32
	outSeq0        uint16
	outTS0, lastTS uint32
}

func newRewriter() *rewriter {
	return &rewriter{ssrc: rand.Uint32(), outSeq0: uint16(rand.Uint32()), outTS0: rand.Uint32()}
}

func (r *rewriter) rewrite(p *rtp.Packet) {
	if !r.started {
		r.started = true
		r.seqOff = r.outSeq0 - p.SequenceNumber
		r.tsOff = r.outTS0 - p.Timestamp
		p.Marker = true // start of a talkspurt on the new stream
	}
	p.SSRC = r.ssrc
	p.SequenceNumber += r.seqOff
	p.Timestamp += r.tsOff
	// Header extensions and CSRCs of the source mean nothing on the other
	// leg (Chromium sends ssrc-audio-level and others): drop them.
	p.Extension, p.Extensions, p.ExtensionProfile = false, nil, 0
	p.CSRC = nil
}
