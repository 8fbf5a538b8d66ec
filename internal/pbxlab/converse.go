package pbxlab

import (
	"context"
	"testing"
	"time"
)

// Converse waits until caller and answerer both receive RTP, lets them talk,
// and hangs up from the caller's side.
func Converse(ctx context.Context, t testing.TB, caller, answerer *Phone, talk time.Duration) {
	t.Helper()
	for _, p := range []*Phone{caller, answerer} {
		// A call that ends instead fails here at once, not at ctx's end.
		if e, err := p.Await(ctx, "CALL_ESTABLISHED", "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		} else if e.Type != "CALL_ESTABLISHED" {
			t.Fatalf("call closed before it was established (%s; events %v)", e.Param, p.EventTypes())
		}
		if _, err := p.Await(ctx, "CALL_RTPESTAB"); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-time.After(talk): // the speech itself takes this long
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if err := caller.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*Phone{caller, answerer} {
		if _, err := p.Await(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
	}
}

// MustCorrelate is Correlate that logs the figure and fails the test on an error.
func MustCorrelate(t testing.TB, what, a, b string) float64 {
	t.Helper()
	c, err := Correlate(a, b)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("correlation, %s: %.3f", what, c)
	return c
}
