package consensus

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"log/slog"
)

// GossipKeyBytes is the length of a gossip key: memberlist's AES-256-GCM.
const GossipKeyBytes = 32

// maxGossipKeyGeneration keeps a generation exact in every JSON reader.
const maxGossipKeyGeneration = 1 << 53

// GossipKey is the federation's memberlist encryption key and its
// generation. Generation 0 is the key the federation was created with, which
// lives only in the centres' federation.json; every rotation goes through
// the roster and adds one, so a replayed or racing rotation is refused.
//
// The key is a secret: the roster's JSON never carries it, and String and
// LogValue leave it out, so an error message, a %v or a log line cannot
// show it by accident.
type GossipKey struct {
	Generation uint64 `json:"generation"`
	Key        []byte `json:"key"`
}

// String names the generation only.
func (k GossipKey) String() string { return fmt.Sprintf("gossip key generation %d", k.Generation) }

// GoString keeps %#v from printing the key.
func (k GossipKey) GoString() string { return k.String() }

// LogValue keeps slog from printing the key.
func (k GossipKey) LogValue() slog.Value {
	return slog.GroupValue(slog.Uint64("generation", k.Generation))
}

// RotateGossipKeyCommand returns a rotation to a fresh random key, one
// generation after r's. The centre whose coordinator asks for the rotation
// makes the key; Raft carries it to the others over libp2p.
func RotateGossipKeyCommand(r Roster) (Command, error) {
	key := make([]byte, GossipKeyBytes)
	if _, err := rand.Read(key); err != nil {
		return Command{}, fmt.Errorf("new gossip key: %w", err)
	}
	return Command{Version: CommandVersion, Op: OpRotateGossipKey,
		GossipKey: &GossipKey{Generation: r.GossipKeyGeneration + 1, Key: key}}, nil
}

func (k *GossipKey) validate(bad badFunc) error {
	if len(k.Key) != GossipKeyBytes {
		return bad("a gossip key must be %d bytes, got %d", GossipKeyBytes, len(k.Key))
	}
	if k.Generation < 1 || k.Generation > maxGossipKeyGeneration {
		return bad("gossip key generation %d must be 1-2^53", k.Generation)
	}
	return nil
}

// rotateGossipKey applies a rotation to the roster: only the generation
// right after the roster's may follow, so a command replayed from an old
// proposal, or the loser of two rotations proposed at once, changes nothing.
// The key itself goes beside the roster (fsm.keepGossipKey).
func rotateGossipKey(r *Roster, k GossipKey) error {
	if want := r.GossipKeyGeneration + 1; k.Generation != want {
		return fmt.Errorf("rotate gossip key: generation %d, but the roster is at %d so only %d may follow: %w",
			k.Generation, r.GossipKeyGeneration, want, ErrStaleGeneration)
	}
	r.GossipKeyGeneration = k.Generation
	return nil
}

// keepGossipKey stores the key of a rotation that apply accepted. The caller
// holds f.mu.
func (f *fsm) keepGossipKey(cmd Command) {
	if cmd.Op == OpRotateGossipKey {
		f.gossipKey = &GossipKey{Generation: cmd.GossipKey.Generation, Key: bytes.Clone(cmd.GossipKey.Key)}
	}
}

// GossipKey returns the federation's current gossip key as the local roster
// copy holds it. ok is false before the first rotation: generation 0 is only
// in the centres' federation.json.
func (c *Consensus) GossipKey() (k GossipKey, ok bool) {
	c.fsm.mu.RLock()
	defer c.fsm.mu.RUnlock()
	if c.fsm.gossipKey == nil {
		return GossipKey{}, false
	}
	return GossipKey{Generation: c.fsm.gossipKey.Generation, Key: bytes.Clone(c.fsm.gossipKey.Key)}, true
}

// snapshotBody is a snapshot's content: the roster and, beside it, the
// gossip key. A snapshot written before rotation existed has neither
// field and restores as generation 0.
type snapshotBody struct {
	Roster
	GossipKey *GossipKey `json:"gossip_key,omitempty"`
	// Applied is the index of the last command in the snapshot (0 in
	// snapshots written before it was kept); see fsm.applied.
	Applied uint64 `json:"applied_index,omitempty"`
}

// check refuses a snapshot whose key does not belong to its generation.
func (b snapshotBody) check() error {
	gen := b.Roster.GossipKeyGeneration
	if gen == 0 && b.GossipKey == nil {
		return nil
	}
	if b.GossipKey == nil || b.GossipKey.Generation != gen || len(b.GossipKey.Key) != GossipKeyBytes {
		return fmt.Errorf("gossip key does not match generation %d", gen)
	}
	return nil
}

// LogValue names a command's operation and subject and leaves out its
// payload: a rotation's payload is the federation's key, and slog's JSON
// handler would otherwise print it exactly as the Raft log stores it.
func (c Command) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Int("v", c.Version), slog.String("op", string(c.Op))}
	switch {
	case c.ID != "":
		attrs = append(attrs, slog.String("id", c.ID))
	case c.Centre != nil:
		attrs = append(attrs, slog.String("centre", c.Centre.ID))
	case c.Volunteer != nil:
		attrs = append(attrs, slog.String("volunteer", c.Volunteer.ID))
	case c.GossipKey != nil:
		attrs = append(attrs, slog.Uint64("generation", c.GossipKey.Generation))
	case c.CentreURL != nil:
		attrs = append(attrs, slog.String("centre", c.CentreURL.Centre))
	}
	return slog.GroupValue(attrs...)
}
