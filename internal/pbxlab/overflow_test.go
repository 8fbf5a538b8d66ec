package pbxlab_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/pbxlab"
)

// How long the own queue rings before the federation is asked, and how
// long the two sides talk once both hear each other's RTP: 8 s for the
// voice check (sentences of about 8 s: with 4 s ones, two different
// sentences correlate up to 0.5), 3 s where only "who answered" matters.
const (
	ringMS    = "2000"
	talkLong  = 8 * time.Second
	talkShort = 3 * time.Second
)

// centres is the issue-12 topology of docs/dev/telephony-lab.md section 7:
// a caller at centre A, whose local phone never answers, and A's own queue
// phone (OWN_QUEUE); PBX A and its (stand-in) node; PBX B, its node, a
// volunteer's phone and B's own queue phone (LOCAL_PHONE, the default
// OWN_QUEUE).
type centres struct {
	pbxA, pbxB                 *pbxlab.Kamailio
	nodeA, nodeB               *standIn
	caller, local, queueA      *pbxlab.Phone
	volunteer, queueB          *pbxlab.Phone
	callerSpeech, volunteerSay string
}

func startCentres(t *testing.T) *centres {
	t.Helper()
	pbxlab.Need(t)
	dir := t.TempDir()
	c := &centres{
		callerSpeech: pbxlab.Speech(t, dir, "Hello, this is the caller speaking. I would like to talk to someone about my day, "+
			"it has been a long one and I cannot sleep.", 12*time.Second),
		volunteerSay: pbxlab.Speech(t, dir, "Good evening, you are talking to a volunteer at the helpline. Take your time, "+
			"I am listening, and nothing you say leaves this room.", 12*time.Second),
	}
	c.caller = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "caller", Answer: pbxlab.AnswerNever, Speak: c.callerSpeech})
	c.local = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "local", Answer: pbxlab.AnswerNever, Speak: c.volunteerSay})
	c.queueA = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "aq", Answer: pbxlab.AnswerManual, Speak: c.volunteerSay})
	c.volunteer = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "vol", Answer: pbxlab.AnswerAuto, Speak: c.volunteerSay})
	c.queueB = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "bq", Answer: pbxlab.AnswerAuto, Speak: c.volunteerSay})
	c.nodeA, c.nodeB = startStandIn(t), startStandIn(t)
	cfg := pbxlab.ConfigPath(t)
	c.pbxA = pbxlab.StartKamailio(t, cfg, map[string]string{
		"NODE":        pbxlab.Quote(c.nodeA.URI()),
		"LOCAL_PHONE": pbxlab.Quote(c.local.URI()),
		"OWN_QUEUE":   pbxlab.Quote(c.queueA.URI()),
		"QUEUE":       pbxlab.Quote("1000"),
		"RING_MS":     ringMS,
		"LANG":        pbxlab.Quote("nb"),
	})
	c.pbxB = pbxlab.StartKamailio(t, cfg, map[string]string{
		"NODE":        pbxlab.Quote(c.nodeB.URI()),
		"LOCAL_PHONE": pbxlab.Quote(c.queueB.URI()),
	})
	// Node A hands the Norwegian queue to centre B with a token; node B
	// sends a good token to its volunteer (baresip answers only its own
	// user, gotcha 13: the real node proxies to the volunteer instead).
	c.nodeA.answer(func(user string) (int, string) {
		if user == "queue-nb" {
			return 302, c.pbxB.URI("tok123")
		}
		return 404, ""
	})
	c.nodeB.answer(func(user string) (int, string) {
		if user == "tok123" {
			return 302, c.volunteer.URI()
		}
		return 404, ""
	})
	return c
}

// The whole overflow: centre A's own queue rings unanswered, node A sends
// the call to centre B with a token, node B to its volunteer; each side
// hears the other's voice, and not its own.
func TestCallOverflowsToOtherCentre(t *testing.T) {
	start := time.Now()
	c := startCentres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	if err := c.caller.Dial(ctx, c.pbxA.URI("1000")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.local.Await(ctx, "CALL_INCOMING"); err != nil {
		t.Fatalf("centre A's own queue did not ring first: %v", err)
	}
	pbxlab.Converse(ctx, t, c.caller, c.volunteer, talkLong)

	if c.local.Saw("CALL_ESTABLISHED") {
		t.Error("centre A's own queue phone answered; it never answers in this test")
	}
	if c.queueB.Saw("CALL_INCOMING") || c.queueA.Saw("CALL_INCOMING") {
		t.Error("an own queue phone rang; the volunteer should have had the call")
	}
	if users, _ := c.nodeA.asked(); !slices.Equal(users, []string{"queue-nb"}) {
		t.Errorf("node A was asked for %q, want [queue-nb] (R-URI user = queue-LANG)", users)
	}
	if users, _ := c.nodeB.asked(); !slices.Equal(users, []string{"tok123"}) {
		t.Errorf("node B was asked for %q, want [tok123] (the token, unchanged)", users)
	}

	pbxlab.HeardEachOther(t, c.caller, c.callerSpeech, c.volunteer, c.volunteerSay)
	for _, p := range []*pbxlab.Phone{c.caller, c.volunteer} {
		if lvl, err := pbxlab.Level(p.Heard()); err != nil || lvl < -40 {
			t.Errorf("recording level %.1f dBFS (%v), want speech (> -40)", lvl, err)
		}
	}
	t.Logf("overflow call took %v from start to hang-up", time.Since(start).Round(100*time.Millisecond))
}

// Node B refuses the token (forged, used, expired: 404): PBX B puts the
// caller on its own queue phone rather than dropping the call.
func TestRefusedTokenLandsOnOwnQueue(t *testing.T) {
	c := startCentres(t)
	c.nodeB.answer(func(string) (int, string) { return 404, "" })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	if err := c.caller.Dial(ctx, c.pbxA.URI("1000")); err != nil {
		t.Fatal(err)
	}
	pbxlab.Converse(ctx, t, c.caller, c.queueB, talkShort)

	if c.volunteer.Saw("CALL_INCOMING") {
		t.Error("the volunteer's phone rang for a refused token")
	}
	if users, codes := c.nodeB.asked(); !slices.Equal(users, []string{"tok123"}) || !slices.Equal(codes, []int{404}) {
		t.Errorf("node B was asked %q and answered %v, want [tok123] [404]", users, codes)
	}
	if got := pbxlab.MustCorrelate(t, "caller's speech vs what B's queue phone heard", c.callerSpeech, c.queueB.Heard()); got < 0.8 {
		t.Errorf("B's own queue did not hear the caller: correlation %.3f < 0.8", got)
	}
}

// Nobody free in the federation (node A: 480 + Retry-After): PBX A puts the
// call on its own queue (OWN_QUEUE), where it is answered. (Not the local
// phone again: that refuses the same INVITE with 482, see kamailio.cfg.)
func TestNobodyFreeLandsOnOwnQueue(t *testing.T) {
	c := startCentres(t)
	c.nodeA.answer(func(string) (int, string) { return 480, "" })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	if err := c.caller.Dial(ctx, c.pbxA.URI("1000")); err != nil {
		t.Fatal(err)
	}
	// First the local phone, left unanswered until PBX A gives up after
	// RING_MS; then, after the node's 480, the own queue.
	if _, err := c.local.Await(ctx, "CALL_INCOMING"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.local.Await(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.queueA.Await(ctx, "CALL_INCOMING"); err != nil {
		t.Fatalf("own queue not rung after 480: %v", err)
	}
	if err := c.queueA.Accept(ctx); err != nil {
		t.Fatal(err)
	}
	pbxlab.Converse(ctx, t, c.caller, c.queueA, talkShort)

	if users, codes := c.nodeA.asked(); !slices.Equal(users, []string{"queue-nb"}) || !slices.Equal(codes, []int{480}) {
		t.Errorf("node A was asked %q and answered %v, want [queue-nb] [480]", users, codes)
	}
	if users, _ := c.nodeB.asked(); len(users) != 0 {
		t.Errorf("node B was asked %q; the call never left centre A", users)
	}
	if got := pbxlab.MustCorrelate(t, "caller's speech vs what A's queue phone heard", c.callerSpeech, c.queueA.Heard()); got < 0.8 {
		t.Errorf("A's own queue did not hear the caller: correlation %.3f < 0.8", got)
	}
}

// Node B is dead (never answers; a node gone between its 302 and the call):
// PBX B gives up after fr_timer (3 s, a local 408) and puts the caller on
// its own queue.
func TestDeadNodeLandsOnOwnQueue(t *testing.T) {
	c := startCentres(t)
	c.nodeB.answer(func(string) (int, string) { return 0, "" })
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	if err := c.caller.Dial(ctx, c.pbxA.URI("1000")); err != nil {
		t.Fatal(err)
	}
	pbxlab.Converse(ctx, t, c.caller, c.queueB, talkShort)

	if c.volunteer.Saw("CALL_INCOMING") {
		t.Error("the volunteer's phone rang though node B never answered")
	}
	if !strings.Contains(c.pbxB.Log(), "node answered 408; own queue") {
		t.Errorf("PBX B did not fall back on its own 408:\n%s", c.pbxB.Log())
	}
}

// The caller gives up while centre A's own phone rings: the CANCEL reaches
// the phone, and the call is not offered to the federation afterwards.
// (Kamailio's tm refuses new branches on a cancelled transaction by itself:
// a mutation run without the cfg's t_is_canceled checks passed too. What
// this guards is the CANCEL path through the PBX.)
func TestCallerHangingUpIsNotOffered(t *testing.T) {
	c := startCentres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if err := c.caller.Dial(ctx, c.pbxA.URI("1000")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.local.Await(ctx, "CALL_INCOMING"); err != nil {
		t.Fatal(err)
	}
	if err := c.caller.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*pbxlab.Phone{c.local, c.caller} {
		if _, err := p.Await(ctx, "CALL_CLOSED"); err != nil {
			t.Fatal(err)
		}
	}
	// Had PBX A relayed to its node after the phone's 487, the caller's
	// INVITE would still be open: its CALL_CLOSED means the failure route
	// already chose.
	if users, _ := c.nodeA.asked(); len(users) != 0 {
		t.Errorf("node A was asked %q for a call the caller had given up", users)
	}
}

// Only PBX A itself asks its node for "queue-LL": a caller (or a peer PBX)
// dialling queue-nb is refused instead of skipping the own queue.
func TestQueueNameIsNotDiallable(t *testing.T) {
	c := startCentres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if err := c.caller.Dial(ctx, c.pbxA.URI("queue-nb")); err != nil {
		t.Fatal(err)
	}
	e, err := c.caller.Await(ctx, "CALL_ESTABLISHED", "CALL_CLOSED")
	if err != nil {
		t.Fatal(err)
	}
	if e.Type != "CALL_CLOSED" || !strings.Contains(e.Param, "404") {
		t.Errorf("dialling queue-nb: %s %q, want CALL_CLOSED with 404", e.Type, e.Param)
	}
	if users, _ := c.nodeA.asked(); len(users) != 0 {
		t.Errorf("node A was asked %q", users)
	}
}
