//go:build faults

package faults

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"
)

// The bots' traffic is bounded by a rate, not by how fast the machine is:
// with bots that start their next chat as soon as the last one ends, a fast
// machine made six times the contacts of a slow one and ran into the
// per-address limit on chat starts (issue 10). Each bot stays within what
// the product allows one real visitor and one real volunteer
// (docs/api.md), so that any refusal a bot sees is a bug, of the suite or
// of the product, and fails the test:
//
//   - chat starts, per visitor address and centre: 5 a minute, burst 5
//     (429 too_many_requests). Every dial of every visitor bot waits for the
//     traffic's pace (one shared limiter, burst 1) and takes an address from
//     a pool (addrPool) in which an address is reused only addrReuseAfter
//     after its last start: at most 4 starts a minute per address, whatever
//     centre they go to, so its bucket never runs dry.
//   - chats open at once per address: 3 (429 too_many_chats). A bot holds
//     its address for the whole chat and gives it back after: at most one
//     open chat per address.
//   - messages per conversation: a burst of 10, then one per 2 s (slow_down
//     error frames; after 20 refusals the visitor is cut off, flooding and
//     close 1008). A visitor bot sends 2 messages per chat, each only after
//     the reply to the last.
//   - typing frames: at most one a second is passed on. The bots send none.
//   - frames per visitor socket: 20 a second, burst 100. A visitor bot sends
//     at most 3 frames per chat (2 messages and an end).
//   - a volunteer, per conversation: a burst of 20 messages, then 2 a second.
//     A volunteer bot sends 2 replies per conversation.
//   - waiting contacts: 200 per channel per centre (queue_full, close 1013).
//     At most one contact per visitor bot waits: a handful.
//   - logins and enrolments per volunteer id: a burst of 5, then one every
//     20 s (429 too_many_attempts). Each volunteer's logins and enrolments
//     are paced by attemptPace (burst 4, one per 20 s), and a bot waits for
//     its centre's /readyz before it tries to log in again.

// addrReuseAfter is the least time between two chat starts from one visitor
// address: 15 s is 4 a minute, under the product's 5 a minute; the
// bucket (one token back every 12 s) is never emptied.
const addrReuseAfter = 15 * time.Second

// addrPool hands out visitor addresses (X-Forwarded-For: compose runs the
// centres trusting their proxy) to the visitor bots, one address per chat.
//
// Its size is computed from the pace: with the dials paced at perSecond
// (burst 1) and at most bots addresses held at once, an address given back
// has at least size-bots addresses ahead of it in the queue, each taken by
// a paced dial, so it is taken again at least (size-bots)/perSecond later.
// size = bots + ceil(perSecond*addrReuseAfter) + 1 makes that more than
// addrReuseAfter. take also waits out addrReuseAfter itself, so the bound
// holds even if the arithmetic were wrong; it counts those waits (a figure,
// which should be 0).
type addrPool struct {
	mu     sync.Mutex
	queue  []*addrSlot // given back, oldest first
	size   int
	waited int // takes that had to wait for addrReuseAfter
	starts int
}

type addrSlot struct {
	addr string
	last time.Time // last start from it
	open bool
}

// newAddrPool makes the pool for bots visitor bots dialling at perSecond
// in total; prefix is the addresses' first two octets, e.g. "10.77".
func newAddrPool(prefix string, bots int, perSecond float64) *addrPool {
	size := bots + int(math.Ceil(perSecond*addrReuseAfter.Seconds())) + 1
	p := &addrPool{size: size}
	for i := range size {
		p.queue = append(p.queue, &addrSlot{addr: fmt.Sprintf("%s.%d.%d", prefix, i/250, i%250+1)})
	}
	return p
}

// take gives the address longest unused, for one chat start, waiting if it
// was used less than addrReuseAfter ago.
func (p *addrPool) take() *addrSlot {
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.mu.Unlock()
		panic("addrPool: more bots than the pool was sized for")
	}
	s := p.queue[0]
	p.queue = p.queue[1:]
	if s.open {
		p.mu.Unlock()
		panic("addrPool: an address with a chat open was handed out")
	}
	s.open = true
	wait := time.Until(s.last.Add(addrReuseAfter))
	if wait > 0 {
		p.waited++
	}
	p.starts++
	p.mu.Unlock()
	if wait > 0 {
		time.Sleep(wait)
	}
	p.mu.Lock()
	s.last = time.Now()
	p.mu.Unlock()
	return s
}

// give returns an address once its chat is over (the socket closed).
func (p *addrPool) give(s *addrSlot) {
	p.mu.Lock()
	s.open = false
	p.queue = append(p.queue, s)
	p.mu.Unlock()
}

// newPace is a traffic's pace: perSecond chat starts (dials) across all
// its visitor bots, burst 1.
func newPace(perSecond float64) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(perSecond), 1)
}

// attemptPace paces one volunteer's logins (or enrolments), within the
// product's 5 then one per 20 s per volunteer id.
func attemptPace() *rate.Limiter {
	return rate.NewLimiter(rate.Every(20*time.Second), 4)
}

// limitCodes are the refusals that mean a bot went over a real visitor's or
// volunteer's limits, or the product thought so: a bug of the suite or of
// the product, never something to retry.
var limitCodes = map[string]bool{
	"too_many_requests": true, // chat starts per address
	"too_many_chats":    true, // chats open per address
	"too_many_attempts": true, // logins or enrolments per volunteer
	"slow_down":         true, // messages per conversation
	"flooding":          true, // cut off after 20 slow_downs
	"queue_full":        true, // 200 waiting per channel per centre
}

// limitBlame is the sentence every limit refusal a bot sees comes with.
const limitBlame = "the bots keep within a real visitor's and volunteer's limits (deploy/faults/pace_test.go), so either the suite broke its own pace or the product refused a client within its limits"

// TestVisitorPaceWithoutDocker needs no Docker (go test -tags faults -run
// TestVisitorPace ./deploy/faults/): bots dialling through a traffic's pace
// and address pool, with chats of random length (some long, as while a
// centre restarts), never start more than 4 chats a minute from one address
// nor hold two chats open from one, and start no more than the pace allows.
func TestVisitorPaceWithoutDocker(t *testing.T) {
	for _, tc := range []struct {
		bots      int
		perSecond float64
	}{{4, 3}, {6, 4}} {
		t.Run(fmt.Sprintf("%d bots at %v a second", tc.bots, tc.perSecond), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
				defer cancel()
				pace, pool := newPace(tc.perSecond), newAddrPool("10.77", tc.bots, tc.perSecond)
				var mu sync.Mutex
				starts := map[string][]time.Time{}
				open := map[string]int{}
				var wg sync.WaitGroup
				begin := time.Now()
				for i := range tc.bots {
					r := rand.New(rand.NewPCG(uint64(i), 1))
					wg.Go(func() {
						for pace.Wait(ctx) == nil {
							s := pool.take()
							mu.Lock()
							starts[s.addr] = append(starts[s.addr], time.Now())
							open[s.addr]++
							if open[s.addr] > 1 {
								t.Errorf("%s: %d chats open at once", s.addr, open[s.addr])
							}
							mu.Unlock()
							// Mostly short chats; one in ten waits long.
							d := time.Duration(r.IntN(1500)) * time.Millisecond
							if r.IntN(10) == 0 {
								d = time.Duration(r.IntN(60)) * time.Second
							}
							time.Sleep(d)
							mu.Lock()
							open[s.addr]--
							mu.Unlock()
							pool.give(s)
						}
					})
				}
				wg.Wait()
				total := 0
				for addr, ts := range starts {
					total += len(ts)
					for i := range ts {
						n := 0
						for _, u := range ts[i:] {
							if u.Sub(ts[i]) < time.Minute {
								n++
							}
						}
						if n > 4 {
							t.Errorf("%s: %d starts within a minute from %v", addr, n, ts[i].Sub(begin))
						}
					}
				}
				if limit := int(tc.perSecond*time.Since(begin).Seconds()) + 1; total > limit {
					t.Errorf("%d starts in %v, more than the pace allows (%d)", total, time.Since(begin), limit)
				}
				if pool.waited != 0 {
					t.Errorf("the pool had to wait %d times: it is sized too small for the pace", pool.waited)
				}
				t.Logf("%d starts in %v from %d addresses (%d used)", total, time.Since(begin), pool.size, len(starts))
			})
		})
	}
}
