package overflow

import (
	"context"
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
	// One reader for the rest of the offer: the owner may cancel (or
	// vanish) while our volunteer's console rings.
	// Closing the router ends the wait: the reader's stream is reset.
	ctx, cancel := context.WithCancel(r.stop.Context())
	defer cancel()
	next := make(chan frame, 1)
	if !r.spawn(func(stop context.Context) {
		unblock := context.AfterFunc(stop, func() { _ = s.Reset() })
		defer unblock()
		_ = s.SetReadDeadline(time.Now().Add(ring + 15*time.Second))
		var f frame
		if err := wire.Read(s, &f, maxFrame); err != nil {
			f = frame{Type: frameCancel, Reason: "the visitor's centre went away"}
		}
		if f.Type != frameConfirm {
			cancel()
		}
		next <- f
	}) {
		res.Release("the centre is shutting down")
		_ = s.Reset()
		return
	}
	alias, err := res.Wait(ctx)
	if err != nil {
		r.decline(s, err.Error())
		return
	}
	_ = s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wire.Write(s, frame{Type: frameAccepted, Alias: alias, Token: res.Token(), Resumable: res.Resumable()}, maxFrame); err != nil {
		res.Release("the visitor's centre went away")
		_ = s.Reset()
		return
	}
	select {
	case f := <-next:
		if f.Type != frameConfirm {
			res.Release("answered at another centre")
			_ = s.Close()
			return
		}
	case <-time.After(10 * time.Second):
		res.Release("the visitor's centre did not confirm")
		_ = s.Reset()
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
