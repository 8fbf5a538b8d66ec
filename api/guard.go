package api

// Guards that keep one person's flood their own problem (DESIGN.md
// invariant 7): a cap on open chats per visitor address, a handshake checked
// before it spends anything, a bound on frames per socket, and a count of
// every refusal for the centre's metrics. docs/security.md lists each
// threat with its defence and test.

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

const (
	// defaultMaxChatsPerAddress bounds the chats open at once from one
	// visitor address (an IPv6 /64): a family or a school behind one
	// address still gets help, a script does not fill the queue.
	defaultMaxChatsPerAddress = 3

	// A visitor's socket may send visitorFrameBurst frames at once and
	// visitorFramesPerSecond after that; beyond, it is closed (1008). A
	// page sends a message or a typing frame every few seconds; this only
	// stops a script from spending the centre's CPU on decoding. A
	// volunteer (signed in, and paced per conversation) gets far more: a
	// console working through a queue of junk chats sends a burst of
	// accepts and ends.
	visitorFramesPerSecond   = 20
	visitorFrameBurst        = 100
	volunteerFramesPerSecond = 100
	volunteerFrameBurst      = 1000
)

// Refusal reasons, the values of helpmesh_refusals_total's reason label.
const (
	refusedChatStarts  = "chat_starts"   // too many chats started from one address
	refusedChatsOpen   = "chats_open"    // too many chats open from one address
	refusedQueueFull   = "queue_full"    // the centre's queue is full
	refusedSlowDown    = "slow_down"     // a message faster than the pace
	refusedFlooding    = "flooding"      // a visitor cut off for flooding
	refusedFrames      = "frames"        // a socket closed for sending too many frames
	refusedHandshake   = "bad_handshake" // origin or upgrade refused before anything was spent
	refusedSlowReader  = "slow_reader"   // a socket closed because it did not read
	refusedResume      = "resume"        // a resume secret that opens nothing here
	refusedForbidden   = "forbidden"     // a staff route refused for a missing right or a foreign page
	whoStaff           = "staff"
	whoVisitor         = "visitor"
	whoVolunteer       = "volunteer"
	refusalsMetricName = "helpmesh_refusals_total"
	refusalsMetricHelp = "Requests, frames and sockets refused to protect the others from one person's flood, by who and reason; never per person."
)

// refusals counts what the guards refused. It lives on the centre's
// registry; a second server on the same registry shares the counter.
type refusals struct {
	vec *prometheus.CounterVec
}

func newRefusals(centre string, reg *prometheus.Registry) *refusals {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: refusalsMetricName, Help: refusalsMetricHelp, ConstLabels: prometheus.Labels{"centre": centre},
	}, []string{"who", "reason"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
					vec = existing
				}
			}
		}
	}
	// Every series exists from the start, so rate() sees the first one.
	for _, r := range []string{refusedChatStarts, refusedChatsOpen, refusedQueueFull, refusedSlowDown, refusedFlooding, refusedFrames, refusedHandshake, refusedSlowReader, refusedResume} {
		vec.WithLabelValues(whoVisitor, r)
	}
	for _, r := range []string{refusedSlowDown, refusedFrames, refusedSlowReader} {
		vec.WithLabelValues(whoVolunteer, r)
	}
	vec.WithLabelValues(whoStaff, refusedForbidden)
	return &refusals{vec: vec}
}

func (r *refusals) count(who, reason string) {
	if r != nil {
		r.vec.WithLabelValues(who, reason).Inc()
	}
}

// openChats counts the chats open per visitor address key (the salted hash
// of chatStarts.key). An entry exists only while a chat is open, so the map
// is bounded by the open sockets.
type openChats struct {
	limit int
	mu    sync.Mutex
	n     map[string]int
}

func newOpenChats(limit int) *openChats {
	if limit <= 0 {
		limit = defaultMaxChatsPerAddress
	}
	return &openChats{limit: limit, n: map[string]int{}}
}

// acquire takes one place for key, or says no when key is at the cap.
func (o *openChats) acquire(key string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n[key] >= o.limit {
		return false
	}
	o.n[key]++
	return true
}

func (o *openChats) release(key string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n[key] <= 1 {
		delete(o.n, key)
		return
	}
	o.n[key]--
}

// handshakeError says why a WebSocket upgrade would be refused, checked
// before a chat start is counted so that a page on a foreign site (or a
// broken client) cannot spend a visitor's allowance. It mirrors
// coder/websocket's own checks, which still run at Accept.
func handshakeError(r *http.Request, originPatterns []string) (status int, msg string) {
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		return http.StatusUpgradeRequired, "a WebSocket upgrade is required"
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return http.StatusBadRequest, "unsupported WebSocket version (want 13)"
	}
	if r.Header.Get("Sec-WebSocket-Key") == "" {
		return http.StatusBadRequest, "missing Sec-WebSocket-Key"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return 0, ""
	}
	u, err := url.Parse(origin)
	if err != nil {
		return http.StatusForbidden, "malformed Origin"
	}
	if strings.EqualFold(r.Host, u.Host) {
		return 0, ""
	}
	for _, p := range originPatterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return 0, ""
		}
	}
	return http.StatusForbidden, "this Origin may not open a chat here"
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// newFrameGate bounds the frames one socket may send.
func newFrameGate(who string) *rate.Limiter {
	if who == whoVolunteer {
		return rate.NewLimiter(volunteerFramesPerSecond, volunteerFrameBurst)
	}
	return rate.NewLimiter(visitorFramesPerSecond, visitorFrameBurst)
}
