package consensus

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"
)

// rotate is a rotation to generation gen with a fresh key of n bytes.
func rotate(gen uint64, n int) Command {
	key := make([]byte, n)
	_, _ = rand.Read(key)
	return Command{Version: CommandVersion, Op: OpRotateGossipKey, GossipKey: &GossipKey{Generation: gen, Key: key}}
}

// keyForms are the ways a key could leak into text.
func keyForms(key []byte) map[string]string {
	return map[string]string{
		"raw":    string(key),
		"base64": base64.StdEncoding.EncodeToString(key),
		"url64":  base64.RawURLEncoding.EncodeToString(key),
		"hex":    hex.EncodeToString(key),
		"bytes":  fmt.Sprint([]byte(key)),
	}
}

func assertNoKey(t *testing.T, what string, text []byte, key []byte) {
	t.Helper()
	for form, s := range keyForms(key) {
		if bytes.Contains(text, []byte(s)) {
			t.Errorf("%s shows the gossip key (%s)", what, form)
		}
	}
}

// Only the next generation is applied; a replayed or skipping rotation is
// refused with ErrStaleGeneration and changes nothing.
func TestRotateGossipKeyTakesOnlyTheNextGeneration(t *testing.T) {
	r := NewRoster()
	first := rotate(1, GossipKeyBytes)
	if err := apply(&r, first); err != nil {
		t.Fatal(err)
	}
	if r.GossipKeyGeneration != 1 {
		t.Fatalf("after the first rotation: generation %d", r.GossipKeyGeneration)
	}
	for _, tc := range []struct {
		name string
		cmd  Command
	}{
		{"replayed", first},
		{"same generation, other key", rotate(1, GossipKeyBytes)},
		{"skipping a generation", rotate(3, GossipKeyBytes)},
	} {
		before := r.Clone()
		err := apply(&r, tc.cmd)
		if !errors.Is(err, ErrStaleGeneration) {
			t.Fatalf("%s: got %v, want ErrStaleGeneration", tc.name, err)
		}
		if !reflect.DeepEqual(before, r) {
			t.Fatalf("%s: a refused rotation changed the roster", tc.name)
		}
	}
	second := rotate(2, GossipKeyBytes)
	// The key is kept beside the roster, by the FSM (see below).
	if err := apply(&r, second); err != nil {
		t.Fatal(err)
	}
	if r.GossipKeyGeneration != 2 {
		t.Fatalf("after the second rotation: generation %d", r.GossipKeyGeneration)
	}
}

// The key is in the FSM, never in the roster's JSON (what GET /v1/roster and
// the roster RPC send), a formatted roster or command, or a log line.
func TestGossipKeyStaysOutOfRosterJSONFormattingAndLogs(t *testing.T) {
	r := NewRoster()
	cmd := rotate(1, GossipKeyBytes)
	key := cmd.GossipKey.Key
	if err := apply(&r, cmd); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	assertNoKey(t, "roster JSON", b, key)
	if !bytes.Contains(b, []byte(`"gossip_key_generation":1`)) {
		t.Errorf("roster JSON does not show the generation: %s", b)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		assertNoKey(t, "roster formatted with "+verb, fmt.Appendf(nil, verb, r), key)
		assertNoKey(t, "command formatted with "+verb, fmt.Appendf(nil, verb, cmd), key)
		assertNoKey(t, "key formatted with "+verb, fmt.Appendf(nil, verb, *cmd.GossipKey), key)
	}
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		slog.New(h).Info("rotation", "key", *cmd.GossipKey, "ptr", cmd.GossipKey, "cmd", cmd)
	}
	assertNoKey(t, "log lines", logs.Bytes(), key)
	if err := apply(&r, cmd); err == nil {
		t.Fatal("replayed rotation applied")
	} else {
		assertNoKey(t, "refusal message", []byte(err.Error()), key)
	}
}

type memSink struct{ bytes.Buffer }

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { return nil }
func (s *memSink) Close() error  { return nil }

// A snapshot carries the key and its generation; an old snapshot without
// them restores as generation 0; a snapshot whose key does not match its
// generation is refused.
func TestSnapshotKeepsTheGossipKey(t *testing.T) {
	cmd := rotate(1, GossipKeyBytes)
	f, snap := applyAndSnapshot(t, cmd)
	g := newFSM(func() {})
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.read(), g.read()) {
		t.Fatal("restored roster differs")
	}
	if g.gossipKey == nil || !bytes.Equal(g.gossipKey.Key, cmd.GossipKey.Key) {
		t.Fatal("restored FSM lost the gossip key")
	}

	old, _ := json.Marshal(struct {
		Centres map[string]Centre `json:"centres"`
	}{map[string]Centre{}})
	h := newFSM(func() {})
	if err := h.Restore(io.NopCloser(bytes.NewReader(old))); err != nil {
		t.Fatalf("snapshot from before rotation existed: %v", err)
	}
	if h.roster.GossipKeyGeneration != 0 || h.gossipKey != nil {
		t.Fatal("old snapshot restored with a gossip key")
	}

	bad := bytes.Replace(snap, []byte(`"gossip_key_generation":1`), []byte(`"gossip_key_generation":2`), 1)
	if err := newFSM(func() {}).Restore(io.NopCloser(bytes.NewReader(bad))); err == nil {
		t.Fatal("snapshot whose key does not match its generation restored")
	}
}

// Through real Raft: a rotation commits and reaches GossipKey; replaying it
// or sending a bad key is refused with its sentinel before the log.
func TestProposeRotationThroughRaft(t *testing.T) {
	c := startOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, ok := c.GossipKey(); ok {
		t.Fatal("a new federation has a rotated key")
	}
	cmd := rotate(1, GossipKeyBytes)
	if err := c.Propose(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	k, ok := c.GossipKey()
	if !ok || k.Generation != 1 || !bytes.Equal(k.Key, cmd.GossipKey.Key) {
		t.Fatalf("after rotation: %v %v", k, ok)
	}
	for _, tc := range []struct {
		name string
		cmd  Command
		want error
	}{
		{"replayed", cmd, ErrStaleGeneration},
		{"stale", rotate(1, GossipKeyBytes), ErrStaleGeneration},
		{"short key", rotate(2, 31), ErrBadCommand},
		{"long key", rotate(2, 33), ErrBadCommand},
	} {
		before := c.Roster()
		_, lastBefore, _ := c.LogBounds()
		err := c.Propose(ctx, tc.cmd)
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if _, lastAfter, _ := c.LogBounds(); lastAfter != lastBefore {
			t.Fatalf("%s: a refused rotation reached the log (%d -> %d)", tc.name, lastBefore, lastAfter)
		}
		if !reflect.DeepEqual(before, c.Roster()) {
			t.Fatalf("%s: a refused rotation changed the roster", tc.name)
		}
	}
	// Raced at apply time (passed the leader's check, then lost): refused by
	// the FSM with the same sentinel.
	b, err := EncodeCommand(rotate(1, GossipKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	f := c.raft.Apply(b, 5*time.Second)
	if err := f.Error(); err != nil {
		t.Fatal(err)
	}
	if res, _ := f.Response().(applyResult); !errors.Is(res.err, ErrStaleGeneration) {
		t.Fatalf("apply-time refusal: got %v, want ErrStaleGeneration", res.err)
	}
	if k2, _ := c.GossipKey(); !bytes.Equal(k2.Key, cmd.GossipKey.Key) {
		t.Fatal("a refused rotation replaced the key")
	}
}

// The sentinel survives the trip from leader to follower.
func TestStaleGenerationCrossesTheWire(t *testing.T) {
	err := fromWire(codeOf(fmt.Errorf("x: %w", ErrStaleGeneration)), "x")
	if !errors.Is(err, ErrStaleGeneration) {
		t.Fatalf("got %v", err)
	}
}
