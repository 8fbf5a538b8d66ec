package api

// Ending sessions and asking about one over HTTP: logout (one session or
// every one of the volunteer's), the staff's end of a volunteer's sessions,
// and the console page's question whether its cookie still opens a console
// (asked before it reconnects after a restart). The store is sessions.go.

import (
	"fmt"
	"net/http"
	"time"
)

// SessionInfo answers GET /v1/volunteer/session.
type SessionInfo struct {
	Volunteer string    `json:"volunteer"`
	Expires   time.Time `json:"expires"`
}

// SessionsEnded answers DELETE /v1/volunteers/{id}/sessions.
type SessionsEnded struct {
	Volunteer string `json:"volunteer"`
	Ended     int    `json:"ended"`
}

// sessionFrom returns the request's live session.
func (s *Server) sessionFrom(r *http.Request) (*session, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return nil, false
	}
	return s.sessions.lookup(c.Value)
}

// signedIn is the request's session; without one it answers 401 and false.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request) (*session, bool) {
	sess, ok := s.sessionFrom(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "unauthorized", "log in first: POST /v1/volunteer/login")
	}
	return sess, ok
}

// endSessions ends every session of volunteer and closes their console.
// The sessions are gone from memory even if the file could not be written;
// the error is logged and returned, since they would come back after a
// restart.
func (s *Server) endSessions(volunteer, reason string) (int, error) {
	n, err := s.sessions.dropVolunteer(volunteer)
	if err != nil {
		s.log.Error("ended sessions not removed from disk", "err", err)
	}
	s.closeConsole(volunteer, "", reason)
	return n, err
}

// logout answers POST /v1/volunteer/logout: the cookie's session ends, or
// with ?everywhere=1 every session of its volunteer.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	everywhere := false
	switch v := r.URL.Query().Get("everywhere"); v {
	case "":
	case "1", "true":
		everywhere = true
	default:
		writeError(w, http.StatusBadRequest, "bad_request",
			fmt.Sprintf("everywhere=%q: want 1 (every session of the volunteer) or nothing (this session)", clipText(v)))
		return
	}
	var err error
	if sess, ok := s.sessionFrom(r); ok {
		if everywhere {
			_, err = s.endSessions(sess.volunteer, "logged out everywhere")
		} else {
			if err = s.sessions.drop(sess.key); err != nil {
				s.log.Error("ended session not removed from disk", "err", err)
			}
			s.closeConsole(sess.volunteer, sess.key, "logged out")
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r),
	})
	w.Header().Set("Cache-Control", "no-store")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal",
			"you are logged out, but the centre could not record it on disk: log out again, or the session may come back after a restart")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// sessionInfo answers GET /v1/volunteer/session: whether the cookie's
// session is live. It does not look at the roster, which may lag just after
// a restart; the console itself does.
func (s *Server) sessionInfo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	sess, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, SessionInfo{Volunteer: sess.volunteer, Expires: sess.expires.UTC().Truncate(time.Second)})
}

// adminEndSessions answers DELETE /v1/volunteers/{id}/sessions: staff end
// every session of a volunteer of this centre (a lost laptop, a shared
// desk), without touching the password.
func (s *Server) adminEndSessions(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := s.localVolunteer(id); !ok {
		writeError(w, http.StatusNotFound, "not_found",
			fmt.Sprintf("volunteer %q is not a volunteer of %s (their sessions are at their home centre)", clipText(id), s.cfg.Centre.Centre()))
		return
	}
	n, err := s.endSessions(id, "your sessions were ended by the centre")
	if err != nil {
		writeError(w, http.StatusInternalServerError, "internal",
			"the sessions ended, but the centre could not record it on disk; try again: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, SessionsEnded{Volunteer: id, Ended: n})
}
