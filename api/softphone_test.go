package api

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/switchboard"
)

// fakeSoftphones records what the console asks of the node's browser
// phone; answer decides each Answer (nil: answers "v=0 answer").
type fakeSoftphones struct {
	ice     []ICEServer
	mu      sync.Mutex
	answer  func(ctx context.Context, volunteer, sdp string) (string, error)
	offers  chan string // the browser offers, in order
	hangUps chan string // the volunteers hung up, in order
}

func newFakeSoftphones() *fakeSoftphones {
	return &fakeSoftphones{
		ice:    []ICEServer{{URLs: []string{"stun:stun.oslo.example:3478"}}, {URLs: []string{"turn:turn.oslo.example"}, Username: "u", Credential: "c"}},
		offers: make(chan string, 16), hangUps: make(chan string, 16),
	}
}

func (f *fakeSoftphones) ICEServers() []ICEServer { return f.ice }

func (f *fakeSoftphones) Answer(ctx context.Context, volunteer, sdp string) (string, error) {
	f.offers <- sdp
	f.mu.Lock()
	answer := f.answer
	f.mu.Unlock()
	if answer != nil {
		return answer(ctx, volunteer, sdp)
	}
	return "v=0 answer", nil
}

func (f *fakeSoftphones) setAnswer(a func(ctx context.Context, volunteer, sdp string) (string, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.answer = a
}

func (f *fakeSoftphones) HangUp(volunteer string) { f.hangUps <- volunteer }

// waitFor reads one value from ch within 10 s.
func waitFor[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10 s", what)
		panic("unreachable")
	}
}

// newSoftphoneRig is a call rig whose centre has phones as fake.
func newSoftphoneRig(t *testing.T, fake *fakeSoftphones) (*chatRig, *heldCalls) {
	t.Helper()
	calls := &heldCalls{calls: map[string]*switchboard.Call{}}
	rig := newDeskRig(t, func(c *switchboard.Config) {
		c.CallTokens = calls
		c.CallLease = time.Minute
		c.BrowserPhones = fake != nil
	}, func(c *Config, _ *Server) {
		if fake != nil {
			c.Softphones = fake
		}
	})
	return rig, calls
}

func TestDecodeSoftphoneFrames(t *testing.T) {
	for in, want := range map[string]consoleFrame{
		`{"type":"answer_call","contact":"k1","sdp":"v=0\r\n"}`: {Type: "answer_call", Contact: "k1", SDP: "v=0\r\n"},
		`{"type":"hang_up","contact":"k1"}`:                     {Type: "hang_up", Contact: "k1"},
		`{"type":"answer_call","contact":"k1","sdp":"` + strings.Repeat("a", MaxSDPBytes) + `"}`: {
			Type: "answer_call", Contact: "k1", SDP: strings.Repeat("a", MaxSDPBytes)},
	} {
		got, err := decodeConsoleFrame([]byte(in))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("decode %.60s = %+v, %v", in, got, err)
		}
	}
	big := strings.Repeat("a", MaxSDPBytes+1)
	for in, code := range map[string]string{
		`{"type":"answer_call","contact":"k1"}`:                     "bad_frame",
		`{"type":"answer_call","sdp":"v=0"}`:                        "bad_frame",
		`{"type":"answer_call","contact":"k1","sdp":""}`:            "bad_frame",
		`{"type":"hang_up"}`:                                        "bad_frame",
		`{"type":"hang_up","contact":"k1","sdp":"v=0"}`:             "bad_frame",
		`{"type":"accept","contact":"k1","sdp":"v=0"}`:              "bad_frame",
		`{"type":"answer_call","contact":"k1","sdp":"` + big + `"}`: "bad_sdp",
		// Before anything else: the size, whatever else is wrong.
		`{"type":"hang_up","sdp":"` + big + `"}`:        "bad_sdp",
		`{"sdp":"` + big + `"}`:                         "bad_sdp",
		`{"type":"answer_call","contact":"k1","sdp":3}`: "malformed",
	} {
		if _, err := decodeConsoleFrame([]byte(in)); err == nil || errorCode(err) != code {
			t.Errorf("decode %.60q: %v, want code %s", in, err, code)
		}
	}
}

func TestSoftphoneErrorCodes(t *testing.T) {
	for err, code := range map[error]string{
		fmt.Errorf("answer: %w", ErrNoCall):                "no_call",
		fmt.Errorf("answer: %w", ErrBadSDP):                "bad_sdp",
		fmt.Errorf("answer: %w", context.DeadlineExceeded): "call_failed",
		errors.New("sip: 503 from the caller's leg"):       "call_failed",
	} {
		if got := softphoneErrorCode(err); got != code {
			t.Errorf("%v: code %s, want %s", err, got, code)
		}
	}
	if text := softphoneErrorText("call_failed", errors.New("sip:secret@192.0.2.9 refused")); strings.Contains(text, "sip:") {
		t.Errorf("call_failed passes on the node's error: %q", text)
	}
}

// TestConsoleWithoutSoftphone: a centre without a browser phone says
// nothing of one and refuses its frames with no_softphone.
func TestConsoleWithoutSoftphone(t *testing.T) {
	rig, _ := newSoftphoneRig(t, nil)
	con := rig.console("console", rig.signUp(phoneVolunteer("v1"), "correct horse battery"))
	con.noise = map[string]bool{} // the availability after policy, not a softphone frame
	con.expect("policy")
	con.expect("availability")
	con.noise["availability"] = true
	con.send(obj{"type": "phone", "phone": "browser"})
	con.expectError("no_softphone")
	con.send(obj{"type": "answer_call", "contact": "k1", "sdp": "v=0"})
	if e := con.expectError("no_softphone"); e.Contact != "k1" {
		t.Fatalf("no_softphone without the contact: %s", e.raw)
	}
	con.send(obj{"type": "hang_up", "contact": "k1"})
	con.expectError("no_softphone")
	con.send(obj{"type": "answer_call", "contact": "k1", "sdp": strings.Repeat("a", MaxSDPBytes+1)})
	con.expectError("bad_sdp")
}

// TestConsoleSoftphoneCall: the volunteer takes calls in the browser; the
// browser's offer reaches the node and its answer comes back; errors map
// to codes; hang_up and a closed console hang up.
func TestConsoleSoftphoneCall(t *testing.T) {
	fake := newFakeSoftphones()
	rig, calls := newSoftphoneRig(t, fake)
	cookie := rig.signUp(phoneVolunteer("v1"), "correct horse battery")
	con := rig.console("console", cookie)
	con.expect("policy")
	hello := con.expect("softphone")
	if !reflect.DeepEqual(hello.ICEServers, fake.ice) || hello.AudioProcessing == nil || !*hello.AudioProcessing {
		t.Fatalf("softphone frame %s, want the node's ICE servers and audio processing on", hello.raw)
	}

	con.send(obj{"type": "phone", "phone": "browser"})
	expectPhone(con, "browser", false)
	con.send(obj{"type": "available", "channel": "phone", "on": true})
	expectPhone(con, "browser", true)

	// Nothing rings: answer_call and hang_up are refused, the node is not asked.
	con.send(obj{"type": "answer_call", "contact": "k1", "sdp": "v=0 offer"})
	if e := con.expectError("no_call"); e.Contact != "k1" {
		t.Fatalf("no_call %s", e.raw)
	}
	con.send(obj{"type": "hang_up", "contact": "k1"})
	con.expectError("no_call")

	call := placeCall(t, rig, calls)
	if call.Phone() != switchboard.BrowserPhonePrefix+"v1" {
		t.Fatalf("the call rings at %q", call.Phone())
	}
	offer := con.expect("offer")
	if offer.Channel != "phone" {
		t.Fatalf("offer %s", offer.raw)
	}
	id := offer.Contact

	// The node fails in each way it can; the console stays usable.
	for _, c := range []struct {
		err  error
		code string
	}{{fmt.Errorf("answer: %w", ErrNoCall), "no_call"}, {fmt.Errorf("answer: %w", ErrBadSDP), "bad_sdp"}, {errors.New("bridge broke"), "call_failed"}} {
		fake.setAnswer(func(context.Context, string, string) (string, error) { return "", c.err })
		con.send(obj{"type": "answer_call", "contact": id, "sdp": "v=0 offer"})
		waitFor(t, "offer at the node", fake.offers)
		if e := con.expectError(c.code); e.Contact != id {
			t.Fatalf("%s without the contact: %s", c.code, e.raw)
		}
	}

	// One answer in flight: a second is refused at once, the first
	// goes on (the read loop is not blocked: the refusal comes while
	// Answer waits).
	release := make(chan struct{})
	fake.setAnswer(func(ctx context.Context, _, sdp string) (string, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		if err := call.Arrived(); err != nil {
			return "", err
		}
		call.PickedUp()
		return "v=0 answer to " + sdp, nil
	})
	con.send(obj{"type": "answer_call", "contact": id, "sdp": "v=0 offer"})
	if got := waitFor(t, "offer at the node", fake.offers); got != "v=0 offer" {
		t.Fatalf("the node got %q", got)
	}
	con.send(obj{"type": "answer_call", "contact": id, "sdp": "v=0 again"})
	con.expectError("busy")
	close(release)
	var media, connected bool
	for !media || !connected {
		f, err := con.next()
		if err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case "call_media":
			if f.Contact != id || f.SDP != "v=0 answer to v=0 offer" {
				t.Fatalf("call_media %s", f.raw)
			}
			media = true
		case "connected":
			connected = true
		case "availability":
		default:
			t.Fatalf("unexpected %s", f.raw)
		}
	}

	// Hang up: the node is told; the switchboard's end follows.
	con.send(obj{"type": "hang_up", "contact": "someone-else"})
	con.expectError("no_call")
	con.send(obj{"type": "hang_up", "contact": id})
	if v := waitFor(t, "hang-up", fake.hangUps); v != "v1" {
		t.Fatalf("hung up %q", v)
	}
	call.Ended(switchboard.ByVolunteer)
	if f := con.expect("ended"); f.By != "volunteer" {
		t.Fatalf("ended %s", f.raw)
	}
	con.send(obj{"type": "end", "contact": id, "topics": []string{"family"}, "age_group": "25-plus"})
	con.expect("categorised")

	// A second call answered, then the page goes away: the node hangs up.
	call = placeCall(t, rig, calls)
	id = con.expect("offer").Contact
	fake.setAnswer(func(context.Context, string, string) (string, error) {
		if err := call.Arrived(); err != nil {
			return "", err
		}
		call.PickedUp()
		return "v=0 answer", nil
	})
	con.send(obj{"type": "answer_call", "contact": id, "sdp": "v=0 offer"})
	waitFor(t, "offer at the node", fake.offers)
	// The pick-up's connected and the answer's call_media race, as for the
	// first call: either may come first (ci saw connected first).
	for media := false; !media; {
		f, err := con.next()
		if err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case "call_media":
			media = true
		case "connected", "availability":
		default:
			t.Fatalf("unexpected %s", f.raw)
		}
	}
	select {
	case v := <-fake.hangUps:
		t.Fatalf("hung up %q before the page went away", v)
	default:
	}
	_ = con.conn.Close(websocket.StatusGoingAway, "tab closed")
	if v := waitFor(t, "hang-up on close", fake.hangUps); v != "v1" {
		t.Fatalf("hung up %q", v)
	}
}

// TestConsoleClosedWhileAnswering: the page goes away while the node is
// still answering: the answer is cancelled and the call hung up.
func TestConsoleClosedWhileAnswering(t *testing.T) {
	fake := newFakeSoftphones()
	cancelled := make(chan error, 1)
	fake.setAnswer(func(ctx context.Context, _, _ string) (string, error) {
		<-ctx.Done()
		cancelled <- ctx.Err()
		return "", ctx.Err()
	})
	rig, calls := newSoftphoneRig(t, fake)
	fake.ice = nil
	con := rig.console("console", rig.signUp(phoneVolunteer("v1"), "correct horse battery"))
	con.expect("policy")
	if f := con.expect("softphone"); f.ICEServers == nil || len(f.ICEServers) != 0 {
		t.Fatalf("softphone frame %s, want ice_servers []", f.raw)
	}
	con.send(obj{"type": "phone", "phone": "browser"})
	con.send(obj{"type": "available", "channel": "phone", "on": true})
	expectPhone(con, "browser", true)
	placeCall(t, rig, calls)
	id := con.expect("offer").Contact
	con.send(obj{"type": "answer_call", "contact": id, "sdp": "v=0 offer"})
	waitFor(t, "offer at the node", fake.offers)
	_ = con.conn.Close(websocket.StatusGoingAway, "tab closed")
	if err := waitFor(t, "the answer cancelled", cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("answer ended with %v, want cancelled", err)
	}
	if v := waitFor(t, "hang-up on close", fake.hangUps); v != "v1" {
		t.Fatalf("hung up %q", v)
	}
}

// TestConsoleSoftphoneRawAudio: SoftphoneRaw turns the page's audio
// processing off, and the console page may use the microphone only where
// there is a browser phone.
func TestConsoleSoftphoneRawAudio(t *testing.T) {
	fake := newFakeSoftphones()
	rig := newDeskRig(t, nil, func(c *Config, _ *Server) { c.Softphones = fake; c.SoftphoneRaw = true })
	con := rig.console("console", rig.signUp(phoneVolunteer("v1"), "correct horse battery"))
	con.expect("policy")
	if f := con.expect("softphone"); f.AudioProcessing == nil || *f.AudioProcessing {
		t.Fatalf("softphone frame %s, want audio_processing false", f.raw)
	}
	if pp := rig.call("GET", "/console", nil, nil).header.Get("Permissions-Policy"); !strings.Contains(pp, "microphone=(self)") {
		t.Errorf("console Permissions-Policy %q, want the microphone allowed", pp)
	}
	if pp := rig.call("GET", "/chat", nil, nil).header.Get("Permissions-Policy"); !strings.Contains(pp, "microphone=()") {
		t.Errorf("chat Permissions-Policy %q, want no microphone", pp)
	}
	plain, _ := newSoftphoneRig(t, nil)
	if pp := plain.call("GET", "/console", nil, nil).header.Get("Permissions-Policy"); !strings.Contains(pp, "microphone=()") {
		t.Errorf("console without a browser phone: Permissions-Policy %q, want no microphone", pp)
	}
}
