// Package refusal counts and logs what a node refuses from the network:
// gossip packets that do not carry the federation's label and key, libp2p
// peers that are not in the roster.
//
// Refusals are caused by whoever can send a packet, so one log line each
// would let an outsider write to a centre's disk at line rate (2,000 junk
// datagrams made 2,000 ERROR lines, 324 KB). A Log therefore counts every
// refusal in a Prometheus counter, whose labels come from a fixed list, and
// writes at most one line per interval: the first refusal at once, so an
// operator sees that it started and from where, then one summary per
// interval with how many followed. The counter, not the log, is where the
// volume is read and alerted on.
package refusal

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// DefaultInterval is the shortest time between two lines of one Log.
const DefaultInterval = time.Minute

// Other is the reason counted for a reason not in Config.Reasons, so that a
// caller's mistake cannot grow the counter's label values without bound.
const Other = "other"

// maxValueLen bounds every address or peer id that reaches a line; a
// multiaddr with a peer id is about 100 bytes.
const maxValueLen = 128

// Config configures a Log.
type Config struct {
	// Logger receives the sampled lines, at Warn. Nil discards.
	Logger *slog.Logger
	// What names one refused thing in the lines, e.g. "gossip packet".
	What string
	// Metric and Help name the counter, e.g. "helpmesh_gossip_refused_total".
	Metric, Help string
	// ConstLabels are put on the counter (the node's centre id).
	ConstLabels prometheus.Labels
	// Reasons is the fixed set of values of the counter's "reason" label.
	// Each starts at 0, so rate() and alerts see the series before the first
	// refusal.
	Reasons []string
	// Registerer receives the counter. Nil keeps it unregistered (still
	// counted, readable through Count). A registry that already holds a
	// counter of this name (a centre restarted in the same process) keeps
	// it, and this Log adds to it.
	Registerer prometheus.Registerer
	// Interval is the shortest time between two lines (0: DefaultInterval).
	Interval time.Duration
}

// Log counts refusals and logs a sample of them. Its methods are safe for
// concurrent use.
type Log struct {
	log      *slog.Logger
	what     string
	metric   string
	interval time.Duration
	reasons  map[string]struct{}
	counter  *prometheus.CounterVec

	mu         sync.Mutex
	closed     bool
	lastLine   time.Time // when the last line was written; zero if none yet
	pending    uint64    // refusals since lastLine that no line reported
	lastReason string
	lastAttrs  []slog.Attr
	flush      *time.Timer // set while a summary is due
}

// New returns a Log whose counter is registered on cfg.Registerer.
func New(cfg Config) (*Log, error) {
	if cfg.Metric == "" || cfg.What == "" {
		return nil, errors.New("refusal: metric and what are required")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	interval := cfg.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	l := &Log{
		log:      logger,
		what:     cfg.What,
		metric:   cfg.Metric,
		interval: interval,
		reasons:  map[string]struct{}{Other: {}},
	}
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: cfg.Metric, Help: cfg.Help, ConstLabels: cfg.ConstLabels,
	}, []string{"reason"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(counter); err != nil {
			var are prometheus.AlreadyRegisteredError
			existing, ok := (*prometheus.CounterVec)(nil), false
			if errors.As(err, &are) {
				existing, ok = are.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				return nil, fmt.Errorf("refusal: register %s: %w", cfg.Metric, err)
			}
			counter = existing
		}
	}
	l.counter = counter
	for _, r := range cfg.Reasons {
		l.reasons[r] = struct{}{}
	}
	for r := range l.reasons {
		l.counter.WithLabelValues(r)
	}
	return l, nil
}

// Refuse counts one refusal and logs it if no line was written in the last
// interval; otherwise it is reported by the next summary. attrs describe the
// refused thing (an address, a transport) and must already be bounded and
// free of content the sender chose: see Value.
func (l *Log) Refuse(reason string, attrs ...slog.Attr) {
	if _, ok := l.reasons[reason]; !ok {
		reason = Other
	}
	l.counter.WithLabelValues(reason).Inc()

	now := time.Now()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	if l.pending == 0 && l.flush == nil && (l.lastLine.IsZero() || now.Sub(l.lastLine) >= l.interval) {
		l.lastLine = now
		l.mu.Unlock()
		args := make([]any, 0, len(attrs)+2)
		args = append(args, slog.String("reason", reason))
		for _, a := range attrs {
			args = append(args, a)
		}
		args = append(args, slog.String("sampled", fmt.Sprintf("further refusals are counted in %s and summarised at most once per %v", l.metric, l.interval)))
		l.log.Warn(l.what+" refused", args...)
		return
	}
	l.pending++
	l.lastReason, l.lastAttrs = reason, attrs
	if l.flush == nil {
		l.flush = time.AfterFunc(l.lastLine.Add(l.interval).Sub(now), l.summarise)
	}
	l.mu.Unlock()
}

// summarise writes the line for the refusals since the last one.
func (l *Log) summarise() {
	l.mu.Lock()
	l.flush = nil
	if l.pending == 0 {
		l.mu.Unlock()
		return
	}
	now := time.Now()
	n, since, reason, attrs := l.pending, now.Sub(l.lastLine), l.lastReason, l.lastAttrs
	l.pending, l.lastLine = 0, now
	l.mu.Unlock()

	args := make([]any, 0, len(attrs)+3)
	args = append(args, slog.Uint64("refused", n), slog.Duration("over", since.Round(time.Millisecond)),
		slog.String("last_reason", reason))
	for _, a := range attrs {
		args = append(args, slog.Attr{Key: "last_" + a.Key, Value: a.Value})
	}
	l.log.Warn(l.what+" refusals since the last line", args...)
}

// Close writes the summary still due, if any, and stops logging; later
// refusals are only counted. It is for the owner's shutdown, after which
// nothing would flush the pending count.
func (l *Log) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	if l.flush != nil {
		l.flush.Stop()
	}
	l.mu.Unlock()
	l.summarise()
}

// Count returns the refusals counted for reason (all reasons when empty).
func (l *Log) Count(reason string) uint64 {
	var total float64
	for r := range l.reasons {
		if reason == "" || reason == r {
			c, err := l.counter.GetMetricWithLabelValues(r)
			if err != nil {
				continue
			}
			total += counterValue(c)
		}
	}
	return uint64(total)
}

// Value makes a sender-supplied string (an address, a peer id) safe to put in
// a line: an IP address or address:port is logged in canonical form, anything
// else keeps only characters that occur in addresses, multiaddrs and peer ids,
// with the rest replaced by '?', and at most maxValueLen bytes. slog's own
// handlers would quote a newline, but a line read by a person or parsed by a
// custom handler should not carry a sender's text at all.
func Value(s string) string {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.String()
	}
	if len(s) > maxValueLen {
		s = s[:maxValueLen]
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		case strings.ContainsRune("./:[]%_-", r):
			return r
		}
		return '?'
	}, s)
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
