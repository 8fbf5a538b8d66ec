package overflow

import (
	"bytes"
	"fmt"
	"slices"
	"sync"

	"github.com/hashicorp/memberlist"
)

// keyring serialises this package's changes to memberlist's keyring, so
// that DropOldKeys sees the ring it is changing. The keyring is safe to use
// concurrently on its own, and memberlist reads it on every packet.
type keyring struct {
	mu   sync.Mutex
	ring *memberlist.Keyring
}

// AddKey installs key for decryption only. This centre goes on encrypting
// with its primary key, so a peer that has not installed the new key yet
// still reads what we send, while we already read a peer that has switched.
func (g *Gossip) AddKey(key []byte) error {
	if len(key) != 32 {
		return fmt.Errorf("overflow: add gossip key: %w: got %d bytes", ErrInvalidKey, len(key))
	}
	g.keys.mu.Lock()
	defer g.keys.mu.Unlock()
	// memberlist keeps the slice it is given: a copy keeps it ours.
	if err := g.keys.ring.AddKey(bytes.Clone(key)); err != nil {
		return fmt.Errorf("overflow: add gossip key: %w", err)
	}
	return nil
}

// UseKey makes an installed key the primary: from now on this centre
// encrypts with it. The previous primary stays installed for decryption
// until DropOldKeys.
func (g *Gossip) UseKey(key []byte) error {
	g.keys.mu.Lock()
	defer g.keys.mu.Unlock()
	if !slices.ContainsFunc(g.keys.ring.GetKeys(), func(k []byte) bool { return bytes.Equal(k, key) }) {
		return fmt.Errorf("overflow: use gossip key: %w", ErrKeyNotInstalled)
	}
	if err := g.keys.ring.UseKey(key); err != nil {
		return fmt.Errorf("overflow: use gossip key: %w", err)
	}
	return nil
}

// DropOldKeys removes installed keys from the end of the ring (the oldest
// secondaries, since UseKey moves its key to the front and keeps the order of
// the rest) until it reaches the primary or a key in keep, and returns how
// many it removed. A peer still encrypting with a dropped key is no longer
// read. Keys behind a kept one stay until a later call, after the kept key
// has become the primary and moved to the front.
//
// Only ever the last key: memberlist's RemoveKey closes a gap by shifting,
// in place, the slice that GetKeys handed to its packet readers, which may
// be iterating over it at that moment. Removing the last element moves
// nothing.
func (g *Gossip) DropOldKeys(keep ...[]byte) (int, error) {
	g.keys.mu.Lock()
	defer g.keys.mu.Unlock()
	dropped := 0
	for {
		keys := g.keys.ring.GetKeys()
		if len(keys) < 2 {
			return dropped, nil
		}
		last := keys[len(keys)-1]
		if slices.ContainsFunc(keep, func(k []byte) bool { return bytes.Equal(k, last) }) {
			return dropped, nil
		}
		if err := g.keys.ring.RemoveKey(last); err != nil {
			return dropped, fmt.Errorf("overflow: drop gossip key: %w", err)
		}
		dropped++
	}
}

// Keys returns copies of the installed keys, the primary first.
func (g *Gossip) Keys() [][]byte {
	g.keys.mu.Lock()
	defer g.keys.mu.Unlock()
	var out [][]byte
	for _, k := range g.keys.ring.GetKeys() {
		out = append(out, bytes.Clone(k))
	}
	return out
}
