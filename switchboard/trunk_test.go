package switchboard

import (
	"context"
	"errors"
	"testing"
)

func browserBoard() (*Switchboard, *fakeTokens) {
	return callBoard(func(c *Config) { c.BrowserPhones = true })
}

// A call the node holds rings our free browser-phone volunteers one after
// another (never the same one twice), and one contact lives through it:
// the first volunteer declines while it rings, the second picks up, and
// the call is counted once, answered here.
func TestTrunkCallRingsVolunteersInTurnAndCountsOnce(t *testing.T) {
	sb, tokens := browserBoard()
	defer sb.Close()
	cons := map[string]*Console{}
	for _, id := range []string{"v1", "v2"} {
		cons[BrowserPhonePrefix+id], _ = signInForCalls(t, sb, phoneVol(id, ""), BrowserPhone)
	}

	tc, err := sb.OpenCall("nb")
	if err != nil {
		t.Fatal(err)
	}
	tok1, err := tc.RingHere()
	if err != nil {
		t.Fatal(err)
	}
	call1 := tokens.call(t, tok1)
	if err := call1.Arrived(); err != nil {
		t.Fatal(err)
	}
	first := call1.Phone()
	if first != BrowserPhonePrefix+"v1" && first != BrowserPhonePrefix+"v2" {
		t.Fatalf("held call rings at %q, want a browser phone", first)
	}
	if _, err := tc.RingHere(); err == nil {
		t.Fatal("a second volunteer was rung while the first still rang")
	}
	// The one rung declines in the console although the call rings: a
	// browser phone can.
	if err := cons[first].Decline(call1.rc.id); err != nil {
		t.Fatalf("decline a ringing browser call: %v", err)
	}
	select {
	case <-call1.Over():
	default:
		t.Fatal("declined call's Over not closed")
	}
	tok2, err := tc.RingHere()
	if err != nil {
		t.Fatal(err)
	}
	call2 := tokens.call(t, tok2)
	if call2.Phone() == first || cons[call2.Phone()] == nil {
		t.Fatalf("second ring at %q after %q declined", call2.Phone(), first)
	}
	if _, err := tc.RingHere(); err == nil {
		t.Fatal("rang again while v2 rings")
	}
	if err := call2.Arrived(); err != nil {
		t.Fatal(err)
	}
	call2.PickedUp()
	if tl := sb.Stats().Total(); tl.Offered != 1 || tl.InProgress != 1 {
		t.Fatalf("in the call: %+v", sb.Stats().Total())
	}
	call2.Ended(ByCaller)
	tc.Close(false)
	st := sb.Stats()
	if tl := st.Total(); tl.Offered != 1 || tl.AnsweredLocal != 1 || tl.Returned != 0 {
		t.Fatalf("after the call: %+v", tl)
	}
	tallyConserved(t, st)
}

// Nobody here answers, nobody elsewhere is free: the caller hears the
// prompt and the contact counts as returned; a caller who hangs up while it
// rings counts as abandoned, and the volunteer rung is freed.
func TestTrunkCallNotAnsweredOrAbandoned(t *testing.T) {
	sb, tokens := browserBoard()
	defer sb.Close()
	_, _ = signInForCalls(t, sb, phoneVol("v1", ""), BrowserPhone)

	tc, err := sb.OpenCall("nb")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tc.RingHere()
	if err != nil {
		t.Fatal(err)
	}
	tokens.call(t, tok).Ended(ByUnanswered)
	if _, err := tc.RingHere(); !errors.Is(err, ErrNoVolunteer) {
		t.Fatalf("ring the same volunteer again: %v, want ErrNoVolunteer", err)
	}
	if _, err := tc.Overflow(context.Background()); !errors.Is(err, ErrNoVolunteer) {
		t.Fatalf("overflow without other centres: %v", err)
	}
	tc.Close(false)
	if tl := sb.Stats().Total(); tl.Offered != 1 || tl.Returned != 1 || tl.Waiting != 0 {
		t.Fatalf("not answered: %+v", tl)
	}

	tc2, err := sb.OpenCall("nb")
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := tc2.RingHere()
	if err != nil {
		t.Fatal(err)
	}
	c2 := tokens.call(t, tok2)
	if err := c2.Arrived(); err != nil {
		t.Fatal(err)
	}
	c2.Ended(ByCaller)
	tc2.Close(true)
	st := sb.Stats()
	if tl := st.Total(); tl.Offered != 2 || tl.Abandoned != 1 || tl.Returned != 1 {
		t.Fatalf("abandoned: %+v", tl)
	}
	tallyConserved(t, st)
	if _, err := sb.OpenCall("xx"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("unserved language: %v", err)
	}
}

// A volunteer may answer in the browser only on a centre whose node is its
// phone.
func TestBrowserPhoneNeedsTheNodeAsPhone(t *testing.T) {
	sb, _ := callBoard(nil)
	defer sb.Close()
	con, err := sb.SignIn(phoneVol("v1", ""), &consoleSink{})
	if err != nil {
		t.Fatal(err)
	}
	if err := con.SetPhone(BrowserPhone); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("browser phone without BrowserPhones: %v", err)
	}
}

// A browser-phone volunteer's capacity rules hold for calls the node holds:
// while a call rings in their console no chat is offered to them; in the
// call, capacity 2 leaves room for one chat and never a second call.
func TestTrunkCallCapacity(t *testing.T) {
	sb, tokens := browserBoard()
	defer sb.Close()
	_, sink := signInForCalls(t, sb, phoneVol("v1", "", ChannelPhone, ChannelChat), BrowserPhone)
	tc, err := sb.OpenCall("nb")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tc.RingHere()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := startContact(t, sb, ChannelChat, "nb")
	waitFor(t, "the call's card", func() bool { return len(sink.offered()) == 1 })
	if sb.Stats().Total().Waiting != 2 {
		t.Fatalf("the chat should wait while the call rings in the console: %+v", sb.Stats().Total())
	}
	call := tokens.call(t, tok)
	if err := call.Arrived(); err != nil {
		t.Fatal(err)
	}
	call.PickedUp()
	waitFor(t, "the chat offered during the call", func() bool { return len(sink.offered()) == 2 })
	if sink.lastOffer().Contact != h.ID() {
		t.Fatal("the chat was not offered during the call")
	}
	tc2, err := sb.OpenCall("nb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc2.RingHere(); !errors.Is(err, ErrNoVolunteer) {
		t.Fatalf("a second call rang a volunteer in a call: %v", err)
	}
	tc2.Close(false)
	call.Ended(ByCaller)
	tc.Close(false)
	tallyConserved(t, sb.Stats())
}
