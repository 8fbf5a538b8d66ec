//go:build faults

package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// rollingRestart restarts the three centres one after another, as an
// upgrade would (docker stop: SIGTERM, the centre drains and stops; docker
// start), while visitor bots chat at every centre and volunteer bots at B
// and C answer (A has no volunteer, so its visitors always overflow). No
// contact may be lost, and each centre's KPIs must match the bots' own
// tally exactly and obey the conservation law. The visitors' pages take
// resumed conversations: those that a draining centre-a tells to move go
// on at their volunteer's centre, and count as centre-a's, once.
func rollingRestart(t *testing.T, f *fed) {
	all := f.all()
	// Nothing of earlier scenarios may be waiting or in a conversation:
	// the books start from a quiet federation.
	base := map[string]kpis{}
	f.waitFor(60*time.Second, "a quiet federation (nothing waiting or in progress)", func() bool {
		for _, c := range all {
			k, err := f.scrape(c)
			if err != nil || k.waiting != 0 || k.inProgress != 0 {
				return false
			}
			base[c.svc] = k
		}
		return true
	})

	// 6 visitor bots, 4 chat starts a second between them: a few hundred
	// contacts over the restarts on any machine that keeps up (the volunteer
	// bots, two at B and two at C, take 2 chats at once each).
	tr := newTraffic(f, "rolling restart", 6, 4)
	// The visitors' pages take resumed conversations: when centre-a (no
	// volunteer: every conversation of its visitors is overflowed) drains,
	// it tells them to move, and they go on at the volunteer's centre.
	// The bots think 2 s before their second message, so that some
	// conversations are open when a centre stops.
	tr.resume = true
	tr.think = 2 * time.Second
	for _, id := range []string{"roll-b1", "roll-b2"} {
		tr.volunteerBot(t, f.c["centre-b"], id)
	}
	for _, id := range []string{"roll-c1", "roll-c2"} {
		tr.volunteerBot(t, f.c["centre-c"], id)
	}
	stopped := false
	defer func() {
		if !stopped {
			tr.stop()
		}
	}()
	f.waitFor(30*time.Second, "A to see the bots free at B and C", func() bool {
		v, err := f.federation(f.c["centre-a"])
		return err == nil && v.free("centre-b") >= 2 && v.free("centre-c") >= 2
	})
	tr.visitorBots(all)
	answeredAt := func() int {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		n := 0
		for _, v := range tr.answered {
			n += v
		}
		return n
	}
	f.waitFor(60*time.Second, "live traffic (10 answered chats)", func() bool { return answeredAt() >= 10 })

	stopTallies := map[string]kpis{}
	for _, c := range all {
		id := f.container(c)
		if c.svc == "centre-a" {
			// Stop centre-a mid-conversation: it must move them.
			f.waitFor(60*time.Second, "conversations of centre-a's visitors open", func() bool {
				tr.mu.Lock()
				defer tr.mu.Unlock()
				return tr.talking["centre-a"] >= 2
			})
		}
		before := answeredAt()
		start := time.Now()
		// docker stop waits for the drain (up to stop_grace_period).
		sh(t, f.root, "docker", "stop", "-t", "100", id)
		drained := time.Since(start)
		k, _, err := f.lastStopTallies(c)
		if err != nil {
			t.Fatal(err)
		}
		if k.waiting != 0 || k.inProgress != 0 {
			t.Fatalf("%s stopped with contacts left: %v", c.svc, k)
		}
		if !k.conserved() {
			t.Fatalf("%s's last tallies break the conservation law: %v", c.svc, k)
		}
		stopTallies[c.svc] = k
		sh(t, f.root, "docker", "start", id)
		f.waitReady(c, 2*time.Minute)
		f.waitFor(60*time.Second, c.svc+" alive at every centre", func() bool {
			for _, x := range all {
				v, err := f.federation(x)
				if err != nil || v.gossip(c.svc) != "alive" || v.Leader == "" {
					return false
				}
			}
			return true
		})
		back := time.Since(start)
		// The volunteers of a restarted centre sign in again.
		if c.svc != "centre-a" {
			f.waitFor(60*time.Second, "the bots free again at "+c.svc, func() bool {
				v, err := f.federation(f.c["centre-a"])
				return err == nil && v.free(c.svc) >= 1
			})
		}
		f.figure(t, "rolling restart of %s under live traffic: drained and stopped in %v, ready and alive everywhere %v after docker stop; %d chats answered federation-wide meanwhile",
			c.svc, drained.Round(10*time.Millisecond), back.Round(10*time.Millisecond), answeredAt()-before)
	}
	after := answeredAt()
	f.waitFor(60*time.Second, "more chats after the last restart", func() bool { return answeredAt() >= after+10 })
	tr.stop()
	stopped = true
	tr.report(t)

	// The books. Each centre ran twice during the scenario: its first run
	// from the baseline scrape to its stop tallies, its second run from
	// start to the final scrape.
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var totals []string
	sum, lost, requeued, resumed := 0, 0, 0, 0
	for _, c := range all {
		var final kpis
		f.waitFor(30*time.Second, c.svc+" quiet after the traffic", func() bool {
			k, err := f.scrape(c)
			final = k
			return err == nil && k.waiting == 0 && k.inProgress == 0
		})
		if !final.conserved() {
			t.Errorf("%s's final scrape breaks the conservation law: %v", c.svc, final)
		}
		got := stopTallies[c.svc].minus(base[c.svc]).plus(final)
		s := c.svc
		want := kpis{offered: tr.started[s], local: tr.volLocal[s], overflow: tr.volOverflow[s], abandoned: tr.abandoned[s]}
		if got != want {
			t.Errorf("%s: the centre counted %v; the bots saw %v", s, got, want)
		}
		if answered := got.local + got.overflow; answered != tr.answered[s] {
			t.Errorf("%s: the centre counted %d answered; its visitors saw %d", s, answered, tr.answered[s])
		}
		if tr.lost[s] != 0 || tr.requeued[s] != 0 {
			t.Errorf("%s: %d contacts lost, %d requeued", s, tr.lost[s], tr.requeued[s])
		}
		sum += got.offered
		lost += tr.lost[s]
		requeued += tr.requeued[s]
		resumed += tr.resumed[s]
		totals = append(totals, fmt.Sprintf("%s %d offered (%d answered here, %d overflowed, %d abandoned; %d refused while restarting; %d resumed elsewhere)",
			s, got.offered, got.local, got.overflow, got.abandoned, tr.refused[s], tr.resumed[s]))
	}
	if n := tr.errorPages["all"]; n != 0 {
		t.Errorf("%d visitors were refused by every centre during the rolling restart (an error page)", n)
	}
	if tr.resumed["centre-a"] == 0 {
		t.Errorf("no conversation of centre-a's visitors was resumed at the volunteer's centre across centre-a's restart: the move was not exercised")
	}
	f.figure(t, "rolling restart: %d contacts, %d lost, %d requeued, %d resumed at the volunteer's centre; KPIs against the bots' tally: %s; per centre: %s",
		sum, lost, requeued, resumed, map[bool]string{true: "equal, and conserved exactly at every centre", false: "MISMATCH (see errors)"}[!t.Failed()], strings.Join(totals, "; "))
}
