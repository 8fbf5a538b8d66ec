package overflow

// memberlist's callbacks, and its log lines read for the one event it
// does not raise.

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/helpmesh/helpmesh/internal/logadapt"
	"github.com/helpmesh/helpmesh/internal/refusal"
)

// delegate adapts memberlist's callback interfaces; it is separate from
// Gossip so those methods do not become part of the public API.
type delegate struct{ g *Gossip }

var (
	_ memberlist.Delegate         = (*delegate)(nil)
	_ memberlist.EventDelegate    = (*delegate)(nil)
	_ memberlist.PingDelegate     = (*delegate)(nil)
	_ memberlist.AliveDelegate    = (*delegate)(nil)
	_ memberlist.ConflictDelegate = (*delegate)(nil)
	_ memberlist.NamedBroadcast   = (*stateBroadcast)(nil)
)

func (d *delegate) NodeMeta(limit int) []byte {
	meta := encodeMeta(d.g.cfg.Centre)
	if len(meta) > limit {
		// Unreachable with MaxCentreIDLen far below memberlist's 512 bytes;
		// returning more than limit would make memberlist panic.
		return nil
	}
	return meta
}

func (d *delegate) NotifyMsg(b []byte) { d.g.receive(b) }

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.g.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(bool) []byte            { return d.g.snapshot() }
func (d *delegate) MergeRemoteState(b []byte, _ bool) { d.g.merge(b) }
func (d *delegate) NotifyJoin(n *memberlist.Node)     { d.g.setMember(n, true) }
func (d *delegate) NotifyUpdate(n *memberlist.Node)   { d.g.setMember(n, true) }
func (d *delegate) NotifyLeave(n *memberlist.Node)    { d.g.setMember(n, false) }
func (d *delegate) AckPayload() []byte                { return nil }

func (d *delegate) NotifyPingComplete(n *memberlist.Node, _ time.Duration, _ []byte) {
	d.g.clearSuspect(n.Name)
}

// NotifyAlive admits only nodes speaking our protocol version under their own
// centre id, so an incompatible release is kept out of the membership instead
// of joining and then failing to decode every message.
func (d *delegate) NotifyAlive(n *memberlist.Node) error {
	centre, err := decodeMeta(n.Meta)
	if err != nil {
		return fmt.Errorf("overflow: admit %q: %w", n.Name, err)
	}
	if centre != n.Name {
		return fmt.Errorf("overflow: admit %q: %w: meta names %q", n.Name, ErrCentreMismatch, centre)
	}
	return nil
}

func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.g.log.Error("overflow: two nodes claim one centre id; the second is refused",
		"centre", existing.Name, "existing", hostPort(existing.Addr, existing.Port),
		"other", hostPort(other.Addr, other.Port))
}

// logWriter turns memberlist's log.Logger lines ("[WARN] memberlist: ...")
// into slog records at the matching level, so operators filter them with the
// rest of the node's logs. Lines about input refused before authentication
// go to the refusal log instead, which counts each and logs a sample: anyone
// who can reach the port causes them, one per packet.
type logWriter struct {
	log       *slog.Logger
	onSuspect func(node string)
	refused   *refusal.Log // nil: refusals are logged like any line
}

func (w *logWriter) Write(p []byte) (int, error) {
	level, msg := logadapt.SplitLevel(string(p))
	if w.refused != nil {
		if r, ok := classifyRefused(msg); ok {
			w.refused.Refuse(r.reason, r.attrs(refusal.Value)...)
			return len(p), nil
		}
		if followsRefusal(msg) {
			level = slog.LevelDebug
		}
	}
	w.log.Log(context.Background(), level, msg)
	if node, ok := suspectedNode(msg); ok && w.onSuspect != nil {
		w.onSuspect(node)
	}
	return len(p), nil
}

// suspectedNode recognises memberlist v0.7.0's message for a failed probe
// (state.go, probeNode). TestKilledCentreMarkedDead fails if the text changes.
func suspectedNode(msg string) (string, bool) {
	rest, ok := strings.CutPrefix(msg, "memberlist: Suspect ")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, " has failed, no acks received")
}
