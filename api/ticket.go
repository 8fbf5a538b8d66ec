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

// honourTicket reports whether t is a ticket an admitted centre signed,
// unexpired and not honoured here before; it takes it. Anything else is
// simply not honoured: the visitor queues as anyone does.
func (s *Server) honourTicket(t string, now time.Time) bool {
	body, ok := s.checkTicket(t, now)
	return ok && s.tickets.take(body.Nonce, time.Unix(body.Expires, 0), now)
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
