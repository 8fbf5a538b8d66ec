package api

// Who may do what on the staff API. Every staff route in faces.go goes
// through the one wrapper here, s.staff, with the right it needs; no
// handler checks a role itself. A request is authorised either by the
// centre's admin token (scripts: every right, actor "admin-token") or by
// a staff member's session cookie (the same login as volunteers), whose
// role is read from the current roster on every request, so a demotion or
// a removal takes effect at the next request. Every write (any method but
// GET), allowed or refused with 403, is written to the audit log
// (audit.go) before its answer leaves.

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/helpmesh/helpmesh/consensus"
)

// right is one thing a staff route lets its caller do.
type right uint8

const (
	// rightRead: the overview, the federation view and its events, the
	// roster, the policy and the audit log.
	rightRead right = iota + 1
	// rightManageVolunteers: register, change and remove a volunteer,
	// issue an enrolment code, end a volunteer's sessions.
	rightManageVolunteers
	// rightManageCentres: admit and remove centres.
	rightManageCentres
	// rightSetPolicy: PUT and PATCH the national policy.
	rightSetPolicy
	// rightRotateGossipKey: rotate the federation's gossip key.
	rightRotateGossipKey
	// rightSupervise: open the supervisor console, go on and off duty
	// (supervisor.go; with a person's session only, never the token).
	rightSupervise
)

// needs is the refusal's text for a caller without r.
func (r right) needs() string {
	switch r {
	case rightRead:
		return "supervisor or coordinator role needed to read the centre's staff views"
	case rightManageVolunteers:
		return "supervisor or coordinator role needed to manage volunteers"
	case rightManageCentres:
		return "coordinator role needed to admit or remove a centre"
	case rightSetPolicy:
		return "coordinator role needed to change the national policy"
	case rightRotateGossipKey:
		return "coordinator role needed to rotate the federation's gossip key"
	case rightSupervise:
		return "supervisor or coordinator role needed to open the supervisor console"
	}
	return "coordinator role needed"
}

// roleHas reports whether a roster role holds r. A supervisor reads,
// manages volunteers and goes on duty; a coordinator holds every right; a
// volunteer none.
func roleHas(role string, r right) bool {
	switch role {
	case consensus.RoleCoordinator:
		return true
	case consensus.RoleSupervisor:
		return r == rightRead || r == rightManageVolunteers || r == rightSupervise
	}
	return false
}

// adminActor is the audit log's actor for the admin token.
const adminActor = "admin-token"

// staffAction is one staff route's name in the audit log, the right it
// needs and where its target id is: the path's {id}, or the body's "id"
// (bodyTarget), or the policy's version (the answer's ETag, for the
// policy's writes).
type staffAction struct {
	name       string
	need       right
	bodyTarget bool
}

// actor is who made a staff request.
type actor struct {
	id   string // a volunteer id, or adminActor
	role string // a roster role, or adminActor
}

// staff authorises a request for act.need and, for a write, audits it. The
// admin token (Authorization: Bearer) holds every right; without one, the
// session cookie's staff member holds their role's rights, looked up in the
// roster now. 401 without credentials (or with a wrong token), 403 naming
// the right that is missing.
func (s *Server) staff(act staffAction, h http.HandlerFunc) http.Handler {
	want := []byte(s.cfg.AdminToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.staffActor(w, r, want)
		if !ok {
			return
		}
		target := r.PathValue("id")
		var body *consensus.Volunteer // the body's id, centre and role, when act.bodyTarget
		if act.bodyTarget {
			body = peekBody(r)
			target = body.ID
		}
		// Reads change nothing (and HEAD is a read): only actions are
		// audited. A refusal is answered before the audit, and counted, not
		// written: anyone with a session could otherwise fill the log with
		// refusals and push the real actions out (or, from a sibling site,
		// have them written under a supervisor's name).
		if msg := s.refusal(who, act, target, body); msg != "" {
			s.refusals.count(whoStaff, refusedForbidden)
			writeError(w, http.StatusForbidden, "forbidden", msg)
			return
		}
		audited := act.need != rightRead
		if who.id != adminActor && audited && !sameOriginRequest(r) {
			s.refusals.count(whoStaff, refusedForbidden)
			writeError(w, http.StatusForbidden, "forbidden", "a staff change made with a session must come from this centre's own pages")
			return
		}
		aw := &auditWriter{ResponseWriter: w}
		if audited {
			aw.before = func(status int) {
				t := auditTarget(target)
				if act.need == rightSetPolicy {
					// The policy's target is the version written.
					t = auditTarget(strings.Trim(w.Header().Get("ETag"), `"`))
				}
				s.audit.record(s.log, auditEntry{Actor: who.id, Role: who.role, Action: act.name, Target: t, Status: status})
			}
			w = aw
		}
		h(w, r)
		if audited && !aw.wrote {
			aw.WriteHeader(http.StatusOK)
		}
	})
}

// staffActor finds who makes r: the admin token's holder, or a signed-in
// person of this centre. Without either it answers 401.
func (s *Server) staffActor(w http.ResponseWriter, r *http.Request, want []byte) (actor, bool) {
	if got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && got != "" {
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="helpmesh", error="invalid_token"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "the admin token is wrong")
			return actor{}, false
		}
		return actor{id: adminActor, role: adminActor}, true
	}
	sess, ok := s.sessionFrom(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="helpmesh"`)
		writeError(w, http.StatusUnauthorized, "unauthorized",
			"log in as a supervisor or coordinator (POST /v1/volunteer/login), or send the admin token (Authorization: Bearer <token>)")
		return actor{}, false
	}
	v, local := s.localVolunteer(sess.volunteer)
	if !local {
		// Removed, or moved to another centre, since the login: no rights
		// here, whatever the role was.
		return actor{id: sess.volunteer, role: "none"}, true
	}
	return actor{id: v.ID, role: v.Role}, true
}

// refusal says why who may not do act on target (and, for a volunteer
// write, on the body's entry), or "" when they may. A supervisor manages
// only volunteers of their own centre, and neither gives nor touches the
// coordinator role; a coordinator and the admin token may do everything.
func (s *Server) refusal(who actor, act staffAction, target string, body *consensus.Volunteer) string {
	if who.role == adminActor || who.role == consensus.RoleCoordinator {
		return ""
	}
	if !roleHas(who.role, act.need) {
		return act.need.needs()
	}
	if act.need != rightManageVolunteers {
		return ""
	}
	own := s.cfg.Centre.Centre()
	if body != nil && body.Centre != "" && body.Centre != own {
		return fmt.Sprintf("a supervisor manages only %s's volunteers, not %s's", own, clipText(body.Centre))
	}
	if body != nil && body.Role != "" && body.Role != consensus.RoleVolunteer {
		return fmt.Sprintf("coordinator role needed to give the %s role", clipText(body.Role))
	}
	if v, ok := s.cfg.Centre.Roster().Volunteers[target]; ok {
		if v.Centre != own {
			return fmt.Sprintf("a supervisor manages only %s's volunteers; %s belongs to %s", own, v.ID, v.Centre)
		}
		if v.Role != consensus.RoleVolunteer {
			// An enrolment code for another supervisor would let one
			// supervisor act in another's name.
			return fmt.Sprintf("coordinator role needed to manage a %s's account", v.Role)
		}
	}
	return ""
}

// auditTargetPattern is the shape of a volunteer, centre or policy id.
var auditTargetPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,80}$`)

// auditTarget is what the audit keeps of a target: an id of the roster's
// shape, or a mark that it was not one (never an attacker's free text).
func auditTarget(t string) string {
	if t == "" || auditTargetPattern.MatchString(t) {
		return t
	}
	return "(not an id)"
}

// peekBody reads r's JSON body's id, centre and role (loosely: the handler
// decodes it strictly) and puts the body back for the handler. A body that
// does not decode gives nothing; the handler refuses it.
func peekBody(r *http.Request) *consensus.Volunteer {
	var v consensus.Volunteer
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(b), r.Body))
	if err == nil {
		_ = json.Unmarshal(b, &v)
	}
	return &v
}

// sameOriginRequest refuses a cookie-authorised write from another site's
// page: the session cookie is SameSite=Strict, but a site is wider than
// this centre's origin. A browser says where a request comes from in
// Sec-Fetch-Site (or at least Origin); a script without either sends no
// cookie unless its author gave it one.
func sameOriginRequest(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" {
		return sfs == "same-origin" || sfs == "none"
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	return true
}

// auditWriter records the request in the audit log (before) just before
// its status goes out.
type auditWriter struct {
	http.ResponseWriter
	before func(status int)
	wrote  bool
}

func (a *auditWriter) WriteHeader(status int) {
	if !a.wrote {
		a.wrote = true
		if a.before != nil {
			a.before(status)
		}
	}
	a.ResponseWriter.WriteHeader(status)
}

func (a *auditWriter) Write(b []byte) (int, error) {
	if !a.wrote {
		a.WriteHeader(http.StatusOK)
	}
	return a.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (flushes).
func (a *auditWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }
