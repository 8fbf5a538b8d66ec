package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/helpmesh/helpmesh/internal/pbxlab"
)

// latencies collects how long each packet spent inside the bridge.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return "no packets"
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	q := func(f float64) time.Duration { return s[int(f*float64(len(s)-1))] }
	return "n=" + strconv.Itoa(len(s)) + " p50=" + q(0.5).String() + " p99=" + q(0.99).String() + " max=" + s[len(s)-1].String()
}

// cpu is user+system CPU time of this process and, separately, of its
// descendant processes still running (Chromium), from /proc.
func cpu(t *testing.T) (self, children time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	parent := map[int]int{}
	ticks := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		parent[pid], ticks[pid] = ppid, ut+st
	}
	me := os.Getpid()
	for pid, tk := range ticks {
		for p := parent[pid]; p > 1; p = parent[p] {
			if p == me {
				children += time.Duration(tk) * 10 * time.Millisecond // USER_HZ 100
				break
			}
		}
	}
	return self, children
}

// Trial 3: baresip RTP <-> Go bridge <-> pion WebRTC <-> Chromium, PCMU
// passed through with rewritten headers.
func TestBridgeBaresipBrowser(t *testing.T) {
	needLab(t)
	pbxlab.Need(t)
	dir := t.TempDir()
	volWAV := pbxlab.Speech(t, dir, browserSays, 12*time.Second)
	callerWAV := pbxlab.Speech(t, dir, callerSays, 12*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	u := startUAS(t)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "node")
	if err != nil {
		t.Fatal(err)
	}
	var toBrowser, toCaller latencies
	var legUp sync.WaitGroup // set once the INVITE is answered
	legUp.Add(1)
	var upOnce sync.Once
	var upReady bool
	var upMu sync.Mutex
	toSIP := newRewriter()
	c := startConsole(t, volWAV, track, func(p *rtp.Packet) {
		at := time.Now()
		upMu.Lock()
		defer upMu.Unlock()
		if !upReady { // no call yet: the volunteer's audio goes nowhere
			return
		}
		switch os.Getenv("LAB_BRIDGE") {
		case "raw": // pass the browser's header as it is
		case "drop": // a broken bridge: the caller hears nothing
			return
		default:
			toSIP.rewrite(p)
		}
		if err := u.leg.write(p); err == nil {
			toCaller.add(time.Since(at))
		}
	})
	consoleUp := time.Now()
	toWebRTC := newRewriter()
	go u.leg.read(func(p *rtp.Packet, at time.Time) {
		if p.PayloadType != 0 {
			return
		}
		switch os.Getenv("LAB_BRIDGE") {
		case "raw":
		case "drop", "drop-down": // the browser hears nothing
			return
		default:
			toWebRTC.rewrite(p)
		}
		if err := track.WriteRTP(p); err == nil {
			toBrowser.add(time.Since(at))
		}
	})

	caller := pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "caller", Speak: callerWAV})
	if err := caller.Dial(ctx, u.uri("queue")); err != nil {
		t.Fatal(err)
	}
	<-u.offer
	upOnce.Do(func() { upMu.Lock(); upReady = true; upMu.Unlock(); legUp.Done() })
	if e, err := caller.Await(ctx, "CALL_ESTABLISHED", "CALL_CLOSED"); err != nil || e.Type != "CALL_ESTABLISHED" {
		t.Fatalf("call not established: %v %v %v", e, err, caller.EventTypes())
	}
	t.Logf("console ready to call established: %s", time.Since(consoleUp).Round(time.Millisecond))
	if e, err := caller.Await(ctx, "CALL_RTPESTAB", "CALL_CLOSED"); err != nil || e.Type != "CALL_RTPESTAB" {
		for _, e := range caller.Events() {
			t.Logf("caller event %s %q", e.Type, e.Param)
		}
		t.Fatalf("caller got no RTP: %v %v", e.Type, err)
	}
	self0, kids0 := cpu(t)
	talk := 10 * time.Second
	time.Sleep(talk)
	self1, kids1 := cpu(t)
	t.Logf("CPU over %s of call: Go process %s (%.1f%% of one core), Chromium processes %s (%.1f%%)",
		talk, self1-self0, 100*float64(self1-self0)/float64(talk), kids1-kids0, 100*float64(kids1-kids0)/float64(talk))
	if err := caller.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := caller.Await(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	t.Logf("in-process latency caller->browser (UDP read to WriteRTP return): %s", &toBrowser)
	t.Logf("in-process latency browser->caller (ReadRTP return to UDP write return): %s", &toCaller)
	heardWAV := c.heard(t, filepath.Join(dir, "browser-heard.wav"))
	down := pbxlab.MustCorrelate(t, "caller speech vs browser heard", callerWAV, heardWAV)
	up := pbxlab.MustCorrelate(t, "volunteer speech vs caller heard", volWAV, caller.Heard())
	pbxlab.MustCorrelate(t, "mismatch: caller speech vs caller heard", callerWAV, caller.Heard())
	pbxlab.MustCorrelate(t, "mismatch: volunteer speech vs browser heard", volWAV, heardWAV)
	correlateFine(t, callerWAV, heardWAV)
	correlateFine(t, volWAV, caller.Heard())
	correlateFine(t, callerWAV, caller.Heard())
	correlateFine(t, volWAV, heardWAV)
	if up < 0.8 || down < 0.8 {
		t.Errorf("audio did not arrive: up %.3f down %.3f", up, down)
	}
	keep(t, volWAV, callerWAV, heardWAV, caller.Heard())
}
