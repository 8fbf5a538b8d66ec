package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	libp2pcrypto "github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/logsink"
	"github.com/helpmesh/helpmesh/switchboard"
)

// dialResumable opens /v1/chat at pc with resume=1.
func dialResumable(t *testing.T, pc *pageCentre, lang string) *goVisitor {
	t.Helper()
	return dialGoVisitorPath(t, pc.url, "/v1/chat?channel=chat&lang="+lang+"&resume=1")
}

// dialGoVisitorPath is dialGoVisitor at any path of base.
func dialGoVisitorPath(t *testing.T, base, path string) *goVisitor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, nil)
	if err != nil {
		t.Fatalf("visitor dial %s: %v", path, err)
	}
	return watchGoVisitor(t, conn)
}

// dialGoVisitorFrom is dialGoVisitorPath from local address ip.
func dialGoVisitorFrom(t *testing.T, ip, base, path string) *goVisitor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+path, &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("visitor dial %s from %s: %v", path, ip, err)
	}
	return watchGoVisitor(t, conn)
}

// resumeAt opens base's resume socket and sends the resume frame.
func resumeAt(t *testing.T, base, secret string, received int) *goVisitor {
	t.Helper()
	v := dialGoVisitorPath(t, base, "/v1/chat/resume")
	v.send(map[string]any{"type": "resume", "secret": secret, "received": received})
	return v
}

// messages are the texts of the message frames v got, in order.
func (v *goVisitor) messages() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for _, f := range v.seen {
		if f["type"] == "message" {
			out = append(out, f["text"].(string))
		}
	}
	return out
}

// resumedRig is an overflowed conversation: a visitor who can resume at
// c1, where nobody is signed in, talking with Bea at c2.
type resumedRig struct {
	fed     *pageFederation
	c1, c2  *pageCentre
	con     *switchboard.Console
	vol     *vpVolunteer
	visitor *goVisitor
	contact string
	url     string
	secret  string
}

func newResumedRig(t *testing.T) *resumedRig {
	return newResumedRigLogged(t, nil)
}

// newResumedRigLogged is newResumedRig whose centres (nodes and APIs) log
// at debug level to logs, if not nil.
func newResumedRigLogged(t *testing.T, logs io.Writer) *resumedRig {
	var adjust func(string, *pageConfig)
	if logs != nil {
		l := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		adjust = func(_ string, cfg *pageConfig) { cfg.node.Logger, cfg.log = l, l }
	}
	fed := newEntryFederationWith(t, 2, adjust)
	awaitURLs(t, fed)
	r := &resumedRig{fed: fed, c1: fed.Member("c1"), c2: fed.Member("c2")}
	r.con, r.vol = vpSignIn(t, r.c2, "Bea")
	waitFreeAt(t, r.c1, "c2", "nb")
	r.visitor = dialResumable(t, r.c1, "nb")
	r.contact = r.vol.accept(t, r.con)
	f := r.visitor.await("connected", frameIs("connected"))
	res, _ := f["resume"].(map[string]any)
	r.url, _ = res["url"].(string)
	r.secret, _ = res["secret"].(string)
	if r.url != r.c2.url || len(r.secret) != resumeSecretChars {
		t.Fatalf("connected frame %v: want resume at %s with a %d-character secret", f, r.c2.url, resumeSecretChars)
	}
	// One message each way before the loss.
	r.visitor.send(map[string]any{"type": "message", "id": "v1", "text": "before 1"})
	r.vol.awaitMessage(t, "before 1")
	if err := r.con.Send(r.contact, "w1", "bea before"); err != nil {
		t.Fatal(err)
	}
	r.visitor.await("Bea's first message", func(f map[string]any) bool { return f["text"] == "bea before" })
	return r
}

// live says whether Bea's conversation is still going.
func (r *resumedRig) live() bool { return r.con.Typing(r.contact) == nil }

// awaitKind waits for a console event of kind.
func (g *vpVolunteer) awaitKind(t *testing.T, kind switchboard.EventKind) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-g.events:
			if e.Kind == kind {
				return
			}
		case <-deadline:
			t.Fatalf("the volunteer's console never heard %q", kind)
		}
	}
}

// afterLoss is the rest of every resume test: Bea writes while the
// visitor is away, the visitor resumes at c2 with its count, gets exactly
// what it missed, in order, re-sends what it never saw delivered (passed on
// once), and the conversation goes on and ends with one count at c2.
func (r *resumedRig) afterLoss(t *testing.T, lostAt time.Time) {
	r.vol.awaitKind(t, switchboard.EventReconnecting)
	for i := 1; i <= 3; i++ {
		if err := r.con.Send(r.contact, fmt.Sprintf("gap%d", i), fmt.Sprintf("bea in the gap %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	nv := resumeAt(t, r.c2.url, r.secret, 1)
	nv.await("resumed", frameIs("resumed"))
	t.Logf("resumed %v after the loss", time.Since(lostAt).Round(time.Millisecond))
	r.vol.awaitKind(t, switchboard.EventResumed)
	nv.await("the gap's last message", func(f map[string]any) bool { return f["text"] == "bea in the gap 3" })
	// The visitor re-sends "before 1" (as a page does when unsure) and a
	// new one: Bea sees the new one once and the old one not again.
	nv.send(map[string]any{"type": "message", "id": "v1", "text": "before 1"})
	nv.send(map[string]any{"type": "message", "id": "v2", "text": "after resume"})
	r.vol.awaitMessage(t, "after resume")
	nv.await("delivered v1 again", func(f map[string]any) bool { return f["type"] == "delivered" && f["id"] == "v1" })
	if err := r.con.Send(r.contact, "w2", "bea after"); err != nil {
		t.Fatal(err)
	}
	nv.await("Bea's next message", func(f map[string]any) bool { return f["text"] == "bea after" })
	want := []string{"bea in the gap 1", "bea in the gap 2", "bea in the gap 3", "bea after"}
	if got := nv.messages(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("the resumed page got %q, want %q (each once, in order, nothing it had)", got, want)
	}
	select {
	case e := <-r.vol.events:
		if e.Kind == switchboard.EventMessage {
			t.Errorf("Bea got %q again", e.Text)
		}
	default:
	}
	// A used secret opens nothing, even while the conversation goes on.
	again := resumeAt(t, r.c2.url, r.secret, 0)
	again.await("refusal of a used secret", func(f map[string]any) bool { return f["code"] == "resume_refused" })
	nv.send(map[string]any{"type": "end"})
	nv.await("ended", frameIs("ended"))
	fedtest.Eventually(t, 10*time.Second, "c2 counting the received conversation once", func() bool {
		st := r.c2.node.Switchboard().Stats()
		return st.Received(switchboard.OfferAccepted) == 1 && st.Total().Offered == 0 && !r.live()
	})
}

// The entry centre of an overflowed conversation crashes: the visitor goes
// on at the volunteer's centre with the same volunteer.
func TestOverflowedConversationResumesWhenEntryCentreCrashes(t *testing.T) {
	r := newResumedRig(t)
	lostAt := time.Now()
	r.c1.node.Crash()
	r.afterLoss(t, lostAt)
}

// The entry centre is cut off from the volunteer's centre while the visitor
// still reaches it: it tells the page to move; the page resumes at c2 and
// leaves c1, which counts the contact once, answered by overflow.
func TestOverflowedConversationMovesWhenEntryCentreIsCutOff(t *testing.T) {
	r := newResumedRig(t)
	lostAt := time.Now()
	r.fed.Partition("c1")
	r.visitor.await("move", frameIs("move"))
	r.afterLoss(t, lostAt)
	_ = r.visitor.conn.Close(websocket.StatusNormalClosure, "resumed elsewhere")
	fedtest.Eventually(t, 10*time.Second, "c1 counting the contact answered by overflow", func() bool {
		st := r.c1.node.Switchboard().Stats().Total()
		return st.Offered == 1 && st.AnsweredOverflow == 1 && st.Abandoned == 0 && st.InProgress == 0
	})
	if n := r.c1.node.Switchboard().Stats().Moved(switchboard.StateConnected, switchboard.StateQueued); n != 0 {
		t.Errorf("c1 requeued the contact %d times", n)
	}
}

// A page told to move that cannot resume stays: the contact waits at its
// centre again, at the front, as it did before resuming existed.
func TestMovedPageThatStaysIsRequeued(t *testing.T) {
	r := newResumedRig(t)
	r.fed.Partition("c1")
	r.visitor.await("move", frameIs("move"))
	r.visitor.send(map[string]any{"type": "stay"})
	r.visitor.await("requeued", frameIs("requeued"))
	if n := r.c1.node.Switchboard().Stats().Moved(switchboard.StateConnected, switchboard.StateQueued); n != 1 {
		t.Errorf("c1 requeued the contact %d times, want 1", n)
	}
}

// Forged, malformed and expired secrets are refused alike and reveal
// nothing; a secret for a conversation that ended opens nothing.
func TestResumeRefusals(t *testing.T) {
	r := newResumedRig(t)
	forged := strings.Repeat("A", resumeSecretChars)
	for name, frame := range map[string]map[string]any{
		"forged":       {"type": "resume", "secret": forged, "received": 0},
		"short":        {"type": "resume", "secret": "abc", "received": 0},
		"not a resume": {"type": "message", "id": "x", "text": "hi"},
		"negative":     {"type": "resume", "secret": r.secret, "received": -1},
	} {
		v := dialGoVisitorPath(t, r.c2.url, "/v1/chat/resume")
		v.send(frame)
		f := v.await(name+" refused", func(f map[string]any) bool { return f["type"] == "error" })
		if f["code"] != "resume_refused" || f["error"] != switchboard.ErrResumeRefused.Error() {
			t.Errorf("%s: %v, want the one resume_refused answer", name, f)
		}
	}
	// Still live after the refusals: the real secret was not spent by them.
	if !r.live() {
		t.Fatal("the conversation ended")
	}
	// Expired: the conversation ends (Bea ends it), the secret opens nothing.
	if err := r.con.End(r.contact, switchboard.Categorisation{Topics: []string{"other"}, AgeGroup: "unknown"}); err != nil && !errors.Is(err, switchboard.ErrEnded) {
		t.Fatal(err)
	}
	r.visitor.await("ended", frameIs("ended"))
	v := resumeAt(t, r.c2.url, r.secret, 0)
	if f := v.await("refusal after the end", func(f map[string]any) bool { return f["type"] == "error" }); f["code"] != "resume_refused" {
		t.Errorf("after the end: %v", f)
	}
	// Nothing about a secret is logged: the refusals are counted only.
	res, err := http.Get(r.c2.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(body), `reason="resume"`) {
		t.Errorf("the refusals were not counted as reason=\"resume\"")
	}
}

// The resume request is decoded strictly: a frame it accepts is a resume
// frame with a secret of the one shape and a bounded count; everything
// else is a coded refusal, never a panic. Resume itself refuses any hash
// of what passes, unless it is a conversation's.
func FuzzResumeFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"resume","secret":"` + strings.Repeat("A", resumeSecretChars) + `","received":0}`,
		`{"type":"resume","secret":"` + strings.Repeat("_", resumeSecretChars) + `","received":3}`,
		`{"type":"resume","secret":"abc","received":0}`, `{"type":"resume","received":-1}`,
		`{"type":"resume","secret":"` + strings.Repeat("A", resumeSecretChars) + `","received":1e9}`,
		`{"type":"message","id":"x","text":"y"}`, `null`, `[]`, `{"type":"resume","extra":1}`,
	} {
		f.Add([]byte(s))
	}
	sb := switchboard.New(switchboard.Config{Centre: "fuzz"})
	defer sb.Close()
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeResumeFrame(b)
		if err != nil {
			var fe *frameError
			if !errors.As(err, &fe) || fe.code == "" {
				t.Fatalf("error %v is not a coded frame error", err)
			}
			if fr != (resumeFrame{}) {
				t.Fatalf("refused frame decoded as %+v", fr)
			}
			return
		}
		if fr.Type != "resume" || len(fr.Secret) != resumeSecretChars || fr.Received < 0 || fr.Received > maxResumeReceived || len(b) > maxFrameBytes {
			t.Fatalf("accepted %+v from %q", fr, b)
		}
		if _, err := sb.Resume(switchboard.ResumeHash(fr.Secret), fr.Received, nil); !errors.Is(err, switchboard.ErrResumeRefused) {
			t.Fatalf("an empty desk resumed %q: %v", fr.Secret, err)
		}
	})
}

// A conversation answered at its own centre cannot resume when that
// centre dies: the page starts anew at another centre with the ticket its
// centre gave it, and waits there first, ahead of those already waiting.
// While the ticket's centre is still seen alive, the ticket earns nothing
// yet (a visitor in a live conversation could jump queues with a second
// tab); once it is seen down, the contact moves ahead. A ticket is honoured
// once per centre; a tampered one, never.
func TestTicketPutsTheVisitorFirstAtAnotherCentre(t *testing.T) {
	fed := newEntryFederation(t, 2)
	awaitURLs(t, fed)
	c1, c2 := fed.Member("c1"), fed.Member("c2")
	var tickets []string
	for i, name := range []string{"Ola", "Per"} {
		con, vol := vpSignIn(t, c1, name)
		v := dialGoVisitorFrom(t, fmt.Sprintf("127.0.0.%d", 30+i), c1.url, "/v1/chat?channel=chat&lang=nb&resume=1")
		vol.accept(t, con)
		f := v.await("connected", frameIs("connected"))
		tk, _ := f["ticket"].(string)
		if tk == "" || f["resume"] != nil {
			t.Fatalf("connected frame of a conversation answered here: %v, want a ticket and no resume", f)
		}
		tickets = append(tickets, tk)
	}
	// Two visitors wait at c2, where nobody is signed in (from other
	// loopback addresses: one address may hold 3 chats open).
	for i := 1; i <= 2; i++ {
		w := dialGoVisitorFrom(t, fmt.Sprintf("127.0.0.%d", 10+i), c2.url, "/v1/chat?channel=chat&lang=nb&resume=1")
		w.await(fmt.Sprintf("waiting visitor %d queued", i), func(f map[string]any) bool { return f["type"] == "queued" && f["position"] == float64(i) })
	}
	queuedAt := func(v *goVisitor) float64 {
		f := v.await("queued", frameIs("queued"))
		return f["position"].(float64)
	}
	withTicket := func(ip, tk string) *goVisitor {
		return dialGoVisitorFrom(t, ip, c2.url, "/v1/chat?channel=chat&lang=nb&resume=1&ticket="+tk)
	}
	early := withTicket("127.0.0.20", tickets[0])
	if p := queuedAt(early); p != 3 {
		t.Errorf("a ticket of a centre still alive put the visitor at place %v, want 3 (the back)", p)
	}
	c1.node.Crash()
	early.await("moved to the front once c1 is seen down", func(f map[string]any) bool {
		return f["type"] == "queued" && f["position"] == float64(1)
	})
	_ = early.conn.Close(websocket.StatusNormalClosure, "")
	fedtest.Eventually(t, 10*time.Second, "the early visitor gone from c2's queue", func() bool {
		return c2.node.Switchboard().Stats().Total().Waiting == 2
	})
	if p := queuedAt(withTicket("127.0.0.21", tickets[0])); p != 3 {
		t.Errorf("a spent ticket put the visitor at place %v, want 3 (the back)", p)
	}
	if p := queuedAt(withTicket("127.0.0.22", tickets[1])); p != 1 {
		t.Errorf("a ticket of a centre seen down put the visitor at place %v, want 1", p)
	}
	body, sig, _ := strings.Cut(tickets[1], ".")
	if p := queuedAt(withTicket("127.0.0.23", body[:len(body)-2]+"AA."+sig)); p != 5 {
		t.Errorf("a tampered ticket put the visitor at place %v, want 5 (the back)", p)
	}
}

// A ticket is read from a stranger's query: whatever comes, checkTicket
// does not panic, and it accepts only a body the centre signed.
func FuzzTicket(f *testing.F) {
	key, _, err := libp2pcrypto.GenerateEd25519Key(nil)
	if err != nil {
		f.Fatal(err)
	}
	pid, _ := peer.IDFromPrivateKey(key)
	dc := &deskCentre{id: "c1", roster: consensus.Roster{Centres: map[string]consensus.Centre{"c9": {ID: "c9", PeerID: pid.String()}}}}
	s := &Server{cfg: Config{Centre: dc}, tickets: newUsedTickets()}
	now := time.Now()
	body, _ := json.Marshal(ticketBody{Centre: "c9", Expires: now.Add(time.Minute).Unix(), Nonce: strings.Repeat("ab", 16)})
	sig, _ := key.Sign(body)
	good := base64.RawURLEncoding.EncodeToString(body) + "." + base64.RawURLEncoding.EncodeToString(sig)
	if _, ok := s.checkTicket(good, now); !ok {
		f.Fatal("the signed ticket is not accepted")
	}
	f.Add(good)
	f.Add("")
	f.Add(".")
	f.Add(strings.Repeat("A", maxTicketChars+1))
	f.Add(base64.RawURLEncoding.EncodeToString(body) + ".")
	f.Fuzz(func(t *testing.T, tk string) {
		got, ok := s.checkTicket(tk, now)
		if ok && (got.Centre != "c9" || got.Nonce != strings.Repeat("ab", 16)) {
			t.Fatalf("accepted a body nobody signed: %+v", got)
		}
	})
}

// Privacy: no resume secret, ticket or message text reaches a log line at
// either centre (debug level), through a crash, a resume and a refusal.
func TestResumeLogsNoSecretOrText(t *testing.T) {
	logs := &logsink.Buffer{}
	r := newResumedRigLogged(t, logs)
	r.c1.node.Crash()
	r.afterLoss(t, time.Now())
	out := logs.String()
	if !strings.Contains(out, "relay lost") {
		t.Fatalf("the capture holds none of the centres' lines (%d bytes): the check would prove nothing", len(out))
	}
	for _, canary := range []string{r.secret, switchboard.ResumeHash(r.secret), "before 1", "bea in the gap", "after resume", "bea after"} {
		if strings.Contains(out, canary) {
			t.Errorf("a log line carries %q", canary)
		}
	}
}
