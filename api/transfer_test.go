package api

import (
	"fmt"
	"strings"
	"testing"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/switchboard"
)

// wsConsole signs id in at pc over HTTP, opens the console socket and
// switches chat on; every frame after the first is kept (a goVisitor
// serves any socket of JSON frames).
func wsConsole(t *testing.T, pc *pageCentre, id, alias string, available bool) *goVisitor {
	t.Helper()
	staffEnrol(t, pc, consensus.Volunteer{ID: id, Centre: pc.node.Centre(), Alias: alias, Channels: []string{"chat"},
		Languages: []string{"nb", "nn"}, Capacity: 1, Role: "volunteer"}, "correct horse battery")
	cookie := pageLogin(t, pc, id, "correct horse battery")
	conn, first, status, body := openConsoleWith(t, pc, cookie)
	if conn == nil || first != "policy" {
		t.Fatalf("console of %s: %d %s, first frame %q", id, status, body, first)
	}
	con := watchGoVisitor(t, conn)
	if available {
		setAvailable(con)
	}
	return con
}

func setAvailable(con *goVisitor) {
	con.t.Helper()
	con.send(map[string]any{"type": "available", "channel": "chat", "on": true})
	con.await("chat switched on", func(f map[string]any) bool {
		ch, _ := f["channels"].(map[string]any)
		return f["type"] == "availability" && ch["chat"] == true
	})
}

// frames are the frames of type typ v got so far.
func (v *goVisitor) frames(typ string) []map[string]any {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []map[string]any
	for _, f := range v.seen {
		if f["type"] == typ {
			out = append(out, f)
		}
	}
	return out
}

func (v *goVisitor) all() []map[string]any {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]map[string]any(nil), v.seen...)
}

func messageIs(text string) func(map[string]any) bool {
	return func(f map[string]any) bool { return f["type"] == "message" && f["text"] == text }
}

// Issue 16, done-when 2: a visitor at c1 (nobody signed in there) talks
// with Bea at c2; Bea warm-transfers to c3 with a note, and Cai, the only
// volunteer free, takes it. The visitor's socket never moves: it hears
// "transferred" with Cai's alias, no requeue, no queued frame, no second
// connected; during the warm phase its messages reach both volunteers
// and each volunteer's reach it, named; after Bea leaves, only Cai; every
// message arrives once and in order; the note reaches Cai's console and
// never the visitor. The contact is counted once, by c1, answered by
// overflow; c2 and c3 count no contact; c1 counts one warm transfer.
func TestWarmTransferAcrossThreeCentres(t *testing.T) {
	fed := newEntryFederation(t, 3)
	c1, c2, c3 := fed.Member("c1"), fed.Member("c2"), fed.Member("c3")
	bea := wsConsole(t, c2, "v-bea", "Bea", true)
	cai := wsConsole(t, c3, "v-cai", "Cai", false)
	waitFreeAt(t, c1, "c2", "nb")

	visitor := dialGoVisitor(t, c1, "nb")
	offer := bea.await("the overflowed offer", frameIs("offer"))
	contact := offer["contact"].(string)
	if offer["from_centre"] != "c1" || offer["transfer"] != nil {
		t.Fatalf("Bea's offer %v", offer)
	}
	bea.send(map[string]any{"type": "accept", "contact": contact})
	visitor.await("connected to Bea", func(f map[string]any) bool { return f["type"] == "connected" && f["alias"] == "Bea" })
	visitor.send(map[string]any{"type": "message", "id": "v1", "text": "hello Bea"})
	bea.await("the visitor's first message", messageIs("hello Bea"))

	// Cai comes on: the only volunteer free in the federation.
	setAvailable(cai)
	const note = "Girl, 15; exam stress; prefers nynorsk. NOTE-CANARY-7f3a"
	bea.send(map[string]any{"type": "transfer", "contact": contact, "centre": "c3", "warm": true, "note": note})
	tOffer := cai.await("the transfer offer", frameIs("offer"))
	if tOffer["contact"] != contact || tOffer["transfer"] != true || tOffer["note"] != note || tOffer["from_centre"] != "c1" {
		t.Fatalf("Cai's offer %v, want the transfer of %s from c1 with the note", tOffer, contact)
	}
	cai.send(map[string]any{"type": "accept", "contact": contact})
	cai.await("Cai connected", func(f map[string]any) bool { return f["type"] == "connected" && f["contact"] == contact })
	tr := visitor.await("transferred", frameIs("transferred"))
	if tr["alias"] != "Cai" {
		t.Fatalf("transferred frame %v, want Cai", tr)
	}
	acc := bea.await("transfer accepted", frameIs("transfer_accepted"))
	if acc["alias"] != "Cai" || acc["warm"] != true {
		t.Fatalf("Bea heard %v", acc)
	}

	// The warm phase: both are in it.
	for i := 1; i <= 3; i++ {
		visitor.send(map[string]any{"type": "message", "id": fmt.Sprintf("w%d", i), "text": fmt.Sprintf("warm %d", i)})
	}
	bea.send(map[string]any{"type": "message", "contact": contact, "id": "b1", "text": "Cai is here now"})
	cai.send(map[string]any{"type": "message", "contact": contact, "id": "c1", "text": "Hi, I am Cai"})
	for _, con := range []*goVisitor{bea, cai} {
		con.await("warm 3", messageIs("warm 3"))
	}
	visitor.await("Bea's warm message", func(f map[string]any) bool { return f["text"] == "Cai is here now" && f["alias"] == "Bea" })
	visitor.await("Cai's warm message", func(f map[string]any) bool { return f["text"] == "Hi, I am Cai" && f["alias"] == "Cai" })

	// Bea leaves; from now on it is Cai's alone.
	bea.send(map[string]any{"type": "leave", "contact": contact})
	bea.await("Bea's side ended", func(f map[string]any) bool { return f["type"] == "ended" && f["by"] == "transferred" })
	for i := 1; i <= 3; i++ {
		visitor.send(map[string]any{"type": "message", "id": fmt.Sprintf("a%d", i), "text": fmt.Sprintf("after %d", i)})
		cai.send(map[string]any{"type": "message", "contact": contact, "id": fmt.Sprintf("c%d", i+1), "text": fmt.Sprintf("cai %d", i)})
	}
	cai.await("after 3", messageIs("after 3"))
	visitor.await("cai 3", messageIs("cai 3"))
	visitor.await("after 3 delivered", func(f map[string]any) bool { return f["type"] == "delivered" && f["id"] == "a3" })

	// Each message once, in order.
	wantTexts := func(who string, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s got %q, want %q", who, got, want)
		}
	}
	visitorFrom := func(alias string) []string {
		var out []string
		for _, f := range visitor.frames("message") {
			text := f["text"].(string)
			if a, _ := f["alias"].(string); a == alias || alias == "Cai" && a == "" && strings.HasPrefix(text, "cai ") {
				out = append(out, text)
			}
		}
		return out
	}
	wantTexts("the visitor from Bea", visitorFrom("Bea"), "Cai is here now")
	wantTexts("the visitor from Cai", visitorFrom("Cai"), "Hi, I am Cai", "cai 1", "cai 2", "cai 3")
	if n := len(visitor.frames("message")); n != 5 {
		t.Errorf("the visitor got %d messages, want 5: %v", n, visitor.frames("message"))
	}
	wantTexts("Bea", bea.messages(), "hello Bea", "warm 1", "warm 2", "warm 3")
	wantTexts("Cai", cai.messages(), "warm 1", "warm 2", "warm 3", "after 1", "after 2", "after 3")
	for _, typ := range []string{"requeued", "closed", "move", "ended", "resumed"} {
		if fs := visitor.frames(typ); len(fs) != 0 {
			t.Errorf("the visitor got %s frames: %v", typ, fs)
		}
	}
	if n, q := len(visitor.frames("connected")), len(visitor.frames("queued")); n != 1 || q > 1 {
		t.Errorf("the visitor got %d connected and %d queued frames, want 1 and at most the first", n, q)
	}
	for _, f := range visitor.all() {
		if strings.Contains(fmt.Sprint(f), "NOTE-CANARY") {
			t.Fatalf("the handover note reached the visitor: %v", f)
		}
	}
	// Every message the visitor sent was delivered, once.
	delivered := map[string]int{}
	for _, f := range visitor.frames("delivered") {
		delivered[f["id"].(string)]++
	}
	for _, id := range []string{"v1", "w1", "w2", "w3", "a1", "a2", "a3"} {
		if delivered[id] != 1 {
			t.Errorf("delivered %s %d times, want once (all: %v)", id, delivered[id], delivered)
		}
	}

	// Cai ends and categorises; Bea never categorises.
	topics := c3.node.Roster().Policy.Topics
	cai.send(map[string]any{"type": "end", "contact": contact, "topics": []string{topics[0]}, "age_group": "13-15"})
	cai.await("categorised", frameIs("categorised"))
	visitor.await("ended", frameIs("ended"))

	st1 := c1.node.Switchboard().Stats()
	if tl := st1.Total(); tl.Offered != 1 || tl.AnsweredOverflow != 1 || tl.AnsweredLocal != 0 || tl.InProgress != 0 {
		t.Errorf("c1's tally %+v, want one contact answered by overflow", tl)
	}
	if n := st1.Transfers[switchboard.TransferKey{Kind: switchboard.TransferWarm, Result: switchboard.TransferAccepted, Scope: switchboard.TransferCentre}]; n != 1 || len(st1.Transfers) != 1 {
		t.Errorf("c1's transfers %v, want one warm, accepted, to another centre", st1.Transfers)
	}
	for _, pc := range []*pageCentre{c2, c3} {
		st := pc.node.Switchboard().Stats()
		if tl := st.Total(); tl.Offered != 0 || tl.AnsweredLocal+tl.AnsweredOverflow != 0 {
			t.Errorf("%s counted a contact: %+v", pc.node.Centre(), tl)
		}
		if len(st.Transfers) != 0 {
			t.Errorf("%s counted a transfer: %v", pc.node.Centre(), st.Transfers)
		}
		if st.Received(switchboard.OfferAccepted) != 1 {
			t.Errorf("%s received offers %v, want one accepted", pc.node.Centre(), st.OffersReceived)
		}
	}
	if st := c2.node.Switchboard().Stats(); st.Categorised() != 0 {
		t.Errorf("c2 recorded %d categorisations, want none (Bea handed over)", st.Categorised())
	}
	if st := c3.node.Switchboard().Stats(); st.Categorised() != 1 {
		t.Errorf("c3 recorded %d categorisations, want Cai's", st.Categorised())
	}
}
