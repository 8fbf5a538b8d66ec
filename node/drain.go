package node

import (
	"context"
	"fmt"
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
		return fmt.Errorf("drain centre %s: %d waiting, %d in conversation, %d answering for other centres: %w",
			n.cfg.Centre, st.Waiting, st.InProgress, st.ReceivedInProgress, ctx.Err())
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
	var offered, local, overflow, abandoned uint64
	var waiting, inProgress int
	for _, t := range st.Contacts {
		offered += t.Offered
		local += t.AnsweredLocal
		overflow += t.AnsweredOverflow
		abandoned += t.Abandoned
		waiting += t.Waiting
		inProgress += t.InProgress
	}
	n.log.Info("centre stopped: contacts this run",
		"offered", offered, "answered_local", local, "answered_overflow", overflow,
		"abandoned", abandoned, "waiting", waiting, "in_progress", inProgress,
		"requeued", st.Requeued, "overflow_received", st.OverflowReceived)
}
