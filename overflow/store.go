package overflow

// The state store: our own availability and the newest we hold of every
// other centre, merged from broadcasts, direct sends and push/pull.

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

// SetLocal publishes this centre's availability. It fills in Centre when
// empty, assigns the next Version and stamps UpdatedUnixMilli, and returns
// what was published. Version is at least the wall clock in microseconds so
// that it keeps increasing across a restart, when the counter starts afresh.
func (g *Gossip) SetLocal(a Availability) (Availability, error) {
	published, err := g.publish(a)
	if err != nil {
		return Availability{}, fmt.Errorf("overflow: set local: %w", err)
	}
	return published, nil
}

func (g *Gossip) publish(a Availability) (Availability, error) {
	a = a.Clone()
	if a.Centre == "" {
		a.Centre = g.cfg.Centre
	}
	if a.Centre != g.cfg.Centre {
		return Availability{}, fmt.Errorf("%w: %q is not this node's centre %q", ErrCentreMismatch, a.Centre, g.cfg.Centre)
	}
	now := time.Now()

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopped {
		return Availability{}, ErrStopped
	}
	a.Version = max(g.version+1, uint64(now.UnixMicro()))
	a.UpdatedUnixMilli = now.UnixMilli()
	wire, err := EncodeAvailability(a)
	if err != nil {
		return Availability{}, err
	}
	g.version = a.Version
	g.hasLocal = true
	g.states[a.Centre] = &stored{a: a, wire: wire, receivedAt: now}
	g.markChangedLocked(a.Centre)
	if len(wire) <= g.broadcastLimit {
		g.fanout, g.fanoutVersion = nil, 0
		g.queue.QueueBroadcast(&stateBroadcast{name: a.Centre, msg: wire})
	} else {
		g.fanout, g.fanoutVersion = wire, a.Version
		kick(g.fanoutKick)
	}
	return a.Clone(), nil
}

// receive handles one message from a broadcast or a direct send. memberlist
// may reuse b after return, hence the copies kept for relaying.
func (g *Gossip) receive(b []byte) {
	if len(b) >= headerLen && b[0] == WireVersion && b[1] == kindLeave {
		g.receiveLeave(b)
		return
	}
	a, err := DecodeAvailability(b)
	if err != nil {
		g.log.Warn("overflow: dropped gossip message", "err", err)
		return
	}
	g.apply(a, bytes.Clone(b))
}

// receiveLeave records a centre's leave announcement and relays it, so that
// NotifyLeave for that centre (before or after this) reports "left".
func (g *Gossip) receiveLeave(b []byte) {
	centre, version, err := decodeLeave(b)
	if err != nil {
		g.log.Warn("overflow: dropped leave message", "err", err)
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if centre == g.cfg.Centre {
		return
	}
	prev, known := g.leaveIntent[centre]
	if known && prev >= version {
		return
	}
	if st := g.states[centre]; st != nil && st.a.Version > version {
		return // from an earlier run of a centre that has since restarted
	}
	if !known && len(g.leaveIntent) >= MaxCentres {
		return
	}
	g.leaveIntent[centre] = version
	if m := g.members[centre]; m != nil && m.state == StateDead {
		m.state = StateLeft
		g.markChangedLocked(centre)
	}
	g.queue.QueueBroadcast(&stateBroadcast{name: leaveBroadcastName(centre), msg: bytes.Clone(b)})
}

// merge handles a peer's full view from push/pull.
func (g *Gossip) merge(b []byte) {
	states, err := decodeSnapshot(b)
	if err != nil {
		g.log.Warn("overflow: dropped push/pull state", "err", err)
		return
	}
	for _, a := range states {
		g.apply(a, nil)
	}
}

// apply keeps a if it is newer than what is known for its centre, and then
// relays it, because memberlist only retransmits what each node itself
// queues: without the relay an update would reach only the publisher's
// direct gossip targets.
func (g *Gossip) apply(a Availability, wire []byte) {
	now := time.Now()
	g.mu.Lock()
	if a.Centre == g.cfg.Centre {
		// A newer version of ourselves can only come from before a restart
		// with a clock that stepped back. Move past it, or peers would
		// ignore everything we publish until the clock caught up.
		if a.Version <= g.version || g.stopped {
			g.mu.Unlock()
			return
		}
		g.version = a.Version
		var local Availability
		if st := g.states[g.cfg.Centre]; g.hasLocal && st != nil {
			local = st.a
		}
		g.mu.Unlock()
		if local.Centre != "" {
			if _, err := g.publish(local); err != nil {
				g.log.Warn("overflow: republish after stale echo failed", "err", err)
			}
		}
		return
	}
	defer g.mu.Unlock()
	cur := g.states[a.Centre]
	if cur != nil && cur.a.Version >= a.Version {
		return
	}
	if cur == nil && len(g.states) >= MaxCentres {
		g.log.Warn("overflow: ignoring centre beyond limit", "centre", a.Centre, "limit", MaxCentres)
		return
	}
	if wire == nil {
		var err error
		if wire, err = EncodeAvailability(a); err != nil {
			// Unreachable for decoded input, which was validated; kept so a
			// future change cannot store an unrelayable state silently.
			g.log.Error("overflow: re-encode failed", "centre", a.Centre, "err", err)
			return
		}
	}
	g.states[a.Centre] = &stored{a: a, wire: wire, receivedAt: now}
	g.markChangedLocked(a.Centre)
	// Large states reach everyone by the publisher's direct sends and by
	// push/pull; a relay could never fit in a packet.
	if len(wire) <= g.broadcastLimit {
		g.queue.QueueBroadcast(&stateBroadcast{name: a.Centre, msg: wire})
	}
}

// snapshot is the push/pull payload: this centre first, so truncation at
// MaxSnapshotBytes never drops our own state, then the others by id.
func (g *Gossip) snapshot() []byte {
	g.mu.Lock()
	bodies := make([][]byte, 0, len(g.states))
	if st := g.states[g.cfg.Centre]; st != nil {
		bodies = append(bodies, st.wire[headerLen:])
	}
	names := make([]string, 0, len(g.states))
	for name := range g.states {
		if name != g.cfg.Centre {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		bodies = append(bodies, g.states[name].wire[headerLen:])
	}
	out, omitted := encodeSnapshot(bodies)
	g.mu.Unlock()
	if omitted > 0 {
		g.log.Warn("overflow: push/pull state truncated", "omitted", omitted, "limit", MaxSnapshotBytes)
	}
	return out
}
