package overflow

import (
	"regexp"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/helpmesh/helpmesh/internal/wire"
	"github.com/helpmesh/helpmesh/switchboard"
)

// The answering side of an offer: another centre asks, our desk decides.

var contactIDPattern = regexp.MustCompile(`^[0-9a-f]{16,64}$`)

// serveOffer answers another centre's offer from our live state.
// serveOffer answers one offer. calls says the stream came on
// callOfferProtocol, the only one that may carry a phone call.
func (r *Router) serveOffer(s network.Stream, calls bool) {
	from, ok := r.cfg.Directory.CentreOf(s.Conn().RemotePeer())
	if !ok {
		_ = s.Reset()
		return
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f frame
	if err := wire.Read(s, &f, maxFrame); err != nil || f.Type != frameOffer || !contactIDPattern.MatchString(f.Contact) {
		r.log.Warn("refused a malformed offer", "from", from, "err", err)
		r.decline(s, "malformed offer")
		return
	}
	if len(f.Note) > switchboard.MaxNoteBytes || !utf8.ValidString(f.Note) || f.Note != "" && !f.Transfer ||
		f.Support != "" && (!f.Transfer || !contactIDPattern.MatchString(f.Support)) {
		r.decline(s, "malformed offer: bad handover note")
		return
	}
	if (f.Channel == switchboard.ChannelPhone) != calls {
		r.decline(s, "channel not on this protocol")
		return
	}
	ring := time.Duration(f.RingMillis) * time.Millisecond
	r.mu.Lock()
	desk := r.desk
	r.mu.Unlock()
	res, err := desk.Reserve(switchboard.IncomingOffer{Contact: f.Contact, From: from, Channel: f.Channel, Language: f.Language, Ring: ring, Resume: f.Resume,
		Transfer: f.Transfer && !calls, Note: f.Note, Transfers: f.Transfers && !calls, Seat: f.Support, Urgent: f.Urgent})
	if err != nil {
		r.decline(s, err.Error())
		return
	}
	accepted := func(alias string) frame {
		return frame{Type: frameAccepted, Alias: alias, Token: res.Token(), Resumable: res.Resumable()}
	}
	if !r.hold(s, ring, res, accepted, "the visitor's centre", "answered at another centre") {
		return
	}
	rl := newRelay(s, r.log)
	h := res.Connect(rl)
	if !rl.start(r.spawn, h) {
		// Closed meanwhile: the conversation ends as if the stream died.
		rl.lost("the centre is shutting down")
	}
}

func (r *Router) decline(s network.Stream, reason string) {
	_ = s.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = wire.Write(s, frame{Type: frameDeclined, Reason: clipAlias(reason)}, maxFrame)
	_ = s.Close()
}
