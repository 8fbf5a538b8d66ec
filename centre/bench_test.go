package centre_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/siptest"
	"github.com/helpmesh/helpmesh/switchboard"
)

// seenFree: c2's own desk and c1's gossip view agree that c2 has one free
// volunteer for channel, so the next contact or call goes there at once.
func seenFree(c1, c2 *centre.Centre, channel string) bool {
	if c2.Node().Switchboard().Availability()[channel].Free["nb"] != 1 {
		return false
	}
	version := func(c *centre.Centre) (uint64, int) {
		for _, s := range c.Node().Gossip().View() {
			if s.Centre == "c2" {
				return s.Availability.Version, s.Availability.Channels[channel].Free["nb"]
			}
		}
		return 0, 0
	}
	own, ownFree := version(c2)
	seen, seenFree := version(c1)
	return own != 0 && ownFree == 1 && seen == own && seenFree == 1
}

func percentile(l []time.Duration, p int) time.Duration {
	slices.Sort(l)
	return l[(len(l)-1)*p/100]
}

// BenchmarkOverflowToAnotherCentre measures, on the same two whole
// centres in one run, the two ways a contact leaves a centre with nobody
// free for it:
//
//   - chat: StartContact at c1 to the offer ringing on c2's console;
//   - call: the PBX's INVITE for queue-nb at c1's SIP ingress to its
//     302 with a token at c2: the offer over libp2p, the volunteer held at
//     c2, the token, and the SIP round trip.
//
// Each reports p50 and p99 in ms (medians, not means: the machine is
// shared), and call reports its p50 over chat's as x-chat. Every iteration
// then releases the volunteer and waits, untimed, until c1 sees them free
// again. Run with a fixed count:
//
//	go test -run '^$' -bench OverflowToAnotherCentre -benchtime 40x ./centre
func BenchmarkOverflowToAnotherCentre(b *testing.B) {
	f := phoneFed(b, 2, nil)
	c1, c2 := f.Member("c1"), f.Member("c2")
	pbx := siptest.NewCallerPBX(b)
	phone := siptest.NewPhone(b, siptest.Answer)

	var chatP50 time.Duration
	b.Run("chat", func(b *testing.B) {
		desk := &benchDesk{offers: make(chan string, 4), withdrawn: make(chan string, 4)}
		con, err := c2.Node().Switchboard().SignIn(switchboard.Volunteer{ID: "v-chat", Alias: "Kari", Channels: []string{switchboard.ChannelChat}, Languages: []string{"nb"}, Capacity: 1}, desk)
		if err != nil {
			b.Fatal(err)
		}
		defer con.SignOut()
		_ = con.SetAvailable(switchboard.ChannelChat, true)
		fedtest.Eventually(b, 20*time.Second, "c2 free for chat in c1's view", func() bool { return seenFree(c1, c2, switchboard.ChannelChat) })
		var took []time.Duration
		for b.Loop() {
			start := time.Now()
			h, err := c1.Node().Switchboard().StartContact(switchboard.ChannelChat, "nb", chatVisitor{events: make(chan switchboard.Event, 8)})
			if err != nil {
				b.Fatal(err)
			}
			siptest.Receive(b, desk.offers, "the chat offer at c2")
			b.StopTimer()
			took = append(took, time.Since(start))
			h.End()
			siptest.Receive(b, desk.withdrawn, "the offer withdrawn")
			fedtest.Eventually(b, 20*time.Second, "c2 free again in c1's view", func() bool { return seenFree(c1, c2, switchboard.ChannelChat) })
			b.StartTimer()
		}
		chatP50 = report(b, took)
	})
	b.Run("call", func(b *testing.B) {
		desk := &benchDesk{offers: make(chan string, 4), withdrawn: make(chan string, 4)}
		con, err := c2.Node().Switchboard().SignIn(switchboard.Volunteer{ID: "v-call", Alias: "Ola", Channels: []string{switchboard.ChannelPhone}, Languages: []string{"nb"}, Capacity: 1}, desk)
		if err != nil {
			b.Fatal(err)
		}
		defer con.SignOut()
		_ = con.SetPhone(phone.URI())
		_ = con.SetAvailable(switchboard.ChannelPhone, true)
		fedtest.Eventually(b, 20*time.Second, "c2 free for calls in c1's view", func() bool { return seenFree(c1, c2, switchboard.ChannelPhone) })
		to := ingress(b, c1)
		var took []time.Duration
		for b.Loop() {
			start := time.Now()
			d := pbx.Invite(b, to, "queue-nb")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			res := siptest.FinalResponse(b, d.WaitAnswer(ctx, sipgo.AnswerOptions{}))
			cancel()
			b.StopTimer()
			if res.StatusCode != sip.StatusMovedTemporarily {
				b.Fatalf("INVITE answered %d, want 302", res.StatusCode)
			}
			took = append(took, time.Since(start))
			// Release the hold (the volunteer declines before the call
			// arrives), as the lease would.
			id := siptest.Receive(b, desk.offers, "the held call's card at c2")
			if err := con.Decline(id); err != nil {
				b.Fatal(err)
			}
			siptest.Receive(b, desk.withdrawn, "the hold released")
			fedtest.Eventually(b, 20*time.Second, "c2 free again in c1's view", func() bool { return seenFree(c1, c2, switchboard.ChannelPhone) })
			b.StartTimer()
		}
		p50 := report(b, took)
		if chatP50 > 0 {
			b.ReportMetric(float64(p50)/float64(chatP50), "x-chat")
		}
	})
}

// report puts p50 and p99 (ms) on b and returns the p50.
func report(b *testing.B, took []time.Duration) time.Duration {
	p50, p99 := percentile(took, 50), percentile(took, 99)
	b.ReportMetric(float64(p50)/float64(time.Millisecond), "p50-ms")
	b.ReportMetric(float64(p99)/float64(time.Millisecond), "p99-ms")
	return p50
}

// benchDesk is a console that passes on offers and withdrawals.
type benchDesk struct {
	offers    chan string
	withdrawn chan string
}

func (d *benchDesk) Offer(o switchboard.Offer)            { d.offers <- o.Contact }
func (d *benchDesk) OfferWithdrawn(id, _ string)          { d.withdrawn <- id }
func (*benchDesk) Connected(string, string)               {}
func (*benchDesk) Event(string, switchboard.Event)        {}
func (*benchDesk) Lost(string, int)                       {}
func (*benchDesk) Availability(map[string]bool, int, int) {}
