package overflow

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Benchmarks run the Test timing profile on loopback, so their figures are
// about the protocol's round structure, not a real network. For the National
// profile the same mechanisms scale with its intervals:
//
//   - staleness is bounded by GossipInterval: 200 ms per hop instead of 50 ms,
//     so expect roughly 4x the Test figures plus network RTT per hop (a
//     loopback spot check measured 0.2 s for 3 centres, 0.4 s for 10);
//   - dead detection is ~1 ProbeInterval to the first failed probe, plus the
//     rest of that interval for indirect probes, plus the suspicion timeout
//     of 4 * max(1, log10(N)) * 1 s (up to 6x that without confirmations):
//     about 6 s for 3 centres and typically 6-12 s, at worst ~26 s, for 10.
//     The loopback spot check measured 5.4-6.6 s for both sizes. See
//     lanConfig and DESIGN.md.
//
// Run with a fixed count, e.g. -benchtime 20x for staleness and -benchtime 5x
// for dead detection: each dead-detection iteration builds a new federation.

// testGossipInterval mirrors testConfig's GossipInterval.
const testGossipInterval = 50 * time.Millisecond

func BenchmarkGossipStaleness(b *testing.B) {
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprintf("centres=%d", n), func(b *testing.B) {
			nodes := startFederation(b, n)
			b.Cleanup(func() { stopAll(nodes) })
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				// Real changes arrive at random points of the gossip cycle;
				// publishing right after the previous round was seen would
				// phase-lock to the gossip ticker and always wait a full one.
				b.StopTimer()
				time.Sleep(rand.N(testGossipInterval))
				b.StartTimer()
				pub := nodes[i%n]
				start := time.Now()
				a, err := pub.SetLocal(Availability{
					Accepting: i%2 == 0,
					Channels: map[string]ChannelState{
						"chat":  {Free: map[string]int{"en": i % 7, "pl": 1}, QueueLength: i % 5},
						"phone": {Busy: map[string]int{"en": 3}},
					},
				})
				if err != nil {
					b.Fatal(err)
				}
				waitAllSee(b, nodes, pub.cfg.Centre, func(s Seen) bool {
					return s.Availability.Version >= a.Version
				})
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

func BenchmarkDeadCentreDetection(b *testing.B) {
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprintf("centres=%d", n), func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			b.StopTimer()
			for range b.N {
				nodes := startFederation(b, n)
				victim := nodes[n-1]
				b.StartTimer()
				start := time.Now()
				if err := victim.crash(); err != nil {
					b.Fatal(err)
				}
				waitAllSee(b, nodes[:n-1], victim.cfg.Centre, func(s Seen) bool {
					return s.State == StateDead
				})
				lat = append(lat, time.Since(start))
				b.StopTimer()
				stopAll(nodes[:n-1])
			}
			reportPercentiles(b, lat)
		})
	}
}

// waitAllSee polls every node but the subject itself until each one's view
// of centre satisfies ok. The short poll keeps measurement error well under
// the 50 ms gossip interval being measured.
func waitAllSee(b *testing.B, nodes []*Gossip, centre string, ok func(Seen) bool) {
	b.Helper()
	pending := make([]*Gossip, 0, len(nodes))
	for _, g := range nodes {
		if g.cfg.Centre != centre {
			pending = append(pending, g)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(pending) > 0 {
		pending = slices.DeleteFunc(pending, func(g *Gossip) bool {
			s, found := seenOf(g.View(), centre)
			return found && ok(s)
		})
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d nodes still do not see the expected state of %s", len(pending), centre)
		}
		time.Sleep(250 * time.Microsecond)
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(msAt(lat, 50), "p50-ms")
	b.ReportMetric(msAt(lat, 99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// msAt is the nearest-rank percentile of sorted durations, in milliseconds.
func msAt(sorted []time.Duration, p float64) float64 {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return float64(sorted[rank-1].Microseconds()) / 1000
}
