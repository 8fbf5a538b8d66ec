package sim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/helpmesh/helpmesh/overflow"
	"github.com/helpmesh/helpmesh/switchboard"
)

// centre is one centre of a run: helpmesh's switchboard, and in place of
// gossip and libp2p, in-memory links with the scenario's delay and loss.
type centre struct {
	r  *run
	id string
	sb *switchboard.Switchboard

	mu         sync.Mutex
	view       map[string]overflow.Seen // the others, as gossip last told us
	publishing bool
	version    uint64
	// pending are other centres' offers ringing here, by contact id; only
	// the run's goroutine touches it (in events).
	pending map[string]*pendingOffer

	occ occupancy
}

// changed is the switchboard's OnChange (under its lock): publish soon.
func (c *centre) changed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.publishing || c.r.mode != Federation {
		return
	}
	c.publishing = true
	c.r.after(0, c.publish)
}

// publish tells the others this centre's availability, as the node does
// by gossip, arriving after the scenario's gossip delay.
func (c *centre) publish() {
	a := overflow.AvailabilityOf(c.id, c.sb)
	c.mu.Lock()
	c.publishing = false
	c.version++
	a.Version = c.version
	c.mu.Unlock()
	// Gossip reaches the others at about the same moment (one memberlist
	// round sends to all), in no set order. The clock runs the events of
	// one instant in the order they were scheduled, and a centre's offers
	// are scheduled as it hears the news: in the run's fixed order, the
	// first centre won every race for the volunteer the news freed.
	to := make([]*centre, 0, len(c.r.order)-1)
	for _, o := range c.r.order {
		if o != c {
			to = append(to, o)
		}
	}
	c.r.rngMu.Lock()
	c.r.rng.Shuffle(len(to), func(i, j int) { to[i], to[j] = to[j], to[i] })
	c.r.rngMu.Unlock()
	for _, o := range to {
		c.r.after(c.r.gossip, func() {
			o.mu.Lock()
			if cur, ok := o.view[c.id]; !ok || cur.Availability.Version < a.Version {
				o.view[c.id] = overflow.Seen{Centre: c.id, State: overflow.StateAlive, Availability: a}
			}
			o.mu.Unlock()
			o.sb.Kick()
		})
	}
}

func (c *centre) seen() []overflow.Seen {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := slices.Sorted(maps.Keys(c.view))
	out := make([]overflow.Seen, 0, len(keys))
	for _, k := range keys {
		out = append(out, c.view[k])
	}
	return out
}

// router is the centre's switchboard.Overflow: the production ranking over
// the in-memory gossip view, and offers carried by the clock.
type router struct{ c *centre }

func (rt *router) Candidates(channel, language string) []switchboard.Candidate {
	return overflow.RankCandidates(rt.c.id, rt.c.seen(), channel, language, rt.roundTrip, rt.c.r.float)
}

func (rt *router) OnDuty(channel, language string) (free, busy int) {
	return overflow.CountOnDuty(rt.c.id, rt.c.seen(), channel, language)
}

func (rt *router) roundTrip(string) time.Duration { return 2 * rt.c.r.delay }

// errLost is an offer the network lost: the owner hears nothing for a ring.
var errLost = errors.New("offer lost on the way")

type offerResult struct {
	answer *answer
	err    error
}

// pendingOffer is another centre's offer ringing one of ours.
type pendingOffer struct {
	res  *switchboard.Reservation
	wait *parked
	from *centre
}

// Offer carries o to centre to and waits, on the clock, for its answer.
func (rt *router) Offer(ctx context.Context, to string, o switchboard.OutgoingOffer) (switchboard.Answer, error) {
	r := rt.c.r
	target := r.centres[to]
	if target == nil {
		return nil, fmt.Errorf("offer to %s: no such centre", to)
	}
	p := r.clock.park(ctx)
	lost := r.chance(r.sc.Network.Loss)
	r.after(r.delay, func() {
		if lost {
			// The owner hears nothing, and gives up when the ring is over
			// and the protocol's 5 s of slack have passed (overflow's ask).
			r.after(o.Ring+5*time.Second-r.delay, func() { r.clock.wakeUp(p, offerResult{err: errLost}) })
			return
		}
		if ctx.Err() != nil {
			return // withdrawn before it arrived
		}
		res, err := target.sb.Reserve(switchboard.IncomingOffer{Contact: o.Contact, From: rt.c.id, Channel: o.Channel,
			Language: o.Language, Ring: o.Ring, Urgent: o.Urgent})
		if err != nil {
			r.after(r.delay, func() {
				r.clock.wakeUp(p, offerResult{err: fmt.Errorf("%w: %w", switchboard.ErrDeclined, err)})
			})
			return
		}
		target.pending[o.Contact] = &pendingOffer{res: res, wait: p, from: rt.c}
	})
	v, ok := r.clock.wait(p)
	if !ok {
		// Withdrawn (answered here first, or the visitor left): the other
		// centre hears of it after the delay.
		r.after(r.delay, func() {
			if po := target.pending[o.Contact]; po != nil && po.wait == p {
				delete(target.pending, o.Contact)
				po.res.Release("withdrawn by the visitor's centre")
			}
		})
		return nil, fmt.Errorf("offer to %s: %w", to, ctx.Err())
	}
	res := v.(offerResult)
	if res.err != nil {
		return nil, res.err
	}
	return res.answer, nil
}

// decided looks whether an offer ringing here has its answer, and sends it
// back to the offering centre. The volunteers call it after each choice.
func (c *centre) decided(contact string) {
	po := c.pending[contact]
	if po == nil {
		return
	}
	alias, ok, err := po.res.Decided()
	if !ok {
		return
	}
	delete(c.pending, contact)
	res := offerResult{err: fmt.Errorf("%w: %w", switchboard.ErrDeclined, err)}
	if err == nil {
		res = offerResult{answer: &answer{r: c.r, res: po.res, alias: alias, from: po.from, to: c}}
	}
	c.r.after(c.r.delay, func() {
		if !c.r.clock.wakeUp(po.wait, res) && res.answer != nil {
			res.answer.Cancel("the offer was withdrawn")
		}
	})
}

// answer is a yes from another centre, as switchboard.Answer.
type answer struct {
	r        *run
	res      *switchboard.Reservation
	alias    string
	from, to *centre
}

func (a *answer) Alias() string   { return a.alias }
func (a *answer) Token() string   { return "" }
func (a *answer) Resumable() bool { return false }
func (a *answer) Cancel(string) {
	a.r.after(a.r.delay, func() { a.res.Release("the contact was answered elsewhere") })
}
func (a *answer) Confirm(h switchboard.PeerHandler) (switchboard.Peer, error) {
	l := &link{r: a.r}
	l.handler[owner] = h
	l.handler[answering] = a.res.Connect(&linkEnd{l: l, side: answering})
	return &linkEnd{l: l, side: owner}, nil
}

// A link is an overflowed conversation's relay: what one side sends reaches
// the other after the delay; closing one side is heard as the relay lost
// at the other, unless it had closed too.
type link struct {
	r       *run
	mu      sync.Mutex
	handler [2]switchboard.PeerHandler
	closed  [2]bool
}

const (
	owner     = 0
	answering = 1
)

type linkEnd struct {
	l    *link
	side int
}

func (e *linkEnd) Send(ev switchboard.Event) error {
	l, far := e.l, 1-e.side
	l.r.after(l.r.delay, func() {
		l.mu.Lock()
		h, closed := l.handler[far], l.closed[far]
		l.mu.Unlock()
		if !closed && h != nil {
			h.OnEvent(ev)
		}
	})
	return nil
}

func (e *linkEnd) Close(string) {
	l, far := e.l, 1-e.side
	l.mu.Lock()
	l.closed[e.side] = true
	l.mu.Unlock()
	l.r.after(l.r.delay, func() {
		l.mu.Lock()
		h, closed := l.handler[far], l.closed[far]
		l.closed[far] = true
		l.mu.Unlock()
		if !closed && h != nil {
			h.OnLost(0)
		}
	})
}
