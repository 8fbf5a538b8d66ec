package overflow

import (
	"encoding/json"
	"testing"
	"unicode/utf8"

	"github.com/helpmesh/helpmesh/switchboard"
)

// FuzzRelayEvent feeds arbitrary JSON as a relayed event to checkEvent
// from both sides: it must never panic; what it accepts has every field
// within its bound; a transfer request or leave is accepted only from the
// answering centre, and the owner's answers to it only from the owner.
func FuzzRelayEvent(f *testing.F) {
	for _, e := range []switchboard.Event{
		{Kind: switchboard.EventMessage, ID: "m1", Text: "hei"},
		{Kind: switchboard.EventTransfer, Centre: "c3", Language: "nn", Warm: true, Note: "a note"},
		{Kind: switchboard.EventLeave},
		{Kind: switchboard.EventTransferAccepted, Alias: "Cai", Warm: true},
		{Kind: switchboard.EventTransferFailed, Reason: "nobody at c3 took it"},
		{Kind: switchboard.EventEnded, By: switchboard.ByTransferred},
	} {
		b, _ := json.Marshal(e)
		f.Add(b, true)
		f.Add(b, false)
	}
	f.Fuzz(func(t *testing.T, in []byte, fromAnswering bool) {
		if len(in) > maxFrame {
			return // wire.Read refuses it before (FuzzOfferFrame)
		}
		var e switchboard.Event
		if json.Unmarshal(in, &e) != nil {
			return
		}
		if checkEvent(e, fromAnswering) != nil {
			return
		}
		if len(e.Note) > switchboard.MaxNoteBytes || !utf8.ValidString(e.Note) || len(e.Centre) > maxEventCentre ||
			len(e.Language) > maxEventLanguage || len(e.Alias) > maxEventAlias || len(e.Reason) > maxEventReason {
			t.Fatalf("accepted an event out of bounds: %+v", e)
		}
		switch e.Kind {
		case switchboard.EventTransfer, switchboard.EventLeave:
			if !fromAnswering {
				t.Fatalf("accepted %s from the owner", e.Kind)
			}
		case switchboard.EventTransferAccepted, switchboard.EventTransferFailed:
			if fromAnswering {
				t.Fatalf("accepted %s from the answering centre", e.Kind)
			}
		}
	})
}
