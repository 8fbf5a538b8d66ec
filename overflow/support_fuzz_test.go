package overflow

import (
	"encoding/json"
	"testing"

	"github.com/helpmesh/helpmesh/switchboard"
)

// FuzzSeatEvent: what another centre sends on a supervisor's seat is
// decoded as the relay decodes it, then checked. Whatever is accepted is
// a mirrored message said by the visitor or the volunteer, a whisper, a
// delivery or the end, within the message and note bounds: nothing else
// can reach a supervisor's or a volunteer's console through a seat.
func FuzzSeatEvent(f *testing.F) {
	for _, s := range []string{
		`{"kind":"message","id":"m1","text":"hei","by":"visitor"}`,
		`{"kind":"message","id":"m1","text":"hei","by":"volunteer"}`,
		`{"kind":"message","id":"m1","text":"hei"}`,
		`{"kind":"whisper","id":"w1","text":"note","alias":"Sol"}`,
		`{"kind":"delivered","id":"w1"}`, `{"kind":"ended"}`, `{"kind":"supervised"}`,
		`{"kind":"typing"}`, `{"kind":"transfer"}`, `{}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var e switchboard.Event
		if json.Unmarshal(b, &e) != nil {
			return
		}
		if checkSeatEvent(e) != nil {
			return
		}
		switch e.Kind {
		case switchboard.EventMessage:
			if e.By != switchboard.SaidByVisitor && e.By != switchboard.SaidByVolunteer || e.ID == "" || e.Text == "" ||
				len(e.Text) > switchboard.MaxTextBytes || len(e.ID) > switchboard.MaxMessageIDBytes {
				t.Fatalf("accepted %+v", e)
			}
		case switchboard.EventWhisper:
			if e.ID == "" || e.Text == "" || len(e.Text) > switchboard.MaxWhisperBytes || len(e.ID) > switchboard.MaxMessageIDBytes || len(e.Alias) > 80 {
				t.Fatalf("accepted %+v", e)
			}
		case switchboard.EventDelivered:
			if e.ID == "" || len(e.ID) > switchboard.MaxMessageIDBytes {
				t.Fatalf("accepted %+v", e)
			}
		case switchboard.EventEnded:
		default:
			t.Fatalf("accepted kind %q on a seat", e.Kind)
		}
	})
}
