package switchboard

import (
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// kpiConserved checks the KPI law on one snapshot, per channel and language.
func kpiConserved(t *testing.T, st Stats) {
	t.Helper()
	for k, c := range st.Contacts {
		if c.Offered != c.AnsweredLocal+c.AnsweredOverflow+c.Abandoned+uint64(c.Waiting)+uint64(c.InProgress) {
			t.Fatalf("%v not conserved: %+v", k, c)
		}
	}
}

func tally(t *testing.T, sb *Switchboard, want Tally) {
	t.Helper()
	st := sb.Stats()
	kpiConserved(t, st)
	if got := st.Contacts[Key{ChannelChat, "nb"}]; got != want {
		t.Fatalf("chat/nb tally %+v, want %+v", got, want)
	}
}

// The KPI tally: answered counts when a conversation ends, a requeued
// contact is counted once, a shutdown turns conversations into answered
// and waiting contacts into abandoned; speed to answer sees first
// connections only; offers sent are counted by result.
func TestKPITally(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		sb := newTestBoard(func(c *Config) { c.Overflow = fo })
		defer sb.Close()
		con, _ := signInAvailable(t, sb, chatVol("v1", 1))

		// Answered here after 7 s; counted answered when it ends.
		h1, _ := startContact(t, sb, ChannelChat, "nb")
		time.Sleep(7 * time.Second)
		mustAccept(t, con, h1)
		synctest.Wait()
		tally(t, sb, Tally{Offered: 1, InProgress: 1})
		if err := con.End(h1.ID(), anyCat); err != nil {
			t.Fatal(err)
		}
		tally(t, sb, Tally{Offered: 1, AnsweredLocal: 1})

		// Nobody here on duty: h2 overflows to B, is lost there (requeued,
		// not counted), then answered here and left in progress.
		if err := con.SetAvailable(ChannelChat, false); err != nil {
			t.Fatal(err)
		}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		offers := fo.all()
		if len(offers) != 1 {
			t.Fatalf("%d offers, want 1", len(offers))
		}
		ans := &fakeAnswer{alias: "b", peer: &fakePeer{}}
		offers[0].reply <- offerReply{ans: ans}
		synctest.Wait()
		tally(t, sb, Tally{Offered: 2, AnsweredLocal: 1, InProgress: 1})
		fo.setCandidates()
		h, _, _ := ans.state()
		h.OnLost(0)
		synctest.Wait()
		tally(t, sb, Tally{Offered: 2, AnsweredLocal: 1, Waiting: 1})
		if err := con.SetAvailable(ChannelChat, true); err != nil {
			t.Fatal(err)
		}
		mustAccept(t, con, h2)
		tally(t, sb, Tally{Offered: 2, AnsweredLocal: 1, InProgress: 1})

		// Two more wait (one declined by C, one failed at D); one leaves.
		fo.setCandidates(Candidate{Centre: "C", Version: 1}, Candidate{Centre: "D", Version: 1})
		h3, _ := startContact(t, sb, ChannelChat, "nb")
		h4, _ := startContact(t, sb, ChannelChat, "nb")
		time.Sleep(testOverflowAfter)
		synctest.Wait()
		offers = fo.all()[1:]
		if len(offers) != 2 {
			t.Fatalf("%d new offers, want 2", len(offers))
		}
		for _, o := range offers {
			if o.req.Contact == h3.ID() {
				o.reply <- offerReply{err: fmt.Errorf("%w: no one free", ErrDeclined)}
			} else {
				o.reply <- offerReply{err: errors.New("stream reset")}
			}
		}
		synctest.Wait()
		fo.setCandidates()
		h4.End()
		tally(t, sb, Tally{Offered: 4, AnsweredLocal: 1, Abandoned: 1, Waiting: 1, InProgress: 1})

		st := sb.Stats()
		if h := st.SpeedToAnswer[ChannelChat]; h.Count != 2 || h.Sum != 7 || h.Buckets[5] != 1 || h.Buckets[10] != 2 || h.Buckets[600] != 2 {
			// h1 after 7 s; h2 at once (by B), not again when answered here.
			t.Fatalf("speed to answer %+v: want first connections at 7 s and 0 s", h)
		}
		sent := st.OffersSent
		if sent[OfferKey{"B", OfferAccepted, ChannelChat}] != 1 || sent[OfferKey{"C", OfferDeclined, ChannelChat}]+sent[OfferKey{"D", OfferDeclined, ChannelChat}] != 1 ||
			sent[OfferKey{"C", OfferFailed, ChannelChat}]+sent[OfferKey{"D", OfferFailed, ChannelChat}] != 1 {
			t.Fatalf("offers sent %v", sent)
		}
		if st.Volunteers[ChannelChat] != (VolunteerCount{Busy: 1}) || st.Queues[ChannelChat].Length != 1 {
			t.Fatalf("volunteers %v, queues %v", st.Volunteers, st.Queues)
		}

		// Shutting down: the conversation happened (answered), the waiting
		// contact was abandoned; nothing is counted twice afterwards.
		sb.Close()
		tally(t, sb, Tally{Offered: 4, AnsweredLocal: 2, Abandoned: 2})
		_ = con.End(h2.ID(), anyCat)
		h3.End()
		tally(t, sb, Tally{Offered: 4, AnsweredLocal: 2, Abandoned: 2})
	})
}

// An overflowed conversation counts as answered by overflow when it ends,
// and a withdrawn offer is counted as such on both sides.
func TestKPIOverflowAnsweredAndReceived(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		sb := newTestBoard(func(c *Config) { c.Overflow = fo })
		defer sb.Close()
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		h1, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		ans := &fakeAnswer{alias: "b", peer: &fakePeer{}}
		fo.all()[0].reply <- offerReply{ans: ans}
		synctest.Wait()
		h1.End()
		tally(t, sb, Tally{Offered: 1, AnsweredOverflow: 1})

		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		h2.End()
		synctest.Wait()
		tally(t, sb, Tally{Offered: 2, AnsweredOverflow: 1, Abandoned: 1})
		if got := sb.Stats().OffersSent; got[OfferKey{"B", OfferAccepted, ChannelChat}] != 1 || got[OfferKey{"B", OfferWithdrawn, ChannelChat}] != 1 {
			t.Fatalf("offers sent %v", got)
		}

		// Received: one declined (nobody free), one withdrawn, one accepted.
		if _, err := sb.Reserve(IncomingOffer{Contact: "0123456789abcdef", From: "C", Channel: ChannelChat, Language: "nb", Ring: testRing}); !errors.Is(err, ErrNoVolunteer) {
			t.Fatalf("reserve with nobody free: %v", err)
		}
		con, sink := signInAvailable(t, sb, chatVol("v1", 1))
		res, err := sb.Reserve(IncomingOffer{Contact: "0123456789abcde0", From: "C", Channel: ChannelChat, Language: "nb", Ring: testRing})
		if err != nil {
			t.Fatal(err)
		}
		res.Release("withdrawn")
		res.Release("again")
		res, err = sb.Reserve(IncomingOffer{Contact: "0123456789abcde1", From: "C", Channel: ChannelChat, Language: "nb", Ring: testRing})
		if err != nil {
			t.Fatal(err)
		}
		if err := con.Accept("0123456789abcde1"); err != nil {
			t.Fatal(err)
		}
		if _, err := res.Wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		res.Connect(&fakePeer{})
		synctest.Wait()
		_ = sink
		got := sb.Stats().OffersReceived
		want := map[OfferKey]uint64{{"C", OfferDeclined, ChannelChat}: 1, {"C", OfferWithdrawn, ChannelChat}: 1, {"C", OfferAccepted, ChannelChat}: 1}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("offers received %v, want %v", got, want)
		}
		// Another centre's contacts never enter this centre's tally.
		tally(t, sb, Tally{Offered: 2, AnsweredOverflow: 1, Abandoned: 1})
	})
}
