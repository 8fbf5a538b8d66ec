package switchboard

// A contact's life, in one place. Every change of a contact's state goes
// through moveLocked, which knows the allowed transitions:
//
//	from \ to   queued  offered  connected  ended  abandoned  returned
//	queued        -       yes      yes        -      yes        -
//	offered      yes      -        yes        -      yes        yes
//	connected    yes      -        -          yes    -          -
//
// queued -> offered: rung on a console here, or offered to another centre.
// offered -> queued: every offer declined, timed out, withdrawn or failed.
// queued|offered -> connected: a volunteer here or elsewhere accepted.
// connected -> queued: the answering centre or volunteer was lost (requeued,
// at the front; with a resumable page only once it stays, resume.go).
// connected -> ended: either side ended it, a flooder was cut off, the
// centre closed, or the page resumed at the answering centre.
// queued|offered -> abandoned: the visitor left, or the centre closed. offered -> returned: a phone call's reserved
// volunteer did not pick up, the call never arrived, or the answering centre
// was lost first (calls.go). ended, abandoned and returned are final. A move
// to the state a contact is already in changes nothing and is not counted.

import "log/slog"

var allowedMoves = map[State]map[State]bool{
	StateQueued:    {StateOffered: true, StateConnected: true, StateAbandoned: true},
	StateOffered:   {StateQueued: true, StateConnected: true, StateAbandoned: true, StateReturned: true},
	StateConnected: {StateQueued: true, StateEnded: true},
}

// Transition is one kind of change of a contact's state, counted in
// Stats.Transitions per channel.
type Transition struct {
	Channel  string
	From, To State
}

// moveLocked changes c's state, counting the transition once. A transition
// the table does not allow is a bug: it is logged and not made, so that the
// KPIs never count an impossible life.
func (s *Switchboard) moveLocked(c *contact, to State) {
	from := c.state
	if from == to {
		return
	}
	if !allowedMoves[from][to] {
		s.log.Error("contact state change refused: not in the transition table", slog.String("from", string(from)), slog.String("to", string(to)))
		return
	}
	c.state = to
	s.stats.Transitions[Transition{Channel: c.channel, From: from, To: to}]++
	// The Tally's outcomes are counted by the move that makes them, so no
	// path can end or abandon a contact without counting it.
	switch to {
	case StateEnded:
		s.countAnsweredLocked(c)
	case StateAbandoned:
		s.tallyLocked(c, func(t *Tally) { t.Abandoned++ })
	case StateReturned:
		s.tallyLocked(c, func(t *Tally) { t.Returned++ })
	}
}
