package node

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/timing"
)

// Rotating the gossip key. A rotation is a roster command (so it reaches
// every admitted centre through Raft, which runs over libp2p, and never a
// removed one); each centre then changes its memberlist keyring in three
// steps, off the FSM's apply path:
//
//  1. install the new key for decryption at once;
//  2. encrypt with it after useAfter, by when every healthy centre has
//     applied the rotation and can read it;
//  3. drop the old key after grace, by when every healthy centre encrypts
//     with the new one. From then on a centre holding only the old key (a
//     removed centre, or a leaked key) is neither read nor believed.
//
// The new key is saved to federation.json at step 1, so a restart starts
// with it, and the join stream hands it to a joining centre. A centre that
// was down restarts with its old key, catches up through Raft and installs
// the new key then.

// gossipRotation is this centre's side of rotation.
type gossipRotation struct {
	mu sync.Mutex
	// fed replaces Node.fed once a rotation has been installed here.
	fed *Federation
	// inUse is the generation this centre encrypts with, once fed is set;
	// before, it is Node.fed's.
	inUse uint64
}

// rotationTiming returns how long a centre waits after installing a key
// before it encrypts with it, and how long it then still reads the old key.
func rotationTiming(t timing.Profile) (useAfter, grace time.Duration) {
	if t == timing.Test {
		return time.Second, 4 * time.Second
	}
	// Raft applies a committed entry at every healthy centre within a few
	// heartbeats; 5 s is a wide margin. The grace covers a centre that was
	// slow to apply and memberlist's retransmissions of older packets.
	return 5 * time.Second, 2 * time.Minute
}

// currentFederation is the federation secrets as they stand now: what the
// join stream hands out.
func (n *Node) currentFederation() Federation {
	n.rotation.mu.Lock()
	defer n.rotation.mu.Unlock()
	if n.rotation.fed != nil {
		f := *n.rotation.fed
		f.GossipKey = bytes.Clone(f.GossipKey)
		return f
	}
	return n.fed
}

// RotateGossipKey proposes a fresh gossip key, one generation after the
// roster's, and returns that generation. It fails with
// consensus.ErrStaleGeneration when another rotation got there first.
func (n *Node) RotateGossipKey(ctx context.Context) (uint64, error) {
	cmd, err := consensus.RotateGossipKeyCommand(n.consensus.Roster())
	if err != nil {
		return 0, fmt.Errorf("rotate gossip key: %w", err)
	}
	if err := n.consensus.Propose(ctx, cmd); err != nil {
		return 0, fmt.Errorf("rotate gossip key: %w", err)
	}
	return cmd.GossipKey.Generation, nil
}

// gossipKeyLoop follows the roster's gossip key and walks the keyring
// through the three steps. Rotations are rare, so one goroutine with two
// timers is enough; the roster notification is coalesced, so a centre that
// sees two rotations at once installs only the newer key. It is not
// consensus.Watch: its two timers are events of their own, in the same
// select as the roster's, so a newer key found while one waits replaces it.
func (n *Node) gossipKeyLoop(ctx context.Context) {
	useAfter, grace := rotationTiming(n.cfg.Timing)
	changes, unsubscribe := n.consensus.Subscribe()
	defer unsubscribe()
	installed := n.currentFederation().GossipKeyGeneration
	var pending *consensus.GossipKey // installed, not yet encrypting with it
	var useC, dropC <-chan time.Time
	for {
		if k, ok := n.consensus.GossipKey(); ok && k.Generation > installed {
			if err := n.installGossipKey(k); err != nil {
				n.log.Error("could not install the new gossip key", "generation", k.Generation, "err", err)
			} else {
				installed, pending = k.Generation, &k
				useC = time.After(useAfter)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-useC:
			useC = nil
			if err := n.gossip.UseKey(pending.Key); err != nil {
				n.log.Error("could not switch to the new gossip key", "generation", pending.Generation, "err", err)
				continue
			}
			n.setKeyInUse(pending.Generation)
			n.log.Info("gossip now encrypted with the new key", "generation", pending.Generation)
			pending = nil
			dropC = time.After(grace)
			// A centre that missed the rotation while down, and peers it
			// could not read until now, are found at once rather than at
			// the next rejoin tick.
			n.joinGossip(ctx, nil)
		case <-dropC:
			dropC = nil
			var keep [][]byte
			if pending != nil {
				keep = append(keep, pending.Key)
			}
			dropped, err := n.gossip.DropOldKeys(keep...)
			if err != nil {
				n.log.Error("could not drop old gossip keys", "err", err)
				continue
			}
			n.log.Info("old gossip keys dropped", "dropped", dropped, "installed", len(n.gossip.Keys()))
		}
	}
}

// installGossipKey adds k to the keyring for decryption and saves it as the
// centre's current secret.
func (n *Node) installGossipKey(k consensus.GossipKey) error {
	if err := n.gossip.AddKey(k.Key); err != nil {
		return err
	}
	fed := n.currentFederation()
	fed.GossipKey, fed.GossipKeyGeneration = bytes.Clone(k.Key), k.Generation
	n.rotation.mu.Lock()
	if n.rotation.fed == nil {
		n.rotation.inUse = n.fed.GossipKeyGeneration
	}
	n.rotation.fed = &fed
	n.rotation.mu.Unlock()
	n.log.Info("installed a new gossip key", "generation", k.Generation)
	if err := SaveFederation(n.cfg.DataDir, fed); err != nil {
		// Not fatal: the key is in use; a restart starts from the old key
		// and catches up through the roster, like a centre that was down.
		n.log.Warn("new gossip key not saved", "generation", k.Generation, "err", err)
	}
	return nil
}

func (n *Node) setKeyInUse(gen uint64) {
	n.rotation.mu.Lock()
	n.rotation.inUse = gen
	n.rotation.mu.Unlock()
}

// GossipKeyStatus is what a coordinator sees of a centre's gossip key: the
// generations, never the key.
type GossipKeyStatus struct {
	// Generation is the newest generation in this centre's roster.
	Generation uint64 `json:"generation"`
	// InUse is the generation this centre encrypts with. It trails
	// Generation for a few seconds after a rotation.
	InUse uint64 `json:"in_use"`
	// Installed is how many keys this centre decrypts with: 2 during the
	// grace period after a rotation, then 1.
	Installed int `json:"installed"`
}

// GossipKeyStatus reports the centre's gossip key generations.
func (n *Node) GossipKeyStatus() GossipKeyStatus {
	n.rotation.mu.Lock()
	inUse := n.rotation.inUse
	if n.rotation.fed == nil {
		inUse = n.fed.GossipKeyGeneration
	}
	n.rotation.mu.Unlock()
	return GossipKeyStatus{
		Generation: n.consensus.Roster().GossipKeyGeneration,
		InUse:      inUse,
		Installed:  len(n.gossip.Keys()),
	}
}
