package switchboard

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// Tests of the rule in busy.go: a contact is offered to other centres at
// once when waiting here cannot help it, unless the policy says
// wait_locally_when_busy; overflow_after stays the most it waits.

// offeredOut lists the contacts offered to other centres so far, in order.
func offeredOut(fo *fakeOverflow) []string {
	var ids []string
	for _, o := range fo.all() {
		ids = append(ids, o.req.Contact)
	}
	return ids
}

func wantOfferedOut(t *testing.T, when string, fo *fakeOverflow, want ...*VisitorHandle) {
	t.Helper()
	synctest.Wait()
	var ids []string
	for _, h := range want {
		ids = append(ids, h.ID())
	}
	got := offeredOut(fo)
	if len(got) != len(ids) {
		t.Fatalf("%s: offered out %v, want %v", when, short(got), short(ids))
	}
	for i := range got {
		if got[i] != ids[i] {
			t.Fatalf("%s: offered out %v, want %v", when, short(got), short(ids))
		}
	}
}

// The only volunteer here is in a conversation: the next contact is offered
// to a free centre at once, not after overflow_after. Under
// wait_locally_when_busy it waits the whole overflow_after, as before.
func TestBusyHereOverflowsAtOnce(t *testing.T) {
	for _, wait := range []bool{false, true} {
		name := "default"
		if wait {
			name = "wait_locally_when_busy"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fo := &fakeOverflow{}
				fo.setCandidates(Candidate{Centre: "B", Version: 1})
				mod := withOverflow(fo, 30*time.Second)
				if wait {
					mod = withOverflowWaiting(fo, 30*time.Second)
				}
				sb := newTestBoard(mod)
				defer sb.Close()
				c, _ := signInAvailable(t, sb, chatVol("v1", 1))
				h0, _ := startContact(t, sb, ChannelChat, "nb")
				synctest.Wait()
				wantOfferedOut(t, "a contact rung here", fo)
				mustAccept(t, c, h0) // v1 is on, in a conversation, at capacity
				h, _ := startContact(t, sb, ChannelChat, "nb")
				if !wait {
					wantOfferedOut(t, "the only volunteer busy", fo, h)
					return
				}
				time.Sleep(30*time.Second - time.Millisecond)
				wantOfferedOut(t, "wait_locally_when_busy, before overflow_after", fo)
				time.Sleep(time.Millisecond)
				wantOfferedOut(t, "wait_locally_when_busy, at overflow_after", fo, h)
			})
		})
	}
}

// Busy with nobody free elsewhere: nothing to offer to; as soon as another
// centre has someone free (gossip's Kick), the contact goes there, long
// before overflow_after.
func TestBusyHereWaitsForAFreeCentre(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		sb := newTestBoard(withOverflow(fo, time.Minute))
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h0, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, c, h0)
		h, _ := startContact(t, sb, ChannelChat, "nb")
		time.Sleep(10 * time.Second)
		wantOfferedOut(t, "nobody free elsewhere", fo)
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb.Kick()
		wantOfferedOut(t, "B has someone free", fo, h)
	})
}

// Ringing is not busy: a volunteer rung for another centre's contact may
// decline, so our contact waits; once they accept and are in the
// conversation, it is offered out at once (Connect re-runs dispatch).
func TestRingingIsNotBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, time.Minute))
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		res, err := sb.Reserve(IncomingOffer{Contact: "x1", From: "B", Channel: ChannelChat, Language: "nb", Ring: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		h, _ := startContact(t, sb, ChannelChat, "nb")
		wantOfferedOut(t, "v1 ringing for B's contact", fo)
		if err := c.Accept("x1"); err != nil {
			t.Fatal(err)
		}
		if _, err := res.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantOfferedOut(t, "v1 accepted, not connected yet", fo)
		res.Connect(&fakePeer{})
		wantOfferedOut(t, "v1 in B's conversation", fo, h)
	})
}

// Declining is not busy: the volunteer is free, only not asked again for
// that contact during the cooldown. The contact waits here, and still
// overflows once it has waited overflow_after.
func TestDecliningIsNotBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, 20*time.Second))
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if err := c.Decline(h.ID()); err != nil {
			t.Fatal(err)
		}
		wantOfferedOut(t, "v1 declined", fo)
		time.Sleep(20*time.Second - time.Millisecond)
		wantOfferedOut(t, "v1 declined, before overflow_after", fo)
		time.Sleep(time.Millisecond)
		wantOfferedOut(t, "at overflow_after", fo, h)
	})
}

// An offer ringing for the contact itself keeps it here, but only for
// overflow_after: the most a contact waits for a local answer.
func TestRingingForItOverflowsAtOverflowAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(func(c *Config) {
			withOverflow(fo, 5*time.Second)(c)
			c.RingTimeout = 30 * time.Second
		})
		defer sb.Close()
		_, s := signInAvailable(t, sb, chatVol("v1", 1))
		h, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v1", s, h)
		wantOfferedOut(t, "ringing here", fo)
		time.Sleep(5 * time.Second)
		wantOfferedOut(t, "ringing here at overflow_after", fo, h)
	})
}

// The queue counts: with one volunteer free and two contacts waiting, the
// first rings here and the second cannot be helped by waiting. A volunteer
// with room for two, in one conversation, is room for one more.
func TestContactsAheadTakeTheRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, time.Minute))
		defer sb.Close()
		c, s := signInAvailable(t, sb, chatVol("v1", 2))
		h0, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, c, h0) // one of two
		h1, _ := startContact(t, sb, ChannelChat, "nb")
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v1", s, h0, h1)
		wantOfferedOut(t, "room for one, two waiting", fo, h2)
		// Another language is another queue: v1 speaks nb only, so a
		// contact in en has nobody on here and goes out at once anyway.
		h3, _ := startContact(t, sb, ChannelChat, "en")
		wantOfferedOut(t, "nobody on for en", fo, h2, h3)
	})
}

// A second volunteer switched on while the contact waits gives it room
// again: a contact offered out stays in our queue and is rung here too,
// and the first to accept wins.
func TestBusyThenFreeRingsHereToo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, time.Minute))
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h0, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, c, h0)
		h, _ := startContact(t, sb, ChannelChat, "nb")
		wantOfferedOut(t, "v1 busy", fo, h)
		c2, s2 := signInAvailable(t, sb, chatVol("v2", 1))
		synctest.Wait()
		wantOffers(t, "v2", s2, h)
		mustAccept(t, c2, h)
		synctest.Wait()
		if ctx := fo.all()[0].ctx; ctx.Err() == nil {
			t.Fatal("the offer to B was not withdrawn when v2 accepted")
		}
		if _, local, _ := totals(sb.Stats()); local != 2 {
			t.Fatalf("answered here %d times, want 2", local)
		}
	})
}
