package api

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/browsertest"
	"github.com/helpmesh/helpmesh/switchboard"
)

// heldCalls stands in for the SIP ingress's token store: it keeps the
// *switchboard.Call of each token, so a test plays the phone system.
type heldCalls struct {
	mu    sync.Mutex
	calls map[string]*switchboard.Call
}

func (h *heldCalls) Issue(c *switchboard.Call, _ time.Duration) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	tok := "TOKEN" + string(rune('A'+len(h.calls)))
	h.calls[tok] = c
	return tok
}

func (h *heldCalls) get(t *testing.T, tok string) *switchboard.Call {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.calls[tok]
	if !ok {
		t.Fatalf("token %q was never issued", tok)
	}
	return c
}

// newCallRig is a chat rig whose switchboard takes calls, with extensions
// at pbx.oslo.example.
func newCallRig(t *testing.T) (*chatRig, *heldCalls) {
	t.Helper()
	calls := &heldCalls{calls: map[string]*switchboard.Call{}}
	rig := newDeskRig(t, func(c *switchboard.Config) {
		c.CallTokens = calls
		c.PhoneDomain = "pbx.oslo.example"
		c.CallLease = time.Minute
	}, nil)
	return rig, calls
}

func phoneVolunteer(id string) consensus.Volunteer {
	return consensus.Volunteer{ID: id, Centre: "oslo", Alias: "Kari", Channels: []string{"chat", "phone"},
		Languages: []string{"nb"}, Capacity: 2, Role: "volunteer"}
}

// expectPhone reads availability frames until one shows phone.
func expectPhone(con *sockPeer, phone string, phoneOn bool) wireFrame {
	con.t.Helper()
	for {
		f := con.expect("availability")
		if f.Phone == nil {
			con.t.Fatalf("%s: availability without phone: %s", con.name, f.raw)
		}
		if *f.Phone == phone && f.Channels["phone"] == phoneOn {
			return f
		}
	}
}

func placeCall(t *testing.T, rig *chatRig, calls *heldCalls) *switchboard.Call {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	placed, err := rig.centre.sb.PlaceCall(ctx, "nb")
	if err != nil {
		t.Fatalf("place call: %v", err)
	}
	if placed.Centre != "oslo" {
		t.Fatalf("placed at %q, want our own centre", placed.Centre)
	}
	return calls.get(t, placed.Token)
}

// TestConsolePhoneCall: a volunteer gives their phone on the console, a
// call from the PBX rings there at once (no accept), is connected when the
// phone picks up, ends by the phone, and is categorised as a chat is.
func TestConsolePhoneCall(t *testing.T) {
	rig, calls := newCallRig(t)
	cookie := rig.signUp(phoneVolunteer("v1"), "correct horse battery")
	con := rig.console("console", cookie)
	con.expect("policy")
	if f := con.expect("availability"); f.Phone == nil || *f.Phone != "" {
		t.Fatalf("first availability %s, want an empty phone", f.raw)
	}

	// No phone yet: switching phone on is refused, and says why.
	con.send(obj{"type": "available", "channel": "phone", "on": true})
	if e := con.expectError("no_phone"); !strings.Contains(e.Error, `"type":"phone"`) {
		t.Fatalf("no_phone error %q does not say how to give a phone", e.Error)
	}
	for _, bad := range []string{"kari", "tel:+4712345678", "sip:nohost", strings.Repeat("1", switchboard.MaxPhoneBytes+1)} {
		con.send(obj{"type": "phone", "phone": bad})
		con.expectError("bad_phone")
	}
	con.send(obj{"type": "phone"})
	con.expectError("bad_frame")

	// An extension of the centre's PBX, then a SIP address.
	con.send(obj{"type": "phone", "phone": "2041"})
	expectPhone(con, "sip:2041@pbx.oslo.example", false)
	con.send(obj{"type": "phone", "phone": "sip:kari@192.0.2.7:5064"})
	expectPhone(con, "sip:kari@192.0.2.7:5064", false)
	con.send(obj{"type": "available", "channel": "phone", "on": true})
	expectPhone(con, "sip:kari@192.0.2.7:5064", true)

	// A call: the offer comes at once; accept is refused, the phone answers.
	call := placeCall(t, rig, calls)
	if call.Phone() != "sip:kari@192.0.2.7:5064" {
		t.Fatalf("the call rings at %q", call.Phone())
	}
	offer := con.expect("offer")
	if offer.Channel != "phone" || offer.Language != "nb" || offer.FromCentre != nil || offer.RingSeconds == nil || *offer.RingSeconds <= 0 {
		t.Fatalf("offer %s, want a phone offer of ours in nb", offer.raw)
	}
	id := offer.Contact
	con.send(obj{"type": "accept", "contact": id})
	con.expectError("offer_gone")
	if err := call.Arrived(); err != nil {
		t.Fatalf("arrived: %v", err)
	}
	con.send(obj{"type": "decline", "contact": id})
	if e := con.expectError("offer_gone"); !strings.Contains(e.Error, "ringing on your phone") || e.Contact != id {
		t.Fatalf("decline while it rings: %s", e.raw)
	}
	call.PickedUp()
	if f := con.expect("connected"); f.Contact != id || f.Channel != "phone" || f.FromCentre != nil {
		t.Fatalf("connected %s, want the call on the phone channel", f.raw)
	}
	con.send(obj{"type": "message", "contact": id, "id": "v1", "text": "hello?"})
	if e := con.expectError("bad_request"); e.Contact != id || e.ID != "v1" {
		t.Fatalf("message into a call: %s", e.raw)
	}
	con.send(obj{"type": "typing", "contact": id}) // ignored, never an error

	call.Ended(switchboard.ByCaller)
	if f := con.expect("ended"); f.Contact != id || f.By != "caller" {
		t.Fatalf("ended %s, want by caller", f.raw)
	}
	con.send(obj{"type": "end", "contact": id, "topics": []string{"family"}, "age_group": "25-plus"})
	if f := con.expect("categorised"); f.Contact != id {
		t.Fatalf("categorised %s", f.raw)
	}
	if st := rig.centre.sb.Stats(); st.Categorised() != 1 || st.Topics["family"] != 1 || st.Total().AnsweredLocal != 1 {
		t.Fatalf("after the call: categorised %d, topics %v, tally %+v", st.Categorised(), st.Topics, st.Total())
	}

	// A second call, declined before it reaches the phone: withdrawn, and
	// the PBX's late arrival is refused.
	call = placeCall(t, rig, calls)
	id = con.expect("offer").Contact
	con.send(obj{"type": "decline", "contact": id})
	if f := con.expect("offer_withdrawn"); f.Contact != id || f.Reason == "" {
		t.Fatalf("withdrawn %s", f.raw)
	}
	if err := call.Arrived(); err == nil {
		t.Fatal("a declined call still arrived")
	}

	// A third, ended on the console while live (the hang-up never came):
	// categorised, with no "ended" echo (expect fails on any frame but
	// availability before the next offer).
	call = placeCall(t, rig, calls)
	id = con.expect("offer").Contact
	if err := call.Arrived(); err != nil {
		t.Fatal(err)
	}
	call.PickedUp()
	con.expect("connected")
	con.send(obj{"type": "end", "contact": id, "topics": []string{"loneliness"}, "age_group": "unknown"})
	con.expect("categorised")
	call.Ended(switchboard.ByCaller) // late: the call is over already
	call = placeCall(t, rig, calls)
	next := con.expect("offer")
	if next.Contact == id {
		t.Fatal("the same contact offered again")
	}
	if err := call.Arrived(); err != nil {
		t.Fatal(err)
	}
	call.Ended(switchboard.ByUnanswered)
	if f := con.expect("offer_withdrawn"); f.Contact != next.Contact {
		t.Fatalf("withdrawn %s", f.raw)
	}

	// Clearing the phone switches phone off too.
	con.send(obj{"type": "phone", "phone": ""})
	expectPhone(con, "", false)
	if st := rig.centre.sb.Stats(); st.Categorised() != 2 {
		t.Fatalf("categorised %d, want 2", st.Categorised())
	}
}

// TestConsolePagePhoneCall: the console page takes the volunteer's phone,
// shows a call coming to it as a card without accept, the call in progress
// without a message box, and after the hang-up the categorisation form.
func TestConsolePagePhoneCall(t *testing.T) {
	browser := newBrowser(t)
	rig, calls := newCallRig(t)
	rig.signUp(phoneVolunteer("v1"), "correct horse battery")
	vol := browser
	browsertest.Run(t, vol, "log in",
		chromedp.EmulateViewport(1280, 860),
		chromedp.Navigate(rig.url+"/console"),
		chromedp.WaitVisible("#login-submit", chromedp.ByQuery),
		chromedp.SendKeys("#volunteer", "v1", chromedp.ByQuery),
		chromedp.SendKeys("#password", "correct horse battery", chromedp.ByQuery),
		chromedp.Click("#login-submit", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the desk with the phone field", `!document.querySelector('#desk').hidden && !document.querySelector('#phone-form').hidden
		&& /No phone given/.test(document.querySelector('#phone-in-use').textContent)`, 15*time.Second)

	// Phone on without a phone: the server's refusal is shown, the switch
	// goes back off.
	browsertest.Run(t, vol, "phone on", chromedp.Click("#available-phone", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the no-phone error", `/Give your phone/.test(document.querySelector('#phone-error').textContent) && !document.querySelector('#available-phone').checked`, 10*time.Second)
	browsertest.Run(t, vol, "a bad phone", chromedp.SendKeys("#phone", "kari", chromedp.ByQuery), chromedp.Click("#phone-set", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the bad-phone error", `/not accepted/.test(document.querySelector('#phone-error').textContent)`, 10*time.Second)
	browsertest.Run(t, vol, "an extension", chromedp.SetValue("#phone", "2041", chromedp.ByQuery), chromedp.Click("#phone-set", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the phone in use", `/sip:2041@pbx\.oslo\.example/.test(document.querySelector('#phone-in-use').textContent) && document.querySelector('#phone-error').textContent === ''`, 10*time.Second)
	browsertest.Run(t, vol, "phone on", chromedp.Click("#available-phone", chromedp.ByQuery))
	browsertest.Wait(t, vol, "available for phone", `document.querySelector('#available-phone').checked && /Available for phone/.test(document.querySelector('#load').textContent)`, 10*time.Second)
	var bad []string
	browsertest.Eval(t, vol, accessibleNameProblems, &bad)
	if len(bad) > 0 {
		t.Errorf("controls without an accessible name: %v", bad)
	}

	call := placeCall(t, rig, calls)
	browsertest.Wait(t, vol, "the call card", `(() => { const o = document.querySelector('#offers .offer[data-channel=phone]');
		return !!o && /Call coming to your phone/.test(o.textContent) && /language nb/.test(o.textContent)
		  && !o.querySelector('button.accept') && !!o.querySelector('button.decline'); })()`, 10*time.Second)
	screenshot(t, vol, "volunteer-call-coming")
	if err := call.Arrived(); err != nil {
		t.Fatal(err)
	}
	browsertest.Run(t, vol, "decline too late", chromedp.Click("#offers .offer button.decline", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the ringing message", `(() => { const o = document.querySelector('#offers .offer[data-channel=phone]');
		return !!o && /ringing on your phone/.test(o.querySelector('.phone-problem').textContent) && o.querySelector('button.decline').hidden; })()`, 10*time.Second)

	call.PickedUp()
	browsertest.Wait(t, vol, "the in-call card", `(() => { const c = document.querySelector('#chats .chat.call');
		return !!c && !document.querySelector('#offers .offer') && !c.querySelector('textarea') && /On the phone/.test(c.textContent); })()`, 10*time.Second)
	browsertest.Wait(t, vol, "the call timer to tick", `document.querySelector('#chats .chat.call .call-timer').textContent !== '0:00'`, 5*time.Second)
	screenshot(t, vol, "volunteer-in-call")

	call.Ended(switchboard.ByCaller)
	sel := `#chats .chat.call .categorise`
	browsertest.Wait(t, vol, "the categorisation form", `(() => { const f = document.querySelector('#chats .chat.call .categorise');
		return !!f && f.querySelectorAll('input[name=topic]').length >= 5 && !!f.querySelector('select.age-group')
		  && /caller hung up/.test(document.querySelector('#chats .chat.call').textContent); })()`, 10*time.Second)
	screenshot(t, vol, "volunteer-call-ended")
	browsertest.Run(t, vol, "categorise",
		chromedp.Click(sel+` input[name=topic][value="family"]`, chromedp.ByQuery),
		chromedp.SetValue(sel+" select.age-group", "25-plus", chromedp.ByQuery),
		chromedp.Click(sel+" button.submit-categorisation", chromedp.ByQuery))
	browsertest.Wait(t, vol, "the call card to go", `document.querySelectorAll('#chats .chat').length === 0 && /Call 1 ended and categorised/.test(document.querySelector('#status').textContent)`, 10*time.Second)
	if st := rig.centre.sb.Stats(); st.Categorised() != 1 || st.Topics["family"] != 1 || st.AgeGroups["25-plus"] != 1 {
		t.Errorf("stats: categorised %d, topics %v, age groups %v", st.Categorised(), st.Topics, st.AgeGroups)
	}
}
