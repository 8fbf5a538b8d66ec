package switchboard

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// dutySink records what a supervisor's console hears.
type dutySink struct {
	mu     sync.Mutex
	log    []string
	alerts []SupportAlert
}

func (d *dutySink) add(s string) {
	d.mu.Lock()
	d.log = append(d.log, s)
	d.mu.Unlock()
}

func (d *dutySink) SupportAsked(a SupportAlert) {
	d.mu.Lock()
	d.alerts = append(d.alerts, a)
	d.mu.Unlock()
	d.add("asked " + a.Reason + " " + a.Volunteer)
}
func (d *dutySink) SupportWithdrawn(id, reason string) { d.add("withdrawn " + reason) }
func (d *dutySink) SupportTaken(a SupportAlert)        { d.add("taken " + a.Volunteer) }
func (d *dutySink) ReadAlong(id string, e Event)       { d.add(eventLine("read", e)) }
func (d *dutySink) SupportEnded(id, reason string)     { d.add("ended " + reason) }

func (d *dutySink) lines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.log)
}

func (d *dutySink) lastAlert() SupportAlert {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.alerts) == 0 {
		return SupportAlert{}
	}
	return d.alerts[len(d.alerts)-1]
}

// nopDuty hears nothing (tests of duty counting).
type nopDuty struct{}

func (nopDuty) SupportAsked(SupportAlert)       {}
func (nopDuty) SupportTaken(SupportAlert)       {}
func (nopDuty) SupportWithdrawn(string, string) {}
func (nopDuty) ReadAlong(string, Event)         {}
func (nopDuty) SupportEnded(string, string)     {}
func supportLines(lines []string, sub string) []string {
	var out []string
	for _, l := range lines {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// connectedPair starts a chat and connects it to v1 at sb.
func connectedPair(t *testing.T, sb *Switchboard) (*Console, *consoleSink, *VisitorHandle, *visitorSink) {
	t.Helper()
	con, cs := signInAvailable(t, sb, chatVol("v1", 2))
	h, vs := startContact(t, sb, ChannelChat, "nb")
	synctest.Wait()
	if err := con.Accept(h.ID()); err != nil {
		t.Fatalf("accept: %v", err)
	}
	synctest.Wait()
	return con, cs, h, vs
}

// TestSupportAtOwnCentreReadsAlongAndWhispers: a volunteer asks for
// support with a reason; the supervisor on duty here hears the alert, takes
// it; the volunteer hears who is coming and the visitor is told (the
// default policy); from then on both sides' messages are mirrored to the
// supervisor in order, and a whisper reaches the volunteer only (and is
// delivered back to the supervisor). The KPIs count the request by
// reason and its time to support; the conversation's end ends the seat.
func TestSupportAtOwnCentreReadsAlongAndWhispers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		ds := &dutySink{}
		duty, err := sb.GoOnDuty("sup-1", "Supervisor Sol", ds)
		if err != nil {
			t.Fatal(err)
		}
		con, cs, h, vs := connectedPair(t, sb)
		if err := h.Send("m1", "before anyone reads"); err != nil {
			t.Fatal(err)
		}
		if err := con.AskSupport(h.ID(), "bogus"); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("unknown reason: %v, want ErrBadRequest", err)
		}
		if err := con.AskSupport("nope", SupportRisk); !errors.Is(err, ErrUnknownContact) {
			t.Fatalf("another conversation: %v, want ErrUnknownContact", err)
		}
		if err := con.AskSupport(h.ID(), SupportRisk); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		a := ds.lastAlert()
		if a.Reason != SupportRisk || a.Volunteer != "alias-v1" || a.Channel != ChannelChat || a.Language != "nb" || a.Centre != "" {
			t.Fatalf("alert %+v", a)
		}
		if !cs.has("event " + h.ID() + " support asked") {
			t.Fatalf("console did not hear the request ring: %q", cs.lines())
		}
		deskSupport := func() string {
			d := sb.DeskView()
			if len(d.Volunteers) != 1 || len(d.Volunteers[0].Conversations) != 1 {
				t.Fatalf("desk %+v", d)
			}
			return d.Volunteers[0].Conversations[0].Support
		}
		if got := deskSupport(); got != SupportAsked {
			t.Fatalf("the desk shows support %q while it rings", got)
		}
		time.Sleep(3 * time.Second)
		if err := duty.TakeSupport(a.ID); err != nil {
			t.Fatal(err)
		}
		if err := duty.TakeSupport(a.ID); !errors.Is(err, ErrOfferGone) {
			t.Fatalf("taking twice: %v", err)
		}
		synctest.Wait()
		if !cs.has("event " + h.ID() + " support coming") {
			t.Fatalf("console did not hear who is coming: %q", cs.lines())
		}
		if got := deskSupport(); got != SupportComing {
			t.Fatalf("the desk shows support %q once taken", got)
		}
		if !vs.has("event supervised") {
			t.Fatalf("visitor not told of the read-along: %q", vs.lines())
		}
		if err := h.Send("m2", "visitor after"); err != nil {
			t.Fatal(err)
		}
		if err := con.Send(h.ID(), "r1", "volunteer after"); err != nil {
			t.Fatal(err)
		}
		if err := duty.Whisper(a.ID, "w1", "ask about a plan"); err != nil {
			t.Fatal(err)
		}
		if err := duty.Whisper("other", "w2", "x"); !errors.Is(err, ErrUnknownContact) {
			t.Fatalf("whisper elsewhere: %v", err)
		}
		if err := duty.Whisper(a.ID, "w3", strings.Repeat("x", MaxWhisperBytes+1)); !errors.Is(err, ErrBadMessage) {
			t.Fatalf("long whisper: %v", err)
		}
		synctest.Wait()
		reads := supportLines(ds.lines(), "read ")
		want := []string{"read message m2 visitor after visitor", "read message r1 volunteer after volunteer", "read delivered w1"}
		if !slices.Equal(reads, want) {
			t.Fatalf("supervisor read %q, want %q (nothing from before taking)", reads, want)
		}
		if !slices.ContainsFunc(cs.lines(), func(l string) bool { return l == "event "+h.ID()+" whisper w1 ask about a plan" }) {
			t.Fatalf("volunteer did not hear the whisper: %q", cs.lines())
		}
		for _, l := range vs.lines() {
			if strings.Contains(l, "ask about a plan") || strings.Contains(l, "whisper") || strings.Contains(l, "Sol") {
				t.Fatalf("the visitor heard %q", l)
			}
		}
		st := sb.Stats()
		if st.SupportAsked[SupportRisk] != 1 || st.SupportRequests[SupportKey{SupportRisk, SupportResultTaken}] != 1 ||
			st.TimeToSupport.Count != 1 || st.TimeToSupport.Sum != 3 {
			t.Fatalf("support KPIs %v %v %+v", st.SupportAsked, st.SupportRequests, st.TimeToSupport)
		}
		h.End()
		synctest.Wait()
		if l := ds.lines(); !slices.Equal(l[len(l)-2:], []string{"read ended", "ended the conversation ended"}) {
			t.Fatalf("seat did not end with the conversation: %q", ds.lines())
		}
		if err := duty.Whisper(a.ID, "w4", "late"); !errors.Is(err, ErrUnknownContact) {
			t.Fatalf("whisper after the end: %v", err)
		}
	})
}

// TestSupervisorLeavingEndsTheSeatNotTheConversation: off duty (or
// leaving) ends the seat; the volunteer hears the support is over and the
// conversation goes on untouched.
func TestSupervisorLeavingEndsTheSeatNotTheConversation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(func(c *Config) { c.ReadAlongNotice = func() bool { return false } })
		defer sb.Close()
		ds := &dutySink{}
		duty, _ := sb.GoOnDuty("sup-1", "Sol", ds)
		con, cs, h, vs := connectedPair(t, sb)
		if err := con.AskSupport(h.ID(), ""); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := duty.TakeSupport(ds.lastAlert().ID); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if vs.has("event supervised") {
			t.Fatal("the policy said not to tell the visitor, and they were told")
		}
		duty.OffDuty()
		synctest.Wait()
		if !slices.ContainsFunc(cs.lines(), func(l string) bool {
			return strings.HasPrefix(l, "event "+h.ID()+" support") && strings.HasSuffix(l, "over")
		}) {
			t.Fatalf("volunteer not told the support is over: %q", cs.lines())
		}
		if err := con.Send(h.ID(), "r1", "still here"); err != nil {
			t.Fatal(err)
		}
		if err := h.Send("m1", "me too"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !vs.has("event message r1 still here") || !cs.has("event "+h.ID()+" message m1 me too") {
			t.Fatalf("conversation disturbed: visitor %q console %q", vs.lines(), cs.lines())
		}
		if st := sb.Stats(); st.SupportRequests[SupportKey{SupportNoReason, SupportResultTaken}] != 1 {
			t.Fatalf("KPIs %v", st.SupportRequests)
		}
	})
}

// fakeSupervision is another centre's supervisors, as the overflow
// router would reach them.
type fakeSupervision struct {
	mu     sync.Mutex
	asked  []string
	centre []string
	take   func(centre string) (SupportAnswer, error)
}

func (f *fakeSupervision) SupportCandidates() []string { return f.centre }
func (f *fakeSupervision) AskSupport(ctx context.Context, centre string, a SupportAsk) (SupportAnswer, error) {
	f.mu.Lock()
	f.asked = append(f.asked, fmt.Sprintf("%s %s %s", centre, a.Reason, a.Volunteer))
	f.mu.Unlock()
	return f.take(centre)
}

type fakeSupportAnswer struct {
	peer *fakeLink
}

func (a *fakeSupportAnswer) Supervisor() string { return "Far Sup" }
func (a *fakeSupportAnswer) Confirm(h PeerHandler) (Peer, error) {
	a.peer.h = h
	return a.peer, nil
}
func (a *fakeSupportAnswer) Cancel(string) {}

type fakeLink struct {
	mu     sync.Mutex
	sent   []Event
	closed string
	h      PeerHandler
}

func (l *fakeLink) Send(e Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent = append(l.sent, e)
	return nil
}
func (l *fakeLink) Close(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = reason
}

// TestSupportGoesToAnotherCentreAfterOwnRing: our supervisor does not
// take it within SupportRing: the alert is withdrawn and the request goes
// to the other centres in order (the first declines, the second takes);
// the seat's link carries the mirror, a whisper from it reaches the
// volunteer, and the loss of the supervisor's centre ends only the
// support. With no candidate left it is unavailable.
func TestSupportGoesToAnotherCentreAfterOwnRing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		link := &fakeLink{}
		sv := &fakeSupervision{centre: []string{"B", "C"}, take: func(centre string) (SupportAnswer, error) {
			if centre == "B" {
				return nil, ErrDeclined
			}
			return &fakeSupportAnswer{peer: link}, nil
		}}
		sb := newTestBoard(func(c *Config) { c.Supervision = sv })
		defer sb.Close()
		ds := &dutySink{}
		if _, err := sb.GoOnDuty("sup-1", "Sol", ds); err != nil {
			t.Fatal(err)
		}
		con, cs, h, vs := connectedPair(t, sb)
		if err := con.AskSupport(h.ID(), SupportAbuse); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DefaultSupportRing + time.Second)
		synctest.Wait()
		if got := supportLines(ds.lines(), "withdrawn"); len(got) != 1 {
			t.Fatalf("our supervisor's alert was not withdrawn: %q", ds.lines())
		}
		if !slices.Equal(sv.asked, []string{"B abuse alias-v1", "C abuse alias-v1"}) {
			t.Fatalf("asked %q", sv.asked)
		}
		if !cs.has("event " + h.ID() + " support coming") {
			t.Fatalf("console %q", cs.lines())
		}
		if err := h.Send("m1", "hello"); err != nil {
			t.Fatal(err)
		}
		link.h.OnEvent(Event{Kind: EventWhisper, ID: "w1", Text: "note", Alias: "someone else"})
		synctest.Wait()
		link.mu.Lock()
		sent := slices.Clone(link.sent)
		link.mu.Unlock()
		if len(sent) != 2 || sent[0] != (Event{Kind: EventMessage, ID: "m1", Text: "hello", By: SaidByVisitor}) || sent[1] != (Event{Kind: EventDelivered, ID: "w1"}) {
			t.Fatalf("link carried %+v", sent)
		}
		if !cs.has("event " + h.ID() + " whisper w1 note") {
			t.Fatalf("whisper not heard: %q", cs.lines())
		}
		link.h.OnLost(0)
		if err := con.Send(h.ID(), "r1", "on we go"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !vs.has("event message r1 on we go") || vs.has("event whisper w1 note") {
			t.Fatalf("visitor %q", vs.lines())
		}
		st := sb.Stats()
		if st.SupportRequests[SupportKey{SupportAbuse, SupportResultTaken}] != 1 || st.TimeToSupport.Sum < DefaultSupportRing.Seconds() {
			t.Fatalf("KPIs %v %+v", st.SupportRequests, st.TimeToSupport)
		}

		// Nobody takes it here, and no other centre has anyone on duty.
		sv.centre = nil
		if err := con.AskSupport(h.ID(), SupportTired); err != nil {
			t.Fatal(err)
		}
		time.Sleep(DefaultSupportRing + time.Second)
		synctest.Wait()
		if !cs.has("event " + h.ID() + " support unavailable") {
			t.Fatalf("console %q", cs.lines())
		}
		if sb.Stats().SupportRequests[SupportKey{SupportTired, SupportResultUnavailable}] != 1 {
			t.Fatalf("KPIs %v", sb.Stats().SupportRequests)
		}
	})
}

// Ends across centres say why (review finding): the volunteer ending the
// support sends the supervisor's centre an end with the reason before
// closing (not a silent close it would take for our loss), and the
// supervisor's centre ending it (off duty) is told to the volunteer as
// such, not as a lost centre.
func TestSupportLinkEndsSayWhy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var links []*fakeLink
		sv := &fakeSupervision{centre: []string{"C"}, take: func(string) (SupportAnswer, error) {
			l := &fakeLink{}
			links = append(links, l)
			return &fakeSupportAnswer{peer: l}, nil
		}}
		sb := newTestBoard(func(c *Config) { c.Supervision = sv })
		defer sb.Close()
		con, cs, h, _ := connectedPair(t, sb)
		if err := con.AskSupport(h.ID(), SupportUnsure); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := con.EndSupport(h.ID()); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		l := links[0]
		if n := len(l.sent); n == 0 || l.sent[n-1] != (Event{Kind: EventEnded, Reason: "the volunteer ended the support"}) || l.closed == "" {
			t.Fatalf("link after end_support: sent %+v, closed %q", l.sent, l.closed)
		}

		if err := con.AskSupport(h.ID(), SupportUnsure); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		links[1].h.OnEvent(Event{Kind: EventEnded, Reason: "the supervisor went off duty"})
		synctest.Wait()
		if !cs.has("event " + h.ID() + " support the supervisor went off duty over") {
			t.Fatalf("console: %q", cs.lines())
		}
		if slices.ContainsFunc(cs.lines(), func(l string) bool { return strings.Contains(l, "centre was lost") }) {
			t.Fatalf("an ordinary end told as a loss: %q", cs.lines())
		}
		if st := sb.Stats(); st.SupportRequests[SupportKey{SupportUnsure, SupportResultTaken}] != 2 {
			t.Fatalf("KPIs %v", st.SupportRequests)
		}
	})
}

// What another centre can make a supervisor's desk do is bounded (review
// finding): at most maxAlertsFrom of its requests ring at once; an id in
// use (ringing, or a seat reading along) is refused, so no seat is
// orphaned; a mirror flood on a seat ends that seat, and a whisper flood
// on a link ends that support, never a page.
func TestSupportFromAnotherCentreIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		ds := &dutySink{}
		duty, _ := sb.GoOnDuty("sup-1", "Sol", ds)
		ask := func(id string) (*SupportReservation, error) {
			return sb.ReceiveSupport(IncomingSupport{From: "B", SupportAsk: SupportAsk{ID: id, Reason: SupportRisk, Channel: ChannelChat, Language: "nb", Volunteer: "Bea", Ring: time.Minute}})
		}
		var first *SupportReservation
		for i := range maxAlertsFrom {
			res, err := ask(fmt.Sprintf("%032x", i))
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			if i == 0 {
				first = res
			}
		}
		if _, err := ask("ffff"); !errors.Is(err, ErrNoVolunteer) {
			t.Fatalf("request beyond the cap: %v", err)
		}
		if _, err := ask(fmt.Sprintf("%032x", 1)); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("an id already ringing: %v", err)
		}
		id0 := fmt.Sprintf("%032x", 0)
		if err := duty.TakeSupport(id0); err != nil {
			t.Fatal(err)
		}
		if alias, err := first.Wait(context.Background()); err != nil || alias != "Sol" {
			t.Fatalf("wait: %q %v", alias, err)
		}
		link := &fakeLink{}
		h := first.Connect(link)
		if _, err := ask(id0); !errors.Is(err, ErrBadRequest) {
			t.Fatalf("an id a seat reads along under: %v", err)
		}
		for i := range seatBurst + 10 {
			h.OnEvent(Event{Kind: EventMessage, ID: fmt.Sprint(i), Text: "x", By: SaidByVisitor})
		}
		synctest.Wait()
		if got := supportLines(ds.lines(), "ended the volunteer's centre sent too much"); len(got) != 1 {
			t.Fatalf("the flooded seat did not end: %q", ds.lines()[len(ds.lines())-3:])
		}
		if n := len(supportLines(ds.lines(), "read message")); n > seatBurst {
			t.Fatalf("%d mirrored messages reached the page, burst %d", n, seatBurst)
		}
		if link.closed == "" {
			t.Fatal("the flooded seat's link is open")
		}

		// The volunteer's side: a whisper flood from the supervisor's centre.
		wl := &fakeLink{}
		sv := &fakeSupervision{centre: []string{"C"}, take: func(string) (SupportAnswer, error) { return &fakeSupportAnswer{peer: wl}, nil }}
		sb2 := newTestBoard(func(c *Config) { c.Supervision = sv })
		defer sb2.Close()
		con, cs, hv, _ := connectedPair(t, sb2)
		if err := con.AskSupport(hv.ID(), ""); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		for i := range whisperBurst + 5 {
			wl.h.OnEvent(Event{Kind: EventWhisper, ID: fmt.Sprint(i), Text: "w"})
		}
		synctest.Wait()
		if n := len(supportLines(cs.lines(), " whisper ")); n > whisperBurst {
			t.Fatalf("%d whispers reached the console, burst %d", n, whisperBurst)
		}
		if !cs.has("event " + hv.ID() + " support the supervisor's centre sent too many notes over") {
			t.Fatalf("the whisper flood did not end the support: %q", cs.lines()[len(cs.lines())-2:])
		}
		if err := con.Send(hv.ID(), "r1", "still talking"); err != nil {
			t.Fatalf("the conversation suffered: %v", err)
		}
	})
}

// A warm transfer ends the support of the volunteer who hands over: the
// supervisor supported them, and stops reading at the handover.
func TestTransferEndsTheSupport(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		ds := &dutySink{}
		duty, _ := sb.GoOnDuty("sup-1", "Sol", ds)
		h, _, a, as, b, _ := localTalk(t, sb)
		if err := a.AskSupport(h.ID(), SupportTired); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := duty.TakeSupport(ds.lastAlert().ID); err != nil {
			t.Fatal(err)
		}
		if err := a.Transfer(h.ID(), TransferRequest{Warm: true}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		mustAccept(t, b, h)
		synctest.Wait()
		if got := supportLines(ds.lines(), "ended the conversation was handed over"); len(got) != 1 {
			t.Fatalf("supervisor: %q", ds.lines())
		}
		if !as.has("event " + h.ID() + " support the conversation was handed over over") {
			t.Fatalf("Ann: %q", as.lines())
		}
		if err := h.Send("v1", "after the handover"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if n := len(supportLines(ds.lines(), "after the handover")); n != 0 {
			t.Fatal("the supervisor read on after the handover")
		}
	})
}

// A visitor's centre on an older release would take the supervised
// notice for a broken relay and cut the conversation (review finding):
// where the policy says the visitor is told, asking for support in such a
// conversation is refused with a clear error; where it says not, the
// request goes ahead and no notice is sent.
func TestSupportInAnOlderCentresConversation(t *testing.T) {
	for _, tell := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			sb := newTestBoard(func(c *Config) { c.Centre = "B"; c.ReadAlongNotice = func() bool { return tell } })
			defer sb.Close()
			ds := &dutySink{}
			duty, _ := sb.GoOnDuty("sup-1", "Sol", ds)
			bo, _ := signInAvailable(t, sb, chatVol("bo", 1))
			const id = "0123456789abcdef0123456789abcdef"
			res, err := sb.Reserve(IncomingOffer{Contact: id, From: "A", Channel: ChannelChat, Language: "nb", Ring: testRing})
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			if err := bo.Accept(id); err != nil {
				t.Fatal(err)
			}
			peer := &fakePeer{}
			res.Connect(peer)
			synctest.Wait()
			err = bo.AskSupport(id, SupportRisk)
			if tell {
				if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "older release") {
					t.Fatalf("asked with notice due: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			if err := duty.TakeSupport(ds.lastAlert().ID); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
			sent, _ := peer.state()
			for _, e := range sent {
				if e.Kind == EventSupervised {
					t.Fatal("a notice went to an older centre")
				}
			}
		})
	}
}
