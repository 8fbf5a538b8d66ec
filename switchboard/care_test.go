package switchboard

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// careConsole is a console that also hears care notices.
type careConsole struct {
	*consoleSink
	mu      sync.Mutex
	notices []CareNotice
	// offersAt are when offers arrived.
	offersAt []time.Time
}

func (c *careConsole) Care(n CareNotice) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notices = append(c.notices, n)
}

func (c *careConsole) Offer(o Offer) {
	c.mu.Lock()
	c.offersAt = append(c.offersAt, time.Now())
	c.mu.Unlock()
	c.consoleSink.Offer(o)
}

func (c *careConsole) last() CareNotice {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.notices) == 0 {
		return CareNotice{State: CareOK}
	}
	return c.notices[len(c.notices)-1]
}

var heavyCat = Categorisation{Topics: []string{"family", "other"}, AgeGroup: "unknown"}

func careBoard(p CarePolicy) *Switchboard {
	return newTestBoard(func(c *Config) { c.Care = func() CarePolicy { return p } })
}

func signInCaring(t *testing.T, sb *Switchboard, v Volunteer) (*Console, *careConsole) {
	t.Helper()
	sink := &careConsole{consoleSink: &consoleSink{}}
	return signInAvailableTo(t, sb, v, sink), sink
}

// talk gives the volunteer one contact from accept to categorised end.
func talk(t *testing.T, sb *Switchboard, con *Console, sink *careConsole, cat Categorisation) {
	t.Helper()
	h, _ := startContact(t, sb, ChannelChat, "nb")
	synctest.Wait()
	if sink.lastOffer().Contact != h.ID() {
		t.Fatalf("the contact was not offered to the volunteer (last notice %+v)", sink.last())
	}
	mustAccept(t, con, h)
	time.Sleep(time.Minute)
	if err := con.End(h.ID(), cat); err != nil {
		t.Fatalf("end: %v", err)
	}
	synctest.Wait()
}

func freeChat(sb *Switchboard) int { return sb.Availability()[ChannelChat].FreeVolunteers }

// After a heavy categorisation the volunteer gets no offer, is not free
// in what gossip publishes, and is told until when; a waiting contact is
// offered to them the moment the cool-down ends, which is the moment the
// console was told. A light categorisation starts none.
func TestCoolDownAfterAHeavyConversation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := careBoard(CarePolicy{HeavyTopics: []string{"family"}, CoolDown: 5 * time.Minute})
		defer sb.Close()
		con, sink := signInCaring(t, sb, chatVol("v1", 1))
		talk(t, sb, con, sink, anyCat)
		if n := sink.last(); n.State != CareOK {
			t.Fatalf("after a light conversation: %+v, want ok", n)
		}
		talk(t, sb, con, sink, heavyCat)
		ended := time.Now()
		n := sink.last()
		if n.State != CareCoolDown || !n.Until.Equal(ended.Add(5*time.Minute)) || n.Minutes != 5 {
			t.Fatalf("after a heavy conversation: %+v, want cool_down until %v (5 min)", n, ended.Add(5*time.Minute))
		}
		if f := freeChat(sb); f != 0 {
			t.Fatalf("gossip shows %d free during the cool-down", f)
		}
		h, _ := startContact(t, sb, ChannelChat, "nb")
		time.Sleep(5*time.Minute - time.Second)
		synctest.Wait()
		if sink.lastOffer().Contact == h.ID() {
			t.Fatal("offered a contact during the cool-down")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if sink.lastOffer().Contact != h.ID() {
			t.Fatal("the waiting contact was not offered when the cool-down ended")
		}
		if at := sink.offersAt[len(sink.offersAt)-1]; !at.Equal(n.Until) {
			t.Fatalf("offered at %v, the console was told %v", at, n.Until)
		}
		if n := sink.last(); n.State != CareOK {
			t.Fatalf("after the cool-down: %+v, want ok", n)
		}
		st := sb.Stats()
		if st.Care[CareCoolDown] != 1 || st.Care[CareBreak] != 0 || st.Resting[CareCoolDown] != 0 {
			t.Fatalf("care counts %v resting %v, want one cool-down and nobody resting", st.Care, st.Resting)
		}
	})
}

// "I'm ready" ends a cool-down at once: the contact waiting is offered.
func TestReadyEndsTheCoolDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := careBoard(CarePolicy{HeavyTopics: []string{"family"}, CoolDown: 5 * time.Minute})
		defer sb.Close()
		con, sink := signInCaring(t, sb, chatVol("v1", 1))
		talk(t, sb, con, sink, heavyCat)
		h, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if st := sb.Stats(); st.Resting[CareCoolDown] != 1 || st.Volunteers[ChannelChat].Free != 0 {
			t.Fatalf("resting %v volunteers %v, want one in cool-down, none free", st.Resting, st.Volunteers)
		}
		if err := con.Ready(); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if sink.lastOffer().Contact != h.ID() || sink.last().State != CareOK {
			t.Fatalf("after ready: last offer %v, notice %+v", sink.lastOffer().Contact, sink.last())
		}
	})
}

// After max_in_a_row conversations the volunteer gets a break that they
// cannot cut short; a break's length without a conversation starts the
// count again.
func TestBreakAfterConversationsInARow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := careBoard(CarePolicy{MaxInARow: 2, Break: 10 * time.Minute})
		defer sb.Close()
		con, sink := signInCaring(t, sb, chatVol("v1", 1))
		talk(t, sb, con, sink, anyCat)
		time.Sleep(10 * time.Minute) // a break of its own: the count starts again
		talk(t, sb, con, sink, anyCat)
		if n := sink.last(); n.State != CareOK {
			t.Fatalf("after a break and one more: %+v, want ok", n)
		}
		talk(t, sb, con, sink, anyCat)
		n := sink.last()
		if n.State != CareBreak || n.InARow != 2 || !n.Until.Equal(time.Now().Add(10*time.Minute)) {
			t.Fatalf("after two in a row: %+v, want a 10 min break", n)
		}
		if err := con.Ready(); !errors.Is(err, ErrCareHolds) {
			t.Fatalf("ready during a break: %v, want ErrCareHolds", err)
		}
		if _, err := sb.Reserve(IncomingOffer{Contact: "x1", From: "B", Channel: ChannelChat, Language: "nb"}); !errors.Is(err, ErrNoVolunteer) {
			t.Fatalf("another centre's offer during the break: %v, want ErrNoVolunteer", err)
		}
		h, _ := startContact(t, sb, ChannelChat, "nb")
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if sink.lastOffer().Contact != h.ID() || sink.last().State != CareOK {
			t.Fatalf("after the break: last offer %v, notice %+v", sink.lastOffer().Contact, sink.last())
		}
		if st := sb.Stats(); st.Care[CareBreak] != 1 {
			t.Fatalf("care counts %v, want one break", st.Care)
		}
	})
}

// With two conversations at once, the break earned by the first to end
// waits for the other: no new offer, and the break starts when it ends.
func TestBreakWaitsForTheConversationInProgress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := careBoard(CarePolicy{MaxInARow: 1, Break: 10 * time.Minute})
		defer sb.Close()
		con, sink := signInCaring(t, sb, chatVol("v1", 2))
		h1, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, con, h1)
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, con, h2)
		if err := con.End(h1.ID(), anyCat); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := sink.last(); n.State != CareBreak || !n.Until.IsZero() {
			t.Fatalf("with a conversation going: %+v, want a break with no end yet", n)
		}
		h3, _ := startContact(t, sb, ChannelChat, "nb")
		time.Sleep(time.Minute)
		if err := con.End(h2.ID(), anyCat); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := sink.last(); n.State != CareBreak || !n.Until.Equal(time.Now().Add(10*time.Minute)) {
			t.Fatalf("after the last conversation: %+v, want a 10 min break from now", n)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if sink.lastOffer().Contact != h3.ID() {
			t.Fatal("the waiting contact was not offered after the break")
		}
	})
}

// The shift: a gentle notice before its end, no new offer after it,
// also after signing in again within ShiftGap; a sign-in after ShiftGap
// is a new shift.
func TestShiftEndsWithANotice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := careBoard(CarePolicy{MaxShift: time.Hour, ShiftNotice: 10 * time.Minute})
		defer sb.Close()
		start := time.Now()
		con, sink := signInCaring(t, sb, chatVol("v1", 1))
		time.Sleep(50 * time.Minute)
		synctest.Wait()
		if n := sink.last(); n.State != CareShiftEnding || !n.Until.Equal(start.Add(time.Hour)) {
			t.Fatalf("10 min before the end: %+v, want shift_ending until %v", n, start.Add(time.Hour))
		}
		if f := freeChat(sb); f != 1 {
			t.Fatalf("the notice took the volunteer off the desk (%d free)", f)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if n := sink.last(); n.State != CareShiftOver {
			t.Fatalf("at the end: %+v, want shift_over", n)
		}
		_, vs := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if len(sink.offered()) != 0 || freeChat(sb) != 0 {
			t.Fatal("offered a contact after the shift")
		}
		// Honest waits (review finding): a volunteer whose shift is over
		// is nobody on duty, not someone the visitor waits for.
		if _, w := vs.position(); w.Kind != WaitNoOne {
			t.Fatalf("the visitor's estimate with only an off-shift volunteer signed in: %+v, want %s", w, WaitNoOne)
		}
		if err := con.Ready(); !errors.Is(err, ErrCareHolds) {
			t.Fatalf("ready after the shift: %v, want ErrCareHolds", err)
		}
		con.SignOut()
		time.Sleep(ShiftGap - time.Minute)
		_, again := signInCaring(t, sb, chatVol("v1", 1))
		synctest.Wait()
		if n := again.last(); n.State != CareShiftOver || len(again.offered()) != 0 {
			t.Fatalf("signed in again within the gap: %+v, offers %v", n, again.offered())
		}
		again2 := func() *careConsole {
			sb.mu.Lock()
			v := sb.volunteers["v1"]
			sb.mu.Unlock()
			(&Console{s: sb, v: v}).SignOut()
			time.Sleep(ShiftGap)
			_, c := signInCaring(t, sb, chatVol("v1", 1))
			synctest.Wait()
			return c
		}()
		if len(again2.offered()) != 1 {
			t.Fatalf("a new shift after the gap: offers %v, notice %+v", again2.offered(), again2.last())
		}
		if st := sb.Stats(); st.Care[CareShiftOver] != 1 {
			t.Fatalf("care counts %v, want one shift over", st.Care)
		}
	})
}

// Without care in the policy nothing is held back and no notice is sent.
func TestNoCareChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		con, sink := signInCaring(t, sb, chatVol("v1", 1))
		for range 3 {
			talk(t, sb, con, sink, heavyCat)
		}
		if len(sink.notices) != 0 {
			t.Fatalf("notices without care: %+v", sink.notices)
		}
		st := sb.Stats()
		for _, r := range CareReasons {
			if c, ok := st.Care[r]; !ok || c != 0 {
				t.Fatalf("care counts %v: want a zero for every reason", st.Care)
			}
		}
	})
}

// An offer that rang before the rest began cannot be taken during it
// (review finding): the visitor ends a heavy conversation, the queue rings
// the volunteer at once while they categorise, and the categorisation's
// cool-down withdraws that offer; the contact waits for the next
// volunteer, and Accept finds the offer gone.
func TestARingingOfferEndsWhenTheRestBegins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := careBoard(CarePolicy{HeavyTopics: []string{"family"}, CoolDown: 5 * time.Minute})
		defer sb.Close()
		con, sink := signInCaring(t, sb, chatVol("v1", 1))
		h1, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, con, h1)
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		h1.End() // the visitor ends it; the volunteer has yet to categorise
		synctest.Wait()
		if sink.lastOffer().Contact != h2.ID() {
			t.Fatalf("the waiting contact did not ring at once: %v", sink.lines())
		}
		if err := con.End(h1.ID(), heavyCat); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !slices.ContainsFunc(sink.lines(), func(l string) bool { return strings.HasPrefix(l, "withdrawn "+h2.ID()) }) {
			t.Fatalf("the ringing offer was not withdrawn when the cool-down began: %v", sink.lines())
		}
		if err := con.Accept(h2.ID()); !errors.Is(err, ErrOfferGone) {
			t.Fatalf("accept during the cool-down: %v, want ErrOfferGone", err)
		}
		if sink.last().State != CareCoolDown {
			t.Fatalf("care notice %+v", sink.last())
		}
	})
}
