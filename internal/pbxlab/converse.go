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

// HeardEachOther fails the test unless each of two phones in a call heard
// the other's speech (correlation > 0.8 between what one said and the
// other recorded) and not its own (a mismatched pair < 0.5, so that the
// check can fail).
func HeardEachOther(t testing.TB, a *Phone, aSaid string, b *Phone, bSaid string) {
	t.Helper()
	for _, c := range []struct {
		what        string
		said, heard string
		match       bool
	}{
		{"a's speech vs what b heard", aSaid, b.Heard(), true},
		{"b's speech vs what a heard", bSaid, a.Heard(), true},
		{"a's speech vs what a heard (mismatch)", aSaid, a.Heard(), false},
		{"b's speech vs what b heard (mismatch)", bSaid, b.Heard(), false},
	} {
		got := MustCorrelate(t, c.what+" (a="+a.cfg.User+", b="+b.cfg.User+")", c.said, c.heard)
		switch {
		case c.match && got < 0.8:
			t.Errorf("%s: correlation %.3f < 0.8: the voice did not arrive", c.what, got)
		case !c.match && got >= 0.5:
			t.Errorf("%s: correlation %.3f >= 0.5: the check cannot tell voices apart", c.what, got)
		}
	}
}
