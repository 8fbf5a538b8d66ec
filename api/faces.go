package api

// Which path faces whom. A centre may listen on up to three addresses
// (Config.Addr, StaffAddr, MetricsAddr); each serves only the routes of the
// audiences it faces, and answers 404 for every other path, as for a path
// that does not exist. routes is the one table that decides; docs/api.md
// and docs/operations.md ("Going live over HTTPS") print it.

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// face is a set of audiences a route or a listener faces.
type face uint8

const (
	// visitors: anyone on the internet, the chat and what its page needs.
	visitors face = 1 << iota
	// staff: volunteers' console and enrolment, the overview, and the
	// staff API (admin token, or a supervisor's or coordinator's session). Reach it from the centre's own network or
	// a VPN only.
	staff
	// scrape: Prometheus's /metrics.
	scrape

	everyone = visitors | staff | scrape
)

// route is one row of the table: a ServeMux pattern, whom it faces and
// what serves it.
type route struct {
	pattern string
	faces   face
	h       http.Handler
}

// routes is the table of everything the centre serves over HTTP and whom
// each path faces. on is the listener's audiences (for the home page's
// redirect only).
func (s *Server) routes(on face) []route {
	h := func(f http.HandlerFunc) http.Handler { return f }
	return []route{
		// Probes: a load balancer in front of the visitors reads /readyz
		// (draining), and so may the staff's.
		{"GET /healthz", visitors | staff, h(s.healthz)},
		{"GET /readyz", visitors | staff, h(s.readyz)},

		// The visitor's chat: page, widget, socket, and the files and facts
		// every page needs (the console's page loads /static/, /i18n/ and
		// /v1/info as well).
		{"GET /{$}", visitors | staff, s.home(on)},
		{"GET /chat", visitors, h(s.chatPage)},
		{"GET /widget.js", visitors, s.page("static/widget.js", true)},
		{"GET /v1/chat", visitors, h(s.visitorChat)},
		{"GET /v1/chat/resume", visitors, h(s.resumeChat)},
		{"GET /v1/info", visitors | staff, h(s.info)},
		{"GET /static/", visitors | staff, h(s.webFile)},
		{"GET /i18n/", visitors | staff, h(s.serveCatalogue)},

		// Volunteers: enrolment, login and the console.
		{"GET /console", staff, h(s.consolePage)},
		{"GET /enrol", staff, s.page("enrol.html", false)},
		{"POST /v1/volunteer/enrol", staff, h(s.enrol)},
		{"POST /v1/volunteer/login", staff, h(s.login)},
		{"POST /v1/volunteer/logout", staff, h(s.logout)},
		{"GET /v1/volunteer/session", staff, h(s.sessionInfo)},
		{"POST /v1/volunteer/password", staff, h(s.changePassword)},
		{"GET /v1/console", staff, h(s.console)},

		// Supervisors and coordinators on duty: the supervisor console's
		// page and socket (supervisor.go; a session with the role, checked
		// in the roster like s.staff does, never the admin token).
		{"GET /supervisor", staff, s.page("supervisor.html", false)},
		{"GET /v1/supervisor", staff, h(s.supervisorConsole)},

		// Centre staff and coordinators: the overview page and the staff
		// API, each route behind s.staff with the right it needs (staff.go:
		// the admin token, or a supervisor's or coordinator's session).
		{"GET /overview", staff, s.page("overview.html", false)},
		{"GET /v1/federation", staff, s.staff(staffAction{name: "federation.read", need: rightRead}, s.federation)},
		{"GET /v1/roster", staff, s.staff(staffAction{name: "roster.read", need: rightRead}, s.roster)},
		{"GET /v1/federation/events", staff, s.staff(staffAction{name: "federation.events", need: rightRead}, s.federationEvents)},
		{"GET /v1/audit", staff, s.staff(staffAction{name: "audit.read", need: rightRead}, s.auditRead)},
		{"POST /v1/centres", staff, s.staff(staffAction{name: "centre.admit", need: rightManageCentres, bodyTarget: true}, s.admitCentre)},
		{"DELETE /v1/centres/{id}", staff, s.staff(staffAction{name: "centre.remove", need: rightManageCentres}, s.removeCentre)},
		{"GET /v1/policy", staff, s.staff(staffAction{name: "policy.read", need: rightRead}, s.getPolicy)},
		{"PUT /v1/policy", staff, s.staff(staffAction{name: "policy.put", need: rightSetPolicy}, s.putPolicy)},
		{"PATCH /v1/policy", staff, s.staff(staffAction{name: "policy.patch", need: rightSetPolicy}, s.patchPolicy)},
		{"POST /v1/federation/gossip-key", staff, s.staff(staffAction{name: "gossip_key.rotate", need: rightRotateGossipKey}, s.rotateGossipKey)},
		{"POST /v1/volunteers", staff, s.staff(staffAction{name: "volunteer.put", need: rightManageVolunteers, bodyTarget: true}, s.putVolunteer)},
		{"DELETE /v1/volunteers/{id}", staff, s.staff(staffAction{name: "volunteer.remove", need: rightManageVolunteers}, s.removeVolunteer)},
		{"POST /v1/volunteers/{id}/enrolment", staff, s.staff(staffAction{name: "volunteer.enrolment", need: rightManageVolunteers}, s.newEnrolment)},
		{"DELETE /v1/volunteers/{id}/sessions", staff, s.staff(staffAction{name: "volunteer.end_sessions", need: rightManageVolunteers}, s.adminEndSessions)},

		// Counts only, per centre and channel: never a visitor, contact or
		// volunteer id, never text. Unauthenticated, hence never public.
		{"GET /metrics", scrape, promhttp.HandlerFor(s.cfg.Centre.Registry(), promhttp.HandlerOpts{})},
	}
}

// handlerFor serves the routes that face any of on; every other path is a
// 404, the same answer as for a path that does not exist, so the public
// side does not even tell that a staff path is there.
func (s *Server) handlerFor(on face) http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.routes(on) {
		if r.faces&on != 0 {
			mux.Handle(r.pattern, r.h)
		}
	}
	return mux
}

// home sends the bare address to the chat, or to the console on a
// listener that faces staff only.
func (s *Server) home(on face) http.Handler {
	to := "/chat"
	if on&visitors == 0 {
		to = "/console"
	}
	return http.RedirectHandler(to, http.StatusFound)
}

// listenerSpec is one address to listen on and the audiences it faces.
type listenerSpec struct {
	name  string // public, staff, metrics: for errors
	addr  string
	faces face
	tls   bool
}

// listeners is the split Config asks for. Nothing set: one address faces
// everyone, as a centre on localhost always did. StaffAddr takes the staff
// (and, without MetricsAddr, the scrape) off the public address;
// MetricsAddr takes the scrape off whichever had it. TLS, when configured,
// is on the public and staff listeners; the scrape stays plain HTTP, for
// Prometheus on the centre's own network.
func (cfg Config) listeners() []listenerSpec {
	tls := cfg.TLSCert != ""
	public := listenerSpec{name: "public", addr: cfg.Addr, faces: everyone, tls: tls}
	out := []listenerSpec{}
	if cfg.StaffAddr != "" {
		public.faces &^= staff | scrape
		st := listenerSpec{name: "staff", addr: cfg.StaffAddr, faces: staff | scrape, tls: tls}
		if cfg.MetricsAddr != "" {
			st.faces &^= scrape
		}
		out = append(out, public, st)
	} else {
		if cfg.MetricsAddr != "" {
			public.faces &^= scrape
		}
		out = append(out, public)
	}
	if cfg.MetricsAddr != "" {
		out = append(out, listenerSpec{name: "metrics", addr: cfg.MetricsAddr, faces: scrape})
	}
	return out
}
