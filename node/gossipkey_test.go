package node

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/overflow"
)

// logSink keeps every centre's log lines (debug and up, memberlist's too) in
// memory, so a test can look for an event or for a leak.
type logSink struct {
	mu   sync.Mutex
	bufs map[string]*bytes.Buffer
}

func newLogSink() *logSink { return &logSink{bufs: map[string]*bytes.Buffer{}} }

type sinkWriter struct {
	s  *logSink
	id string
}

func (w sinkWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	b := w.s.bufs[w.id]
	if b == nil {
		b = &bytes.Buffer{}
		w.s.bufs[w.id] = b
	}
	return b.Write(p)
}

func (s *logSink) logger(id string) *slog.Logger {
	return slog.New(slog.NewTextHandler(sinkWriter{s, id}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (s *logSink) count(id, substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b := s.bufs[id]; b != nil {
		return bytes.Count(b.Bytes(), []byte(substr))
	}
	return 0
}

func (s *logSink) all() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []byte
	for _, b := range s.bufs {
		out = append(out, b.Bytes()...)
	}
	return out
}

// assertNoKey fails if text holds key in any usual spelling.
func assertNoKey(t *testing.T, what string, text, key []byte) {
	t.Helper()
	for form, s := range map[string]string{
		"raw":    string(key),
		"base64": base64.StdEncoding.EncodeToString(key),
		"url64":  base64.RawURLEncoding.EncodeToString(key),
		"hex":    hex.EncodeToString(key),
		"bytes":  fmt.Sprint(key),
	} {
		if bytes.Contains(text, []byte(s)) {
			t.Errorf("%s shows the gossip key (%s)", what, form)
		}
	}
}

// gossipState is how observer's gossip sees centre ("" when unknown).
func gossipState(observer *Node, centre string) string {
	for _, s := range observer.Gossip().View() {
		if s.Centre == centre {
			return s.State
		}
	}
	return ""
}

// allAlive reports whether every pair among ids sees each other alive.
func allAlive(f *federation, ids ...string) bool {
	for _, a := range ids {
		n := f.node(a)
		if n == nil {
			return false
		}
		for _, b := range ids {
			if a != b && gossipState(n, b) != overflow.StateAlive {
				return false
			}
		}
	}
	return true
}

// watchAlive records, until stopped, every moment some centre among ids
// does not see another as alive. A moment of "suspect" (this centre's own
// probe went unanswered for 100 ms) is told apart from "dead": on a busy
// machine running -race tests the first happens without any rotation, while
// a centre that cannot read another's key is declared dead within half a
// second and stays so.
func watchAlive(f *federation, ids ...string) (stop func() (suspect, lost []string)) {
	done := make(chan struct{})
	var suspect, lost []string
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			for _, a := range ids {
				for _, b := range ids {
					if a == b {
						continue
					}
					st := gossipState(f.node(a), b)
					seen := fmt.Sprintf("%s saw %s %s at %s", a, b, st, time.Now().Format("15:04:05.000"))
					switch st {
					case overflow.StateAlive:
					case overflow.StateSuspect:
						suspect = append(suspect, seen)
					default:
						lost = append(lost, seen)
					}
				}
			}
		}
	})
	return func() ([]string, []string) {
		close(done)
		wg.Wait()
		return suspect, lost
	}
}

func keysAre(n *Node, want ...[]byte) bool {
	got := n.Gossip().Keys()
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

func primaryIs(n *Node, key []byte) bool {
	keys := n.Gossip().Keys()
	return len(keys) > 0 && bytes.Equal(keys[0], key)
}

func rotateAt(t *testing.T, n *Node) consensus.GossipKey {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gen, err := n.RotateGossipKey(ctx)
	if err != nil {
		t.Fatalf("rotate at %s: %v", n.Centre(), err)
	}
	// Propose waits for raft's AppliedIndex, which raft advances when it
	// hands an entry to the FSM goroutine, a moment before the FSM applies
	// it: wait for the FSM itself.
	var k consensus.GossipKey
	eventually(t, 5*time.Second, n.Centre()+" applies its rotation", func() bool {
		var ok bool
		k, ok = n.Consensus().GossipKey()
		return ok && k.Generation == gen
	})
	return k
}

func savedKeyIs(t *testing.T, n *Node, k consensus.GossipKey) bool {
	t.Helper()
	fed, err := LoadFederation(n.cfg.DataDir)
	if err != nil {
		t.Fatalf("%s: %v", n.Centre(), err)
	}
	return fed.GossipKeyGeneration == k.Generation && bytes.Equal(fed.GossipKey, k.Key)
}

// Three centres rotate: each installs the new key, encrypts with it and
// drops the old one; they see each other alive the whole time; availability
// still travels; federation.json holds the new key; a replayed rotation is
// refused across the wire; a centre joining afterwards is handed the new
// key; and the key shows in no roster JSON, federation view or log line.
func TestGossipKeyRotationReachesEveryCentre(t *testing.T) {
	logs := newLogSink()
	f := newFederation(t, 3, fedOptions{logger: logs.logger})
	ids := []string{"c1", "c2", "c3"}
	eventually(t, 15*time.Second, "every centre alive everywhere", func() bool { return allAlive(f, ids...) })
	oldKey := f.node("c1").currentFederation().GossipKey

	stopWatch := watchAlive(f, ids...)
	follower := f.follower()
	began := time.Now()
	k := rotateAt(t, follower) // forwarded to the leader
	committed := time.Since(began)
	for _, n := range f.live() {
		eventually(t, 10*time.Second, n.Centre()+" encrypts with the new key", func() bool { return primaryIs(n, k.Key) })
	}
	switched := time.Since(began)
	for _, n := range f.live() {
		eventually(t, 15*time.Second, n.Centre()+" dropped the old key", func() bool { return keysAre(n, k.Key) })
	}
	dropped := time.Since(began)
	suspect, lost := stopWatch()
	t.Logf("rotation began %s: committed after %v, every centre encrypting with it after %v, old key gone everywhere after %v; "+
		"10 ms samples of a pair not alive: %d suspect, %d dead/left",
		began.Format("15:04:05.000"), committed.Round(time.Millisecond), switched.Round(time.Millisecond), dropped.Round(time.Millisecond),
		len(suspect), len(lost))
	if len(suspect) > 0 {
		t.Logf("suspect samples (own probe late; first 5): %s", strings.Join(suspect[:min(len(suspect), 5)], "; "))
	}
	if len(lost) > 0 {
		t.Fatalf("centres lost each other during the rotation: %s", strings.Join(lost[:min(len(lost), 10)], "; "))
	}

	for _, n := range f.live() {
		if !savedKeyIs(t, n, k) {
			t.Errorf("%s: federation.json does not hold generation %d's key", n.Centre(), k.Generation)
		}
		if st := n.GossipKeyStatus(); st != (GossipKeyStatus{Generation: k.Generation, InUse: k.Generation, Installed: 1}) {
			t.Errorf("%s: gossip key status %+v", n.Centre(), st)
		}
	}

	// Availability still travels, now under the new key.
	signIn(t, f.node("c2"), "v-2", "Kari")
	eventually(t, 10*time.Second, "c2's new availability at c1 and c3", func() bool {
		for _, id := range []string{"c1", "c3"} {
			s, ok := seenOf(f.node(id), "c2")
			if !ok || s.Availability.Channels["chat"].Free["nb"] != 1 {
				return false
			}
		}
		return true
	})

	// The same rotation again, through a follower: refused by the leader,
	// the sentinel intact, nothing logged.
	leader := f.leader()
	_, lastBefore, _ := leader.Consensus().LogBounds()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	replay := consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpRotateGossipKey, GossipKey: &k}
	if err := f.follower().Propose(ctx, replay); !errors.Is(err, consensus.ErrStaleGeneration) {
		t.Fatalf("replayed rotation: %v, want ErrStaleGeneration", err)
	}
	if _, lastAfter, _ := leader.Consensus().LogBounds(); lastAfter != lastBefore {
		t.Fatalf("a refused rotation reached the log (%d -> %d)", lastBefore, lastAfter)
	}

	// A centre admitted now is handed the new key by the join stream (the
	// old one would be read by nobody).
	c4 := f.add("c4")
	if !savedKeyIs(t, c4, k) || !keysAre(c4, k.Key) {
		t.Fatal("c4 joined without the current gossip key")
	}
	eventually(t, 15*time.Second, "c4 alive everywhere", func() bool { return allAlive(f, "c1", "c2", "c3", "c4") })

	for _, n := range f.live() {
		b, err := json.Marshal(n.Roster()) // what GET /v1/roster serves
		if err != nil {
			t.Fatal(err)
		}
		assertNoKey(t, n.Centre()+"'s roster JSON", b, k.Key)
		if !bytes.Contains(b, []byte(`"gossip_key_generation":1`)) {
			t.Errorf("%s's roster JSON does not show the generation", n.Centre())
		}
		if b, err = json.Marshal(n.Federation()); err != nil {
			t.Fatal(err)
		}
		assertNoKey(t, n.Centre()+"'s federation view", b, k.Key)
		assertNoKey(t, n.Centre()+"'s roster formatted", fmt.Appendf(nil, "%v %+v %#v", n.Roster(), n.Roster(), n.Roster()), k.Key)
	}
	all := logs.all()
	if !bytes.Contains(all, []byte("installed a new gossip key")) {
		t.Fatal("log capture is not working")
	}
	assertNoKey(t, "the logs", all, k.Key)
	assertNoKey(t, "the logs", all, oldKey)
}

func seenOf(n *Node, centre string) (overflow.Seen, bool) {
	for _, s := range n.Gossip().View() {
		if s.Centre == centre {
			return s, true
		}
	}
	return overflow.Seen{}, false
}

// A centre removed from the roster keeps running with the old key; after a
// rotation the others stop reading it (its packets fail to decrypt) and
// see it dead, and it stays out.
func TestRemovedCentreIsShutOutOfGossipByRotation(t *testing.T) {
	logs := newLogSink()
	f := newFederation(t, 3, fedOptions{logger: logs.logger})
	c1, c2, c3 := f.node("c1"), f.node("c2"), f.node("c3")
	eventually(t, 15*time.Second, "every centre alive everywhere", func() bool { return allAlive(f, "c1", "c2", "c3") })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c1.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpRemoveCentre, ID: "c3"}); err != nil {
		t.Fatal(err)
	}
	// The rotation must not reach c3: wait until it has left the Raft group
	// and the others' libp2p allowlists.
	pid := c3.host.ID()
	eventually(t, 15*time.Second, "c3 out of the Raft group and the allowlists", func() bool {
		for _, n := range []*Node{c1, c2} {
			for _, s := range n.Consensus().Servers() {
				if s == pid.String() {
					return false
				}
			}
			if n.gater.allows(pid) {
				return false
			}
		}
		return true
	})
	// Until the rotation, c3 still gossips: removal alone does not shut it out.
	if gossipState(c1, "c3") != overflow.StateAlive {
		t.Logf("note: c1 already saw c3 as %q before the rotation", gossipState(c1, "c3"))
	}

	began := time.Now()
	k := rotateAt(t, c1)
	for _, n := range []*Node{c1, c2} {
		eventually(t, 15*time.Second, "c3 not alive at "+n.Centre(), func() bool { return gossipState(n, "c3") != overflow.StateAlive })
	}
	notAlive := time.Since(began)
	for _, n := range []*Node{c1, c2} {
		eventually(t, 15*time.Second, n.Centre()+" dropped the old key", func() bool { return keysAre(n, k.Key) })
	}
	dropped := time.Since(began)
	// Refusals are counted, not logged one by one (overflow/DESIGN.md).
	refusedDecrypt := func() uint64 {
		return c1.Gossip().RefusedCount(overflow.RefusedDecrypt) + c2.Gossip().RefusedCount(overflow.RefusedDecrypt)
	}
	mark := refusedDecrypt()
	eventually(t, 15*time.Second, "c3's packets fail to decrypt at c1 or c2", func() bool { return refusedDecrypt() > mark })
	t.Logf("after the rotation began: c3 not alive at c1 and c2 after %v, old key dropped after %v, c3's traffic refused after %v",
		notAlive.Round(time.Millisecond), dropped.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if _, ok := c3.Consensus().GossipKey(); ok {
		t.Fatal("the removed centre learnt the new key")
	}
	// c3 may have slipped back in with the old key while that was still
	// accepted; once the old key is gone everywhere it is marked not alive
	// again (probes fail)...
	for _, n := range []*Node{c1, c2} {
		eventually(t, 15*time.Second, "c3 not alive at "+n.Centre()+" after the old key was dropped", func() bool { return gossipState(n, "c3") != overflow.StateAlive })
	}
	// ...and though it keeps trying (its stale roster still lists c1 and
	// c2; its rejoin loop runs every 5 s), it never gets back in.
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range []*Node{c1, c2} {
			if st := gossipState(n, "c3"); st == overflow.StateAlive {
				t.Fatalf("%s sees the removed centre alive again", n.Centre())
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !allAlive(f, "c1", "c2") {
		t.Fatal("c1 and c2 lost each other")
	}
}

// A centre that was down during a rotation restarts with the old key,
// catches up through Raft, installs the new key and is alive again.
func TestCentreDownDuringRotationCatchesUp(t *testing.T) {
	f := newFederation(t, 3, fedOptions{})
	eventually(t, 15*time.Second, "every centre alive everywhere", func() bool { return allAlive(f, "c1", "c2", "c3") })
	// The leader lets a rotation through with c3 down only if it confirmed
	// c3's release before (see release.go); any survivor may lead.
	waitLevels(t, f, 3)
	f.kill("c3")
	k := rotateAt(t, f.node("c1"))
	for _, id := range []string{"c1", "c2"} {
		n := f.node(id)
		eventually(t, 15*time.Second, id+" dropped the old key", func() bool { return keysAre(n, k.Key) })
	}
	began := time.Now()
	c3 := f.restart("c3")
	eventually(t, 20*time.Second, "c3 installs the new key through Raft", func() bool { return primaryIs(c3, k.Key) })
	installed := time.Since(began)
	eventually(t, 20*time.Second, "c3 alive again at c1 and c2, and they at c3", func() bool { return allAlive(f, "c1", "c2", "c3") })
	t.Logf("restarted c3 encrypting with the new key %v after restart, alive everywhere after %v",
		installed.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	if !savedKeyIs(t, c3, k) {
		t.Fatal("c3's federation.json does not hold the new key")
	}
}
