package media

import (
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzBridgeOffer: whatever a browser (or someone posing as one) sends as
// its offer, Bridge answers or refuses with one of its errors, never
// panics, and the leg closes cleanly after either.
func FuzzBridgeOffer(f *testing.F) {
	f.Add(newBrowser(f, []Codec{PCMU, PCMA}, PCMU).offer)
	f.Add(newBrowser(f, []Codec{PCMA}, PCMA).offer)
	f.Add(baresipOffer)
	f.Add("v=0\r\n")
	e := newTestEngine(f, nil)
	caller := udpEnd(f)
	f.Fuzz(func(t *testing.T, offer string) {
		leg, err := e.Open(context.Background(), Offer{Remote: addrOf(caller), Codec: PCMU})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		answer, err := leg.Bridge(ctx, offer)
		switch {
		case err == nil && answer == "":
			t.Fatal("empty answer")
		case err != nil && !errors.Is(err, ErrBadSDP) && !errors.Is(err, ErrNoCodec):
			t.Fatalf("unclassified error: %v", err)
		}
		if err := leg.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	})
}
