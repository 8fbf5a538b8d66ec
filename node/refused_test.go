package node

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/swarm"

	"github.com/helpmesh/helpmesh/internal/logsink"
)

// A stranger (a libp2p peer not in the roster) connecting to a centre again
// and again is refused every time; each refusal is counted on the centre's
// registry (helpmesh_p2p_refused_total{reason="not_in_roster"}) and the log
// gets a bounded number of lines. Junk at the centre's gossip port is counted
// on the same registry (helpmesh_gossip_refused_total).
func TestStrangerFloodCountedNotLogged(t *testing.T) {
	const attempts, datagrams = 200, 200
	sink := &logsink.Buffer{}
	f := newFederation(t, 1, fedOptions{logger: func(string) *slog.Logger {
		return slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}})
	c1 := f.node("c1")
	f.leader()
	before := sink.String()

	stranger := bareHost(t, nil)
	target := addrInfo(t, c1)
	sw := stranger.Network().(*swarm.Swarm)
	for i := range attempts {
		// Without this, the stranger's own dial backoff would stop most
		// attempts before they reached the centre.
		sw.Backoff().Clear(target.ID)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = stranger.Connect(ctx, target)
		cancel()
		want := uint64(i + 1)
		eventually(t, 10*time.Second, "c1 counting the stranger's attempt", func() bool {
			return c1.refused.Count(refusedNotInRoster) >= want
		})
		_ = stranger.Network().ClosePeer(target.ID)
	}
	notConnected(t, c1, stranger.ID(), "c1 holding no connection to the stranger")

	udp, err := net.Dial("udp", c1.GossipAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for range datagrams {
		if _, err := udp.Write([]byte("not gossip\nlevel=ERROR msg=FORGED")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "c1 counting the junk datagrams", func() bool {
		return c1.Gossip().RefusedCount("") >= datagrams
	})

	mfs := gather(t, c1.Registry())
	p2p := metricValue(mfs, "helpmesh_p2p_refused_total", map[string]string{"reason": refusedNotInRoster, "centre": "c1"})
	gossip := metricValue(mfs, "helpmesh_gossip_refused_total", map[string]string{"reason": "label", "centre": "c1"})
	flood := strings.TrimPrefix(sink.String(), before)
	var refusalLines []string
	for _, l := range strings.Split(strings.TrimSpace(flood), "\n") {
		if strings.Contains(l, "refused") || strings.Contains(l, stranger.ID().String()) || strings.Contains(l, "from=") {
			refusalLines = append(refusalLines, l)
		}
	}
	t.Logf("%d connection attempts, %d junk datagrams: helpmesh_p2p_refused_total=%v helpmesh_gossip_refused_total{reason=label}=%v; %d lines logged in all (%d bytes), %d about refusals:\n%s",
		attempts, datagrams, p2p, gossip, lineCount(flood), len(flood), len(refusalLines), flood)
	if p2p != attempts {
		t.Errorf("helpmesh_p2p_refused_total = %v, want %d", p2p, attempts)
	}
	if gossip != datagrams {
		t.Errorf("helpmesh_gossip_refused_total{reason=label} = %v, want %d", gossip, datagrams)
	}
	if len(refusalLines) > 4 {
		t.Errorf("%d log lines about refusals, want at most 4 (one each for p2p and gossip, and slack)", len(refusalLines))
	}
	if strings.Contains(flood, "FORGED") {
		t.Errorf("the stranger's text reached the log")
	}
}

func lineCount(s string) int { return strings.Count(s, "\n") }
