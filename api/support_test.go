package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/logsink"
	"github.com/helpmesh/helpmesh/switchboard"
)

// supportRig is issue 16's scene on real centres: a visitor at c1 (where
// nobody is signed in) talks with Bea at c2 (no supervisor on duty there);
// Sol, a supervisor at c3, is on duty. Every centre logs at debug level
// into logs.
type supportRig struct {
	fed        *pageFederation
	c1, c2, c3 *pageCentre
	logs       *logsink.Buffer
	bea, sol   *goVisitor // their consoles' sockets
	visitor    *goVisitor
	contact    string
}

func newSupportRig(t *testing.T) *supportRig {
	t.Helper()
	logs := &logsink.Buffer{}
	l := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fed := newEntryFederationWith(t, 3, func(_ string, cfg *pageConfig) { cfg.node.Logger, cfg.log = l, l })
	r := &supportRig{fed: fed, c1: fed.Member("c1"), c2: fed.Member("c2"), c3: fed.Member("c3"), logs: logs}
	const pw = "correct horse battery"
	staffEnrol(t, r.c2, consensus.Volunteer{ID: "v-bea", Centre: "c2", Alias: "Bea", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 2, Role: consensus.RoleVolunteer}, pw)
	staffEnrol(t, r.c3, consensus.Volunteer{ID: "s-sol", Centre: "c3", Alias: "Sol", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 1, Role: consensus.RoleSupervisor}, pw)

	sc, status, body := dialSupervisor(t, r.c3, pageLogin(t, r.c3, "s-sol", pw))
	if sc == nil {
		t.Fatalf("Sol's supervisor console: HTTP %d %s", status, body)
	}
	r.sol = watchGoVisitor(t, sc)
	r.sol.send(map[string]any{"type": "on_duty", "on": true})
	awaitOnDutyAt(t, r.c2, "c3", 1)

	conn, first, status, body := openConsoleWith(t, r.c2, pageLogin(t, r.c2, "v-bea", pw))
	if conn == nil || first != "policy" {
		t.Fatalf("Bea's console: %q, HTTP %d %s", first, status, body)
	}
	r.bea = watchGoVisitor(t, conn)
	r.bea.send(map[string]any{"type": "available", "channel": "chat", "on": true})
	waitFreeAt(t, r.c1, "c2", "nb")
	r.visitor = dialGoVisitor(t, r.c1, "nb")
	offer := r.bea.await("the offer", frameIs("offer"))
	r.contact, _ = offer["contact"].(string)
	r.bea.send(map[string]any{"type": "accept", "contact": r.contact})
	r.visitor.await("connected", frameIs("connected"))
	return r
}

// beaSays sends a message from Bea's console and waits for the visitor.
func (r *supportRig) beaSays(id, text string) {
	r.bea.send(map[string]any{"type": "message", "contact": r.contact, "id": id, "text": text})
	r.visitor.await("Bea's "+id, func(f map[string]any) bool { return f["type"] == "message" && f["text"] == text })
}

// visitorSays sends a visitor's message and waits for Bea's console.
func (r *supportRig) visitorSays(id, text string) {
	r.visitor.send(map[string]any{"type": "message", "id": id, "text": text})
	r.bea.await("the visitor's "+id, func(f map[string]any) bool { return f["type"] == "message" && f["text"] == text })
}

func readIs(kind, by, text string) func(map[string]any) bool {
	return func(f map[string]any) bool {
		return f["type"] == "read" && f["kind"] == kind && (by == "" || f["by"] == by) && (text == "" || f["text"] == text)
	}
}

// scrapeMetrics is pc's /metrics, which must carry the support counters.
func scrapeMetrics(t *testing.T, pc *pageCentre) []byte {
	t.Helper()
	resp, err := http.Get(pc.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("helpmesh_support_requests_total")) {
		t.Fatalf("%s /metrics: HTTP %d without the support counters", pc.node.Centre(), resp.StatusCode)
	}
	return b
}

// allFrames is every frame g got, as JSON.
func (v *goVisitor) allFrames() []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	b, _ := json.Marshal(v.seen)
	return b
}

// Issue 16, done-when points 1, 4 and 5 on real centres and sockets. Bea
// at c2 asks for support (risk) in an overflowed conversation from c1; c2
// has no supervisor on duty, so Sol at c3 gets the alert (naming Bea, c2
// and the reason, nothing of the visitor); Bea hears it ring at c3, then
// that Sol is coming; the visitor is told a supervisor reads along (the
// default policy). Sol reads what is said from then on, not before, and
// whispers: Bea gets the note, the visitor's socket never does. Then c3
// crashes: Bea hears the support is over, and the conversation goes on
// both ways with no requeue, no end and no lost message. Afterwards no
// file under any centre's data directory, no log line, no metric and no
// audit entry holds a word of the conversation or the whisper; c2's KPIs
// count one request for risk, taken.
func TestSupportAcrossCentresReadAlongWhisperAndTheSupervisorsCentreDying(t *testing.T) {
	r := newSupportRig(t)
	const (
		before  = "canary-before-support jeg er redd"
		during  = "canary-during-support jeg har en plan"
		reply   = "canary-bea-reply takk for at du sier det"
		whisper = "canary-whisper ask about the plan and the means"
		after   = "canary-after-loss er du der fortsatt"
		reply2  = "canary-bea-after ja, jeg er her"
	)
	r.visitorSays("m1", before)

	r.bea.send(map[string]any{"type": "ask_support", "contact": r.contact, "reason": "risk"})
	r.bea.await("the request ringing at c3", func(f map[string]any) bool {
		return f["type"] == "support" && f["state"] == "asked" && f["centre"] == "c3"
	})
	alert := r.sol.await("the alert", frameIs("support_asked"))
	if alert["reason"] != "risk" || alert["volunteer"] != "Bea" || alert["centre"] != "c2" || alert["channel"] != "chat" || alert["language"] != "nb" {
		t.Fatalf("alert %v", alert)
	}
	if s, _ := alert["support"].(string); s == "" || s == r.contact {
		t.Fatalf("the alert's id %q: must be its own, never the contact's", s)
	}
	r.sol.send(map[string]any{"type": "take", "support": alert["support"]})
	r.bea.await("Sol coming", func(f map[string]any) bool {
		return f["type"] == "support" && f["state"] == "coming" && f["supervisor"] == "Sol" && f["centre"] == "c3"
	})
	r.visitor.await("told a supervisor reads along", frameIs("supervised"))

	r.visitorSays("m2", during)
	r.sol.await("the visitor's message read along", readIs("message", "visitor", during))
	r.beaSays("r1", reply)
	r.sol.await("Bea's message read along", readIs("message", "volunteer", reply))
	r.sol.send(map[string]any{"type": "whisper", "support": alert["support"], "id": "w1", "text": whisper})
	r.bea.await("the whisper", func(f map[string]any) bool {
		return f["type"] == "whisper" && f["text"] == whisper && f["supervisor"] == "Sol" && f["contact"] == r.contact
	})
	r.sol.await("the whisper delivered", func(f map[string]any) bool { return f["type"] == "read" && f["kind"] == "delivered" && f["id"] == "w1" })
	if bytes.Contains(r.sol.allFrames(), []byte(before)) {
		t.Error("Sol read what was said before she took the request")
	}
	// A volunteer cannot read along: the supervisor console refuses her,
	// and her console has no such frame.
	if conn, status, body := dialSupervisor(t, r.c2, pageLogin(t, r.c2, "v-bea", "correct horse battery")); conn != nil || status != http.StatusForbidden {
		t.Fatalf("Bea's supervisor console: HTTP %d %s", status, body)
	}
	r.bea.send(map[string]any{"type": "read_along", "contact": r.contact})
	r.bea.await("a refused read_along", func(f map[string]any) bool {
		return f["type"] == "error" && f["code"] == "malformed" || f["code"] == "unknown_type"
	})

	// c3's metrics while Sol reads along: counts only.
	c3metrics := scrapeMetrics(t, r.c3)

	// Point 5: the supervisor's centre dies.
	r.c3.node.Crash()
	over := r.bea.await("the support over", func(f map[string]any) bool { return f["type"] == "support" && f["state"] == "over" })
	if !strings.Contains(over["reason"].(string), "supervisor's centre was lost") {
		t.Errorf("support over: %v", over)
	}
	r.visitorSays("m3", after)
	r.beaSays("r2", reply2)
	vf := r.visitor.allFrames()
	var frames []map[string]any
	_ = json.Unmarshal(vf, &frames)
	connected := 0
	for _, f := range frames {
		switch f["type"] {
		case "requeued", "ended", "closed", "whisper", "move":
			t.Errorf("the visitor got %v", f)
		case "connected":
			connected++
		}
	}
	if connected != 1 {
		t.Errorf("the visitor was connected %d times, want once", connected)
	}
	for _, secret := range []string{whisper, "Sol", "c3"} {
		if bytes.Contains(vf, []byte(secret)) {
			t.Errorf("the visitor's socket carried %q", secret)
		}
	}
	if got := r.visitor.messages(); strings.Join(got, "|") != strings.Join([]string{reply, reply2}, "|") {
		t.Errorf("the visitor's messages %q", got)
	}

	// Asking is paced per console (each request rings supervisors, maybe
	// across the country): the burst of 3 is spent after two more asks.
	for range 3 {
		r.bea.send(map[string]any{"type": "ask_support", "contact": r.contact})
	}
	if f := r.bea.await("slow_down for a fourth request", func(f map[string]any) bool { return f["type"] == "error" && f["code"] == "slow_down" }); f["retry_after_seconds"] == nil {
		t.Errorf("slow_down without retry_after_seconds: %v", f)
	}

	r.visitor.send(map[string]any{"type": "end"})
	r.bea.await("the end", frameIs("ended"))
	r.bea.send(map[string]any{"type": "end", "contact": r.contact, "topics": []string{"other"}, "age_group": "unknown"})
	r.bea.await("categorised", frameIs("categorised"))

	st := r.c2.node.Switchboard().Stats()
	if st.SupportAsked["risk"] != 1 || st.SupportAsked["none"] < 1 || st.SupportRequests[switchboard.SupportKey{Reason: "risk", Result: "taken"}] != 1 || st.TimeToSupport.Count != 1 {
		t.Errorf("c2's support KPIs: %v %v %+v", st.SupportAsked, st.SupportRequests, st.TimeToSupport)
	}
	if tot := r.c1.node.Switchboard().Stats().Total(); tot.Offered != 1 || tot.AnsweredOverflow != 1 {
		t.Errorf("c1's KPIs: %+v, want 1 offered, 1 answered by overflow", tot)
	}

	// Point 4: the privacy canary, across all three centres.
	canaries := []string{before, during, reply, whisper, after, reply2, r.contact}
	scan := func(what string, b []byte) {
		for _, c := range canaries {
			if bytes.Contains(b, []byte(c)) {
				t.Errorf("%s holds %.30q", what, c)
			}
		}
	}
	scan("the logs", []byte(r.logs.String()))
	scan("c3's metrics", c3metrics)
	for _, pc := range []*pageCentre{r.c1, r.c2} {
		scan(pc.node.Centre()+"'s metrics", scrapeMetrics(t, pc))
	}
	audited := false
	for _, pc := range []*pageCentre{r.c1, r.c2, r.c3} {
		err := filepath.WalkDir(pc.node.DataDir(), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil // a file the crashed store still holds open
			}
			scan(path, b)
			if d.Name() == AuditFile && bytes.Contains(b, []byte(`"actor":"s-sol","role":"supervisor","action":"supervisor.take_support"`)) {
				audited = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !audited {
		t.Error("c3's audit log has no take_support by s-sol")
	}
}

// recordSocketJS keeps every frame a page's sockets receive in
// window.__frames, so a test can assert on what reached the visitor's
// socket as well as what the page shows.
const recordSocketJS = `(function () {
  var W = window.WebSocket;
  window.__frames = [];
  var R = function (u, p) {
    var s = p === undefined ? new W(u) : new W(u, p);
    s.addEventListener('message', function (ev) { window.__frames.push(String(ev.data)); });
    return s;
  };
  R.prototype = W.prototype;
  ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'].forEach(function (k) { R[k] = W[k]; });
  window.WebSocket = R;
})();`

// Issue 16, done-when point 1, in three browsers: a visitor's chat page at
// c1, Bea's console at c2 and Sol's supervisor page at c3 (c2 has no
// supervisor on duty). Bea presses "ask for support" with the reason
// "risk"; Sol's page rings with it and she takes it; Bea's console shows
// that Sol reads along; the visitor's page is told a supervisor supports
// the volunteer. Sol's page shows the messages written from then on, both
// ways; her note appears on Bea's console, marked delivered on hers, and
// is neither on the visitor's page nor in any frame the visitor's socket
// received.
func TestSupportInThreeBrowsers(t *testing.T) {
	fed := newEntryFederation(t, 3)
	c1, c2, c3 := fed.Member("c1"), fed.Member("c2"), fed.Member("c3")
	const pw = "correct horse battery"
	staffEnrol(t, c2, consensus.Volunteer{ID: "v-bea", Centre: "c2", Alias: "Bea", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 1, Role: consensus.RoleVolunteer}, pw)
	staffEnrol(t, c3, consensus.Volunteer{ID: "s-sol", Centre: "c3", Alias: "Sol", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 1, Role: consensus.RoleSupervisor}, pw)

	sol := newTab(t, newBrowser(t))
	consoleLogin(t, sol, c3, "s-sol", pw)
	browsertest.Run(t, sol, "open the supervisor page", chromedp.Navigate(c3.url+"/supervisor"))
	browsertest.Wait(t, sol, "the desk", `!document.querySelector('#view').hidden && document.documentElement.hasAttribute('data-lang-loaded')`, 15*time.Second)
	browsertest.Run(t, sol, "go on duty", chromedp.Click("#on-duty", chromedp.ByQuery))
	browsertest.Wait(t, sol, "on duty", `document.querySelector('#duty-card').classList.contains('is-on')`, 15*time.Second)
	awaitOnDutyAt(t, c2, "c3", 1)

	bea := newTab(t, newBrowser(t))
	consoleLogin(t, bea, c2, "v-bea", pw)
	browsertest.Run(t, bea, "available for chat", chromedp.Click("#available-chat", chromedp.ByQuery))
	waitFreeAt(t, c1, "c2", "nb")

	visitor := newTab(t, newBrowser(t))
	vpRun(t, visitor, "record the socket", chromedp.ActionFunc(func(ctx context.Context) error {
		_, err := page.AddScriptToEvaluateOnNewDocument(recordSocketJS).Do(ctx)
		return err
	}))
	vpRun(t, visitor, "open /chat", chromedp.Navigate(c1.url+"/chat"), chromedp.WaitVisible("#start", chromedp.ByID))
	vpWait(t, visitor, "the page's texts", `document.documentElement.getAttribute('data-lang-loaded') && document.querySelectorAll('#age-group option').length > 1`)
	vpRun(t, visitor, "choose nb", chromedp.SetValue("#lang", "nb", chromedp.ByID))
	vpRun(t, visitor, "start", chromedp.Click("#start", chromedp.ByID))
	browsertest.Wait(t, bea, "the offer", `document.querySelector('#offers button.accept') !== null`, 20*time.Second)
	browsertest.Run(t, bea, "accept", chromedp.Click("#offers button.accept", chromedp.ByQuery))
	vpWaitPhase(t, visitor, "connected")
	browsertest.Wait(t, bea, "the chat card", `document.querySelector('#chats .chat .ask-support') !== null`, 15*time.Second)
	var notesBefore int
	vpEval(t, visitor, `document.querySelectorAll('#messages .msg.system').length`, &notesBefore)

	browsertest.Run(t, bea, "ask for support: risk",
		chromedp.SetValue("#chats .chat .support-reason", "risk", chromedp.ByQuery),
		chromedp.Click("#chats .chat .ask-support", chromedp.ByQuery))
	browsertest.Wait(t, sol, "the alert", `document.querySelector('#alerts li.alert[data-reason="risk"]') !== null && document.querySelector('#alerts li.alert').textContent.includes('Bea')`, 20*time.Second)
	browsertest.Run(t, sol, "take it", chromedp.Click("#alerts li.alert button.take", chromedp.ByQuery))
	browsertest.Wait(t, sol, "the seat", `document.querySelector('#seats .seat[data-state="open"] textarea.whisper-text') !== null && document.querySelector('#alerts li') === null`, 15*time.Second)
	browsertest.Wait(t, bea, "Sol reading along", `document.querySelector('#chats .support[data-state="coming"] .support-state').textContent.includes('Sol')`, 15*time.Second)
	vpWait(t, visitor, "told of the supervisor", `document.querySelectorAll('#messages .msg.system').length > `+strconv.Itoa(notesBefore))

	const (
		said    = "canary-3b jeg vet ikke hva jeg skal gjøre"
		reply   = "canary-3b-reply jeg er her sammen med deg"
		whisper = "canary-3b-whisper spør om hun er trygg nå"
	)
	visitorWrites(t, visitor, said)
	browsertest.Wait(t, sol, "the visitor's message read along", `[...document.querySelectorAll('#seats .seat .msg.visitor')].some(m => m.textContent.includes(`+jsString(said)+`))`, 15*time.Second)
	browsertest.Run(t, bea, "reply", chromedp.SendKeys("#chats textarea.reply", reply, chromedp.ByQuery), chromedp.Click("#chats button.send", chromedp.ByQuery))
	pageShows(t, visitor, "#messages .msg.volunteer", reply)
	browsertest.Wait(t, sol, "Bea's reply read along", `[...document.querySelectorAll('#seats .seat .msg.volunteer')].some(m => m.textContent.includes(`+jsString(reply)+`))`, 15*time.Second)
	browsertest.Run(t, sol, "whisper", chromedp.SendKeys("#seats .seat textarea.whisper-text", whisper, chromedp.ByQuery), chromedp.Click("#seats .seat button.whisper-send", chromedp.ByQuery))
	browsertest.Wait(t, bea, "the whisper", `[...document.querySelectorAll('#chats .msg.whisper')].some(m => m.textContent.includes(`+jsString(whisper)+`) && m.textContent.includes('Sol'))`, 15*time.Second)
	browsertest.Wait(t, sol, "the whisper delivered", `document.querySelector('#seats .seat .msg.whisper.delivered') !== null`, 15*time.Second)
	screenshot(t, sol, "supervisor-reading-along")
	screenshot(t, bea, "console-with-whisper")

	// The visitor's page and socket: the conversation, the notice, and
	// not a trace of the note or the supervisor.
	pageShows(t, visitor, "#messages .msg.volunteer", reply)
	var body string
	var frames []string
	vpEval(t, visitor, `document.body.innerText`, &body)
	vpEval(t, visitor, `window.__frames`, &frames)
	all := strings.Join(frames, "\n")
	if !strings.Contains(all, `"type":"supervised"`) || !strings.Contains(all, reply) {
		t.Fatalf("the recorded socket lacks the conversation (%d frames): %.300s", len(frames), all)
	}
	for _, secret := range []string{whisper, "whisper", "Sol", "c3"} {
		if strings.Contains(body, secret) || strings.Contains(all, secret) {
			t.Errorf("the visitor's page or socket holds %q", secret)
		}
	}
}

// Issue 16's "hand a conversation ... to the supervisor", across centres:
// Bea at c2 asks for support, Sol at c3 takes it and reads along; Sol has
// her own console open at c3 (not switched on for offers: she chose this
// one chat). Bea hands the chat to Sol, warm, with a note: only Sol's
// console rings, with the note; the visitor's same socket hears
// "transferred" to Sol, the seat ends (Sol now has the chat itself), Bea
// leaves, and the visitor and Sol talk on. c1 counts one contact, and one
// warm transfer to another centre; the note never reaches the visitor.
func TestHandOverToTheSupervisorAcrossCentres(t *testing.T) {
	r := newSupportRig(t)
	conn, first, status, body := openConsoleWith(t, r.c3, pageLogin(t, r.c3, "s-sol", "correct horse battery"))
	if conn == nil || first != "policy" {
		t.Fatalf("Sol's volunteer console: %q, HTTP %d %s", first, status, body)
	}
	solCon := watchGoVisitor(t, conn)
	r.visitorSays("m1", "jeg trenger noen som vet mer")

	// Handing over before anyone reads along is refused, clearly.
	r.bea.send(map[string]any{"type": "transfer", "contact": r.contact, "to": "supervisor", "warm": true})
	if f := r.bea.await("a refused hand-over", func(f map[string]any) bool { return f["type"] == "error" && f["code"] == "bad_request" }); !strings.Contains(f["error"].(string), "no supervisor reads along") {
		t.Fatalf("refusal: %v", f)
	}

	r.bea.send(map[string]any{"type": "ask_support", "contact": r.contact, "reason": "unsure"})
	alert := r.sol.await("the alert", frameIs("support_asked"))
	r.sol.send(map[string]any{"type": "take", "support": alert["support"]})
	r.bea.await("Sol coming", func(f map[string]any) bool { return f["type"] == "support" && f["state"] == "coming" })

	const note = "canary-handover she has a plan for tonight"
	r.bea.send(map[string]any{"type": "transfer", "contact": r.contact, "to": "supervisor", "warm": true, "note": note})
	offer := solCon.await("the hand-over ringing on Sol's console", frameIs("offer"))
	if offer["transfer"] != true || offer["note"] != note || offer["contact"] != r.contact {
		t.Fatalf("Sol's offer: %v", offer)
	}
	solCon.send(map[string]any{"type": "accept", "contact": r.contact})
	r.visitor.await("transferred to Sol", func(f map[string]any) bool { return f["type"] == "transferred" && f["alias"] == "Sol" })
	r.bea.await("accepted", frameIs("transfer_accepted"))
	r.bea.await("the support over", func(f map[string]any) bool {
		return f["type"] == "support" && f["state"] == "over" && f["reason"] == "the conversation was handed over"
	})
	r.sol.await("the seat ended", func(f map[string]any) bool { return f["type"] == "support_ended" && f["support"] == alert["support"] })
	r.bea.send(map[string]any{"type": "leave", "contact": r.contact})
	r.bea.await("Bea's side ended", func(f map[string]any) bool { return f["type"] == "ended" && f["by"] == "transferred" })

	r.visitor.send(map[string]any{"type": "message", "id": "m2", "text": "er det deg nå?"})
	solCon.await("the visitor's message at Sol's console", func(f map[string]any) bool { return f["type"] == "message" && f["text"] == "er det deg nå?" })
	solCon.send(map[string]any{"type": "message", "contact": r.contact, "id": "s1", "text": "ja, jeg heter Sol"})
	r.visitor.await("Sol's message", func(f map[string]any) bool { return f["type"] == "message" && f["text"] == "ja, jeg heter Sol" })
	r.visitor.send(map[string]any{"type": "end"})
	solCon.await("the end at Sol's console", frameIs("ended"))

	if bytes.Contains(r.visitor.allFrames(), []byte(note)) {
		t.Error("the handover note reached the visitor's socket")
	}
	fedtest.Eventually(t, 10*time.Second, "c1 counting the contact once, answered by overflow", func() bool {
		tot := r.c1.node.Switchboard().Stats().Total()
		return tot.Offered == 1 && tot.AnsweredOverflow == 1
	})
	if got := r.c1.node.Switchboard().Stats().Transfers[switchboard.TransferKey{Kind: "warm", Result: "accepted", Scope: "centre"}]; got != 1 {
		t.Errorf("c1's transfers: %v", r.c1.node.Switchboard().Stats().Transfers)
	}
	for _, pc := range []*pageCentre{r.c2, r.c3} {
		if tot := pc.node.Switchboard().Stats().Total(); tot.Offered != 0 {
			t.Errorf("%s counts a contact of its own: %+v", pc.node.Centre(), tot)
		}
	}
}
