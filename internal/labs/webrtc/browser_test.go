package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/helpmesh/helpmesh/internal/pbxlab"
)

func needLab(t *testing.T) {
	t.Helper()
	if os.Getenv("HELPMESH_WEBRTC_LAB") != "1" {
		t.Skip("lab trial: run with HELPMESH_WEBRTC_LAB=1 (docs/dev/webrtc-lab.md)")
	}
}

const (
	browserSays = "The volunteer answers the phone and asks how the caller is feeling today, then listens carefully."
	nodeSays    = "Seven boats sailed north across the cold grey water, and the fishermen sang loudly all night."
)

// startBrowser starts headless Chromium with fake media from wav.
func startBrowser(t *testing.T, wav string) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("no chromium")
	}
	flags := map[string]any{
		"use-fake-device-for-media-stream":  true,
		"use-fake-ui-for-media-stream":      true,
		"use-file-for-fake-audio-capture":   wav + "%noloop",
		"allow-loopback-in-peer-connection": true,
		"autoplay-policy":                   "no-user-gesture-required",
		// replaces chromedp's own disable-features list, so repeat it
		"disable-features": "site-per-process,Translate,BlinkGenPropertyTrees,WebRtcHideLocalIpsWithMdns",
	}
	// LAB_DROP_FLAG=name leaves one flag out (the notebook's ablations).
	if drop := os.Getenv("LAB_DROP_FLAG"); drop != "" {
		if _, ok := flags[drop]; !ok {
			t.Fatalf("no flag %s", drop)
		}
		delete(flags, drop)
		if drop == "disable-features" {
			flags[drop] = "site-per-process,Translate,BlinkGenPropertyTrees"
		}
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.Flag("headless", true),
	)
	for k, v := range flags {
		opts = append(opts, chromedp.Flag(k, v))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// browserHeard reads back the page's capture of the remote track as 8 kHz PCM.
func browserHeard(t *testing.T, ctx context.Context) ([]int16, int) {
	t.Helper()
	var b64 string
	var rate int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`samples()`, &b64), chromedp.Evaluate(`window.rate`, &rate)); err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	f := make([]float32, len(raw)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	if rate == 0 {
		t.Fatal("page captured nothing")
	}
	return decimate(f, rate), rate
}

func rtpmaps(sdp string) []string {
	return regexp.MustCompile(`a=rtpmap:[^\r\n]+`).FindAllString(sdp, -1)
}

// console is the volunteer's side: a browser tab whose page holds a
// PeerConnection to a pion peer in this process.
type console struct {
	tab       context.Context
	pc        *webrtc.PeerConnection
	connected chan struct{}
}

// startConsole starts Chromium speaking speakWAV, serves the page, and
// connects it to a pion peer that sends local and hands each RTP packet
// from the browser to onRTP (on pion's reading goroutine).
func startConsole(t *testing.T, speakWAV string, local webrtc.TrackLocal, onRTP func(*rtp.Packet)) *console {
	t.Helper()
	api, err := newAPI()
	if err != nil {
		t.Fatal(err)
	}
	c := &console{connected: make(chan struct{})}
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/offer" {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(page))
			return
		}
		var offer webrtc.SessionDescription
		if err := json.NewDecoder(r.Body).Decode(&offer); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		t.Logf("browser offer codecs: %q", rtpmaps(offer.SDP))
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		c.pc = pc
		sender, err := pc.AddTrack(local)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		go func() { // RTCP from the browser: read it, or pion's buffers fill
			buf := make([]byte, 1500)
			for {
				if _, _, err := sender.Read(buf); err != nil {
					return
				}
			}
		}()
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			t.Logf("pion got track: %s pt=%d", tr.Codec().MimeType, tr.PayloadType())
			for first := true; ; first = false {
				p, _, err := tr.ReadRTP()
				if err != nil {
					return
				}
				if first {
					t.Logf("first browser packet: pt=%d marker=%v payload=%d bytes, extension profile %#x ids %v, csrc %d",
						p.PayloadType, p.Marker, len(p.Payload), p.ExtensionProfile, p.GetExtensionIDs(), len(p.CSRC))
				}
				onRTP(p)
			}
		})
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			t.Logf("pion connection state: %s", s)
			if s == webrtc.PeerConnectionStateConnected {
				once.Do(func() { close(c.connected) })
			}
		})
		ans, err := answer(r.Context(), pc, offer)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		t.Logf("pion answer codecs: %q", rtpmaps(ans.SDP))
		t.Logf("extmaps: offer %q answer %q", regexp.MustCompile(`a=extmap:[^\r\n]+`).FindAllString(offer.SDP, -1), regexp.MustCompile(`a=extmap:[^\r\n]+`).FindAllString(ans.SDP, -1))
		t.Logf("pion answer candidates: %q", regexp.MustCompile(`a=candidate:[^\r\n]+`).FindAllString(ans.SDP, -1))
		_ = json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		if c.pc != nil {
			_ = c.pc.Close()
		}
	})

	t0 := time.Now()
	c.tab = startBrowser(t, speakWAV)
	t.Logf("chromium started in %s", time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	var localSDP string
	if err := chromedp.Run(c.tab, chromedp.Navigate(srv.URL), chromedp.Evaluate(`start("muted", "`+os.Getenv("LAB_CONSTRAINTS")+`")`, &localSDP, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	})); err != nil {
		t.Fatal(err)
	}
	t.Logf("browser candidates: %q", regexp.MustCompile(`a=candidate:[^\r\n]+`).FindAllString(localSDP, -1))
	var settings map[string]any
	_ = chromedp.Run(c.tab, chromedp.Evaluate(`window.settings`, &settings))
	t.Logf("browser track settings: %v", settings)
	select {
	case <-c.connected:
		t.Logf("page load to pion connected: %s", time.Since(t0).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("pion peer not connected after 20 s")
	}
	return c
}

// heard writes what the page captured as an 8 kHz WAV.
func (c *console) heard(t *testing.T, path string) string {
	t.Helper()
	var plog []string
	_ = chromedp.Run(c.tab, chromedp.Evaluate(`window.log`, &plog))
	t.Logf("page log: %q", plog)
	var rates map[string]int
	_ = chromedp.Run(c.tab, chromedp.Evaluate(`window.rates`, &rates))
	t.Logf("page: AudioData chunks by sample rate: %v", rates)
	var stats map[string]any
	if err := chromedp.Run(c.tab, chromedp.Evaluate(`inbound()`, &stats, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	})); err != nil {
		t.Logf("inbound stats: %v", err)
	}
	t.Logf("page: inbound-rtp: %v", stats)
	var gaps map[string]any
	_ = chromedp.Run(c.tab, chromedp.Evaluate(`window.gaps`, &gaps))
	t.Logf("page: AudioData timestamp gaps: n=%v total=%vµs max=%vµs", gaps["n"], gaps["us"], gaps["maxUs"])
	pcm, rate := browserHeard(t, c.tab)
	t.Logf("browser captured %d samples at 8 kHz (track rate %d Hz)", len(pcm), rate)
	if err := writeWAV(path, pcm, 8000); err != nil {
		t.Fatal(err)
	}
	return path
}

// Trial 1: Chromium <-> pion in one process, PCMU both ways.
func TestBrowserPionPCMU(t *testing.T) {
	needLab(t)
	dir := t.TempDir()
	aWAV := pbxlab.Speech(t, dir, browserSays, 8*time.Second)
	bWAV := pbxlab.Speech(t, dir, nodeSays, 8*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var mu sync.Mutex
	rec := &pcmuRecorder{}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}, "audio", "node")
	if err != nil {
		t.Fatal(err)
	}
	c := startConsole(t, aWAV, track, func(p *rtp.Packet) {
		mu.Lock()
		rec.add(p.PayloadType, p.Timestamp, p.Payload)
		mu.Unlock()
	})
	start := time.Now()
	if err := sendWAV(ctx, track, bWAV); err != nil {
		t.Fatal(err)
	}
	t.Logf("sent %s in %s", filepath.Base(bWAV), time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second) // the tail of the speech in flight
	heardWAV := c.heard(t, filepath.Join(dir, "browser-heard.wav"))
	_ = c.pc.Close()
	mu.Lock()
	t.Logf("pion received %d PCMU packets, payload types %v, %d samples", rec.packets, rec.pts, len(rec.pcm))
	pionWAV := filepath.Join(dir, "pion-heard.wav")
	err = rec.write(pionWAV)
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{heardWAV, pionWAV} {
		l, _ := pbxlab.Level(f)
		t.Logf("level %s: %.4f", filepath.Base(f), l)
	}
	up := pbxlab.MustCorrelate(t, "browser speech vs pion heard", aWAV, pionWAV)
	down := pbxlab.MustCorrelate(t, "node speech vs browser heard", bWAV, heardWAV)
	pbxlab.MustCorrelate(t, "mismatch: browser speech vs browser heard", aWAV, heardWAV)
	pbxlab.MustCorrelate(t, "mismatch: node speech vs pion heard", bWAV, pionWAV)
	correlateFine(t, aWAV, pionWAV)
	correlateFine(t, bWAV, heardWAV)
	correlateFine(t, aWAV, heardWAV)
	correlateFine(t, bWAV, pionWAV)
	if up < 0.8 || down < 0.8 {
		t.Errorf("audio did not arrive: up %.3f down %.3f", up, down)
	}
	keep(t, aWAV, bWAV, heardWAV, pionWAV)
}

// keep copies files to $HELPMESH_WEBRTC_LAB_KEEP, if set, for listening.
func keep(t *testing.T, files ...string) {
	dir := os.Getenv("HELPMESH_WEBRTC_LAB_KEEP")
	if dir == "" {
		return
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, t.Name()+"-"+filepath.Base(f)), b, 0o644)
		}
		if err != nil {
			t.Log(err)
		}
	}
}
