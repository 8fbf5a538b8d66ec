package overflow

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/helpmesh/helpmesh/internal/stopper"
	"github.com/helpmesh/helpmesh/switchboard"
)

// Reservation is a volunteer our desk holds for another centre's offer: all
// the router does with one. *switchboard.Reservation satisfies it.
type Reservation interface {
	// Wait returns the volunteer's alias once they accept, or why not.
	Wait(ctx context.Context) (alias string, err error)
	// Connect starts the conversation with the visitor's centre as peer.
	Connect(peer switchboard.Peer) switchboard.PeerHandler
	// Release frees the volunteer when the offer ends without a conversation.
	Release(reason string)
	// Token is a held phone call's one-time token ("" for a chat).
	Token() string
	// Resumable says the visitor's page may resume the conversation here
	// (switchboard/resume.go): the owner gives the page its secret only
	// then.
	Resumable() bool
}

// Desk is the part of a centre's switchboard that answers offers.
type Desk interface {
	Reserve(o switchboard.IncomingOffer) (Reservation, error)
}

// Membership is gossip's view of the federation, all the router reads of it.
type Membership interface {
	View() []Seen
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
	Directory Directory
	Logger    *slog.Logger
	// SupportOrder ranks the centres asked for a supervisor (support.go).
	SupportOrder SupportOrder
}

// Router sends our contacts to other centres and answers theirs. It
// implements switchboard.Overflow.
//
// It exists before the desk it serves, so the switchboard can be built with
// it and the dependencies point one way: NewRouter, then the switchboard,
// then Serve. Until Serve it offers no candidate and answers no offer.
type Router struct {
	cfg  RouterConfig
	log  *slog.Logger
	stop *stopper.Stopper // every goroutine of the offers and relays

	mu      sync.Mutex
	closed  bool       // no goroutine starts once set: see spawn
	desk    Desk       // nil until Serve
	members Membership // nil until Serve
	// waiting holds, per centre, the withdraw functions of our offers
	// waiting for that centre's answer.
	waiting map[string]map[*waitingOffer]struct{}
}

// waitingOffer is one of our offers waiting for an answer.
type waitingOffer struct {
	lost     atomic.Bool
	withdraw func()
}

// NewRouter returns a router that serves nothing yet: see Serve.
func NewRouter(cfg RouterConfig) *Router {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Router{cfg: cfg, log: cfg.Logger.With("component", "overflow"), stop: stopper.New(), waiting: map[string]map[*waitingOffer]struct{}{}}
}

// Serve starts answering other centres' offers from desk, and ranking
// candidates from members' view.
func (r *Router) Serve(desk Desk, members Membership) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.desk != nil {
		return
	}
	r.desk, r.members = desk, members
	r.cfg.Host.SetStreamHandler(offerProtocol, func(s network.Stream) { r.serveOffer(s, false) })
	r.cfg.Host.SetStreamHandler(callOfferProtocol, func(s network.Stream) { r.serveOffer(s, true) })
	r.cfg.Host.SetStreamHandler(supportProtocol, r.serveSupport)
}

// Close stops answering offers and ends every goroutine the router
// started: offers still waiting are withdrawn, and relays say goodbye (a
// relay whose peer stays silent ends within relayDeadAfter). Close the
// desk first, so that its conversations end with its own reason.
func (r *Router) Close() {
	r.mu.Lock()
	r.closed = true
	served := r.desk != nil
	r.mu.Unlock()
	if served {
		r.cfg.Host.RemoveStreamHandler(offerProtocol)
		r.cfg.Host.RemoveStreamHandler(callOfferProtocol)
		r.cfg.Host.RemoveStreamHandler(supportProtocol)
	}
	r.stop.Stop()
}

// spawn runs f under the router's stopper, unless the router is closed. The
// check and the start are under one lock, so no goroutine is added while
// Close waits for them.
func (r *Router) spawn(f func(ctx context.Context)) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.stop.Go(f)
	return true
}

func (r *Router) view() []Seen {
	r.mu.Lock()
	m := r.members
	r.mu.Unlock()
	if m == nil {
		return nil
	}
	return m.View()
}

// Candidates ranks the centres gossip says could answer now (RankCandidates),
// with the round trip libp2p measured to each.
func (r *Router) Candidates(channel, language string) []switchboard.Candidate {
	return RankCandidates(r.cfg.Centre, r.reachable(), channel, language, r.roundTrip, rand.Float64)
}

// OnDuty counts the volunteers gossip says the other centres that could
// take an overflowed contact have switched on (CountOnDuty).
func (r *Router) OnDuty(channel, language string) (free, busy int) {
	return CountOnDuty(r.cfg.Centre, r.reachable(), channel, language)
}

// reachable is gossip's view less the centres the roster gives no peer.
func (r *Router) reachable() []Seen {
	view := r.view()
	out := view[:0:0]
	for _, s := range view {
		if _, ok := r.cfg.Directory.PeerOf(s.Centre); ok {
			out = append(out, s)
		}
	}
	return out
}

func (r *Router) roundTrip(centre string) time.Duration {
	pid, ok := r.cfg.Directory.PeerOf(centre)
	if !ok {
		return 0
	}
	return r.cfg.Host.Peerstore().LatencyEWMA(pid)
}

// RankCandidates ranks the centres in view that could answer now: alive,
// accepting, someone free for the channel and language. More free
// volunteers and a shorter round trip rank higher; random (in [0,1)) spreads
// simultaneous overflows over near-equal centres. Gossip is only a hint:
// the chosen centre decides from its live state. The capacity simulator
// (sim/) ranks with this same function.
func RankCandidates(self string, view []Seen, channel, language string, roundTrip func(centre string) time.Duration, random func() float64) []switchboard.Candidate {
	type scored struct {
		c     switchboard.Candidate
		score float64
	}
	var out []scored
	for _, s := range view {
		if s.Centre == self || s.State != StateAlive || !s.Availability.Accepting {
			continue
		}
		free := s.Availability.Channels[channel].Free[language]
		if free <= 0 {
			continue
		}
		rtt := roundTrip(s.Centre)
		score := float64(free) / (1 + rtt.Seconds()*20) * (0.85 + 0.3*random())
		out = append(out, scored{switchboard.Candidate{Centre: s.Centre, Version: s.Availability.Version}, score})
	}
	slices.SortStableFunc(out, func(a, b scored) int {
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

// CountOnDuty counts the volunteers the other centres in view that could
// take an overflowed contact (alive, accepting) have switched on for
// channel and language: free now, and busy. It feeds the visitors' wait
// estimate; like RankCandidates it is only a hint.
func CountOnDuty(self string, view []Seen, channel, language string) (free, busy int) {
	for _, s := range view {
		if s.Centre == self || s.State != StateAlive || !s.Availability.Accepting {
			continue
		}
		ch := s.Availability.Channels[channel]
		free += max(ch.Free[language], 0)
		busy += max(ch.Busy[language], 0)
	}
	return free, busy
}

// Alive tells whether gossip sees centre alive; false until Serve.
func (r *Router) Alive(centre string) bool {
	for _, s := range r.view() {
		if s.Centre == centre && s.State == StateAlive {
			return true
		}
	}
	return false
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
	if r.Alive(centre) {
		return
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
