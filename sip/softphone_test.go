package sip

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// The console's answer meets its call: an Answer that comes before the
// call (the volunteer clicked while it was on its way) waits for it; a
// second Answer while one is being handled is refused; a HangUp ends the
// call and the Answer waiting on it; without a call both say ErrNoCall.
func TestSoftphonesRendezvous(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewSoftphones()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()

		type result struct {
			sdp string
			err error
		}
		answered := make(chan result, 1)
		go func() {
			sdp, err := s.Answer(ctx, "v1", "offer")
			answered <- result{sdp, err}
		}()
		synctest.Wait()
		select {
		case r := <-answered:
			t.Fatalf("Answer returned before the call came: %+v", r)
		default:
		}
		b, ok := s.register("v1")
		if !ok {
			t.Fatal("register")
		}
		if _, again := s.register("v1"); again {
			t.Fatal("a volunteer got a second call")
		}
		p := <-b.pickups
		if p.sdp != "offer" {
			t.Fatalf("the SIP side got %q", p.sdp)
		}
		if _, err := s.Answer(ctx, "v1", "second"); !errors.Is(err, ErrAnswered) {
			t.Fatalf("a second answer while the first is handled: %v, want ErrAnswered", err)
		}
		p.reply <- pickupReply{sdp: "answer"}
		if r := <-answered; r.err != nil || r.sdp != "answer" {
			t.Fatalf("Answer = %+v", r)
		}

		if err := s.HangUp("v1"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-b.hungUp:
		default:
			t.Fatal("HangUp did not reach the call")
		}
		s.unregister("v1", b)
		if err := s.HangUp("v1"); !errors.Is(err, ErrNoCall) {
			t.Fatalf("HangUp without a call: %v", err)
		}
		short, cancelShort := context.WithTimeout(context.Background(), time.Second)
		defer cancelShort()
		if _, err := s.Answer(short, "v1", "late"); !errors.Is(err, ErrNoCall) {
			t.Fatalf("Answer without a call: %v", err)
		}
	})
}
