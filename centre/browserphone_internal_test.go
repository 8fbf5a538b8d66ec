package centre

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/api"
	"github.com/helpmesh/helpmesh/sip"
)

// The console hears why an answer failed in its own words: with no call
// ringing for the volunteer, api.ErrNoCall (the page says the call is
// gone), not a generic failure that invites "try again" (review finding).
func TestConsolesAnswerSaysNoCall(t *testing.T) {
	c := consoles{&browserPhone{softphones: sip.NewSoftphones()}}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Answer(ctx, "v1", "v=0\r\n"); !errors.Is(err, api.ErrNoCall) {
		t.Fatalf("answer without a call: %v, want api.ErrNoCall", err)
	}
}
