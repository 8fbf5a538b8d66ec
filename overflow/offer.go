package overflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/helpmesh/helpmesh/internal/wire"
	"github.com/helpmesh/helpmesh/switchboard"
)

// offerProtocol carries one overflowed contact from the centre that owns it
// to a centre that may answer it: offer, answer, the owner's decision, and
// then the conversation itself (the relay) on the same stream, so the
// stream's death is the conversation's.
const offerProtocol = "/helpmesh/offer/1"

// callOfferProtocol is the same protocol for phone calls (issue 12): the
// answering centre holds a phone volunteer at once and its acceptance
// carries the call's one-time token, then the relay carries the call's
// progress (answered, ended). It has its own id because a release that
// knows only offer/1 would ring a phone offer on a console as a chat; such
// a centre answers "protocol not supported", which counts as a decline.
const callOfferProtocol = "/helpmesh/offer/2"

// protocolFor is the offer protocol a contact of channel travels on.
func protocolFor(channel string) protocol.ID {
	if channel == switchboard.ChannelPhone {
		return callOfferProtocol
	}
	return offerProtocol
}

// maxFrame bounds one frame on the offer stream: a 4000-byte message with
// worst-case JSON escaping, plus envelope.
const maxFrame = 32 << 10

var (
	// ErrRouterClosed means the router was closed before the offer went.
	ErrRouterClosed = errors.New("overflow router closed")
	// ErrUnknownPeerCentre means a centre id has no admitted peer.
	ErrUnknownPeerCentre = errors.New("centre not in the roster")
	// ErrCentreLost means gossip stopped seeing the centre alive while our
	// offer waited for its answer, so the offer was withdrawn.
	ErrCentreLost = errors.New("centre no longer alive by gossip")
)

type frameType string

const (
	frameOffer     frameType = "offer"
	frameAccepted  frameType = "accepted"
	frameDeclined  frameType = "declined"
	frameConfirm   frameType = "confirm"
	frameCancel    frameType = "cancel"
	frameEvent     frameType = "ev"
	frameAck       frameType = "ack"
	frameHeartbeat frameType = "hb"
	frameBye       frameType = "bye"
	// frameSupport asks for a supervisor (support.go).
	frameSupport frameType = "support"
)

// frame is every message on the offer stream.
type frame struct {
	Type       frameType `json:"t"`
	Contact    string    `json:"contact,omitempty"`
	Channel    string    `json:"channel,omitempty"`
	Language   string    `json:"language,omitempty"`
	RingMillis int64     `json:"ring_ms,omitempty"`
	Alias      string    `json:"alias,omitempty"`
	Token      string    `json:"token,omitempty"`
	// Resume: the visitor page's ResumeHash, on an offer (older releases
	// ignore it and the page cannot resume there).
	Resume string `json:"resume,omitempty"`
	// Resumable, on an acceptance: the answering centre took Resume.
	Resumable bool `json:"resumable,omitempty"`
	// Why is a support request's reason (support.go); Support, on a
	// transfer offer, the support id of the supervisor it is for.
	Why     string `json:"why,omitempty"`
	Support string `json:"support,omitempty"`
	// On an offer: Transfer says one of the owner's volunteers hands the
	// conversation over, with a private Note (at most
	// switchboard.MaxNoteBytes); Transfers says the owner can carry out a
	// transfer its volunteer asks for on the relay. Older releases ignore
	// all three.
	Transfer bool `json:"transfer,omitempty"`
	// Urgent, on an offer: the owner's contact is urgent (switchboard's
	// urgent.go); the volunteer's offer is marked. Older releases ignore it.
	Urgent    bool               `json:"urgent,omitempty"`
	Note      string             `json:"note,omitempty"`
	Transfers bool               `json:"transfers,omitempty"`
	Reason    string             `json:"reason,omitempty"`
	Seq       uint64             `json:"s,omitempty"`
	Ack       uint64             `json:"a,omitempty"`
	Event     *switchboard.Event `json:"e,omitempty"`
}

// Offer asks centre to take a contact and waits for its answer.
func (r *Router) Offer(ctx context.Context, centre string, o switchboard.OutgoingOffer) (switchboard.Answer, error) {
	ans, err := r.offer(ctx, centre, o, true)
	if errors.Is(err, errOlderOfferFrame) && !o.Transfer && ctx.Err() == nil {
		// A centre on a release before roster level 7 decodes the offer
		// strictly and refused the fields it does not know (urgent,
		// transfers): offer again with only the ones it does. The
		// contact loses its urgent mark there and its volunteer cannot
		// transfer it, but it is answered. A transfer cannot be stripped.
		r.log.Debug("offer refused as malformed: an older release; offered again without the level-7 fields", "to", centre)
		return r.offer(ctx, centre, o, false)
	}
	return ans, err
}

// errOlderOfferFrame marks a decline that says "malformed offer": what an
// older release answers to a field it does not know.
var errOlderOfferFrame = errors.New("offer frame refused: an older release?")

// offer makes one offer; level7 says whether the frame may carry the
// fields roster level 7 added.
func (r *Router) offer(ctx context.Context, centre string, o switchboard.OutgoingOffer, level7 bool) (switchboard.Answer, error) {
	offer := frame{Type: frameOffer, Contact: o.Contact, Channel: o.Channel, Language: o.Language, RingMillis: o.Ring.Milliseconds(), Resume: o.Resume,
		Transfer: o.Transfer, Note: o.Note, Transfers: o.Channel == switchboard.ChannelChat, Support: o.Seat, Urgent: o.Urgent}
	if !level7 {
		offer.Transfer, offer.Note, offer.Transfers, offer.Support, offer.Urgent = false, "", false, "", false
	}
	s, f, err := r.ask(ctx, centre, protocolFor(o.Channel), offer, o.Ring+5*time.Second, "offer to "+centre)
	if err != nil {
		return nil, err
	}
	switch f.Type {
	case frameAccepted:
		return &answer{s: s, alias: clipAlias(f.Alias), token: clipAlias(f.Token), resumable: f.Resumable, log: r.log, spawn: r.spawn}, nil
	case frameDeclined:
		_ = s.Close()
		if level7 && f.Reason == "malformed offer" {
			return nil, fmt.Errorf("offer to %s: %s: %w: %w", centre, clipAlias(f.Reason), errOlderOfferFrame, switchboard.ErrDeclined)
		}
		return nil, fmt.Errorf("offer to %s: %s: %w", centre, clipAlias(f.Reason), switchboard.ErrDeclined)
	}
	_ = s.Reset()
	return nil, fmt.Errorf("offer to %s: unexpected %q frame: %w", centre, clipAlias(string(f.Type)), switchboard.ErrDeclined)
}

func clipAlias(s string) string {
	if len(s) > 80 {
		return s[:80]
	}
	return s
}

// answer is another centre's acceptance, waiting for our decision.
type answer struct {
	s     network.Stream
	alias string
	token string // a phone call's, "" for a chat
	// resumable: the other centre took the page's resume hash.
	resumable bool
	log       *slog.Logger
	spawn     func(func(context.Context)) bool // the router's, for the relay
}

func (a *answer) Alias() string { return a.alias }

func (a *answer) Token() string { return a.token }

func (a *answer) Resumable() bool { return a.resumable }

func (a *answer) Confirm(h switchboard.PeerHandler) (switchboard.Peer, error) {
	_ = a.s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wire.Write(a.s, frame{Type: frameConfirm}, maxFrame); err != nil {
		_ = a.s.Reset()
		return nil, fmt.Errorf("confirm overflow: %w", err)
	}
	rl := newRelay(a.s, a.log)
	rl.owner = true
	if !rl.start(a.spawn, h) {
		_ = a.s.Reset()
		return nil, fmt.Errorf("confirm overflow: %w", ErrRouterClosed)
	}
	return rl, nil
}

func (a *answer) Cancel(reason string) {
	_ = a.s.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = wire.Write(a.s, frame{Type: frameCancel, Reason: reason}, maxFrame)
	_ = a.s.Close()
}
