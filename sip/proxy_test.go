package sip

import (
	"context"
	"errors"
	"fmt"
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

// sipEnd is a real sipgo UA on its own loopback address and port, with a
// server and a client that sends from the same socket: the caller side's
// PBX on 127.0.0.1 (the allowlisted prefix), or the volunteer's phone on
// 127.0.0.3 (allowed only while its call is proxied).
type sipEnd struct {
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	addr   netip.AddrPort
	close  func() // stops serving and closes the UA; once, also at cleanup
}

// register adds the handlers, before the UA serves (sipgo's handler map is
// not safe to change while serving).
func newSipEnd(t testing.TB, ip string, register func(*sipEnd)) *sipEnd {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname(ip),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(ip), sipgo.WithClientPort(int(addr.Port())),
		sipgo.WithClientConnectionAddr(addr.String()), sipgo.WithClientLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	e := &sipEnd{ua: ua, srv: srv, client: client, addr: addr}
	register(e)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeUDP(conn)
	}()
	e.close = sync.OnceFunc(func() {
		_ = conn.Close()
		<-done
		ua.Close()
	})
	t.Cleanup(e.close)
	// Ready once the client can send from the served socket (sipgo adds it
	// to its pool inside ServeUDP): an OPTIONS to itself gets an answer.
	fedtest.Eventually(t, 5*time.Second, "the UA serving", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: ip, Port: int(addr.Port())})
		_, err := client.Do(ctx, req)
		return err == nil
	})
	return e
}

func (e *sipEnd) contact(user string) sip.ContactHeader {
	return sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: e.addr.Addr().String(), Port: int(e.addr.Port())}}
}

// volunteerPhone is the reserved volunteer's phone: a sipgo UAS that
// answers each INVITE as answer says and records what reached it.
type volunteerPhone struct {
	*sipEnd
	dialogs *sipgo.DialogServerCache
	invites chan *sip.Request
	acks    chan *sip.Request
	byes    chan *sip.Request
	infos   chan *sip.Request
	cancels chan struct{}
	session chan *sipgo.DialogServerSession
	// pickUp, when set, holds the 200 after the 180 until it is closed (a
	// 180 and a 200 sent together may pass each other: sipgo handles each
	// datagram in its own goroutine).
	pickUp chan struct{}
}

// phoneSDP is the volunteer phone's media offer answer; it must reach the
// caller side unchanged (the node never touches the SDP).
const phoneSDP = "v=0\r\no=vol 1 1 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"

// answer decides what the phone does with an INVITE: "200" (ring, then
// pick up), "486" (busy), "ring" (ring until cancelled).
func newVolunteerPhone(t testing.TB, answer string) *volunteerPhone {
	t.Helper()
	v := &volunteerPhone{
		invites: make(chan *sip.Request, 4),
		acks:    make(chan *sip.Request, 4),
		byes:    make(chan *sip.Request, 4),
		infos:   make(chan *sip.Request, 4),
		cancels: make(chan struct{}, 4),
		session: make(chan *sipgo.DialogServerSession, 4),
	}
	v.sipEnd = newSipEnd(t, "127.0.0.3", func(e *sipEnd) {
		v.dialogs = sipgo.NewDialogServerCache(e.client, e.contact("vol"))
		e.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			v.invites <- req
			if answer == "486" {
				_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusBusyHere, "Busy Here", nil))
				return
			}
			d, err := v.dialogs.ReadInvite(req, tx)
			if err != nil {
				t.Errorf("phone: read INVITE: %v", err)
				return
			}
			tx.OnCancel(func(*sip.Request) { v.cancels <- struct{}{} })
			switch answer {
			case "200":
				_ = d.Respond(sip.StatusRinging, "Ringing", nil)
				if v.pickUp != nil {
					<-v.pickUp
				}
				ct := sip.ContentTypeHeader("application/sdp")
				_ = d.Respond(sip.StatusOK, "OK", []byte(phoneSDP), &ct)
				v.session <- d
			default:
				_ = d.Respond(sip.StatusRinging, "Ringing", nil)
				<-tx.Done()
			}
		})
		e.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = v.dialogs.ReadAck(req, tx)
			v.acks <- req
		})
		e.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			if err := v.dialogs.ReadBye(req, tx); err != nil {
				t.Errorf("phone: BYE: %v", err)
			}
			v.byes <- req
		})
		e.srv.OnInfo(func(req *sip.Request, tx sip.ServerTransaction) {
			_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
			v.infos <- req
		})
	})
	return v
}

func (v *volunteerPhone) uri() string {
	return fmt.Sprintf("sip:vol@%s", v.addr)
}

// callerPBX is the caller side: the PBX relaying the caller's INVITE for a
// token to this node, a sipgo dialog UAC on 127.0.0.1.
type callerPBX struct {
	*sipEnd
	dialogs *sipgo.DialogClientCache
	byes    chan *sip.Request
}

// The caller's identity in the test calls: number and display name in From
// and Contact, and an address in the SDP; none may reach a log.
const (
	canaryNumber = "4790012345"
	canaryName   = "Canary Zqxjkv"
	callerSDP    = "v=0\r\no=4790012345 1 1 IN IP4 127.0.0.1\r\ns=Canary Zqxjkv\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 41000 RTP/AVP 0\r\n"
)

func newCallerPBX(t testing.TB) *callerPBX {
	t.Helper()
	c := &callerPBX{byes: make(chan *sip.Request, 4)}
	c.sipEnd = newSipEnd(t, "127.0.0.1", func(e *sipEnd) {
		ct := e.contact(canaryNumber)
		ct.DisplayName = canaryName
		c.dialogs = sipgo.NewDialogClientCache(e.client, ct)
		e.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
			if err := c.dialogs.ReadBye(req, tx); err != nil {
				t.Errorf("caller: BYE: %v", err)
			}
			c.byes <- req
		})
	})
	return c
}

// invite calls tok at the node with the caller's canary identity and SDP.
func (c *callerPBX) invite(t testing.TB, node netip.AddrPort, tok string) *sipgo.DialogClientSession {
	t.Helper()
	from := &sip.FromHeader{DisplayName: canaryName, Address: sip.Uri{Scheme: "sip", User: canaryNumber, Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	ct := sip.ContentTypeHeader("application/sdp")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := c.dialogs.Invite(ctx, sip.Uri{Scheme: "sip", User: tok, Host: node.Addr().String(), Port: int(node.Port())}, []byte(callerSDP), from, &ct)
	if err != nil {
		t.Fatalf("INVITE: %v", err)
	}
	return d
}

// proxyHarness starts an ingress and registers, before it, the check that
// runs after its Stop: every call's lifecycle as the test expects it.
func proxyHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	return startIngress(t, redirectTo("sip:x@127.0.0.1:5064"), edit)
}

func receive[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		var zero T
		return zero
	}
}

func finalStatus(t testing.TB, err error) int {
	t.Helper()
	var de *sipgo.ErrDialogResponse
	if !errors.As(err, &de) {
		t.Fatalf("want a final non-2xx answer, got %v", err)
	}
	return de.Res.StatusCode
}

// Pick-up, ACK through the node, BYE from the caller: the phone got the
// INVITE with the node's Via and Record-Route, Max-Forwards one less, the
// caller's SDP untouched; the caller got the phone's SDP untouched; the Call
// heard Arrived, PickedUp, Ended(caller).
func TestProxyPickUpThenCallerHangsUp(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "picked-up", "ended:caller") })
	phone := newVolunteerPhone(t, "200")
	phone.pickUp = make(chan struct{})
	call.phone = phone.uri()
	h := proxyHarness(t, nil)
	caller := newCallerPBX(t)
	d := caller.invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	var ringing bool
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		if res.StatusCode == sip.StatusRinging && !ringing {
			ringing = true
			close(phone.pickUp)
		}
		return nil
	}}); err != nil {
		t.Fatalf("caller: %v", err)
	}
	if !ringing {
		t.Errorf("the caller side heard no 180 Ringing")
	}
	if got := string(d.InviteResponse.Body()); got != phoneSDP {
		t.Errorf("caller got SDP %q, want the phone's unchanged", got)
	}
	inv := receive(t, phone.invites, "INVITE at the phone")
	if string(inv.Body()) != callerSDP {
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
	ack := receive(t, phone.acks, "ACK at the phone")
	if len(ack.GetHeaders("Via")) != 2 {
		t.Errorf("ACK did not come through the node: %d Via", len(ack.GetHeaders("Via")))
	}
	// The phone resends its 200 (as it would if the ACK were lost): the
	// node relays it statelessly to the caller side, which ACKs again.
	vs := receive(t, phone.session, "the phone's dialog")
	resend, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.3:0")), net.UDPAddrFromAddrPort(h.in.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer resend.Close()
	if _, err := resend.Write([]byte(vs.InviteResponse.String())); err != nil {
		t.Fatal(err)
	}
	receive(t, phone.acks, "the ACK of the retransmitted 200")
	// An in-dialog request other than BYE (INFO here) goes through the node
	// both ways and ends nothing.
	info, err := d.Do(ctx, sip.NewRequest(sip.INFO, d.InviteResponse.Contact().Address))
	if err != nil || info.StatusCode != sip.StatusOK {
		t.Fatalf("INFO: %v %v", info, err)
	}
	if got := receive(t, phone.infos, "INFO at the phone"); len(got.GetHeaders("Via")) != 2 {
		t.Errorf("INFO did not come through the node")
	}
	if err := d.Bye(ctx); err != nil {
		t.Fatalf("caller BYE: %v", err)
	}
	receive(t, phone.byes, "BYE at the phone")
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
	phone := newVolunteerPhone(t, "200")
	call.phone = phone.uri()
	h := proxyHarness(t, nil)
	d := newCallerPBX(t).invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	receive(t, phone.acks, "ACK at the phone")
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
		res, err := phone.client.Do(ctx, req)
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
	phone := newVolunteerPhone(t, "200")
	call.phone = phone.uri()
	h := proxyHarness(t, nil)
	caller := newCallerPBX(t)
	d := caller.invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	receive(t, phone.acks, "ACK at the phone")
	vs := receive(t, phone.session, "the phone's dialog")
	if err := vs.Bye(ctx); err != nil {
		t.Fatalf("phone BYE: %v", err)
	}
	bye := receive(t, caller.byes, "BYE at the caller side")
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
	phone := newVolunteerPhone(t, "ring")
	call.phone = phone.uri()
	h := proxyHarness(t, nil)
	caller := newCallerPBX(t)
	d := caller.invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
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
	receive(t, phone.cancels, "CANCEL at the phone")
	call.wait(t, "ended:caller")
}

// The phone is busy: its 486 reaches the caller side (so the PBX queues
// the caller), and the Call hears Ended(unanswered).
func TestProxyPhoneBusy(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "ended:unanswered") })
	phone := newVolunteerPhone(t, "486")
	call.phone = phone.uri()
	h := proxyHarness(t, nil)
	d := newCallerPBX(t).invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code := finalStatus(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{})); code != sip.StatusBusyHere {
		t.Fatalf("caller side got %d, want 486", code)
	}
	call.wait(t, "ended:unanswered")
}

// The phone rings past RingTimeout: it gets CANCEL, the caller side 480,
// the Call Ended(unanswered).
func TestProxyRingTimeout(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "ended:unanswered") })
	phone := newVolunteerPhone(t, "ring")
	call.phone = phone.uri()
	h := proxyHarness(t, func(c *Config) { c.RingTimeout = 300 * time.Millisecond })
	d := newCallerPBX(t).invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if code := finalStatus(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{})); code != sip.StatusTemporarilyUnavailable {
		t.Fatalf("caller side got %d, want 480", code)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 5*time.Second {
		t.Errorf("480 after %v, want about RingTimeout", took)
	}
	receive(t, phone.cancels, "CANCEL at the phone")
	call.wait(t, "ended:unanswered")
}

// A phone that cannot be reached (nothing listens) ends as unanswered with
// 480, after sipgo's Timer B at worst; here the ring timeout comes first.
func TestProxyPhoneUnreachable(t *testing.T) {
	call := newTestCall("sip:vol@127.0.0.3:9") // discard port: nothing answers
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "ended:unanswered") })
	h := proxyHarness(t, func(c *Config) { c.RingTimeout = 300 * time.Millisecond })
	d := newCallerPBX(t).invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if code := finalStatus(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{})); code != sip.StatusTemporarilyUnavailable {
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
	phone := newVolunteerPhone(t, "200")
	call.phone = phone.uri()
	h := proxyHarness(t, nil)
	res := newPhone(t, "127.0.0.1").do(t, sip.INVITE, h.tokens.Issue(call, time.Minute), h.in.Addr())
	if res.StatusCode != sip.StatusGone {
		t.Fatalf("Arrived error: %d %s, want 410", res.StatusCode, res.Reason)
	}
	select {
	case <-phone.invites:
		t.Fatal("the phone rang for a reservation that was gone")
	default:
	}
}

// A picked-up call whose BYE never passes the node ends as unknown after
// MaxCallLength and is forgotten: a late BYE for it gets 481.
func TestProxyMaxCallLength(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "picked-up", "ended:unknown") })
	phone := newVolunteerPhone(t, "200")
	call.phone = phone.uri()
	h := proxyHarness(t, func(c *Config) { c.MaxCallLength = 500 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := newCallerPBX(t).invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
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
	phone := newVolunteerPhone(t, "ring")
	call.phone = phone.uri()
	h := proxyHarness(t, nil)
	d := newCallerPBX(t).invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
	receive(t, phone.invites, "INVITE at the phone")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	answer := make(chan error, 1)
	go func() { answer <- d.WaitAnswer(ctx, sipgo.AnswerOptions{}) }()
	if err := h.in.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if code := finalStatus(t, receive(t, answer, "the caller side's answer")); code != sip.StatusTemporarilyUnavailable {
		t.Errorf("caller side got %d, want 480", code)
	}
	receive(t, phone.cancels, "CANCEL at the phone")
	call.wait(t, "ended:unanswered")
}

// A picked-up call still up when the ingress stops ends as unknown: the
// node will not see its BYE.
func TestProxyStopEndsAnsweredCall(t *testing.T) {
	call := newTestCall("")
	t.Cleanup(func() { checkLifecycle(t, call, "arrived", "picked-up", "ended:unknown") })
	phone := newVolunteerPhone(t, "200")
	call.phone = phone.uri()
	h := proxyHarness(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := newCallerPBX(t).invite(t, h.in.Addr(), h.tokens.Issue(call, time.Minute))
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
	caller := newCallerPBX(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var secrets []string

	answered := newTestCall("")
	phone := newVolunteerPhone(t, "200")
	answered.phone = phone.uri()
	tok := h.tokens.Issue(answered, time.Minute)
	d := caller.invite(t, h.in.Addr(), tok)
	if err := d.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.Ack(ctx); err != nil {
		t.Fatal(err)
	}
	receive(t, phone.acks, "ACK at the phone")
	vs := receive(t, phone.session, "the phone's dialog")
	if err := vs.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	receive(t, caller.byes, "BYE at the caller side")
	answered.wait(t, "ended:volunteer")
	fromTag, _ := d.InviteRequest.From().Params.Get("tag")
	toTag, _ := d.InviteResponse.To().Params.Get("tag")
	secrets = append(secrets, tok, d.InviteRequest.CallID().Value(), fromTag, toTag)

	busy := newTestCall(newVolunteerPhone(t, "486").uri())
	tok = h.tokens.Issue(busy, time.Minute)
	d = caller.invite(t, h.in.Addr(), tok)
	finalStatus(t, d.WaitAnswer(ctx, sipgo.AnswerOptions{}))
	busy.wait(t, "ended:unanswered")
	secrets = append(secrets, tok, d.InviteRequest.CallID().Value())

	ringing := newTestCall(newVolunteerPhone(t, "ring").uri())
	tok = h.tokens.Issue(ringing, time.Minute)
	d = caller.invite(t, h.in.Addr(), tok)
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
	for _, canary := range append(secrets, canaryNumber, "Canary", "Zqxjkv", "m=audio", "41000", "40000") {
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
