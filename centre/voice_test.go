package centre_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/internal/localfed"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/logsink"
	"github.com/helpmesh/helpmesh/internal/pbxlab"
	"github.com/helpmesh/helpmesh/internal/siptest"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
	"github.com/helpmesh/helpmesh/switchboard"
)

// Real telephony between two real centres: each centre's PBX is Kamailio
// with deploy/pbx/kamailio.cfg, the phones are baresip speaking espeak-ng
// sentences and recording what they hear, and the nodes are whole
// helpmesh centres (Raft, gossip, libp2p, the SIP ingress). Nothing in the
// call path is a stand-in. See internal/pbxlab for the rig.

// The caller's identity, as canaries: a number and a display name that
// must appear in no log, file, metric or roster at any centre.
const (
	voiceCallerNumber = "4791234567"
	voiceCallerName   = "Zqxjkv Callername"
)

type voiceRig struct {
	*phoneRig
	pbxA, pbxB                   *pbxlab.Kamailio
	caller, localA, queueA       *pbxlab.Phone
	volunteer, queueB            *pbxlab.Phone
	callerSpeech, volunteerSpeak string
}

// startVoiceRig starts the PBXs, the phones and the two centres. Centre A
// (c1) has nobody free for calls; centre B (c2) has the volunteer whose
// phone answers at once and records.
func startVoiceRig(t *testing.T, tune func(id string, cfg *centre.Config)) *voiceRig {
	t.Helper()
	pbxlab.Need(t)
	dir := t.TempDir()
	r := &voiceRig{
		callerSpeech: pbxlab.Speech(t, dir, "Hello, this is the caller speaking. I would like to talk to someone about my day, "+
			"it has been a long one and I cannot sleep.", 12*time.Second),
		volunteerSpeak: pbxlab.Speech(t, dir, "Good evening, you are talking to a volunteer at the helpline. Take your time, "+
			"I am listening, and nothing you say leaves this room.", 12*time.Second),
	}
	r.caller = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: voiceCallerNumber, DisplayName: voiceCallerName, Answer: pbxlab.AnswerNever, Speak: r.callerSpeech})
	r.localA = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "local", Answer: pbxlab.AnswerNever, Speak: r.volunteerSpeak})
	r.queueA = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "aq", Answer: pbxlab.AnswerAuto, Speak: r.volunteerSpeak})
	r.volunteer = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "vol", Answer: pbxlab.AnswerAuto, Speak: r.volunteerSpeak})
	r.queueB = pbxlab.StartPhone(t, pbxlab.PhoneConfig{User: "bq", Answer: pbxlab.AnswerAuto, Speak: r.volunteerSpeak})

	// The nodes' ingresses get their ports first, so that each PBX knows
	// its node and each node its PBX.
	ingressA, ingressB := freeLoopback(t), freeLoopback(t)
	cfg := pbxlab.ConfigPath(t)
	r.pbxA = pbxlab.StartKamailio(t, cfg, map[string]string{
		"NODE":        pbxlab.Quote("sip:" + ingressA),
		"LOCAL_PHONE": pbxlab.Quote(r.localA.URI()),
		"OWN_QUEUE":   pbxlab.Quote(r.queueA.URI()),
		"QUEUE":       pbxlab.Quote("1000"),
		"RING_MS":     "2000",
		"LANG":        pbxlab.Quote("nb"),
	})
	r.pbxB = pbxlab.StartKamailio(t, cfg, map[string]string{
		"NODE":        pbxlab.Quote("sip:" + ingressB),
		"LOCAL_PHONE": pbxlab.Quote(r.queueB.URI()),
	})
	r.phoneRig = &phoneRig{root: t.TempDir(), logs: &logsink.Buffer{}}
	local := centre.Local{
		Root: r.root, Timing: timing.Test, Tune: tune,
		Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Phone: func(id string, _ int) (node.PhoneConfig, string) {
			if id == "c1" {
				return node.PhoneConfig{Listen: ingressA, PBX: []string{"127.0.0.1/32"}}, r.pbxA.Addr()
			}
			return node.PhoneConfig{Listen: ingressB, PBX: []string{"127.0.0.1/32"}}, r.pbxB.Addr()
		},
	}
	r.Federation = fedtest.Start(t, local.Driver(), 2)
	return r
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	p, err := localfed.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// The whole flow with real PBXs and real voice: the caller dials
// centre A's queue; A's own phone rings and is never answered; PBX A asks
// its node, which holds c2's free volunteer over the federation and
// answers 302 to a token at PBX B; PBX B relays the token to its node,
// which rings the volunteer's phone through itself; the volunteer's phone
// answers, and each side hears the other's voice (envelope correlation of
// what one said and the other recorded, with mismatched pairs that do not
// correlate). Both centres saw the pick-up and the hang-up, A counts the
// call answered by overflow, and the caller's number and name are nowhere.
func TestCallOverflowsBetweenTwoPBXsWithRealVoice(t *testing.T) {
	r := startVoiceRig(t, nil)
	c1, c2 := r.Member("c1"), r.Member("c2")
	con, desk := phoneVolunteer(t, c2, "v-b", r.volunteer.URI())
	fedtest.Eventually(t, 20*time.Second, "c2's volunteer free for calls in c1's view", func() bool { return seenFree(c1, c2, switchboard.ChannelPhone) })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := r.caller.Dial(ctx, r.pbxA.URI("1000")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.localA.Await(ctx, "CALL_INCOMING"); err != nil {
		t.Fatalf("centre A's own queue did not ring first: %v", err)
	}
	// Talk, and watch c1 while the call lasts: it must see the pick-up.
	inCall := make(chan bool, 1)
	go func() {
		seen := false
		for !seen && ctx.Err() == nil {
			seen = phoneTally(c1).InProgress == 1
			time.Sleep(20 * time.Millisecond)
		}
		inCall <- seen
	}()
	pbxlab.Converse(ctx, t, r.caller, r.volunteer, 8*time.Second)
	if !<-inCall {
		t.Error("c1 never saw the call in progress")
	}
	if !desk.has("connected c1") {
		t.Errorf("c2's console never showed the call connected: %s", desk)
	}

	if r.localA.Saw("CALL_ESTABLISHED") || r.queueA.Saw("CALL_INCOMING") || r.queueB.Saw("CALL_INCOMING") {
		t.Error("a phone other than the volunteer's answered or rang")
	}
	pbxlab.HeardEachOther(t, r.caller, r.callerSpeech, r.volunteer, r.volunteerSpeak)

	// The hang-up passed through node B (Record-Route): both centres know.
	fedtest.Eventually(t, 10*time.Second, "c1 counts the call answered by overflow", func() bool { return phoneTally(c1).AnsweredOverflow == 1 })
	fedtest.Eventually(t, 5*time.Second, "c2's console hears the call end", func() bool { return desk.has("event ended caller") })
	desk.categorise(t, con)
	conservedCalls(t, c1)
	r.noTrace(t, voiceCallerNumber, voiceCallerName)
}

// A second use of a token, a forged one and an expired one each get a
// clear 4xx from node B, and PBX B puts the caller on its own queue phone:
// never a dropped caller. The volunteer is held again only by a new call:
// the hold ends with its call, and with its lease.
func TestRefusedTokensLandOnTheOwnQueueWithRealPBXs(t *testing.T) {
	const lease = 3 * time.Second
	r := startVoiceRig(t, func(_ string, cfg *centre.Config) { cfg.Node.CallLease = lease })
	c1, c2 := r.Member("c1"), r.Member("c2")
	_, desk := phoneVolunteer(t, c2, "v-b", r.volunteer.URI())
	pbx := siptest.NewCallerPBX(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// landsOnOwnQueue dials user at PBX B and has B's own queue phone
	// answer it.
	landsOnOwnQueue := func(what, user string, status int) {
		t.Helper()
		if err := r.caller.Dial(ctx, r.pbxB.URI(user)); err != nil {
			t.Fatal(err)
		}
		pbxlab.Converse(ctx, t, r.caller, r.queueB, time.Second)
		if want := fmt.Sprintf("node answered %d; own queue", status); !strings.Contains(r.pbxB.Log(), want) {
			t.Fatalf("%s token: PBX B's log lacks %q:\n%s", what, want, tailOf(r.pbxB.Log()))
		}
	}

	// Forged.
	landsOnOwnQueue("a forged", "AAAAAAAAAAAAAAAAAAAAAAAAAA", 404)

	// Used: the PBX at A asks c1, the caller follows the 302 to PBX B once
	// (the volunteer answers), then dials the same token again.
	fedtest.Eventually(t, 20*time.Second, "c2 free for calls in c1's view", func() bool { return seenFree(c1, c2, switchboard.ChannelPhone) })
	tok := redirected(t, pbx, c1).User
	if err := r.caller.Dial(ctx, r.pbxB.URI(tok)); err != nil {
		t.Fatal(err)
	}
	pbxlab.Converse(ctx, t, r.caller, r.volunteer, time.Second)
	fedtest.Eventually(t, 10*time.Second, "the volunteer free again after the call", func() bool {
		return c2.Node().Switchboard().Availability()[switchboard.ChannelPhone].Free["nb"] == 1
	})
	landsOnOwnQueue("a used", tok, 410)

	// Expired: held, and nobody came within the lease.
	fedtest.Eventually(t, 20*time.Second, "c2 free for calls in c1's view again", func() bool { return seenFree(c1, c2, switchboard.ChannelPhone) })
	tok = redirected(t, pbx, c1).User
	fedtest.Eventually(t, 2*lease, "the hold released at its lease", func() bool { return desk.has("withdrawn the call did not come through") })
	landsOnOwnQueue("an expired", tok, 410)

	if n := len(r.volunteer.Recordings()); n > 2 {
		t.Errorf("the volunteer's phone took %d recordings' worth of calls, want the one call", n/2)
	}
	if tl := phoneTally(c1); tl.AnsweredOverflow != 1 || tl.Returned != 1 {
		t.Errorf("c1's phone KPIs %+v: want the used token's call answered and the expired one returned", tl)
	}
	conservedCalls(t, c1)
}

// sipLines are the centres' log lines about calls, for a failure message.
func sipLines(logs string) string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "sip") || strings.Contains(l, "call") {
			out = append(out, l)
		}
	}
	return tailOf(strings.Join(out, "\n"))
}

func tailOf(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}
