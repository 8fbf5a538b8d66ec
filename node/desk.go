package node

import (
	"context"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/overflow"
	"github.com/helpmesh/helpmesh/switchboard"
)

// The desk is the contact plane's wiring: the switchboard decides, the
// router carries offers and conversations to other centres, and the
// availability the switchboard computes is published by gossip.

// directory answers the router's roster look-ups from the local roster copy:
// routing never waits on Raft.
type directory struct{ n *Node }

func (d directory) PeerOf(centre string) (peer.ID, bool) {
	c, ok := d.n.consensus.Centre(centre)
	if !ok {
		return "", false
	}
	pid, err := peer.Decode(c.PeerID)
	return pid, err == nil
}

func (d directory) CentreOf(p peer.ID) (string, bool) {
	c, ok := d.n.consensus.Roster().CentreByPeer(p.String())
	return c.ID, ok
}

// desk hands the router our switchboard: Reserve's concrete reservation
// becomes the router's own small interface.
type desk struct{ sb *switchboard.Switchboard }

func (d desk) Reserve(o switchboard.IncomingOffer) (overflow.Reservation, error) {
	res, err := d.sb.Reserve(o)
	if err != nil {
		return nil, err
	}
	return res, nil
}

var _ overflow.Reservation = (*switchboard.Reservation)(nil)

func (d desk) ReceiveSupport(in switchboard.IncomingSupport) (overflow.SupportReservation, error) {
	res, err := d.sb.ReceiveSupport(in)
	if err != nil {
		return nil, err
	}
	return res, nil
}

var _ overflow.SupportDesk = desk{}

func (n *Node) newSwitchboard() *switchboard.Switchboard {
	ring := 20 * time.Second
	if n.cfg.RingTimeout > 0 {
		ring = n.cfg.RingTimeout
	}
	return switchboard.New(switchboard.Config{
		Centre:      n.cfg.Centre,
		RingTimeout: ring,
		OverflowAfter: func(channel string) time.Duration {
			return time.Duration(n.consensus.Roster().Policy.OverflowAfterSeconds[channel]) * time.Second
		},
		WaitLocallyWhenBusy: func() bool { return n.consensus.Roster().Policy.WaitLocallyWhenBusy },
		Languages:           func() []string { return n.consensus.Roster().Policy.Languages },
		Topics:              func() []string { return n.consensus.Roster().Policy.Topics },
		Overflow:            n.router,
		// Other centres' supervisors back ours; the visitor is told a
		// supervisor reads along unless the policy says the helpline's
		// own notice covers it.
		Supervision:     n.router,
		SupportRing:     n.cfg.SupportRing,
		ReadAlongNotice: func() bool { return !n.consensus.Roster().Policy.ReadAlongSilent },
		OnChange:        n.pokePublish,
		// Speed-to-answer buckets: the same as the exported histogram's.
		AnswerBuckets: speedToAnswerBuckets,
		MaxQueue:      n.cfg.MaxQueue,
		CallTokens:    n.cfg.CallTokens,
		PhoneDomain:   n.cfg.PhoneDomain,
		BrowserPhones: n.cfg.BrowserPhones,
		CallLease:     n.cfg.CallLease,
		Pace:          n.cfg.Pace,
		// Care for volunteers: the policy's, with this centre's own.
		Care:   func() switchboard.CarePolicy { return carePolicy(n.consensus.Roster().Policy.CareFor(n.cfg.Centre)) },
		Logger: n.cfg.Logger,
	})
}

func (n *Node) pokePublish() {
	select {
	case n.publish <- struct{}{}:
	default:
	}
}

// publishLoop sends the switchboard's availability to the federation,
// coalescing bursts of changes.
func (n *Node) publishLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.publish:
		}
		n.publishAvailability()
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (n *Node) publishAvailability() {
	a := overflow.AvailabilityOf(n.cfg.Centre, n.sb)
	if err := n.SetAvailability(a); err != nil {
		n.log.Warn("availability not published", "err", err)
	}
}

// Switchboard returns the centre's desk.
func (n *Node) Switchboard() *switchboard.Switchboard { return n.sb }

// DataDir returns the centre's data directory.
func (n *Node) DataDir() string { return n.cfg.DataDir }

// carePolicy turns the policy's care for volunteers (seconds, as a
// coordinator writes them) into the switchboard's.
func carePolicy(c consensus.Care) switchboard.CarePolicy {
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	return switchboard.CarePolicy{
		HeavyTopics: c.HeavyTopics, CoolDown: sec(c.CoolDownSeconds), MaxInARow: c.MaxInARow,
		Break: sec(c.BreakSeconds), MaxShift: sec(c.MaxShiftSeconds), ShiftNotice: sec(c.ShiftNoticeSeconds),
	}
}
