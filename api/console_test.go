package api

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/switchboard"
)

func TestDecodeConsoleFrame(t *testing.T) {
	on := true
	sip, none := "sip:kari@192.0.2.7:5064", ""
	good := map[string]consoleFrame{
		`{"type":"phone","phone":"sip:kari@192.0.2.7:5064"}`:                                             {Type: "phone", Phone: &sip},
		`{"type":"phone","phone":""}`:                                                                    {Type: "phone", Phone: &none},
		`{"type":"available","channel":"chat","on":true}`:                                                {Type: "available", Channel: "chat", On: &on},
		`{"type":"accept","contact":"k1"}`:                                                               {Type: "accept", Contact: "k1"},
		`{"type":"decline","contact":"k1"}`:                                                              {Type: "decline", Contact: "k1"},
		`{"type":"typing","contact":"k1"}`:                                                               {Type: "typing", Contact: "k1"},
		`{"type":"message","contact":"k1","id":"v1","text":"hei"}`:                                       {Type: "message", Contact: "k1", ID: "v1", Text: "hei"},
		`{"type":"end","contact":"k1","topics":["family"],"age_group":"16-18"}`:                          {Type: "end", Contact: "k1", Topics: []string{"family"}, AgeGroup: "16-18"},
		`{"type":"transfer","contact":"k1","centre":"c3","language":"nn","warm":true,"note":"gutt, 15"}`: {Type: "transfer", Contact: "k1", Centre: "c3", Language: "nn", Warm: &on, Note: "gutt, 15"},
		`{"type":"transfer","contact":"k1"}`:                                                             {Type: "transfer", Contact: "k1"},
		`{"type":"leave","contact":"k1"}`:                                                                {Type: "leave", Contact: "k1"},
	}
	for in, want := range good {
		got, err := decodeConsoleFrame([]byte(in))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("decode %s = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		`{"type":"available","channel":"chat"}`:                  "bad_frame",
		`{"type":"available","channel":"chat","on":null}`:        "bad_frame",
		`{"type":"available","on":false}`:                        "bad_frame",
		`{"type":"accept"}`:                                      "bad_frame",
		`{"type":"accept","contact":"k1","text":"x"}`:            "bad_frame",
		`{"type":"typing","contact":"k1","topics":[]}`:           "bad_frame",
		`{"type":"message","contact":"k1","id":"v1"}`:            "bad_frame",
		`{"type":"end","topics":["family"],"age_group":"16-18"}`: "bad_frame",
		`{"type":"end","contact":"k1","note":"free text"}`:       "bad_frame",
		`{"type":"end","contact":"k1","notes":"free text"}`:      "malformed",
		`{"type":"leave","contact":"k1","warm":true}`:            "bad_frame",
		`{"type":"transfer"}`:                                    "bad_frame",
		`{"type":"transfer","contact":"k1","note":"` + strings.Repeat("n", switchboard.MaxNoteBytes+1) + `"}`: "bad_note",
		`{"type":"transfer","contact":"k1","centre":"` + strings.Repeat("c", 65) + `"}`:                       "bad_request",
		`{"type":"available","channel":"chat","on":"yes"}`:                                                    "malformed",
		`{"type":"hangup","contact":"k1"}`:                                                                    "unknown_type",
		`{"type":"phone"}`:                                                                                    "bad_frame",
		`{"type":"phone","phone":null}`:                                                                       "bad_frame",
		`{"type":"phone","phone":"2041","contact":"k1"}`:                                                      "bad_frame",
		`{"type":"available","channel":"phone","on":true,"phone":"2041"}`:                                     "bad_frame",
		`{"type":"phone","phone":2041}`:                                                                       "malformed",
		`{"type":"phone","phone":"` + strings.Repeat("1", switchboard.MaxPhoneBytes+1) + `"}`:                 "bad_phone",
		`{"contact":"k1"}`:                                 "bad_frame",
		`{"type":"accept","contact":"k1"} x`:               "malformed",
		string(bytes.Repeat([]byte(" "), maxFrameBytes+1)): "too_large",
	}
	for in, code := range bad {
		if _, err := decodeConsoleFrame([]byte(in)); err == nil || errorCode(err) != code {
			t.Errorf("decode %.60q: %v, want code %s", in, err, code)
		}
	}
}

// normalise treats an empty topic list like none, as JSON's omitempty does.
func normalise(f consoleFrame) consoleFrame {
	if len(f.Topics) == 0 {
		f.Topics = nil
	}
	return f
}

func FuzzConsoleFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"available","channel":"chat","on":true}`, `{"type":"accept","contact":"k1"}`,
		`{"type":"decline","contact":"k1"}`, `{"type":"typing","contact":"k1"}`,
		`{"type":"message","contact":"k1","id":"v1","text":"hei"}`,
		`{"type":"end","contact":"k1","topics":["family","other"],"age_group":"16-18"}`,
		`{"type":"end","contact":"k1","topics":[]}`, `{"type":"end","contact":"k1","topics":null}`,
		`{"type":"available","channel":"chat","on":null}`, `{}`, `[{}]`, `"x"`,
		`{"type":"phone","phone":"sip:kari@192.0.2.7:5064"}`, `{"type":"phone","phone":""}`, `{"type":"phone","phone":"2041"}`,
		`{"type":"phone"}`, `{"type":"phone","phone":null}`, `{"type":"end","contact":"k1","phone":"2041"}`,
		`{"type":"phone","phone":"` + strings.Repeat("9", switchboard.MaxPhoneBytes) + `"}`,
		`{"type":"phone","phone":"` + strings.Repeat("9", switchboard.MaxPhoneBytes+1) + `"}`,
		`{"type":"answer_call","contact":"k1","sdp":"v=0\r\n"}`, `{"type":"hang_up","contact":"k1"}`,
		`{"type":"answer_call","contact":"k1"}`, `{"type":"hang_up","contact":"k1","sdp":"v=0"}`,
		`{"type":"answer_call","contact":"k1","sdp":"` + strings.Repeat("a", MaxSDPBytes+1) + `"}`,
		`{"type":"transfer","contact":"k1","centre":"c3","language":"nn","warm":true,"note":"gutt, 15"}`,
		`{"type":"transfer","contact":"k1","warm":false}`, `{"type":"leave","contact":"k1"}`,
		`{"type":"transfer","contact":"k1","note":"` + strings.Repeat("n", switchboard.MaxNoteBytes+1) + `"}`,
		`{"type":"message","contact":"k1","id":"v1","text":"hei","note":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Add(bytes.Repeat([]byte("{"), maxFrameBytes+1))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeConsoleFrame(b)
		if err != nil {
			var fe *frameError
			if !errors.As(err, &fe) || fe.code == "" || fe.msg == "" {
				t.Fatalf("error %v is not a coded frame error", err)
			}
			if !reflect.DeepEqual(fr, consoleFrame{}) {
				t.Fatalf("refused frame decoded as %+v", fr)
			}
			return
		}
		if len(b) > maxFrameBytes {
			t.Fatalf("accepted a %d-byte frame", len(b))
		}
		fields, ok := consoleFields[fr.Type]
		if !ok {
			t.Fatalf("accepted type %q", fr.Type)
		}
		if fields["contact"] && fr.Contact == "" || fr.Type == "available" && (fr.On == nil || fr.Channel == "") ||
			fr.Type == "phone" && fr.Phone == nil {
			t.Fatalf("accepted %+v without a required field", fr)
		}
		if fr.Phone != nil && (fr.Type != "phone" || len(*fr.Phone) > switchboard.MaxPhoneBytes) {
			t.Fatalf("accepted a phone of %d bytes in a %q frame", len(*fr.Phone), fr.Type)
		}
		if fr.Type != "transfer" && (fr.Note != "" || fr.Centre != "" || fr.Language != "" || fr.Warm != nil) ||
			len(fr.Note) > switchboard.MaxNoteBytes || !utf8.ValidString(fr.Note) {
			t.Fatalf("accepted transfer fields %q/%q/%d-byte note in a %q frame", fr.Centre, fr.Language, len(fr.Note), fr.Type)
		}
		if fr.SDP != "" && (fr.Type != "answer_call" || len(fr.SDP) > MaxSDPBytes) || fr.Type == "answer_call" && fr.SDP == "" {
			t.Fatalf("accepted an sdp of %d bytes in a %q frame", len(fr.SDP), fr.Type)
		}
		enc := encodeFrame(fr)
		if len(enc) > maxFrameBytes {
			return
		}
		again, err := decodeConsoleFrame(enc)
		if err != nil || !reflect.DeepEqual(normalise(again), normalise(fr)) {
			t.Fatalf("round trip of %+v: %+v, %v", fr, again, err)
		}
	})
}

// TestConsoleDropsEchoesOfEndedConversations: after a conversation ended
// on the console, a late end or message for it is not shown again.
func TestConsoleDropsEchoesOfEndedConversations(t *testing.T) {
	ws := &wsock{out: make(chan outItem, 16), stop: make(chan struct{})}
	c := &consoleConn{ws: ws, live: map[string]bool{}}
	c.Connected("k1", "")
	c.Event("k1", switchboard.Event{Kind: switchboard.EventEnded, By: switchboard.ByVisitor})
	c.Event("k1", switchboard.Event{Kind: switchboard.EventEnded, By: switchboard.ByVisitor})
	c.Event("k1", switchboard.Event{Kind: switchboard.EventMessage, ID: "c9", Text: "late"})
	c.Event("k2", switchboard.Event{Kind: switchboard.EventTyping})
	c.Event("k1", switchboard.Event{Kind: switchboard.EventDelivered, ID: "v1"})
	var got []string
	for len(ws.out) > 0 {
		got = append(got, string((<-ws.out).frame))
	}
	want := []string{
		`{"type":"connected","contact":"k1"}`,
		`{"type":"ended","contact":"k1","by":"visitor"}`,
		`{"type":"delivered","contact":"k1","id":"v1"}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
}

func TestSecondConsoleReplacesFirst(t *testing.T) {
	rig := newChatRig(t, nil)
	cookie := rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")
	first := rig.console("first console", cookie)
	first.expect("policy")
	first.send(obj{"type": "available", "channel": "chat", "on": true})
	vis := rig.visitor("visitor", "nb")
	connect(t, vis, first, "Kari")

	second := rig.console("second console", cookie)
	second.expect("policy")
	if c := first.expect("closed"); c.Reason != "signed in elsewhere" {
		t.Fatalf("first console closed frame %s", c.raw)
	}
	if reason := first.expectClose(websocket.StatusPolicyViolation); reason != "signed in elsewhere" {
		t.Fatalf("first console close reason %q", reason)
	}
	// The visitor lost their volunteer and waits at the front again.
	if r := vis.expect("requeued"); r.Undelivered == nil || *r.Undelivered != 0 {
		t.Fatalf("requeued %s", r.raw)
	}
	second.send(obj{"type": "available", "channel": "chat", "on": true})
	contact := second.expect("offer").Contact
	second.send(obj{"type": "accept", "contact": contact})
	vis.expect("connected")
	second.expect("connected")
}

func TestRemovedVolunteerLosesConsoleAndLogin(t *testing.T) {
	rig := newChatRig(t, nil)
	cookie := rig.signUp(testVolunteer("v1", "oslo", "Kari", 1), "correct horse battery")
	con := rig.console("console", cookie)
	con.expect("policy")
	if rep := rig.call("DELETE", "/v1/volunteers/v1", nil, rig.adminHeader()); rep.status != 200 {
		t.Fatalf("remove: %d %s", rep.status, rep.body)
	}
	if c := con.expect("closed"); !strings.Contains(c.Reason, "removed") {
		t.Fatalf("closed frame %s", c.raw)
	}
	con.expectClose(websocket.StatusPolicyViolation)
	if _, resp, err := rig.dial("/v1/console", dialOpts{cookie: cookie}); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("console after removal: %v, want 401", err)
	}
	wantError(t, "login after removal", rig.login("v1", "correct horse battery"), 401, "unauthorized")
}
