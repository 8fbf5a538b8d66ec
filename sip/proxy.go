package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Refusal reasons of the proxy path.
const (
	// reasonBadPhone: a reservation whose Phone() is not a SIP URI with an
	// IP literal host; the PBX got 480.
	reasonBadPhone = "bad_phone"
	// reasonNoCall: an in-dialog request (a To tag) for a call the node does
	// not proxy (481), or from a phone for another call.
	reasonNoCall = "no_call"
	// reasonBadRoute: an in-dialog request whose side (From tag) and source
	// address disagree, or whose next hop is neither the call's phone nor
	// the PBX (403): the node relays for its calls, not for anyone.
	reasonBadRoute = "bad_route"
)

// cancelWait bounds how long a cancelled leg waits for the phone's final
// answer (RFC 3261 9.1: 64*T1), so that its 487 is ACKed and a 200 that
// crossed the CANCEL is hung up.
const cancelWait = 32 * time.Second

// proxy rings the reserved volunteer's phone for a redeemed token: the node
// forwards the INVITE with its own Via and a Record-Route, so that it sees
// the answer and every later request of the call, while the SDP (and so
// the media) goes end to end untouched. Every way out gives the Call
// exactly one Ended (unless it is picked up, when a BYE or the sweep does)
// and answers the PBX.
func (in *Ingress) proxy(req *sip.Request, tx sip.ServerTransaction, call Call) {
	if _, ok := isBrowserPhone(call.Phone()); ok {
		in.answerToken(req, tx, call)
		return
	}
	st := &callState{call: call}
	in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil))
	if err := call.Arrived(); err != nil {
		in.refused.Refuse(reasonBadToken)
		in.log.Debug("sip: reservation gone on arrival", "error", err)
		st.end(EndedUnanswered)
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusGone, "Reservation Gone", nil))
		return
	}
	phoneURI, phone, err := phoneAddr(call.Phone())
	if err != nil {
		in.refused.Refuse(reasonBadPhone)
		in.log.Warn("sip: a reservation's phone is not a SIP URI with an IP address", "error", err)
		st.end(EndedUnanswered)
		in.unavailable(req, tx, in.cfg.RetryAfter)
		return
	}
	id := req.CallID().Value()
	fromTag, _ := req.From().Params.Get("tag")
	p := &proxied{state: st, callerTag: fromTag, phone: phone, began: time.Now()}
	if !in.calls.add(id, p) {
		in.refused.Refuse(reasonOverload)
		st.end(EndedUnanswered)
		in.unavailable(req, tx, in.cfg.RetryAfter)
		return
	}
	answered := false
	defer func() {
		if !answered {
			in.calls.remove(id, p)
		}
	}()

	fwd := req.Clone()
	fwd.Recipient = phoneURI
	in.popOwnRoute(fwd)
	fwd.SetDestination(phone.String())
	clTx, err := in.client.TransactionRequest(in.ctx, fwd, in.fromListener,
		sipgo.ClientRequestDecreaseMaxForward, sipgo.ClientRequestAddVia, sipgo.ClientRequestAddRecordRoute)
	if err != nil {
		st.end(EndedUnanswered)
		if mf := fwd.MaxForwards(); mf != nil && mf.Val() <= 0 {
			in.refused.Refuse(reasonLoop)
			in.respond(tx, sip.NewResponseFromRequest(req, 483, "Too Many Hops", nil))
			return
		}
		in.log.Debug("sip: ringing the phone failed", "error", err)
		in.unavailable(req, tx, in.cfg.RetryAfter)
		return
	}

	// sipgo's transaction layer answers the caller side's CANCEL itself
	// (200, then 487 for the INVITE); this hears of it.
	cancelled := make(chan struct{})
	var once sync.Once
	if !tx.OnCancel(func(*sip.Request) { once.Do(func() { close(cancelled) }) }) {
		once.Do(func() { close(cancelled) })
	}
	ring := time.NewTimer(in.cfg.RingTimeout)
	defer ring.Stop()
	for {
		select {
		case res := <-clTx.Responses():
			switch {
			case res.StatusCode == sip.StatusTrying:
				// Hop by hop: the PBX had ours.
			case res.IsProvisional():
				in.relay(req, tx, res)
			case res.IsSuccess():
				clTx.Terminate()
				if !st.pickedUp() {
					return // cannot happen before end; kept for the invariant
				}
				answered = true
				in.log.Debug("sip: volunteer picked up")
				if err := in.relay(req, tx, res); err != nil {
					// The caller side is gone (its CANCEL crossed the
					// 200, and it got 487): hang up the phone.
					st.end(EndedByCaller)
					in.calls.remove(id, p)
					in.stop.Go(func(context.Context) { in.hangUpLeg(fwd, res) })
				}
				return
			default:
				clTx.Terminate()
				st.end(EndedUnanswered)
				in.log.Debug("sip: phone refused the call", "status", res.StatusCode)
				in.refuseUpstream(req, tx, res)
				return
			}
		case <-clTx.Done():
			st.end(EndedUnanswered)
			in.log.Debug("sip: phone unreachable", "error", clTx.Err())
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil))
			return
		case <-ring.C:
			st.end(EndedUnanswered)
			in.log.Debug("sip: phone did not answer in time")
			in.cancelLeg(fwd, clTx)
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil))
			return
		case <-cancelled:
			st.end(EndedByCaller)
			in.log.Debug("sip: caller hung up while the phone rang")
			in.cancelLeg(fwd, clTx)
			return
		case <-in.ctx.Done():
			st.end(EndedUnanswered)
			in.cancelLeg(fwd, clTx)
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil))
			return
		}
	}
}

// phoneAddr parses a reservation's phone URI. Its host must be an IP
// literal: the phone's address is what lets its answers and its BYE past
// the allowlist, and a name would have to be resolved for each packet.
func phoneAddr(s string) (sip.Uri, netip.AddrPort, error) {
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		return u, netip.AddrPort{}, fmt.Errorf("phone uri: %w", err)
	}
	if u.Scheme != "sip" {
		return u, netip.AddrPort{}, fmt.Errorf("phone uri: scheme %q, want sip", u.Scheme)
	}
	ip, err := netip.ParseAddr(u.Host)
	if err != nil {
		return u, netip.AddrPort{}, fmt.Errorf("phone uri host: %w", err)
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return u, netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// relay passes a response up the server transaction: our Via off, sent to
// where the request came from (sipgo's proxy example does the same).
func (in *Ingress) relay(req *sip.Request, tx sip.ServerTransaction, res *sip.Response) error {
	res = res.Clone()
	res.RemoveHeader("Via")
	res.SetDestination(req.Source())
	return in.respond(tx, res)
}

// refuseUpstream answers the PBX with the phone's refusal code, so that it
// queues the caller itself, but only 4xx and 5xx: a 3xx would send the call
// elsewhere, a 6xx would stop the PBX from trying its own queue, and a
// 401/407 would ask it for credentials; those become 480. The answer is
// built afresh from the PBX's request: nothing of the phone's headers goes
// upstream.
func (in *Ingress) refuseUpstream(req *sip.Request, tx sip.ServerTransaction, res *sip.Response) {
	code, reason := res.StatusCode, res.Reason
	if code < 400 || code >= 600 || code == sip.StatusUnauthorized || code == sip.StatusProxyAuthRequired {
		code, reason = sip.StatusTemporarilyUnavailable, "Temporarily Unavailable"
	}
	in.respond(tx, sip.NewResponseFromRequest(req, code, reason, nil))
}

// cancelLeg sends CANCEL for the forwarded INVITE at once (before the
// handler returns, so also when Stop is about to close the socket) and, in
// the background, waits for the phone's final answer, so that the client
// transaction ACKs a 487, and a 200 that crossed the CANCEL is acknowledged
// and hung up (the caller side was already told the call did not happen).
func (in *Ingress) cancelLeg(fwd *sip.Request, clTx sip.ClientTransaction) {
	ctx, stop := context.WithTimeout(in.stop.Context(), cancelWait)
	cancelTx, err := in.client.TransactionRequest(ctx, newCancel(fwd), in.fromListener)
	if err != nil {
		in.log.Debug("sip: CANCEL to the phone failed", "error", err)
	}
	in.stop.Go(func(context.Context) {
		defer stop()
		defer clTx.Terminate()
		var cancelAnswers <-chan *sip.Response // nil: never ready
		if cancelTx != nil {
			defer cancelTx.Terminate()
			cancelAnswers = cancelTx.Responses()
		}
		for {
			select {
			case <-cancelAnswers:
				// Read so that sipgo's transaction does not wait on us; its
				// 200 is not needed, the INVITE's answer is what counts.
			case res := <-clTx.Responses():
				if res.IsProvisional() {
					continue
				}
				if res.IsSuccess() {
					in.hangUpLeg(fwd, res)
				}
				return
			case <-clTx.Done():
				return
			case <-ctx.Done():
				return
			}
		}
	})
}

// newCancel builds the CANCEL for a forwarded INVITE (RFC 3261 9.1): same
// Request-URI, top Via (ours, so it matches the phone's transaction), From,
// To, Call-ID, CSeq number and Route.
func newCancel(inv *sip.Request) *sip.Request {
	c := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	c.AppendHeader(sip.HeaderClone(inv.Via()))
	sip.CopyHeaders("Route", inv, c)
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	c.AppendHeader(sip.HeaderClone(inv.From()))
	c.AppendHeader(sip.HeaderClone(inv.To()))
	c.AppendHeader(sip.HeaderClone(inv.CallID()))
	c.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	c.SetBody(nil)
	c.SetDestination(inv.Destination())
	c.Laddr = inv.Laddr
	return c
}

// hangUpLeg ACKs a 2xx the phone sent after the call was given up, and
// sends it a BYE, so the volunteer's phone does not stay off-hook on a call
// nobody is on. Both go straight to the phone's Contact.
func (in *Ingress) hangUpLeg(fwd *sip.Request, res *sip.Response) {
	contact := res.Contact()
	if contact == nil {
		return
	}
	target := *contact.Address.Clone()
	dest := fwd.Destination()
	build := func(method sip.RequestMethod, seq uint32) *sip.Request {
		r := sip.NewRequest(method, target)
		mf := sip.MaxForwardsHeader(70)
		r.AppendHeader(&mf)
		r.AppendHeader(sip.HeaderClone(fwd.From()))
		r.AppendHeader(sip.HeaderClone(res.To())) // with the phone's tag
		r.AppendHeader(sip.HeaderClone(fwd.CallID()))
		r.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
		r.SetBody(nil)
		r.SetDestination(dest)
		return r
	}
	seq := fwd.CSeq().SeqNo
	if err := in.client.WriteRequest(build(sip.ACK, seq), in.fromListener, sipgo.ClientRequestAddVia); err != nil {
		in.log.Debug("sip: ACK of a late answer failed", "error", err)
	}
	ctx, cancel := context.WithTimeout(in.stop.Context(), cancelWait)
	defer cancel()
	if _, err := in.client.Do(ctx, build(sip.BYE, seq+1), in.fromListener, sipgo.ClientRequestAddVia); err != nil {
		in.log.Debug("sip: BYE of a late answer failed", "error", err)
	}
	in.log.Debug("sip: hung up a phone that answered after the call was given up")
}

// fromListener sends a request from the ingress's own socket, the address
// in our Via and Record-Route, rather than a new one sipgo would open.
func (in *Ingress) fromListener(_ *sipgo.Client, r *sip.Request) error {
	r.Laddr = in.laddr
	return nil
}

// ownRoute reports whether a Route entry names this node.
func (in *Ingress) ownRoute(u sip.Uri) bool {
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return u.Host == in.host && port == in.laddr.Port
}

// popOwnRoute removes the top Route if it is ours (RFC 3261 16.4).
func (in *Ingress) popOwnRoute(r *sip.Request) {
	if rt := r.Route(); rt != nil && in.ownRoute(rt.Address) {
		r.RemoveHeader("Route")
	}
}

// errNoHop is an in-dialog request whose next hop is not an IP address.
var errNoHop = errors.New("next hop is not an IP address")

// nextHop is where a request goes once our Route is popped: the next
// Route, or else the Request-URI (loose routing, RFC 3261 16.12).
func nextHop(r *sip.Request) (netip.AddrPort, error) {
	u := r.Recipient
	if rt := r.Route(); rt != nil {
		u = rt.Address
	}
	ip, err := netip.ParseAddr(u.Host)
	if err != nil {
		return netip.AddrPort{}, errNoHop
	}
	port := u.Port
	if port == 0 {
		port = 5060
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}
