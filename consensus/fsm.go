package consensus

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// maxSnapshotBytes bounds a roster snapshot read back from disk or a peer.
const maxSnapshotBytes = 256 << 20

// apply is the command processor: it checks cmd against the roster and then
// changes it. It checks everything before it changes anything, so a refused
// command leaves the roster exactly as it was. It must be deterministic: every
// centre replays the same log to the same roster.
func apply(r *Roster, cmd Command) error {
	if err := cmd.Validate(); err != nil {
		return err
	}
	switch cmd.Op {
	case OpAdmitCentre, OpUpdateCentre:
		return putCentre(r, cmd.Op == OpUpdateCentre, *cmd.Centre)
	case OpRemoveCentre:
		if _, ok := r.Centres[cmd.ID]; !ok {
			return fmt.Errorf("remove centre %q: %w", cmd.ID, ErrUnknownCentre)
		}
		delete(r.Centres, cmd.ID)
		// A centre's volunteers go with it: nobody else may assign them.
		for id, v := range r.Volunteers {
			if v.Centre == cmd.ID {
				delete(r.Volunteers, id)
			}
		}
	case OpPutVolunteer:
		v := *cmd.Volunteer
		if _, ok := r.Centres[v.Centre]; !ok {
			return fmt.Errorf("put volunteer %q: home centre %q: %w", v.ID, v.Centre, ErrUnknownCentre)
		}
		if old, ok := r.Volunteers[v.ID]; ok && old.Centre != v.Centre {
			return fmt.Errorf("put volunteer %q: id belongs to centre %q: %w", v.ID, old.Centre, ErrDuplicate)
		}
		r.Volunteers[v.ID] = v
	case OpRemoveVolunteer:
		if _, ok := r.Volunteers[cmd.ID]; !ok {
			return fmt.Errorf("remove volunteer %q: %w", cmd.ID, ErrUnknownVolunteer)
		}
		delete(r.Volunteers, cmd.ID)
	case OpSetPolicy:
		if want := cmd.ExpectedPolicyVersion; want != "" {
			if have := r.Policy.Version(); have != want {
				return fmt.Errorf("set policy: the policy is at version %s, not %s: %w", have, want, ErrPolicyChanged)
			}
		}
		r.Policy = cmd.Policy.clone()
	case OpRotateGossipKey:
		return rotateGossipKey(r, *cmd.GossipKey)
	case OpSetCentreSIP:
		return setCentre(r, "sip", cmd.CentreSIP.Centre, func(c *Centre) { c.SIPAddr = cmd.CentreSIP.SIPAddr })
	case OpSetCentrePublicURL:
		return setCentre(r, "public url", cmd.CentreURL.Centre, func(c *Centre) { c.PublicURL = cmd.CentreURL.PublicURL })
	}
	return nil
}

// setCentre changes one value of a known centre's entry (set_centre_sip,
// set_centre_public_url); what names it in the error.
func setCentre(r *Roster, what, id string, set func(*Centre)) error {
	c, ok := r.Centres[id]
	if !ok {
		return fmt.Errorf("set centre %s %q: %w", what, id, ErrUnknownCentre)
	}
	set(&c)
	r.Centres[c.ID] = c
	return nil
}

// putCentre admits c, or updates it when update is set. Either way its peer
// id may belong to no other centre: Raft and the allowlist know a centre by
// its peer id.
func putCentre(r *Roster, update bool, c Centre) error {
	op := "admit"
	if update {
		op = "update"
	}
	switch _, known := r.Centres[c.ID]; {
	case known && !update:
		return fmt.Errorf("admit centre %q: %w", c.ID, ErrDuplicate)
	case !known && update:
		return fmt.Errorf("update centre %q: %w", c.ID, ErrUnknownCentre)
	}
	if other, ok := r.CentreByPeer(c.PeerID); ok && other.ID != c.ID {
		return fmt.Errorf("%s centre %q: peer id already belongs to centre %q: %w", op, c.ID, other.ID, ErrDuplicate)
	}
	// The SIP address is set_centre_sip's alone, the public URL
	// set_centre_public_url's: an update (a centre refreshing its own
	// addresses) keeps them.
	c.SIPAddr = r.Centres[c.ID].SIPAddr
	c.PublicURL = r.Centres[c.ID].PublicURL
	r.Centres[c.ID] = c
	return nil
}

// fsm is the thin Raft shim over apply: decode, apply under the lock, report.
type fsm struct {
	mu     sync.RWMutex
	roster Roster
	// gossipKey is the key of roster.GossipKeyGeneration (nil before the
	// first rotation), kept beside the roster so that nothing that reads,
	// sends or prints a Roster can show it. Replaced, never changed in place.
	gossipKey *GossipKey
	// changed is poked (never blocking) after every applied change.
	changed func()
	// applied is the index of the last command this FSM has applied (or
	// refused). Raft's AppliedIndex runs ahead of it: hashicorp/raft
	// advances it when it hands entries to the FSM goroutine, before Apply
	// has run, so read-your-writes must wait on this one.
	applied uint64
}

// appliedIndex is the index of the last command applied here.
func (f *fsm) appliedIndex() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.applied
}

func newFSM(changed func()) *fsm {
	return &fsm{roster: NewRoster(), changed: changed}
}

// applyResult is what Raft hands back to the proposer.
type applyResult struct{ err error }

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return applyResult{}
	}
	cmd, err := DecodeCommand(l.Data)
	if err != nil {
		f.mu.Lock()
		f.applied = l.Index
		f.mu.Unlock()
		return applyResult{err: err}
	}
	f.mu.Lock()
	err = apply(&f.roster, cmd)
	if err == nil {
		f.keepGossipKey(cmd)
	}
	f.applied = l.Index
	f.mu.Unlock()
	if err == nil {
		f.changed()
	}
	return applyResult{err: err}
}

func (f *fsm) read() Roster {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.roster.Clone()
}

// centre reads one centre of the roster without copying the rest: the
// overflow router asks for a centre's peer on every dispatch.
func (f *fsm) centre(id string) (Centre, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c, ok := f.roster.Centres[id]
	c.Addrs = slices.Clone(c.Addrs)
	return c, ok
}

// check runs cmd against a copy of the roster, so the leader can refuse a bad
// command before it ever reaches the log.
func (f *fsm) check(cmd Command) error {
	r := f.read()
	return apply(&r, cmd)
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &snapshot{body: snapshotBody{Roster: f.roster.Clone(), GossipKey: f.gossipKey, Applied: f.applied}}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	dec := json.NewDecoder(io.LimitReader(rc, maxSnapshotBytes))
	body := snapshotBody{Roster: NewRoster()}
	if err := dec.Decode(&body); err != nil {
		return fmt.Errorf("restore roster snapshot: %w", err)
	}
	r, key := body.Roster, body.GossipKey
	if err := body.check(); err != nil {
		return fmt.Errorf("restore roster snapshot: %w", err)
	}
	if r.Centres == nil {
		r.Centres = map[string]Centre{}
	}
	if r.Volunteers == nil {
		r.Volunteers = map[string]Volunteer{}
	}
	f.mu.Lock()
	f.roster, f.gossipKey, f.applied = r, key, body.Applied
	f.mu.Unlock()
	f.changed()
	return nil
}

type snapshot struct{ body snapshotBody }

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.body); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist roster snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
