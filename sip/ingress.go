// Package sip is a centre's SIP ingress for its own PBX (issue 12). With a
// PBX the node never carries media. A queue call is answered with a
// redirect or a refusal, which the PBX follows; a token call (a volunteer
// reserved for it) is proxied to the volunteer's phone with Record-Route,
// signalling only, so the node knows honestly whether the volunteer picked
// up and when the call ended, while the SDP passes untouched and RTP flows
// between the caller side and the phone (proxy.go, dialog.go).
//
// Without a PBX (issue 13, answer.go; Config.Voice, Softphones, Trunk) the
// node is the centre's phone: a queue call from the trunk is held (180)
// while the desk rings volunteers' browsers in turn, then redirected (302)
// or answered with the busy message; a token call for a volunteer who
// answers in the browser is answered here. Then the node is the caller's
// endpoint (a sipgo dialog), and the voice flows through its media engine.
//
// It listens on UDP only (TCP is not built yet). A datagram that is not a
// well-formed request or response of at most 16 KiB is dropped and counted
// (screen.go). What the ingress reads of a request: the source address of
// the packet (only the centre's PBX may talk, and the phone of a call being
// proxied about that call), the Max-Forwards header, the Request-URI user
// part, and for a proxied call the Call-ID, the From tag and the Route
// headers, in memory only. The user part's format is
//
//	queue-LL   a call for the overflow queue in language LL (ISO 639-1),
//	           e.g. sip:queue-nb@node:5090
//	TOKEN      26 base32 characters issued by this node's TokenStore for a
//	           reserved volunteer, e.g. sip:K7Q...@node:5090
//
// and what it answers:
//
//	OPTIONS                      200 OK (the PBX's health check)
//	any request not from the PBX 403 Forbidden
//	INVITE queue-LL              100 Trying at once, then
//	                             302 Moved Temporarily, Contact: <Router's target>, or
//	                             480 Temporarily Unavailable, Retry-After: N
//	                             (nobody free, Router too slow or failing, or
//	                             MaxConcurrentRoutes calls already being routed)
//	INVITE TOKEN                 100 Trying, then the call proxied to the reserved
//	                             volunteer's phone (once): its 180/183 and 2xx
//	                             relayed; its 4xx/5xx relayed as a code, 3xx/6xx
//	                             as 480; 480 when it does not answer within
//	                             RingTimeout or cannot be reached; 487 on CANCEL.
//	                             410 Gone when used or expired (remembered 10 min)
//	                             or when the reservation is gone on arrival,
//	                             404 Not Found when unknown or forged
//	in-dialog request (To tag)   forwarded along the proxied call's route;
//	                             481 for a call the node does not proxy,
//	                             403 when side, source and next hop disagree
//	with the node as the phone (answer.go):
//	INVITE queue-LL (the trunk)  100, 180, then 200 when a volunteer answers in
//	                             the browser, 302 to another centre after the
//	                             policy's time, or 200 + the busy message + BYE;
//	                             403 from anyone but the trunk
//	INVITE TOKEN (browser phone) 100, 180, then 200 or 480 after RingTimeout
//	either, SDP malformed        400; without G.711 over RTP/AVP 488
//	INVITE other user            404 Not Found (unknown queue, language or user)
//	user part over 64 bytes      414 Request-URI Too Long
//	Max-Forwards: 0              483 Too Many Hops
//	other methods                405 Method Not Allowed (sipgo's default)
//
// The caller's number and name (From, To, Contact, display names) are never
// read, logged or counted; of a proxied call, the Call-ID and tags are held
// in memory to route it and never logged or counted. sipgo has a package-level sip.SIPDebug flag that
// prints every message whole, caller's number included: nothing in this
// project may set it.
package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helpmesh/helpmesh/internal/refusal"
	"github.com/helpmesh/helpmesh/internal/stopper"
)

// Defaults for the zero values of Config.
const (
	DefaultRouteTimeout        = 5 * time.Second
	DefaultRetryAfter          = 30 * time.Second
	DefaultMaxConcurrentRoutes = 64
)

// Refusal reasons, the values of helpmesh_sip_refused_total{reason}.
const (
	reasonNotPBX   = "not_pbx"
	reasonBadUser  = "bad_user"
	reasonTooLong  = "too_long"
	reasonLoop     = "too_many_hops"
	reasonOverload = "overload"
	reasonBadToken = "bad_token"
	// The Router failed, returned a Contact that is not a SIP URI, or did
	// not answer within RouteTimeout: the PBX got 480.
	reasonRouterError = "router_error"
	reasonTimeout     = "route_timeout"
)

var (
	// ErrNoPBX is a Config without any PBX prefix: nobody could talk to it.
	ErrNoPBX = errors.New("sip: no PBX address configured")
	// ErrNoRouter is a Config without a Router or a TokenStore.
	ErrNoRouter = errors.New("sip: router and token store are required")
	// ErrNoHost is a Config whose Addr has no specific IP and no Host: the
	// node could not name itself in Via and Record-Route.
	ErrNoHost = errors.New("sip: Host is required when Addr does not name an IP")
)

// Decision is a Router's answer for one call: Contact set means redirect
// there (302); empty means nobody is free, ask again after RetryAfter (480).
type Decision struct {
	// Contact is a SIP URI, e.g. "sip:TOKEN@ingress-b.example:5090".
	Contact string
	// RetryAfter is how long the PBX should keep the caller queued before it
	// asks again (0: Config.RetryAfter).
	RetryAfter time.Duration
}

// Router finds where a queued call goes. It is owned here because the ingress
// is its only user; the real one is package centre's callRouter (the
// switchboard's PlaceCall). RouteCall must return soon after ctx is done.
type Router interface {
	// urgent: the PBX marked the call urgent in the INVITE (urgent.go).
	RouteCall(ctx context.Context, language string, urgent bool) (Decision, error)
}

// Config configures an Ingress.
type Config struct {
	// Addr is the UDP address to listen on, e.g. "0.0.0.0:5090" or
	// "127.0.0.1:0" (Addr reports the bound port).
	Addr string
	// Host is the IP address the PBX and the volunteers' phones reach this
	// node at, written in the node's Via and Record-Route on proxied calls
	// (empty: Addr's IP, which must then not be 0.0.0.0 or ::).
	Host string
	// PBX lists the source addresses allowed to send requests: the centre's
	// own PBX. Everything else gets 403, except the phone of a call being
	// proxied, which may answer and send requests of that call.
	PBX []netip.Prefix
	// Router decides queued calls; Tokens answers token calls.
	Router Router
	Tokens *TokenStore
	// RouteTimeout bounds one RouteCall (0: DefaultRouteTimeout); on
	// time-out the PBX gets 480 so it is never left waiting.
	RouteTimeout time.Duration
	// RetryAfter is sent with a 480 the Router did not set (0:
	// DefaultRetryAfter).
	RetryAfter time.Duration
	// MaxConcurrentRoutes caps the RouteCalls in flight (0:
	// DefaultMaxConcurrentRoutes); an INVITE beyond it gets 480 at once.
	MaxConcurrentRoutes int
	// RingTimeout is how long a proxied token call rings the volunteer's
	// phone (0: DefaultRingTimeout); then the phone gets CANCEL and the PBX
	// 480.
	RingTimeout time.Duration
	// MaxCallLength bounds how long the node keeps a picked-up call whose
	// BYE never came through it (0: DefaultMaxCallLength); then the call
	// ends with EndedUnknown and is forgotten.
	MaxCallLength time.Duration
	// MaxCalls caps the token calls proxied at once (0: DefaultMaxCalls);
	// a token call beyond it gets 480 before its token is redeemed.
	MaxCalls int
	// MaxHeldCalls caps the calls the node answers itself at once, ringing
	// or in progress (0: DefaultMaxHeldCalls): each holds a voice leg, so a
	// flood from the trunk gets 480 beyond it and the calls in progress
	// keep their voice.
	MaxHeldCalls int
	// Peers says whether a source address is another centre's phone
	// system (from the roster), which may send token calls and their
	// in-dialog requests to a node that answers calls itself (nil: none).
	Peers func(netip.Addr) bool
	// Voice, Softphones and Trunk make the node the centre's phone (issue
	// 13, answer.go): token calls for volunteers who answer in the browser
	// are answered here with Voice, their consoles met through Softphones;
	// with Trunk, a queue call from the centre's trunk (PBX lists its
	// addresses) is held here instead of redirected. All nil: the ingress
	// only redirects and proxies.
	Voice      Voice
	Softphones *Softphones
	Trunk      Trunk
	// Logger receives the ingress's lines and sipgo's (nil discards).
	Logger *slog.Logger
	// Registerer receives helpmesh_sip_refused_total (nil: unregistered).
	Registerer prometheus.Registerer
}

// Ingress is a running SIP ingress.
type Ingress struct {
	cfg     Config
	log     *slog.Logger
	refused *refusal.Log
	ua      *sipgo.UserAgent
	client  *sipgo.Client // forwards proxied calls from conn
	calls   *callTable
	host    string   // Config.Host or Addr's IP: our Via and Record-Route
	laddr   sip.Addr // conn's address, to send from it
	conn    net.PacketConn
	stop    *stopper.Stopper
	routes  chan struct{} // one slot per RouteCall in flight
	// dialogs are the calls the node answers itself (answer.go), held
	// counts them against MaxCalls.
	dialogs *sipgo.DialogServerCache
	held    atomic.Int32
	// ctx is cancelled first thing in Stop, before the handlers are waited
	// for, so a handler blocked on the Router answers 480 and returns.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	stopping bool
	handlers sync.WaitGroup // sipgo's per-request goroutines inside our handlers
}

// Start listens on cfg.Addr and serves until Stop.
func Start(ctx context.Context, cfg Config) (*Ingress, error) {
	if len(cfg.PBX) == 0 {
		return nil, ErrNoPBX
	}
	if cfg.Router == nil || cfg.Tokens == nil {
		return nil, ErrNoRouter
	}
	orDefault(&cfg.RouteTimeout, DefaultRouteTimeout)
	orDefault(&cfg.RetryAfter, DefaultRetryAfter)
	orDefault(&cfg.MaxConcurrentRoutes, DefaultMaxConcurrentRoutes)
	orDefault(&cfg.RingTimeout, DefaultRingTimeout)
	orDefault(&cfg.MaxCallLength, DefaultMaxCallLength)
	orDefault(&cfg.MaxCalls, DefaultMaxCalls)
	orDefault(&cfg.MaxHeldCalls, DefaultMaxHeldCalls)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	refused, err := refusal.New(refusal.Config{
		Logger: logger,
		What:   "SIP request",
		Metric: "helpmesh_sip_refused_total",
		Help:   "SIP requests the ingress refused, by reason.",
		Reasons: []string{reasonNotPBX, reasonBadUser, reasonTooLong, reasonLoop, reasonOverload, reasonBadToken, reasonRouterError, reasonTimeout, reasonMalformed,
			reasonBadPhone, reasonNoCall, reasonBadRoute, reasonBadSDP, reasonNoMedia},
		Registerer: cfg.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("sip start: %w", err)
	}
	// sipgo gets our logger, redacted, for each of its layers, and the
	// screen in front of its parser; its remaining lines carry addresses and
	// transaction keys, not headers (TestPrivacyCanary). A few of its lines
	// still go to slog's default logger (sip.DefaultLogger, package-level in
	// sipgo): the process must not set that to debug level.
	sipgoLog := slog.New(redacted{logger.Handler()})
	in := &Ingress{
		cfg: cfg,
		// Our own lines too: an error from sipgo may quote a message.
		log:     sipgoLog,
		refused: refused,
		calls:   newCallTable(cfg.MaxCalls),
		stop:    stopper.New(),
		routes:  make(chan struct{}, cfg.MaxConcurrentRoutes),
	}
	allowed := func(a net.Addr) bool {
		u, ok := a.(*net.UDPAddr)
		if !ok {
			return false
		}
		ip, ok := netip.AddrFromSlice(u.IP)
		return ok && (isPBX(cfg.PBX, ip) || in.calls.phone(ip) || cfg.Peers != nil && cfg.Peers(ip.Unmap()))
	}
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("helpmesh"),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(sipgoLog),
			sip.WithTransportLayerReadFilter(screen(newScreenParser(), refused, allowed)),
		),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipgoLog),
			sip.WithTransactionLayerUnhandledResponseHandler(in.strayResponse),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("sip start: user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(sipgoLog))
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("sip start: server: %w", err)
	}
	conn, err := (&net.ListenConfig{}).ListenPacket(ctx, "udp", cfg.Addr)
	if err != nil {
		ua.Close()
		return nil, fmt.Errorf("sip start: listen %s: %w", cfg.Addr, err)
	}
	bound := conn.LocalAddr().(*net.UDPAddr)
	in.host = cfg.Host
	if in.host == "" {
		if bound.IP.IsUnspecified() {
			_ = conn.Close()
			ua.Close()
			return nil, ErrNoHost
		}
		in.host = bound.IP.String()
	}
	// The Addr sipgo's UDP transport keys the listening socket by, so that
	// forwarded requests leave from it (fromListener).
	lhost, lport, err := sip.ParseAddr(bound.String())
	if err != nil {
		_ = conn.Close()
		ua.Close()
		return nil, fmt.Errorf("sip start: local address: %w", err)
	}
	in.laddr = sip.Addr{IP: net.ParseIP(lhost), Port: lport}
	in.client, err = sipgo.NewClient(ua, sipgo.WithClientHostname(in.host), sipgo.WithClientPort(lport), sipgo.WithClientLogger(sipgoLog))
	if err != nil {
		_ = conn.Close()
		ua.Close()
		return nil, fmt.Errorf("sip start: client: %w", err)
	}
	in.ua, in.conn = ua, conn
	in.dialogs = sipgo.NewDialogServerCache(in.client, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "helpmesh", Host: in.host, Port: lport}})
	in.ctx, in.cancel = context.WithCancel(context.Background())
	srv.OnOptions(in.handle(in.options))
	srv.OnInvite(in.handle(in.invite))
	// Everything else is either a request of a proxied call (it has a To
	// tag: ACK, BYE, UPDATE, INFO, ...) or not served.
	srv.OnNoRoute(in.handle(func(req *sip.Request, tx sip.ServerTransaction) {
		if inDialogRequest(req) {
			in.inDialog(req, tx)
			return
		}
		if !req.IsAck() {
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil))
		}
	}))
	in.stop.Go(func(context.Context) {
		// Returns when Stop closes the socket.
		_ = srv.ServeUDP(conn)
	})
	in.stop.Go(in.sweep)
	return in, nil
}

// orDefault sets *v to def when it is zero or negative (Config's zero values).
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Addr returns the bound UDP address.
func (in *Ingress) Addr() netip.AddrPort {
	return in.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Stop cancels routing in flight, gives a proxied call still ringing its
// CANCEL and 480 (Ended(unanswered)) and an answered one Ended(unknown),
// closes the socket, and waits for every goroutine of the ingress, or until
// ctx is done.
func (in *Ingress) Stop(ctx context.Context) error {
	in.mu.Lock()
	in.stopping = true
	in.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		in.cancel()
		// Handlers first, with the socket still open: a call ringing
		// sends its CANCEL and its 480; they are the only ones that start
		// goroutines on the stopper, and none runs once they are done.
		in.handlers.Wait()
		// Answered calls the node no longer sees the end of.
		for _, p := range in.calls.takeOlder(time.Now().Add(time.Hour)) {
			p.state.end(EndedUnknown)
		}
		_ = in.conn.Close()
		in.stop.Stop()
		_ = in.ua.Close()
		in.refused.Close()
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("sip stop: %w", ctx.Err())
	}
}

// handle wraps a handler: counted for Stop, and refused with 403 unless the
// packet came from the PBX, or it is a request of a proxied call from that
// call's phone (inDialog checks which call).
func (in *Ingress) handle(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		in.mu.Lock()
		if in.stopping {
			in.mu.Unlock()
			return
		}
		in.handlers.Add(1)
		in.mu.Unlock()
		defer in.handlers.Done()
		if !in.fromPBX(req) && !(inDialogRequest(req) && in.fromPhone(req)) {
			in.refused.Refuse(reasonNotPBX, slog.String("transport", req.Transport()))
			in.respond(tx, sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil))
			return
		}
		h(req, tx)
	}
}

// fromPBX reads the packet's source address as the transport saw it, never
// the Via header, which the sender writes.
func (in *Ingress) fromPBX(req *sip.Request) bool {
	src, err := netip.ParseAddrPort(req.MessageData.Source())
	return err == nil && (isPBX(in.cfg.PBX, src.Addr()) || in.cfg.Peers != nil && in.cfg.Peers(src.Addr().Unmap()))
}

// fromTrunk: the packet came from the centre's own PBX or trunk.
func (in *Ingress) fromTrunk(req *sip.Request) bool {
	src, err := netip.ParseAddrPort(req.MessageData.Source())
	return err == nil && isPBX(in.cfg.PBX, src.Addr())
}

// fromPhone: the packet came from the phone of a call being proxied.
func (in *Ingress) fromPhone(req *sip.Request) bool {
	src, err := netip.ParseAddrPort(req.MessageData.Source())
	return err == nil && in.calls.phone(src.Addr())
}

// inDialogRequest: a request within a dialog carries a To tag (RFC 3261
// 12.2); a new call's INVITE does not.
func inDialogRequest(req *sip.Request) bool {
	to := req.To()
	if to == nil {
		return false
	}
	tag, _ := to.Params.Get("tag")
	return tag != ""
}

func isPBX(pbx []netip.Prefix, ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range pbx {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
