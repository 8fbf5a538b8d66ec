// Package api is a centre's HTTP surface: health and readiness, the
// federation view, and the admin endpoints the CLI drives. See docs/api.md.
package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/node"
	"github.com/helpmesh/helpmesh/switchboard"
)

// Centre is what the API needs of a running centre.
type Centre interface {
	Centre() string
	P2PAddrs() []string
	Ready() error
	Federation() node.FederationView
	Roster() consensus.Roster
	// ReadRoster is a linearizable read of the roster, answered by the Raft
	// leader after it confirmed its leadership.
	ReadRoster(ctx context.Context) (consensus.Roster, error)
	Propose(ctx context.Context, cmd consensus.Command) error
	// Switchboard is the centre's live desk: visitors' contacts and
	// volunteers' consoles.
	Switchboard() *switchboard.Switchboard
	Registry() *prometheus.Registry
	// DataDir is the centre's data directory; the API keeps its volunteers'
	// credentials there (credentials.json), never in the roster.
	DataDir() string
	// Sign signs with the centre's identity key, checkable against its
	// roster peer id (a visitor's front-of-queue ticket, ticket.go).
	Sign(b []byte) ([]byte, error)
}

// Config configures a centre's HTTP server.
type Config struct {
	// Addr is the listen address, host:port (port 0 picks one). Alone, it
	// serves everything; with StaffAddr or MetricsAddr it is the public
	// side and serves only what those do not (faces.go has the table).
	Addr string
	// StaffAddr, if set, serves the volunteers' console and enrolment, the
	// overview and the admin API, and /metrics unless MetricsAddr is set;
	// Addr then answers 404 for them.
	StaffAddr string
	// MetricsAddr, if set, serves /metrics alone, in plain HTTP.
	MetricsAddr string
	// TLSCert and TLSKey are PEM files of the certificate (with its chain)
	// and key for the public and staff listeners. Both or neither; the
	// files are read again when they change (tlsfiles.go).
	TLSCert, TLSKey string
	Centre          Centre
	AdminToken      string
	Logger          *slog.Logger

	// AllowedOrigins are extra origins allowed to open the visitor chat
	// socket, for a centre's embedding site: host patterns in path.Match
	// syntax ("www.example.org", "*.example.org") or with a scheme
	// ("https://www.example.org"). The page's own origin is always allowed;
	// the volunteer console is same-origin only.
	AllowedOrigins []string
	// TrustedProxies are the reverse proxies (addresses as /32 or /128, or
	// ranges) in front of the centre. X-Forwarded-For and X-Forwarded-Proto
	// are read only from a TCP peer among them; the visitor is then the
	// rightmost X-Forwarded-For hop that is not one of them (see
	// clientAddr). Empty: the TCP peer is the visitor. The address counts
	// for every per-address limit (chat starts, logins, enrolments).
	TrustedProxies []netip.Prefix
	// ChatStartsPerMinute and ChatStartBurst bound how many chats one visitor
	// address may start (defaults 5 and 5).
	ChatStartsPerMinute int
	ChatStartBurst      int
	// MaxChatsPerAddress bounds the chats open at once from one visitor
	// address, an IPv6 address counting as its /64 (default 3).
	MaxChatsPerAddress int
	// QuickExitURL is where the chat page's quick exit sends the visitor
	// (location.replace, so Back does not return). A centre sets a neutral
	// site, such as a weather or news page; the default is "about:blank".
	// It must be an http(s) URL or "about:blank".
	QuickExitURL string
	// Softphones is the node's browser phone, for a centre without a PBX:
	// volunteers answer calls in the console page (softphone.go). Nil: no
	// browser phone, and the phone "browser" is refused.
	Softphones Softphones
	// SoftphoneRaw turns the browser's echo cancellation, noise
	// suppression and gain control off for the volunteer's microphone.
	// Off (processing on) suits real headsets; tests with a fake
	// microphone want the signal as it was sent.
	SoftphoneRaw bool
	// CatalogueDir holds a centre's own page catalogues (<data dir>/i18n:
	// LL.json for the visitor page, staff/LL.json for the staff pages),
	// served over the embedded ones (i18n.go). "": the embedded only. A
	// file that cannot be used is skipped with a warning.
	CatalogueDir string

	// argon overrides the password hashing cost (tests only).
	argon argonParams
}

// maxBody bounds every request body the API reads.
const maxBody = 64 << 10

// Server is a running HTTP server for one centre.
type Server struct {
	cfg Config
	log *slog.Logger
	// listeners are the public one first, then staff and metrics if
	// configured apart.
	listeners []*listener
	certs     *certFiles // nil without TLS
	web       fs.FS      // the embedded pages

	creds      *credStore
	catalogues *Catalogues
	sessions   *sessionStore
	audit      *auditLog
	logins     *attemptGuard
	enrols     *attemptGuard
	chatStarts *addrLimiter
	tickets    *usedTickets
	openChats  *openChats
	refusals   *refusals
	timing     socketTiming

	sockMu   sync.Mutex
	socks    map[*wsock]struct{}
	consoles map[string]*consoleConn // by volunteer id
	// supervisorConns are the open supervisor consoles (supervisor.go).
	supervisorConns map[*supervisorConn]struct{}
	stopping        bool
	sockWG          sync.WaitGroup
}

// listener is one bound address serving the routes of its faces.
type listener struct {
	spec listenerSpec
	ln   net.Listener
	http *http.Server
	done chan error
}

// Start listens and serves until Stop. It returns once every listener is
// bound.
func Start(cfg Config) (*Server, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.TLSCert != "" && cfg.StaffAddr == "" {
		// TLS says "this faces the internet", and with one listener the
		// console, the admin API and /metrics face it too.
		s.log.Warn("TLS on a single listener: the staff pages, the admin API and /metrics are served to the internet with the chat; set web.staff_addr (docs/operations.md, Going live over HTTPS)")
	}
	for _, spec := range cfg.listeners() {
		ln, err := net.Listen("tcp", spec.addr)
		if err != nil {
			for _, l := range s.listeners {
				_ = l.ln.Close()
			}
			return nil, fmt.Errorf("start api: %s listener: %w", spec.name, err)
		}
		s.listeners = append(s.listeners, &listener{spec: spec, ln: ln, done: make(chan error, 1)})
	}
	// Hijacked WebSockets outlive Shutdown: close them with a reason. The
	// public listener's shutdown, the first, closes them all, on whichever
	// listener they came.
	s.listeners[0].serve(s, func() { s.closeSockets("the centre is shutting down") })
	for _, l := range s.listeners[1:] {
		l.serve(s, nil)
	}
	return s, nil
}

// serve starts l's HTTP server; onShutdown, if set, runs when it stops.
func (l *listener) serve(s *Server, onShutdown func()) {
	l.http = &http.Server{
		Handler:           s.handlerFor(l.spec.faces),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		// The standard library's error log would print client addresses.
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	if onShutdown != nil {
		l.http.RegisterOnShutdown(onShutdown)
	}
	ln := l.ln
	if l.spec.tls && s.certs != nil {
		l.http.TLSConfig = s.certs.tlsConfig()
		ln = tls.NewListener(ln, l.http.TLSConfig)
	}
	go func() { l.done <- l.http.Serve(ln) }()
}

// newServer checks cfg and builds the server's state, without listening.
func newServer(cfg Config) (*Server, error) {
	if cfg.AdminToken == "" {
		return nil, errors.New("start api: an admin token is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.QuickExitURL == "" {
		cfg.QuickExitURL = "about:blank"
	}
	if u, err := url.Parse(cfg.QuickExitURL); cfg.QuickExitURL != "about:blank" &&
		(err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
		return nil, fmt.Errorf("start api: quick exit URL %q must be an http(s) URL or about:blank", cfg.QuickExitURL)
	}
	proxies, err := checkTrustedProxies(cfg.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("start api: %w", err)
	}
	cfg.TrustedProxies = proxies
	s := &Server{
		cfg: cfg, log: cfg.Logger.With("component", "api"), web: webFS(),
		openChats: newOpenChats(cfg.MaxChatsPerAddress), tickets: newUsedTickets(), refusals: newRefusals(cfg.Centre.Centre(), cfg.Centre.Registry()),
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("start api: a TLS certificate needs its key, and a key its certificate (web.tls_cert and web.tls_key)")
	}
	if cfg.TLSCert != "" {
		if s.certs, err = loadCertFiles(cfg.TLSCert, cfg.TLSKey, s.log); err != nil {
			return nil, fmt.Errorf("start api: %w", err)
		}
	}
	if err := s.initVolunteerDesk(); err != nil {
		return nil, fmt.Errorf("start api: %w", err)
	}
	cats, problems, err := LoadCatalogues(cfg.CatalogueDir)
	if err != nil {
		return nil, fmt.Errorf("start api: %w", err)
	}
	for _, p := range problems {
		s.log.Warn("catalogue skipped; the page keeps the embedded texts", "err", p)
	}
	s.catalogues = cats
	return s, nil
}

// Addr returns the bound address of the public listener (the only one
// unless StaffAddr or MetricsAddr is set).
func (s *Server) Addr() string { return s.listeners[0].ln.Addr().String() }

// StaffAddr returns the staff listener's bound address, or "" when staff
// are served on Addr.
func (s *Server) StaffAddr() string { return s.addrOf("staff") }

// MetricsAddr returns the metrics listener's bound address, or "" when
// /metrics is served on StaffAddr or Addr.
func (s *Server) MetricsAddr() string { return s.addrOf("metrics") }

func (s *Server) addrOf(name string) string {
	for _, l := range s.listeners {
		if l.spec.name == name {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// Stop shuts the server down gracefully within ctx.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	for _, l := range s.listeners {
		err = errors.Join(err, l.http.Shutdown(ctx))
		if serveErr := <-l.done; serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, serveErr)
		}
	}
	err = errors.Join(err, s.waitSockets(ctx))
	if cerr := s.audit.close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close audit log: %w", cerr))
	}
	if err != nil {
		return fmt.Errorf("stop api: %w", err)
	}
	return nil
}

// Handler returns every route, as the single listener serves them when
// Config sets neither StaffAddr nor MetricsAddr.
func (s *Server) Handler() http.Handler { return s.handlerFor(everyone) }

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "centre": s.cfg.Centre.Centre()})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := s.cfg.Centre.Ready(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "not_ready", err.Error())
		return
	}
	if sb := s.cfg.Centre.Switchboard(); sb != nil && sb.Draining() {
		// A load balancer stops sending visitors here; conversations go on.
		writeError(w, http.StatusServiceUnavailable, "draining", drainMessage)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "centre": s.cfg.Centre.Centre()})
}

func (s *Server) federation(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Centre.Federation())
}

// roster serves the centre's local copy of the roster (which may lag the
// leader), or with ?consistency=linearizable a copy read through the leader
// that reflects every write completed before the request.
func (s *Server) roster(w http.ResponseWriter, r *http.Request) {
	if roster, ok := s.readRosterAs(w, r); ok {
		writeJSON(w, http.StatusOK, roster)
	}
}

// AdmitResponse tells the coordinator how the new centre joins.
type AdmitResponse struct {
	Centre consensus.Centre `json:"centre"`
	// JoinAddrs are this member's libp2p addresses, for `helpmesh run --join`.
	JoinAddrs []string `json:"join_addrs"`
}

func (s *Server) admitCentre(w http.ResponseWriter, r *http.Request) {
	var c consensus.Centre
	if !decodeBody(w, r, &c) {
		return
	}
	cmd := consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpAdmitCentre, Centre: &c}
	if !s.propose(w, r, cmd) {
		return
	}
	s.log.Info("centre admitted", "admitted", c.ID)
	writeJSON(w, http.StatusCreated, AdmitResponse{Centre: c, JoinAddrs: s.cfg.Centre.P2PAddrs()})
}

func (s *Server) removeCentre(w http.ResponseWriter, r *http.Request) {
	cmd := consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpRemoveCentre, ID: r.PathValue("id")}
	if s.propose(w, r, cmd) {
		s.log.Info("centre removed", "removed", cmd.ID)
		writeJSON(w, http.StatusOK, map[string]string{"removed": cmd.ID})
	}
}

func (s *Server) putVolunteer(w http.ResponseWriter, r *http.Request) {
	var v consensus.Volunteer
	if !decodeBody(w, r, &v) {
		return
	}
	if s.propose(w, r, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpPutVolunteer, Volunteer: &v}) {
		s.volunteerWritten(w, v)
	}
}

func (s *Server) removeVolunteer(w http.ResponseWriter, r *http.Request) {
	cmd := consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpRemoveVolunteer, ID: r.PathValue("id")}
	if s.propose(w, r, cmd) {
		s.forgetVolunteer(cmd.ID, "you were removed from the roster")
		writeJSON(w, http.StatusOK, map[string]string{"removed": cmd.ID})
	}
}

// propose writes cmd and maps a refusal to a clear HTTP error.
func (s *Server) propose(w http.ResponseWriter, r *http.Request, cmd consensus.Command) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	err := s.cfg.Centre.Propose(ctx, cmd)
	if err == nil {
		return true
	}
	status, code := http.StatusInternalServerError, "internal"
	switch {
	case errors.Is(err, consensus.ErrBadCommand), errors.Is(err, consensus.ErrUnsupportedVersion):
		status, code = http.StatusBadRequest, "bad_request"
	case errors.Is(err, consensus.ErrUnknownCentre), errors.Is(err, consensus.ErrUnknownVolunteer):
		status, code = http.StatusNotFound, "not_found"
	case errors.Is(err, consensus.ErrDuplicate), errors.Is(err, consensus.ErrStaleGeneration):
		status, code = http.StatusConflict, "conflict"
	case errors.Is(err, consensus.ErrNotEverywhere):
		status, code = http.StatusConflict, "not_everywhere"
	case errors.Is(err, consensus.ErrPolicyChanged):
		// Checked at apply: another write landed between the read this
		// one was made from and its turn in the log.
		preconditionFailed(w, err.Error())
		return false
	case errors.Is(err, consensus.ErrOutcomeUnknown):
		// Sent, but no answer: the client must look before retrying.
		status, code = http.StatusServiceUnavailable, "outcome_unknown"
	case errors.Is(err, consensus.ErrNotLeader), errors.Is(err, context.DeadlineExceeded):
		status, code = http.StatusServiceUnavailable, "no_quorum"
	case r.Context().Err() != nil:
		// The client went away; nobody is left to tell.
		status, code = http.StatusServiceUnavailable, "cancelled"
	}
	if status == http.StatusInternalServerError {
		s.log.Error("roster write failed", "op", cmd.Op, "err", err)
	}
	body := ErrorBody{Code: code, Error: err.Error()}
	if fe := (*consensus.FieldError)(nil); errors.As(err, &fe) {
		body.Field, body.Pointer = fe.Field, fe.Pointer
	}
	writeJSON(w, status, body)
	return false
}

// decodeBody reads one bounded, strictly shaped JSON body.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body over %d bytes", maxBody))
			return false
		}
		writeError(w, http.StatusBadRequest, "bad_request", "malformed JSON body: "+err.Error())
		return false
	}
	// More() is false before a stray '}' or ']': only the end will do.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeError(w, http.StatusBadRequest, "bad_request", "malformed JSON body: trailing data")
		return false
	}
	return true
}

// ErrorBody is every error response's shape.
type ErrorBody struct {
	Code  string `json:"code"`
	Error string `json:"error"`
	// Field names the request body's field the error is about, when it is
	// about one (a policy's "languages", a password change's "current"),
	// so a form can show the message beside that input.
	Field string `json:"field,omitempty"`
	// Pointer is the JSON pointer (RFC 6901) to the value refused, when
	// it is more precise than Field ("/emergency_numbers/1/names/de").
	Pointer string `json:"pointer,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, ErrorBody{Code: code, Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// desk returns the centre's switchboard or, while a node has none yet,
// answers 503 not_ready saying what is not yet possible.
func (s *Server) desk(w http.ResponseWriter, notYet string) (*switchboard.Switchboard, bool) {
	sb := s.cfg.Centre.Switchboard()
	if sb == nil {
		writeError(w, http.StatusServiceUnavailable, "not_ready", notYet)
		return nil, false
	}
	return sb, true
}
