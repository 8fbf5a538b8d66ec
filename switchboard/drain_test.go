package switchboard

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func drainedYet(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A draining desk refuses new visitors and other centres' offers, shows no
// one free, offers what it still queues to other centres at once, and
// reports drained only when its last conversation (its own and one it
// answers for another centre) has ended.
func TestDrainFinishesWorkAndRefusesNew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflowWaiting(fo, time.Hour))
		defer sb.Close()
		c1, _ := signInAvailable(t, sb, chatVol("v1", 2))
		// One conversation of ours, one for centre B, one contact queued.
		h1, _ := startContact(t, sb, ChannelChat, "nb")
		mustAccept(t, c1, h1)
		res, err := sb.Reserve(IncomingOffer{Contact: "x1", From: "B", Channel: ChannelChat, Language: "nb", Ring: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if err := c1.Accept("x1"); err != nil {
			t.Fatal(err)
		}
		if _, err := res.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		peerB := &fakePeer{}
		hB := res.Connect(peerB)
		h2, v2 := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if n := fo.count(); n != 0 {
			t.Fatalf("offered out before overflow_after: %d", n)
		}

		drained := sb.Drain()
		if again := sb.Drain(); again != drained {
			t.Fatal("a second Drain returned another channel")
		}
		if !sb.Draining() {
			t.Fatal("not draining after Drain")
		}
		if _, err := sb.StartContact(ChannelChat, "nb", &visitorSink{}); !errors.Is(err, ErrDraining) {
			t.Fatalf("new contact while draining: %v", err)
		}
		if _, err := sb.Reserve(IncomingOffer{Contact: "x2", From: "C", Channel: ChannelChat, Language: "nb", Ring: time.Second}); !errors.Is(err, ErrDraining) {
			t.Fatalf("offer from another centre while draining: %v", err)
		}
		for ch, v := range sb.Availability() {
			for l, n := range v.Free {
				if n > 0 {
					t.Fatalf("draining desk shows %d free for %s/%s", n, ch, l)
				}
			}
		}
		// The queued contact goes out at once, without waiting an hour.
		synctest.Wait()
		offers := fo.all()
		if len(offers) != 1 || offers[0].req.Contact != h2.ID() {
			t.Fatalf("queued contact not offered out at drain: %+v", offers)
		}
		ans := &fakeAnswer{alias: "Ola", peer: &fakePeer{}}
		offers[0].reply <- offerReply{ans: ans}
		synctest.Wait()
		if !v2.has("connected Ola") {
			t.Fatalf("queued visitor: %v", v2.lines())
		}

		// Each conversation ends; only the last one drains the desk.
		h1.End()
		synctest.Wait()
		if drainedYet(drained) {
			t.Fatal("drained with two conversations left")
		}
		hB.OnEvent(Event{Kind: EventEnded, By: ByVisitor})
		synctest.Wait()
		if drainedYet(drained) {
			t.Fatal("drained with the overflowed conversation left")
		}
		hd, _, _ := ans.state()
		hd.OnEvent(Event{Kind: EventEnded, By: ByVolunteer})
		synctest.Wait()
		if !drainedYet(drained) {
			t.Fatalf("not drained with nothing left")
		}
		st := sb.Stats()
		conserved(t, st)
		if tl, local, overflow := totals(st); tl.Offered != 2 || local != 1 || overflow != 1 || tl.Abandoned != 0 || requeued(st) != 0 {
			t.Fatalf("stats after drain: %+v", st)
		}
	})
}

// An idle desk is drained at once; a visitor who leaves while waiting
// drains it too.
func TestDrainIdleAndAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		idle := newTestBoard(nil)
		defer idle.Close()
		if !drainedYet(idle.Drain()) {
			t.Fatal("an idle desk did not drain at once")
		}
		h, _ := startContact(t, sb, ChannelChat, "nb")
		drained := sb.Drain()
		if drainedYet(drained) {
			t.Fatal("drained with a visitor waiting")
		}
		h.End()
		if !drainedYet(drained) {
			t.Fatal("not drained after the visitor left")
		}
		if st := sb.Stats(); st.Total().Abandoned != 1 {
			t.Fatalf("stats: %+v", st)
		}
	})
}

// An offer from another centre that rings when Drain starts, then is
// declined or rings out, leaves nothing: the drain finishes at once, not
// after the operator's drain timeout.
func TestDrainFinishesWhenARingingReceivedOfferEnds(t *testing.T) {
	for _, how := range []string{"declined", "rang out"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sb := newTestBoard(nil)
				defer sb.Close()
				con, _ := signInAvailable(t, sb, chatVol("v1", 1))
				res, err := sb.Reserve(IncomingOffer{Contact: "x1", From: "B", Channel: ChannelChat, Language: "nb", Ring: 5 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				waited := make(chan error, 1)
				go func() { _, err := res.Wait(context.Background()); waited <- err }()
				drained := sb.Drain()
				synctest.Wait()
				select {
				case <-drained:
					t.Fatal("drained while an offer rings")
				default:
				}
				start := time.Now()
				if how == "declined" {
					if err := con.Decline("x1"); err != nil {
						t.Fatal(err)
					}
				}
				if err := <-waited; !errors.Is(err, ErrOfferGone) {
					t.Fatalf("wait: %v", err)
				}
				synctest.Wait()
				select {
				case <-drained:
				default:
					t.Fatalf("not drained after the offer %s (%v later)", how, time.Since(start))
				}
			})
		})
	}
}
