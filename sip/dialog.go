package sip

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// inDialog forwards a request of a proxied call that reached the node
// because of its Record-Route (ACK of the 2xx, BYE, re-INVITE, UPDATE,
// INFO, any other): our Route popped, Via added, Max-Forwards decremented,
// sent to the next hop, and its answer relayed back (an ACK has none).
// A BYE ends the call, by the side that sent it.
func (in *Ingress) inDialog(req *sip.Request, tx sip.ServerTransaction) {
	if d, err := in.dialogs.MatchDialogRequest(req); err == nil {
		in.answeredDialog(d, req, tx)
		return
	}
	ack := req.IsAck()
	id := req.CallID().Value()
	p := in.calls.get(id)
	if p == nil {
		in.refused.Refuse(reasonNoCall)
		if !ack {
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call Does Not Exist", nil))
		}
		return
	}
	src, err := netip.ParseAddrPort(req.MessageData.Source())
	if err != nil {
		return
	}
	// Which side sent it is read from the From tag (see proxied.callerTag),
	// and the packet's source address must agree: the caller side talks
	// through the PBX, the volunteer from the phone's address. So a phone
	// cannot end a call as if the caller hung up, nor talk about another
	// phone's call, and the PBX cannot speak for the volunteer. The next hop
	// must be the other side's: the phone, or the PBX (which must
	// Record-Route itself, docs/pbx.md), so the node relays nothing else.
	tag, _ := req.From().Params.Get("tag")
	fromCaller := tag == p.callerTag
	fwd := req.Clone()
	in.popOwnRoute(fwd)
	hop, hopErr := nextHop(fwd)
	var ok bool
	if fromCaller {
		ok = isPBX(in.cfg.PBX, src.Addr()) && hopErr == nil && hop.Addr() == p.phone.Addr()
	} else {
		ok = src.Addr().Unmap() == p.phone.Addr() && hopErr == nil && isPBX(in.cfg.PBX, hop.Addr())
	}
	if !ok {
		in.refused.Refuse(reasonBadRoute)
		if !ack {
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil))
		}
		return
	}
	fwd.SetDestination(hop.String())
	if ack {
		if err := in.client.WriteRequest(fwd, in.fromListener, sipgo.ClientRequestDecreaseMaxForward, sipgo.ClientRequestAddVia); err != nil {
			in.log.Debug("sip: forwarding an ACK failed", "error", err)
		}
		return
	}
	if req.Method == sip.BYE {
		by := EndedByVolunteer
		if fromCaller {
			by = EndedByCaller
		}
		if p.state.end(by) {
			in.log.Debug("sip: call ended", "by", by)
		}
		// Forgotten once the BYE's answer is relayed: the answer comes from
		// the phone when the caller hung up, and must pass the screen.
		defer in.calls.remove(id, p)
	}
	ctx, cancel := context.WithTimeout(in.ctx, cancelWait)
	defer cancel()
	clTx, err := in.client.TransactionRequest(ctx, fwd, in.fromListener, sipgo.ClientRequestDecreaseMaxForward, sipgo.ClientRequestAddVia)
	if err != nil {
		in.log.Debug("sip: forwarding an in-dialog request failed", "method", req.Method.String(), "error", err)
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Service Unavailable", nil))
		return
	}
	defer clTx.Terminate()
	for {
		select {
		case res := <-clTx.Responses():
			if res.StatusCode == sip.StatusTrying {
				continue
			}
			in.relay(req, tx, res)
			if !res.IsProvisional() {
				return
			}
		case <-clTx.Done():
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusRequestTimeout, "Request Timeout", nil))
			return
		case <-ctx.Done():
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusRequestTimeout, "Request Timeout", nil))
			return
		}
	}
}

// strayResponse takes the responses that match no client transaction. The
// one the proxy owes the caller side is a retransmitted 2xx of a picked-up
// call (the phone resends it until the ACK arrives): it goes up statelessly,
// our Via off, to the next Via (RFC 3261 16.7 step 10), which must be the
// PBX's. Anything else is dropped; sipgo's default handler would log it.
func (in *Ingress) strayResponse(res *sip.Response) {
	if !res.IsSuccess() || res.CallID() == nil {
		return
	}
	cseq := res.CSeq()
	if cseq == nil || cseq.MethodName != sip.INVITE || in.calls.get(res.CallID().Value()) == nil {
		return
	}
	if v := res.Via(); v == nil || v.Host != in.host || v.Port != in.laddr.Port {
		return
	}
	up := res.Clone()
	up.RemoveHeader("Via")
	if up.Via() == nil {
		return
	}
	up.SetDestination("")
	dest, err := netip.ParseAddrPort(up.Destination())
	if err != nil || !isPBX(in.cfg.PBX, dest.Addr()) {
		in.refused.Refuse(reasonBadRoute)
		return
	}
	if _, err := in.conn.WriteTo([]byte(up.String()), net.UDPAddrFromAddrPort(dest)); err != nil {
		in.log.Debug("sip: relaying a retransmitted 2xx failed", "error", err)
	}
}

// sweep ends the calls older than MaxCallLength: their BYE never came
// through the node (a phone that lost power, a PBX that dropped the call
// without telling), and the table must not keep them.
func (in *Ingress) sweep(ctx context.Context) {
	every := min(max(in.cfg.MaxCallLength/4, 10*time.Millisecond), time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, p := range in.calls.takeOlder(now.Add(-in.cfg.MaxCallLength)) {
				if p.state.end(EndedUnknown) {
					in.log.Debug("sip: call outlived the maximum call length")
				}
			}
		}
	}
}

// answeredDialog serves a request of a call the node answered itself
// (answer.go): the caller side's ACK and BYE; anything else in the call
// (a re-INVITE, INFO, UPDATE) is refused, and the call goes on as it was.
func (in *Ingress) answeredDialog(d *sipgo.DialogServerSession, req *sip.Request, tx sip.ServerTransaction) {
	switch {
	case req.IsAck():
		_ = d.ReadAck(req, tx)
	case req.Method == sip.BYE:
		if err := d.ReadBye(req, tx); err != nil {
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusCallTransactionDoesNotExists, "Call Does Not Exist", nil))
		}
	case req.Method == sip.INVITE:
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here", nil))
	default:
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil))
	}
}
