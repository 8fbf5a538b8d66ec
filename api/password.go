package api

// A volunteer changes their own password: POST /v1/volunteer/password with
// the session cookie. It is a login as far as the limits go (the same
// per-address and per-(volunteer, address) tables, so guessing through
// here and through login counts together), it takes the enrolment's
// password rules, and it ends every other session of the volunteer.
//
// Why the others end and this one stays: a volunteer changes a password
// mostly because someone else may know it, and a session opened with it
// (on a shared desk, a lost laptop) would otherwise outlive the change for
// up to twelve hours; the session that made the change has just shown the
// current password, so ending it would only make the volunteer log in
// again, and would cut the conversations of the console they are sitting
// at. A staff reset (a new enrolment code) ends every session when the
// code is used, since whoever uses it has shown no password at all.

import (
	"errors"
	"net/http"

	"github.com/coder/websocket"
)

// PasswordChange is POST /v1/volunteer/password's body.
type PasswordChange struct {
	Current string `json:"current"`
	New     string `json:"new"`
}

// errWrongPassword refuses a password change whose current password is
// wrong (403 wrong_password).
var errWrongPassword = errors.New("the current password is wrong")

func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	var req PasswordChange
	if !jsonRequest(w, r) || !decodeBody(w, r, &req) {
		return
	}
	field := func(status int, code, name, msg string) {
		writeJSON(w, status, ErrorBody{Code: code, Error: msg, Field: name, Pointer: "/" + name})
	}
	switch {
	case req.Current == "":
		field(http.StatusBadRequest, "bad_request", "current", "current is required: your password now")
		return
	case req.New == "":
		field(http.StatusBadRequest, "bad_request", "new", "new is required: the password you want")
		return
	}
	// Refused before the attempt counts: these say nothing about the
	// current password.
	if err := checkPassword(req.New); err != nil {
		field(http.StatusBadRequest, "bad_password", "new", err.Error())
		return
	}
	if req.New == req.Current {
		field(http.StatusBadRequest, "bad_password", "new", "the new password is the same as the current one")
		return
	}
	at, wait, err := s.logins.admit(r, sess.volunteer)
	if err != nil {
		refuseAttempt(w, "password", wait, err)
		return
	}
	_, local := s.localVolunteer(sess.volunteer)
	err = s.creds.change(sess.volunteer, req.Current, req.New, local && len(req.Current) <= maxPasswordBytes, at.known)
	switch {
	case errors.Is(err, errWrongPassword):
		at.failed()
		field(http.StatusForbidden, "wrong_password", "current", err.Error())
		return
	case errors.Is(err, errBusy):
		at.unused()
		refuseAttempt(w, "password", busyRetry, errBusy)
		return
	case err != nil:
		at.unused()
		s.log.Error("password not changed", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "the password could not be stored; it is unchanged: "+err.Error())
		return
	}
	at.succeeded()
	if _, err := s.endOtherSessions(sess.volunteer, sess.key, "your password was changed"); err != nil {
		writeError(w, http.StatusInternalServerError, "internal",
			"the password is changed and your other sessions ended, but the centre could not record their end on disk: log out everywhere, or they may come back after a restart")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// endOtherSessions ends every session of volunteer but keep, and closes
// their console unless it was opened with keep. As endSessions, the
// sessions are gone from memory even if the file could not be written.
func (s *Server) endOtherSessions(volunteer, keep, reason string) (int, error) {
	n, err := s.sessions.dropVolunteerExcept(volunteer, keep)
	if err != nil {
		s.log.Error("ended sessions not removed from disk", "err", err)
	}
	s.sockMu.Lock()
	defer s.sockMu.Unlock()
	if c := s.consoles[volunteer]; c != nil && c.sessionKey != keep {
		c.ws.sendThenClose(closedFrame{Type: "closed", Reason: reason}, websocket.StatusPolicyViolation, reason)
	}
	return n, err
}
