package switchboard

import (
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// xferVisitor is a visitorSink that hears Transferred and logs who sent a
// message ("@alias") while two volunteers are in the conversation.
type xferVisitor struct{ visitorSink }

func (v *xferVisitor) Transferred(alias string) { v.add("transferred " + alias) }
func (v *xferVisitor) Event(e Event) {
	line := eventLine("event", e)
	if e.Alias != "" {
		line += " @" + e.Alias
	}
	v.add(line)
}

func startXfer(t *testing.T, sb *Switchboard) (*VisitorHandle, *xferVisitor) {
	t.Helper()
	vs := &xferVisitor{}
	h, err := sb.StartContact(ChannelChat, "nb", vs)
	if err != nil {
		t.Fatal(err)
	}
	return h, vs
}

func (c *consoleSink) hasPrefix(prefix string) bool {
	return slices.ContainsFunc(c.lines(), func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// localTalk: Ann (a) answers a visitor at A; then Bo (b) signs in, free.
func localTalk(t *testing.T, sb *Switchboard) (h *VisitorHandle, vs *xferVisitor, a *Console, as *consoleSink, b *Console, bs *consoleSink) {
	t.Helper()
	a, as = signInAvailable(t, sb, chatVol("ann", 2))
	h, vs = startXfer(t, sb)
	synctest.Wait()
	mustAccept(t, a, h)
	b, bs = signInAvailable(t, sb, chatVol("bo", 1))
	synctest.Wait()
	return
}

func wantTransfers(t *testing.T, sb *Switchboard, want map[TransferKey]uint64) {
	t.Helper()
	got := sb.Stats().Transfers
	for k, n := range want {
		if got[k] != n {
			t.Errorf("transfers %+v = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
	var sum, wantSum uint64
	for _, n := range got {
		sum += n
	}
	for _, n := range want {
		wantSum += n
	}
	if sum != wantSum {
		t.Errorf("transfers %v, want only %v", got, want)
	}
}

// A cold transfer here: Bo's console rings with the note, Bo accepts, the
// visitor hears Bo's alias, Ann's side ends at once as transferred and
// asks no categorisation; the rest of the conversation is Bo's; the
// contact is counted once, answered here.
func TestLocalColdTransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		h, vs, a, as, b, bs := localTalk(t, sb)
		id := h.ID()
		if err := a.Transfer(id, TransferRequest{Note: "worried about exams"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		o := bs.lastOffer()
		if o.Contact != id || !o.Transfer || o.Note != "worried about exams" || o.From != "" {
			t.Fatalf("Bo's offer %+v, want the transfer of %s with the note", o, id[:6])
		}
		for _, l := range vs.lines() {
			if strings.Contains(l, "exams") {
				t.Fatalf("the note reached the visitor: %q", l)
			}
		}
		mustAccept(t, b, h)
		synctest.Wait()
		if !vs.has("transferred alias-bo") || vs.count("connected") != 1 {
			t.Fatalf("visitor heard %v, want one connected and transferred alias-bo", vs.lines())
		}
		if !as.has("event "+id+" transfer_accepted") || !as.has("event "+id+" ended transferred") {
			t.Fatalf("Ann's console: %v", as.lines())
		}
		if !bs.has("connected " + id) {
			t.Fatalf("Bo's console: %v", bs.lines())
		}
		if err := h.Send("v1", "still there?"); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(id, "b1", "yes, Bo here"); err != nil {
			t.Fatal(err)
		}
		if err := a.Send(id, "a1", "late"); err == nil {
			t.Fatal("Ann could still write after a cold transfer")
		}
		synctest.Wait()
		if !bs.has("event "+id+" message v1 still there?") || as.has("event "+id+" message v1 still there?") {
			t.Fatalf("the visitor's message went to Bo %v / Ann %v", bs.lines(), as.lines())
		}
		if !vs.has("event message b1 yes, Bo here") || !vs.has("event delivered v1") {
			t.Fatalf("visitor: %v", vs.lines())
		}
		if err := a.End(id, anyCat); err == nil {
			t.Fatal("Ann could categorise a conversation she handed over")
		}
		if err := b.End(id, anyCat); err != nil {
			t.Fatal(err)
		}
		st := sb.Stats()
		if tl := st.Total(); tl.Offered != 1 || tl.AnsweredLocal != 1 || tl.AnsweredOverflow != 0 || tl.InProgress != 0 {
			t.Fatalf("tally %+v, want one contact answered here", tl)
		}
		if st.Categorised() != 1 {
			t.Fatalf("%d categorisations, want Bo's only", st.Categorised())
		}
		conserved(t, st)
		wantTransfers(t, sb, map[TransferKey]uint64{{TransferCold, TransferAccepted, TransferLocal}: 1})
	})
}

// A warm transfer here: both volunteers are in the conversation; the
// visitor's messages reach both (delivered once); each volunteer's reach
// the visitor named; Ann leaves, and from then on it is Bo's alone.
func TestLocalWarmTransfer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		h, vs, a, as, b, bs := localTalk(t, sb)
		id := h.ID()
		if err := a.Transfer(id, TransferRequest{Warm: true, Note: "n"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		mustAccept(t, b, h)
		synctest.Wait()
		if err := a.Transfer(id, TransferRequest{}); err == nil {
			t.Fatal("Ann could ask a second transfer of what she handed over")
		}
		if err := h.Send("v1", "hello both"); err != nil {
			t.Fatal(err)
		}
		if err := a.Send(id, "a1", "this is Bo"); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(id, "b1", "hi, I am Bo"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		for _, c := range []*consoleSink{as, bs} {
			if c.count("event "+id+" message v1 hello both") != 1 {
				t.Fatalf("a console did not get the visitor's message once: %v", c.lines())
			}
		}
		if vs.count("event delivered v1") != 1 {
			t.Fatalf("visitor heard delivered %d times: %v", vs.count("event delivered v1"), vs.lines())
		}
		if !vs.has("event message a1 this is Bo @alias-ann") || !vs.has("event message b1 hi, I am Bo @alias-bo") {
			t.Fatalf("visitor: %v", vs.lines())
		}
		if err := a.Leave(id); err != nil {
			t.Fatal(err)
		}
		if err := h.Send("v2", "ok"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !as.has("event "+id+" ended transferred") || as.has("event "+id+" message v2 ok") || !bs.has("event "+id+" message v2 ok") {
			t.Fatalf("after Ann left: Ann %v, Bo %v", as.lines(), bs.lines())
		}
		if err := b.Send(id, "b2", "after"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !vs.has("event message b2 after") {
			t.Fatalf("after the warm phase messages carry no alias: %v", vs.lines())
		}
		h.End()
		synctest.Wait()
		if !bs.has("event " + id + " ended visitor") {
			t.Fatalf("Bo: %v", bs.lines())
		}
		st := sb.Stats()
		if tl := st.Total(); tl.Offered != 1 || tl.AnsweredLocal != 1 {
			t.Fatalf("tally %+v", tl)
		}
		conserved(t, st)
		wantTransfers(t, sb, map[TransferKey]uint64{{TransferWarm, TransferAccepted, TransferLocal}: 1})
	})
}

// The old volunteer who never leaves a warm transfer is taken out at
// WarmLimit; ending (with a categorisation) during it is leaving.
func TestWarmTransferLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(func(c *Config) { c.WarmLimit = time.Minute })
		defer sb.Close()
		h, _, a, as, b, _ := localTalk(t, sb)
		id := h.ID()
		_ = a.Transfer(id, TransferRequest{Warm: true})
		synctest.Wait()
		mustAccept(t, b, h)
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if as.has("event " + id + " ended transferred") {
			t.Fatal("Ann's side ended before the warm limit")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !as.has("event " + id + " ended transferred") {
			t.Fatalf("Ann's side did not end at the warm limit: %v", as.lines())
		}

		// Ending during the warm phase leaves: Cai takes over from Bo.
		if err := a.SetAvailable(ChannelChat, false); err != nil {
			t.Fatal(err)
		}
		c, _ := signInAvailable(t, sb, chatVol("cai", 1))
		synctest.Wait()
		if err := b.Transfer(id, TransferRequest{Warm: true}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		mustAccept(t, c, h)
		synctest.Wait()
		if err := b.End(id, anyCat); err != nil {
			t.Fatal(err)
		}
		if err := c.End(id, anyCat); err != nil {
			t.Fatal(err)
		}
		st := sb.Stats()
		if st.Categorised() != 1 || st.Total().AnsweredLocal != 1 {
			t.Fatalf("categorised %d, tally %+v: want Cai's categorisation and one contact", st.Categorised(), st.Total())
		}
	})
}

// Nobody free, or the one rung declines: the asking volunteer hears
// transfer_failed and the conversation goes on with them.
func TestTransferFailsAndTheConversationGoesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(nil)
		defer sb.Close()
		a, as := signInAvailable(t, sb, chatVol("ann", 1))
		h, vs := startXfer(t, sb)
		synctest.Wait()
		mustAccept(t, a, h)
		id := h.ID()
		if err := a.Transfer(id, TransferRequest{Warm: true}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !as.has("event " + id + " transfer_failed") {
			t.Fatalf("Ann: %v", as.lines())
		}
		b, bs := signInAvailable(t, sb, chatVol("bo", 1))
		synctest.Wait()
		if err := a.Transfer(id, TransferRequest{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := b.Decline(id); err != nil {
			t.Fatal(err)
		}
		// Nobody answers the third in time.
		if err := a.Transfer(id, TransferRequest{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(testRing + time.Second)
		synctest.Wait()
		if n := strings.Count(strings.Join(as.lines(), "\n"), "transfer_failed"); n != 3 {
			t.Fatalf("Ann heard %d failures, want 3: %v", n, as.lines())
		}
		if !bs.hasPrefix("withdrawn " + id) {
			t.Fatalf("Bo: %v", bs.lines())
		}
		if err := h.Send("v1", "still you?"); err != nil {
			t.Fatal(err)
		}
		if err := a.Send(id, "a1", "yes"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !as.has("event "+id+" message v1 still you?") || !vs.has("event message a1 yes") || vs.count("transferred") != 0 {
			t.Fatalf("Ann %v, visitor %v", as.lines(), vs.lines())
		}
		if err := a.End(id, anyCat); err != nil {
			t.Fatal(err)
		}
		st := sb.Stats()
		if tl := st.Total(); tl.Offered != 1 || tl.AnsweredLocal != 1 {
			t.Fatalf("tally %+v", tl)
		}
		conserved(t, st)
		wantTransfers(t, sb, map[TransferKey]uint64{
			{TransferWarm, TransferFailed, TransferLocal}: 1,
			{TransferCold, TransferFailed, TransferLocal}: 2,
		})
	})
}

// A warm transfer to centre C: the offer there carries the note; C's
// relay joins; the visitor's messages go to both; C lost during the warm
// phase leaves the conversation with Ann, who hears the transfer failed.
// A second transfer to C goes through cold and the contact ends answered
// by overflow, once.
func TestTransferToAnotherCentre(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ov := &fakeOverflow{}
		sb := newTestBoard(func(c *Config) { c.Overflow = ov })
		defer sb.Close()
		a, as := signInAvailable(t, sb, chatVol("ann", 1))
		h, vs := startXfer(t, sb)
		synctest.Wait()
		mustAccept(t, a, h)
		id := h.ID()
		if err := a.Transfer(id, TransferRequest{Centre: "C", Warm: true, Note: "speaks nn"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		offers := ov.all()
		if len(offers) != 1 || offers[0].centre != "C" || !offers[0].req.Transfer || offers[0].req.Note != "speaks nn" || offers[0].req.Contact != id || offers[0].req.Resume != "" {
			t.Fatalf("offers %+v", offers)
		}
		peer := &fakePeer{}
		ans := &fakeAnswer{alias: "Cai", peer: peer}
		offers[0].reply <- offerReply{ans: ans}
		synctest.Wait()
		hc, confirmed, _ := ans.state()
		if !confirmed || !vs.has("transferred Cai") || !as.has("event "+id+" transfer_accepted") {
			t.Fatalf("confirmed %v, visitor %v, Ann %v", confirmed, vs.lines(), as.lines())
		}
		if err := h.Send("v1", "both?"); err != nil {
			t.Fatal(err)
		}
		hc.OnEvent(Event{Kind: EventMessage, ID: "c1", Text: "Cai here"})
		synctest.Wait()
		sent, _ := peer.state()
		if !slices.ContainsFunc(sent, func(e Event) bool { return e.Kind == EventMessage && e.ID == "v1" }) || !as.has("event "+id+" message v1 both?") {
			t.Fatalf("the visitor's message: C got %v, Ann %v", sent, as.lines())
		}
		if !vs.has("event message c1 Cai here @Cai") {
			t.Fatalf("visitor: %v", vs.lines())
		}
		// C is lost: back to Ann.
		hc.OnLost(0)
		synctest.Wait()
		if !as.has("event "+id+" transfer_failed") || !vs.has("transferred alias-ann") || vs.count("requeued") != 0 {
			t.Fatalf("after losing C: Ann %v, visitor %v", as.lines(), vs.lines())
		}
		if err := a.Send(id, "a1", "still me"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if !vs.has("event message a1 still me") {
			t.Fatalf("visitor: %v", vs.lines())
		}

		// Cold this time.
		if err := a.Transfer(id, TransferRequest{Centre: "C"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		offers = ov.all()
		peer2 := &fakePeer{}
		ans2 := &fakeAnswer{alias: "Cai", peer: peer2}
		offers[1].reply <- offerReply{ans: ans2}
		synctest.Wait()
		if !as.has("event " + id + " ended transferred") {
			t.Fatalf("Ann: %v", as.lines())
		}
		h.End()
		synctest.Wait()
		sent2, closed := peer2.state()
		if closed == "" || !slices.ContainsFunc(sent2, func(e Event) bool { return e.Kind == EventEnded && e.By == ByVisitor }) {
			t.Fatalf("C's relay: %v closed %q", sent2, closed)
		}
		st := sb.Stats()
		if tl := st.Total(); tl.Offered != 1 || tl.AnsweredOverflow != 1 || tl.AnsweredLocal != 0 {
			t.Fatalf("tally %+v, want one contact answered by overflow", tl)
		}
		conserved(t, st)
		if len(st.OffersSent) != 0 {
			t.Fatalf("transfer offers counted as overflow offers sent: %v", st.OffersSent)
		}
		wantTransfers(t, sb, map[TransferKey]uint64{
			{TransferWarm, TransferAccepted, TransferCentre}: 1,
			{TransferCold, TransferAccepted, TransferCentre}: 1,
		})
	})
}

// The answering centre's side: its volunteer's request travels to the
// owner on the relay; the owner's acceptance (warm) lets them leave, with
// no categorisation; a transfer offer for a contact we already answer
// rings someone else here.
func TestAnsweringCentreAsksTheOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := newTestBoard(func(c *Config) { c.Centre = "B" })
		defer sb.Close()
		bo, bs := signInAvailable(t, sb, chatVol("bo", 1))
		const id = "0123456789abcdef0123456789abcdef"
		res, err := sb.Reserve(IncomingOffer{Contact: id, From: "A", Channel: ChannelChat, Language: "nb", Ring: testRing, Transfers: true})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := bo.Accept(id); err != nil {
			t.Fatal(err)
		}
		peer := &fakePeer{}
		h := res.Connect(peer)
		synctest.Wait()
		if err := bo.Transfer(id, TransferRequest{Warm: true, Note: "over to a colleague", Language: "klingon"}); err == nil {
			t.Fatal("a language nobody serves was taken")
		}
		if err := bo.Transfer(id, TransferRequest{Warm: true, Note: strings.Repeat("x", MaxNoteBytes+1)}); err == nil {
			t.Fatal("an oversized note was taken")
		}
		if err := bo.Transfer(id, TransferRequest{Warm: true, Note: "over to a colleague"}); err != nil {
			t.Fatal(err)
		}
		sent, _ := peer.state()
		if len(sent) != 1 || sent[0].Kind != EventTransfer || sent[0].Centre != "B" || !sent[0].Warm || sent[0].Note != "over to a colleague" {
			t.Fatalf("sent to the owner: %+v", sent)
		}

		// The owner offers it back here: someone else rings, not Bo.
		cy, cs := signInAvailable(t, sb, chatVol("cy", 1))
		synctest.Wait()
		if _, err := sb.Reserve(IncomingOffer{Contact: id, From: "A", Channel: ChannelChat, Language: "nb", Ring: testRing, Transfer: true, Note: "over to a colleague", Transfers: true}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if o := cs.lastOffer(); o.Contact != id || !o.Transfer || o.Note != "over to a colleague" || o.From != "A" {
			t.Fatalf("Cy's offer %+v", o)
		}
		_ = cy

		h.OnEvent(Event{Kind: EventTransferAccepted, Alias: "alias-cy", Warm: true})
		h.OnEvent(Event{Kind: EventMessage, ID: "v1", Text: "hi"})
		synctest.Wait()
		if !bs.has("event "+id+" transfer_accepted") || !bs.has("event "+id+" message v1 hi") {
			t.Fatalf("Bo: %v", bs.lines())
		}
		if err := bo.Leave(id); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		sent, closed := peer.state()
		if sent[len(sent)-1].Kind != EventLeave || closed == "" || !bs.has("event "+id+" ended transferred") {
			t.Fatalf("relay %v closed %q, Bo %v", sent, closed, bs.lines())
		}
		if err := bo.End(id, anyCat); err == nil {
			t.Fatal("Bo could categorise what he handed over")
		}
		st := sb.Stats()
		if tl := st.Total(); tl.Offered != 0 {
			t.Fatalf("the answering centre counted a contact: %+v", tl)
		}
		if len(st.Transfers) != 0 {
			t.Fatalf("the answering centre counted a transfer: %v", st.Transfers)
		}
	})
}

// At the owner: a transfer asked on the relay of the volunteer in the
// conversation is carried out (here, to our own volunteer); the answering
// centre hears it was accepted and, cold, that its side ended; a request
// on a relay that no longer holds the conversation is ignored.
func TestOwnerCarriesOutARelayedRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ov := &fakeOverflow{}
		sb := newTestBoard(func(c *Config) { c.Overflow = ov })
		defer sb.Close()
		ov.setCandidates(Candidate{Centre: "B", Version: 1})
		h, vs := startXfer(t, sb)
		synctest.Wait()
		offers := ov.all()
		if len(offers) != 1 {
			t.Fatalf("offers %v", offers)
		}
		peerB := &fakePeer{}
		ansB := &fakeAnswer{alias: "Bea", peer: peerB}
		offers[0].reply <- offerReply{ans: ansB}
		synctest.Wait()
		hb, _, _ := ansB.state()
		ann, as := signInAvailable(t, sb, chatVol("ann", 1))
		synctest.Wait()
		hb.OnEvent(Event{Kind: EventTransfer, Centre: "A", Note: "please take over"})
		synctest.Wait()
		if o := as.lastOffer(); o.Contact != h.ID() || !o.Transfer || o.Note != "please take over" {
			t.Fatalf("Ann's offer %+v", o)
		}
		mustAccept(t, ann, h)
		synctest.Wait()
		sent, closed := peerB.state()
		kinds := []EventKind{}
		for _, e := range sent {
			kinds = append(kinds, e.Kind)
		}
		if !slices.Contains(kinds, EventTransferAccepted) || kinds[len(kinds)-1] != EventEnded || sent[len(sent)-1].By != ByTransferred || closed == "" {
			t.Fatalf("B heard %v, closed %q", sent, closed)
		}
		if !vs.has("transferred alias-ann") {
			t.Fatalf("visitor: %v", vs.lines())
		}
		// B's old relay asks again: ignored.
		hb.OnEvent(Event{Kind: EventTransfer, Centre: "A"})
		synctest.Wait()
		if n := len(as.offered()); n != 1 {
			t.Fatalf("Ann was offered %d times", n)
		}
		_ = ann.End(h.ID(), anyCat)
		st := sb.Stats()
		if tl := st.Total(); tl.Offered != 1 || tl.AnsweredLocal != 1 || tl.AnsweredOverflow != 0 {
			t.Fatalf("tally %+v", tl)
		}
		conserved(t, st)
		wantTransfers(t, sb, map[TransferKey]uint64{{TransferCold, TransferAccepted, TransferCentre}: 1})
	})
}
