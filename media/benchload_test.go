package media

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// The load of BenchmarkBridgedCalls runs in a process of its own, so the
// benchmark's getrusage(RUSAGE_SELF) is the bridge's CPU alone: this is
// that process. The benchmark re-executes the test binary with
// -test.run=^TestBridgeLoadHelper$ and loadEnv set, and the two talk in
// JSON lines (loadMsg) over the child's stdin and stdout:
//
//	parent -> child           child -> parent
//	new                       id, caller address, browser's offer
//	(parent: Open with the caller address, Bridge the offer)
//	answer id, leg, SDP       {} once the browser is connected
//	start                     {} (every call sending, 50 pps both ways)
//	mark                      {} (window opened: CPU and latency from here)
//	report                    report: CPU, wall, one-way latencies
//	stop                      report: final packet counts since mark (loss)
//
// Then the parent closes stdin and the child tears its calls down.
const loadEnv = "HELPMESH_MEDIA_BENCH_LOAD"

// loadMsg is one line either way between the benchmark and its load.
type loadMsg struct {
	Op     string      `json:"op,omitempty"`
	ID     int         `json:"id,omitempty"`
	Caller string      `json:"caller,omitempty"` // the stand-in caller's RTP address
	Leg    string      `json:"leg,omitempty"`    // the bridge's leg address for that caller
	SDP    string      `json:"sdp,omitempty"`    // the browser's offer, or the bridge's answer
	Err    string      `json:"err,omitempty"`
	Report *loadReport `json:"report,omitempty"`
}

// loadReport is what the load measured. CPU, Wall and the latencies cover
// mark to report; the counts are of packets sent from the first mark on (by their
// stamp, so none in flight at mark is miscounted), final after stop: the
// second before mark lets the calls' first packets settle, which a call
// started at once after connecting can lose (its sender not yet bound).
type loadReport struct {
	CPU, Wall time.Duration
	// C2B is caller socket send to browser track read (through the
	// bridge), B2C browser track write to caller socket read: one-way,
	// stamped in the payload with this process's clock.
	C2B, B2C        latency
	SentC2B, GotC2B int64
	SentB2C, GotB2C int64
	Calls           int
}

type latency struct {
	P50, P99 time.Duration
	N        int
}

func percentiles(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	slices.Sort(d)
	return latency{P50: d[len(d)/2], P99: d[len(d)*99/100], N: len(d)}
}

// TestBridgeLoadHelper is BenchmarkBridgedCalls's load process; it skips
// unless the benchmark started it.
func TestBridgeLoadHelper(t *testing.T) {
	if os.Getenv(loadEnv) != "1" {
		t.Skip("the load process of BenchmarkBridgedCalls: runs only when the benchmark starts it")
	}
	runLoad(t, os.Stdin, os.Stdout)
}

// loadCall is one stand-in call: the caller's UDP socket and the
// volunteer's pion "browser".
type loadCall struct {
	caller *net.UDPConn
	b      *browser
	leg    netip.AddrPort
	rec    *atomic.Bool  // the window is open: keep latencies
	from   *atomic.Int64 // count only packets stamped from then on (unix ns)

	sentC2B, gotC2B, sentB2C, gotB2C atomic.Int64

	mu       sync.Mutex
	c2b, b2c []time.Duration
}

func runLoad(t *testing.T, in io.Reader, out io.Writer) {
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	var (
		calls    []*loadCall
		rec      atomic.Bool
		from     atomic.Int64
		readers  sync.WaitGroup // caller sockets' readers
		senders  sync.WaitGroup
		stop     = make(chan struct{})
		stopped  bool
		r0       syscall.Rusage
		t0       time.Time
		finished loadReport
	)
	from.Store(math.MaxInt64)
	defer func() {
		if !stopped {
			close(stop)
		}
		senders.Wait()
		for _, c := range calls {
			_ = c.caller.Close()
		}
		readers.Wait()
	}()
	counts := func(r *loadReport) {
		r.Calls = len(calls)
		for _, c := range calls {
			r.SentC2B += c.sentC2B.Load()
			r.GotC2B += c.gotC2B.Load()
			r.SentB2C += c.sentB2C.Load()
			r.GotB2C += c.gotB2C.Load()
		}
	}
	for {
		var m loadMsg
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			t.Fatalf("load: read request: %v", err)
		}
		var reply loadMsg
		switch m.Op {
		case "new":
			c := &loadCall{caller: udpEnd(t), rec: &rec, from: &from}
			c.b = newBrowserOn(t, []Codec{PCMU, PCMA}, PCMU, nil, func(p *rtp.Packet) { c.arrived(true, p.Payload) })
			readers.Add(1)
			go func() { defer readers.Done(); c.readCaller() }()
			calls = append(calls, c)
			reply = loadMsg{ID: len(calls) - 1, Caller: addrOf(c.caller).String(), SDP: c.b.offer}
		case "answer":
			if m.ID < 0 || m.ID >= len(calls) {
				reply.Err = "answer: no such call"
				break
			}
			c := calls[m.ID]
			leg, err := netip.ParseAddrPort(m.Leg)
			if err != nil {
				reply.Err = "answer: leg address: " + err.Error()
				break
			}
			c.leg = leg
			c.b.accept(t, m.SDP)
			select {
			case <-c.b.connected:
			case <-time.After(10 * time.Second):
				reply.Err = "answer: browser not connected within 10 s"
			}
		case "start":
			// Calls start spread over one 20 ms period, as independent
			// calls are, not all in one burst.
			for i, c := range calls {
				phase := time.Duration(i) * 20 * time.Millisecond / time.Duration(len(calls))
				senders.Add(1)
				go func() { defer senders.Done(); c.send(phase, stop) }()
			}
		case "mark":
			for _, c := range calls {
				c.mu.Lock()
				c.c2b, c.b2c = c.c2b[:0], c.b2c[:0]
				c.mu.Unlock()
			}
			// Counting starts at the first mark (from is MaxInt64 until
			// then): the counts need no reset that could race a packet.
			if from.Load() == math.MaxInt64 {
				from.Store(time.Now().UnixNano())
			}
			rec.Store(true)
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
			t0 = time.Now()
		case "report":
			var r1 syscall.Rusage
			_ = syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
			wall := time.Since(t0)
			rec.Store(false)
			var c2b, b2c []time.Duration
			for _, c := range calls {
				c.mu.Lock()
				c2b, b2c = append(c2b, c.c2b...), append(b2c, c.b2c...)
				c.mu.Unlock()
			}
			r := &loadReport{CPU: cpuTime(r1) - cpuTime(r0), Wall: wall, C2B: percentiles(c2b), B2C: percentiles(b2c)}
			counts(r)
			reply.Report = r
		case "stop":
			if !stopped {
				stopped = true
				close(stop)
				senders.Wait()
				// Whatever is still on its way arrives within
				// milliseconds; wait until it has, or a second.
				deadline := time.Now().Add(time.Second)
				for {
					finished = loadReport{}
					counts(&finished)
					if finished.GotC2B >= finished.SentC2B && finished.GotB2C >= finished.SentB2C || time.Now().After(deadline) {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			reply.Report = &finished
		default:
			reply.Err = "unknown op " + m.Op
		}
		if err := enc.Encode(reply); err != nil {
			t.Fatalf("load: write reply: %v", err)
		}
	}
}

func cpuTime(r syscall.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// arrived counts a packet and, in the window, keeps its one-way time from
// the send stamp in its first 8 payload bytes.
func (c *loadCall) arrived(toBrowser bool, payload []byte) {
	now := time.Now().UnixNano()
	if len(payload) < 8 {
		return
	}
	sent := int64(binary.BigEndian.Uint64(payload))
	if sent < c.from.Load() {
		return
	}
	d := time.Duration(now - sent)
	if toBrowser {
		c.gotC2B.Add(1)
	} else {
		c.gotB2C.Add(1)
	}
	if !c.rec.Load() {
		return
	}
	c.mu.Lock()
	if toBrowser {
		c.c2b = append(c.c2b, d)
	} else {
		c.b2c = append(c.b2c, d)
	}
	c.mu.Unlock()
}

// readCaller reads what the bridge sends the caller until the socket
// closes.
func (c *loadCall) readCaller() {
	buf := make([]byte, 1500)
	var p rtp.Packet
	for {
		n, _, err := c.caller.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if p.Unmarshal(buf[:n]) == nil {
			c.arrived(false, p.Payload)
		}
	}
}

// send sends a caller packet to the leg and a browser packet on the track
// every 20 ms, after phase, until stop: PCMU, 160-byte payloads whose
// first 8 bytes are the send time (unix ns), which the bridge passes
// through untouched. Browser packets carry a header extension, as
// Chromium's do, which the bridge must strip.
func (c *loadCall) send(phase time.Duration, stop <-chan struct{}) {
	select {
	case <-time.After(phase):
	case <-stop:
		return
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	fromCaller := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: PCMU.PayloadType,
		SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32(), SSRC: rand.Uint32()},
		Payload: make([]byte, 160)}
	fromBrowser := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: PCMU.PayloadType,
		SequenceNumber: uint16(rand.Uint32()), Timestamp: rand.Uint32()}, Payload: make([]byte, 160)}
	_ = fromBrowser.Header.SetExtension(1, []byte{0x5a})
	for i := range fromCaller.Payload {
		fromCaller.Payload[i], fromBrowser.Payload[i] = 0xFF, 0xFF // µ-law silence
	}
	buf := make([]byte, 1500)
	for {
		at := time.Now().UnixNano()
		binary.BigEndian.PutUint64(fromCaller.Payload, uint64(at))
		if n, err := fromCaller.MarshalTo(buf); err == nil {
			if _, err := c.caller.WriteToUDPAddrPort(buf[:n], c.leg); err == nil && at >= c.from.Load() {
				c.sentC2B.Add(1)
			}
		}
		at = time.Now().UnixNano()
		binary.BigEndian.PutUint64(fromBrowser.Payload, uint64(at))
		if err := c.b.track.WriteRTP(&fromBrowser); err == nil && at >= c.from.Load() {
			c.sentB2C.Add(1)
		}
		fromCaller.SequenceNumber++
		fromCaller.Timestamp += 160
		fromBrowser.SequenceNumber++
		fromBrowser.Timestamp += 160
		select {
		case <-tick.C:
		case <-stop:
			return
		}
	}
}
