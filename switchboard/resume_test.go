package switchboard

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// heldConversation is a chat another centre overflowed to v1 here, with a
// resume secret, and the relay's handler.
func heldConversation(t *testing.T, sb *Switchboard, secret string) (*Console, *consoleSink, PeerHandler, *fakePeer) {
	t.Helper()
	con, cs := signInAvailable(t, sb, chatVol("v1", 1))
	res, err := sb.Reserve(IncomingOffer{Contact: "x1", From: "A", Channel: ChannelChat, Language: "nb", Ring: 5 * time.Second, Resume: ResumeHash(secret)})
	if err != nil {
		t.Fatal(err)
	}
	if err := con.Accept("x1"); err != nil {
		t.Fatal(err)
	}
	if _, err := res.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	peer := &fakePeer{}
	return con, cs, res.Connect(peer), peer
}

// The relay dies: the volunteer stays in the conversation and hears
// "reconnecting"; what they write is kept; a resume within the grace gets
// exactly the messages the page missed; after the grace nothing resumes and
// the volunteer hears the loss, counting what never arrived.
func TestHeldConversationResumesWithinGraceOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		con, cs, h, _ := heldConversation(t, sb, "secret-one")
		for i := 1; i <= 2; i++ {
			if err := con.Send("x1", fmt.Sprintf("w%d", i), fmt.Sprintf("before %d", i)); err != nil {
				t.Fatal(err)
			}
		}
		h.OnLost(1)
		synctest.Wait()
		if !cs.has("event x1 reconnecting") {
			t.Fatalf("console: %v, want reconnecting", cs.lines())
		}
		if err := con.Send("x1", "w3", "in the gap"); err != nil {
			t.Fatalf("the volunteer cannot write while held: %v", err)
		}
		time.Sleep(DefaultResumeGrace - time.Second)
		page := &visitorSink{}
		rv, err := sb.Resume(ResumeHash("secret-one"), 1, page)
		if err != nil {
			t.Fatalf("resume within the grace: %v", err)
		}
		synctest.Wait()
		want := []string{"connected alias-v1", "event message w2 before 2", "event message w3 in the gap"}
		if got := page.lines(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("the page got %q, want %q", got, want)
		}
		if !cs.has("event x1 resumed") || !cs.has("event x1 delivered w3") {
			t.Fatalf("console: %v, want resumed and w3 delivered", cs.lines())
		}
		// The page's re-sent message passes once.
		for range 2 {
			if err := rv.Send("p1", "hello again"); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if n := strings.Count(strings.Join(cs.lines(), "\n"), "event x1 message p1"); n != 1 {
			t.Fatalf("the volunteer got the re-sent message %d times", n)
		}
		if _, err := sb.Resume(ResumeHash("secret-one"), 0, &visitorSink{}); !errors.Is(err, ErrResumeRefused) {
			t.Fatalf("a used secret: %v", err)
		}
		rv.End()
		synctest.Wait()
		if st := sb.Stats(); st.Received(OfferAccepted) != 1 || st.Total().Offered != 0 {
			t.Fatalf("stats %+v: want one accepted offer and no contact of ours", st.Total())
		}
	})
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		con, cs, h, _ := heldConversation(t, sb, "secret-two")
		h.OnLost(0)
		if err := con.Send("x1", "w1", "nobody reads this"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DefaultResumeGrace + time.Second)
		synctest.Wait()
		if !cs.has("lost x1 1") {
			t.Fatalf("console after the grace: %v, want lost with 1 undelivered", cs.lines())
		}
		if _, err := sb.Resume(ResumeHash("secret-two"), 0, &visitorSink{}); !errors.Is(err, ErrResumeRefused) {
			t.Fatalf("an expired secret: %v", err)
		}
		if err := con.Send("x1", "w2", "late"); err == nil {
			t.Fatal("the volunteer still writes into an expired conversation")
		}
	})
}

// Contacts started ahead wait before everyone who did not, in the order
// they came.
func TestStartContactAheadQueuesFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		_, plain := startContact(t, sb, ChannelChat, "nb")
		first := &visitorSink{}
		if _, err := sb.StartContactAhead(ChannelChat, "nb", first); err != nil {
			t.Fatal(err)
		}
		second := &visitorSink{}
		if _, err := sb.StartContactAhead(ChannelChat, "nb", second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(WaitResendEvery + time.Second) // places are told at most that often
		synctest.Wait()
		for name, c := range map[string]struct {
			v    *visitorSink
			want int
		}{"first ahead": {first, 1}, "second ahead": {second, 2}, "plain": {plain, 3}} {
			if p, _ := c.v.position(); p != c.want {
				t.Errorf("%s waits at %d, want %d", name, p, c.want)
			}
		}
	})
}

// resumableSink is a page that can resume (api's resumableConn).
type resumableSink struct {
	visitorSink
	hashes int
	at     string
}

func (r *resumableSink) NewResume() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hashes++
	return ResumeHash(fmt.Sprintf("secret-%d", r.hashes))
}
func (r *resumableSink) AnsweredAt(centre string) {
	r.mu.Lock()
	r.at = centre
	r.mu.Unlock()
}
func (r *resumableSink) CanResume() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.at != ""
}

// overflowedResumable starts a resumable contact here and has centre B's
// volunteer answer it; it returns the relay's handler and peer.
func overflowedResumable(t *testing.T, sb *Switchboard, fo *fakeOverflow, resumable bool) (*VisitorHandle, *resumableSink, *fakeAnswer) {
	t.Helper()
	page := &resumableSink{}
	h, err := sb.StartContact(ChannelChat, "nb", page)
	if err != nil {
		t.Fatal(err)
	}
	synctest.Wait()
	offers := fo.all()
	if len(offers) != 1 || offers[0].req.Resume == "" {
		t.Fatalf("offers %+v: want one, with the page's resume hash", offers)
	}
	ans := &fakeAnswer{alias: "Bea", peer: &fakePeer{}, resumable: resumable}
	offers[0].reply <- offerReply{ans: ans}
	synctest.Wait()
	if !page.has("connected Bea") {
		t.Fatalf("page: %v", page.lines())
	}
	return h, page, ans
}

// The owner's side: the relay dies, the page is told to move; an event the
// relay's reader had already read arrives after the loss and is dropped
// (it once reached a nil peer); the page leaving ends the contact, counted
// once, answered by overflow. A page whose answering centre did not take
// the hash is never told to resume there.
func TestOwnerMovesPageAndCountsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, 0))
		defer sb.Close()
		h, page, ans := overflowedResumable(t, sb, fo, true)
		if !page.CanResume() || page.at != "B" {
			t.Fatalf("the page was not told it may resume at B: %+v", page.at)
		}
		ans.h.OnLost(0)
		ans.h.OnEvent(Event{Kind: EventMessage, ID: "w9", Text: "read before the loss"})
		synctest.Wait()
		if !page.has("event move") || page.has("event message w9 read before the loss") {
			t.Fatalf("page: %v, want move and not the late message", page.lines())
		}
		if err := h.Send("v1", "while moving"); !errors.Is(err, ErrEnded) {
			t.Fatalf("a message while moving: %v, want ErrEnded", err)
		}
		h.Leave()
		synctest.Wait()
		st := sb.Stats()
		if tot := st.Total(); tot.Offered != 1 || tot.AnsweredOverflow != 1 || tot.InProgress != 0 || st.Moved(StateConnected, StateQueued) != 0 {
			t.Fatalf("tally %+v requeued %d: want one contact answered by overflow, never requeued", tot, st.Moved(StateConnected, StateQueued))
		}
	})
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, 0))
		defer sb.Close()
		_, page, ans := overflowedResumable(t, sb, fo, false)
		if page.CanResume() {
			t.Fatal("told to resume at a centre that did not take the hash")
		}
		ans.h.OnLost(0)
		synctest.Wait()
		if !page.has("requeued 0") {
			t.Fatalf("page: %v, want requeued at once, as before resuming existed", page.lines())
		}
	})
}

// A volunteer who signs out while a conversation is held for a resume
// leaves nothing behind: the desk drains.
func TestSignOutWhileHeldLetsTheDeskDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		con, _, h, _ := heldConversation(t, sb, "secret-three")
		h.OnLost(0)
		drained := sb.Drain()
		con.SignOut()
		synctest.Wait()
		select {
		case <-drained:
		default:
			t.Fatal("the desk still waits for a conversation nobody holds")
		}
		if _, err := sb.Resume(ResumeHash("secret-three"), 0, &visitorSink{}); !errors.Is(err, ErrResumeRefused) && !errors.Is(err, ErrClosed) {
			t.Fatalf("resume after the volunteer left: %v", err)
		}
	})
}
