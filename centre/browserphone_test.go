package centre_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	rtppkt "github.com/pion/rtp"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/logsink"
	"github.com/helpmesh/helpmesh/internal/pbxlab"
	"github.com/helpmesh/helpmesh/internal/siptest"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/media"
	"github.com/helpmesh/helpmesh/node"
	"github.com/helpmesh/helpmesh/switchboard"
)

// The browser phone with real parts end to end: a baresip caller speaking
// an espeak-ng sentence calls a centre whose node is its phone (no PBX);
// headless Chromium, its microphone a file of the volunteer's speech,
// answers in the real console page; the node bridges the caller's RTP and
// the browser's WebRTC. See internal/pbxlab and internal/browsertest.

// The spoken canary: the words of the caller's speech. They travel only as
// sound, so they must never appear as text anywhere.
const spokenCanary = "Quillfeather marmalade seventeen"

type browserRig struct {
	*phoneRig
	ingress                      string
	caller                       *pbxlab.Phone
	callerSpeech, volunteerSpeak string
	dir                          string
}

// browserFed starts c1, a centre without a PBX whose node takes the calls
// of its trunk (127.0.0.1: here the callers themselves, or a Kamailio) and
// answers them in volunteers' browsers, and n-1 more centres with phone
// (nil: none).
func browserFed(t *testing.T, n int, phone func(id string) (node.PhoneConfig, string), tune func(id string, cfg *centre.Config)) (*phoneRig, string) {
	t.Helper()
	ingress := freeLoopback(t)
	r := &phoneRig{root: t.TempDir(), logs: &logsink.Buffer{}}
	local := centre.Local{
		Root: r.root, Timing: timing.Test,
		Tune: func(id string, cfg *centre.Config) {
			if cfg.SIP.Browser != nil {
				cfg.SIP.Browser.RawAudio = true // the tests compare voices
			}
			if tune != nil {
				tune(id, cfg)
			}
		},
		Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Phone: func(id string, _ int) (node.PhoneConfig, string) {
			if id == "c1" {
				return node.PhoneConfig{Listen: ingress, PBX: []string{"127.0.0.1/32"},
					Browser: &node.BrowserPhone{MediaHost: "127.0.0.1", Loopback: true}}, ingress
			}
			if phone == nil {
				return node.PhoneConfig{}, ""
			}
			return phone(id)
		},
	}
	r.Federation = fedtest.Start(t, local.Driver(), n)
	return r, ingress
}

// startBrowserRig is browserFed with the caller, a baresip phone speaking
// the caller's speech, and the volunteer's speech for Chromium.
func startBrowserRig(t *testing.T, n int, phone func(id string) (node.PhoneConfig, string), tune func(id string, cfg *centre.Config)) *browserRig {
	t.Helper()
	pbxlab.Need(t)
	browsertest.FindChromium(t)
	dir := t.TempDir()
	r := &browserRig{
		dir: dir,
		callerSpeech: pbxlab.Speech(t, dir, spokenCanary+". Hello, this is the caller speaking. I would like to talk to someone about my day, "+
			"it has been a long one and I cannot sleep.", 14*time.Second),
		volunteerSpeak: pbxlab.Speech(t, dir, "Good evening, you are talking to a volunteer at the helpline. Take your time, "+
			"I am listening, and nothing you say leaves this room. We can talk for as long as you need tonight.", 20*time.Second),
	}
	r.caller = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: voiceCallerNumber, DisplayName: voiceCallerName, Answer: pbxlab.AnswerNever, Speak: r.callerSpeech})
	r.phoneRig, r.ingress = browserFed(t, n, phone, tune)
	return r
}

// enrol writes a phone volunteer to the roster through c's admin API and
// sets their password, as a coordinator and the volunteer would.
func (r *browserRig) enrol(t *testing.T, c *centre.Centre, id, password string) {
	t.Helper()
	token, err := node.LoadAdminToken(filepath.Join(r.root, c.Node().Centre()))
	if err != nil {
		t.Fatal(err)
	}
	v := consensus.Volunteer{ID: id, Centre: c.Node().Centre(), Alias: "Kari", Channels: []string{switchboard.ChannelPhone},
		Languages: []string{"nb"}, Capacity: 1, Role: "volunteer"}
	b, _ := json.Marshal(v)
	req, _ := http.NewRequest(http.MethodPost, "http://"+c.Addr()+"/v1/volunteers", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var w struct {
		EnrolmentCode string `json:"enrolment_code"`
	}
	err = json.NewDecoder(resp.Body).Decode(&w)
	resp.Body.Close()
	if err != nil || w.EnrolmentCode == "" {
		t.Fatalf("add volunteer %s: HTTP %d, %v", id, resp.StatusCode, err)
	}
	b, _ = json.Marshal(map[string]string{"volunteer": id, "code": w.EnrolmentCode, "password": password})
	resp, err = http.Post("http://"+c.Addr()+"/v1/volunteer/enrol", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("enrol %s: HTTP %d", id, resp.StatusCode)
	}
}

// console opens c's console in a Chromium whose microphone speaks the
// volunteer's speech, logs in, and switches the browser phone and calls on.
func (r *browserRig) console(t *testing.T, c *centre.Centre, id string) context.Context {
	t.Helper()
	r.enrol(t, c, id, "correct horse battery")
	tab := browsertest.NewMediaBrowser(t, r.volunteerSpeak)
	browsertest.Run(t, tab, "log in",
		chromedp.Navigate("http://"+c.Addr()+"/console"),
		chromedp.WaitVisible("#login-submit", chromedp.ByQuery),
		chromedp.SendKeys("#volunteer", id, chromedp.ByQuery),
		chromedp.SendKeys("#password", "correct horse battery", chromedp.ByQuery),
		chromedp.Click("#login-submit", chromedp.ByQuery))
	browsertest.Wait(t, tab, "the browser phone choice", `!document.querySelector('#desk').hidden && !document.querySelector('#phone-browser-label').hidden`, 15*time.Second)
	browsertest.Run(t, tab, "browser phone on", chromedp.Click("#phone-browser", chromedp.ByQuery))
	browsertest.Wait(t, tab, "the microphone open", `document.querySelector('#phone-browser').checked && window.softphone.stream
		&& window.softphone.stream.getAudioTracks()[0].readyState === 'live' && /Calls ring in this browser/.test(document.querySelector('#phone-in-use').textContent)`, 10*time.Second)
	browsertest.Run(t, tab, "calls on", chromedp.Click("#available-phone", chromedp.ByQuery))
	fedtest.Eventually(t, 10*time.Second, "the volunteer free for calls", func() bool {
		return c.Node().Switchboard().Availability()[switchboard.ChannelPhone].Free["nb"] == 1
	})
	return tab
}

// dataSizes is the size of every file under dir.
func dataSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	sizes := map[string]int64{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		sizes[path] = info.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sizes
}

// heardInBrowser reads what the page captured of the call as a WAV. It
// fails the test if Chromium's receiver lost more than 1% of the packets:
// the node must deliver the voice, whatever the browser then does to it.
func heardInBrowser(t *testing.T, tab context.Context, dir string) string {
	t.Helper()
	var b64 string
	browsertest.Eval(t, tab, `window.softphoneCapture.samplesBase64()`, &b64)
	// What Chromium's receiver saw: loss says whether the node delivered
	// the voice; concealment and stretching what the browser did to it.
	var st struct {
		Received, Lost, Concealed, Inserted, Removed, JitterBufferMs float64
	}
	if err := chromedp.Run(tab, chromedp.Evaluate(`(async () => { const r = await window.softphone.pc.getStats(); let o = null;
		r.forEach(s => { if (s.type === 'inbound-rtp') o = {Received: s.packetsReceived, Lost: s.packetsLost, Concealed: s.concealedSamples,
		  Inserted: s.insertedSamplesForDeceleration, Removed: s.removedSamplesForAcceleration,
		  JitterBufferMs: 1000 * s.jitterBufferDelay / Math.max(1, s.jitterBufferEmittedCount)}; }); return o; })()`,
		&st, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })); err != nil {
		t.Fatalf("the browser's receiver stats: %v", err)
	}
	t.Logf("the browser's receiver: %+v", st)
	if st.Received < 100 || st.Lost > st.Received/100 {
		t.Errorf("the browser received %v packets and lost %v", st.Received, st.Lost)
	}
	s, err := browsertest.Samples(b64)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) < 8000 {
		t.Fatalf("the page captured %d samples: under a second of the call", len(s))
	}
	path := filepath.Join(dir, "browser-heard.wav")
	if err := pbxlab.WriteWAV(path, s, 8000); err != nil {
		t.Fatal(err)
	}
	return path
}

// Issue 13, points 1 and 5: the caller calls the node; the volunteer
// answers in the real console page in Chromium; each hears the other
// (envelope correlation against what the other said, with mismatched pairs
// that must not correlate); the caller hangs up, the volunteer
// categorises, and the call counts once, answered here, with its topic.
// During the call no file in any data directory grows (the voice is never
// written), and neither the caller's number and name nor the spoken words
// appear in any file, log or metric.
func TestBrowserPhoneCallWithRealVoice(t *testing.T) {
	r := startBrowserRig(t, 1, nil, nil)
	c1 := r.Member("c1")
	tab := r.console(t, c1, "v1")

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	micFor := r.answerCall(ctx, t, tab)
	before := dataSizes(t, r.root)
	browsertest.Wait(t, tab, "the in-call card", `!!document.querySelector('#chats .chat.call[data-browser] button.hang-up')
		&& window.softphone.pc && window.softphone.pc.connectionState === 'connected'`, 10*time.Second)
	fedtest.Eventually(t, 5*time.Second, "the call in progress", func() bool { return phoneTally(c1).InProgress == 1 })

	heard := r.talkThenCallerHangsUp(ctx, t, tab)
	browsertest.Wait(t, tab, "the categorisation form after the caller hung up", `(() => { const c = document.querySelector('#chats .chat.call');
		return !!c && !!c.querySelector('.categorise input[name=topic]') && window.softphone.pc === null; })()`, 10*time.Second)
	after := dataSizes(t, r.root)
	for path, size := range after {
		if size > before[path] {
			t.Errorf("%s grew during the call: %d -> %d bytes", path, before[path], size)
		}
	}

	r.heardEachOther(t, heard, micFor)

	browsertest.Run(t, tab, "categorise",
		chromedp.Click(`#chats .chat.call .categorise input[name=topic][value="family"]`, chromedp.ByQuery),
		chromedp.SetValue("#chats .chat.call .categorise select.age-group", "16-18", chromedp.ByQuery),
		chromedp.Click("#chats .chat.call .categorise button.submit-categorisation", chromedp.ByQuery))
	fedtest.Eventually(t, 5*time.Second, "the categorisation counted", func() bool {
		st := c1.Node().Switchboard().Stats()
		return st.Categorised() == 1 && st.Topics["family"] == 1
	})
	if tl := phoneTally(c1); tl.Offered != 1 || tl.AnsweredLocal != 1 || tl.InProgress != 0 {
		t.Fatalf("after the call: %+v", tl)
	}
	conservedCalls(t, c1)
	r.noTrace(t, voiceCallerNumber, voiceCallerName, spokenCanary)
}

// Issue 13, point 3: the caller hangs up while the console rings: it stops
// ringing at once and the call counts as abandoned. Then a call is
// answered and the volunteer closes the tab: the node hangs up the caller
// (a BYE: baresip's call closes) and the volunteer's hold is released.
func TestBrowserPhoneHangUpsOnEitherSide(t *testing.T) {
	r := startBrowserRig(t, 1, nil, nil)
	c1 := r.Member("c1")
	tab := r.console(t, c1, "v1")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	if err := r.caller.Dial(ctx, "sip:queue-nb@"+r.ingress); err != nil {
		t.Fatal(err)
	}
	ringing := `(() => { const o = document.querySelector('#offers .offer[data-browser]'); return !!o && window.softphone.ringing; })()`
	browsertest.Wait(t, tab, "the call ringing", ringing, 15*time.Second)
	if err := r.caller.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	hungUp := time.Now()
	browsertest.Wait(t, tab, "the ringing stopped", `!document.querySelector('#offers .offer') && !window.softphone.ringing`, 5*time.Second)
	t.Logf("the console stopped ringing %v after the caller hung up", time.Since(hungUp).Round(time.Millisecond))
	fedtest.Eventually(t, 5*time.Second, "the call counted abandoned", func() bool { return phoneTally(c1).Abandoned == 1 })
	fedtest.Eventually(t, 5*time.Second, "the volunteer free again", func() bool {
		return c1.Node().Switchboard().Availability()[switchboard.ChannelPhone].Free["nb"] == 1
	})
	if _, err := r.caller.Await(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}

	if err := r.caller.Dial(ctx, "sip:queue-nb@"+r.ingress); err != nil {
		t.Fatal(err)
	}
	browsertest.Wait(t, tab, "the second call ringing", ringing, 15*time.Second)
	browsertest.Run(t, tab, "answer", chromedp.Click("#offers .offer button.answer-call", chromedp.ByQuery))
	if _, err := r.caller.Await(ctx, "CALL_RTPESTAB"); err != nil {
		t.Fatal(err)
	}
	fedtest.Eventually(t, 5*time.Second, "the call in progress", func() bool { return phoneTally(c1).InProgress == 1 })
	closed := time.Now()
	if err := chromedp.Cancel(tab); err != nil { // the tab, and its browser, closed
		t.Fatal(err)
	}
	e, err := r.caller.Await(ctx, "CALL_CLOSED")
	if err != nil {
		t.Fatalf("the caller's leg was not ended after the tab closed: %v", err)
	}
	t.Logf("the caller's call closed %v after the tab closed (%s)", time.Since(closed).Round(time.Millisecond), e.Param)
	fedtest.Eventually(t, 10*time.Second, "the hold released and the call counted", func() bool {
		tl := phoneTally(c1)
		return tl.InProgress == 0 && tl.Waiting == 0 && tl.AnsweredLocal == 1
	})
	conservedCalls(t, c1)
	if av := c1.Node().Switchboard().Availability()[switchboard.ChannelPhone]; av.Busy["nb"] != 0 {
		t.Fatalf("a volunteer is still held after the tab closed: %+v", av)
	}
}

// Issue 13, points 2 (nobody free anywhere) and 4, at the SIP level with
// a real centre: a stranger's INVITE gets 403, a queue call from a listed
// peer too (its token calls are let in); a malformed SDP gets 400, one without
// G.711 488, and neither is counted; with nobody free anywhere the node
// answers, sends the busy prompt as RTP, hangs up, and counts the call
// once, not answered (returned).
func TestBrowserPhoneRefusalsAndBusyPrompt(t *testing.T) {
	// 127.0.0.4 stands for another centre's carrier, listed in phone.peers.
	r, ingress := browserFed(t, 1, nil, func(_ string, cfg *centre.Config) {
		cfg.SIP.Peers = []netip.Prefix{netip.MustParsePrefix("127.0.0.4/32")}
	})
	c1 := r.Member("c1")
	to := sip.Uri{Scheme: "sip", User: "queue-nb", Host: "127.0.0.1", Port: ingressPort(t, ingress)}
	answer := func(d *sipgo.DialogClientSession) *sip.Response {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return siptest.FinalResponse(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{}))
	}

	stranger := siptest.NewCallerAt(t, "127.0.0.3")
	forged := to
	forged.User = "AAAAAAAAAAAAAAAAAAAAAAAAAA"
	if res := answer(stranger.InviteSDP(t, to, siptest.CallerSDP)); res.StatusCode != sip.StatusForbidden {
		t.Fatalf("a stranger's INVITE: %d, want 403", res.StatusCode)
	}
	if res := answer(stranger.InviteSDP(t, forged, siptest.CallerSDP)); res.StatusCode != sip.StatusForbidden {
		t.Fatalf("a stranger's token INVITE: %d, want 403", res.StatusCode)
	}
	// A listed peer may send token calls (a forged one is then not found)
	// but not queue calls: only the trunk does.
	peer := siptest.NewCallerAt(t, "127.0.0.4")
	if res := answer(peer.InviteSDP(t, forged, siptest.CallerSDP)); res.StatusCode != sip.StatusNotFound {
		t.Fatalf("a listed peer's forged token: %d, want 404", res.StatusCode)
	}
	if res := answer(peer.InviteSDP(t, to, siptest.CallerSDP)); res.StatusCode != sip.StatusForbidden {
		t.Fatalf("a listed peer's queue call: %d, want 403", res.StatusCode)
	}
	trunk := siptest.NewCallerPBX(t)
	for _, c := range []struct {
		what, sdp string
		want      int
	}{
		{"malformed SDP", "v=0\r\nthis is not SDP\r\n", sip.StatusBadRequest},
		{"no address", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\n", sip.StatusBadRequest},
		{"no G.711", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 9 18\r\n", sip.StatusNotAcceptableHere},
		{"video only", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 41000 RTP/AVP 96\r\n", sip.StatusNotAcceptableHere},
	} {
		if res := answer(trunk.InviteSDP(t, to, c.sdp)); res.StatusCode != c.want {
			t.Errorf("%s: %d %s, want %d", c.what, res.StatusCode, res.Reason, c.want)
		}
	}
	if tl := phoneTally(c1); tl.Offered != 0 {
		t.Fatalf("refused calls were counted: %+v", tl)
	}

	// Nobody free anywhere: the prompt.
	rtp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rtp.Close()
	sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 8 0\r\n", rtp.LocalAddr().(*net.UDPAddr).Port)
	d := trunk.InviteSDP(t, to, sdp)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("nobody free: %v, want 200 and the prompt", err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	packets, loud := 0, 0
	got := make(chan struct{})
	go func() {
		defer close(got)
		buf := make([]byte, 1500)
		for {
			_ = rtp.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := rtp.Read(buf)
			if err != nil {
				return
			}
			var p rtppkt.Packet
			if p.Unmarshal(buf[:n]) != nil || p.PayloadType != 8 {
				continue // the caller preferred PCMA: every packet must be PCMA
			}
			packets++
			for _, b := range p.Payload {
				if b != 0xd5 && b != 0x55 { // A-law silence
					loud++
					break
				}
			}
		}
	}()
	siptest.Receive(t, trunk.Byes, "the node's BYE after the prompt")
	<-got
	want := int(media.DefaultPrompt().Duration() / (20 * time.Millisecond))
	t.Logf("prompt: %d packets (%d with sound), %d expected", packets, loud, want)
	if packets < want*9/10 || loud < want/4 {
		t.Errorf("the caller got %d packets (%d with sound) of a %d-packet prompt", packets, loud, want)
	}
	fedtest.Eventually(t, 5*time.Second, "the call counted not answered", func() bool {
		tl := phoneTally(c1)
		return tl.Offered == 1 && tl.Returned == 1 && tl.Waiting == 0
	})
	conservedCalls(t, c1)
}

func ingressPort(t *testing.T, addr string) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return int(ap.Port())
}

// setPhoneOverflow sets the policy's time a call rings here before it
// overflows.
func setPhoneOverflow(t *testing.T, c *centre.Centre, secs int) {
	t.Helper()
	p := c.Node().Roster().Policy
	p.OverflowAfterSeconds = map[string]int{switchboard.ChannelChat: 60, switchboard.ChannelPhone: secs}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetPolicy, Policy: &p}); err != nil {
		t.Fatal(err)
	}
}

// Issue 13, point 2, with real PBXs and real voice: c1's volunteer is
// available in the browser but does not answer; after the policy's time
// (3 s) the node redirects the call (302, before answering) to c2, a
// centre whose PBX is Kamailio, where the volunteer's desk phone answers,
// and caller and volunteer hear each other. c1's trunk is a Kamailio too:
// a carrier's trunk that follows the redirect. c1 counts the call once,
// answered by overflow, and its console stopped ringing. Then nobody is
// free anywhere: the caller hears the busy prompt (what baresip recorded
// correlates with the prompt) and c1 counts the call not answered.
func TestBrowserPhoneOverflowsWhenNobodyAnswersInTime(t *testing.T) {
	pbxlab.Need(t)
	queueB := pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "bq", Answer: pbxlab.AnswerAuto})
	ingressB := freeLoopback(t)
	cfg := pbxlab.ConfigPath(t)
	pbxB := pbxlab.StartKamailio(t, cfg, map[string]string{
		"NODE":        pbxlab.Quote("sip:" + ingressB),
		"LOCAL_PHONE": pbxlab.Quote(queueB.URI()),
	})
	r := startBrowserRig(t, 2, func(string) (node.PhoneConfig, string) {
		return node.PhoneConfig{Listen: ingressB, PBX: []string{"127.0.0.1/32"}}, pbxB.Addr()
	}, nil)
	c1, c2 := r.Member("c1"), r.Member("c2")
	volunteer := pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "vol", Answer: pbxlab.AnswerAuto, Speak: r.volunteerSpeak})
	// c1's trunk: rings a desk nobody answers for 300 ms (the carrier's
	// own step), then the node, and follows its redirect; its own queue
	// phone is where a call the node refused would land.
	desk := pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "desk", Answer: pbxlab.AnswerNever})
	trunkQueue := pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "tq", Answer: pbxlab.AnswerAuto})
	trunk := pbxlab.StartKamailio(t, cfg, map[string]string{
		"NODE":        pbxlab.Quote("sip:" + r.ingress),
		"LOCAL_PHONE": pbxlab.Quote(desk.URI()),
		"OWN_QUEUE":   pbxlab.Quote(trunkQueue.URI()),
		"QUEUE":       pbxlab.Quote("1000"),
		"RING_MS":     "300",
		"LANG":        pbxlab.Quote("nb"),
	})
	const overflowAfter = 3
	setPhoneOverflow(t, c1, overflowAfter)
	tab := r.console(t, c1, "v1")
	con, deskB := phoneVolunteer(t, c2, "v-b", volunteer.URI())
	fedtest.Eventually(t, 20*time.Second, "c2's volunteer free for calls in c1's view", func() bool { return seenFree(c1, c2, switchboard.ChannelPhone) })

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if err := r.caller.Dial(ctx, trunk.URI("1000")); err != nil {
		t.Fatal(err)
	}
	ringing := `(() => { const o = document.querySelector('#offers .offer[data-browser]'); return !!o && window.softphone.ringing; })()`
	browsertest.Wait(t, tab, "c1's console ringing", ringing, 15*time.Second)
	rang := time.Now()
	if e, err := volunteer.Await(ctx, "CALL_REMOTE_SDP"); err != nil { // it answers at once
		t.Fatalf("c2's volunteer phone never rang: %v (%s)", err, tailOf(trunk.Log()))
	} else {
		t.Logf("c2's volunteer phone rang %v after c1's console began ringing (%s)", time.Since(rang).Round(time.Millisecond), e.Type)
	}
	if time.Since(rang) < overflowAfter*time.Second-500*time.Millisecond {
		t.Errorf("the call left c1 after %v, before the policy's %d s", time.Since(rang), overflowAfter)
	}
	browsertest.Wait(t, tab, "c1's console stopped ringing", `!document.querySelector('#offers .offer') && !window.softphone.ringing`, 5*time.Second)
	pbxlab.Converse(ctx, t, r.caller, volunteer, 6*time.Second)
	pbxlab.HeardEachOther(t, r.caller, r.callerSpeech, volunteer, r.volunteerSpeak)
	if !strings.Contains(trunk.Log(), "node redirected (302)") {
		t.Errorf("the trunk did not follow a 302 from c1's node:\n%s", tailOf(trunk.Log()))
	}
	if trunkQueue.Saw("CALL_INCOMING") || queueB.Saw("CALL_INCOMING") {
		t.Error("a PBX's own queue rang")
	}
	fedtest.Eventually(t, 10*time.Second, "c1 counts the call answered by overflow", func() bool {
		tl := phoneTally(c1)
		return tl.Offered == 1 && tl.AnsweredOverflow == 1 && tl.InProgress == 0
	})
	fedtest.Eventually(t, 5*time.Second, "c2's console hears the call end", func() bool { return deskB.has("event ended caller") })
	deskB.categorise(t, con)

	// Nobody free anywhere: c2's volunteer goes off calls.
	if err := con.SetAvailable(switchboard.ChannelPhone, false); err != nil {
		t.Fatal(err)
	}
	fedtest.Eventually(t, 20*time.Second, "c1 sees nobody free at c2", func() bool {
		for _, s := range c1.Node().Gossip().View() {
			if s.Centre == "c2" {
				return s.Availability.Channels[switchboard.ChannelPhone].Free["nb"] == 0
			}
		}
		return false
	})
	caller2 := pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "caller2", Answer: pbxlab.AnswerNever, Speak: r.callerSpeech})
	if err := caller2.Dial(ctx, trunk.URI("1000")); err != nil {
		t.Fatal(err)
	}
	browsertest.Wait(t, tab, "c1's console ringing again", ringing, 15*time.Second)
	if _, err := caller2.Await(ctx, "CALL_RTPESTAB"); err != nil {
		t.Fatal(err)
	}
	if e, err := caller2.Await(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("the node hung up after the prompt (%s)", e.Param)
	}
	prompt, err := filepath.Abs(filepath.Join("..", "media", "prompt.wav"))
	if err != nil {
		t.Fatal(err)
	}
	if got := pbxlab.MustCorrelate(t, "the prompt vs what the caller heard", prompt, caller2.Heard()); got < 0.8 {
		t.Errorf("the caller did not hear the prompt: correlation %.3f", got)
	}
	if got := pbxlab.MustCorrelate(t, "the caller's speech vs what the caller heard (mismatch)", r.callerSpeech, caller2.Heard()); got >= 0.5 {
		t.Errorf("mismatched pair correlates %.3f: the check cannot tell", got)
	}
	fedtest.Eventually(t, 10*time.Second, "c1 counts the second call not answered", func() bool {
		tl := phoneTally(c1)
		return tl.Offered == 2 && tl.Returned == 1 && tl.Waiting == 0
	})
	conservedCalls(t, c1)
}

// heardEachOther fails the test unless what the browser heard correlates
// with the caller's speech and what the caller heard with the volunteer's
// (its fake microphone had played micFor ms before the call), and the
// mismatched pairs do not. Into the caller (baresip's fixed jitter buffer)
// a match is > 0.8, as in the PBX tests; into the browser > 0.7: Chromium's
// jitter buffer time-stretches what it plays, more so on a loaded 2-core
// machine (docs/dev/webrtc-lab.md, section 5: 0.844 was the lowest seen
// on a quiet one; 0.76 during a flood, with no packet lost). A mismatched
// pair stays under 0.5 (0.22-0.33 seen), so the check still fails on a
// voice that did not arrive (0.19 with the wrong microphone, 0.00 with
// none).
func (r *browserRig) heardEachOther(t *testing.T, heard string, micFor float64) {
	t.Helper()
	r.heardEachOtherAbove(t, heard, micFor, 0.7)
}

// heardEachOtherAbove is heardEachOther with the bar into the browser
// given: during a flood on 2 cores Chromium's audio thread is starved and
// its jitter buffer stretches and conceals more (0.68-0.82 seen with no
// packet lost, mismatched pairs 0.25-0.28), so the flood test asks 0.55
// there and that the match stands clear of both mismatched pairs.
func (r *browserRig) heardEachOtherAbove(t *testing.T, heard string, micFor, intoBrowser float64) {
	t.Helper()
	volunteerSaid := pbxlab.TrimWAV(t, r.dir, r.volunteerSpeak, time.Duration(micFor)*time.Millisecond)
	var matches []float64
	worstMismatch := 0.0
	defer func() {
		for _, m := range matches {
			if m-worstMismatch < 0.25 {
				t.Errorf("a match (%.3f) does not stand clear of the mismatched pairs (up to %.3f)", m, worstMismatch)
			}
		}
	}()
	for _, c := range []struct {
		what, said, heard string
		match             bool
		min               float64
	}{
		{"caller's speech vs what the browser heard", r.callerSpeech, heard, true, intoBrowser},
		{"volunteer's speech vs what the caller heard", volunteerSaid, r.caller.Heard(), true, 0.8},
		{"volunteer's speech vs what the browser heard (mismatch)", volunteerSaid, heard, false, 0},
		{"caller's speech vs what the caller heard (mismatch)", r.callerSpeech, r.caller.Heard(), false, 0},
	} {
		got := pbxlab.MustCorrelate(t, c.what, c.said, c.heard)
		if c.match {
			matches = append(matches, got)
		} else {
			worstMismatch = max(worstMismatch, got)
		}
		switch {
		case c.match && got < c.min:
			t.Errorf("%s: correlation %.3f < %.2f: the voice did not arrive", c.what, got, c.min)
		case !c.match && got >= 0.5:
			t.Errorf("%s: correlation %.3f >= 0.5: the check cannot tell voices apart", c.what, got)
		}
	}
}

// answerCall dials the node from the caller, answers in the console and
// returns once voice flows, with how long the browser's fake microphone
// had played before the call.
func (r *browserRig) answerCall(ctx context.Context, t *testing.T, tab context.Context) float64 {
	t.Helper()
	return r.answerCallAt(ctx, t, tab, "sip:queue-nb@"+r.ingress)
}

// answerCallAt is answerCall dialling uri (a trunk, which may redirect the
// call to another centre, whose console tab is).
func (r *browserRig) answerCallAt(ctx context.Context, t *testing.T, tab context.Context, uri string) float64 {
	t.Helper()
	if err := r.caller.Dial(ctx, uri); err != nil {
		t.Fatal(err)
	}
	browsertest.Wait(t, tab, "the call ringing in the console", `(() => { const o = document.querySelector('#offers .offer[data-browser]');
		return !!o && !!o.querySelector('button.answer-call') && window.softphone.ringing; })()`, 20*time.Second)
	browsertest.Eval(t, tab, `window.softphoneCapture.start(), true`, new(bool))
	browsertest.Run(t, tab, "answer", chromedp.Click("#offers .offer button.answer-call", chromedp.ByQuery))
	if e, err := r.caller.Await(ctx, "CALL_ESTABLISHED", "CALL_CLOSED"); err != nil || e.Type != "CALL_ESTABLISHED" {
		t.Fatalf("the caller's call was not answered: %v %+v (events %v)", err, e, r.caller.EventTypes())
	}
	var micFor float64
	browsertest.Eval(t, tab, `performance.now() - window.softphone.micAt`, &micFor)
	if _, err := r.caller.Await(ctx, "CALL_RTPESTAB"); err != nil {
		t.Fatal(err)
	}
	return micFor
}

// Crisis lines are attacked, and a trunk carries whatever is dialled: a
// flood of 400 calls at 100 a second from the trunk while a volunteer is in
// a browser call. The node holds at most MaxHeldCalls (20) at once: the
// calls beyond get 480 at once, those held hear the busy message (nobody is
// free) and are hung up; sipp sees every call handled. The call in progress
// keeps its voice both ways, and a call after the flood is answered.
func TestBrowserPhoneCallKeepsItsVoiceThroughATrunkFlood(t *testing.T) {
	sipp := siptest.NeedSipp(t)
	r := startBrowserRig(t, 1, nil, func(_ string, cfg *centre.Config) { cfg.SIP.MaxHeldCalls = 20 })
	c1 := r.Member("c1")
	tab := r.console(t, c1, "v1")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	micFor := r.answerCall(ctx, t, tab)

	scenario, err := filepath.Abs("../sip/testdata/uac_trunk_flood.xml")
	if err != nil {
		t.Fatal(err)
	}
	const calls = 400
	// The flooding trunk is another machine in life: sipp runs below the
	// node here, so it is the node that handles the flood, not sipp that
	// takes the CPU from it.
	flood := exec.CommandContext(ctx, "nice", "-n", "19", sipp, "-sf", scenario, r.ingress, "-i", "127.0.0.1", "-s", "queue-nb",
		"-m", fmt.Sprint(calls), "-r", "100", "-l", fmt.Sprint(calls), "-nostdin", "-timeout", "60s", "-mp", fmt.Sprint(fedtest.FreePort(t)))
	flood.Dir = t.TempDir()
	var floodOut bytes.Buffer
	flood.Stdout, flood.Stderr = &floodOut, &floodOut
	start := time.Now()
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	heard := r.talkThenCallerHangsUp(ctx, t, tab) // through the flood
	floodErr := flood.Wait()
	t.Logf("FIGURE trunk flood at a browser-phone node: %d calls at 100/s handled in %v (at most 20 held)", calls, time.Since(start).Round(time.Millisecond))
	if floodErr != nil {
		t.Errorf("not every flooding call was handled (480 or the busy message): %v\n%s", floodErr, tailOf(floodOut.String()))
	}
	r.heardEachOtherAbove(t, heard, micFor, 0.55)
	tl := phoneTally(c1)
	t.Logf("c1's phone KPIs after the flood: %+v", tl)
	if tl.AnsweredLocal != 1 || tl.Returned == 0 || tl.Offered != 1+tl.Returned || tl.Offered > 1+calls {
		t.Errorf("c1's phone KPIs after the flood: %+v", tl)
	}
	conservedCalls(t, c1)

	// The volunteer categorises; the next caller is answered.
	browsertest.Run(t, tab, "categorise",
		chromedp.Click(`#chats .chat.call .categorise input[name=topic][value="family"]`, chromedp.ByQuery),
		chromedp.Click("#chats .chat.call .categorise button.submit-categorisation", chromedp.ByQuery))
	fedtest.Eventually(t, 10*time.Second, "the volunteer free again", func() bool {
		return c1.Node().Switchboard().Availability()[switchboard.ChannelPhone].Free["nb"] == 1
	})
	r.answerCall(ctx, t, tab)
	fedtest.Eventually(t, 5*time.Second, "the call after the flood in progress", func() bool { return phoneTally(c1).InProgress == 1 })
}

// Issue 13, point 2, between two browser-phone centres: c1 has nobody
// free, so its node redirects the call at once (302, through its Kamailio
// trunk) to a token at c2's node, which is c2's phone too. c2's trunk is
// elsewhere (127.0.0.9): the token call is let in because it comes from a
// phone system the roster publishes (c1's). c2's volunteer answers in the
// browser and each side hears the other; c1 counts the call answered by
// overflow.
func TestBrowserPhoneOverflowsToAnotherBrowserPhoneCentre(t *testing.T) {
	ingressB := freeLoopback(t)
	r := startBrowserRig(t, 2, func(string) (node.PhoneConfig, string) {
		return node.PhoneConfig{Listen: ingressB, PBX: []string{"127.0.0.9/32"},
			Browser: &node.BrowserPhone{MediaHost: "127.0.0.1", Loopback: true}}, ingressB
	}, nil)
	c1, c2 := r.Member("c1"), r.Member("c2")
	desk := pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "desk", Answer: pbxlab.AnswerNever})
	trunkQueue := pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "tq", Answer: pbxlab.AnswerAuto})
	trunk := pbxlab.StartKamailio(t, pbxlab.ConfigPath(t), map[string]string{
		"NODE":        pbxlab.Quote("sip:" + r.ingress),
		"LOCAL_PHONE": pbxlab.Quote(desk.URI()),
		"OWN_QUEUE":   pbxlab.Quote(trunkQueue.URI()),
		"QUEUE":       pbxlab.Quote("1000"),
		"RING_MS":     "300",
		"LANG":        pbxlab.Quote("nb"),
	})
	tab := r.console(t, c2, "v2")
	fedtest.Eventually(t, 20*time.Second, "c2's browser volunteer free in c1's view", func() bool { return seenFree(c1, c2, switchboard.ChannelPhone) })

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	micFor := r.answerCallAt(ctx, t, tab, trunk.URI("1000"))
	if got := c2.Node().Switchboard().Stats().OffersReceived[switchboard.OfferKey{Centre: "c1", Result: switchboard.OfferAccepted, Channel: switchboard.ChannelPhone}]; got != 1 {
		t.Errorf("c2 took %d phone offers from c1, want 1", got)
	}
	fedtest.Eventually(t, 5*time.Second, "c1 sees the pick-up", func() bool { return phoneTally(c1).InProgress == 1 })
	select {
	case <-time.After(9 * time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	heard := heardInBrowser(t, tab, r.dir)
	browsertest.Run(t, tab, "hang up", chromedp.Click("#chats .chat.call button.hang-up", chromedp.ByQuery))
	if _, err := r.caller.Await(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	r.heardEachOther(t, heard, micFor)
	if !strings.Contains(trunk.Log(), "node redirected (302)") || trunkQueue.Saw("CALL_INCOMING") {
		t.Errorf("the trunk did not follow c1's redirect to c2:\n%s", tailOf(trunk.Log()))
	}
	fedtest.Eventually(t, 10*time.Second, "c1 counts the call answered by overflow", func() bool {
		tl := phoneTally(c1)
		return tl.Offered == 1 && tl.AnsweredOverflow == 1 && tl.InProgress == 0
	})
	conservedCalls(t, c1)
}

// talkThenCallerHangsUp lets caller and volunteer talk for 9 s (the
// speech's length), reads what the browser heard, and hangs up from the
// caller's side.
func (r *browserRig) talkThenCallerHangsUp(ctx context.Context, t *testing.T, tab context.Context) string {
	t.Helper()
	select {
	case <-time.After(9 * time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	heard := heardInBrowser(t, tab, r.dir)
	if err := r.caller.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.caller.Await(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	return heard
}
