package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/switchboard"
)

// dialResumable opens /v1/chat at pc with resume=1.
func dialResumable(t *testing.T, pc *pageCentre, lang string) *goVisitor {
	t.Helper()
	return dialGoVisitorPath(t, pc.url, "/v1/chat?channel=chat&lang="+lang+"&resume=1")
}

// dialGoVisitorPath is dialGoVisitor at any path of base.
func dialGoVisitorPath(t *testing.T, base, path string) *goVisitor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, nil)
	if err != nil {
		t.Fatalf("visitor dial %s: %v", path, err)
	}
	return watchGoVisitor(t, conn)
}

// resumeAt opens base's resume socket and sends the resume frame.
func resumeAt(t *testing.T, base, secret string, received int) *goVisitor {
	t.Helper()
	v := dialGoVisitorPath(t, base, "/v1/chat/resume")
	v.send(map[string]any{"type": "resume", "secret": secret, "received": received})
	return v
}

// messages are the texts of the message frames v got, in order.
func (v *goVisitor) messages() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for _, f := range v.seen {
		if f["type"] == "message" {
			out = append(out, f["text"].(string))
		}
	}
	return out
}

// resumedRig is an overflowed conversation: a visitor who can resume at
// c1, where nobody is signed in, talking with Bea at c2.
type resumedRig struct {
	fed     *pageFederation
	c1, c2  *pageCentre
	con     *switchboard.Console
	vol     *vpVolunteer
	visitor *goVisitor
	contact string
	url     string
	secret  string
}

func newResumedRig(t *testing.T) *resumedRig {
	fed := newEntryFederation(t, 2)
	awaitURLs(t, fed)
	r := &resumedRig{fed: fed, c1: fed.Member("c1"), c2: fed.Member("c2")}
	r.con, r.vol = vpSignIn(t, r.c2, "Bea")
	waitFreeAt(t, r.c1, "c2", "nb")
	r.visitor = dialResumable(t, r.c1, "nb")
	r.contact = r.vol.accept(t, r.con)
	f := r.visitor.await("connected", frameIs("connected"))
	res, _ := f["resume"].(map[string]any)
	r.url, _ = res["url"].(string)
	r.secret, _ = res["secret"].(string)
	if r.url != r.c2.url || len(r.secret) != resumeSecretChars {
		t.Fatalf("connected frame %v: want resume at %s with a %d-character secret", f, r.c2.url, resumeSecretChars)
	}
	// One message each way before the loss.
	r.visitor.send(map[string]any{"type": "message", "id": "v1", "text": "before 1"})
	r.vol.awaitMessage(t, "before 1")
	if err := r.con.Send(r.contact, "w1", "bea before"); err != nil {
		t.Fatal(err)
	}
	r.visitor.await("Bea's first message", func(f map[string]any) bool { return f["text"] == "bea before" })
	return r
}

// live says whether Bea's conversation is still going.
func (r *resumedRig) live() bool { return r.con.Typing(r.contact) == nil }

// awaitKind waits for a console event of kind.
func (g *vpVolunteer) awaitKind(t *testing.T, kind switchboard.EventKind) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-g.events:
			if e.Kind == kind {
				return
			}
		case <-deadline:
			t.Fatalf("the volunteer's console never heard %q", kind)
		}
	}
}

// afterLoss is the rest of every resume test: Bea writes while the
// visitor is away, the visitor resumes at c2 with its count, gets exactly
// what it missed, in order, re-sends what it never saw delivered (passed on
// once), and the conversation goes on and ends with one count at c2.
func (r *resumedRig) afterLoss(t *testing.T, lostAt time.Time) {
	r.vol.awaitKind(t, switchboard.EventReconnecting)
	for i := 1; i <= 3; i++ {
		if err := r.con.Send(r.contact, fmt.Sprintf("gap%d", i), fmt.Sprintf("bea in the gap %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nv := resumeAt(t, r.c2.url, r.secret, 1)
	nv.await("resumed", frameIs("resumed"))
	t.Logf("resumed %v after the loss", time.Since(lostAt).Round(time.Millisecond))
	r.vol.awaitKind(t, switchboard.EventResumed)
	nv.await("the gap's last message", func(f map[string]any) bool { return f["text"] == "bea in the gap 3" })
	// The visitor re-sends "before 1" (as a page does when unsure) and a
	// new one: Bea sees the new one once and the old one not again.
	nv.send(map[string]any{"type": "message", "id": "v1", "text": "before 1"})
	nv.send(map[string]any{"type": "message", "id": "v2", "text": "after resume"})
	r.vol.awaitMessage(t, "after resume")
	nv.await("delivered v1 again", func(f map[string]any) bool { return f["type"] == "delivered" && f["id"] == "v1" })
	if err := r.con.Send(r.contact, "w2", "bea after"); err != nil {
		t.Fatal(err)
	}
	nv.await("Bea's next message", func(f map[string]any) bool { return f["text"] == "bea after" })
	want := []string{"bea in the gap 1", "bea in the gap 2", "bea in the gap 3", "bea after"}
	if got := nv.messages(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the resumed page got %q, want %q (each once, in order, nothing it had)", got, want)
	}
	select {
	case e := <-r.vol.events:
		if e.Kind == switchboard.EventMessage {
			t.Errorf("Bea got %q again", e.Text)
		}
	default:
	}
	// A used secret opens nothing, even while the conversation goes on.
	again := resumeAt(t, r.c2.url, r.secret, 0)
	again.await("refusal of a used secret", func(f map[string]any) bool { return f["code"] == "resume_refused" })
	nv.send(map[string]any{"type": "end"})
	nv.await("ended", frameIs("ended"))
	fedtest.Eventually(t, 10*time.Second, "c2 counting the received conversation once", func() bool {
		st := r.c2.node.Switchboard().Stats()
		return st.Received(switchboard.OfferAccepted) == 1 && st.Total().Offered == 0 && !r.live()
	})
}

// The entry centre of an overflowed conversation crashes: the visitor goes
// on at the volunteer's centre with the same volunteer.
func TestOverflowedConversationResumesWhenEntryCentreCrashes(t *testing.T) {
	r := newResumedRig(t)
	lostAt := time.Now()
	r.c1.node.Crash()
	r.afterLoss(t, lostAt)
}

// The entry centre is cut off from the volunteer's centre while the visitor
// still reaches it: it tells the page to move; the page resumes at c2 and
// leaves c1, which counts the contact once, answered by overflow.
func TestOverflowedConversationMovesWhenEntryCentreIsCutOff(t *testing.T) {
	r := newResumedRig(t)
	lostAt := time.Now()
	r.fed.Partition("c1")
	r.visitor.await("move", frameIs("move"))
	r.afterLoss(t, lostAt)
	_ = r.visitor.conn.Close(websocket.StatusNormalClosure, "resumed elsewhere")
	fedtest.Eventually(t, 10*time.Second, "c1 counting the contact answered by overflow", func() bool {
		st := r.c1.node.Switchboard().Stats().Total()
		return st.Offered == 1 && st.AnsweredOverflow == 1 && st.Abandoned == 0 && st.InProgress == 0
	})
	if n := r.c1.node.Switchboard().Stats().Moved(switchboard.StateConnected, switchboard.StateQueued); n != 0 {
		t.Errorf("c1 requeued the contact %d times", n)
	}
}

// A page told to move that cannot resume stays: the contact waits at its
// centre again, at the front, as it did before resuming existed.
func TestMovedPageThatStaysIsRequeued(t *testing.T) {
	r := newResumedRig(t)
	r.fed.Partition("c1")
	r.visitor.await("move", frameIs("move"))
	r.visitor.send(map[string]any{"type": "stay"})
	r.visitor.await("requeued", frameIs("requeued"))
	if n := r.c1.node.Switchboard().Stats().Moved(switchboard.StateConnected, switchboard.StateQueued); n != 1 {
		t.Errorf("c1 requeued the contact %d times, want 1", n)
	}
}

// Forged, malformed and expired secrets are refused alike and reveal
// nothing; a secret for a conversation that ended opens nothing.
func TestResumeRefusals(t *testing.T) {
	r := newResumedRig(t)
	forged := strings.Repeat("A", resumeSecretChars)
	for name, frame := range map[string]map[string]any{
		"forged":       {"type": "resume", "secret": forged, "received": 0},
		"short":        {"type": "resume", "secret": "abc", "received": 0},
		"not a resume": {"type": "message", "id": "x", "text": "hi"},
		"negative":     {"type": "resume", "secret": r.secret, "received": -1},
	} {
		v := dialGoVisitorPath(t, r.c2.url, "/v1/chat/resume")
		v.send(frame)
		f := v.await(name+" refused", func(f map[string]any) bool { return f["type"] == "error" })
		if f["code"] != "resume_refused" || f["error"] != switchboard.ErrResumeRefused.Error() {
			t.Errorf("%s: %v, want the one resume_refused answer", name, f)
		}
	}
	// Still live after the refusals: the real secret was not spent by them.
	if !r.live() {
		t.Fatal("the conversation ended")
	}
	// Expired: the conversation ends (Bea ends it), the secret opens nothing.
	if err := r.con.End(r.contact, switchboard.Categorisation{Topics: []string{"other"}, AgeGroup: "unknown"}); err != nil && !errors.Is(err, switchboard.ErrEnded) {
		t.Fatal(err)
	}
	r.visitor.await("ended", frameIs("ended"))
	v := resumeAt(t, r.c2.url, r.secret, 0)
	if f := v.await("refusal after the end", func(f map[string]any) bool { return f["type"] == "error" }); f["code"] != "resume_refused" {
		t.Errorf("after the end: %v", f)
	}
	// Nothing about a secret is logged: the refusals are counted only.
	res, err := http.Get(r.c2.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(body), `reason="resume"`) {
		t.Errorf("the refusals were not counted as reason=\"resume\"")
	}
}
