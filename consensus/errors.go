package consensus

import "errors"

// Each condition a caller may want to act on has exactly one sentinel. Errors
// cross the wire between centres by code (see errorCodes), so a follower that
// forwards a write gets the same sentinel the leader produced.
var (
	// ErrNotLeader means this node cannot decide a write or a linearizable
	// read right now: it is not the leader and no leader is known.
	ErrNotLeader = errors.New("no roster leader reachable")
	// ErrBadCommand means a roster command could not be decoded or has the
	// wrong shape (oversized field, bad code, missing field).
	ErrBadCommand = errors.New("bad roster command")
	// ErrUnsupportedVersion means a command carries a version this node does
	// not speak.
	ErrUnsupportedVersion = errors.New("unsupported roster command version")
	// ErrUnknownCentre means a command names a centre that is not admitted.
	ErrUnknownCentre = errors.New("unknown centre")
	// ErrDuplicate means a command would create something that already exists
	// (a centre id or peer id, a volunteer id).
	ErrDuplicate = errors.New("already in the roster")
	// ErrUnknownVolunteer means a command names a volunteer not in the roster.
	ErrUnknownVolunteer = errors.New("unknown volunteer")
	// ErrNotAdmitted means a centre asked to join the Raft group without being
	// in the roster under the peer id it connected with.
	ErrNotAdmitted = errors.New("centre not admitted")
	// ErrStaleGeneration means a gossip key rotation does not carry the
	// generation that follows the roster's: it was replayed, it lost a race
	// with another rotation, or it was built from a roster copy that lagged.
	ErrStaleGeneration = errors.New("gossip key generation out of turn")
	// ErrPolicyChanged means a conditional set_policy (one with an
	// ExpectedPolicyVersion) found the policy at another version: someone
	// changed it since the proposer read it. Nothing was written; read the
	// policy again and redo the change on it.
	ErrPolicyChanged = errors.New("the policy changed since it was read")
	// ErrNotEverywhere means a command's operation was introduced by a
	// release that some centre of the roster group is not known to run (see
	// CommandLevel): it would refuse the command at apply while the others apply
	// it. Nothing was written; upgrade that centre, or bring it back or
	// remove it, and retry.
	ErrNotEverywhere = errors.New("roster command not yet spoken by every centre")
	// ErrOutcomeUnknown means a write was sent towards the leader but no
	// answer came back (the connection broke or timed out, or leadership
	// was lost mid-write): it may or may not have been made. Read the
	// roster before trying again.
	ErrOutcomeUnknown = errors.New("no answer from the roster leader; the change may or may not have been made")
	// ErrStopped means the consensus module has been stopped.
	ErrStopped = errors.New("consensus stopped")
)

// errorCodes maps sentinels to stable wire codes.
var errorCodes = map[string]error{
	"not_leader":          ErrNotLeader,
	"bad_command":         ErrBadCommand,
	"unsupported_version": ErrUnsupportedVersion,
	"unknown_centre":      ErrUnknownCentre,
	"duplicate":           ErrDuplicate,
	"unknown_volunteer":   ErrUnknownVolunteer,
	"not_admitted":        ErrNotAdmitted,
	"stale_generation":    ErrStaleGeneration,
	"not_everywhere":      ErrNotEverywhere,
	"policy_changed":      ErrPolicyChanged,
	"outcome_unknown":     ErrOutcomeUnknown,
	"stopped":             ErrStopped,
}

func codeOf(err error) string {
	for code, sentinel := range errorCodes {
		if errors.Is(err, sentinel) {
			return code
		}
	}
	return "internal"
}

// remoteError rebuilds an error received from another centre so that
// errors.Is still works on this side.
type remoteError struct {
	sentinel error
	msg      string
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func fromWire(code, msg string) error {
	if code == "" && msg == "" {
		return nil
	}
	return &remoteError{sentinel: errorCodes[code], msg: msg}
}
