package sip

import (
	"slices"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkInviteRedirect measures INVITE -> 302 as the PBX sees it (sipgo's
// client over loopback UDP, the in-test Router answering at once) and
// reports the p50 and p99 latency: the ingress alone. With the hold at
// another centre behind it, beside the chat hand-off, it is
// centre.BenchmarkOverflowToAnotherCentre.
func BenchmarkInviteRedirect(b *testing.B) {
	h := startIngress(b, redirectTo("sip:vol@127.0.0.1:5064"), nil)
	p := newPhone(b, "127.0.0.1")
	lat := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		res := p.do(b, sip.INVITE, "queue-nb", h.in.Addr())
		lat = append(lat, time.Since(start))
		if res.StatusCode != 302 {
			b.Fatalf("INVITE: %d", res.StatusCode)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
