package centre_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	dto "github.com/prometheus/client_model/go"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/internal/localfed"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/logsink"
	"github.com/helpmesh/helpmesh/internal/siptest"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
	"github.com/helpmesh/helpmesh/switchboard"
)

// Calls between whole centres in one process: each centre's SIP ingress on
// loopback, and sipgo agents as the PBX (127.0.0.1, the allowlisted
// prefix) and the volunteer's desk phone (127.0.0.3). The PBX plays both
// centres' PBXs: each centre publishes its own ingress as its SIP address,
// so a 302's Contact leads straight to the answering centre's ingress.
// The same flow through two real Kamailio PBXs with real voice is in
// voice_test.go.

// phoneRig is a federation of centres that take calls, with everything
// they logged (at debug level) and their data directories under root.
type phoneRig struct {
	*fedtest.Federation[centre.Config, *centre.Centre]
	root string
	logs *logsink.Buffer
}

// phoneFed starts n centres that take calls, with tune applied to each.
func phoneFed(t testing.TB, n int, tune func(id string, cfg *centre.Config)) *phoneRig {
	t.Helper()
	r := &phoneRig{root: t.TempDir(), logs: &logsink.Buffer{}}
	local := centre.Local{
		Root: r.root, Timing: timing.Test, Tune: tune,
		Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Phone: func(string, int) (node.PhoneConfig, string) {
			port, err := localfed.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			return node.PhoneConfig{Listen: addr, PBX: []string{"127.0.0.1/32"}}, addr
		},
	}
	r.Federation = fedtest.Start(t, local.Driver(), n)
	return r
}

func ingress(t testing.TB, c *centre.Centre) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(c.SIPAddr())
	if err != nil {
		t.Fatalf("%s's SIP ingress: %v", c.Node().Centre(), err)
	}
	return ap
}

// deskPhone is a volunteer's console as the switchboard sees it: what it
// was told, in order.
type deskPhone struct {
	mu      sync.Mutex
	lines   []string
	contact string // the last offer's
}

func (d *deskPhone) add(s string) { d.mu.Lock(); d.lines = append(d.lines, s); d.mu.Unlock() }
func (d *deskPhone) Offer(o switchboard.Offer) {
	d.mu.Lock()
	d.contact = o.Contact
	d.mu.Unlock()
	urgent := ""
	if o.Urgent {
		urgent = " urgent"
	}
	d.add("offer " + o.Channel + " " + o.Language + " from " + o.From + urgent)
}
func (d *deskPhone) OfferWithdrawn(_, reason string) { d.add("withdrawn " + reason) }
func (d *deskPhone) Connected(_, from string)        { d.add("connected " + from) }
func (d *deskPhone) Event(_ string, e switchboard.Event) {
	d.add("event " + string(e.Kind) + " " + e.By)
}
func (d *deskPhone) Lost(string, int)                       { d.add("lost") }
func (d *deskPhone) Availability(map[string]bool, int, int) {}

// categorise ends the last call this desk was offered with a
// categorisation, as the volunteer does after the call.
func (d *deskPhone) categorise(t testing.TB, con *switchboard.Console) {
	t.Helper()
	d.mu.Lock()
	id := d.contact
	d.mu.Unlock()
	if err := con.End(id, switchboard.Categorisation{Topics: []string{"other"}, AgeGroup: "unknown"}); err != nil {
		t.Fatalf("categorise the call: %v", err)
	}
}

func (d *deskPhone) has(want string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range d.lines {
		if l == want {
			return true
		}
	}
	return false
}

func (d *deskPhone) String() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.lines, "; ")
}

// phoneVolunteer signs a volunteer in at c with phone as their phone and
// switches calls on.
func phoneVolunteer(t testing.TB, c *centre.Centre, id, phone string) (*switchboard.Console, *deskPhone) {
	t.Helper()
	d := &deskPhone{}
	con, err := c.Node().Switchboard().SignIn(switchboard.Volunteer{ID: id, Alias: "Kari", Channels: []string{switchboard.ChannelPhone}, Languages: []string{"nb"}, Capacity: 1}, d)
	if err != nil {
		t.Fatal(err)
	}
	if err := con.SetPhone(phone); err != nil {
		t.Fatal(err)
	}
	if err := con.SetAvailable(switchboard.ChannelPhone, true); err != nil {
		t.Fatal(err)
	}
	return con, d
}

// askQueue sends one INVITE for queue-nb to the centre's ingress, as the
// PBX does when its own queue rang unanswered, and returns the final answer.
func askQueue(t testing.TB, pbx *siptest.CallerPBX, c *centre.Centre) *sip.Response {
	t.Helper()
	d := pbx.Invite(t, ingress(t, c), "queue-nb")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return siptest.FinalResponse(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{}))
}

// redirected asks until the answer is a 302 (gossip may not yet show the
// other centre's volunteer free) and returns its Contact.
func redirected(t testing.TB, pbx *siptest.CallerPBX, c *centre.Centre) sip.Uri {
	t.Helper()
	var res *sip.Response
	fedtest.Eventually(t, 20*time.Second, "a 302 for the call", func() bool {
		res = askQueue(t, pbx, c)
		return res.StatusCode == sip.StatusMovedTemporarily
	})
	return res.Contact().Address
}

// phoneTally is the centre's phone Tally summed over languages.
func phoneTally(c *centre.Centre) switchboard.Tally {
	return c.Node().Switchboard().Stats().Channel(switchboard.ChannelPhone)
}

func conservedCalls(t *testing.T, c *centre.Centre) {
	t.Helper()
	tl := phoneTally(c)
	if tl.Offered != tl.AnsweredLocal+tl.AnsweredOverflow+tl.Abandoned+tl.Returned+uint64(tl.Waiting)+uint64(tl.InProgress) {
		t.Fatalf("%s's phone KPIs not conserved: %+v", c.Node().Centre(), tl)
	}
}

// metric reads one sample of a counter or gauge from c's registry.
func metric(t *testing.T, c *centre.Centre, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := c.Node().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if labelOf(m, k) != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// The whole flow between two centres: c1 has nobody free, so its ingress
// answers the PBX 302 to a one-time token at c2, whose volunteer is held at
// once; the token call reaches c2's ingress, which rings the volunteer's
// phone through itself, and both centres see the pick-up and the hang-up.
// A second use of the token and a forged one get 410 and 404 (the PBX then
// queues the caller itself), and the KPIs count the call once, with
// channel="phone", at c1 as answered by overflow.
func TestCallOverflowsToAnotherCentre(t *testing.T) {
	f := phoneFed(t, 2, nil)
	c1, c2 := f.Member("c1"), f.Member("c2")
	pbx := siptest.NewCallerPBX(t)
	phone := siptest.NewPhone(t, siptest.Held)
	con, desk := phoneVolunteer(t, c2, "v-b", phone.URI())

	to := redirected(t, pbx, c1)
	if got, want := fmt.Sprintf("%s:%d", to.Host, to.Port), c2.Node().Roster().Centres["c2"].SIPAddr; got != want {
		t.Fatalf("302 to %s, want c2's SIP address %s", got, want)
	}
	fedtest.Eventually(t, 5*time.Second, "the call's card on c2's console", func() bool { return desk.has("offer phone nb from c1") })
	if tl := phoneTally(c1); tl.Offered != 1 || tl.Waiting != 1 {
		t.Fatalf("c1 before the call arrived: %+v", tl)
	}

	call := pbx.InviteURI(t, to)
	siptest.Receive(t, phone.Invites, "the INVITE at the volunteer's phone")
	close(phone.PickUp)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := call.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatalf("the call was not answered: %v", err)
	}
	if err := call.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	siptest.Receive(t, phone.Acks, "the ACK at the phone")
	fedtest.Eventually(t, 5*time.Second, "c1 sees the pick-up", func() bool { return phoneTally(c1).InProgress == 1 })
	fedtest.Eventually(t, 5*time.Second, "c2's console connected", func() bool { return desk.has("connected c1") })

	if err := call.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	siptest.Receive(t, phone.Byes, "the BYE at the phone")
	fedtest.Eventually(t, 5*time.Second, "c1 counts the call answered elsewhere", func() bool { return phoneTally(c1).AnsweredOverflow == 1 })
	fedtest.Eventually(t, 5*time.Second, "c2's console hears the end", func() bool { return desk.has("event ended caller") })
	desk.categorise(t, con)
	conservedCalls(t, c1)

	// The token is spent, and a forged one is unknown: each a clear 4xx.
	for _, tc := range []struct {
		user string
		want int
	}{{to.User, sip.StatusGone}, {"AAAAAAAAAAAAAAAAAAAAAAAAAA", sip.StatusNotFound}} {
		d := pbx.InviteURI(t, sip.Uri{Scheme: "sip", User: tc.user, Host: to.Host, Port: to.Port})
		if got := siptest.FinalResponse(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{})).StatusCode; got != tc.want {
			t.Errorf("token %.6s...: %d, want %d", tc.user, got, tc.want)
		}
	}
	if st := phoneTally(c1); st.Offered != 1 {
		t.Fatalf("refused token calls were counted: %+v", st)
	}

	for _, m := range []struct {
		c      *centre.Centre
		name   string
		labels map[string]string
	}{
		{c1, "helpmesh_contacts_answered_total", map[string]string{"channel": "phone", "language": "nb", "answered_by": "overflow"}},
		{c1, "helpmesh_overflow_offers_sent_total", map[string]string{"channel": "phone", "to": "c2", "result": "accepted"}},
		{c2, "helpmesh_overflow_offers_received_total", map[string]string{"channel": "phone", "from": "c1", "result": "accepted"}},
	} {
		if got := metric(t, m.c, m.name, m.labels); got != 1 {
			t.Errorf("%s %s%v = %v, want 1", m.c.Node().Centre(), m.name, m.labels, got)
		}
	}
	if h := c1.Node().Switchboard().Stats().SpeedToAnswer[switchboard.ChannelPhone]; h.Count != 1 {
		t.Fatalf("phone speed to answer observed %d times, want 1", h.Count)
	}
	f.noTrace(t, siptest.CanaryNumber, siptest.CanaryName, to.User)
}

// noTrace fails if any of secrets (a caller's number or name, a token)
// appears in what the centres logged at debug level, in any file of their
// data directories, in their metrics or in their roster.
func (r *phoneRig) noTrace(t *testing.T, secrets ...string) {
	t.Helper()
	var places []string
	check := func(where, text string) {
		for _, s := range secrets {
			if strings.Contains(text, s) {
				places = append(places, fmt.Sprintf("%q in %s", s, where))
			}
		}
	}
	check("the logs", r.logs.String())
	for _, c := range r.Live() {
		mfs, err := c.Node().Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		check(c.Node().Centre()+"'s metrics", fmt.Sprint(mfs))
		roster, err := json.Marshal(c.Node().Roster())
		if err != nil {
			t.Fatal(err)
		}
		check(c.Node().Centre()+"'s roster", string(roster))
	}
	files := 0
	err := filepath.WalkDir(r.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		check(path, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 || len(r.logs.String()) == 0 {
		t.Fatalf("nothing to scan: %d files, %d bytes of logs", files, len(r.logs.String()))
	}
	if len(places) > 0 {
		t.Fatalf("the caller left a trace: %s", strings.Join(places, "; "))
	}
}

// Nobody free anywhere: 480 with Retry-After and no contact counted, the
// caller staying in the PBX's queue; a volunteer who then goes available
// gets the next INVITE's call, here through the centre's own ingress.
func TestCallWhenNobodyIsFreeThenAVolunteerIs(t *testing.T) {
	f := phoneFed(t, 1, nil)
	c1 := f.Member("c1")
	pbx := siptest.NewCallerPBX(t)
	res := askQueue(t, pbx, c1)
	if res.StatusCode != sip.StatusTemporarilyUnavailable || res.GetHeader("Retry-After") == nil {
		t.Fatalf("nobody free: %d %v, want 480 with Retry-After", res.StatusCode, res.GetHeader("Retry-After"))
	}
	if tl := phoneTally(c1); tl.Offered != 0 {
		t.Fatalf("a call nobody could take was counted: %+v", tl)
	}
	phone := siptest.NewPhone(t, siptest.Answer)
	phoneVolunteer(t, c1, "v-a", phone.URI())
	to := redirected(t, pbx, c1)
	if got := fmt.Sprintf("%s:%d", to.Host, to.Port); got != c1.SIPAddr() {
		t.Fatalf("302 to %s, want our own ingress %s", got, c1.SIPAddr())
	}
	call := pbx.InviteURI(t, to)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := call.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = call.Ack(ctx)
	_ = call.Bye(ctx)
	fedtest.Eventually(t, 5*time.Second, "answered here", func() bool { return phoneTally(c1).AnsweredLocal == 1 })
	conservedCalls(t, c1)
}

// The answering centre dies between the 302 and the call's arrival: the
// token call gets no answer there (the PBX's own timer then sends the
// caller to its queue), and the owning centre counts the call returned to
// a PBX's queue, its KPIs conserved.
func TestCallWhenTheAnsweringCentreDiesBeforeTheCallArrives(t *testing.T) {
	f := phoneFed(t, 2, nil)
	c1, c2 := f.Member("c1"), f.Member("c2")
	pbx := siptest.NewCallerPBX(t)
	phone := siptest.NewPhone(t, siptest.Answer)
	phoneVolunteer(t, c2, "v-b", phone.URI())
	to := redirected(t, pbx, c1)
	f.Kill("c2")
	call := pbx.InviteURI(t, to)
	// 3 s stands for the PBX's fr_timer; the forced cancel stops sipgo
	// waiting out Timer B (32 s) for a provisional answer that never comes.
	ctx, cancel := context.WithTimeoutCause(context.Background(), 3*time.Second, sipgo.WaitAnswerForceCancelErr)
	defer cancel()
	if err := call.WaitAnswer(ctx, sipgo.AnswerOptions{}); err == nil {
		t.Fatal("a dead centre answered the call")
	}
	fedtest.Eventually(t, 20*time.Second, "c1 counts the call returned", func() bool { return phoneTally(c1).Returned == 1 })
	conservedCalls(t, c1)
	select {
	case <-phone.Invites:
		t.Fatal("the volunteer's phone rang after their centre died")
	default:
	}
}

// A held volunteer whose call never comes is freed when the lease runs
// out; the late call gets 410 (the PBX queues the caller), and the owner
// counts it returned.
func TestCallLeaseRunsOut(t *testing.T) {
	f := phoneFed(t, 1, func(_ string, cfg *centre.Config) { cfg.Node.CallLease = time.Second })
	c1 := f.Member("c1")
	pbx := siptest.NewCallerPBX(t)
	phone := siptest.NewPhone(t, siptest.Answer)
	_, desk := phoneVolunteer(t, c1, "v-a", phone.URI())
	to := redirected(t, pbx, c1)
	fedtest.Eventually(t, 5*time.Second, "the volunteer freed", func() bool { return desk.has("withdrawn the call did not come through") })
	call := pbx.InviteURI(t, to)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if got := siptest.FinalResponse(t, call.WaitAnswer(ctx, sipgo.AnswerOptions{})).StatusCode; got != sip.StatusGone {
		t.Fatalf("late call: %d, want 410", got)
	}
	if tl := phoneTally(c1); tl.Returned != 1 || tl.Waiting != 0 {
		t.Fatalf("after the lease: %+v", tl)
	}
	// The volunteer takes the next call.
	if res := askQueue(t, pbx, c1); res.StatusCode != sip.StatusMovedTemporarily {
		t.Fatalf("next call: %d, want 302", res.StatusCode)
	}
}

// The PBX's menu choice reaches the volunteer: an INVITE with Priority:
// emergency rings the desk marked urgent and is counted as an urgent call
// (the header's other values: sip's TestCallUrgent).
func TestUrgentCallFromThePBXMenu(t *testing.T) {
	f := phoneFed(t, 1, nil)
	c1 := f.Member("c1")
	pbx := siptest.NewCallerPBX(t)
	phone := siptest.NewPhone(t, siptest.Held)
	_, desk := phoneVolunteer(t, c1, "v-a", phone.URI())
	ask := func(priority string) *sip.Response {
		d := pbx.InviteWith(t, ingress(t, c1), "queue-nb", sip.NewHeader("Priority", priority))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return siptest.FinalResponse(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{}))
	}
	if res := ask("emergency"); res.StatusCode != sip.StatusMovedTemporarily {
		t.Fatalf("urgent call: %d, want 302", res.StatusCode)
	}
	fedtest.Eventually(t, 5*time.Second, "the urgent call's card", func() bool { return desk.has("offer phone nb from  urgent") })
	if n := c1.Node().Switchboard().Stats().UrgentContacts[switchboard.ChannelPhone]; n != 1 {
		t.Fatalf("urgent calls counted %d, want 1", n)
	}
	if v := metric(t, c1, "helpmesh_urgent_contacts_total", map[string]string{"channel": "phone"}); v != 1 {
		t.Fatalf("helpmesh_urgent_contacts_total{channel=phone} = %v, want 1", v)
	}
}
