package sip

// The answers to the PBX's requests outside a proxied call: OPTIONS (its
// health check) and INVITE, for a queue (redirect or 480) or for a token
// (the reserved volunteer). Start registers them; handle screens them first.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/emiago/sipgo/sip"
)

func (in *Ingress) options(req *sip.Request, tx sip.ServerTransaction) {
	in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
}

func (in *Ingress) invite(req *sip.Request, tx sip.ServerTransaction) {
	if inDialogRequest(req) { // a re-INVITE of a proxied call
		in.inDialog(req, tx)
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		in.refused.Refuse(reasonLoop)
		in.respond(tx, sip.NewResponseFromRequest(req, 483, "Too Many Hops", nil))
		return
	}
	kind, value, err := ParseUser(req.Recipient.User)
	switch {
	case errors.Is(err, ErrUserTooLong):
		in.refused.Refuse(reasonTooLong)
		in.respond(tx, sip.NewResponseFromRequest(req, 414, "Request-URI Too Long", nil))
		return
	case err != nil:
		in.refused.Refuse(reasonBadUser)
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusNotFound, "Not Found", nil))
		return
	}
	if kind == KindToken {
		in.token(req, tx, value)
		return
	}
	if in.cfg.Trunk != nil && in.cfg.Voice != nil {
		if !in.fromTrunk(req) {
			// Another centre redirects with tokens; only the centre's own
			// trunk sends queue calls.
			in.refused.Refuse(reasonNotPBX)
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil))
			return
		}
		in.holdCall(req, tx, value)
		return
	}
	in.queue(req, tx, value)
}

// token answers a call for a token: the reserved volunteer once, then Gone.
// The token itself is never logged: until used, it rings a volunteer. At
// MaxCalls the token is not redeemed: the PBX queues the caller, and the
// reservation runs out with its lease.
func (in *Ingress) token(req *sip.Request, tx sip.ServerTransaction, token string) {
	if in.calls.full() {
		in.refused.Refuse(reasonOverload)
		in.unavailable(req, tx, in.cfg.RetryAfter)
		return
	}
	call, err := in.cfg.Tokens.Redeem(token)
	switch {
	case err == nil:
		in.proxy(req, tx, call)
	case errors.Is(err, ErrTokenUsed):
		in.refused.Refuse(reasonBadToken)
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusGone, "Token Already Used", nil))
	case errors.Is(err, ErrTokenExpired):
		in.refused.Refuse(reasonBadToken)
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusGone, "Token Expired", nil))
	default:
		in.refused.Refuse(reasonBadToken)
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusNotFound, "Unknown Token", nil))
	}
}

// queue asks the Router for a queued call, within the deadline and the
// concurrency cap; every way out answers the PBX.
func (in *Ingress) queue(req *sip.Request, tx sip.ServerTransaction, language string) {
	in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusTrying, "Trying", nil))
	select {
	case in.routes <- struct{}{}:
	default:
		in.refused.Refuse(reasonOverload)
		in.unavailable(req, tx, in.cfg.RetryAfter)
		return
	}
	ctx, cancel := context.WithTimeout(in.ctx, in.cfg.RouteTimeout)
	defer cancel()
	type result struct {
		d   Decision
		err error
	}
	got := make(chan result, 1)
	// The Router runs in its own goroutine, holding the slot until it
	// returns, so that a Router that overstays its deadline still cannot push
	// the PBX past RouteTimeout nor the calls in flight past the cap.
	in.stop.Go(func(context.Context) {
		defer func() { <-in.routes }()
		d, err := in.cfg.Router.RouteCall(ctx, language, requestUrgent(req))
		got <- result{d, err}
	})
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		r.err = ctx.Err()
	}
	switch {
	case r.err != nil:
		// Counted and sampled like a refusal: a Router failing under a
		// burst of calls must not write a warning per call; the detail is
		// at debug level only.
		reason := reasonRouterError
		if errors.Is(r.err, context.DeadlineExceeded) {
			reason = reasonTimeout
		}
		in.refused.Refuse(reason)
		in.log.Debug("sip: routing a call failed", "language", language, "error", r.err)
		in.unavailable(req, tx, in.cfg.RetryAfter)
	case r.d.Contact == "":
		in.unavailable(req, tx, r.d.RetryAfter)
	default:
		in.redirect(req, tx, r.d.Contact)
	}
}

// redirect answers 302 with target as Contact, after checking it is a SIP
// URI: a target that would not parse would make the PBX drop the call.
func (in *Ingress) redirect(req *sip.Request, tx sip.ServerTransaction, target string) {
	var u sip.Uri
	if err := sip.ParseUri(target, &u); err != nil || (u.Scheme != "sip" && u.Scheme != "sips") {
		in.refused.Refuse(reasonRouterError)
		in.unavailable(req, tx, in.cfg.RetryAfter)
		return
	}
	res := sip.NewResponseFromRequest(req, sip.StatusMovedTemporarily, "Moved Temporarily", nil)
	res.AppendHeader(&sip.ContactHeader{Address: u})
	in.respond(tx, res)
}

// unavailable answers 480 with Retry-After in whole seconds (at least 1), so
// the PBX keeps the caller in its own queue and may ask again.
func (in *Ingress) unavailable(req *sip.Request, tx sip.ServerTransaction, after time.Duration) {
	if after <= 0 {
		after = in.cfg.RetryAfter
	}
	secs := max(1, int(math.Ceil(after.Seconds())))
	res := sip.NewResponseFromRequest(req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil)
	res.AppendHeader(sip.NewHeader("Retry-After", fmt.Sprint(secs)))
	in.respond(tx, res)
}

func (in *Ingress) respond(tx sip.ServerTransaction, res *sip.Response) error {
	if err := tx.Respond(res); err != nil {
		in.log.Debug("sip: respond failed", "status", res.StatusCode, "error", err)
		return err
	}
	if res.StatusCode >= 200 {
		in.log.Debug("sip: answered", "status", res.StatusCode)
	}
	return nil
}
