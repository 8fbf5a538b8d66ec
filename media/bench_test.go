package media

import (
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBridgedCalls runs n bridged PCMU calls at once, each with 50
// packets a second both ways (a caller socket and a pion "browser" in this
// process), for a fixed span, and reports:
//
//   - cpu-%/call: the process's user+sys CPU (getrusage) over the span,
//     per call, as % of one core. It includes the stand-ins: each call's
//     test browser is a second pion PeerConnection doing the same SRTP
//     and ICE work as the bridge's, plus the caller socket's sends and
//     reads, so the bridge alone costs roughly half of this.
//   - p50-µs, p99-µs: time a packet spends inside the bridge, both
//     directions pooled: from the caller socket's read returning to
//     pion's WriteRTP returning (to the browser), or from the track's
//     read returning to the socket write returning (to the caller);
//     measured in the bridge through Config.observe. Time in the kernel,
//     in pion's receive path before Read returns, and in the network is
//     not in it.
//   - relayed/s: packets the bridge relayed per second (n*100 if nothing
//     is lost).
//
// Run: go test -run '^$' -bench BenchmarkBridgedCalls -benchtime=1x -count=3 ./media/
func BenchmarkBridgedCalls(b *testing.B) {
	const span = 5 * time.Second
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("calls=%d", n), func(b *testing.B) {
			var mu sync.Mutex
			var recording bool
			var lat []time.Duration
			e := newTestEngine(b, func(_ bool, d time.Duration) {
				mu.Lock()
				if recording {
					lat = append(lat, d)
				}
				mu.Unlock()
			})
			calls := make([]call, n)
			for i := range calls {
				calls[i] = bridged(b, e, PCMU)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for _, c := range calls {
				wg.Add(4)
				go func() { defer wg.Done(); sendCaller(b, c, nil, PCMU, stop) }()
				go func() { defer wg.Done(); sendBrowser(b, c.browser, PCMU, stop) }()
				go func() {
					defer wg.Done()
					for {
						select {
						case <-c.browser.got:
						case <-stop:
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					buf := make([]byte, 1500)
					for {
						_ = c.caller.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
						if _, _, err := c.caller.ReadFromUDPAddrPort(buf); err != nil {
							select {
							case <-stop:
								return
							default:
							}
						}
					}
				}()
			}
			// Let the streams settle (first packets, RTCP) before measuring.
			time.Sleep(500 * time.Millisecond)
			b.ResetTimer()
			for range b.N {
				var r0, r1 syscall.Rusage
				mu.Lock()
				recording = true
				mu.Unlock()
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
				t0 := time.Now()
				time.Sleep(span)
				_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
				wall := time.Since(t0)
				mu.Lock()
				recording = false
				got := slices.Clone(lat)
				lat = lat[:0]
				mu.Unlock()
				cpu := time.Duration(r1.Utime.Nano()+r1.Stime.Nano()-r0.Utime.Nano()-r0.Stime.Nano()) * time.Nanosecond
				slices.Sort(got)
				b.ReportMetric(100*cpu.Seconds()/wall.Seconds()/float64(n), "cpu-%/call")
				if len(got) > 0 {
					b.ReportMetric(float64(got[len(got)/2].Microseconds()), "p50-µs")
					b.ReportMetric(float64(got[len(got)*99/100].Microseconds()), "p99-µs")
				}
				b.ReportMetric(float64(len(got))/wall.Seconds(), "relayed/s")
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
		})
	}
}
