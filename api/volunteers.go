package api

// Volunteers: enrolment, login and logout over HTTP (docs/api.md has the
// endpoints and their answers). Credentials live only at the volunteer's
// home centre, never in the roster, so a volunteer is enrolled and logs in
// there; the store is credentials.go, the sessions sessions.go (logout and
// the session's own endpoints signin.go, a volunteer's own password
// change password.go), and the limits on attempts attempts.go.

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/helpmesh/helpmesh/consensus"
)

const (
	// CredentialsFile is the credential store's name in the data directory.
	CredentialsFile = "credentials.json"
	// SessionCookie names the volunteer's session cookie.
	SessionCookie = "helpmesh_session"

	enrolmentTTL      = 72 * time.Hour
	sessionTTL        = 12 * time.Hour
	minPasswordRunes  = 10
	maxPasswordBytes  = 256
	maxSessionsPerVol = 16
)

// The messages are shown to whoever tried: one message for every way a
// login or an enrolment can be wrong, so the answer tells nothing of which.
var (
	// errBadCredentials refuses a login (401 unauthorized).
	errBadCredentials = errors.New("unknown volunteer or wrong password")
	// errBadEnrolment refuses an enrolment (401 bad_enrolment).
	errBadEnrolment = errors.New("the enrolment code is wrong, already used or expired (ask your centre for a new one)")
	// errTooManyAttempts is attemptGuard's refusal (429).
	errTooManyAttempts = errors.New("too many attempts")
	// errBusy means no argon2id run is free (503 busy).
	errBusy = errors.New("the centre is checking too many passwords at once")
)

func (s *Server) initVolunteerDesk() error {
	for _, p := range s.cfg.AllowedOrigins {
		if _, err := path.Match(strings.ToLower(p), ""); err != nil || p == "" {
			return fmt.Errorf("allowed origin %q is not a valid pattern", p)
		}
	}
	creds, err := openCredStore(s.cfg.Centre.DataDir(), s.cfg.argon)
	if err != nil {
		return err
	}
	s.creds = creds
	sessions, err := openSessionStore(s.cfg.Centre.DataDir(), s.log)
	if err != nil {
		return err
	}
	s.sessions = sessions
	if s.audit, err = openAuditLog(s.cfg.Centre.DataDir()); err != nil {
		return err
	}
	addrs := newAddrHasher(s.cfg.TrustedProxies)
	s.logins = newAttemptGuard(addrs)
	s.enrols = newAttemptGuard(addrs)
	s.chatStarts = newAddrLimiter(s.cfg.ChatStartsPerMinute, s.cfg.ChatStartBurst, s.cfg.TrustedProxies)
	s.timing = defaultSocketTiming
	s.socks = map[*wsock]struct{}{}
	s.consoles = map[string]*consoleConn{}
	return nil
}

// VolunteerWritten answers POST /v1/volunteers. A volunteer of this centre
// gets a one-time enrolment code to set a password with.
type VolunteerWritten struct {
	Volunteer     consensus.Volunteer `json:"volunteer"`
	EnrolmentCode string              `json:"enrolment_code,omitempty"`
	// EnrolmentExpires is when the code stops working.
	EnrolmentExpires *time.Time `json:"enrolment_expires,omitempty"`
}

// volunteerWritten follows a successful roster write of v.
func (s *Server) volunteerWritten(w http.ResponseWriter, v consensus.Volunteer) {
	resp := VolunteerWritten{Volunteer: v}
	if v.Centre != s.cfg.Centre.Centre() {
		// The volunteer belongs elsewhere (or moved away): nothing of theirs
		// may stay here.
		s.forgetVolunteer(v.ID, "you now belong to another centre")
		writeJSON(w, http.StatusOK, resp)
		return
	}
	code, expires, err := s.creds.newEnrolment(v.ID)
	if err != nil {
		s.log.Error("enrolment code not saved", "err", err)
		writeError(w, http.StatusInternalServerError, "internal",
			"the volunteer was saved in the roster but no enrolment code could be stored; post the volunteer again: "+err.Error())
		return
	}
	expires = expires.Truncate(time.Second)
	resp.EnrolmentCode, resp.EnrolmentExpires = code, &expires
	writeJSON(w, http.StatusOK, resp)
}

// newEnrolment issues a fresh enrolment code for a volunteer of this centre
// (a lost code, a forgotten password) without a roster write.
func (s *Server) newEnrolment(w http.ResponseWriter, r *http.Request) {
	v, ok := s.localVolunteer(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "not_found",
			fmt.Sprintf("volunteer %q is not a volunteer of %s (enrol volunteers at their home centre)", clipText(r.PathValue("id")), s.cfg.Centre.Centre()))
		return
	}
	s.volunteerWritten(w, v)
}

// forgetVolunteer drops a volunteer's credentials, sessions and console.
func (s *Server) forgetVolunteer(id, reason string) {
	if err := s.creds.remove(id); err != nil {
		s.log.Error("credentials not removed", "err", err)
	}
	s.endSessions(id, reason)
}

// localVolunteer returns the roster volunteer id if they belong here.
func (s *Server) localVolunteer(id string) (consensus.Volunteer, bool) {
	v, ok := s.cfg.Centre.Roster().Volunteers[id]
	return v, ok && v.Centre == s.cfg.Centre.Centre()
}

// EnrolRequest sets a volunteer's password with an enrolment code.
type EnrolRequest struct {
	Volunteer string `json:"volunteer"`
	Code      string `json:"code"`
	Password  string `json:"password"`
}

// LoginRequest opens a volunteer session.
type LoginRequest struct {
	Volunteer string `json:"volunteer"`
	Password  string `json:"password"`
}

func (q EnrolRequest) missing() string {
	if q.Volunteer == "" || q.Code == "" {
		return "volunteer and code are required"
	}
	return ""
}

func (q LoginRequest) missing() string {
	if q.Volunteer == "" || q.Password == "" {
		return "volunteer and password are required"
	}
	return ""
}

// attemptRequest is a login's or an enrolment's body.
type attemptRequest interface {
	// missing names the fields that must be set, or is "" when they are.
	missing() string
}

// readAttempt reads a login's or an enrolment's body into req: declared
// JSON, well formed, with its fields set. A body that is not is refused
// before the attempt counts against anyone.
func readAttempt(w http.ResponseWriter, r *http.Request, req attemptRequest) bool {
	if !jsonRequest(w, r) || !decodeBody(w, r, req) {
		return false
	}
	if m := req.missing(); m != "" {
		writeError(w, http.StatusBadRequest, "bad_request", m)
		return false
	}
	return true
}

func (s *Server) enrol(w http.ResponseWriter, r *http.Request) {
	var req EnrolRequest
	if !readAttempt(w, r, &req) {
		return
	}
	if err := checkPassword(req.Password); err != nil {
		writeError(w, http.StatusBadRequest, "bad_password", err.Error())
		return
	}
	at, wait, err := s.enrols.admit(r, req.Volunteer)
	if err != nil {
		refuseAttempt(w, "enrolment", wait, err)
		return
	}
	if _, ok := s.localVolunteer(req.Volunteer); !ok {
		at.failed()
		writeError(w, http.StatusUnauthorized, "bad_enrolment", errBadEnrolment.Error())
		return
	}
	if err := s.creds.enrol(req.Volunteer, req.Code, req.Password); err != nil {
		switch {
		case errors.Is(err, errBadEnrolment):
			at.failed()
			writeError(w, http.StatusUnauthorized, "bad_enrolment", err.Error())
			return
		case errors.Is(err, errBusy):
			at.unused()
			refuseAttempt(w, "enrolment", busyRetry, err)
			return
		}
		s.log.Error("enrolment failed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the password could not be stored: "+err.Error())
		return
	}
	at.succeeded()
	s.logins.know(r, req.Volunteer)
	// A new password ends the volunteer's old sessions.
	s.endSessions(req.Volunteer, "your password was changed")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func checkPassword(p string) error {
	switch {
	case !utf8.ValidString(p):
		return errors.New("the password must be UTF-8 text")
	case utf8.RuneCountInString(p) < minPasswordRunes:
		return fmt.Errorf("the password must have at least %d characters", minPasswordRunes)
	case len(p) > maxPasswordBytes:
		return fmt.Errorf("the password must be at most %d bytes", maxPasswordBytes)
	}
	return nil
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if !readAttempt(w, r, &req) {
		return
	}
	at, wait, err := s.logins.admit(r, req.Volunteer)
	if err != nil {
		refuseAttempt(w, "login", wait, err)
		return
	}
	_, local := s.localVolunteer(req.Volunteer)
	var token string
	var stored error
	ok, err := s.creds.login(req.Volunteer, req.Password, local && len(req.Password) <= maxPasswordBytes, at.known, func() error {
		token, _, stored = s.sessions.create(req.Volunteer)
		return nil
	})
	if err != nil {
		at.unused()
		if !errors.Is(err, errBusy) {
			s.log.Error("login not checked", "err", err)
		}
		refuseAttempt(w, "login", busyRetry, errBusy)
		return
	}
	if !ok {
		at.failed()
		writeError(w, http.StatusUnauthorized, "unauthorized", errBadCredentials.Error())
		return
	}
	at.succeeded()
	if err := stored; err != nil {
		s.log.Error("session not stored", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the password is right, but the session could not be stored; try again")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: token, Path: "/",
		MaxAge: int(sessionTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: s.secure(r),
	})
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// secure says whether the session cookie must be Secure: over TLS, or
// when a trusted proxy says the visitor's side was HTTPS.
func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || trustedPeer(r, s.cfg.TrustedProxies) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// refuseAttempt answers a login or enrolment (what) that attemptGuard or
// the argon2id slots refused: 429 too_many_attempts or 503 busy, both with
// Retry-After.
func refuseAttempt(w http.ResponseWriter, what string, wait time.Duration, err error) {
	secs := retryAfterSeconds(max(wait, time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	if errors.Is(err, errBusy) {
		writeError(w, http.StatusServiceUnavailable, "busy",
			fmt.Sprintf("the centre is too busy to check this %s now; try again in %d seconds", what, secs))
		return
	}
	writeError(w, http.StatusTooManyRequests, "too_many_attempts",
		fmt.Sprintf("too many %s attempts from your address; try again in %d seconds", what, secs))
}

// jsonRequest refuses bodies that are not declared JSON: a cross-site form
// cannot send application/json without a CORS preflight, which this API
// never grants.
func jsonRequest(w http.ResponseWriter, r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send the body as Content-Type: application/json")
		return false
	}
	return true
}
