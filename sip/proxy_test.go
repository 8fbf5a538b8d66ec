package sip

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/siptest"
)

// testCall stands in for the switchboard reservation the lead wires to the
// TokenStore: it records what the ingress tells it, in order.
type testCall struct {
	phone     string
	arriveErr error

	mu     sync.Mutex
	events []string
	signal chan struct{} // one tick per event
}

func newTestCall(phone string) *testCall {
	return &testCall{phone: phone, signal: make(chan struct{}, 64)}
}

func (c *testCall) Phone() string { return c.phone }
func (c *testCall) Arrived() error {
	c.record("arrived")
	return c.arriveErr
}
func (c *testCall) PickedUp()       { c.record("picked-up") }
func (c *testCall) Ended(by string) { c.record("ended:" + by) }

func (c *testCall) record(e string) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
	c.signal <- struct{}{}
}

func (c *testCall) log() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

// wait blocks until event has been recorded.
func (c *testCall) wait(t testing.TB, event string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !slices.Contains(c.log(), event) {
		select {
		case <-c.signal:
		case <-deadline:
			t.Fatalf("no %q; the call heard %v", event, c.log())
		}
	}
}

// checkLifecycle asserts the Call contract on a finished call: Arrived
// first, PickedUp at most once and before Ended, exactly one Ended, and
// that it is want.
func checkLifecycle(t testing.TB, c *testCall, want ...string) {
	t.Helper()
	got := c.log()
	ended, picked := 0, 0
	for i, e := range got {
		switch {
		case e == "arrived" && i != 0:
			t.Errorf("Arrived at %d: %v", i, got)
		case e == "picked-up":
			picked++
			if ended > 0 {
				t.Errorf("PickedUp after Ended: %v", got)
			}
		case strings.HasPrefix(e, "ended:"):
			ended++
		}
	}
	if ended != 1 || picked > 1 {
		t.Errorf("%d Ended and %d PickedUp: %v", ended, picked, got)
	}
	if !slices.Equal(got, want) {
		t.Errorf("call heard %v, want %v", got, want)
	}
}

// refusedWith calls call's token at the ingress from the caller side's PBX
// and returns the final non-2xx answer it got.
func refusedWith(t *testing.T, h *harness, call *testCall) int {
	t.Helper()
	d := siptest.NewCallerPBX(t).Invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return siptest.FinalResponse(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{})).StatusCode
}

// proxyHarness starts an ingress and registers, before it, the check that
// runs after its Stop: every call's lifecycle as the test expects it.
func proxyHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	return startIngress(t, redirectTo("sip:x@127.0.0.1:5064"), edit)
}

// Pick-up, ACK through the node, BYE from the caller: the phone got the
// INVITE with the node's Via and Record-Route, Max-Forwards one less, the
// caller's SDP untouched; the caller got the phone's SDP untouched; the Call
// heard Arrived, PickedUp, Ended(caller).
func TestProxyPickUpThenCallerHangsUp(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "picked-up", "ended:caller") })
	phone := siptest.NewPhone(t, siptest.Held)
	call.phone = phone.URI()
	h := proxyHarness(t, nil)
	caller := siptest.NewCallerPBX(t)
	d := caller.Invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	var ringing bool
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode == sip.StatusRinging && !ringing {
			ringing = true
			close(phone.PickUp)
		}
		return nil
	}}); err != nil {
		t.Fatalf("caller: %v", err)
	}
	if !ringing {
		t.Errorf("the caller side heard no 180 Ringing")
	}
	if got := string(d.InviteResponse.Body()); got != siptest.PhoneSDP {
		t.Errorf("caller got SDP %q, want the phone's unchanged", got)
	}
	inv := siptest.Receive(t, phone.Invites, "INVITE at the phone")
	if string(inv.Body()) != siptest.CallerSDP {
		t.Errorf("phone got SDP %q, want the caller's unchanged", inv.Body())
	}
	rr := inv.RecordRoute()
	if rr == nil || rr.Address.Host != "127.0.0.1" || rr.Address.Port != int(h.in.Addr().Port()) || !rr.Address.UriParams.Has("lr") {
		t.Errorf("Record-Route %v, want the node with lr", rr)
	}
	if vias := inv.GetHeaders("Via"); len(vias) != 2 {
		t.Errorf("phone saw %d Via, want 2 (node and caller side)", len(vias))
	}
	if mf := inv.MaxForwards(); mf == nil || mf.Val() != 69 {
		t.Errorf("Max-Forwards %v, want 69", mf)
	}
	if inv.Recipient.User != "vol" {
		t.Errorf("Request-URI user %q, want the phone's", inv.Recipient.User)
	}
	call.wait(t, "picked-up")
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	ack := siptest.Receive(t, phone.Acks, "ACK at the phone")
	if len(ack.GetHeaders("Via")) != 2 {
		t.Errorf("ACK did not come through the node: %d Via", len(ack.GetHeaders("Via")))
	}
	// The phone resends its 200 (as it would if the ACK were lost): the
	// node relays it statelessly to the caller side, which ACKs again.
	vs := siptest.Receive(t, phone.Sessions, "the phone's dialog")
	resend, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.3:0")), net.UDPAddrFromAddrPort(h.in.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer resend.Close()
	// Resent as a phone does until the ACK comes (RFC 3261 13.3.1.4:
	// T1, doubling): one datagram alone may meet the caller side's dialog
	// between states.
	acked := false
	for wait := 500 * time.Millisecond; !acked && wait <= 4*time.Second; wait *= 2 {
		if _, err := resend.Write([]byte(vs.InviteResponse.String())); err != nil {
			t.Fatal(err)
		}
		select {
		case <-phone.Acks:
			acked = true
		case <-time.After(wait):
		}
	}
	if !acked {
		t.Fatal("no ACK of the retransmitted 200 through the node")
	}
	// An in-dialog request other than BYE (INFO here) goes through the node
	// both ways and ends nothing.
	info, err := d.Do(ctx, sip.NewRequest(sip.INFO, d.InviteResponse.Contact().Address))
	if err != nil || info.StatusCode != sip.StatusOK {
		t.Fatalf("INFO: %v %v", info, err)
	}
	if got := siptest.Receive(t, phone.Infos, "INFO at the phone"); len(got.GetHeaders("Via")) != 2 {
		t.Errorf("INFO did not come through the node")
	}
	if err := d.Bye(ctx); err != nil {
		t.Fatalf("caller BYE: %v", err)
	}
	siptest.Receive(t, phone.Byes, "BYE at the phone")
	call.wait(t, "ended:caller")
	fedtest.Eventually(t, 10*time.Second, "the call forgotten", func() bool { return h.in.calls.len() == 0 })
}

// The node relays in-dialog requests only between a call's two sides: the
// phone claiming to be the caller side (the caller's From tag) is refused,
// as is the phone routing a request anywhere but to the PBX; the call goes
// on, and the real BYE ends it once.
func TestProxyInDialogSidesChecked(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "picked-up", "ended:caller") })
	phone := siptest.NewPhone(t, siptest.Answer)
	call.phone = phone.URI()
	h := proxyHarness(t, nil)
	d := siptest.NewCallerPBX(t).Invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	siptest.Receive(t, phone.Acks, "ACK at the phone")
	node := sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(h.in.Addr().Port()), UriParams: sip.NewParams()}
	node.UriParams.Add("lr", "")
	spoof := func(from *sip.FromHeader, to *sip.ToHeader, target sip.Uri) int {
		req := sip.NewRequest(sip.BYE, target)
		req.AppendHeader(&sip.RouteHeader{Address: node})
		req.AppendHeader(from)
		req.AppendHeader(to)
		req.AppendHeader(sip.HeaderClone(d.InviteRequest.CallID()))
		req.AppendHeader(&sip.CSeqHeader{SeqNo: 99, MethodName: sip.BYE})
		req.SetDestination(h.in.Addr().String())
		res, err := phone.Client.Do(ctx, req)
		if err != nil {
			t.Fatalf("spoofed BYE: %v", err)
		}
		return res.StatusCode
	}
	callerFrom := sip.HeaderClone(d.InviteRequest.From()).(*sip.FromHeader)
	phoneTo := sip.HeaderClone(d.InviteResponse.To()).(*sip.ToHeader)
	callerContact := d.InviteRequest.Contact().Address
	// The phone sending as the caller side (From tag the caller's).
	if code := spoof(callerFrom, phoneTo, callerContact); code != sip.StatusForbidden {
		t.Errorf("phone as caller side: %d, want 403", code)
	}
	// The phone sending as itself, but to an address that is not the PBX.
	asPhoneFrom := phoneTo.AsFrom()
	asPhoneTo := callerFrom.AsTo()
	elsewhere := sip.Uri{Scheme: "sip", User: "x", Host: "127.0.0.9", Port: 5060}
	if code := spoof(&asPhoneFrom, &asPhoneTo, elsewhere); code != sip.StatusForbidden {
		t.Errorf("phone routing elsewhere: %d, want 403", code)
	}
	if n := h.refused(t, reasonBadRoute); n != 2 {
		t.Errorf("bad_route refusals %d, want 2", n)
	}
	if slices.Contains(call.log(), "ended:caller") || slices.Contains(call.log(), "ended:volunteer") {
		t.Fatalf("a refused BYE ended the call: %v", call.log())
	}
	if err := d.Bye(ctx); err != nil {
		t.Fatalf("caller BYE: %v", err)
	}
	call.wait(t, "ended:caller")
}

// Pick-up, then the volunteer hangs up: the BYE comes from the phone's own
// address (allowed only because its call is proxied), goes back to the
// caller side through the node, and the Call hears Ended(volunteer).
func TestProxyVolunteerHangsUp(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "picked-up", "ended:volunteer") })
	phone := siptest.NewPhone(t, siptest.Answer)
	call.phone = phone.URI()
	h := proxyHarness(t, nil)
	caller := siptest.NewCallerPBX(t)
	d := caller.Invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	siptest.Receive(t, phone.Acks, "ACK at the phone")
	vs := siptest.Receive(t, phone.Sessions, "the phone's dialog")
	if err := vs.Bye(ctx); err != nil {
		t.Fatalf("phone BYE: %v", err)
	}
	bye := siptest.Receive(t, caller.Byes, "BYE at the caller side")
	if len(bye.GetHeaders("Via")) != 2 {
		t.Errorf("BYE did not come through the node: %d Via", len(bye.GetHeaders("Via")))
	}
	call.wait(t, "ended:volunteer")
}

// The caller hangs up while the phone rings: the caller side gets 487, the
// phone gets CANCEL, the Call hears Ended(caller) without PickedUp.
func TestProxyCancelBeforePickUp(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "ended:caller") })
	phone := siptest.NewPhone(t, siptest.Ring)
	call.phone = phone.URI()
	h := proxyHarness(t, nil)
	caller := siptest.NewCallerPBX(t)
	d := caller.Invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	err := d.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode == sip.StatusRinging {
			cancel() // WaitAnswer sends CANCEL
		}
		return nil
	}})
	if err == nil {
		t.Fatal("a cancelled call was answered")
	}
	siptest.Receive(t, phone.Cancels, "CANCEL at the phone")
	call.wait(t, "ended:caller")
}

// The phone is busy: its 486 reaches the caller side (so the PBX queues
// the caller), and the Call hears Ended(unanswered).
func TestProxyPhoneBusy(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "ended:unanswered") })
	phone := siptest.NewPhone(t, siptest.Busy)
	call.phone = phone.URI()
	h := proxyHarness(t, nil)
	if code := refusedWith(t, h, call); code != sip.StatusBusyHere {
		t.Fatalf("caller side got %d, want 486", code)
	}
	call.wait(t, "ended:unanswered")
}

// The phone rings past RingTimeout: it gets CANCEL, the caller side 480,
// the Call Ended(unanswered).
func TestProxyRingTimeout(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "ended:unanswered") })
	phone := siptest.NewPhone(t, siptest.Ring)
	call.phone = phone.URI()
	h := proxyHarness(t, func(c *Config) { c.RingTimeout = 300 * time.Millisecond })
	d := siptest.NewCallerPBX(t).Invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if code := siptest.FinalResponse(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{})).StatusCode; code != sip.StatusTemporarilyUnavailable {
		t.Fatalf("caller side got %d, want 480", code)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 5*time.Second {
		t.Errorf("480 after %v, want about RingTimeout", took)
	}
	siptest.Receive(t, phone.Cancels, "CANCEL at the phone")
	call.wait(t, "ended:unanswered")
}

// A phone that cannot be reached (nothing listens) ends as unanswered with
// 480, after sipgo's Timer B at worst; here the ring timeout comes first.
func TestProxyPhoneUnreachable(t *testing.T) {
	call := newTestCall("sip:vol@127.0.0.3:9") // discard port: nothing answers
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "ended:unanswered") })
	h := proxyHarness(t, func(c *Config) { c.RingTimeout = 300 * time.Millisecond })
	if code := refusedWith(t, h, call); code != sip.StatusTemporarilyUnavailable {
		t.Fatalf("caller side got %d, want 480", code)
	}
	call.wait(t, "ended:unanswered")
}

// The reservation is gone when the call arrives: 410, the phone never
// rings, and the Call still hears its one Ended.
func TestProxyArrivedError(t *testing.T) {
	call := newTestCall("")
	call.arriveErr = errors.New("lease ran out")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "ended:unanswered") })
	phone := siptest.NewPhone(t, siptest.Answer)
	call.phone = phone.URI()
	h := proxyHarness(t, nil)
	res := newPhone(t, "127.0.0.1").do(t, sip.INVITE, h.tokens.Issue(call, time.Minute), h.in.Addr())
	if res.StatusCode != sip.StatusGone {
		t.Fatalf("Arrived error: %d %s, want 410", res.StatusCode, res.Reason)
	}
	select {
	case <-phone.Invites:
		t.Fatal("the phone rang for a reservation that was gone")
	default:
	}
}

// A picked-up call whose BYE never passes the node ends as unknown after
// MaxCallLength and is forgotten: a late BYE for it gets 481.
func TestProxyMaxCallLength(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "picked-up", "ended:unknown") })
	phone := siptest.NewPhone(t, siptest.Answer)
	call.phone = phone.URI()
	h := proxyHarness(t, func(c *Config) { c.MaxCallLength = 500 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := siptest.NewCallerPBX(t).Invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	call.wait(t, "ended:unknown")
	fedtest.Eventually(t, 10*time.Second, "the call forgotten", func() bool { return h.in.calls.len() == 0 })
	if err := d.Bye(ctx); err == nil {
		t.Errorf("BYE for a forgotten call succeeded")
	}
	if n := h.refused(t, reasonNoCall); n != 1 {
		t.Errorf("no_call refusals %d, want 1", n)
	}
}

// Stop while the phone rings: the caller side gets 480, the phone CANCEL,
// the Call Ended(unanswered), and Stop returns.
func TestProxyStopWhileRinging(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "ended:unanswered") })
	phone := siptest.NewPhone(t, siptest.Ring)
	call.phone = phone.URI()
	h := proxyHarness(t, nil)
	d := siptest.NewCallerPBX(t).Invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	siptest.Receive(t, phone.Invites, "INVITE at the phone")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer := make(chan error, 1)
	go func() { answer <- d.WaitAnswer(ctx, sipgo.AnswerOptions{}) }()
	if err := h.in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if code := siptest.FinalResponse(t, siptest.Receive(t, answer, "the caller side's answer")).StatusCode; code != sip.StatusTemporarilyUnavailable {
		t.Errorf("caller side got %d, want 480", code)
	}
	siptest.Receive(t, phone.Cancels, "CANCEL at the phone")
	call.wait(t, "ended:unanswered")
}

// A picked-up call still up when the ingress stops ends as unknown: the
// node will not see its BYE.
func TestProxyStopEndsAnsweredCall(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "picked-up", "ended:unknown") })
	phone := siptest.NewPhone(t, siptest.Answer)
	call.phone = phone.URI()
	h := proxyHarness(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := siptest.NewCallerPBX(t).Invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := h.in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	call.wait(t, "ended:unknown")
}

// Privacy on the proxy path: a picked-up call hung up by the volunteer, a
// busy phone and a call cancelled while ringing, with the caller's number
// and name in From, Contact and the SDP, leave none of them, nor the
// Call-IDs, tags, token or SDP, in any log line at debug level (sipgo's
// lines and slog's default logger included) or metric.
func TestPrivacyCanaryProxy(t *testing.T) {
	old := slog.Default()
	defer slog.SetDefault(old)
	h := proxyHarness(t, nil)
	slog.SetDefault(slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	caller := siptest.NewCallerPBX(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var secrets []string

	answered := newTestCall("")
	phone := siptest.NewPhone(t, siptest.Answer)
	answered.phone = phone.URI()
	tok := h.tokens.Issue(answered, time.Minute)
	d := caller.Invite(t, h.in.Addr(), tok)
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	siptest.Receive(t, phone.Acks, "ACK at the phone")
	vs := siptest.Receive(t, phone.Sessions, "the phone's dialog")
	if err := vs.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	siptest.Receive(t, caller.Byes, "BYE at the caller side")
	answered.wait(t, "ended:volunteer")
	fromTag, _ := d.InviteRequest.From().Params.Get("tag")
	toTag, _ := d.InviteResponse.To().Params.Get("tag")
	secrets = append(secrets, tok, d.InviteRequest.CallID().Value(), fromTag, toTag)

	busy := newTestCall(siptest.NewPhone(t, siptest.Busy).URI())
	tok = h.tokens.Issue(busy, time.Minute)
	d = caller.Invite(t, h.in.Addr(), tok)
	siptest.FinalResponse(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{}))
	busy.wait(t, "ended:unanswered")
	secrets = append(secrets, tok, d.InviteRequest.CallID().Value())

	ringing := newTestCall(siptest.NewPhone(t, siptest.Ring).URI())
	tok = h.tokens.Issue(ringing, time.Minute)
	d = caller.Invite(t, h.in.Addr(), tok)
	cctx, ccancel := context.WithCancel(ctx)
	_ = d.WaitAnswer(cctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode == sip.StatusRinging {
			ccancel()
		}
		return nil
	}})
	ringing.wait(t, "ended:caller")
	secrets = append(secrets, tok, d.InviteRequest.CallID().Value())

	logs := h.logs.String()
	if os.Getenv("SIP_DUMP_LOGS") != "" {
		t.Log(logs)
	}
	if !strings.Contains(logs, "level=DEBUG") || !strings.Contains(logs, "volunteer picked up") {
		t.Fatalf("the proxy wrote no debug lines; the canary check would prove nothing:\n%s", logs)
	}
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metrics strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			metrics.WriteString(m.String())
		}
	}
	for _, canary := range append(secrets, siptest.CanaryNumber, "Canary", "Zqxjkv", "m=audio", "41000", "40000") {
		if canary == "" {
			t.Fatalf("an empty secret: %q", secrets)
		}
		if strings.Contains(logs, canary) {
			t.Errorf("%q in the logs:\n%s", canary, logs)
		}
		if strings.Contains(metrics.String(), canary) {
			t.Errorf("%q in the metrics", canary)
		}
	}
}
