package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/helpmesh/helpmesh/internal/browsertest"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/logsink"
	"github.com/helpmesh/helpmesh/internal/pbxlab"
	"github.com/helpmesh/helpmesh/internal/siptest"
)

// output runs bin with args in the background, its stdout and stderr kept.
func output(t *testing.T, bin string, stdin io.Reader, args ...string) *logsink.Buffer {
	t.Helper()
	out := &logsink.Buffer{}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr, cmd.Stdin = out, out, stdin
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("output of helpmesh %s:\n%s", strings.Join(args, " "), lastLines(out.String(), 30))
		}
	})
	return out
}

// The newcomer's phone path through the real binary: `helpmesh demo`
// prints its centres' SIP ingresses; a volunteer at bergen signs in with
// `helpmesh volunteer --phone`; a SIP phone calls oslo's queue (oslo's
// node is its centre's phone and has nobody to ring), follows the 302 to
// bergen, and bergen's node rings the volunteer's SIP phone, which answers. The volunteer's terminal shows
// the call coming, picked up and ended.
func TestBinaryDemoPhonePath(t *testing.T) {
	bin := buildBinary(t)
	httpOf, queue := startDemo(t, bin)
	phone := siptest.NewPhone(t, siptest.Answer)
	stdin, keepOpen := io.Pipe()
	defer keepOpen.Close()
	vol := output(t, bin, stdin, "volunteer", "--server", "http://"+httpOf["bergen"], "--id", "bergen-kari", "--password", DemoPassword, "--phone", phone.URI())
	waitFor(t, 30*time.Second, "the volunteer signed in for calls", func() bool { return strings.Contains(vol.String(), "calls on "+phone.URI()) })

	oslo, err := netip.ParseAddrPort(queue)
	if err != nil {
		t.Fatal(err)
	}
	pbx := siptest.NewCallerPBX(t)
	var to sip.Uri
	waitFor(t, 60*time.Second, "oslo's queue sends the call on (302)", func() bool {
		d := pbx.Invite(t, oslo, "queue-nb")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := d.WaitAnswer(ctx, sipgo.AnswerOptions{})
		if err == nil {
			// Nobody free anywhere yet (gossip): oslo's node answered
			// with the busy message. Hang up and ask again.
			_ = d.Ack(ctx)
			_ = d.Bye(ctx)
			return false
		}
		res := siptest.FinalResponse(t, err)
		if res.StatusCode != sip.StatusMovedTemporarily {
			return false
		}
		to = res.Contact().Address
		return true
	})
	call := pbx.InviteURI(t, to)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := call.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("the volunteer's phone did not answer: %v", err)
	}
	_ = call.Ack(ctx)
	siptest.Receive(t, phone.Acks, "the ACK at the volunteer's phone")
	if err := call.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	siptest.Receive(t, phone.Byes, "the BYE at the volunteer's phone")
	for _, want := range []string{"a call is coming to your phone from oslo", "[call picked up]", "[ended by caller"} {
		waitFor(t, 10*time.Second, "the volunteer's terminal: "+want, func() bool { return strings.Contains(vol.String(), want) })
	}
}

// startDemo runs `helpmesh demo` and returns each centre's HTTP address
// and oslo's queue (host:port) once it says it is ready.
func startDemo(t *testing.T, bin string) (map[string]string, string) {
	t.Helper()
	base := fedtest.FreePort(t)
	demo := output(t, bin, nil, "demo", "--base-port", fmt.Sprint(base), "--dir", t.TempDir())
	var httpOf = map[string]string{}
	var queue string
	waitFor(t, 90*time.Second, "the demo ready", func() bool {
		out := demo.String()
		if !strings.Contains(out, "ready; press Ctrl-C") {
			return false
		}
		for _, m := range regexp.MustCompile(`(?m)^  (\w+)\s+http://(\S+)\s+admin token`).FindAllStringSubmatch(out, -1) {
			httpOf[m[1]] = m[2]
		}
		if m := regexp.MustCompile(`sip:queue-nb@(\S+)`).FindStringSubmatch(out); m != nil {
			queue = m[1]
		}
		return true
	})
	if httpOf["bergen"] == "" || queue == "" {
		t.Fatalf("the demo did not print bergen's address and oslo's queue:\n%s", demo.String())
	}
	return httpOf, queue
}

// The README's phone path through the real binary: in the demo (no PBX,
// each node its centre's phone) bergen's volunteer ticks "Answer calls in
// this browser" in the console in Chromium and switches phone on; a
// baresip softphone calls oslo's queue; oslo has nobody, so its node
// redirects the call to bergen, where the console rings; the volunteer
// answers and voice flows to the caller (baresip's RTP established), and
// after the caller hangs up the console asks for the categorisation.
func TestBinaryDemoBrowserPhone(t *testing.T) {
	pbxlab.Need(t)
	tab := browsertest.NewMediaBrowser(t, "")
	bin := buildBinary(t)
	httpOf, queue := startDemo(t, bin)

	browsertest.Run(t, tab, "log in at bergen",
		chromedp.Navigate("http://"+httpOf["bergen"]+"/console"),
		chromedp.WaitVisible("#login-submit", chromedp.ByQuery),
		chromedp.SendKeys("#volunteer", "bergen-kari", chromedp.ByQuery),
		chromedp.SendKeys("#password", DemoPassword, chromedp.ByQuery),
		chromedp.Click("#login-submit", chromedp.ByQuery))
	browsertest.Wait(t, tab, "the browser phone choice", `!document.querySelector('#desk').hidden && !document.querySelector('#phone-browser-label').hidden`, 15*time.Second)
	browsertest.Run(t, tab, "browser phone on", chromedp.Click("#phone-browser", chromedp.ByQuery))
	browsertest.Wait(t, tab, "the microphone open", `document.querySelector('#phone-browser').checked && !!window.softphone.stream`, 10*time.Second)
	browsertest.Run(t, tab, "calls on", chromedp.Click("#available-phone", chromedp.ByQuery))

	caller := pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "caller", Answer: pbxlab.AnswerNever})
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	ringing := `(() => { const o = document.querySelector('#offers .offer[data-browser]'); return !!o && window.softphone.ringing; })()`
	// Until gossip shows bergen's volunteer free at oslo, a call gets the
	// busy message: hang up and call again.
	count := func(ev string) int {
		n := 0
		for _, e := range caller.EventTypes() {
			if e == ev {
				n++
			}
		}
		return n
	}
	waitFor(t, 60*time.Second, "the console ringing for a call to oslo", func() bool {
		established, closed := count("CALL_ESTABLISHED"), count("CALL_CLOSED")
		if err := caller.Dial(ctx, "sip:queue-nb@"+queue); err != nil {
			t.Fatal(err)
		}
		for {
			var ok bool
			if err := chromedp.Run(tab, chromedp.Evaluate(ringing, &ok)); err == nil && ok {
				return true
			}
			switch {
			case count("CALL_ESTABLISHED") > established: // the busy message
				_ = caller.Hangup(ctx)
				fedtest.Eventually(t, 10*time.Second, "the busy call closed", func() bool { return count("CALL_CLOSED") > closed })
				return false
			case count("CALL_CLOSED") > closed:
				return false
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	// Events of the earlier calls (the busy message) are still in the
	// phone's list: count, do not Await.
	established, rtp := count("CALL_ESTABLISHED"), count("CALL_RTPESTAB")
	browsertest.Run(t, tab, "answer", chromedp.Click("#offers .offer button.answer-call", chromedp.ByQuery))
	fedtest.Eventually(t, 15*time.Second, "the call answered in the browser and voice reaching the caller", func() bool {
		return count("CALL_ESTABLISHED") > established && count("CALL_RTPESTAB") > rtp
	})
	if err := caller.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	browsertest.Wait(t, tab, "the categorisation form", `!!document.querySelector('#chats .chat.call .categorise input[name=topic]')`, 10*time.Second)
}
