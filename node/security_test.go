package node

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/internal/wire"
	"github.com/helpmesh/helpmesh/overflow"
)

// The stream protocols a centre serves; "/helpmesh/raft/1" is consensus's.
var centreProtocols = []protocol.ID{"/helpmesh/roster/1", joinProtocol, "/helpmesh/raft/1", releaseProtocol}

// bareHost is a plain libp2p host with its own key, speaking what a centre
// speaks (TCP, Noise) but not admitted anywhere.
func bareHost(t *testing.T, key crypto.PrivKey) host.Host {
	t.Helper()
	if key == nil {
		var err error
		if key, _, err = crypto.GenerateEd25519Key(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	h, err := libp2p.New(
		libp2p.Identity(key),
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatalf("bare libp2p host: %v", err)
	}
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func addrInfo(t *testing.T, n *Node) peer.AddrInfo {
	t.Helper()
	ai, err := peer.AddrInfoFromString(n.P2PAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	return *ai
}

// raftMembers is every server id in n's Raft configuration.
func raftMembers(n *Node) []string {
	st := n.consensus.Status()
	return append(slices.Clone(st.Voters), st.Nonvoters...)
}

func notConnected(t *testing.T, observer *Node, p peer.ID, what string) {
	t.Helper()
	eventually(t, 10*time.Second, what, func() bool {
		return observer.host.Network().Connectedness(p) != network.Connected
	})
}

// assertRosterAndRaft checks that every live centre has exactly the roster
// centres want and that none has a Raft server named absent.
func assertRosterAndRaft(t *testing.T, f *federation, want []string, absent string, absentPeer peer.ID) {
	t.Helper()
	for _, n := range f.live() {
		if got := n.Roster().CentreIDs(); !slices.Equal(got, want) {
			t.Errorf("%s's roster has centres %v, want %v", n.Centre(), got, want)
		}
		if slices.Contains(raftMembers(n), absent) {
			t.Errorf("%s's Raft configuration %v contains %s", n.Centre(), raftMembers(n), absent)
		}
		if slices.Contains(n.consensus.Servers(), absentPeer.String()) {
			t.Errorf("%s's Raft configuration has peer %s", n.Centre(), absentPeer.ShortString())
		}
	}
}

// startWithJoin starts a centre that is not what the roster admitted and
// expects it to fail within a few seconds.
func startWithJoin(t *testing.T, f *federation, id string, through *Node) (peer.ID, error) {
	t.Helper()
	cfg := f.config(id)
	key, err := LoadOrCreateIdentity(filepath.Join(cfg.DataDir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := PeerIDOf(key)
	cfg.Join = through.P2PAddrs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := Start(ctx, cfg)
	if err == nil {
		_ = n.Stop()
	}
	return pid, err
}

// A libp2p connection from a peer id the roster does not list is refused, and
// an un-admitted node, or one that claims an admitted centre's id with another
// key, cannot join: the roster and the Raft group stay as they were.
func TestStrangerCannotConnectOrJoin(t *testing.T) {
	f := newFederation(t, 2, fedOptions{})
	c1 := f.node("c1")
	f.leader()

	t.Run("bare libp2p host", func(t *testing.T) {
		stranger := bareHost(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		connErr := stranger.Connect(ctx, addrInfo(t, c1))
		t.Logf("stranger's Connect: %v", connErr)
		// Whether or not the dial seemed to succeed on the stranger's side,
		// no protocol of the centre may answer it.
		for _, p := range centreProtocols {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			s, err := stranger.NewStream(sctx, c1.host.ID(), p)
			scancel()
			if err == nil {
				_ = s.Reset()
				t.Errorf("stranger opened a %s stream to c1", p)
			}
		}
		notConnected(t, c1, stranger.ID(), "c1 holding no connection to the stranger")
		if len(c1.host.Network().ConnsToPeer(stranger.ID())) != 0 {
			t.Errorf("c1 still has connections to the stranger")
		}
		assertRosterAndRaft(t, f, []string{"c1", "c2"}, "", stranger.ID())
	})

	t.Run("un-admitted node joining", func(t *testing.T) {
		pid, err := startWithJoin(t, f, "c9", c1)
		if err == nil {
			t.Fatal("an un-admitted centre started and joined")
		}
		t.Logf("un-admitted Start: %v", err)
		notConnected(t, c1, pid, "c1 holding no connection to the un-admitted node")
		assertRosterAndRaft(t, f, []string{"c1", "c2"}, "c9", pid)
	})

	t.Run("impostor claiming an admitted centre", func(t *testing.T) {
		admitted := f.config("c3")
		f.admit(c1, "c3", admitted)
		realKey, err := LoadOrCreateIdentity(filepath.Join(admitted.DataDir, IdentityFile))
		if err != nil {
			t.Fatal(err)
		}
		realPID, _ := PeerIDOf(realKey)
		eventually(t, 10*time.Second, "c3 admitted on every centre", func() bool {
			for _, n := range f.live() {
				if _, ok := n.Roster().Centres["c3"]; !ok {
					return false
				}
			}
			return true
		})

		impostor, err := startWithJoin(t, f, "c3", c1)
		if err == nil {
			t.Fatal("a node with another key claiming c3 started and joined")
		}
		t.Logf("impostor Start: %v", err)
		if impostor == realPID {
			t.Fatal("test bug: the impostor has c3's key")
		}
		notConnected(t, c1, impostor, "c1 holding no connection to the impostor")
		assertRosterAndRaft(t, f, []string{"c1", "c2", "c3"}, "c3", impostor)
		for _, n := range f.live() {
			if got := n.Roster().Centres["c3"].PeerID; got != realPID.String() {
				t.Errorf("%s's roster has c3 as peer %s, want the admitted %s", n.Centre(), got, realPID)
			}
		}
	})

	t.Run("admitted peer claiming another centre's id", func(t *testing.T) {
		// c3x's key is admitted, so the gater lets it in; over the join
		// protocol it claims to be c4, admitted with another peer id.
		key3, pid3 := admittedKey(t, f, c1, "c3x")
		_, pid4 := admittedKey(t, f, c1, "c4")
		eventually(t, 10*time.Second, "c1's allowlist admitting c3x", func() bool { return c1.gater.allows(pid3) })
		h := bareHost(t, key3)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Connect(ctx, addrInfo(t, c1)); err != nil {
			t.Fatalf("admitted peer could not connect: %v", err)
		}
		s, err := h.NewStream(ctx, c1.host.ID(), joinProtocol)
		if err != nil {
			t.Fatalf("admitted peer could not open the join protocol: %v", err)
		}
		defer s.Close()
		var resp joinResponse
		if err := wire.Exchange(s, s, joinRequest{Centre: "c4"}, &resp, maxJoinRequest, maxJoinResponse, 10*time.Second); err != nil {
			t.Fatalf("join exchange: %v", err)
		}
		if resp.Error == "" || !strings.Contains(resp.Error, "not admitted") {
			t.Errorf("join as c4 from c3x's peer answered error %q, want a not-admitted refusal", resp.Error)
		}
		if len(resp.Federation.GossipKey) != 0 || resp.Federation.Label != "" || len(resp.Centres) != 0 {
			t.Errorf("refused join still handed out federation secrets or centres: %+v", resp)
		}
		assertRosterAndRaft(t, f, []string{"c1", "c2", "c3", "c3x", "c4"}, "c4", pid4)
		for _, n := range f.live() {
			if slices.Contains(raftMembers(n), "c3x") || slices.Contains(n.consensus.Servers(), pid3.String()) {
				t.Errorf("%s took c3x into the Raft group though it asked as c4", n.Centre())
			}
		}
	})
}

// askAsMember sends h's real requests to n: a join as centre, and a roster
// read. It returns what answered, or "" if nothing did.
func askAsMember(t *testing.T, h host.Host, centre string, n *Node) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var answered []string
	if s, err := h.NewStream(ctx, n.host.ID(), joinProtocol); err == nil {
		var resp joinResponse
		err := wire.Exchange(s, s, joinRequest{Centre: centre}, &resp, maxJoinRequest, maxJoinResponse, 5*time.Second)
		_ = s.Reset()
		if err == nil && (resp.Error == "" || len(resp.Federation.GossipKey) != 0) {
			answered = append(answered, "join answered with the federation secrets")
		}
	}
	if s, err := h.NewStream(ctx, n.host.ID(), "/helpmesh/roster/1"); err == nil {
		var resp map[string]any
		err := wire.Exchange(s, s, map[string]string{"kind": "read"}, &resp, 1<<10, 64<<20, 5*time.Second)
		_ = s.Reset()
		if err == nil {
			answered = append(answered, fmt.Sprintf("roster read answered %v", resp))
		}
	}
	return strings.Join(answered, "; ")
}

// admittedKey admits centre id with a fresh key at via and returns the key.
func admittedKey(t *testing.T, f *federation, via *Node, id string) (crypto.PrivKey, peer.ID) {
	t.Helper()
	cfg := f.config(id)
	f.admit(via, id, cfg)
	key, err := LoadOrCreateIdentity(filepath.Join(cfg.DataDir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := PeerIDOf(key)
	eventually(t, 10*time.Second, id+" admitted on every centre", func() bool {
		for _, n := range f.live() {
			if _, ok := n.Roster().Centres[id]; !ok {
				return false
			}
		}
		return true
	})
	return key, pid
}

// Gossip under the federation's label but another key is refused: the
// intruder never shows up in a centre's view and learns nothing.
func TestWrongGossipKeyRefused(t *testing.T) {
	f := newFederation(t, 2, fedOptions{})
	c1, c2 := f.node("c1"), f.node("c2")
	eventually(t, 10*time.Second, "c1 seeing c2 alive", func() bool { return seesAlive(c1, "c2") })

	fed, err := LoadFederation(c1.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	c2fed, err := LoadFederation(c2.cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if string(c2fed.GossipKey) != string(fed.GossipKey) || c2fed.Label != fed.Label {
		t.Fatal("c2 did not receive c1's federation secrets")
	}
	wrong := make([]byte, 32)
	if _, err := rand.Read(wrong); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	intruder, err := overflow.StartGossip(ctx, overflow.GossipConfig{
		Centre: "intruder", BindAddr: "127.0.0.1:0", Key: wrong, Label: fed.Label, Timing: timing.Test, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = intruder.Stop() })
	if _, err := intruder.SetLocal(overflow.Availability{Centre: "intruder", Accepting: true}); err != nil {
		t.Fatal(err)
	}
	jctx, jcancel := context.WithTimeout(ctx, 5*time.Second)
	n, joinErr := intruder.Join(jctx, []string{c1.GossipAddr()})
	jcancel()
	t.Logf("intruder's Join: %d answered, err %v", n, joinErr)
	if joinErr == nil && n > 0 {
		t.Errorf("c1 answered a join under the wrong key")
	}

	// An absence can only be checked over a window: poll it whole.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range []*Node{c1, c2} {
			for _, s := range n.Gossip().View() {
				if s.Centre == "intruder" {
					t.Fatalf("%s's gossip view lists the intruder: %+v", n.Centre(), s)
				}
			}
		}
		for _, s := range intruder.View() {
			if s.Centre != "intruder" {
				t.Fatalf("intruder learned of %s: %+v", s.Centre, s)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	eventually(t, 5*time.Second, "c1 still seeing c2 alive", func() bool { return seesAlive(c1, "c2") })
	if intruder.Members() != 1 {
		t.Errorf("intruder has %d gossip members, want only itself", intruder.Members())
	}
}

func seesAlive(n *Node, centre string) bool {
	for _, s := range n.Gossip().View() {
		if s.Centre == centre {
			return s.State == overflow.StateAlive
		}
	}
	return false
}

// A centre removed from the roster loses its libp2p connections and its Raft
// seat, and the seat is refilled by a non-voter.
func TestRemovedCentreIsCutOff(t *testing.T) {
	// Two voter seats for three centres, so removing a voter frees a seat
	// the third centre must take.
	f := newFederation(t, 3, fedOptions{maxVoters: 2})
	leader := f.leader()
	eventually(t, 20*time.Second, "two voters and one non-voter", func() bool {
		st := leader.consensus.Status()
		return len(st.Voters) == 2 && len(st.Nonvoters) == 1
	})
	var victim *Node
	for _, id := range leader.consensus.Status().Voters {
		if id != leader.Centre() {
			victim = f.node(id)
		}
	}
	if victim == nil {
		t.Fatal("no non-leader voter")
	}
	victimPeer := victim.host.ID()
	var rest []*Node
	var restIDs []string
	for _, n := range f.live() {
		if n != victim {
			rest = append(rest, n)
			restIDs = append(restIDs, n.Centre())
		}
	}
	t.Logf("leader %s, removing voter %s", leader.Centre(), victim.Centre())
	// While admitted, the same requests are answered, so the check after the
	// removal is not vacuous. (A centre that just joined refuses members
	// other than its join target until its first allowlist refresh, hence
	// the wait.)
	for _, n := range rest {
		eventually(t, 10*time.Second, "admitted "+victim.Centre()+" answered by "+n.Centre(), func() bool {
			answered := askAsMember(t, victim.host, victim.Centre(), n)
			return strings.Contains(answered, "roster read answered") && strings.Contains(answered, "join answered")
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := leader.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpRemoveCentre, ID: victim.Centre()}); err != nil {
		t.Fatalf("remove %s: %v", victim.Centre(), err)
	}

	for _, n := range rest {
		eventually(t, 10*time.Second, n.Centre()+" dropping "+victim.Centre()+" from roster and Raft", func() bool {
			_, inRoster := n.Roster().Centres[victim.Centre()]
			return !inRoster && !slices.Contains(raftMembers(n), victim.Centre()) &&
				!slices.Contains(n.consensus.Servers(), victimPeer.String())
		})
		notConnected(t, n, victimPeer, n.Centre()+" closing its connections to the removed centre")
	}
	want := min(len(rest), consensus.DefaultMaxVoters, 2)
	eventually(t, 20*time.Second, "the freed voter seat refilled", func() bool {
		for _, n := range rest {
			st := n.consensus.Status()
			v := slices.Sorted(slices.Values(st.Voters))
			if len(v) != want || len(st.Nonvoters) != 0 || !slices.Equal(v, restIDs) {
				return false
			}
		}
		return true
	})

	// The removed centre, still running, gets no answer from anyone. (Its
	// peerstore knows their protocols, so libp2p opens streams lazily: only
	// a real request and reply tells whether anyone listened.)
	for _, n := range rest {
		if answered := askAsMember(t, victim.host, victim.Centre(), n); answered != "" {
			t.Errorf("removed centre got an answer from %s: %s", n.Centre(), answered)
		}
		notConnected(t, n, victimPeer, n.Centre()+" refusing the removed centre's redial")
	}
	// Nor does its identity on a fresh host, which negotiates every protocol.
	victimKey, err := LoadOrCreateIdentity(filepath.Join(victim.cfg.DataDir, IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	f.kill(victim.Centre())
	ghost := bareHost(t, victimKey)
	if ghost.ID() != victimPeer {
		t.Fatal("test bug: the fresh host does not carry the removed centre's identity")
	}
	for _, n := range rest {
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		connErr := ghost.Connect(dctx, addrInfo(t, n))
		for _, p := range centreProtocols {
			if s, err := ghost.NewStream(dctx, n.host.ID(), p); err == nil {
				_ = s.Reset()
				t.Errorf("removed centre's identity opened a %s stream to %s (connect: %v)", p, n.Centre(), connErr)
			}
		}
		dcancel()
		notConnected(t, n, victimPeer, n.Centre()+" holding no connection to the removed identity")
	}
	// And the federation goes on without it.
	if err := f.leader().Propose(ctx, putVolunteer("v-after-removal", rest[0].Centre())); err != nil {
		t.Fatalf("write after removal: %v", err)
	}
}
