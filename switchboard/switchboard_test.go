package switchboard

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// Unit tests of the switchboard's decisions. Everything time-driven runs in
// a synctest bubble: the clock is fake and synctest.Wait lets every outbox
// drain before the test looks at what the sinks heard.

const (
	testRing          = 10 * time.Second
	testOverflowAfter = time.Minute
)

var testTopics = []string{"family", "school-work", "other"}

func newTestBoard(mod func(*Config)) *Switchboard {
	cfg := Config{
		Centre:        "A",
		RingTimeout:   testRing,
		OverflowAfter: func(string) time.Duration { return testOverflowAfter },
		Topics:        func() []string { return testTopics },
	}
	if mod != nil {
		mod(&cfg)
	}
	return New(cfg)
}

func chatVol(id string, capacity int, langs ...string) Volunteer {
	if len(langs) == 0 {
		langs = []string{"nb"}
	}
	return Volunteer{ID: id, Alias: "alias-" + id, Channels: []string{ChannelChat}, Languages: langs, Capacity: capacity}
}

// ---- fake sinks ----

type visitorSink struct {
	mu   sync.Mutex
	log  []string
	pos  int
	wait Estimate
}

func (v *visitorSink) add(s string) {
	v.mu.Lock()
	v.log = append(v.log, s)
	v.mu.Unlock()
}

func (v *visitorSink) Queued(p int, w Estimate) {
	v.mu.Lock()
	v.pos, v.wait = p, w
	v.mu.Unlock()
	v.add(fmt.Sprintf("queued %d %v", p, w))
}
func (v *visitorSink) Connected(alias string) { v.add("connected " + alias) }
func (v *visitorSink) Event(e Event)          { v.add(eventLine("event", e)) }

// eventLine is "event <kind> [id] [text] [by]", empty fields left out.
func eventLine(prefix string, e Event) string {
	parts := []string{prefix, string(e.Kind)}
	for _, f := range []string{e.ID, e.Text, e.By} {
		if f != "" {
			parts = append(parts, f)
		}
	}
	return strings.Join(parts, " ")
}
func (v *visitorSink) Requeued(n int)       { v.add(fmt.Sprintf("requeued %d", n)) }
func (v *visitorSink) Closed(reason string) { v.add("closed " + reason) }

func (v *visitorSink) lines() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.log...)
}

func (v *visitorSink) has(want string) bool {
	for _, l := range v.lines() {
		if l == want {
			return true
		}
	}
	return false
}

func (v *visitorSink) count(prefix string) int {
	n := 0
	for _, l := range v.lines() {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func (v *visitorSink) position() (int, Estimate) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.pos, v.wait
}

type consoleSink struct {
	mu       sync.Mutex
	log      []string
	offers   []Offer
	active   int
	capacity int
	maxLoad  int
	channels map[string]bool
}

func (c *consoleSink) add(s string) {
	c.mu.Lock()
	c.log = append(c.log, s)
	c.mu.Unlock()
}

func (c *consoleSink) Offer(o Offer) {
	c.mu.Lock()
	c.offers = append(c.offers, o)
	c.mu.Unlock()
	c.add("offer " + o.Contact)
}
func (c *consoleSink) OfferWithdrawn(contact, reason string) {
	c.add("withdrawn " + contact + " " + reason)
}
func (c *consoleSink) Connected(contact, from string) {
	c.add(strings.TrimSpace("connected " + contact + " " + from))
}
func (c *consoleSink) Event(contact string, e Event) { c.add(eventLine("event "+contact, e)) }
func (c *consoleSink) Lost(contact string, n int)    { c.add(fmt.Sprintf("lost %s %d", contact, n)) }
func (c *consoleSink) Availability(ch map[string]bool, active, capacity int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.channels, c.active, c.capacity = ch, active, capacity
	c.maxLoad = max(c.maxLoad, active)
}

func (c *consoleSink) lines() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.log...)
}

func (c *consoleSink) has(want string) bool {
	for _, l := range c.lines() {
		if l == want {
			return true
		}
	}
	return false
}

func (c *consoleSink) offered() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for _, o := range c.offers {
		ids = append(ids, o.Contact)
	}
	return ids
}

func (c *consoleSink) lastOffer() Offer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.offers) == 0 {
		return Offer{}
	}
	return c.offers[len(c.offers)-1]
}

func signInAvailable(t *testing.T, sb *Switchboard, v Volunteer) (*Console, *consoleSink) {
	t.Helper()
	sink := &consoleSink{}
	return signInAvailableTo(t, sb, v, sink), sink
}

// signInAvailableTo signs v in with sink and switches on every channel.
func signInAvailableTo(t *testing.T, sb *Switchboard, v Volunteer, sink ConsoleSink) *Console {
	t.Helper()
	con, err := sb.SignIn(v, sink)
	if err != nil {
		t.Fatalf("sign in %s: %v", v.ID, err)
	}
	for _, ch := range v.Channels {
		if err := con.SetAvailable(ch, true); err != nil {
			t.Fatalf("available %s %s: %v", v.ID, ch, err)
		}
	}
	return con
}

func startContact(t *testing.T, sb *Switchboard, channel, language string) (*VisitorHandle, *visitorSink) {
	t.Helper()
	vs := &visitorSink{}
	h, err := sb.StartContact(channel, language, vs)
	if err != nil {
		t.Fatalf("start contact %s/%s: %v", channel, language, err)
	}
	return h, vs
}

// wantOffers checks the contacts offered to a console, in order.
func wantOffers(t *testing.T, name string, c *consoleSink, want ...*VisitorHandle) {
	t.Helper()
	var ids []string
	for _, h := range want {
		ids = append(ids, h.ID())
	}
	got := c.offered()
	if strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Fatalf("%s was offered %v, want %v", name, short(got), short(ids))
	}
}

func short(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id[:min(6, len(id))]
	}
	return out
}

func mustAccept(t *testing.T, c *Console, h *VisitorHandle) {
	t.Helper()
	if err := c.Accept(h.ID()); err != nil {
		t.Fatalf("accept: %v", err)
	}
}

var anyCat = Categorisation{Topics: []string{"other"}, AgeGroup: "unknown"}

// connections counts the times a contact of ours was connected, by who
// answered. A requeued contact is connected again, so it counts here once
// per connection, where its Tally counts it once, when it ends.
func connections(st Stats) (local, overflow uint64) {
	all := st.Moved(StateQueued, StateConnected) + st.Moved(StateOffered, StateConnected)
	overflow = st.Sent(OfferAccepted)
	return all - overflow, overflow
}

// totals is the Tally summed over every channel and language, with the
// connections made here and elsewhere.
func totals(st Stats) (tl Tally, local, overflow uint64) {
	local, overflow = connections(st)
	return st.Total(), local, overflow
}

// requeued counts the contacts queued again after losing their volunteer.
func requeued(st Stats) uint64 { return st.Moved(StateConnected, StateQueued) }

// conserved is the counters' conservation law: every entry into the queue
// (a new contact, or a requeue after a lost volunteer) leaves it exactly
// once, connected or abandoned, or is still waiting.
func conserved(t *testing.T, st Stats) {
	t.Helper()
	if err := conservation(st); err != nil {
		t.Fatal(err)
	}
}

func conservation(st Stats) error {
	tl := st.Total()
	local, overflow := connections(st)
	if in, out := tl.Offered+requeued(st), local+overflow+tl.Abandoned+uint64(tl.Waiting); in != out {
		return fmt.Errorf("stats not conserved: Offered %d + requeued %d != connected %d here + %d elsewhere + Abandoned %d + Waiting %d",
			tl.Offered, requeued(st), local, overflow, tl.Abandoned, tl.Waiting)
	}
	return transitionsMatch(st)
}

// transitionsMatch checks that every answer and abandonment the Tally
// counted went through moveLocked exactly once, and that every connection
// ended, was lost (requeued) or is still going.
func transitionsMatch(st Stats) error {
	tl := st.Total()
	local, overflow := connections(st)
	ended := st.Moved(StateConnected, StateEnded)
	abandoned := st.Moved(StateQueued, StateAbandoned) + st.Moved(StateOffered, StateAbandoned)
	if ended != tl.AnsweredLocal+tl.AnsweredOverflow || abandoned != tl.Abandoned || local+overflow != ended+requeued(st)+uint64(tl.InProgress) {
		return fmt.Errorf("transitions %v do not match the tally %+v: %d connections (%d+%d), %d ended, %d requeued, %d abandoned",
			st.Transitions, tl, local+overflow, local, overflow, ended, requeued(st), abandoned)
	}
	return nil
}

// ---- fake overflow ----

type fakeOffer struct {
	centre string
	req    OutgoingOffer
	ctx    context.Context
	reply  chan offerReply
}

type offerReply struct {
	ans Answer
	err error
}

var errFakeDeclined = errors.New("fake: declined")

// fakeOverflow records offers. With declineAll it says no at once;
// otherwise an offer waits until the test replies or, unless ignoreCtx,
// the offering switchboard withdraws it.
type fakeOverflow struct {
	mu         sync.Mutex
	cands      []Candidate
	offers     []*fakeOffer
	declineAll bool
	ignoreCtx  bool
	// free and busy are what OnDuty reports (gossip's view of the others).
	free, busy int
}

func (f *fakeOverflow) setOnDuty(free, busy int) {
	f.mu.Lock()
	f.free, f.busy = free, busy
	f.mu.Unlock()
}

func (f *fakeOverflow) OnDuty(channel, language string) (free, busy int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.free, f.busy
}

func (f *fakeOverflow) setCandidates(c ...Candidate) {
	f.mu.Lock()
	f.cands = c
	f.mu.Unlock()
}

func (f *fakeOverflow) Candidates(channel, language string) []Candidate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Candidate(nil), f.cands...)
}

func (f *fakeOverflow) Offer(ctx context.Context, centre string, o OutgoingOffer) (Answer, error) {
	fo := &fakeOffer{centre: centre, req: o, ctx: ctx, reply: make(chan offerReply, 1)}
	f.mu.Lock()
	f.offers = append(f.offers, fo)
	decline, ignore := f.declineAll, f.ignoreCtx
	f.mu.Unlock()
	if decline {
		return nil, errFakeDeclined
	}
	if ignore {
		r := <-fo.reply
		return r.ans, r.err
	}
	select {
	case r := <-fo.reply:
		return r.ans, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (f *fakeOverflow) all() []*fakeOffer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeOffer(nil), f.offers...)
}

func (f *fakeOverflow) count() int { return len(f.all()) }

type fakePeer struct {
	mu     sync.Mutex
	sent   []Event
	closed string
}

func (p *fakePeer) Send(e Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed != "" {
		return errors.New("fake peer closed")
	}
	p.sent = append(p.sent, e)
	return nil
}

func (p *fakePeer) Close(reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed == "" {
		p.closed = reason
	}
}

func (p *fakePeer) state() ([]Event, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.sent...), p.closed
}

type fakeAnswer struct {
	alias     string
	token     string
	resumable bool
	peer      *fakePeer
	onConfirm func(h PeerHandler)

	mu        sync.Mutex
	h         PeerHandler
	confirmed bool
	cancelled string
}

func (a *fakeAnswer) Alias() string { return a.alias }

func (a *fakeAnswer) Token() string { return a.token }

func (a *fakeAnswer) Resumable() bool { return a.resumable }

func (a *fakeAnswer) Confirm(h PeerHandler) (Peer, error) {
	a.mu.Lock()
	a.h, a.confirmed = h, true
	a.mu.Unlock()
	if a.onConfirm != nil {
		a.onConfirm(h)
	}
	return a.peer, nil
}

func (a *fakeAnswer) Cancel(reason string) {
	a.mu.Lock()
	a.cancelled = reason
	a.mu.Unlock()
}

func (a *fakeAnswer) state() (PeerHandler, bool, string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.h, a.confirmed, a.cancelled
}

// ---- tests ----

func TestLongestIdleVolunteerFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		c1, s1 := signInAvailable(t, sb, chatVol("v1", 1))
		time.Sleep(time.Second)
		c2, s2 := signInAvailable(t, sb, chatVol("v2", 1))
		time.Sleep(time.Second)
		c3, s3 := signInAvailable(t, sb, chatVol("v3", 1))
		time.Sleep(time.Second)

		h1, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v1", s1, h1)
		wantOffers(t, "v2", s2)
		mustAccept(t, c1, h1)
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v2", s2, h2)
		mustAccept(t, c2, h2)
		h3, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v3", s3, h3)
		mustAccept(t, c3, h3)

		// They finish in the order v2, v3, v1: that is now the idle order.
		time.Sleep(time.Second)
		if err := c2.End(h2.ID(), anyCat); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if err := c3.End(h3.ID(), anyCat); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if err := c1.End(h1.ID(), anyCat); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		h4, _ := startContact(t, sb, ChannelChat, "nb")
		h5, _ := startContact(t, sb, ChannelChat, "nb")
		h6, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v2", s2, h2, h4)
		wantOffers(t, "v3", s3, h3, h5)
		wantOffers(t, "v1", s1, h1, h6)

		// Equally idle: the lower id first, whatever the map order.
		for i := range 10 {
			sb2 := newTestBoard(nil)
			_, sB := signInAvailable(t, sb2, chatVol(fmt.Sprintf("vb%d", i), 1))
			_, sa := signInAvailable(t, sb2, chatVol(fmt.Sprintf("va%d", i), 1))
			h, _ := startContact(t, sb2, ChannelChat, "nb")
			synctest.Wait()
			wantOffers(t, "va", sa, h)
			wantOffers(t, "vb", sB)
			sb2.Close()
		}
	})
}

// A volunteer with spare capacity who is in a conversation is not idle: the
// next contact should ring on a volunteer who is doing nothing.
func TestBusyVolunteerIsNotLongestIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		c1, s1 := signInAvailable(t, sb, chatVol("v1", 2))
		time.Sleep(time.Second)
		_, s2 := signInAvailable(t, sb, chatVol("v2", 2))
		time.Sleep(time.Second)
		h1, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v1", s1, h1)
		mustAccept(t, c1, h1)
		time.Sleep(time.Second)
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if got := s2.offered(); len(got) != 1 || got[0] != h2.ID() {
			t.Errorf("v1 is in a conversation and v2 has been idle since sign-in, yet the next contact rang on v1 (v1 offers %v, v2 offers %v): "+
				"idleSince is not reset when a volunteer is connected, so a volunteer with capacity > 1 who is already busy counts as the longest idle",
				short(s1.offered()), short(s2.offered()))
		}
	})
}

func TestLanguageAndChannelMatching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		_, sNB := signInAvailable(t, sb, chatVol("v-nb", 2, "nb"))
		time.Sleep(time.Second)
		_, sEN := signInAvailable(t, sb, chatVol("v-en", 2, "en"))
		time.Sleep(time.Second)
		cPh, sPh := signInAvailable(t, sb, Volunteer{ID: "v-phone", Alias: "P", Channels: []string{ChannelPhone}, Languages: []string{"nb", "en"}, Capacity: 2})
		time.Sleep(time.Second)
		if err := cPh.SetAvailable(ChannelChat, true); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("switching on a channel that is not the volunteer's: %v, want ErrBadRequest", err)
		}

		hEN, _ := startContact(t, sb, ChannelChat, "en")
		hPh, _ := startContact(t, sb, ChannelPhone, "en")
		hFR, vFR := startContact(t, sb, ChannelChat, "fr")
		synctest.Wait()
		wantOffers(t, "v-nb", sNB)
		wantOffers(t, "v-en", sEN, hEN)
		wantOffers(t, "v-phone", sPh, hPh)
		if p, _ := vFR.position(); p != 1 {
			t.Fatalf("the fr contact should be told position 1, got %d", p)
		}
		if _, err := sb.StartContact("sms", "nb", &visitorSink{}); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("unknown channel: %v", err)
		}
		if _, err := sb.StartContact(ChannelChat, "xx", &visitorSink{}); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("unserved language: %v", err)
		}

		// A volunteer signed in but switched off for chat gets no offer.
		sOff := &consoleSink{}
		if _, err := sb.SignIn(chatVol("v-off", 1, "fr"), sOff); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		wantOffers(t, "v-off", sOff)
		_, sFR := signInAvailable(t, sb, chatVol("v-fr", 1, "fr"))
		synctest.Wait()
		wantOffers(t, "v-fr", sFR, hFR)
	})
}

// A declined or timed-out offer moves on to the next free volunteer; the
// contact keeps its place in the queue, so a contact behind it does not
// jump ahead when a volunteer comes free.
func TestUnansweredOfferMovesOnAndKeepsPlace(t *testing.T) {
	for _, mode := range []string{"decline", "timeout"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sb := newTestBoard(nil)
				defer sb.Close()
				unanswered := func(c *Console, s *consoleSink, h *VisitorHandle) {
					t.Helper()
					switch mode {
					case "decline":
						time.Sleep(2 * time.Second)
						if err := c.Decline(h.ID()); err != nil {
							t.Fatal(err)
						}
						if err := c.Decline(h.ID()); !errors.Is(err, ErrOfferGone) {
							t.Fatalf("second decline: %v", err)
						}
						synctest.Wait()
						if !s.has("withdrawn " + h.ID() + " declined") {
							t.Fatalf("console did not hear the offer end: %v", s.lines())
						}
					case "timeout":
						time.Sleep(testRing - time.Millisecond)
						synctest.Wait()
						if s.has("withdrawn " + h.ID() + " no answer in time") {
							t.Fatal("ring ended early")
						}
						time.Sleep(time.Millisecond)
						synctest.Wait()
						if !s.has("withdrawn " + h.ID() + " no answer in time") {
							t.Fatalf("ring did not time out after %v: %v", testRing, s.lines())
						}
						if err := c.Accept(h.ID()); !errors.Is(err, ErrOfferGone) {
							t.Fatalf("accept after timeout: %v", err)
						}
					}
				}

				// Part 1: next volunteer.
				c1, s1 := signInAvailable(t, sb, chatVol("v1", 1))
				time.Sleep(time.Second)
				c2, s2 := signInAvailable(t, sb, chatVol("v2", 1))
				time.Sleep(time.Second)
				h1, vis1 := startContact(t, sb, ChannelChat, "nb")
				synctest.Wait()
				wantOffers(t, "v1", s1, h1)
				unanswered(c1, s1, h1)
				wantOffers(t, "v2", s2, h1)
				mustAccept(t, c2, h1)
				synctest.Wait()
				if !vis1.has("connected alias-v2") {
					t.Fatalf("visitor: %v", vis1.lines())
				}
				if err := c2.End(h1.ID(), anyCat); err != nil {
					t.Fatal(err)
				}
				c2.SignOut()

				// Part 2: keep place. Only v1 is on. a rings v1 and is
				// not answered; b (behind a) then rings v1; c waits. When
				// v3 comes free, a (still first) gets it, not c.
				time.Sleep(time.Minute) // past any decline cooldown
				ha, va := startContact(t, sb, ChannelChat, "nb")
				hb, vb := startContact(t, sb, ChannelChat, "nb")
				_, vc := startContact(t, sb, ChannelChat, "nb")
				synctest.Wait()
				wantOffers(t, "v1", s1, h1, ha)
				unanswered(c1, s1, ha)
				wantOffers(t, "v1", s1, h1, ha, hb)
				if p, _ := va.position(); p != 1 {
					t.Fatalf("a lost its place: position %d", p)
				}
				if p, _ := vb.position(); p != 2 {
					t.Fatalf("b: position %d", p)
				}
				if p, _ := vc.position(); p != 3 {
					t.Fatalf("c: position %d", p)
				}
				for _, l := range va.lines() {
					if strings.HasPrefix(l, "queued ") && !strings.HasPrefix(l, "queued 1 ") {
						t.Fatalf("a should only ever have heard position 1: %v", va.lines())
					}
				}
				_, s3 := signInAvailable(t, sb, chatVol("v3", 1))
				synctest.Wait()
				wantOffers(t, "v3", s3, ha)
				if st := sb.Stats().Total(); st.Waiting != 3 {
					t.Fatalf("stats: %+v", st)
				}
			})
		})
	}
}

func TestCapacityRespected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		c1, s1 := signInAvailable(t, sb, chatVol("v1", 1))
		time.Sleep(time.Second)
		h1, _ := startContact(t, sb, ChannelChat, "nb")
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v1", s1, h1) // one ring at a time
		mustAccept(t, c1, h1)
		synctest.Wait()
		wantOffers(t, "v1", s1, h1) // at capacity: nothing rings
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		wantOffers(t, "v1", s1, h1)
		if err := c1.End(h1.ID(), anyCat); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		wantOffers(t, "v1", s1, h1, h2)
		mustAccept(t, c1, h2)

		c2, s2 := signInAvailable(t, sb, chatVol("v2", 2))
		h3, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v2", s2, h3)
		mustAccept(t, c2, h3)
		h4, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v2", s2, h3, h4)
		mustAccept(t, c2, h4)
		h5, v5 := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		wantOffers(t, "v2", s2, h3, h4)
		wantOffers(t, "v1", s1, h1, h2)
		if p, _ := v5.position(); p != 1 {
			t.Fatalf("h5 position %d", p)
		}
		for name, s := range map[string]*consoleSink{"v1": s1, "v2": s2} {
			s.mu.Lock()
			if s.maxLoad > s.capacity {
				t.Errorf("%s had %d active, capacity %d", name, s.maxLoad, s.capacity)
			}
			s.mu.Unlock()
		}
		conserved(t, sb.Stats())
		_ = h5
	})
}

// The estimate's rules are in wait_test.go; here, with nobody on duty, the
// places.
func TestQueuePositionAndEstimatedWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		h1, v1 := startContact(t, sb, ChannelChat, "nb")
		h2, v2 := startContact(t, sb, ChannelChat, "nb")
		_, v3 := startContact(t, sb, ChannelChat, "nb")
		_, vEN := startContact(t, sb, ChannelChat, "en")
		synctest.Wait()
		for i, v := range []*visitorSink{v1, v2, v3} {
			want := fmt.Sprintf("queued %d %v", i+1, WaitNoOne)
			if !v.has(want) {
				t.Fatalf("visitor %d heard %v, want %q", i+1, v.lines(), want)
			}
		}
		if p, w := vEN.position(); p != 1 || w.Kind != WaitNoOne {
			t.Fatalf("an en contact is first in its own queue: %d %v", p, w)
		}

		// The first leaves: everyone behind moves up.
		time.Sleep(10 * time.Second)
		h1.End()
		synctest.Wait()
		if !v2.has("queued 1 no_one_on_duty") || !v3.has("queued 2 no_one_on_duty") {
			t.Fatalf("after the first left: %v / %v", v2.lines(), v3.lines())
		}
		if st := sb.Stats().Total(); st.Abandoned != 1 || st.Waiting != 3 {
			t.Fatalf("stats: %+v", st)
		}
		if n := vEN.count("queued "); n != 1 {
			t.Fatalf("the en visitor's place did not change: %v", vEN.lines())
		}

		// The second is answered: the third moves up.
		c, _ := signInAvailable(t, sb, chatVol("v", 1, "nb", "en"))
		synctest.Wait()
		mustAccept(t, c, h2)
		time.Sleep(WaitResendEvery) // v3 heard of v's arrival just now
		synctest.Wait()
		if p, _ := v3.position(); p != 1 {
			t.Fatalf("third visitor at %d after the second was answered: %v", p, v3.lines())
		}
		conserved(t, sb.Stats())
	})
}

func TestVisitorLeavingWhileOfferedWithdrawsOffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		c, s := signInAvailable(t, sb, chatVol("v1", 1))
		h, vis := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v1", s, h)
		h.End()
		synctest.Wait()
		if !s.has("withdrawn " + h.ID() + " the visitor left") {
			t.Fatalf("console: %v", s.lines())
		}
		if err := c.Accept(h.ID()); !errors.Is(err, ErrOfferGone) {
			t.Fatalf("accept after the visitor left: %v", err)
		}
		h.End() // idempotent
		if err := h.Send("m1", "hello"); !errors.Is(err, ErrEnded) {
			t.Fatalf("send after leaving: %v", err)
		}
		st := sb.Stats()
		if tl, local, _ := totals(st); tl.Abandoned != 1 || tl.Waiting != 0 || local != 0 {
			t.Fatalf("stats: %+v", st)
		}
		conserved(t, st)
		// The volunteer is free again.
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v1", s, h, h2)
		_ = vis
	})
}

func withOverflow(f *fakeOverflow, after time.Duration) func(*Config) {
	return func(c *Config) {
		c.Overflow = f
		c.OverflowAfter = func(string) time.Duration { return after }
	}
}

// withOverflowWaiting is withOverflow under the policy's
// wait_locally_when_busy: a contact waits the whole overflow_after even when
// every volunteer here is busy (the rule before busy.go), which the tests of
// that wait itself need.
func withOverflowWaiting(f *fakeOverflow, after time.Duration) func(*Config) {
	return func(c *Config) {
		withOverflow(f, after)(c)
		c.WaitLocallyWhenBusy = func() bool { return true }
	}
}

func TestLocalAcceptCancelsRemoteOffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, 5*time.Second))
		defer sb.Close()
		c, s := signInAvailable(t, sb, Volunteer{ID: "v1", Alias: "Ola", Channels: []string{ChannelChat}, Languages: []string{"nb"}, Capacity: 1})
		h, vis := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v1", s, h)
		if fo.count() != 0 {
			t.Fatal("offered to another centre before OverflowAfter although a volunteer is on")
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		offers := fo.all()
		if len(offers) != 1 || offers[0].centre != "B" || offers[0].req.Contact != h.ID() || offers[0].req.Ring != testRing {
			t.Fatalf("overflow offers: %+v", offers)
		}
		mustAccept(t, c, h)
		synctest.Wait()
		if offers[0].ctx.Err() == nil {
			t.Fatal("the remote offer was not withdrawn when the local volunteer accepted")
		}
		if !vis.has("connected Ola") {
			t.Fatalf("visitor: %v", vis.lines())
		}
		st := sb.Stats()
		if tl, local, overflow := totals(st); local != 1 || overflow != 0 || tl.InProgress != 1 {
			t.Fatalf("stats: %+v", st)
		}
		conserved(t, st)
		if fo.count() != 1 {
			t.Fatalf("offered again after being answered: %d offers", fo.count())
		}
	})
}

// The other centre's volunteer accepted at the same moment as ours: our
// acceptance was first, so their answer must be cancelled, never confirmed.
func TestLocalAcceptBeatsRemoteAnswerInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{ignoreCtx: true}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, 5*time.Second))
		defer sb.Close()
		c, s := signInAvailable(t, sb, chatVol("v1", 1))
		h, vis := startContact(t, sb, ChannelChat, "nb")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		wantOffers(t, "v1", s, h)
		offers := fo.all()
		if len(offers) != 1 {
			t.Fatalf("offers: %d", len(offers))
		}
		mustAccept(t, c, h)
		ans := &fakeAnswer{alias: "Kari", peer: &fakePeer{}}
		offers[0].reply <- offerReply{ans: ans}
		synctest.Wait()
		_, confirmed, cancelled := ans.state()
		if confirmed || cancelled == "" {
			t.Fatalf("the late remote answer: confirmed %v, cancelled %q", confirmed, cancelled)
		}
		if vis.count("connected ") != 1 || !vis.has("connected alias-v1") {
			t.Fatalf("visitor: %v", vis.lines())
		}
		st := sb.Stats()
		if local, overflow := connections(st); local != 1 || overflow != 0 {
			t.Fatalf("stats: %+v", st)
		}
		conserved(t, st)
	})
}

func TestRemoteAnswerWithdrawsLocalOffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, 5*time.Second))
		defer sb.Close()
		c, s := signInAvailable(t, sb, chatVol("v1", 1))
		h, vis := startContact(t, sb, ChannelChat, "nb")
		time.Sleep(5 * time.Second)
		synctest.Wait()
		wantOffers(t, "v1", s, h)
		offers := fo.all()
		if len(offers) != 1 {
			t.Fatalf("offers: %d", len(offers))
		}
		peer := &fakePeer{}
		ans := &fakeAnswer{alias: "Kari", peer: peer}
		offers[0].reply <- offerReply{ans: ans}
		synctest.Wait()
		if !s.has("withdrawn " + h.ID() + " answered at another centre") {
			t.Fatalf("local offer not withdrawn: %v", s.lines())
		}
		if err := c.Accept(h.ID()); !errors.Is(err, ErrOfferGone) {
			t.Fatalf("local accept after the remote answer: %v, want ErrOfferGone", err)
		}
		hd, confirmed, _ := ans.state()
		if !confirmed || !vis.has("connected Kari") {
			t.Fatalf("confirmed %v, visitor %v", confirmed, vis.lines())
		}
		st := sb.Stats()
		if tl, local, overflow := totals(st); overflow != 1 || local != 0 || tl.InProgress != 1 || tl.Waiting != 0 {
			t.Fatalf("stats: %+v", st)
		}
		conserved(t, st)

		// The conversation runs through the peer.
		if err := h.Send("m1", "hei"); err != nil {
			t.Fatal(err)
		}
		hd.OnEvent(Event{Kind: EventMessage, ID: "r1", Text: "hallo"})
		synctest.Wait()
		if !vis.has("event message r1 hallo") {
			t.Fatalf("visitor: %v", vis.lines())
		}
		sent, _ := peer.state()
		if len(sent) < 2 || sent[0].Kind != EventMessage || sent[0].ID != "m1" || sent[1].Kind != EventDelivered || sent[1].ID != "r1" {
			t.Fatalf("peer got %+v", sent)
		}
		hd.OnEvent(Event{Kind: EventEnded, By: ByVolunteer})
		synctest.Wait()
		if _, closed := peer.state(); closed == "" {
			t.Fatal("relay not closed at the end")
		}
		if st := sb.Stats().Total(); st.InProgress != 0 {
			t.Fatalf("stats: %+v", st)
		}
		// The local volunteer is free for the next contact.
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		wantOffers(t, "v1", s, h, h2)
	})
}

// The relay may report loss (or an event) from inside Confirm or just after
// it, before the switchboard has attached the conversation: the real relay
// starts its reader inside Confirm, and the far centre closes at once if its
// volunteer signed out between accepting and the confirmation.
func TestRelayLostDuringConfirm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, time.Second))
		defer sb.Close()
		h, vis := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		offers := fo.all()
		if len(offers) != 1 {
			t.Fatalf("offers: %d", len(offers))
		}
		peer := &fakePeer{}
		ans := &fakeAnswer{alias: "Kari", peer: peer, onConfirm: func(h PeerHandler) {
			// The far side's bye arrives on the relay's reader goroutine.
			done := make(chan struct{})
			go func() {
				peer.Close("the far end closed")
				h.OnLost(0)
				close(done)
			}()
			<-done
		}}
		offers[0].reply <- offerReply{ans: ans}
		synctest.Wait()
		st := sb.Stats()
		if st.Total().InProgress != 0 || !vis.has("requeued 0") && vis.has("connected Kari") {
			t.Errorf("the relay died during Confirm, yet the visitor is connected to it: visitor heard %v, stats InProgress %d Requeued %d; "+
				"ownerPeerHandler.OnLost/OnEvent drop everything while h.cv is nil (set only after Confirm returns and the lock is retaken)",
				vis.lines(), st.Total().InProgress, requeued(st))
		}
		_ = h
	})
}

func TestOverflowAtOnceWhenNoVolunteerOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "A", Version: 9}, Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, time.Minute))
		defer sb.Close()
		// On, but for another language and another channel.
		signInAvailable(t, sb, chatVol("v-en", 1, "en"))
		signInAvailable(t, sb, Volunteer{ID: "v-ph", Channels: []string{ChannelPhone}, Languages: []string{"nb"}, Capacity: 1})
		// Signed in for chat/nb but switched off.
		if _, err := sb.SignIn(chatVol("v-off", 1, "nb"), &consoleSink{}); err != nil {
			t.Fatal(err)
		}
		h, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		offers := fo.all()
		if len(offers) != 1 || offers[0].centre != "B" || offers[0].req.Contact != h.ID() || offers[0].req.Channel != ChannelChat || offers[0].req.Language != "nb" {
			t.Fatalf("want one immediate offer to B (never to ourselves), got %+v", offers)
		}
		if st := sb.Stats().Total(); st.Waiting != 1 {
			t.Fatalf("stats: %+v", st)
		}
	})
}

// Under wait_locally_when_busy, a contact whose only volunteer here is busy
// waits the whole overflow_after before another centre is offered it
// (busy_test.go has the default, where it goes at once).
func TestOverflowOnlyAfterOverflowAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflowWaiting(fo, 30*time.Second))
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h0, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, c, h0) // v1 is on but busy
		h, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		time.Sleep(30*time.Second - time.Millisecond)
		synctest.Wait()
		if n := fo.count(); n != 0 {
			t.Fatalf("%d offers before OverflowAfter", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		offers := fo.all()
		if len(offers) != 1 || offers[0].req.Contact != h.ID() {
			t.Fatalf("want one offer at OverflowAfter, got %+v", offers)
		}
	})
}

func TestOverflowOncePerCandidateVersion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{declineAll: true}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflow(fo, time.Minute))
		defer sb.Close()
		h, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if n := fo.count(); n != 1 {
			t.Fatalf("offers after start: %d", n)
		}
		for range 3 {
			sb.Kick()
			time.Sleep(time.Second)
			synctest.Wait()
		}
		if n := fo.count(); n != 1 {
			t.Fatalf("B declined at version 1 and was asked again at version 1: %d offers", n)
		}
		fo.setCandidates(Candidate{Centre: "B", Version: 2})
		sb.Kick()
		synctest.Wait()
		if n := fo.count(); n != 2 {
			t.Fatalf("B's availability changed but it was not asked again: %d offers", n)
		}
		// A second candidate is tried after the first says no.
		fo.setCandidates(Candidate{Centre: "B", Version: 2}, Candidate{Centre: "C", Version: 5})
		sb.Kick()
		synctest.Wait()
		offers := fo.all()
		if len(offers) != 3 || offers[2].centre != "C" {
			t.Fatalf("offers: %d, last to %s", len(offers), offers[len(offers)-1].centre)
		}
		sb.Kick()
		synctest.Wait()
		if n := fo.count(); n != 3 {
			t.Fatalf("offers: %d", n)
		}
		for _, o := range fo.all() {
			if o.req.Contact != h.ID() {
				t.Fatal("wrong contact")
			}
		}
	})
}

func onlyX1(t *testing.T, s *consoleSink) {
	t.Helper()
	if got := s.offered(); len(got) != 1 || got[0] != "x1" {
		t.Fatalf("v1 was offered %v while held for x1", short(got))
	}
}

func TestReserveOnReceivingSide(t *testing.T) {
	offer := func(id string, ring time.Duration) IncomingOffer {
		return IncomingOffer{Contact: id, From: "B", Channel: ChannelChat, Language: "nb", Ring: ring}
	}
	t.Run("decline", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			sb := newTestBoard(nil)
			defer sb.Close()
			if _, err := sb.Reserve(offer("x1", time.Second)); !errors.Is(err, ErrNoVolunteer) {
				t.Fatalf("nobody on: %v", err)
			}
			c, s := signInAvailable(t, sb, chatVol("v1", 1))
			res, err := sb.Reserve(offer("x1", 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sb.Reserve(offer("x1", 5*time.Second)); !errors.Is(err, ErrBadRequest) {
				t.Fatalf("duplicate: %v", err)
			}
			if _, err := sb.Reserve(offer("", time.Second)); !errors.Is(err, ErrBadRequest) {
				t.Fatalf("empty id: %v", err)
			}
			if _, err := sb.Reserve(offer(strings.Repeat("x", 65), time.Second)); !errors.Is(err, ErrBadRequest) {
				t.Fatalf("long id: %v", err)
			}
			synctest.Wait()
			o := s.lastOffer()
			if o.Contact != "x1" || o.From != "B" || !o.Until.Equal(time.Now().Add(5*time.Second)) {
				t.Fatalf("offer on console: %+v", o)
			}
			errc := make(chan error, 1)
			go func() { _, err := res.Wait(context.Background()); errc <- err }()
			if err := c.Decline("x1"); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; !errors.Is(err, ErrOfferGone) {
				t.Fatalf("wait after decline: %v", err)
			}
			// Free again, and the same contact may be offered again.
			if _, err := sb.Reserve(offer("x1", 5*time.Second)); err != nil {
				t.Fatalf("after decline: %v", err)
			}
		})
	})
	t.Run("timeout", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			sb := newTestBoard(nil)
			defer sb.Close()
			_, s := signInAvailable(t, sb, chatVol("v1", 1))
			start := time.Now()
			res, err := sb.Reserve(offer("x1", time.Hour)) // clamped to RingTimeout
			if err != nil {
				t.Fatal(err)
			}
			if _, err := res.Wait(context.Background()); !errors.Is(err, ErrOfferGone) {
				t.Fatalf("wait: %v", err)
			}
			if d := time.Since(start); d != testRing {
				t.Fatalf("rang %v, want the ring timeout %v", d, testRing)
			}
			synctest.Wait()
			if !s.has("withdrawn x1 no answer in time") {
				t.Fatalf("console: %v", s.lines())
			}
			start = time.Now()
			res, err = sb.Reserve(offer("x2", 0)) // at least a second
			if err != nil {
				t.Fatal(err)
			}
			_, _ = res.Wait(context.Background())
			if d := time.Since(start); d != time.Second {
				t.Fatalf("rang %v, want 1s", d)
			}
		})
	})
	t.Run("withdrawn", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			sb := newTestBoard(nil)
			defer sb.Close()
			c, s := signInAvailable(t, sb, chatVol("v1", 1))
			res, err := sb.Reserve(offer("x1", 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { _, err := res.Wait(ctx); errc <- err }()
			synctest.Wait()
			h, _ := startContact(t, sb, ChannelChat, "nb") // waits: v1 is ringing
			synctest.Wait()
			onlyX1(t, s)
			time.Sleep(time.Second)
			cancel()
			if err := <-errc; err == nil {
				t.Fatal("wait returned nil after the offering centre withdrew")
			}
			synctest.Wait()
			if !s.has("withdrawn x1 withdrawn by the visitor's centre") {
				t.Fatalf("console: %v", s.lines())
			}
			if err := c.Accept("x1"); !errors.Is(err, ErrOfferGone) {
				t.Fatalf("accept after withdrawal: %v", err)
			}
			// v1 is free again: our own waiting contact rings on them.
			if o := s.lastOffer(); o.Contact != h.ID() {
				t.Fatalf("v1 not free after the withdrawal: last offer %+v", o)
			}
		})
	})
	t.Run("connect", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			sb := newTestBoard(nil)
			defer sb.Close()
			c, s := signInAvailable(t, sb, chatVol("v1", 1))
			res, err := sb.Reserve(offer("x1", 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Accept("x1"); err != nil {
				t.Fatal(err)
			}
			alias, err := res.Wait(context.Background())
			if err != nil || alias != "alias-v1" {
				t.Fatalf("wait: %q %v", alias, err)
			}
			// Held until the owner confirms: nothing else rings.
			h, _ := startContact(t, sb, ChannelChat, "nb")
			synctest.Wait()
			onlyX1(t, s)
			peer := &fakePeer{}
			ph := res.Connect(peer)
			synctest.Wait()
			if !s.has("connected x1 B") {
				t.Fatalf("console: %v", s.lines())
			}
			if st := sb.Stats(); st.Received(OfferAccepted) != 1 || st.ReceivedInProgress != 1 {
				t.Fatalf("stats: %+v", st)
			}
			ph.OnEvent(Event{Kind: EventMessage, ID: "m1", Text: "hei"})
			if err := c.Send("x1", "r1", "hallo"); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			if !s.has("event x1 message m1 hei") {
				t.Fatalf("console: %v", s.lines())
			}
			if err := c.End("x1", anyCat); err != nil {
				t.Fatal(err)
			}
			sent, closed := peer.state()
			if len(sent) != 3 || sent[0].Kind != EventDelivered || sent[1].ID != "r1" || sent[2].Kind != EventEnded || sent[2].By != ByVolunteer || closed == "" {
				t.Fatalf("peer: %+v closed %q", sent, closed)
			}
			synctest.Wait()
			if o := s.lastOffer(); o.Contact != h.ID() {
				t.Fatalf("v1 not free after the end: %+v", o)
			}
			if st := sb.Stats(); st.ReceivedInProgress != 0 || st.Categorised() != 1 {
				t.Fatalf("stats: %+v", st)
			}
		})
	})
	t.Run("release after accept", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			sb := newTestBoard(nil)
			defer sb.Close()
			c, s := signInAvailable(t, sb, chatVol("v1", 1))
			res, err := sb.Reserve(offer("x1", 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Accept("x1"); err != nil {
				t.Fatal(err)
			}
			if _, err := res.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			res.Release("answered at another centre")
			synctest.Wait()
			if !s.has("withdrawn x1 answered at another centre") {
				t.Fatalf("console: %v", s.lines())
			}
			peer := &fakePeer{}
			res.Connect(peer) // too late: refused
			if _, closed := peer.state(); closed == "" {
				t.Fatal("connect after release did not close the peer")
			}
			if st := sb.Stats(); st.Received(OfferAccepted) != 0 {
				t.Fatalf("stats: %+v", st)
			}
		})
	})
}

func TestBadMessagesRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h, vis := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if err := h.Send("m0", "too early"); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("send while waiting: %v", err)
		}
		mustAccept(t, c, h)
		bad := []struct{ name, id, text string }{
			{"empty text", "m1", ""},
			{"text too long", "m1", strings.Repeat("a", MaxTextBytes+1)},
			{"invalid utf-8", "m1", "hei \xff\xfe"},
			{"empty id", "", "hei"},
			{"id too long", strings.Repeat("i", MaxMessageIDBytes+1), "hei"},
		}
		for _, b := range bad {
			if err := h.Send(b.id, b.text); !errors.Is(err, ErrBadMessage) {
				t.Errorf("visitor %s: %v, want ErrBadMessage", b.name, err)
			}
			if err := c.Send(h.ID(), b.id, b.text); !errors.Is(err, ErrBadMessage) {
				t.Errorf("volunteer %s: %v, want ErrBadMessage", b.name, err)
			}
		}
		// At the limits: accepted.
		long := strings.Repeat("æ", MaxTextBytes/2)
		if err := h.Send(strings.Repeat("i", MaxMessageIDBytes), long); err != nil {
			t.Fatal(err)
		}
		if err := c.Send(h.ID(), "r1", long); err != nil {
			t.Fatal(err)
		}
		if err := c.Send("nope", "r2", "hei"); !errors.Is(err, ErrUnknownContact) {
			t.Fatalf("send to an unknown contact: %v", err)
		}
		synctest.Wait()
		if vis.count("event message") != 1 || vis.count("event delivered") != 1 {
			t.Fatalf("visitor: %d lines", len(vis.lines()))
		}
	})
}

func TestCategorisationRefusesUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h, vis := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, c, h)
		for name, cat := range map[string]Categorisation{
			"unknown topic":     {Topics: []string{"weather"}, AgeGroup: "13-15"},
			"unknown age group": {Topics: []string{"family"}, AgeGroup: "ancient"},
			"no topics":         {AgeGroup: "13-15"},
			"too many topics":   {Topics: []string{"family", "family", "family", "family", "family", "family", "family", "family", "family"}, AgeGroup: "13-15"},
		} {
			if err := c.End(h.ID(), cat); !errors.Is(err, ErrBadRequest) {
				t.Errorf("%s: %v, want ErrBadRequest", name, err)
			}
		}
		synctest.Wait()
		if vis.count("event ended") != 0 {
			t.Fatal("a refused categorisation ended the conversation")
		}
		if err := c.End(h.ID(), Categorisation{Topics: []string{"family", "school-work"}, AgeGroup: "13-15"}); err != nil {
			t.Fatal(err)
		}
		if err := c.End(h.ID(), anyCat); !errors.Is(err, ErrUnknownContact) {
			t.Fatalf("categorised twice: %v", err)
		}
		synctest.Wait()
		if !vis.has("event ended volunteer") {
			t.Fatalf("visitor: %v", vis.lines())
		}
		st := sb.Stats()
		if st.Categorised() != 1 || st.Topics["family"] != 1 || st.Topics["school-work"] != 1 || st.AgeGroups["13-15"] != 1 {
			t.Fatalf("stats: %+v", st)
		}
		// The visitor ended the next one: the volunteer still categorises it.
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, c, h2)
		h2.End()
		if err := c.End(h2.ID(), anyCat); err != nil {
			t.Fatalf("categorising a conversation the visitor ended: %v", err)
		}
	})
}

// A volunteer who signs out mid-conversation: the visitor is told and goes
// back to the front of the queue.
func TestSignOutRequeuesAtFront(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		c1, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h1, vis1 := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		mustAccept(t, c1, h1)
		_, vis2 := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if p, _ := vis2.position(); p != 1 {
			t.Fatalf("second visitor at %d", p)
		}
		c1.SignOut()
		synctest.Wait()
		if !vis1.has("requeued 0") {
			t.Fatalf("visitor: %v", vis1.lines())
		}
		if p, _ := vis1.position(); p != 1 {
			t.Fatalf("requeued visitor at %d, want the front", p)
		}
		time.Sleep(WaitResendEvery) // vis2 was told its place just now
		synctest.Wait()
		if p, _ := vis2.position(); p != 2 {
			t.Fatalf("second visitor at %d", p)
		}
		st := sb.Stats()
		if tl := st.Total(); requeued(st) != 1 || tl.Waiting != 2 || tl.InProgress != 0 {
			t.Fatalf("stats: %+v", st)
		}
		conserved(t, st)
		if err := c1.Accept(h1.ID()); !errors.Is(err, ErrOfferGone) {
			t.Fatalf("accept on a closed console: %v", err)
		}
		c2, s2 := signInAvailable(t, sb, chatVol("v2", 1))
		synctest.Wait()
		wantOffers(t, "v2", s2, h1)
		mustAccept(t, c2, h1)
		st = sb.Stats()
		// Answered twice, once per time it was queued.
		if local, _ := connections(st); local != 2 {
			t.Fatalf("stats: %+v", st)
		}
		conserved(t, st)
	})
}

// Stats: every contact that arrives is connected (here or elsewhere),
// abandoned, or still waiting. A requeued contact is queued, and connected,
// a second time, so requeues belong on the arrivals side; InProgress is a
// subset of the connected, not a separate outcome.
func TestStatsConservation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflowWaiting(fo, 20*time.Second))
		defer sb.Close()
		check := func() {
			t.Helper()
			synctest.Wait()
			conserved(t, sb.Stats())
		}
		c1, _ := signInAvailable(t, sb, chatVol("v1", 1))
		h1, _ := startContact(t, sb, ChannelChat, "nb")
		check()
		mustAccept(t, c1, h1)
		check()
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		h3, _ := startContact(t, sb, ChannelChat, "nb")
		check()
		h3.End()
		check()
		time.Sleep(20 * time.Second) // h2 overflows
		check()
		offers := fo.all()
		if len(offers) != 1 || offers[0].req.Contact != h2.ID() {
			t.Fatalf("offers: %+v", offers)
		}
		ans := &fakeAnswer{alias: "Kari", peer: &fakePeer{}}
		offers[0].reply <- offerReply{ans: ans}
		check()
		c1.SignOut() // h1 requeued; nobody on: overflows at once
		check()
		hd, _, _ := ans.state()
		hd.OnEvent(Event{Kind: EventEnded, By: ByVolunteer})
		check()
		c2, _ := signInAvailable(t, sb, chatVol("v2", 1))
		check()
		if err := c2.Accept(h1.ID()); err != nil {
			t.Fatal(err)
		}
		check()
		st := sb.Stats()
		if tl, local, overflow := totals(st); tl.Offered != 3 || requeued(st) != 1 || local != 2 || overflow != 1 || tl.Abandoned != 1 || tl.InProgress != 1 || tl.Waiting != 0 {
			t.Fatalf("stats: %+v", st)
		}
		// Counted by connections, the form "Offered == local + overflow +
		// Abandoned + Waiting + InProgress" does not hold: 3 != 2+1+1+0+1
		// (the Tally's, counting a contact once when it ends, does).
	})
}

// A contact declined (or not answered) by the only volunteer is asked of
// them again once the decline cooldown has passed: nothing else may need to
// happen at the centre for that.
func TestDeclinedContactOfferedAgainAfterCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(func(c *Config) { c.OverflowAfter = func(string) time.Duration { return 5 * time.Second } })
		defer sb.Close()
		c, s := signInAvailable(t, sb, chatVol("v1", 1))
		h, vis := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if err := c.Decline(h.ID()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if n := len(s.offered()); n < 2 {
			t.Errorf("the only volunteer, free and idle, was never offered the contact again in the 10 min after declining it "+
				"(cooldown %v): offers %d, visitor still waiting: %v; nothing re-runs dispatch when the cooldown ends",
				declineCooldown, n, vis.lines())
		}
	})
}

// A contact requeued after its volunteer was lost still overflows once it
// has waited OverflowAfter.
func TestRequeuedContactStillOverflows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fo := &fakeOverflow{}
		fo.setCandidates(Candidate{Centre: "B", Version: 1})
		sb := newTestBoard(withOverflowWaiting(fo, time.Minute))
		defer sb.Close()
		c1, _ := signInAvailable(t, sb, chatVol("v1", 1))
		c2, _ := signInAvailable(t, sb, chatVol("v2", 1))
		h1, _ := startContact(t, sb, ChannelChat, "nb")
		h2, _ := startContact(t, sb, ChannelChat, "nb")
		synctest.Wait()
		if err := c1.Accept(h1.ID()); err != nil {
			if err := c2.Accept(h1.ID()); err != nil {
				t.Fatal(err)
			}
			mustAccept(t, c1, h2)
			c1, c2 = c2, c1
		} else {
			mustAccept(t, c2, h2)
		}
		// c1 has h1, c2 has h2 (capacity 1 each).
		time.Sleep(10 * time.Second)
		c1.SignOut() // h1 requeued; v2 is on (busy), so no overflow yet
		synctest.Wait()
		if n := fo.count(); n != 0 {
			t.Fatalf("%d offers", n)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if n := fo.count(); n == 0 {
			t.Errorf("a contact requeued at 10 s (OverflowAfter 1 min) was still not offered to another centre at 2m10s: " +
				"connectLocked stops the overflow timer and requeueLocked never restarts it")
		}
	})
}

func TestClosedSwitchboardRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		_, vis := startContact(t, sb, ChannelChat, "nb")
		sb.Close()
		if !vis.has("closed the centre is shutting down") {
			t.Fatalf("visitor: %v", vis.lines())
		}
		if _, err := sb.StartContact(ChannelChat, "nb", &visitorSink{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("start after close: %v", err)
		}
		if _, err := sb.SignIn(chatVol("v", 1), &consoleSink{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("sign in after close: %v", err)
		}
		if _, err := sb.Reserve(IncomingOffer{Contact: "x", From: "B", Channel: ChannelChat, Language: "nb"}); !errors.Is(err, ErrClosed) {
			t.Fatalf("reserve after close: %v", err)
		}
		sb.Close()
	})
}

// An accepted reservation whose volunteer signed out before the offering
// centre confirmed: Connect refuses it, and nothing of it may stay behind.
func TestReservationRefusedAtConnectIsForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		signInAvailable(t, sb, chatVol("v2", 1))
		in := IncomingOffer{Contact: "x1", From: "B", Channel: ChannelChat, Language: "nb", Ring: 5 * time.Second}
		res, err := sb.Reserve(in)
		if err != nil {
			t.Fatal(err)
		}
		if res.r.vol.ID != "v1" {
			t.Fatalf("expected v1 to ring (tie broken by id), got %s", res.r.vol.ID)
		}
		if err := c.Accept("x1"); err != nil {
			t.Fatal(err)
		}
		if _, err := res.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.SignOut()
		peer := &fakePeer{}
		res.Connect(peer)
		if _, closed := peer.state(); closed == "" {
			t.Fatal("Connect did not close the relay of a volunteer who is gone")
		}
		sb.mu.Lock()
		_, kept := sb.received["x1"]
		sb.mu.Unlock()
		if kept {
			t.Errorf("the refused reservation stays in Switchboard.received for good (Connect's volunteer-gone path does not delete it): " +
				"a leak per occurrence, and Reserve refuses that contact id here from then on")
		}
	})
}

// A console accepting a reservation after Close must not block: Close put
// ErrClosed in the one-slot decided channel, and Accept sends on it while
// holding the switchboard's lock.
func TestAcceptAfterCloseDoesNotBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		c, _ := signInAvailable(t, sb, chatVol("v1", 1))
		res, err := sb.Reserve(IncomingOffer{Contact: "x1", From: "B", Channel: ChannelChat, Language: "nb", Ring: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		sb.Close() // before the router got to res.Wait
		done := make(chan error, 1)
		go func() { done <- c.Accept("x1") }()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Errorf("Console.Accept after Close blocks for ever on the full decided channel, holding the switchboard's mutex")
			_, _ = res.Wait(context.Background()) // drain it so the test can end
			<-done
		}
	})
}

// An offer that never reached the other centre (lost, reset, unreachable)
// is tried there again after retryFailedAfter, although that centre
// published nothing new: the failure never touched its state. A no is
// remembered until the centre's availability changes.
func TestFailedOverflowOfferIsRetriedDeclinedIsNot(t *testing.T) {
	for _, c := range []struct {
		name  string
		err   error
		again bool
	}{
		{"failed", errors.New("stream reset"), true},
		{"declined", fmt.Errorf("%w: nobody free", ErrDeclined), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fo := &fakeOverflow{}
				fo.setCandidates(Candidate{Centre: "B", Version: 1})
				sb := newTestBoard(withOverflow(fo, 0))
				defer sb.Close()
				startContact(t, sb, ChannelChat, "nb")
				synctest.Wait()
				if fo.count() != 1 {
					t.Fatalf("%d offers, want 1", fo.count())
				}
				fo.all()[0].reply <- offerReply{err: c.err}
				synctest.Wait()
				time.Sleep(retryFailedAfter - time.Millisecond)
				synctest.Wait()
				if fo.count() != 1 {
					t.Fatalf("offered again %v after the %s offer, before retryFailedAfter", retryFailedAfter, c.name)
				}
				time.Sleep(time.Millisecond)
				synctest.Wait()
				if got := fo.count() == 2; got != c.again {
					t.Fatalf("after a %s offer and %v: %d offers, want a second: %v", c.name, retryFailedAfter, fo.count(), c.again)
				}
			})
		})
	}
}
