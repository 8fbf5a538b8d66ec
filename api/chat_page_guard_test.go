package api

// The chat page under the flood guards: a real visitor who types fast, or
// wrote a lot while waiting, is never refused and loses nothing.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/switchboard"
)

// The page keeps to the documented pace itself: messages written while
// queued, and more written fast once connected, all reach the volunteer in
// order, the ones past the burst marked "sending in a moment" meanwhile,
// and the centre never has to refuse one.
func TestChatPageKeepsToThePace(t *testing.T) {
	browser := newBrowser(t)
	c := startPageFederation(t, 1)[0]
	con, vol := vpSignIn(t, c, "Kari")
	ctx := vpOpenChat(t, browser, c.url)
	vpRun(t, ctx, "start the chat", chromedp.Click("#start", chromedp.ByID))
	vpWaitPhase(t, ctx, "queued")

	typeFast := func(from, to int) {
		var script strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&script, "document.getElementById('message').value = 'msg %d'; document.getElementById('send').click();", i)
		}
		script.WriteString("true")
		vpEval(t, ctx, script.String(), nil)
	}
	const whileQueued, total = 12, 16 // past the burst of 10
	typeFast(0, whileQueued)
	vol.accept(t, con)
	vpWaitPhase(t, ctx, "connected")
	typeFast(whileQueued, total)
	vpWait(t, ctx, "messages waiting for the pace", `document.querySelector('#messages .pending .note') !== null`)
	screenshot(t, ctx, "visitor-keeps-pace")

	var got []string
	deadline := time.After(60 * time.Second)
	for len(got) < total {
		select {
		case e := <-vol.events:
			if e.Kind == switchboard.EventMessage {
				got = append(got, e.Text)
			}
		case <-deadline:
			t.Fatalf("the volunteer got %d of %d messages: %q", len(got), total, got)
		}
	}
	for i, text := range got {
		if want := fmt.Sprintf("msg %d", i); text != want {
			t.Fatalf("message %d is %q, want %q (in order): %q", i, text, want, got)
		}
	}
	vpWait(t, ctx, "every message delivered", fmt.Sprintf(
		`document.querySelectorAll('#messages .delivered').length === %d && document.querySelectorAll('#messages .pending').length === 0`, total))
	for _, reason := range []string{refusedSlowDown, refusedFlooding, refusedFrames} {
		if v := refusalCount(t, c.srv, whoVisitor, reason); v != 0 {
			t.Fatalf("the centre refused the page %v times for %s", v, reason)
		}
	}
}
