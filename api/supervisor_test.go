package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
	"github.com/helpmesh/helpmesh/node"
	"github.com/helpmesh/helpmesh/switchboard"
)

func TestDecodeSupervisorFrame(t *testing.T) {
	on, off := true, false
	good := map[string]supervisorFrame{
		`{"type":"on_duty","on":true}`:                             {Type: "on_duty", On: &on},
		`{"type":"on_duty","on":false}`:                            {Type: "on_duty", On: &off},
		`{"type":"take","support":"s1"}`:                           {Type: "take", Support: "s1"},
		`{"type":"leave","support":"s1"}`:                          {Type: "leave", Support: "s1"},
		`{"type":"whisper","support":"s1","id":"w1","text":"ask"}`: {Type: "whisper", Support: "s1", ID: "w1", Text: "ask"},
	}
	for in, want := range good {
		got, err := decodeSupervisorFrame([]byte(in))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("decode %s = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		`{"type":"on_duty"}`:                               "bad_frame",
		`{"type":"on_duty","on":null}`:                     "bad_frame",
		`{"type":"on_duty","on":"yes"}`:                    "malformed",
		`{"type":"on_duty","on":true,"who":"me"}`:          "malformed",
		`{"type":"read_along","contact":"k1"}`:             "malformed",
		`{"type":"whisper"}`:                               "bad_frame",
		`{"type":"take"}`:                                  "bad_frame",
		`{"type":"take","support":"s1","on":true}`:         "bad_frame",
		`{"type":"leave","support":"s1","text":"x"}`:       "bad_frame",
		`{"type":"whisper","support":"s1","id":"w"}`:       "bad_frame",
		`{"type":"read_along","support":"s1"}`:             "unknown_type",
		`{"on":true}`:                                      "bad_frame",
		`{"type":"on_duty","on":true} {}`:                  "malformed",
		`[{"type":"on_duty","on":true}]`:                   "malformed",
		string(bytes.Repeat([]byte(" "), maxFrameBytes+1)): "too_large",
	}
	for in, code := range bad {
		if _, err := decodeSupervisorFrame([]byte(in)); err == nil || errorCode(err) != code {
			t.Errorf("decode %.60q: %v, want code %s", in, err, code)
		}
	}
}

func FuzzSupervisorFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"on_duty","on":true}`, `{"type":"on_duty","on":false}`, `{"type":"on_duty"}`,
		`{"type":"on_duty","on":null}`, `{"type":"x"}`, `{}`, `[{}]`, `"x"`, `{"type":"on_duty","on":1}`,
		`{"type":"take","support":"s1"}`, `{"type":"whisper","support":"s1","id":"w1","text":"ask"}`, `{"type":"leave","support":"s"}`,
	} {
		f.Add([]byte(s))
	}
	f.Add(bytes.Repeat([]byte("{"), maxFrameBytes+1))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeSupervisorFrame(b)
		if err != nil {
			var fe *frameError
			if !errors.As(err, &fe) || fe.code == "" || fe.msg == "" {
				t.Fatalf("error %v is not a coded frame error", err)
			}
			if !reflect.DeepEqual(fr, supervisorFrame{}) {
				t.Fatalf("refused frame decoded as %+v", fr)
			}
			return
		}
		if len(b) > maxFrameBytes {
			t.Fatalf("accepted a %d-byte frame", len(b))
		}
		switch {
		case fr.Type == "on_duty" && fr.On != nil && fr.Support == "" && fr.Text == "":
		case (fr.Type == "take" || fr.Type == "leave") && fr.Support != "" && fr.On == nil && fr.Text == "":
		case fr.Type == "whisper" && fr.Support != "" && fr.ID != "" && fr.Text != "" && len(fr.Text) <= switchboard.MaxWhisperBytes:
		default:
			t.Fatalf("accepted %+v", fr)
		}
		if len(fr.Support) > 64 || len(fr.ID) > switchboard.MaxMessageIDBytes {
			t.Fatalf("accepted oversized ids %+v", fr)
		}
	})
}

// dialSupervisor opens pc's supervisor console with cookie (nil: none):
// the socket, or the refusal's status and body.
func dialSupervisor(t *testing.T, pc *pageCentre, cookie *http.Cookie) (*websocket.Conn, int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := http.Header{}
	if cookie != nil {
		h.Set("Cookie", cookie.Name+"="+cookie.Value)
	}
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(pc.url, "http")+"/v1/supervisor", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if resp == nil {
			t.Fatalf("dial supervisor console: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		return nil, resp.StatusCode, string(b)
	}
	return conn, http.StatusSwitchingProtocols, ""
}

// onDutyAt is what observer's federation view says of centre's
// supervisors on duty (-1: no availability from it yet).
func onDutyAt(observer *pageCentre, centre string) int {
	for _, c := range observer.node.Federation().Centres {
		if c.ID == centre && c.Availability != nil {
			return c.Availability.SupervisorsOnDuty
		}
	}
	return -1
}

func awaitOnDutyAt(t *testing.T, observer *pageCentre, centre string, want int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for onDutyAt(observer, centre) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s's federation view: %s has %d supervisors on duty after 20 s, want %d", observer.node.Centre(), centre, onDutyAt(observer, centre), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// deskOf decodes a desk frame kept as a map.
func deskOf(t *testing.T, f map[string]any) deskFrame {
	t.Helper()
	b, _ := json.Marshal(f)
	var d deskFrame
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("desk frame %s: %v", b, err)
	}
	return d
}

// Two real centres. A volunteer of c1 is refused c1's supervisor console
// (403, naming the role), as is a request without a session (401). A
// supervisor of c1 goes on duty: c2's federation view (and its
// /v1/federation) shows c1 with one supervisor on duty, then none after
// off duty, one again, none once the socket closes, and none after a
// logout closes a second console on duty. Meanwhile the desk
// snapshot shows a waiting contact's channel, language and wait, and the
// signed-in volunteer with her conversation, and nothing of either
// visitor: no message text, no contact id, no address. The audit log at c1
// has the duty's start and end under the supervisor's id.
func TestSupervisorOnDutyAcrossTheFederation(t *testing.T) {
	f := newPageFederation(t, 2)
	c1, c2 := f.Member("c1"), f.Member("c2")
	const supPw, volPw = "supervisor pass 1", "correct horse battery"
	staffEnrol(t, c1, consensus.Volunteer{ID: "sup1", Centre: "c1", Alias: "Sigrid", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 1, Role: consensus.RoleSupervisor}, supPw)
	staffEnrol(t, c1, consensus.Volunteer{ID: "v-ada", Centre: "c1", Alias: "Ada", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 2, Role: consensus.RoleVolunteer}, volPw)
	sup := pageLogin(t, c1, "sup1", supPw)
	vol := pageLogin(t, c1, "v-ada", volPw)

	// Refusals first.
	if conn, status, body := dialSupervisor(t, c1, vol); conn != nil || status != http.StatusForbidden ||
		!strings.Contains(body, "supervisor or coordinator role needed to open the supervisor console") {
		t.Fatalf("a volunteer's supervisor console: HTTP %d %s", status, body)
	}
	if conn, status, _ := dialSupervisor(t, c1, nil); conn != nil || status != http.StatusUnauthorized {
		t.Fatalf("the supervisor console without a session: HTTP %d", status)
	}

	// Ada takes a visitor in nb, who writes a canary; a visitor in en waits.
	conn, first, status, body := openConsoleWith(t, c1, vol)
	if conn == nil || first != "policy" {
		t.Fatalf("Ada's console: %q, HTTP %d %s", first, status, body)
	}
	con := watchGoVisitor(t, conn)
	con.send(map[string]any{"type": "available", "channel": "chat", "on": true})
	talking := dialGoVisitor(t, c1, "nb")
	offer := con.await("an offer", frameIs("offer"))
	contact, _ := offer["contact"].(string)
	con.send(map[string]any{"type": "accept", "contact": contact})
	talking.await("connected", frameIs("connected"))
	const canary = "canary-desk-7d1 jeg orker ikke mer"
	talking.send(map[string]any{"type": "message", "id": "m1", "text": canary})
	con.await("the canary", func(f map[string]any) bool { return f["type"] == "message" && f["text"] == canary })
	waiting := dialGoVisitor(t, c1, "en")
	waiting.await("queued", frameIs("queued"))

	sc, status, body := dialSupervisor(t, c1, sup)
	if sc == nil {
		t.Fatalf("the supervisor's console: HTTP %d %s", status, body)
	}
	sv := watchGoVisitor(t, sc)
	if d := deskOf(t, sv.await("the first desk", frameIs("desk"))); d.OnDuty || d.SupervisorsOnDuty != 0 || d.Centre != "c1" {
		t.Fatalf("the first desk: %+v, want c1's, off duty", d)
	}
	if got := onDutyAt(c2, "c1"); got > 0 {
		t.Fatalf("c2 sees %d supervisors on duty at c1 before anyone went on duty", got)
	}

	sv.send(map[string]any{"type": "on_duty", "on": true})
	d := deskOf(t, sv.await("a desk on duty with the waiting visitor and Ada in conversation", func(f map[string]any) bool {
		if f["type"] != "desk" {
			return false
		}
		d := deskOf(t, f)
		return d.OnDuty && d.SupervisorsOnDuty == 1 && len(d.Waiting) == 1 && len(d.Volunteers) == 1 &&
			len(d.Volunteers[0].Conversations) == 1
	}))
	if w := d.Waiting[0]; w.Channel != "chat" || w.Language != "en" || w.WaitedSeconds < 0 {
		t.Errorf("waiting: %+v, want chat/en", w)
	}
	// Sigrid is not in the list: a supervisor on duty is not a volunteer signed in.
	if a := d.Volunteers[0]; a.Alias != "Ada" || !reflect.DeepEqual(a.Available, []string{"chat"}) || a.Capacity != 2 ||
		a.Conversations[0].Channel != "chat" || a.Conversations[0].FromCentre != "" {
		t.Errorf("Ada: %+v", a)
	}
	awaitOnDutyAt(t, c2, "c1", 1)
	var fv node.FederationView
	staffAdmin(t, c2, http.MethodGet, "/v1/federation", nil, &fv)
	for _, c := range fv.Centres {
		if c.ID == "c1" && (c.Availability == nil || c.Availability.SupervisorsOnDuty != 1) {
			t.Errorf("c2's /v1/federation for c1: %+v, want 1 supervisor on duty", c.Availability)
		}
	}
	sv.await("c1 counted in the desk's federation", func(f map[string]any) bool {
		if f["type"] != "desk" {
			return false
		}
		for _, e := range deskOf(t, f).Federation {
			if e.Centre == "c1" && e.SupervisorsOnDuty != nil && *e.SupervisorsOnDuty == 1 {
				return true
			}
		}
		return false
	})

	sv.send(map[string]any{"type": "on_duty", "on": false})
	awaitOnDutyAt(t, c2, "c1", 0)
	sv.send(map[string]any{"type": "on_duty", "on": true})
	awaitOnDutyAt(t, c2, "c1", 1)
	_ = sc.Close(websocket.StatusNormalClosure, "")
	awaitOnDutyAt(t, c2, "c1", 0)
	if n := c1.node.Switchboard().SupervisorsOnDuty(); n != 0 {
		t.Fatalf("c1's desk counts %d on duty after the socket closed", n)
	}

	// Logging out ends the duty and closes the console.
	sc2, status, body := dialSupervisor(t, c1, sup)
	if sc2 == nil {
		t.Fatalf("the supervisor's second console: HTTP %d %s", status, body)
	}
	sv2 := watchGoVisitor(t, sc2)
	sv2.await("the desk", frameIs("desk"))
	sv2.send(map[string]any{"type": "on_duty", "on": true})
	awaitOnDutyAt(t, c2, "c1", 1)
	// A script flipping duty is slowed down (each change is gossiped and
	// audited): a fresh console's burst, then slow_down.
	for i := 0; i < dutyChangeBurst+1; i++ {
		sv2.send(map[string]any{"type": "on_duty", "on": i%2 == 1})
	}
	if f := sv2.await("slow_down for a flip flood", func(f map[string]any) bool { return f["code"] == "slow_down" }); f["retry_after_seconds"] == nil {
		t.Errorf("slow_down without retry_after_seconds: %v", f)
	}
	if status, body := cookieCall(t, c1, http.MethodPost, "/v1/volunteer/logout", sup, nil); status/100 != 2 {
		t.Fatalf("logout: HTTP %d %s", status, body)
	}
	sv2.await("closed on logout", frameIs("closed"))
	awaitOnDutyAt(t, c2, "c1", 0)

	// Nothing of a visitor in anything the supervisor got.
	sv.mu.Lock()
	sv2.mu.Lock()
	all, _ := json.Marshal(append(sv.seen, sv2.seen...))
	sv2.mu.Unlock()
	sv.mu.Unlock()
	for _, secret := range []string{"canary", contact, "127.0.0.1", "m1"} {
		if secret != "" && bytes.Contains(all, []byte(secret)) {
			t.Errorf("the supervisor's frames hold %q", secret)
		}
	}
	audit, err := os.ReadFile(filepath.Join(c1.node.DataDir(), AuditFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"actor":"sup1","role":"supervisor","action":"supervisor.on_duty"`,
		`"actor":"sup1","role":"supervisor","action":"supervisor.off_duty","status":200`,
		`"action":"supervisor.off_duty","target":"socket_closed"`} {
		if !bytes.Contains(audit, []byte(want)) {
			t.Errorf("c1's audit log lacks %s:\n%s", want, audit)
		}
	}
	if bytes.Contains(audit, []byte("canary")) {
		t.Errorf("the audit log holds the visitor's words")
	}
}

// In Chromium: a supervisor logged in at the console opens the supervisor
// page, goes on duty with the switch, and the page shows the desk (the
// volunteer signed in, a visitor waiting) and c1 with one on duty.
func TestSupervisorPageGoesOnDuty(t *testing.T) {
	f := newPageFederation(t, 1)
	c1 := f.Member("c1")
	const supPw, volPw = "supervisor pass 1", "correct horse battery"
	staffEnrol(t, c1, consensus.Volunteer{ID: "sup1", Centre: "c1", Alias: "Sigrid", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 1, Role: consensus.RoleSupervisor}, supPw)
	staffEnrol(t, c1, consensus.Volunteer{ID: "v-ada", Centre: "c1", Alias: "Ada", Channels: []string{"chat"},
		Languages: []string{"nb"}, Capacity: 1, Role: consensus.RoleVolunteer}, volPw)
	conn, first, status, body := openConsoleWith(t, c1, pageLogin(t, c1, "v-ada", volPw))
	if conn == nil || first != "policy" {
		t.Fatalf("Ada's console: %q, HTTP %d %s", first, status, body)
	}
	watchGoVisitor(t, conn)
	visitor := dialGoVisitor(t, c1, "en")
	visitor.await("queued", frameIs("queued"))

	ctx := newBrowser(t)
	consoleLogin(t, ctx, c1, "sup1", supPw)
	browsertest.Run(t, ctx, "open the supervisor page", chromedp.Navigate(c1.url+"/supervisor"))
	browsertest.Wait(t, ctx, "the desk", `!document.querySelector('#view').hidden && document.documentElement.hasAttribute('data-lang-loaded')`, 15*time.Second)
	browsertest.Wait(t, ctx, "off duty at first", `document.querySelector('#on-duty').checked === false`, 5*time.Second)
	browsertest.Run(t, ctx, "go on duty", chromedp.Click("#on-duty", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "on duty, counted for c1",
		`document.querySelector('#duty-card').classList.contains('is-on') && document.querySelector('#federation tr[data-centre="c1"][data-on-duty="1"]') !== null`, 15*time.Second)
	browsertest.Wait(t, ctx, "the waiting visitor and Ada",
		`document.querySelector('#waiting tr[data-channel="chat"][data-language="en"]') !== null && document.querySelector('#volunteers tr[data-alias="Ada"]') !== null`, 15*time.Second)
	if n := c1.node.Switchboard().SupervisorsOnDuty(); n != 1 {
		t.Fatalf("c1's desk counts %d on duty after the switch, want 1", n)
	}
	var missing []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.i18nMissing`, &missing)); err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("catalogue keys missing on the page: %v", missing)
	}
	screenshot(t, ctx, "supervisor-on-duty")
	browsertest.Run(t, ctx, "go off duty", chromedp.Click("#on-duty", chromedp.ByQuery))
	browsertest.Wait(t, ctx, "off duty", `!document.querySelector('#duty-card').classList.contains('is-on')`, 15*time.Second)
	if n := c1.node.Switchboard().SupervisorsOnDuty(); n != 0 {
		t.Fatalf("c1's desk counts %d on duty after the switch off, want 0", n)
	}
}
