package node

import (
	"context"
	"fmt"

	"github.com/helpmesh/helpmesh/switchboard"
)

// Drain prepares the centre for a restart without cutting a conversation
// short: the desk takes no new visitor and no offer from another centre,
// the federation is told (by gossip) that no one here is free, /readyz
// says "draining", and Drain returns once every conversation here has
// ended. If ctx ends first, Drain returns its error and Stop will end what
// is left (counted as answered, or abandoned if still waiting).
func (n *Node) Drain(ctx context.Context) error {
	if n.sb == nil {
		return nil
	}
	drained := n.sb.Drain()
	n.pokePublish()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		st := n.sb.Stats()
		t := st.Total()
		return fmt.Errorf("drain centre %s: %d waiting, %d in conversation, %d answering for other centres: %w",
			n.cfg.Centre, t.Waiting, t.InProgress, st.ReceivedInProgress, ctx.Err())
	}
}

// logFinalTallies records what this run of the centre handled, once its
// desk is closed: Prometheus loses a process's counters when it stops, and
// an operator (or the fault suite) can still account for every contact.
// Counts only, never a person or a contact.
func (n *Node) logFinalTallies() {
	if n.sb == nil {
		return
	}
	st := n.sb.Stats()
	t := st.Total()
	n.log.Info("centre stopped: contacts this run",
		"offered", t.Offered, "answered_local", t.AnsweredLocal, "answered_overflow", t.AnsweredOverflow,
		"abandoned", t.Abandoned, "waiting", t.Waiting, "in_progress", t.InProgress,
		"requeued", st.Moved(switchboard.StateConnected, switchboard.StateQueued),
		"overflow_received", st.Received(switchboard.OfferAccepted))
}
