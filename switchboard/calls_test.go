package switchboard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeTokens is the SIP ingress's token store as the desk sees it.
type fakeTokens struct {
	mu    sync.Mutex
	n     int
	calls map[string]*Call
	lease time.Duration
}

func (f *fakeTokens) Issue(c *Call, lease time.Duration) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	tok := fmt.Sprintf("TOKEN%d", f.n)
	if f.calls == nil {
		f.calls = map[string]*Call{}
	}
	f.calls[tok] = c
	f.lease = lease
	return tok
}

func (f *fakeTokens) call(t *testing.T, tok string) *Call {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.calls[tok]
	if !ok {
		t.Fatalf("token %q was never issued", tok)
	}
	return c
}

func phoneVol(id, phone string, channels ...string) Volunteer {
	if len(channels) == 0 {
		channels = []string{ChannelPhone}
	}
	return Volunteer{ID: id, Alias: "alias-" + id, Channels: channels, Languages: []string{"nb"}, Capacity: 2}
}

// signInForCalls signs a volunteer in with a phone and switches every
// channel of theirs on.
func signInForCalls(t *testing.T, sb *Switchboard, v Volunteer, phone string) (*Console, *consoleSink) {
	t.Helper()
	sink := &consoleSink{}
	con, err := sb.SignIn(v, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := con.SetPhone(phone); err != nil {
		t.Fatalf("set phone: %v", err)
	}
	for _, ch := range v.Channels {
		if err := con.SetAvailable(ch, true); err != nil {
			t.Fatalf("available %s: %v", ch, err)
		}
	}
	return con, sink
}

func callBoard(mod func(*Config)) (*Switchboard, *fakeTokens) {
	tokens := &fakeTokens{}
	sb := newTestBoard(func(c *Config) {
		c.CallTokens = tokens
		if mod != nil {
			mod(c)
		}
	})
	return sb, tokens
}

// tallyConserved: every call counted as offered is answered, abandoned,
// returned, waiting or in progress, and the transitions say the same.
func tallyConserved(t *testing.T, st Stats) {
	t.Helper()
	tl := st.Total()
	if tl.Offered != tl.AnsweredLocal+tl.AnsweredOverflow+tl.Abandoned+tl.Returned+uint64(tl.Waiting)+uint64(tl.InProgress) {
		t.Fatalf("tally not conserved: %+v", tl)
	}
	if st.Moved(StateConnected, StateEnded) != tl.AnsweredLocal+tl.AnsweredOverflow ||
		st.Moved(StateOffered, StateReturned) != tl.Returned ||
		st.Moved(StateOffered, StateAbandoned)+st.Moved(StateQueued, StateAbandoned) != tl.Abandoned {
		t.Fatalf("transitions %v do not match the tally %+v", st.Transitions, tl)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A call the PBX overflows goes to a free phone volunteer of our own at
// once: the volunteer's console shows it ringing, then connected, and the
// call counts as answered here with its speed to answer.
func TestCallToOurOwnVolunteer(t *testing.T) {
	sb, tokens := callBoard(nil)
	defer sb.Close()
	con, sink := signInForCalls(t, sb, phoneVol("v1", ""), "sip:kari@192.0.2.7:5064")
	placed, err := sb.PlaceCall(context.Background(), "nb")
	if err != nil {
		t.Fatal(err)
	}
	if placed.Centre != "A" || placed.Token == "" {
		t.Fatalf("placed %+v, want our centre and a token", placed)
	}
	call := tokens.call(t, placed.Token)
	if call.Phone() != "sip:kari@192.0.2.7:5064" {
		t.Fatalf("phone %q", call.Phone())
	}
	waitFor(t, "the ringing card", func() bool { return sink.lastOffer().Channel == ChannelPhone })
	if st := sb.Stats().Total(); st.Offered != 1 || st.Waiting != 1 {
		t.Fatalf("before pick-up: %+v", st)
	}
	if err := call.Arrived(); err != nil {
		t.Fatal(err)
	}
	if err := call.Arrived(); !errors.Is(err, ErrOfferGone) {
		t.Fatalf("second arrival: %v, want ErrOfferGone", err)
	}
	call.PickedUp()
	id := sink.lastOffer().Contact
	waitFor(t, "connected", func() bool { return sink.has("connected " + id) })
	if st := sb.Stats(); st.Total().InProgress != 1 || st.SpeedToAnswer[ChannelPhone].Count != 1 {
		t.Fatalf("in call: %+v, speed to answer %+v", st.Total(), st.SpeedToAnswer[ChannelPhone])
	}
	if err := con.Send(id, "m1", "hello"); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a message into a phone call: %v, want ErrBadRequest", err)
	}
	call.Ended(ByCaller)
	st := sb.Stats()
	if tl := st.Total(); tl.AnsweredLocal != 1 || tl.InProgress != 0 {
		t.Fatalf("after the call: %+v", tl)
	}
	tallyConserved(t, st)
	if err := con.End(id, Categorisation{Topics: []string{"family"}, AgeGroup: "25-plus"}); err != nil {
		t.Fatalf("categorise the call: %v", err)
	}
	if st := sb.Stats(); st.Categorised() != 1 || len(st.OffersReceived) != 0 {
		t.Fatalf("categorised %d, offers received %v (our own call is not another centre's offer)", st.Categorised(), st.OffersReceived)
	}
}

// Nobody free anywhere: the PBX keeps the caller (480), no contact is
// counted, and a volunteer who then goes available gets the next call.
func TestCallWhenNobodyIsFree(t *testing.T) {
	ov := &fakeOverflow{}
	sb, _ := callBoard(func(c *Config) { c.Overflow = ov })
	defer sb.Close()
	if _, err := sb.PlaceCall(context.Background(), "nb"); !errors.Is(err, ErrNoVolunteer) {
		t.Fatalf("place with nobody: %v, want ErrNoVolunteer", err)
	}
	if st := sb.Stats().Total(); st.Offered != 0 {
		t.Fatalf("a call nobody could take was counted: %+v", st)
	}
	signInForCalls(t, sb, phoneVol("v1", ""), "sip:v1@192.0.2.7")
	placed, err := sb.PlaceCall(context.Background(), "nb")
	if err != nil || placed.Centre != "A" {
		t.Fatalf("after a volunteer went available: %+v %v", placed, err)
	}
}

// A volunteer holds one call at a time, and a call plus chats never more
// than their capacity; while held for a call nothing else rings for them.
func TestNoVolunteerHasTwoCalls(t *testing.T) {
	sb, tokens := callBoard(nil)
	defer sb.Close()
	_, sink := signInForCalls(t, sb, phoneVol("v1", "", ChannelPhone, ChannelChat), "sip:v1@192.0.2.7")
	placed, err := sb.PlaceCall(context.Background(), "nb")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.PlaceCall(context.Background(), "nb"); !errors.Is(err, ErrNoVolunteer) {
		t.Fatalf("second call while one is held: %v", err)
	}
	h, _ := startContact(t, sb, ChannelChat, "nb")
	waitFor(t, "the call's card", func() bool { return len(sink.offered()) == 1 })
	if sb.Stats().Total().Waiting != 2 {
		t.Fatalf("the chat should wait while the volunteer is held for a call: %+v", sb.Stats().Total())
	}
	call := tokens.call(t, placed.Token)
	_ = call.Arrived()
	call.PickedUp()
	// In the call: capacity 2 leaves room for one chat, never a call.
	waitFor(t, "the chat offered", func() bool { return len(sink.offered()) == 2 })
	if sink.lastOffer().Contact != h.ID() {
		t.Fatalf("chat not offered during the call")
	}
	if _, err := sb.PlaceCall(context.Background(), "nb"); !errors.Is(err, ErrNoVolunteer) {
		t.Fatalf("second call during a call: %v", err)
	}
	call.Ended(ByVolunteer)
	if _, err := sb.PlaceCall(context.Background(), "nb"); !errors.Is(err, ErrNoVolunteer) {
		t.Fatalf("a call while the chat offer rings: %v, want ErrNoVolunteer", err)
	}
}

// A held call that does not arrive within its lease frees the volunteer,
// refuses a late arrival, and counts as returned to the PBX's queue.
func TestCallLeaseRunsOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb, tokens := callBoard(func(c *Config) { c.CallLease = 10 * time.Second })
		defer sb.Close()
		_, sink := signInForCalls(t, sb, phoneVol("v1", ""), "sip:v1@192.0.2.7")
		placed, err := sb.PlaceCall(context.Background(), "nb")
		if err != nil {
			t.Fatal(err)
		}
		if tokens.lease != 10*time.Second {
			t.Fatalf("token lease %v, want the call lease", tokens.lease)
		}
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if err := tokens.call(t, placed.Token).Arrived(); !errors.Is(err, ErrOfferGone) {
			t.Fatalf("late arrival: %v, want ErrOfferGone", err)
		}
		if !sink.has("withdrawn " + sink.lastOffer().Contact + " the call did not come through") {
			t.Fatalf("console not told: %v", sink.lines())
		}
		st := sb.Stats()
		if tl := st.Total(); tl.Returned != 1 || tl.Waiting != 0 {
			t.Fatalf("after the lease: %+v", tl)
		}
		tallyConserved(t, st)
		if st.Volunteers[ChannelPhone].Free != 1 {
			t.Fatalf("volunteer not free again: %+v", st.Volunteers)
		}
	})
}

// The outcomes of a call we hold for ourselves, each counted once.
func TestCallOutcomes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		run     func(c *Call)
		outcome func(Tally) uint64
	}{
		{"caller hangs up before pick-up", func(c *Call) { _ = c.Arrived(); c.Ended(ByCaller) }, func(t Tally) uint64 { return t.Abandoned }},
		{"phone refuses", func(c *Call) { _ = c.Arrived(); c.Ended(ByUnanswered) }, func(t Tally) uint64 { return t.Returned }},
		{"volunteer hangs up", func(c *Call) { _ = c.Arrived(); c.PickedUp(); c.Ended(ByVolunteer) }, func(t Tally) uint64 { return t.AnsweredLocal }},
		{"ended twice, picked up late", func(c *Call) {
			_ = c.Arrived()
			c.Ended(ByCaller)
			c.PickedUp()
			c.Ended(ByVolunteer)
		}, func(t Tally) uint64 { return t.Abandoned }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb, tokens := callBoard(nil)
			defer sb.Close()
			signInForCalls(t, sb, phoneVol("v1", ""), "sip:v1@192.0.2.7")
			placed, err := sb.PlaceCall(context.Background(), "nb")
			if err != nil {
				t.Fatal(err)
			}
			tc.run(tokens.call(t, placed.Token))
			st := sb.Stats()
			if got := tc.outcome(st.Total()); got != 1 {
				t.Fatalf("outcome counted %d times: %+v", got, st.Total())
			}
			tallyConserved(t, st)
			if st.Volunteers[ChannelPhone].Free != 1 {
				t.Fatalf("volunteer not free after the call: %+v", st.Volunteers)
			}
		})
	}
}

// The owner's side of an overflowed call: the other centre's token comes
// back as the placement, its progress moves our contact, and losing the
// relay before pick-up returns the call to a PBX's queue.
func TestCallOverflowsToAnotherCentre(t *testing.T) {
	for _, tc := range []struct {
		name    string
		events  []Event
		lose    bool
		outcome func(Tally) uint64
	}{
		{"answered there", []Event{{Kind: EventAnswered}, {Kind: EventEnded, By: ByVolunteer}}, false, func(t Tally) uint64 { return t.AnsweredOverflow }},
		{"caller gave up", []Event{{Kind: EventEnded, By: ByCaller}}, false, func(t Tally) uint64 { return t.Abandoned }},
		{"lease ran out there", []Event{{Kind: EventEnded, By: ByUnanswered}}, false, func(t Tally) uint64 { return t.Returned }},
		{"centre lost before pick-up", nil, true, func(t Tally) uint64 { return t.Returned }},
		{"centre lost during the call", []Event{{Kind: EventAnswered}}, true, func(t Tally) uint64 { return t.AnsweredOverflow }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ov := &fakeOverflow{}
			ov.setCandidates(Candidate{Centre: "B"})
			sb, _ := callBoard(func(c *Config) { c.Overflow = ov })
			defer sb.Close()
			ans := &fakeAnswer{alias: "x", token: "TOKB", peer: &fakePeer{}}
			go func() {
				for ov.count() == 0 {
					time.Sleep(time.Millisecond)
				}
				ov.all()[0].reply <- offerReply{ans: ans}
			}()
			placed, err := sb.PlaceCall(context.Background(), "nb")
			if err != nil {
				t.Fatal(err)
			}
			if placed != (Placed{Centre: "B", Token: "TOKB"}) {
				t.Fatalf("placed %+v", placed)
			}
			if req := ov.all()[0].req; req.Channel != ChannelPhone || req.Ring != DefaultCallLease {
				t.Fatalf("offer %+v, want a phone offer with the call lease", req)
			}
			ans.mu.Lock()
			h := ans.h
			ans.mu.Unlock()
			for _, e := range tc.events {
				h.OnEvent(e)
			}
			if tc.lose {
				h.OnLost(0)
			}
			st := sb.Stats()
			if got := tc.outcome(st.Total()); got != 1 {
				t.Fatalf("outcome counted %d: %+v", got, st.Total())
			}
			tallyConserved(t, st)
			if st.OffersSent[OfferKey{"B", OfferAccepted, ChannelPhone}] != 1 {
				t.Fatalf("offers sent %v", st.OffersSent)
			}
		})
	}
}

// An answering centre with a bad or missing token is skipped for the next.
func TestCallSkipsACentreWithoutAToken(t *testing.T) {
	ov := &fakeOverflow{}
	ov.setCandidates(Candidate{Centre: "B"}, Candidate{Centre: "C"})
	sb, _ := callBoard(func(c *Config) { c.Overflow = ov })
	defer sb.Close()
	bad := &fakeAnswer{alias: "x", token: "not a token>", peer: &fakePeer{}}
	good := &fakeAnswer{alias: "y", token: "TOKC", peer: &fakePeer{}}
	go func() {
		for i, a := range []*fakeAnswer{bad, good} {
			for ov.count() <= i {
				time.Sleep(time.Millisecond)
			}
			ov.all()[i].reply <- offerReply{ans: a}
		}
	}()
	placed, err := sb.PlaceCall(context.Background(), "nb")
	if err != nil || placed.Centre != "C" {
		t.Fatalf("placed %+v %v, want C", placed, err)
	}
	bad.mu.Lock()
	defer bad.mu.Unlock()
	if bad.cancelled == "" || bad.confirmed {
		t.Fatalf("bad answer confirmed=%v cancelled=%q", bad.confirmed, bad.cancelled)
	}
}

// The answering side: another centre's call holds a volunteer at once
// (no click), the token comes back with the acceptance, and the call's
// progress reaches the owner over the relay, even what happened before the
// relay was connected.
func TestHeldCallForAnotherCentre(t *testing.T) {
	sb, tokens := callBoard(func(c *Config) { c.Centre = "B" })
	defer sb.Close()
	_, sink := signInForCalls(t, sb, phoneVol("v1", ""), "sip:v1@192.0.2.7")
	res, err := sb.Reserve(IncomingOffer{Contact: "c1", From: "A", Channel: ChannelPhone, Language: "nb", Ring: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if alias, err := res.Wait(ctx); err != nil || alias != "alias-v1" {
		t.Fatalf("wait: %q %v, want the alias at once", alias, err)
	}
	call := tokens.call(t, res.Token())
	if err := call.Arrived(); err != nil {
		t.Fatal(err)
	}
	call.PickedUp() // before the relay is connected
	peer := &fakePeer{}
	res.Connect(peer)
	waitFor(t, "the console connected", func() bool { return sink.has("connected c1 A") })
	call.Ended(ByCaller)
	sent, closed := peer.state()
	if len(sent) != 2 || sent[0].Kind != EventAnswered || sent[1].Kind != EventEnded || sent[1].By != ByCaller || closed == "" {
		t.Fatalf("relay got %+v, closed %q", sent, closed)
	}
	if st := sb.Stats(); st.OffersReceived[OfferKey{"A", OfferAccepted, ChannelPhone}] != 1 || len(sb.received) != 0 {
		t.Fatalf("offers received %v", st.OffersReceived)
	}
}

// The owning centre never confirms: the held volunteer is freed, and the
// token no longer rings them.
func TestHeldCallReleasedWhenNotConfirmed(t *testing.T) {
	sb, tokens := callBoard(func(c *Config) { c.Centre = "B" })
	defer sb.Close()
	signInForCalls(t, sb, phoneVol("v1", ""), "sip:v1@192.0.2.7")
	res, err := sb.Reserve(IncomingOffer{Contact: "c1", From: "A", Channel: ChannelPhone, Language: "nb"})
	if err != nil {
		t.Fatal(err)
	}
	res.Release("the visitor's centre went away")
	if err := tokens.call(t, res.Token()).Arrived(); !errors.Is(err, ErrOfferGone) {
		t.Fatalf("arrival after release: %v", err)
	}
	if st := sb.Stats(); st.Volunteers[ChannelPhone].Free != 1 || st.OffersReceived[OfferKey{"A", OfferWithdrawn, ChannelPhone}] != 1 {
		t.Fatalf("after release: %+v %v", st.Volunteers, st.OffersReceived)
	}
}

// Taking calls needs a phone: an extension of the centre's PBX or a SIP
// address; anything else is refused with a clear error.
func TestVolunteerPhone(t *testing.T) {
	sb, _ := callBoard(func(c *Config) { c.PhoneDomain = "pbx.centre-a.example" })
	defer sb.Close()
	con, err := sb.SignIn(phoneVol("v1", ""), &consoleSink{})
	if err != nil {
		t.Fatal(err)
	}
	if err := con.SetAvailable(ChannelPhone, true); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.PlaceCall(context.Background(), "nb"); !errors.Is(err, ErrNoVolunteer) {
		t.Fatalf("a call to a volunteer without a phone: %v", err)
	}
	if free := sb.Availability()[ChannelPhone].Free["nb"]; free != 0 {
		t.Fatalf("shown free for calls without a phone: %d", free)
	}
	for _, bad := range []string{"kari", "sip:nohost", "sip:a b@c", "sip:<x>@y", "tel:+4712345678", "1", string(make([]byte, 200))} {
		if err := con.SetPhone(bad); !errors.Is(err, ErrBadRequest) {
			t.Errorf("phone %q: %v, want ErrBadRequest", bad, err)
		}
	}
	if err := con.SetPhone("2041"); err != nil || con.Phone() != "sip:2041@pbx.centre-a.example" {
		t.Fatalf("extension: %q %v", con.Phone(), err)
	}
	if err := con.SetPhone("sip:kari@192.0.2.7:5064"); err != nil || con.Phone() != "sip:kari@192.0.2.7:5064" {
		t.Fatalf("sip address: %q %v", con.Phone(), err)
	}
	if _, err := sb.PlaceCall(context.Background(), "nb"); err != nil {
		t.Fatalf("a call once the volunteer gave a phone: %v", err)
	}
}

// A volunteer may decline a held call before it arrives (the token is then
// refused); once it rings on their phone the phone decides.
func TestDeclineAHeldCall(t *testing.T) {
	sb, tokens := callBoard(nil)
	defer sb.Close()
	con, _ := signInForCalls(t, sb, phoneVol("v1", ""), "sip:v1@192.0.2.7")
	placed, _ := sb.PlaceCall(context.Background(), "nb")
	id := ""
	for cid := range sb.contacts {
		id = cid
	}
	if err := con.Decline(id); err != nil {
		t.Fatal(err)
	}
	if err := tokens.call(t, placed.Token).Arrived(); !errors.Is(err, ErrOfferGone) {
		t.Fatalf("arrival after decline: %v", err)
	}
	placed, _ = sb.PlaceCall(context.Background(), "nb")
	_ = tokens.call(t, placed.Token).Arrived()
	for cid := range sb.contacts {
		id = cid
	}
	if err := con.Decline(id); !errors.Is(err, ErrOfferGone) {
		t.Fatalf("decline while the phone rings: %v", err)
	}
}

// A drain waits for a call in progress, and a draining centre places no
// new calls (the PBX keeps them).
func TestDrainWaitsForACall(t *testing.T) {
	sb, tokens := callBoard(nil)
	defer sb.Close()
	signInForCalls(t, sb, phoneVol("v1", ""), "sip:v1@192.0.2.7")
	placed, _ := sb.PlaceCall(context.Background(), "nb")
	call := tokens.call(t, placed.Token)
	_ = call.Arrived()
	call.PickedUp()
	drained := sb.Drain()
	if _, err := sb.PlaceCall(context.Background(), "nb"); !errors.Is(err, ErrDraining) {
		t.Fatalf("place while draining: %v", err)
	}
	select {
	case <-drained:
		t.Fatal("drained with a call in progress")
	default:
	}
	call.Ended(ByCaller)
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		t.Fatal("not drained after the call ended")
	}
}

// A centre that takes no calls (no SIP ingress) shows nobody free for them.
func TestNoCallsWithoutAnIngress(t *testing.T) {
	sb := newTestBoard(nil)
	defer sb.Close()
	con, err := sb.SignIn(phoneVol("v1", ""), &consoleSink{})
	if err != nil {
		t.Fatal(err)
	}
	_ = con.SetPhone("sip:v1@192.0.2.7")
	_ = con.SetAvailable(ChannelPhone, true)
	if free := sb.Availability()[ChannelPhone].Free["nb"]; free != 0 {
		t.Fatalf("free for calls without an ingress: %d", free)
	}
	if _, err := sb.PlaceCall(context.Background(), "nb"); !errors.Is(err, ErrNoVolunteer) {
		t.Fatalf("place: %v", err)
	}
}
