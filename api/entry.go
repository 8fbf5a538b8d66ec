package api

// Entry failover (issue 15): every centre publishes its public chat URL in
// the roster (web.public_url), /v1/info lists the other centres a visitor
// could start a chat at right now, and every centre lets the federation's
// own chat pages open its chat socket. The chat page tries them when its
// own centre refuses (draining, not ready, queue full) or cannot be
// reached.

import (
	"cmp"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/channels"
	"github.com/helpmesh/helpmesh/node"
)

// maxEntryPoints bounds /v1/info's entry_points: enough to get past a
// rolling restart and a centre or two that are down, few enough that a
// page does not walk the whole federation.
const maxEntryPoints = 8

// maxConnectOrigins bounds the federation origins in the chat page's
// connect-src. Each is listed twice (http(s) and ws(s)), and a response
// header past a proxy's buffer (nginx's proxy_buffer_size, 4 KiB by
// default; the samples set 16 KiB) breaks the page: about 100 centres did.
// Live centres come first; a page that is handed an entry point outside
// its CSP sees the attempt fail at once and moves on (chat.js).
const maxConnectOrigins = 40

// federationOrigins are the browser origins of every centre's public URL
// in r (this centre's included), sorted, without duplicates.
func federationOrigins(r consensus.Roster) []string {
	var out []string
	for _, c := range r.Centres {
		if c.PublicURL != "" {
			out = append(out, consensus.PublicOrigin(c.PublicURL))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// chatOriginPatterns are the origin patterns that may open the visitor's
// chat socket: the centre's configured ones and the federation's chat
// pages, the latter escaped so that path.Match (ours and coder/websocket's)
// takes them literally (an IPv6 origin has brackets).
func (s *Server) chatOriginPatterns() []string {
	out := slices.Clone(s.cfg.AllowedOrigins)
	for _, o := range federationOrigins(s.cfg.Centre.Roster()) {
		out = append(out, escapeMatch(o))
	}
	return out
}

// escapeMatch quotes path.Match's special characters.
func escapeMatch(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// originAllowed reports whether origin (a request's Origin header) matches
// one of patterns, as handshakeError matches them.
func originAllowed(origin string, patterns []string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return true
		}
	}
	return false
}

// allowInfoOrigin lets a page from an allowed or federation origin read
// /v1/info across origins (a GET without credentials: a simple request, no
// preflight). A stranger's page gets no header, so its browser keeps the
// answer from it.
func (s *Server) allowInfoOrigin(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Origin")
	o := r.Header.Get("Origin")
	if o == "" || o == "null" || !originAllowed(o, s.chatOriginPatterns()) {
		return
	}
	w.Header().Set("Access-Control-Allow-Origin", o)
}

// connectSources are the CSP connect-src sources of the chat page: its own
// origin and every federation chat origin, each as http(s) and ws(s), so
// the page can read /v1/info and open the chat socket at another centre.
func connectSources(r consensus.Roster, live []string) string {
	var origins []string
	for _, u := range live {
		origins = append(origins, consensus.PublicOrigin(u))
	}
	for _, o := range federationOrigins(r) {
		if !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	src := "'self'"
	for _, o := range origins[:min(len(origins), maxConnectOrigins)] {
		src += " " + o + " " + "ws" + strings.TrimPrefix(o, "http")
	}
	return src
}

// entryPoints are the public URLs of the other centres a visitor could
// start a chat at now: gossip alive, its availability heard and not
// draining, and serving lang ("": any language): a chat volunteer of lang
// enrolled there (roster), or one signed in for chat (gossip, free or
// busy). Those with someone free in lang come first, then by id;
// at most limit. Nothing but what the roster already publishes.
func entryPoints(own string, r consensus.Roster, fv node.FederationView, lang string, limit int) []string {
	serves := map[string]bool{}
	for _, v := range r.Volunteers {
		if slices.Contains(v.Channels, channels.Chat) && (lang == "" || slices.Contains(v.Languages, lang)) {
			serves[v.Centre] = true
		}
	}
	type cand struct {
		url  string
		id   string
		free bool
	}
	var cs []cand
	for _, c := range fv.Centres {
		rc := r.Centres[c.ID]
		if c.ID == own || rc.PublicURL == "" || c.Gossip != "alive" || c.Availability == nil || c.Availability.Draining {
			continue
		}
		ch := c.Availability.Channels[channels.Chat]
		free, onDuty := false, false
		for l, n := range ch.Free {
			if n > 0 && (lang == "" || l == lang) {
				free, onDuty = true, true
			}
		}
		for l, n := range ch.Busy {
			if n > 0 && (lang == "" || l == lang) {
				onDuty = true
			}
		}
		if !serves[c.ID] && !onDuty {
			continue
		}
		cs = append(cs, cand{url: consensus.PublicOrigin(rc.PublicURL), id: c.ID, free: free})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if a.free != b.free {
			if a.free {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.id, b.id)
	})
	out := []string{}
	for _, c := range cs[:min(len(cs), limit)] {
		out = append(out, c.url)
	}
	return out
}
