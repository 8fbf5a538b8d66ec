package api

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/channels"
	"github.com/helpmesh/helpmesh/switchboard"
)

// web holds the pages: plain HTML, CSS and JavaScript, no build step.
//
//go:embed web
var web embed.FS

// pageCSP forbids inline script and anything from another origin. Only the
// visitor's chat may be framed, by the origins a centre lets embed it as a
// widget; staff pages (console, overview, enrolment) are never framed, so no partner
// site can overlay them (clickjacking).
func (s *Server) pageCSP(embeddable bool) string {
	return s.pageCSPConnect(embeddable, "'self'")
}

// pageCSPConnect is pageCSP with connect as the connect-src sources: the
// chat page's include the federation's chat origins (connectSources).
func (s *Server) pageCSPConnect(embeddable bool, connect string) string {
	ancestors := "'none'"
	if embeddable {
		ancestors = "'self'"
		for _, o := range s.cfg.AllowedOrigins {
			if strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://") {
				ancestors += " " + o
			}
		}
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src " + connect + "; media-src 'self' data:; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; " +
		"frame-ancestors " + ancestors
}

// webFS is the embedded pages' tree, rooted at web/.
func webFS() fs.FS {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}

// page serves one embedded file; embeddable says whether partner sites may
// frame it (the chat only).
func (s *Server) page(name string, embeddable bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.pageHeaders(w, embeddable)
		http.ServeFileFS(w, r, s.web, name)
	})
}

// chatPage is the visitor's chat page. Its connect-src names the
// federation's chat origins, read from the roster per request, so that the
// page can start the chat at another centre when this one refuses.
func (s *Server) chatPage(w http.ResponseWriter, r *http.Request) {
	s.pageHeaders(w, true)
	roster := s.cfg.Centre.Roster()
	live := entryPoints(s.cfg.Centre.Centre(), roster, s.cfg.Centre.Federation(), "", maxConnectOrigins)
	w.Header().Set("Content-Security-Policy", s.pageCSPConnect(true, connectSources(roster, live)))
	http.ServeFileFS(w, r, s.web, "chat.html")
}

// webFile serves /static/ and /i18n/: files only, so a directory (or
// anything not in the tree) is a 404, never a listing.
func (s *Server) webFile(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	if st, err := fs.Stat(s.web, name); err != nil || st.IsDir() || !fs.ValidPath(name) {
		http.NotFound(w, r)
		return
	}
	s.pageHeaders(w, true)
	http.ServeFileFS(w, r, s.web, name)
}

// consolePage is the volunteer's console. The enrolment link,
// /enrol#v=ID&c=CODE, is a staff page too (never framed) whose code stays
// in the fragment (enrol_page_test.go).
func (s *Server) consolePage(w http.ResponseWriter, r *http.Request) {
	s.pageHeaders(w, false)
	if s.cfg.Softphones != nil {
		// The browser phone needs the microphone, on this page only.
		w.Header().Set("Permissions-Policy", "camera=(), microphone=(self), geolocation=()")
	}
	http.ServeFileFS(w, r, s.web, "console.html")
}

// serveCatalogue answers /i18n/LL.json, /i18n/staff/LL.json and the
// manifest /i18n/languages.json from what newServer loaded (the embedded
// catalogues with the centre's own over them).
func (s *Server) serveCatalogue(w http.ResponseWriter, r *http.Request) {
	b, ok := s.catalogues.bodies[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.pageHeaders(w, true)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(b)
}

func (s *Server) pageHeaders(w http.ResponseWriter, embeddable bool) {
	h := w.Header()
	h.Set("Content-Security-Policy", s.pageCSP(embeddable))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
}

// Info is what the public pages need before a chat starts.
type Info struct {
	Centre         string   `json:"centre"`
	Name           string   `json:"name"`
	Languages      []string `json:"languages"`
	Open           bool     `json:"open"`
	VolunteersFree bool     `json:"volunteers_free"`
	// EmergencyNumbers are the policy's, as the roster has them: they are
	// public, for the page to show when nobody can answer.
	EmergencyNumbers []consensus.EmergencyNumber `json:"emergency_numbers"`
	Topics           []string                    `json:"topics"`
	AgeGroups        []string                    `json:"age_groups"`
	// QuickExitURL is where the page's quick exit goes (Config.QuickExitURL).
	QuickExitURL string `json:"quick_exit_url"`
	// EntryPoints are the public URLs (origins) of other centres where a
	// chat in the asked language (?lang=, else any) could start now, for
	// the page to try when this centre refuses or cannot be reached
	// (entryPoints).
	EntryPoints []string `json:"entry_points"`
}

// info answers GET /v1/info: public, cacheable for a few seconds, no
// identities. volunteers_free says whether anyone in the federation is free
// for chat now, so the page can say "no one is free right now" honestly.
func (s *Server) info(w http.ResponseWriter, req *http.Request) {
	s.allowInfoOrigin(w, req)
	lang := req.URL.Query().Get("lang")
	if lang != "" && !consensus.KnownLanguage(lang) {
		writeError(w, http.StatusBadRequest, "bad_request", "lang must be an ISO 639-1 language code, e.g. lang=nb, or left out")
		return
	}
	r := s.cfg.Centre.Roster()
	p := r.Policy
	in := Info{
		Centre: s.cfg.Centre.Centre(), Name: r.Centres[s.cfg.Centre.Centre()].Name,
		Languages: p.Languages, Open: p.OpenAt(time.Now()), Topics: p.Topics, AgeGroups: switchboard.AgeGroups,
		QuickExitURL: s.cfg.QuickExitURL,
	}
	in.EmergencyNumbers = append(in.EmergencyNumbers, p.EmergencyNumbers...)
	fv := s.cfg.Centre.Federation()
	in.EntryPoints = entryPoints(s.cfg.Centre.Centre(), r, fv, lang, maxEntryPoints)
	for _, c := range fv.Centres {
		if c.Gossip != "alive" || c.Availability == nil {
			continue
		}
		for _, n := range c.Availability.Channels[channels.Chat].Free {
			if n > 0 {
				in.VolunteersFree = true
			}
		}
	}
	writeJSON(w, http.StatusOK, in)
}
