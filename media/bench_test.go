package media

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkBridgedCalls runs n bridged PCMU calls at once (1, 10, 50,
// 100), each with 50 packets a second both ways, for a 5 s window. The
// load — each call's caller socket and its stand-in browser, a pion
// PeerConnection doing the same ICE, DTLS and SRTP work as the bridge's
// own — runs in a child process (TestBridgeLoadHelper, benchload_test.go),
// so this process holds only the engine and its legs. It reports:
//
//   - bridge-cpu-%/call: this process's user+sys CPU (getrusage
//     RUSAGE_SELF) over the window, per call, as % of one core: the
//     bridge's own cost (plus the latency hook's append a packet).
//   - load-cpu-%/call: the same for the child (its own RUSAGE_SELF), for
//     comparison: a browser's and a caller's share of the work.
//   - bridge-p50-µs, bridge-p99-µs: time a packet spends inside the
//     bridge, both directions pooled: from the caller socket's read
//     returning to pion's WriteRTP returning (to the browser), or from the
//     track's read returning to the socket write returning (to the
//     caller); measured through Config.observe. Kernel, pion's receive
//     path before Read returns and the network are not in it.
//   - e2e-c2b-p50/p99-µs, e2e-b2c-p50/p99-µs: one-way time as a user
//     would see it, caller to browser and browser to caller: the child
//     stamps the send time in the payload's first 8 bytes (G.711 passes
//     through untouched) and reads it on arrival (same clock). It
//     includes both processes' kernel, SRTP and scheduling time on a busy
//     machine.
//   - relayed/s: packets the bridge relayed per second in the window
//     (n*100 if nothing is lost).
//   - loss-c2b-%, loss-b2c-%: packets the child sent from the window's
//     start until told to stop but never got (after a drain of up to 1 s).
//
// Calls start spread over one 20 ms period, as independent calls would.
//
// Medians of 3 on a shared 2-core VM (DESIGN.md, "Cost", has the table):
// bridge CPU per call 1.28 % (1 call), 0.84 % (10), 0.45 % (50), 0.34 %
// (100), the load's 2.27, 1.23, 0.57, 0.38 %; in-bridge p50/p99 38/374,
// 19/217, 10/112, 8/150 µs; end-to-end p50 caller->browser 252, 158,
// 224, 519 µs (browser->caller 186, 111, 203, 508 µs), p99 1.2-3.6 ms up
// to 50 calls and 42-43 ms at 100 (bursts of the shared machine's
// contention, 2-5x apart between runs); no loss.
//
// Run: go test -run '^$' -bench BenchmarkBridgedCalls -benchtime=1x -count=3 ./media/
func BenchmarkBridgedCalls(b *testing.B) {
	const span = 5 * time.Second
	for _, n := range []int{1, 10, 50, 100} {
		b.Run(fmt.Sprintf("calls=%d", n), func(b *testing.B) { benchBridged(b, n, span) })
	}
}

func benchBridged(b *testing.B, n int, span time.Duration) {
	var mu sync.Mutex
	var recording bool
	lat := make([]time.Duration, 0, int(float64(n*100)*span.Seconds()*1.2))
	e := newTestEngine(b, func(_ bool, d time.Duration) {
		mu.Lock()
		if recording {
			lat = append(lat, d)
		}
		mu.Unlock()
	})
	load := startLoad(b)
	ctx := context.Background()
	for range n {
		r := load.do(b, loadMsg{Op: "new"})
		remote, err := netip.ParseAddrPort(r.Caller)
		if err != nil {
			load.fail(b, "new", err)
		}
		leg, err := e.Open(ctx, Offer{Remote: remote, Codec: PCMU})
		if err != nil {
			load.fail(b, "open", err)
		}
		bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		answer, err := leg.Bridge(bctx, r.SDP)
		cancel()
		if err != nil {
			load.fail(b, "bridge", err)
		}
		load.do(b, loadMsg{Op: "answer", ID: r.ID, Leg: leg.Local().String(), SDP: answer})
	}
	load.do(b, loadMsg{Op: "start"})
	// Let the streams settle (first packets, OnTrack, RTCP) before
	// measuring.
	time.Sleep(time.Second)
	b.ResetTimer()
	for range b.N {
		var r0, r1 syscall.Rusage
		load.do(b, loadMsg{Op: "mark"})
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
		rep := load.do(b, loadMsg{Op: "report"}).Report
		if rep == nil {
			load.fail(b, "report", fmt.Errorf("no report"))
		}
		slices.Sort(got)
		b.ReportMetric(100*(cpuTime(r1)-cpuTime(r0)).Seconds()/wall.Seconds()/float64(n), "bridge-cpu-%/call")
		b.ReportMetric(100*rep.CPU.Seconds()/rep.Wall.Seconds()/float64(n), "load-cpu-%/call")
		if len(got) > 0 {
			b.ReportMetric(micros(got[len(got)/2]), "bridge-p50-µs")
			b.ReportMetric(micros(got[len(got)*99/100]), "bridge-p99-µs")
		}
		b.ReportMetric(micros(rep.C2B.P50), "e2e-c2b-p50-µs")
		b.ReportMetric(micros(rep.C2B.P99), "e2e-c2b-p99-µs")
		b.ReportMetric(micros(rep.B2C.P50), "e2e-b2c-p50-µs")
		b.ReportMetric(micros(rep.B2C.P99), "e2e-b2c-p99-µs")
		b.ReportMetric(float64(len(got))/wall.Seconds(), "relayed/s")
	}
	b.StopTimer()
	fin := load.do(b, loadMsg{Op: "stop"}).Report
	if fin == nil || fin.SentC2B == 0 || fin.SentB2C == 0 {
		load.fail(b, "stop", fmt.Errorf("nothing sent"))
	}
	b.ReportMetric(100*float64(fin.SentC2B-fin.GotC2B)/float64(fin.SentC2B), "loss-c2b-%")
	b.ReportMetric(100*float64(fin.SentB2C-fin.GotB2C)/float64(fin.SentB2C), "loss-b2c-%")
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// loadProc is the benchmark's child process (TestBridgeLoadHelper).
type loadProc struct {
	cmd     *exec.Cmd
	in      io.WriteCloser
	enc     *json.Encoder
	replies chan loadMsg // closed when the child's stdout ends
	stderr  bytes.Buffer // read only after Wait
	once    sync.Once
}

// startLoad re-executes the test binary as the load process; it ends
// when the benchmark does (b.Cleanup closes its stdin and waits).
func startLoad(b *testing.B) *loadProc {
	b.Helper()
	p := &loadProc{replies: make(chan loadMsg)}
	p.cmd = exec.Command(os.Args[0], "-test.run=^TestBridgeLoadHelper$", "-test.count=1")
	p.cmd.Env = append(os.Environ(), loadEnv+"=1")
	p.cmd.Stderr = &p.stderr
	in, err := p.cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start load process: %v", err)
	}
	p.in, p.enc = in, json.NewEncoder(in)
	go func() {
		defer close(p.replies)
		dec := json.NewDecoder(out)
		for {
			var m loadMsg
			// The test binary's own "PASS" ends the JSON.
			if err := dec.Decode(&m); err != nil {
				_, _ = io.Copy(io.Discard, out)
				return
			}
			p.replies <- m
		}
	}()
	b.Cleanup(p.end)
	return p
}

// do sends m and waits for the child's reply.
func (p *loadProc) do(b *testing.B, m loadMsg) loadMsg {
	b.Helper()
	if err := p.enc.Encode(m); err != nil {
		p.fail(b, m.Op, err)
	}
	select {
	case r, ok := <-p.replies:
		if !ok {
			p.fail(b, m.Op, fmt.Errorf("load process ended"))
		}
		if r.Err != "" {
			p.fail(b, m.Op, fmt.Errorf("%s", r.Err))
		}
		return r
	case <-time.After(30 * time.Second):
		p.fail(b, m.Op, fmt.Errorf("no reply within 30 s"))
	}
	panic("unreachable")
}

func (p *loadProc) fail(b *testing.B, op string, err error) {
	b.Helper()
	_ = p.cmd.Process.Kill()
	p.end()
	tail := p.stderr.Bytes()
	if len(tail) > 4096 {
		tail = tail[len(tail)-4096:]
	}
	b.Fatalf("load %s: %v\nload process stderr:\n%s", op, err, tail)
}

// end closes the child's stdin (it tears its calls down and exits) and
// waits for it, killing it after 10 s.
func (p *loadProc) end() {
	p.once.Do(func() {
		_ = p.in.Close()
		kill := time.AfterFunc(10*time.Second, func() { _ = p.cmd.Process.Kill() })
		for range p.replies {
		}
		_ = p.cmd.Wait()
		kill.Stop()
	})
}
