package sip

// Calls the node answers itself (issue 13): on a centre without a PBX the
// node is the centre's phone. A call from the centre's trunk is held here:
// the caller hears ringing while the node rings our browser-phone
// volunteers in turn within the policy's time (TrunkCall), then it is
// redirected (302) to another centre's free phone volunteer, or, if nobody
// is free anywhere, answered with the busy prompt and hung up. A token call
// for a volunteer who answers in the browser is answered here too. Voice
// flows between the caller's RTP and the volunteer's browser through the
// node's media engine (Voice), nowhere else, and is never written.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/helpmesh/helpmesh/media"
)

// Refusal reasons of calls the node answers.
const (
	// reasonBadSDP: the caller's SDP offer is malformed (400) or offers no
	// audio the node can pass through (488).
	reasonBadSDP = "bad_sdp"
	// reasonNoMedia: the media engine could not open the caller's leg (no
	// port left); the caller side got 480.
	reasonNoMedia = "no_media"
)

// Voice is the node's media engine for the calls it answers (package
// media's Engine, adapted by package centre).
type Voice interface {
	Open(ctx context.Context, caller media.Offer) (VoiceLeg, error)
}

// VoiceLeg is one call's voice: the caller's RTP leg and, once answered,
// the bridge to the volunteer's browser.
type VoiceLeg interface {
	// AnswerSDP is the node's SDP answer to the caller side.
	AnswerSDP(sessionID uint64) []byte
	// Bridge answers the browser's WebRTC offer and starts passing voice.
	Bridge(ctx context.Context, browserOffer string) (string, error)
	// Unbridge closes the browser's side and leaves the leg for another
	// Bridge (the call ended while the browser was being answered).
	Unbridge()
	// Prompt plays the busy message to the caller; it returns when played
	// or when ctx is done.
	Prompt(ctx context.Context) error
	// Lost is closed when the browser's side of the bridge is gone.
	Lost() <-chan struct{}
	Close() error
}

// Trunk holds the calls that reach the node from the centre's trunk
// (package switchboard's OpenCall, adapted by package centre).
type Trunk interface {
	// urgent: the trunk marked the call urgent in the INVITE (urgent.go).
	OpenCall(language string, urgent bool) (TrunkCall, error)
}

// TrunkCall is one held call's contact on the desk.
type TrunkCall interface {
	// AnswerWithin is how long it may still ring here before it overflows.
	AnswerWithin() time.Duration
	// RingHere holds the next of our volunteers to ring and returns the
	// token of the hold; an error: nobody here is left to ring.
	RingHere() (string, error)
	// Overflow holds another centre's free phone volunteer and returns the
	// SIP URI to redirect the caller to; an error: nobody is free.
	Overflow(ctx context.Context) (string, error)
	// Close ends the contact (answered, abandoned if callerLeft, or not
	// answered), unless Overflow placed it.
	Close(callerLeft bool)
}

// overCall is a Call that says when its hold is over (the volunteer
// declined, signed out, or the hold lapsed): switchboard.Call is one.
type overCall interface{ Over() <-chan struct{} }

// isBrowserPhone: the call's volunteer answers in the console.
func isBrowserPhone(phone string) (volunteer string, ok bool) {
	return strings.CutPrefix(phone, "browser:")
}

// ringResult is how ringing one volunteer's browser ended.
type ringResult int

const (
	ringAnswered ringResult = iota
	ringUnanswered
	ringCallerLeft
	ringRinging // still ringing (a console that gave up may answer again)
)

// endedWhileBridging looks, without waiting, at what may have happened
// while a browser was being bridged: the caller hung up, the volunteer
// hung up or their hold ended, the node is stopping (the call is over:
// gone, and how), or the console gave up waiting for the answer (gone,
// ringRinging: the call rings on).
func (in *Ingress) endedWhileBridging(h *held, b *browserCall, over <-chan struct{}, p pickup) (bool, ringResult) {
	select {
	case <-h.cancelled:
		return true, ringCallerLeft
	default:
	}
	for _, ch := range []<-chan struct{}{b.hungUp, over, in.ctx.Done()} {
		select {
		case <-ch:
			return true, ringUnanswered
		default:
		}
	}
	select {
	case <-p.gone:
		return true, ringRinging
	default:
	}
	return false, ringAnswered
}

// held is a caller's INVITE the node answers itself: its dialog, its
// voice leg, and whether the caller cancelled.
type held struct {
	d         *sipgo.DialogServerSession
	leg       VoiceLeg
	cancelled chan struct{}
	// Once answered: whose console, and its call on the desk;
	// unconfirmed is closed if the caller side never took the answer.
	volunteer   string
	b           *browserCall
	unconfirmed chan struct{}
}

// openHeld reads the caller's offer and opens the dialog and the voice
// leg; on failure it has answered the caller side and returns false.
func (in *Ingress) openHeld(req *sip.Request, tx sip.ServerTransaction) (*held, bool) {
	offer, err := media.ParseOffer(req.Body())
	switch {
	case errors.Is(err, media.ErrBadSDP):
		in.refused.Refuse(reasonBadSDP)
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Request: malformed SDP", nil))
		return nil, false
	case err != nil:
		in.refused.Refuse(reasonBadSDP)
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusNotAcceptableHere, "Not Acceptable Here: G.711 over RTP/AVP only", nil))
		return nil, false
	}
	d, err := in.dialogs.ReadInvite(req, tx)
	if err != nil {
		in.refused.Refuse(reasonBadUser)
		in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusBadRequest, "Bad Request", nil))
		return nil, false
	}
	leg, err := in.cfg.Voice.Open(in.ctx, offer)
	if errors.Is(err, media.ErrAddressFamily) || errors.Is(err, media.ErrNoCodec) {
		in.refused.Refuse(reasonBadSDP)
		_ = d.Respond(sip.StatusNotAcceptableHere, "Not Acceptable Here", nil)
		d.Close()
		return nil, false
	}
	if err != nil {
		in.refused.Refuse(reasonNoMedia)
		in.log.Warn("sip: no voice leg for a call", "error", err)
		_ = d.Respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil)
		d.Close()
		return nil, false
	}
	h := &held{d: d, leg: leg, cancelled: make(chan struct{})}
	var once sync.Once
	if !tx.OnCancel(func(*sip.Request) { once.Do(func() { close(h.cancelled) }) }) {
		once.Do(func() { close(h.cancelled) })
	}
	_ = d.Respond(sip.StatusTrying, "Trying", nil)
	return h, true
}

func (h *held) close() {
	_ = h.leg.Close()
	h.d.Close()
}

// answerToken answers a token call whose volunteer answers in the browser:
// it rings their console for RingTimeout, then either talks or refuses.
func (in *Ingress) answerToken(req *sip.Request, tx sip.ServerTransaction, call Call) {
	st := &callState{call: call}
	if in.cfg.Voice == nil || in.cfg.Softphones == nil {
		in.refused.Refuse(reasonBadPhone)
		st.end(EndedUnanswered)
		in.unavailable(req, tx, in.cfg.RetryAfter)
		return
	}
	if !in.heldSlot() {
		in.refused.Refuse(reasonOverload)
		st.end(EndedUnanswered)
		in.unavailable(req, tx, in.cfg.RetryAfter)
		return
	}
	defer in.heldDone()
	h, ok := in.openHeld(req, tx)
	if !ok {
		st.end(EndedUnanswered)
		return
	}
	defer h.close()
	if err := call.Arrived(); err != nil {
		in.refused.Refuse(reasonBadToken)
		st.end(EndedUnanswered)
		_ = h.d.Respond(sip.StatusGone, "Reservation Gone", nil)
		return
	}
	_ = h.d.Respond(sip.StatusRinging, "Ringing", nil)
	switch in.ringBrowser(h, st, time.Now().Add(in.cfg.RingTimeout)) {
	case ringAnswered:
		in.talk(h, st)
	case ringUnanswered:
		_ = h.d.Respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil)
	case ringCallerLeft:
	}
}

// holdCall holds a call from the trunk: ring here within the policy's time,
// then overflow, else the prompt. Every way out answers the caller side and
// closes the contact (or leaves it to the centre the call went to).
func (in *Ingress) holdCall(req *sip.Request, tx sip.ServerTransaction, language string) {
	if in.calls.full() || !in.heldSlot() {
		in.refused.Refuse(reasonOverload)
		in.unavailable(req, tx, in.cfg.RetryAfter)
		return
	}
	defer in.heldDone()
	h, ok := in.openHeld(req, tx)
	if !ok {
		return
	}
	defer h.close()
	tc, err := in.cfg.Trunk.OpenCall(language, requestUrgent(req))
	if err != nil {
		in.refused.Refuse(reasonRouterError)
		in.log.Debug("sip: the desk did not take a call", "language", language, "error", err)
		_ = h.d.Respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil)
		return
	}
	_ = h.d.Respond(sip.StatusRinging, "Ringing", nil)
	deadline := time.Now().Add(tc.AnswerWithin())
	for time.Now().Before(deadline) && in.ctx.Err() == nil {
		tok, err := tc.RingHere()
		if err != nil {
			break // nobody here (left) to ring: overflow at once
		}
		call, err := in.cfg.Tokens.Redeem(tok)
		if err != nil {
			continue
		}
		st := &callState{call: call}
		if err := call.Arrived(); err != nil {
			st.end(EndedUnanswered)
			continue
		}
		switch in.ringBrowser(h, st, deadline) {
		case ringAnswered:
			in.talk(h, st)
			tc.Close(false)
			return
		case ringCallerLeft:
			tc.Close(true)
			return
		}
	}
	if in.heldCallOver(h, tc) {
		return
	}
	ctx, cancel := context.WithTimeout(in.ctx, in.cfg.RouteTimeout)
	target, err := tc.Overflow(ctx)
	cancel()
	if err != nil && in.heldCallOver(h, tc) {
		return
	}
	if err == nil {
		var u sip.Uri
		if perr := sip.ParseUri(target, &u); perr == nil {
			res := sip.NewResponseFromRequest(req, sip.StatusMovedTemporarily, "Moved Temporarily", nil)
			res.AppendHeader(&sip.ContactHeader{Address: u})
			_ = h.d.WriteResponse(res)
			return
		}
		in.refused.Refuse(reasonRouterError)
	}
	in.busyPrompt(h)
	tc.Close(false)
}

// heldCallOver closes a held call's contact if the caller hung up
// (abandoned) or the node is stopping (the trunk gets 480 and may try its
// other route), and says so; otherwise the call goes on.
func (in *Ingress) heldCallOver(h *held, tc TrunkCall) bool {
	select {
	case <-h.cancelled:
		tc.Close(true)
		return true
	case <-in.ctx.Done():
		_ = h.d.Respond(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil)
		tc.Close(false)
		return true
	default:
		return false
	}
}

// heldSlot takes one of MaxCalls for a call the node holds.
func (in *Ingress) heldSlot() bool {
	if in.held.Add(1) > int32(in.cfg.MaxHeldCalls) {
		in.held.Add(-1)
		return false
	}
	return true
}

func (in *Ingress) heldDone() { in.held.Add(-1) }

// busyPrompt answers the caller, plays the busy message and hangs up.
func (in *Ingress) busyPrompt(h *held) {
	if err := h.d.RespondSDP(h.leg.AnswerSDP(sessionID())); err != nil {
		in.log.Debug("sip: answering for the prompt failed", "error", err)
		return
	}
	ctx, cancel := context.WithCancel(in.ctx)
	defer cancel()
	go func() {
		select {
		case <-h.d.Context().Done():
		case <-ctx.Done():
		}
		cancel()
	}()
	_ = h.leg.Prompt(ctx)
	in.bye(h)
}

// ringBrowser rings the held call's volunteer in their console until the
// deadline. The call is picked up when the browser's offer is bridged and
// the caller side has the node's 200.
func (in *Ingress) ringBrowser(h *held, st *callState, deadline time.Time) ringResult {
	volunteer, ok := isBrowserPhone(st.call.Phone())
	if !ok || in.cfg.Softphones == nil {
		in.refused.Refuse(reasonBadPhone)
		st.end(EndedUnanswered)
		return ringUnanswered
	}
	b, ok := in.cfg.Softphones.register(volunteer)
	if !ok {
		st.end(EndedUnanswered)
		return ringUnanswered
	}
	var over <-chan struct{}
	if oc, ok := st.call.(overCall); ok {
		over = oc.Over()
	}
	ring := time.NewTimer(time.Until(deadline))
	defer ring.Stop()
	for {
		select {
		case p := <-b.pickups:
			ctx, cancel := context.WithTimeout(in.ctx, 10*time.Second)
			answer, err := h.leg.Bridge(ctx, p.sdp)
			cancel()
			if err != nil {
				p.reply <- pickupReply{err: err}
				in.log.Debug("sip: the browser's offer was not bridged", "error", err)
				continue // still ringing: the volunteer may try again
			}
			// Bridging takes a moment (ICE gathering): the call may have
			// ended meanwhile, or the console given up waiting.
			if gone, result := in.endedWhileBridging(h, b, over, p); gone {
				h.leg.Unbridge()
				p.reply <- pickupReply{err: ErrNoCall}
				if result == ringRinging {
					continue
				}
				in.softphoneDone(volunteer, b)
				by := EndedUnanswered
				if result == ringCallerLeft {
					by = EndedByCaller
				}
				st.end(by)
				return result
			}
			p.reply <- pickupReply{sdp: answer}
			st.pickedUp()
			// The 200 is retransmitted until the ACK, in its own
			// goroutine: the call is picked up from now on. If the caller
			// side never takes it (its CANCEL crossed our answer, or no
			// ACK comes), the call is over.
			h.unconfirmed = make(chan struct{})
			in.stop.Go(func(context.Context) {
				if err := h.d.RespondSDP(h.leg.AnswerSDP(sessionID())); err != nil {
					in.log.Debug("sip: the caller side did not confirm the answer", "error", err)
					close(h.unconfirmed)
				}
			})
			h.volunteer, h.b = volunteer, b
			return ringAnswered
		case <-b.hungUp:
			in.softphoneDone(volunteer, b)
			st.end(EndedUnanswered)
			return ringUnanswered
		case <-over:
			in.softphoneDone(volunteer, b)
			st.end(EndedUnanswered)
			return ringUnanswered
		case <-ring.C:
			in.softphoneDone(volunteer, b)
			st.end(EndedUnanswered)
			return ringUnanswered
		case <-h.cancelled:
			in.softphoneDone(volunteer, b)
			st.end(EndedByCaller)
			return ringCallerLeft
		case <-in.ctx.Done():
			in.softphoneDone(volunteer, b)
			st.end(EndedUnanswered)
			return ringUnanswered
		}
	}
}

func (in *Ingress) softphoneDone(volunteer string, b *browserCall) {
	b.hangUp()
	in.cfg.Softphones.unregister(volunteer, b)
}

// talk waits for the end of an answered browser call: the caller's BYE,
// the volunteer's hang-up, their browser lost, the desk ending the hold,
// the call's maximum length, or Stop.
func (in *Ingress) talk(h *held, st *callState) {
	var over <-chan struct{}
	if oc, ok := st.call.(overCall); ok {
		over = oc.Over()
	}
	longest := time.NewTimer(in.cfg.MaxCallLength)
	defer longest.Stop()
	by, hangUp := EndedByVolunteer, true
	select {
	case <-h.d.Context().Done():
		by, hangUp = EndedByCaller, false
	case <-h.unconfirmed:
		by = EndedByCaller // no ACK: RFC 3261 13.3.1.4 ends the session with a BYE
	case <-h.b.hungUp:
	case <-h.leg.Lost():
	case <-over:
	case <-longest.C:
	case <-in.ctx.Done():
		by = EndedUnknown
	}
	// The console's call is over before the desk frees the volunteer, so
	// a call that rings them next finds them free here too.
	in.softphoneDone(h.volunteer, h.b)
	st.end(by)
	if hangUp {
		in.bye(h)
	}
}

// bye hangs up the caller side, once, within a bound.
func (in *Ingress) bye(h *held) {
	ctx, cancel := context.WithTimeoutCause(context.Background(), 5*time.Second, sipgo.WaitAnswerForceCancelErr)
	defer cancel()
	if err := h.d.Bye(ctx); err != nil {
		in.log.Debug("sip: hanging up the caller side failed", "error", err)
	}
}

// sessionID is a random SDP session id (RFC 4566 o= sess-id).
func sessionID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:]) >> 1
}
