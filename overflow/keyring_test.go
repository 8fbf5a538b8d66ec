package overflow

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

func keysEqual(got [][]byte, want ...[]byte) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			return false
		}
	}
	return true
}

// The rotation a node drives, step by step, on two live nodes: add the new
// key everywhere, switch one node to it (the other still reads it), switch
// the other, drop the old key. Both stay alive throughout; a node holding
// only the old key is then refused.
func TestKeyRotationKeepsMembersAndShutsOutTheOldKey(t *testing.T) {
	nodes := startFederation(t, 2)
	a, b := nodes[0], nodes[1]
	oldKey, newKey := testKey(1), testKey(7)
	bothAlive := func() bool {
		return countState(a.View(), StateAlive) == 2 && countState(b.View(), StateAlive) == 2
	}

	if err := a.UseKey(newKey); !errors.Is(err, ErrKeyNotInstalled) {
		t.Fatalf("UseKey before AddKey: %v, want ErrKeyNotInstalled", err)
	}
	if err := a.AddKey(newKey[:16]); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("AddKey of a short key: %v, want ErrInvalidKey", err)
	}
	for _, g := range nodes {
		if err := g.AddKey(newKey); err != nil {
			t.Fatal(err)
		}
	}
	if !keysEqual(a.Keys(), oldKey, newKey) {
		t.Fatal("AddKey changed the primary")
	}
	if err := a.UseKey(newKey); err != nil {
		t.Fatal(err)
	}
	// A encrypts with the new key, B with the old: each reads the other.
	v := mustSetLocal(t, a, Availability{Accepting: true})
	waitFor(t, 5*time.Second, "b sees a's state sent with the new key", func() bool {
		s, ok := seenOf(b.View(), a.cfg.Centre)
		return ok && s.Availability.Version >= v
	})
	if err := b.UseKey(newKey); err != nil {
		t.Fatal(err)
	}
	// The new key is the primary, so DropOldKeys keeps it even unasked.
	for _, g := range nodes {
		if n, err := g.DropOldKeys(); err != nil || n != 1 {
			t.Fatalf("DropOldKeys = %d, %v; want 1 dropped", n, err)
		}
		if !keysEqual(g.Keys(), newKey) {
			t.Fatal("the old key is still installed")
		}
	}
	holdsFor(t, time.Second, "both stay alive after the switch", bothAlive)
	v = mustSetLocal(t, b, Availability{Accepting: false})
	waitFor(t, 5*time.Second, "a sees b's change after the old key is gone", func() bool {
		s, ok := seenOf(a.View(), b.cfg.Centre)
		return ok && s.Availability.Version >= v
	})

	cfg := testConfigFor("stale")
	cfg.Key = oldKey
	stale := startNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := stale.Join(ctx, []string{a.LocalAddr()}); !errors.Is(err, ErrJoinFailed) {
		t.Fatalf("join with the old key: %v, want ErrJoinFailed", err)
	}
}

// DropOldKeys removes from the end and stops at a kept key: keys behind it
// wait for a later call, after the kept key has become the primary.
func TestDropOldKeysStopsAtAKeptKey(t *testing.T) {
	g := startNode(t, testConfigFor("solo"))
	k2, k3 := testKey(2), testKey(3) // testKey(1) is the first primary, k1
	for _, k := range [][]byte{k2, k3} {
		if err := g.AddKey(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.UseKey(k2); err != nil {
		t.Fatal(err)
	}
	// [k2 k1 k3]: k3 is pending and last, so k1 must wait behind it.
	if n, err := g.DropOldKeys(k3); err != nil || n != 0 {
		t.Fatalf("DropOldKeys(k3) = %d, %v; want 0", n, err)
	}
	if err := g.UseKey(k3); err != nil {
		t.Fatal(err)
	}
	// [k3 k2 k1]: both old keys go.
	if n, err := g.DropOldKeys(); err != nil || n != 2 {
		t.Fatalf("DropOldKeys() = %d, %v; want 2", n, err)
	}
	if !keysEqual(g.Keys(), k3) {
		t.Fatalf("keys left: %d", len(g.Keys()))
	}
	// Keys hands out copies.
	g.Keys()[0][0] ^= 0xff
	if !keysEqual(g.Keys(), k3) {
		t.Fatal("changing a returned key changed the keyring")
	}
}

func mustSetLocal(t *testing.T, g *Gossip, a Availability) uint64 {
	t.Helper()
	got, err := g.SetLocal(a)
	if err != nil {
		t.Fatal(err)
	}
	return got.Version
}
