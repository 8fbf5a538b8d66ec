package switchboard

import (
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Tests of the visitor's wait estimate (wait.go): the rules on their own,
// then through a switchboard in a synctest bubble, where the clock is fake
// and the estimate must follow volunteers, gossip and the clock.

func TestEstimateWaitRules(t *testing.T) {
	const w = AnswerWindow
	for _, tc := range []struct {
		name string
		in   waitInputs
		want Estimate
	}{
		{"an offer rings for it", waitInputs{offered: true, position: 3, unoffered: 0}, Estimate{Kind: WaitFreeNow}},
		{"one free here", waitInputs{position: 1, unoffered: 1, freeHere: 1, onDutyHere: 1}, Estimate{Kind: WaitFreeNow}},
		{"one free here, one unoffered ahead", waitInputs{position: 2, unoffered: 2, freeHere: 1, onDutyHere: 3}, Estimate{Kind: WaitSeveral}},
		{"free elsewhere, offered there within a minute", waitInputs{position: 1, unoffered: 1, onDutyHere: 1, freeElsewhere: 1, onDutyElsewhere: 1, overflowIn: 50 * time.Second}, Estimate{Kind: WaitFreeNow}},
		{"free elsewhere, offered there in 3 min", waitInputs{position: 1, unoffered: 1, onDutyHere: 1, freeElsewhere: 1, onDutyElsewhere: 1, overflowIn: 150 * time.Second}, Estimate{Kind: WaitMinutes, Minutes: 3}},
		{"free elsewhere in 3 min, the rate says 2", waitInputs{position: 1, unoffered: 1, onDutyHere: 1, freeElsewhere: 1, onDutyElsewhere: 1, overflowIn: 150 * time.Second, answers: 8, window: w}, Estimate{Kind: WaitMinutes, Minutes: 2}},
		{"nobody on duty anywhere", waitInputs{position: 1, unoffered: 1}, Estimate{Kind: WaitNoOne}},
		{"nobody on duty, but answers lately", waitInputs{position: 1, unoffered: 1, answers: 10, window: w}, Estimate{Kind: WaitNoOne}},
		{"all busy here, no answers lately", waitInputs{position: 1, unoffered: 1, onDutyHere: 2}, Estimate{Kind: WaitSeveral}},
		{"all busy elsewhere, none here", waitInputs{position: 1, unoffered: 1, onDutyElsewhere: 4}, Estimate{Kind: WaitSeveral}},
		{"4 answers in 15 min, first", waitInputs{position: 1, unoffered: 1, onDutyHere: 1, answers: 4, window: w}, Estimate{Kind: WaitMinutes, Minutes: 4}},
		{"4 answers in 15 min, second", waitInputs{position: 2, unoffered: 2, onDutyHere: 1, answers: 4, window: w}, Estimate{Kind: WaitMinutes, Minutes: 8}},
		{"fast answers round up to a minute", waitInputs{position: 1, unoffered: 1, onDutyHere: 5, answers: 60, window: w}, Estimate{Kind: WaitMinutes, Minutes: 1}},
		{"exactly the cap", waitInputs{position: 1, unoffered: 1, onDutyHere: 1, answers: 1, window: w}, Estimate{Kind: WaitMinutes, Minutes: 15}},
		{"past the cap", waitInputs{position: 5, unoffered: 5, onDutyHere: 1, answers: 2, window: w}, Estimate{Kind: WaitLong, Minutes: MaxWaitMinutes}},
	} {
		if got := estimateWait(tc.in); got != tc.want {
			t.Errorf("%s: %+v -> %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
}

// The issue's first case: a volunteer is free, the visitor hears "less
// than a minute" (and nothing else while the offer rings).
func TestWaitFreeVolunteerIsLessThanAMinute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		signInAvailable(t, sb, chatVol("v1", 1))
		_, vis := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		time.Sleep(testRing / 2)
		synctest.Wait()
		if got := vis.lines(); len(got) != 1 || got[0] != "queued 1 free_now" {
			t.Fatalf("visitor heard %v, want only %q", got, "queued 1 free_now")
		}
	})
}

// The second case: nobody on duty here or anywhere gossip knows of
// is "no one on duty"; busy volunteers elsewhere make it "several
// minutes"; someone free elsewhere (and the contact is offered out at once,
// nobody being on duty here) makes it "less than a minute".
func TestWaitNobodyOnDutyFollowsGossip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ov := &fakeOverflow{}
		sb := newTestBoard(func(c *Config) { c.Overflow = ov })
		defer sb.Close()
		_, vis := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if p, e := vis.position(); p != 1 || e.Kind != WaitNoOne {
			t.Fatalf("nobody on duty anywhere: %d %v (%v)", p, e, vis.lines())
		}
		step := func(what string, free, busy int, want WaitKind) {
			t.Helper()
			ov.setOnDuty(free, busy)
			sb.Kick() // what gossip's change callback does
			time.Sleep(WaitResendEvery)
			synctest.Wait()
			if _, e := vis.position(); e.Kind != want {
				t.Fatalf("%s: %v, want %s (%v)", what, e, want, vis.lines())
			}
		}
		step("two busy at another centre", 0, 2, WaitSeveral)
		step("one of them free", 1, 1, WaitFreeNow)
		step("gone off duty", 0, 0, WaitNoOne)
		// A volunteer of ours comes on duty: the offer rings.
		signInAvailable(t, sb, chatVol("v1", 1))
		time.Sleep(WaitResendEvery)
		synctest.Wait()
		if _, e := vis.position(); e.Kind != WaitFreeNow {
			t.Fatalf("a volunteer came on duty here: %v (%v)", e, vis.lines())
		}
	})
}

// The answer rate: answers within the window, divided over the position;
// answers that age out of it change the estimate with no event at all.
func TestWaitFromAnswerRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		time.Sleep(AnswerWindow) // the desk is old enough for the whole window
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		var last *VisitorHandle
		for i := range 4 { // four answers, one a minute; the last goes on
			h, _ := startContact(t, sb, ChannelChat, "nb")
			synctest.Wait()
			mustAccept(t, c, h)
			if i < 3 {
				if err := c.End(h.ID(), anyCat); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Minute)
			}
			last = h
		}
		_, va := startContact(t, sb, ChannelChat, "nb")
		_, vb := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		// 4 answers in 15 minutes: one every 3.75 minutes.
		if !va.has("queued 1 about 4 min") || !vb.has("queued 2 about 8 min") {
			t.Fatalf("with 4 answers in 15 min: %v / %v", va.lines(), vb.lines())
		}
		// The first answer leaves the window: 3 in 15 minutes.
		time.Sleep(AnswerWindow - 3*time.Minute + 2*waitRefresh)
		synctest.Wait()
		if _, e := va.position(); e != (Estimate{Kind: WaitMinutes, Minutes: 5}) {
			t.Fatalf("with 3 answers in 15 min: %v (%v)", e, va.lines())
		}
		// All of them: nobody answered lately, the volunteer is busy.
		time.Sleep(4 * time.Minute)
		synctest.Wait()
		if _, e := va.position(); e.Kind != WaitSeveral {
			t.Fatalf("no answer in 15 min, the volunteer busy: %v (%v)", e, va.lines())
		}
		if _, e := vb.position(); e.Kind != WaitSeveral {
			t.Fatalf("second visitor, no answer in 15 min: %v (%v)", e, vb.lines())
		}
		// The volunteer comes free: the first is offered.
		if err := c.End(last.ID(), anyCat); err != nil {
			t.Fatal(err)
		}
		time.Sleep(WaitResendEvery)
		synctest.Wait()
		if _, e := va.position(); e.Kind != WaitFreeNow {
			t.Fatalf("the volunteer came free: %v (%v)", e, va.lines())
		}
	})
}

// Someone is free at another centre, but the policy keeps the contact here
// for 3 minutes while our own volunteer is busy (wait_locally_when_busy): its wait is at most those
// minutes, and "less than a minute" once the overflow is a minute away.
func TestWaitUntilOverflowToAFreeCentre(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ov := &fakeOverflow{}
		ov.setOnDuty(1, 0)
		sb := newTestBoard(func(c *Config) {
			c.Overflow = ov
			c.OverflowAfter = func(string) time.Duration { return 3 * time.Minute }
			c.WaitLocallyWhenBusy = func() bool { return true }
		})
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, c, h) // one answer: 1 in 5 minutes (a young desk)
		_, vis := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if _, e := vis.position(); e != (Estimate{Kind: WaitMinutes, Minutes: 3}) {
			t.Fatalf("offered to a free centre in 3 min: %v (%v)", e, vis.lines())
		}
		time.Sleep(2*time.Minute + waitRefresh)
		synctest.Wait()
		if _, e := vis.position(); e.Kind != WaitFreeNow {
			t.Fatalf("offered to a free centre within a minute: %v (%v)", e, vis.lines())
		}
	})
}

// timedVisitor records when each queued call came.
type timedVisitor struct {
	visitorSink
	mu  sync.Mutex
	at  []time.Time
	say []string
}

func (v *timedVisitor) Queued(p int, e Estimate) {
	v.mu.Lock()
	v.at = append(v.at, time.Now())
	v.say = append(v.say, fmt.Sprintf("%d %v", p, e))
	v.mu.Unlock()
	v.visitorSink.Queued(p, e)
}

// A volunteer signing in and out five times a second for 20 s cannot flood
// a waiting visitor: at most one queued every WaitResendEvery, and the
// last one says what is true at the end.
func TestWaitResendsAreRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		busy, _ := signInAvailable(t, sb, chatVol("busy", 1))
		h, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, busy, h)
		vis := &timedVisitor{}
		if _, err := sb.StartContact(ChannelChat, "nb", vis); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		start := time.Now()
		flaps := 0
		for time.Since(start) < 20*time.Second {
			c, _ := signInAvailable(t, sb, chatVol("flap", 1))
			time.Sleep(100 * time.Millisecond)
			c.SignOut()
			time.Sleep(100 * time.Millisecond)
			flaps++
		}
		time.Sleep(WaitResendEvery)
		synctest.Wait()
		vis.mu.Lock()
		defer vis.mu.Unlock()
		if len(vis.at) < 3 || len(vis.at) > 1+20/int(WaitResendEvery/time.Second)+1 {
			t.Fatalf("%d flaps: %d queued calls, want a few and at most one per %v: %v", flaps, len(vis.at), WaitResendEvery, vis.say)
		}
		for i := 1; i < len(vis.at); i++ {
			if gap := vis.at[i].Sub(vis.at[i-1]); gap < WaitResendEvery {
				t.Errorf("queued %d came %v after the one before (%v)", i, gap, vis.say)
			}
		}
		// Signed out at the end, the volunteer declined it in effect: the
		// busy one is all there is, with one answer in 5 minutes.
		if last := vis.say[len(vis.say)-1]; last != "1 about 5 min" {
			t.Errorf("last queued %q, want %q (%v)", last, "1 about 5 min", vis.say)
		}
	})
}
