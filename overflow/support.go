package overflow

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/helpmesh/helpmesh/internal/wire"
	"github.com/helpmesh/helpmesh/switchboard"
)

// supportProtocol carries a volunteer's support request from their centre
// to a centre with a supervisor on duty (issue 16): the request, the
// answer (a supervisor took it, or not), the volunteer's centre's
// decision, and then the supervisor's seat on the same stream: the
// conversation mirrored one way, the whispers the other. It is a relay of
// its own, not a third party on the conversation's relay, so the
// supervisor's centre dying ends the seat and leaves the conversation as
// it was. The seat carries what the supervisor reads, in memory only.
const supportProtocol = "/helpmesh/support/1"

// maxSupportRing bounds the ring time another centre may ask for.
const (
	maxSupportRing       = time.Minute
	maxSupportRingMillis = int64(maxSupportRing / time.Millisecond)
)

// SupportReservation is a support request ringing on our supervisors'
// consoles. *switchboard.SupportReservation satisfies it.
type SupportReservation interface {
	Wait(ctx context.Context) (supervisor string, err error)
	Connect(link switchboard.Peer) switchboard.PeerHandler
	Release(reason string)
}

// SupportDesk is the part of a centre's switchboard that answers support
// requests. A desk without it declines them.
type SupportDesk interface {
	ReceiveSupport(in switchboard.IncomingSupport) (SupportReservation, error)
}

// SupportOrder is the national policy's order of centres for backing
// each other's supervision (nil: by centre id).
type SupportOrder func() []string

// SupportCandidates lists the other centres gossip says have a supervisor
// on duty (alive, admitted), in the policy's order; centres the order does
// not name come after, by id. A hint: the centre decides from its desk.
func (r *Router) SupportCandidates() []string {
	var order []string
	if r.cfg.SupportOrder != nil {
		order = r.cfg.SupportOrder()
	}
	rank := func(c string) int {
		if i := slices.Index(order, c); i >= 0 {
			return i
		}
		return len(order)
	}
	var out []string
	for _, s := range r.view() {
		if s.Centre == r.cfg.Centre || s.State != StateAlive || s.Availability.SupervisorsOnDuty <= 0 {
			continue
		}
		if _, ok := r.cfg.Directory.PeerOf(s.Centre); !ok {
			continue
		}
		out = append(out, s.Centre)
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a, b)) })
	return out
}

// AskSupport asks centre's supervisors to take a support request and
// waits for the answer.
func (r *Router) AskSupport(ctx context.Context, centre string, a switchboard.SupportAsk) (switchboard.SupportAnswer, error) {
	ask := frame{Type: frameSupport, Contact: a.ID, Why: a.Reason, Channel: a.Channel, Language: a.Language, Alias: a.Volunteer, RingMillis: a.Ring.Milliseconds()}
	s, f, err := r.ask(ctx, centre, supportProtocol, ask, a.Ring+5*time.Second, "ask support at "+centre)
	if err != nil {
		return nil, err
	}
	switch f.Type {
	case frameAccepted:
		return &supportAnswer{s: s, supervisor: clipAlias(f.Alias), r: r}, nil
	case frameDeclined:
		_ = s.Close()
		return nil, fmt.Errorf("ask support at %s: %s: %w", centre, clipAlias(f.Reason), switchboard.ErrDeclined)
	}
	_ = s.Reset()
	return nil, fmt.Errorf("ask support at %s: unexpected %q frame: %w", centre, clipAlias(string(f.Type)), switchboard.ErrDeclined)
}

// supportAnswer is another centre's supervisor who took our request.
type supportAnswer struct {
	s          network.Stream
	supervisor string
	r          *Router
}

func (a *supportAnswer) Supervisor() string { return a.supervisor }

func (a *supportAnswer) Confirm(h switchboard.PeerHandler) (switchboard.Peer, error) {
	_ = a.s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wire.Write(a.s, frame{Type: frameConfirm}, maxFrame); err != nil {
		_ = a.s.Reset()
		return nil, fmt.Errorf("confirm support: %w", err)
	}
	rl := newRelayChecking(a.s, a.r.log, checkSeatEvent)
	if !rl.start(a.r.spawn, h) {
		_ = a.s.Reset()
		return nil, fmt.Errorf("confirm support: %w", ErrRouterClosed)
	}
	return rl, nil
}

func (a *supportAnswer) Cancel(reason string) {
	_ = a.s.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = wire.Write(a.s, frame{Type: frameCancel, Reason: reason}, maxFrame)
	_ = a.s.Close()
}

// serveSupport answers another centre's support request from our desk.
func (r *Router) serveSupport(s network.Stream) {
	from, ok := r.cfg.Directory.CentreOf(s.Conn().RemotePeer())
	if !ok {
		_ = s.Reset()
		return
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var f frame
	if err := wire.Read(s, &f, maxFrame); err != nil || f.Type != frameSupport || !contactIDPattern.MatchString(f.Contact) ||
		f.Channel != switchboard.ChannelChat || len(f.Language) > 16 {
		r.log.Warn("refused a malformed support request", "from", from, "err", err)
		r.decline(s, "malformed support request")
		return
	}
	r.mu.Lock()
	desk, _ := r.desk.(SupportDesk)
	r.mu.Unlock()
	if desk == nil {
		r.decline(s, "no supervision here")
		return
	}
	// The asker's ring time, within reason: it sets how long our reader
	// waits, and a peer must not hold streams open at will.
	ring := min(max(time.Duration(min(max(f.RingMillis, 0), maxSupportRingMillis))*time.Millisecond, time.Second), maxSupportRing)
	res, err := desk.ReceiveSupport(switchboard.IncomingSupport{From: from, SupportAsk: switchboard.SupportAsk{
		ID: f.Contact, Reason: f.Why, Channel: f.Channel, Language: f.Language, Volunteer: clipAlias(f.Alias), Ring: ring}})
	if err != nil {
		r.decline(s, err.Error())
		return
	}
	accepted := func(alias string) frame { return frame{Type: frameAccepted, Alias: alias} }
	if !r.hold(s, ring, res, accepted, "the volunteer's centre", "the request ended") {
		return
	}
	rl := newRelayChecking(s, r.log, checkSeatEvent)
	h := res.Connect(rl)
	if !rl.start(r.spawn, h) {
		rl.lost("the centre is shutting down")
	}
}

// checkSeatEvent refuses on a supervisor's seat what no honest centre
// sends: messages mirrored (said by the visitor or the volunteer),
// whispers, deliveries and the end, within the message bounds.
func checkSeatEvent(e switchboard.Event) error {
	switch e.Kind {
	case switchboard.EventMessage:
		if e.By != switchboard.SaidByVisitor && e.By != switchboard.SaidByVolunteer {
			return fmt.Errorf("seat message said by %q", clipAlias(e.By))
		}
		return checkEvent(e, true)
	case switchboard.EventWhisper:
		if len(e.ID) == 0 || len(e.ID) > switchboard.MaxMessageIDBytes || len(e.Text) == 0 || len(e.Text) > switchboard.MaxWhisperBytes || len(e.Alias) > 80 {
			return fmt.Errorf("seat whisper out of bounds")
		}
	case switchboard.EventDelivered, switchboard.EventEnded:
		return checkEvent(e, true)
	default:
		return fmt.Errorf("seat event kind %q unknown", clipAlias(string(e.Kind)))
	}
	return nil
}
