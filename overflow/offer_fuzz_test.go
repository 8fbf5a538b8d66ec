package overflow

import (
	"bytes"
	"testing"

	"github.com/helpmesh/helpmesh/internal/wire"
	"github.com/helpmesh/helpmesh/switchboard"
)

// FuzzOfferFrame feeds arbitrary bytes to the decoder another centre's
// offer and relay frames go through: it must never panic, must refuse
// oversized frames, and whatever it accepts as an event must pass or fail
// checkEvent without panicking.
func FuzzOfferFrame(f *testing.F) {
	seed := func(fr frame) {
		var buf bytes.Buffer
		if err := wire.Write(&buf, fr, maxFrame); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	seed(frame{Type: frameOffer, Contact: "0123456789abcdef0123456789abcdef", Channel: "chat", Language: "nb", RingMillis: 20000})
	seed(frame{Type: frameAccepted, Alias: "Kari"})
	seed(frame{Type: frameEvent, Seq: 1, Ack: 0, Event: &switchboard.Event{Kind: switchboard.EventMessage, ID: "m1", Text: "hei"}})
	seed(frame{Type: frameHeartbeat, Ack: 3})
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		var fr frame
		if err := wire.Read(bytes.NewReader(in), &fr, maxFrame); err != nil {
			return
		}
		if len(in) > maxFrame+4 {
			t.Fatalf("accepted a frame of %d bytes", len(in))
		}
		if fr.Event != nil {
			_ = checkEvent(*fr.Event, true)
			_ = checkEvent(*fr.Event, false)
		}
		_ = contactIDPattern.MatchString(fr.Contact)
	})
}
