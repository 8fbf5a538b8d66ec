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

// A visitor may send the burst at once, then one message per VisitorEvery;
// past that each message is refused with slow_down (saying when to retry),
// and a visitor who runs through the strikes is cut off: the conversation
// ends as if they had left, and the volunteer's other conversation is
// untouched.
func TestVisitorPaceSlowsThenCutsOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		con, cs := signInAvailable(t, sb, chatVol("v1", 2))
		flooder, fs := startContact(t, sb, ChannelChat, "nb")
		mustAccept(t, con, flooder)
		other, _ := startContact(t, sb, ChannelChat, "nb")
		mustAccept(t, con, other)

		p := DefaultPace
		for i := range p.VisitorBurst {
			if err := flooder.Send(fmt.Sprintf("m%d", i), "hei"); err != nil {
				t.Fatalf("message %d of the burst: %v", i, err)
			}
		}
		err := flooder.Send("late", "hei")
		var slow *SlowDownError
		if !errors.As(err, &slow) || !errors.Is(err, ErrSlowDown) || slow.RetryAfter != p.VisitorEvery {
			t.Fatalf("past the burst: %v, want slow_down with retry after %v", err, p.VisitorEvery)
		}
		// After the retry-after the message goes through: nothing is lost
		// for a visitor who waits as told.
		time.Sleep(slow.RetryAfter)
		if err := flooder.Send("late", "hei"); err != nil {
			t.Fatalf("after waiting as told: %v", err)
		}
		// A script that keeps going runs through the strikes.
		var last error
		n := 0
		for ; n < 100; n++ {
			if last = flooder.Send(fmt.Sprintf("f%d", n), "flood"); errors.Is(last, ErrFlooding) {
				break
			}
		}
		// The refused "late" message was the first strike.
		if !errors.Is(last, ErrFlooding) || n+1 != p.FloodStrikes {
			t.Fatalf("after %d more refused messages: %v, want flooding after %d strikes in all", n, last, p.FloodStrikes)
		}
		if err := flooder.Send("after", "x"); !errors.Is(err, ErrEnded) {
			t.Fatalf("a message after the cut-off: %v, want ended", err)
		}
		synctest.Wait()
		if !cs.has(eventLine("event "+flooder.ID(), Event{Kind: EventEnded, By: ByVisitor})) {
			t.Fatalf("console did not hear the flooder leave: %v", cs.lines())
		}
		if got := cs.count("event " + flooder.ID() + " message"); got != p.VisitorBurst+1 {
			t.Fatalf("console got %d of the flooder's messages, want %d", got, p.VisitorBurst+1)
		}
		if fs.count("event delivered") != p.VisitorBurst+1 {
			t.Fatalf("flooder: %v", fs.lines())
		}
		// The other conversation goes on, both ways.
		if err := other.Send("o1", "are you there?"); err != nil {
			t.Fatal(err)
		}
		if err := con.Send(other.ID(), "v1", "yes"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !cs.has(eventLine("event "+other.ID(), Event{Kind: EventMessage, ID: "o1", Text: "are you there?"})) {
			t.Fatalf("console: %v", cs.lines())
		}
		st := sb.Stats()
		if tl, local, _ := totals(st); tl.InProgress != 1 || local != 2 {
			t.Fatalf("stats: %d in progress, %d answered; want the other conversation going", tl.InProgress, local)
		}
	})
}

// Strikes are forgiven over time: a fast typist who hits slow_down now and
// then is never cut off.
func TestVisitorPaceForgivesOccasionalBursts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		con, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h, _ := startContact(t, sb, ChannelChat, "nb")
		mustAccept(t, con, h)
		refused := 0
		for i := range 600 { // an hour of a message every 6 s, in bursts of 15
			if i%15 == 0 {
				time.Sleep(90 * time.Second)
			}
			err := h.Send(fmt.Sprintf("m%d", i), "hei")
			if errors.Is(err, ErrFlooding) {
				t.Fatalf("cut off after %d messages", i)
			}
			if err != nil {
				refused++
			}
		}
		if refused == 0 {
			t.Fatal("bursts of 15 were never slowed")
		}
	})
}

// A volunteer is paced per conversation but never cut off.
func TestVolunteerPaceSlowsButNeverCutsOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		con, _ := signInAvailable(t, sb, chatVol("v1", 2))
		a, _ := startContact(t, sb, ChannelChat, "nb")
		mustAccept(t, con, a)
		b, bs := startContact(t, sb, ChannelChat, "nb")
		mustAccept(t, con, b)
		slow := 0
		for i := range 500 {
			err := con.Send(a.ID(), fmt.Sprintf("v%d", i), "hei")
			switch {
			case err == nil:
			case errors.Is(err, ErrSlowDown):
				slow++
			default:
				t.Fatalf("volunteer message %d: %v", i, err)
			}
		}
		if slow != 500-DefaultPace.VolunteerBurst {
			t.Fatalf("%d slowed, want all past the burst of %d", slow, DefaultPace.VolunteerBurst)
		}
		// The pace is per conversation: the other visitor still hears them.
		if err := con.Send(b.ID(), "x", "hello"); err != nil {
			t.Fatalf("other conversation: %v", err)
		}
		synctest.Wait()
		if !bs.has(eventLine("event", Event{Kind: EventMessage, ID: "x", Text: "hello"})) {
			t.Fatalf("other visitor: %v", bs.lines())
		}
	})
}

// Typing is coalesced, not queued: a thousand typing events in a second
// reach the other end as one.
func TestTypingIsCoalesced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		con, cs := signInAvailable(t, sb, chatVol("v1", 1))
		h, vs := startContact(t, sb, ChannelChat, "nb")
		mustAccept(t, con, h)
		for range 1000 {
			if err := h.Typing(); err != nil {
				t.Fatal(err)
			}
			if err := con.Typing(h.ID()); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if n := cs.count("event " + h.ID() + " typing"); n != 1 {
			t.Fatalf("console heard %d typing events, want 1", n)
		}
		if n := vs.count("event typing"); n != 1 {
			t.Fatalf("visitor heard %d typing events, want 1", n)
		}
		time.Sleep(DefaultPace.TypingEvery)
		_ = h.Typing()
		synctest.Wait()
		if n := cs.count("event " + h.ID() + " typing"); n != 2 {
			t.Fatalf("after a second the console heard %d typing events, want 2", n)
		}
	})
}

// A conversation another centre relays to us far above any visitor's pace
// (a peer that does not pace its visitors) is ended alone: our volunteer's
// console and their other conversation are untouched.
func TestRelayedFloodEndsOnlyThatConversation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		con, cs := signInAvailable(t, sb, chatVol("v1", 2))
		local, ls := startContact(t, sb, ChannelChat, "nb")
		mustAccept(t, con, local)
		res, err := sb.Reserve(IncomingOffer{Contact: "x1", From: "B", Channel: ChannelChat, Language: "nb", Ring: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		go func() { _ = con.Accept("x1") }()
		if _, err := res.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		peer := &fakePeer{}
		h := res.Connect(peer)
		for i := range 1000 {
			h.OnEvent(Event{Kind: EventMessage, ID: fmt.Sprintf("r%d", i), Text: "flood"})
		}
		synctest.Wait()
		sent, closed := peer.state()
		if closed == "" || len(sent) == 0 || sent[len(sent)-1].Kind != EventEnded {
			t.Fatalf("relay: closed %q, last sent %v; want an end and a close", closed, sent)
		}
		if got := cs.count("event x1 message"); got > DefaultPace.VisitorBurst*receivedPaceFactor {
			t.Fatalf("console got %d relayed messages, want at most %d", got, DefaultPace.VisitorBurst*receivedPaceFactor)
		}
		if err := local.Send("l1", "still here"); err != nil {
			t.Fatal(err)
		}
		if err := con.Send(local.ID(), "v1", "me too"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !ls.has(eventLine("event", Event{Kind: EventMessage, ID: "v1", Text: "me too"})) {
			t.Fatalf("local visitor: %v", ls.lines())
		}
		if strings.Contains(strings.Join(cs.lines(), "\n"), "lost") {
			t.Fatalf("console: %v", cs.lines())
		}
	})
}

// The queue is bounded per channel: past MaxQueue a new contact is refused
// with ErrQueueFull, and a place frees as soon as one leaves.
func TestQueueBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(func(c *Config) { c.MaxQueue = 3 })
		defer sb.Close()
		var hs []*VisitorHandle
		for range 3 {
			h, _ := startContact(t, sb, ChannelChat, "nb")
			hs = append(hs, h)
		}
		if _, err := sb.StartContact(ChannelChat, "en", &visitorSink{}); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("fourth contact: %v, want queue full", err)
		}
		if _, err := sb.StartContact(ChannelPhone, "nb", &visitorSink{}); err != nil {
			t.Fatalf("another channel's queue is its own: %v", err)
		}
		hs[0].End()
		if _, err := sb.StartContact(ChannelChat, "nb", &visitorSink{}); err != nil {
			t.Fatalf("after one left: %v", err)
		}
	})
}

func (c *consoleSink) count(prefix string) int {
	n := 0
	for _, l := range c.lines() {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}
