package overflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/helpmesh/helpmesh/internal/wire"
	"github.com/helpmesh/helpmesh/switchboard"
)

// offerProtocol carries one overflowed contact from the centre that owns it
// to a centre that may answer it: offer, answer, the owner's decision, and
// then the conversation itself (the relay) on the same stream, so the
// stream's death is the conversation's.
const offerProtocol = "/helpmesh/offer/1"

// maxFrame bounds one frame on the offer stream: a 4000-byte message with
// worst-case JSON escaping, plus envelope.
const maxFrame = 32 << 10

var (
	// ErrDeclined means the other centre could not take the contact.
	ErrDeclined = errors.New("offer declined")
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
)

// frame is every message on the offer stream.
type frame struct {
	Type       frameType          `json:"t"`
	Contact    string             `json:"contact,omitempty"`
	Channel    string             `json:"channel,omitempty"`
	Language   string             `json:"language,omitempty"`
	RingMillis int64              `json:"ring_ms,omitempty"`
	Alias      string             `json:"alias,omitempty"`
	Reason     string             `json:"reason,omitempty"`
	Seq        uint64             `json:"s,omitempty"`
	Ack        uint64             `json:"a,omitempty"`
	Event      *switchboard.Event `json:"e,omitempty"`
}

var contactIDPattern = regexp.MustCompile(`^[0-9a-f]{16,64}$`)

// Desk is the part of a centre's switchboard that answers offers.
type Desk interface {
	Reserve(o switchboard.IncomingOffer) (*switchboard.Reservation, error)
}

// Directory maps centres to peers, from the roster.
type Directory interface {
	PeerOf(centre string) (peer.ID, bool)
	CentreOf(p peer.ID) (string, bool)
}

// RouterConfig configures a Router.
type RouterConfig struct {
	Centre    string
	Host      host.Host
	Gossip    *Gossip
	Directory Directory
	Desk      Desk
	Logger    *slog.Logger
}

// Router sends our contacts to other centres and answers theirs. It
// implements switchboard.Overflow.
type Router struct {
	cfg RouterConfig
	log *slog.Logger

	mu sync.Mutex
	// waiting holds, per centre, the withdraw functions of our offers
	// waiting for that centre's answer.
	waiting map[string]map[*waitingOffer]struct{}
}

// waitingOffer is one of our offers waiting for an answer.
type waitingOffer struct {
	lost     atomic.Bool
	withdraw func()
}

// NewRouter starts answering offers from other centres.
func NewRouter(cfg RouterConfig) *Router {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{cfg: cfg, log: cfg.Logger.With("component", "overflow"), waiting: map[string]map[*waitingOffer]struct{}{}}
	cfg.Host.SetStreamHandler(offerProtocol, r.serveOffer)
	return r
}

// Close stops answering offers.
func (r *Router) Close() { r.cfg.Host.RemoveStreamHandler(offerProtocol) }

// Candidates ranks the centres gossip says could answer now: alive,
// accepting, someone free for the channel and language. More free
// volunteers and a shorter round trip rank higher; a random factor spreads
// simultaneous overflows over near-equal centres. Gossip is only a hint: the
// chosen centre decides from its live state.
func (r *Router) Candidates(channel, language string) []switchboard.Candidate {
	type scored struct {
		c     switchboard.Candidate
		score float64
	}
	var out []scored
	for _, s := range r.cfg.Gossip.View() {
		if s.Centre == r.cfg.Centre || s.State != StateAlive || !s.Availability.Accepting {
			continue
		}
		free := s.Availability.Channels[channel].Free[language]
		if free <= 0 {
			continue
		}
		pid, ok := r.cfg.Directory.PeerOf(s.Centre)
		if !ok {
			continue
		}
		rtt := r.cfg.Host.Peerstore().LatencyEWMA(pid)
		score := float64(free) / (1 + rtt.Seconds()*20) * (0.85 + 0.3*rand.Float64())
		out = append(out, scored{switchboard.Candidate{Centre: s.Centre, Version: s.Availability.Version}, score})
	}
	slices.SortFunc(out, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return 0
	})
	cands := make([]switchboard.Candidate, len(out))
	for i, s := range out {
		cands[i] = s.c
	}
	return cands
}

// Offer asks centre to take a contact and waits for its answer.
func (r *Router) Offer(ctx context.Context, centre string, o switchboard.OutgoingOffer) (switchboard.Answer, error) {
	pid, ok := r.cfg.Directory.PeerOf(centre)
	if !ok {
		return nil, fmt.Errorf("offer to %s: %w", centre, ErrUnknownPeerCentre)
	}
	s, err := r.cfg.Host.NewStream(ctx, pid, offerProtocol)
	if err != nil {
		return nil, fmt.Errorf("offer to %s: %w", centre, err)
	}
	// Withdrawing (ctx ends) resets the stream: the other centre frees its
	// volunteer at once. Once the answer is in, the stream may become the
	// conversation's relay, and the offer's ctx is cancelled soon after as
	// a matter of course: the reset must then never happen. A select on
	// both channels would pick at random when both are ready, so the
	// answer's arrival is settled under a lock.
	answered := make(chan struct{})
	var settle sync.Mutex
	settled := false
	go func() {
		select {
		case <-ctx.Done():
			settle.Lock()
			if !settled {
				_ = s.Reset()
			}
			settle.Unlock()
		case <-answered:
		}
	}()
	_ = s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wire.Write(s, frame{Type: frameOffer, Contact: o.Contact, Channel: o.Channel, Language: o.Language, RingMillis: o.Ring.Milliseconds()}, maxFrame); err != nil {
		close(answered)
		_ = s.Reset()
		return nil, fmt.Errorf("offer to %s: %w", centre, err)
	}
	_ = s.SetReadDeadline(time.Now().Add(o.Ring + 5*time.Second))
	w := r.await(centre, func() { _ = s.Reset() })
	var f frame
	err = wire.Read(s, &f, maxFrame)
	r.done(centre, w)
	settle.Lock()
	settled = true
	settle.Unlock()
	close(answered)
	if err == nil && ctx.Err() != nil {
		// Withdrawn while the answer came: it may have reset the stream.
		err = ctx.Err()
	}
	if err != nil && w.lost.Load() {
		err = fmt.Errorf("%w (withdrawn): %w", ErrCentreLost, err)
	}
	if err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("offer to %s: %w", centre, err)
	}
	switch f.Type {
	case frameAccepted:
		return &answer{s: s, alias: clipAlias(f.Alias), log: r.log}, nil
	case frameDeclined:
		_ = s.Close()
		return nil, fmt.Errorf("offer to %s: %s: %w", centre, clipAlias(f.Reason), ErrDeclined)
	}
	_ = s.Reset()
	return nil, fmt.Errorf("offer to %s: unexpected %q frame: %w", centre, clipAlias(string(f.Type)), ErrDeclined)
}

// await registers an offer to centre waiting for its answer.
func (r *Router) await(centre string, withdraw func()) *waitingOffer {
	w := &waitingOffer{withdraw: withdraw}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting[centre] == nil {
		r.waiting[centre] = map[*waitingOffer]struct{}{}
	}
	r.waiting[centre][w] = struct{}{}
	return w
}

func (r *Router) done(centre string, w *waitingOffer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting[centre], w)
	if len(r.waiting[centre]) == 0 {
		delete(r.waiting, centre)
	}
}

// CentreChanged is told when gossip's view of a centre changed. If the
// centre is no longer alive (suspect, dead or left), our offers waiting
// for its answer are withdrawn at once: a frozen or cut-off centre would
// otherwise hold the visitor for the whole ring time and more, though we
// already stopped offering it anything new. A withdrawn offer ends with
// ErrCentreLost, and the contact goes to the next centre.
func (r *Router) CentreChanged(centre string) {
	r.mu.Lock()
	n := len(r.waiting[centre])
	r.mu.Unlock()
	if n == 0 {
		return
	}
	for _, s := range r.cfg.Gossip.View() {
		if s.Centre == centre && s.State == StateAlive {
			return
		}
	}
	r.mu.Lock()
	var lost []*waitingOffer
	for w := range r.waiting[centre] {
		lost = append(lost, w)
	}
	r.mu.Unlock()
	r.log.Info("withdrawing offers from a centre gossip no longer sees alive", "to", centre, "offers", len(lost))
	for _, w := range lost {
		w.lost.Store(true)
		w.withdraw()
	}
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
	log   *slog.Logger
}

func (a *answer) Alias() string { return a.alias }

func (a *answer) Confirm(h switchboard.PeerHandler) (switchboard.Peer, error) {
	_ = a.s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wire.Write(a.s, frame{Type: frameConfirm}, maxFrame); err != nil {
		_ = a.s.Reset()
		return nil, fmt.Errorf("confirm overflow: %w", err)
	}
	rl := newRelay(a.s, a.log)
	rl.start(h)
	return rl, nil
}

func (a *answer) Cancel(reason string) {
	_ = a.s.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = wire.Write(a.s, frame{Type: frameCancel, Reason: reason}, maxFrame)
	_ = a.s.Close()
}

// serveOffer answers another centre's offer from our live state.
func (r *Router) serveOffer(s network.Stream) {
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
	ring := time.Duration(f.RingMillis) * time.Millisecond
	res, err := r.cfg.Desk.Reserve(switchboard.IncomingOffer{Contact: f.Contact, From: from, Channel: f.Channel, Language: f.Language, Ring: ring})
	if err != nil {
		r.decline(s, err.Error())
		return
	}
	// One reader for the rest of the offer: the owner may cancel (or
	// vanish) while our volunteer's console rings.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	next := make(chan frame, 1)
	go func() {
		_ = s.SetReadDeadline(time.Now().Add(ring + 15*time.Second))
		var f frame
		if err := wire.Read(s, &f, maxFrame); err != nil {
			f = frame{Type: frameCancel, Reason: "the visitor's centre went away"}
		}
		if f.Type != frameConfirm {
			cancel()
		}
		next <- f
	}()
	alias, err := res.Wait(ctx)
	if err != nil {
		r.decline(s, err.Error())
		return
	}
	_ = s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wire.Write(s, frame{Type: frameAccepted, Alias: alias}, maxFrame); err != nil {
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
	rl.start(h)
}

func (r *Router) decline(s network.Stream, reason string) {
	_ = s.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = wire.Write(s, frame{Type: frameDeclined, Reason: clipAlias(reason)}, maxFrame)
	_ = s.Close()
}
