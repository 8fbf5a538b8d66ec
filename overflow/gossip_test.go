package overflow

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/helpmesh/helpmesh/internal/timing"
)

const testLabel = "helpmesh-test"

func testKey(fill byte) []byte { return bytes.Repeat([]byte{fill}, 32) }

// testLogger discards by default: memberlist logs loudly when nodes are
// killed on purpose, and its goroutines may log after a test has returned,
// which t.Log forbids. Set OVERFLOW_TEST_LOG=1 to see everything on stderr.
func testLogger() *slog.Logger {
	if os.Getenv("OVERFLOW_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testConfigFor(name string) GossipConfig {
	return GossipConfig{
		Centre:   name,
		BindAddr: "127.0.0.1:0",
		Key:      testKey(1),
		Label:    testLabel,
		Logger:   testLogger(),
		Timing:   timing.Test,
	}
}

// startNode starts one node; Cleanup stops it. Stop is idempotent, so tests
// may also stop or crash it themselves.
func startNode(tb testing.TB, cfg GossipConfig) *Gossip {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := StartGossip(ctx, cfg)
	if err != nil {
		tb.Fatalf("start %s: %v", cfg.Centre, err)
	}
	tb.Cleanup(func() { _ = g.Stop() })
	return g
}

// startFederation starts n joined nodes named c00, c01, ... and waits until
// every node sees every other as alive.
func startFederation(tb testing.TB, n int) []*Gossip {
	tb.Helper()
	nodes := make([]*Gossip, n)
	for i := range nodes {
		nodes[i] = startNode(tb, testConfigFor(fmt.Sprintf("c%02d", i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, g := range nodes[1:] {
		if _, err := g.Join(ctx, []string{nodes[0].LocalAddr()}); err != nil {
			tb.Fatalf("join: %v", err)
		}
	}
	waitFor(tb, 10*time.Second, "federation converges", func() bool {
		for _, g := range nodes {
			if countState(g.View(), StateAlive) != n {
				return false
			}
		}
		return true
	})
	return nodes
}

// stopAll stops nodes in parallel; serial stops each wait for a leave
// broadcast and would dominate benchmark wall time.
func stopAll(nodes []*Gossip) {
	var wg sync.WaitGroup
	for _, g := range nodes {
		wg.Go(func() { _ = g.Stop() })
	}
	wg.Wait()
}

func countState(view []Seen, state string) int {
	n := 0
	for _, s := range view {
		if s.State == state {
			n++
		}
	}
	return n
}

func seenOf(view []Seen, centre string) (Seen, bool) {
	for _, s := range view {
		if s.Centre == centre {
			return s, true
		}
	}
	return Seen{}, false
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdsFor fails as soon as cond stops holding within d. Proving that
// something never happens needs some bounded observation window.
func holdsFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			tb.Fatalf("stopped holding: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAvailabilityChangeSeenByOthers(t *testing.T) {
	nodes := startFederation(t, 3)
	pub, err := nodes[1].SetLocal(Availability{
		Accepting: true,
		Channels: map[string]ChannelState{
			"chat": {Free: map[string]int{"en": 3, "pl": 1}, QueueLength: 2, OldestWaitMillis: 4500},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if pub.Centre != "c01" || pub.Version == 0 || pub.UpdatedUnixMilli == 0 {
		t.Fatalf("SetLocal did not stamp: %+v", pub)
	}
	for _, g := range []*Gossip{nodes[0], nodes[2]} {
		waitFor(t, 2*time.Second, "version reaches "+g.cfg.Centre, func() bool {
			s, ok := seenOf(g.View(), "c01")
			return ok && s.Availability.Version == pub.Version
		})
		s, _ := seenOf(g.View(), "c01")
		if s.State != StateAlive || !s.Availability.Accepting ||
			s.Availability.Channels["chat"].Free["pl"] != 1 ||
			s.Availability.Channels["chat"].OldestWaitMillis != 4500 {
			t.Fatalf("%s sees %+v", g.cfg.Centre, s)
		}
		if s.ReceivedAt.IsZero() || s.Age < 0 || s.Addr != nodes[1].LocalAddr() {
			t.Fatalf("%s: bad receipt data %+v (want addr %s)", g.cfg.Centre, s, nodes[1].LocalAddr())
		}
	}

	// A second change replaces the first everywhere.
	pub2, err := nodes[1].SetLocal(Availability{Accepting: false})
	if err != nil {
		t.Fatal(err)
	}
	if pub2.Version <= pub.Version {
		t.Fatalf("version did not increase: %d then %d", pub.Version, pub2.Version)
	}
	for _, g := range []*Gossip{nodes[0], nodes[2]} {
		waitFor(t, 2*time.Second, "second version reaches "+g.cfg.Centre, func() bool {
			s, _ := seenOf(g.View(), "c01")
			return s.Availability.Version == pub2.Version && !s.Availability.Accepting &&
				len(s.Availability.Channels) == 0
		})
	}

	// The view includes self, sorted by centre.
	view := nodes[0].View()
	if len(view) != 3 || view[0].Centre != "c00" || view[1].Centre != "c01" || view[2].Centre != "c02" {
		t.Fatalf("view not complete and sorted: %+v", view)
	}
	if nodes[0].Members() != 3 {
		t.Fatalf("Members() = %d, want 3", nodes[0].Members())
	}
}

// A state too big for one UDP packet travels by direct TCP sends instead.
func TestLargeAvailabilityReachesOthers(t *testing.T) {
	nodes := startFederation(t, 3)
	big := Availability{Channels: map[string]ChannelState{}}
	for _, ch := range []string{"chat", "phone", "sms"} {
		free := map[string]int{}
		for l := range 40 {
			free[fmt.Sprintf("lang-%02d", l)] = l
		}
		big.Channels[ch] = ChannelState{Free: free, Busy: free}
	}
	pub, err := nodes[0].SetLocal(big)
	if err != nil {
		t.Fatal(err)
	}
	wire, _ := EncodeAvailability(pub)
	if len(wire) <= nodes[0].broadcastLimit {
		t.Fatalf("test state is %d bytes, not above the %d-byte broadcast limit", len(wire), nodes[0].broadcastLimit)
	}
	for _, g := range nodes[1:] {
		waitFor(t, 2*time.Second, "large state reaches "+g.cfg.Centre, func() bool {
			s, _ := seenOf(g.View(), "c00")
			return s.Availability.Version == pub.Version &&
				s.Availability.Channels["sms"].Busy["lang-39"] == 39
		})
	}
}

func TestKilledCentreMarkedDead(t *testing.T) {
	nodes := startFederation(t, 3)
	victim, survivors := nodes[2], nodes[:2]
	if _, err := victim.SetLocal(Availability{Accepting: true}); err != nil {
		t.Fatal(err)
	}
	for _, g := range survivors {
		waitFor(t, 2*time.Second, "victim state spreads", func() bool {
			s, _ := seenOf(g.View(), "c02")
			return s.Availability.Version > 0
		})
	}

	// Record every state each survivor passes through, so the test can
	// check the suspect signal as well as the final verdict.
	var mu sync.Mutex
	states := map[string]map[string]bool{}
	done := make(chan struct{})
	var watchers sync.WaitGroup
	for _, g := range survivors {
		states[g.cfg.Centre] = map[string]bool{}
		watchers.Go(func() {
			for {
				select {
				case <-done:
					return
				case <-time.After(2 * time.Millisecond):
				}
				s, _ := seenOf(g.View(), "c02")
				mu.Lock()
				states[g.cfg.Centre][s.State] = true
				mu.Unlock()
			}
		})
	}

	start := time.Now()
	if err := victim.crash(); err != nil {
		t.Fatal(err)
	}
	for _, g := range survivors {
		waitFor(t, 10*time.Second, g.cfg.Centre+" marks c02 dead", func() bool {
			s, _ := seenOf(g.View(), "c02")
			return s.State == StateDead
		})
	}
	close(done)
	watchers.Wait()
	t.Logf("dead at both survivors after %v; states seen: %v", time.Since(start), states)

	// The probing survivor marks suspect before dead. If neither did,
	// memberlist's log text changed and suspectedNode needs updating.
	if !states["c00"][StateSuspect] && !states["c01"][StateSuspect] {
		t.Errorf("no survivor reported c02 as suspect before dead: %v", states)
	}
	for _, g := range survivors {
		s, _ := seenOf(g.View(), "c02")
		if s.Availability.Version == 0 {
			t.Errorf("%s forgot the dead centre's last availability", g.cfg.Centre)
		}
		if g.Members() != 2 {
			t.Errorf("%s Members() = %d, want 2", g.cfg.Centre, g.Members())
		}
	}
}

func TestLeftCentreMarkedLeft(t *testing.T) {
	nodes := startFederation(t, 3)
	if err := nodes[2].Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	for _, g := range nodes[:2] {
		waitFor(t, 2*time.Second, g.cfg.Centre+" marks c02 left", func() bool {
			s, _ := seenOf(g.View(), "c02")
			return s.State == StateLeft
		})
	}
	if s, _ := seenOf(nodes[2].View(), "c02"); s.State != StateLeft {
		t.Errorf("leaver sees itself as %q, want left", s.State)
	}
	if err := nodes[2].Stop(); err != nil {
		t.Fatal(err)
	}
}

// memberlist's dead message can overtake the leave announcement; the late
// announcement must still turn "dead" into "left", and a rejoin must void it.
func TestLateLeaveAnnouncementTurnsDeadIntoLeft(t *testing.T) {
	g := startNode(t, testConfigFor("solo"))
	peer := &memberlist.Node{Name: "peer", Addr: []byte{127, 0, 0, 1}, Port: 9}
	g.setMember(peer, true)
	g.setMember(peer, false)
	if s, _ := seenOf(g.View(), "peer"); s.State != StateDead {
		t.Fatalf("after NotifyLeave without announcement: %q", s.State)
	}
	g.receive(encodeLeave("peer", 5))
	if s, _ := seenOf(g.View(), "peer"); s.State != StateLeft {
		t.Fatalf("after late announcement: %q", s.State)
	}
	g.setMember(peer, true)
	g.setMember(peer, false)
	if s, _ := seenOf(g.View(), "peer"); s.State != StateDead {
		t.Fatalf("crash after rejoin reported as %q, want dead", s.State)
	}
}

func TestWrongKeyRefused(t *testing.T) {
	nodes := startFederation(t, 2)
	target := []string{nodes[0].LocalAddr()}

	for _, tc := range []struct {
		name  string
		key   []byte
		label string
	}{
		{"other key", testKey(2), testLabel},
		{"other label", testKey(1), "another-federation"},
		{"no label", testKey(1), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfigFor("intruder")
			cfg.Key, cfg.Label = tc.key, tc.label
			intruder := startNode(t, cfg)
			if _, err := intruder.SetLocal(Availability{Accepting: true}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			n, err := intruder.Join(ctx, target)
			if err == nil || !errors.Is(err, ErrJoinFailed) {
				t.Fatalf("Join = %d, %v; want an error wrapping ErrJoinFailed", n, err)
			}
			// The intruder could still reach members by UDP; make sure
			// nothing it sends is ever accepted.
			holdsFor(t, 1500*time.Millisecond, "intruder stays out", func() bool {
				for _, g := range nodes {
					if _, ok := seenOf(g.View(), "intruder"); ok {
						return false
					}
				}
				return len(intruder.View()) == 1
			})
		})
	}
}

func TestIncompatibleNodeNotAdmitted(t *testing.T) {
	d := &delegate{}
	ok := &memberlist.Node{Name: "a", Meta: encodeMeta("a")}
	if err := d.NotifyAlive(ok); err != nil {
		t.Fatalf("compatible node refused: %v", err)
	}
	future := &memberlist.Node{Name: "a", Meta: append([]byte{WireVersion + 1}, encodeMeta("a")[1:]...)}
	if err := d.NotifyAlive(future); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("other protocol version: got %v", err)
	}
	liar := &memberlist.Node{Name: "a", Meta: encodeMeta("b")}
	if err := d.NotifyAlive(liar); !errors.Is(err, ErrCentreMismatch) {
		t.Fatalf("meta naming another centre: got %v", err)
	}
}

func TestStartGossipValidatesConfig(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		mutate func(*GossipConfig)
		want   error
	}{
		{"short key", func(c *GossipConfig) { c.Key = testKey(1)[:16] }, ErrInvalidKey},
		{"no key", func(c *GossipConfig) { c.Key = nil }, ErrInvalidKey},
		{"no centre", func(c *GossipConfig) { c.Centre = "" }, ErrInvalidCentre},
		{"bad centre", func(c *GossipConfig) { c.Centre = "a/b" }, ErrInvalidCentre},
		{"bad timing", func(c *GossipConfig) { c.Timing = timing.Profile(99) }, ErrUnknownTiming},
		{"bad bind", func(c *GossipConfig) { c.BindAddr = "127.0.0.1" }, ErrInvalidConfig},
		{"bad port", func(c *GossipConfig) { c.BindAddr = "127.0.0.1:99999" }, ErrInvalidConfig},
		{"bad advertise", func(c *GossipConfig) { c.AdvertiseAddr = "nope" }, ErrInvalidConfig},
		{"long label", func(c *GossipConfig) { c.Label = strings.Repeat("l", 300) }, ErrInvalidConfig},
	} {
		cfg := testConfigFor("x")
		tc.mutate(&cfg)
		if g, err := StartGossip(ctx, cfg); !errors.Is(err, tc.want) {
			if g != nil {
				_ = g.Stop()
			}
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := StartGossip(cancelled, testConfigFor("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: got %v", err)
	}
}

func TestSetLocalRejects(t *testing.T) {
	g := startNode(t, testConfigFor("solo"))
	if _, err := g.SetLocal(Availability{Centre: "other"}); !errors.Is(err, ErrCentreMismatch) {
		t.Errorf("other centre: got %v", err)
	}
	bad := Availability{Channels: map[string]ChannelState{"chat": {QueueLength: -1}}}
	if _, err := g.SetLocal(bad); !errors.Is(err, ErrInvalidAvailability) {
		t.Errorf("negative queue: got %v", err)
	}
	if s, _ := seenOf(g.View(), "solo"); s.Availability.Version != 0 {
		t.Errorf("rejected state was published: %+v", s)
	}
}

// A restarted centre whose clock stepped back would publish versions below
// what peers remember; an echo of the old version must push it past that.
func TestStaleEchoOfSelfBumpsVersion(t *testing.T) {
	g := startNode(t, testConfigFor("solo"))
	pub, err := g.SetLocal(Availability{Accepting: true})
	if err != nil {
		t.Fatal(err)
	}
	echo := pub
	echo.Version = pub.Version + 1_000_000
	echo.Accepting = false
	g.apply(echo, nil)
	s, _ := seenOf(g.View(), "solo")
	if s.Availability.Version <= echo.Version || !s.Availability.Accepting {
		t.Fatalf("after echo v%d, self is %+v; want newer version with own values", echo.Version, s.Availability)
	}
}

func TestOnChangeCalled(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	cfg := testConfigFor("watcher")
	cfg.OnChange = func(centre string) {
		mu.Lock()
		seen[centre]++
		mu.Unlock()
	}
	w := startNode(t, cfg)
	other := startNode(t, testConfigFor("other"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := other.Join(ctx, []string{w.LocalAddr()}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.SetLocal(Availability{Accepting: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "OnChange for other", func() bool {
		s, _ := seenOf(w.View(), "other")
		mu.Lock()
		defer mu.Unlock()
		return seen["other"] > 0 && s.Availability.Version > 0
	})
}

func TestStopIsIdempotentAndFinal(t *testing.T) {
	g := startNode(t, testConfigFor("solo"))
	if err := g.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := g.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := g.SetLocal(Availability{}); !errors.Is(err, ErrStopped) {
		t.Errorf("SetLocal after Stop: %v", err)
	}
	if _, err := g.Join(context.Background(), []string{"127.0.0.1:1"}); !errors.Is(err, ErrStopped) {
		t.Errorf("Join after Stop: %v", err)
	}
	if err := g.Leave(time.Second); !errors.Is(err, ErrStopped) {
		t.Errorf("Leave after Stop: %v", err)
	}
	_ = g.View() // still safe to read
}

func TestJoinHonoursContext(t *testing.T) {
	g := startNode(t, testConfigFor("solo"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := g.Join(ctx, []string{"127.0.0.1:1"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if n, err := g.Join(context.Background(), nil); n != 0 || err != nil {
		t.Fatalf("empty join: %d %v", n, err)
	}
}

type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordHandler) WithGroup(string) slog.Handler      { return h }

func TestLogWriterMapsLevels(t *testing.T) {
	h := &recordHandler{}
	var suspected []string
	w := &logWriter{log: slog.New(h), onSuspect: func(n string) { suspected = append(suspected, n) }}
	for _, line := range []string{
		"[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n",
		"[INFO] memberlist: Suspect c02 has failed, no acks received\n",
		"[WARN] memberlist: Refuting a suspect message (from: c01)\n",
		"[ERR] memberlist: Failed to send gossip to 127.0.0.1:1\n",
		"no prefix at all\n",
	} {
		if n, err := w.Write([]byte(line)); err != nil || n != len(line) {
			t.Fatalf("Write(%q) = %d, %v", line, n, err)
		}
	}
	want := []struct {
		level slog.Level
		msg   string
	}{
		{slog.LevelDebug, "memberlist: Stream connection from=127.0.0.1:1"},
		{slog.LevelInfo, "memberlist: Suspect c02 has failed, no acks received"},
		{slog.LevelWarn, "memberlist: Refuting a suspect message (from: c01)"},
		{slog.LevelError, "memberlist: Failed to send gossip to 127.0.0.1:1"},
		{slog.LevelInfo, "no prefix at all"},
	}
	if len(h.records) != len(want) {
		t.Fatalf("%d records, want %d", len(h.records), len(want))
	}
	for i, r := range h.records {
		if r.Level != want[i].level || r.Message != want[i].msg {
			t.Errorf("record %d = %v %q, want %v %q", i, r.Level, r.Message, want[i].level, want[i].msg)
		}
	}
	if len(suspected) != 1 || suspected[0] != "c02" {
		t.Errorf("suspected = %v, want [c02]", suspected)
	}
}
