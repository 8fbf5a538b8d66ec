package api

// Front-of-queue tickets (issue 15). A conversation answered at its own
// centre cannot resume anywhere else if that centre dies: the volunteer's
// side died with it. The page then starts a new chat at another centre, and
// a visitor who already waited and talked should not wait at the back
// again. The centre gives the page a ticket, signed with its identity key,
// that any centre can check against the roster's peer id: it says "this
// centre answered a visitor a moment ago", and nothing about who.
//
// A ticket lives ticketTTL and is renewed every ticketRenew while the
// conversation lasts, so one from a conversation that ended normally soon
// stops working; a centre takes each ticket once.

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

const (
	ticketTTL      = 3 * time.Minute
	ticketRenew    = time.Minute
	maxTicketChars = 600
	// ticketsKept bounds the tickets a centre remembers as used; when all
	// are unexpired, a new ticket is not honoured (the visitor queues as
	// anyone does) rather than an old one forgotten.
	ticketsKept = 10000
)

// ticketBody is what a ticket says and its centre signs.
type ticketBody struct {
	Centre  string `json:"c"`
	Expires int64  `json:"x"`
	Nonce   string `json:"n"`
}

// issueTicket makes a ticket of this centre's, "" if it cannot sign.
func (s *Server) issueTicket() string {
	n := make([]byte, 16)
	_, _ = rand.Read(n)
	b, _ := json.Marshal(ticketBody{Centre: s.cfg.Centre.Centre(), Expires: time.Now().Add(ticketTTL).Unix(), Nonce: hex.EncodeToString(n)})
	sig, err := s.cfg.Centre.Sign(b)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// usedTickets remembers the tickets this centre honoured, until they expire.
type usedTickets struct {
	mu   sync.Mutex
	seen *lru[time.Time]
}

func newUsedTickets() *usedTickets { return &usedTickets{seen: newLRU[time.Time](ticketsKept)} }

// take marks nonce used and reports whether it was new.
func (u *usedTickets) take(nonce string, expires, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, used := u.seen.get(nonce); used {
		return false
	}
	return u.seen.add(nonce, expires, func(exp time.Time) bool { return !exp.After(now) })
}

// ticketPromotionWait bounds how long a contact whose ticket names a centre
// still alive by gossip waits to be seen down: gossip takes seconds to
// declare a dead centre (about 6 s in the National profile).
const ticketPromotionWait = 20 * time.Second

// ticketVerdict says what a start's ticket earns: ahead now, ahead once its
// centre is seen down (later), or nothing.
type ticketVerdict int

const (
	ticketIgnored ticketVerdict = iota
	ticketAhead
	ticketLater
)

// judgeTicket decides on a chat start's ticket. A ticket is honoured only
// for a centre that is gone: one of this centre's own, or of a centre
// gossip still shows alive, would let a visitor in a conversation jump
// other queues with a second tab; the latter is honoured once gossip sees
// that centre down (promoteWhenDown), as it soon does when it really died.
func (s *Server) judgeTicket(t string, now time.Time) (ticketVerdict, ticketBody) {
	body, ok := s.checkTicket(t, now)
	if !ok || body.Centre == s.cfg.Centre.Centre() {
		return ticketIgnored, body
	}
	if s.centreAlive(body.Centre) {
		return ticketLater, body
	}
	if !s.tickets.take(body.Nonce, time.Unix(body.Expires, 0), now) {
		return ticketIgnored, body
	}
	return ticketAhead, body
}

// centreAlive says whether gossip shows centre alive (or suspect) here.
func (s *Server) centreAlive(centre string) bool {
	for _, c := range s.cfg.Centre.Federation().Centres {
		if c.ID == centre {
			return c.Gossip == "alive" || c.Gossip == "suspect"
		}
	}
	return false
}

// promoteWhenDown moves a waiting contact ahead once the ticket's centre
// is seen down, within ticketPromotionWait; it ends with ctx (the socket).
func (s *Server) promoteWhenDown(ctx context.Context, body ticketBody, moveAhead func() bool) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(ticketPromotionWait)
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case now := <-t.C:
			if s.centreAlive(body.Centre) {
				continue
			}
			if s.tickets.take(body.Nonce, time.Unix(body.Expires, 0), now) {
				moveAhead()
			}
			return
		}
	}
}

// checkTicket checks t's shape, time and signature.
func (s *Server) checkTicket(t string, now time.Time) (ticketBody, bool) {
	if t == "" || len(t) > maxTicketChars {
		return ticketBody{}, false
	}
	p, sg, ok := strings.Cut(t, ".")
	if !ok {
		return ticketBody{}, false
	}
	raw, err1 := base64.RawURLEncoding.DecodeString(p)
	sig, err2 := base64.RawURLEncoding.DecodeString(sg)
	var body ticketBody
	if err1 != nil || err2 != nil || decodeFrame(raw, &body) != nil {
		return ticketBody{}, false
	}
	exp := time.Unix(body.Expires, 0)
	if !exp.After(now) || exp.After(now.Add(ticketTTL+time.Minute)) || len(body.Nonce) != 32 {
		return ticketBody{}, false
	}
	c, ok := s.cfg.Centre.Roster().Centres[body.Centre]
	if !ok {
		return ticketBody{}, false
	}
	pid, err := peer.Decode(c.PeerID)
	if err != nil {
		return ticketBody{}, false
	}
	pub, err := pid.ExtractPublicKey()
	if err != nil {
		return ticketBody{}, false
	}
	if good, err := pub.Verify(raw, sig); err != nil || !good {
		return ticketBody{}, false
	}
	return body, true
}
