package switchboard

import (
	"testing"
	"testing/synctest"
	"time"
)

// movedSink is a visitorSink that also hears MovedBack.
type movedSink struct{ *visitorSink }

func (m movedSink) MovedBack(why string) { m.add("moved back " + why) }

func startWith(t *testing.T, sb *Switchboard, o ContactOptions) (*VisitorHandle, movedSink) {
	t.Helper()
	vs := movedSink{&visitorSink{}}
	h, err := sb.StartContactWith(ChannelChat, "nb", vs, o)
	if err != nil {
		t.Fatalf("start contact %+v: %v", o, err)
	}
	return h, vs
}

// The queue's order (urgent.go): urgent in arrival order, then ahead, then
// the rest; the visitors an urgent arrival moved back hear why with their
// new place, those it did not move back (ahead of it, or of another
// language) hear nothing; the offers are marked; the KPIs count the urgent
// contact and its speed to answer apart.
func TestUrgentGoesFirstAndSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		c, cs := signInAvailable(t, sb, chatVol("v1", 1, "nb", "en"))
		h0, _ := startWith(t, sb, ContactOptions{})
		synctest.Wait()
		mustAccept(t, c, h0) // v1 is busy: everyone after waits
		n1, n1s := startWith(t, sb, ContactOptions{})
		n2, n2s := startWith(t, sb, ContactOptions{})
		en := &visitorSink{}
		if _, err := sb.StartContactWith(ChannelChat, "en", movedSink{en}, ContactOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(WaitResendEvery) // each was told its place; the next change is told at once
		synctest.Wait()
		urgentArrived := time.Now()
		u1, u1s := startWith(t, sb, ContactOptions{Urgent: true})
		a1, _ := startWith(t, sb, ContactOptions{Ahead: true})
		u2, _ := startWith(t, sb, ContactOptions{Urgent: true, Ahead: true})
		time.Sleep(WaitResendEvery)
		synctest.Wait()
		for name, want := range map[string]struct {
			s   movedSink
			pos int
		}{"n1": {n1s, 4}, "n2": {n2s, 5}, "u1": {u1s, 1}} {
			if p, _ := want.s.position(); p != want.pos {
				t.Errorf("%s at place %d, want %d (%v)", name, p, want.pos, want.s.lines())
			}
		}
		for name, s := range map[string]movedSink{"n1": n1s, "n2": n2s} {
			if s.count("moved back") == 0 {
				t.Errorf("%s was moved back by urgent contacts but not told so: %v", name, s.lines())
			}
		}
		if u1s.count("moved back") != 0 || en.count("moved back") != 0 {
			t.Errorf("told moved back though no urgent contact came ahead: u1 %v, en %v", u1s.lines(), en.lines())
		}
		// The order: u1, u2 (urgent, by arrival), a1 (ahead), n1, n2; each
		// talks 10 s.
		talking := h0
		var urgentWaits float64
		for i, next := range []*VisitorHandle{u1, u2, a1, n1, n2} {
			time.Sleep(10 * time.Second)
			if err := c.End(talking.ID(), anyCat); err != nil {
				t.Fatalf("end %d: %v", i, err)
			}
			synctest.Wait()
			if o := cs.lastOffer(); o.Contact != next.ID() || o.Urgent != (i < 2) {
				t.Fatalf("offer %d: %s urgent %v, want %s urgent %v", i, o.Contact[:6], o.Urgent, next.ID()[:6], i < 2)
			}
			mustAccept(t, c, next)
			if i < 2 {
				urgentWaits += time.Since(urgentArrived).Seconds()
			}
			talking = next
		}
		st := sb.Stats()
		if st.UrgentContacts[ChannelChat] != 2 {
			t.Errorf("urgent contacts counted %d, want 2", st.UrgentContacts[ChannelChat])
		}
		if h := st.UrgentSpeedToAnswer[ChannelChat]; h.Count != 2 || h.Sum != urgentWaits {
			t.Errorf("urgent speed to answer %d answers, %v s in all; want 2, %v s", h.Count, h.Sum, urgentWaits)
		}
		if h := st.SpeedToAnswer[ChannelChat]; h.Count != 6 {
			t.Errorf("speed to answer counts %d answers, want all 6", h.Count)
		}
	})
}

// An urgent contact is offered to another centre as soon as nobody here
// rings for it, even under wait_locally_when_busy, and before a contact
// that waited longer; the outgoing offer is marked urgent.
func TestUrgentOverflowsFirstAndAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		sb := newTestBoard(withOverflowWaiting(fo, time.Minute))
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h0, _ := startWith(t, sb, ContactOptions{})
		synctest.Wait()
		mustAccept(t, c, h0)
		n, _ := startWith(t, sb, ContactOptions{})
		time.Sleep(10 * time.Second)
		u, _ := startWith(t, sb, ContactOptions{Urgent: true})
		wantOfferedOut(t, "no other centre has anyone free", fo)
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb.Kick()
		wantOfferedOut(t, "B has someone free", fo, u)
		if o := fo.all()[0].req; !o.Urgent {
			t.Errorf("the offer to B is not marked urgent: %+v", o)
		}
		time.Sleep(50 * time.Second) // n has waited overflow_after
		wantOfferedOut(t, "n waited overflow_after", fo, u, n)
		if o := fo.all()[1].req; o.Urgent {
			t.Errorf("the offer of a contact that is not urgent is marked urgent: %+v", o)
		}
	})
}

// A phone call's urgency (the PBX's menu choice) is on the volunteer's
// ring and in the KPIs.
func TestUrgentCallMarked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb, _ := callBoard(nil)
		defer sb.Close()
		_, cs := signInForCalls(t, sb, phoneVol("p1", "sip:p1@pbx.example"), "sip:p1@pbx.example")
		if _, err := sb.PlaceCallWith(t.Context(), "nb", ContactOptions{Urgent: true}); err != nil {
			t.Fatalf("place call: %v", err)
		}
		synctest.Wait()
		if o := cs.lastOffer(); !o.Urgent || o.Channel != ChannelPhone {
			t.Errorf("the held call's offer %+v is not marked urgent", o)
		}
		if n := sb.Stats().UrgentContacts[ChannelPhone]; n != 1 {
			t.Errorf("urgent calls counted %d, want 1", n)
		}
	})
}

// Any move back is told, with its reason (review finding): a visitor whose
// volunteer's console closed mid-conversation goes back ahead of those who
// never talked, and each of them hears "returning" with their new place.
func TestReturningContactMovesOthersBackAndSaysSo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h0, _ := startWith(t, sb, ContactOptions{})
		synctest.Wait()
		mustAccept(t, c, h0)
		_, n1s := startWith(t, sb, ContactOptions{})
		time.Sleep(WaitResendEvery)
		synctest.Wait()
		if p, _ := n1s.position(); p != 1 {
			t.Fatalf("n1 at %d before, want 1", p)
		}
		c.SignOut() // h0 is requeued ahead
		time.Sleep(WaitResendEvery)
		synctest.Wait()
		if p, _ := n1s.position(); p != 2 {
			t.Fatalf("n1 at %d after, want 2", p)
		}
		if n1s.count("moved back returning") != 1 {
			t.Fatalf("n1 not told why it moved back: %v", n1s.lines())
		}
	})
}
