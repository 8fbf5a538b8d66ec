package refusal

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type lines struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *lines) Enabled(context.Context, slog.Level) bool { return true }
func (h *lines) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *lines) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *lines) WithGroup(string) slog.Handler      { return h }

func (h *lines) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.records)
}

func (h *lines) attr(i int, key string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var v string
	h.records[i].Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}

func newLog(t *testing.T, h *lines, reg prometheus.Registerer) *Log {
	t.Helper()
	l, err := New(Config{
		Logger: slog.New(h), What: "test packet", Metric: "test_refused_total", Help: "Refused.",
		Reasons: []string{"label", "decrypt"}, Registerer: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// The interval logic on a fake clock: the first refusal is logged at once,
// a flood inside the interval costs one summary line when the interval ends,
// a quiet interval costs nothing, and the next refusal after quiet is logged
// at once again.
func TestLogSamplesPerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &lines{}
		l := newLog(t, h, nil)
		defer l.Close()

		start := time.Now()
		l.Refuse("label", slog.String("from", "192.0.2.1:7946"))
		if h.len() != 1 || h.attr(0, "reason") != "label" || h.attr(0, "from") != "192.0.2.1:7946" {
			t.Fatalf("first refusal: %d lines, want 1 with reason and from", h.len())
		}
		for range 999 {
			time.Sleep(10 * time.Millisecond) // 9.99 s of flood, inside the minute
			l.Refuse("decrypt", slog.String("from", "192.0.2.2:1"))
		}
		synctest.Wait()
		if h.len() != 1 {
			t.Fatalf("%d lines during the interval, want 1", h.len())
		}
		time.Sleep(time.Until(start.Add(time.Minute))) // the end of the first interval
		synctest.Wait()
		if h.len() != 2 {
			t.Fatalf("%d lines after the interval, want 2 (the summary)", h.len())
		}
		if got := h.attr(1, "refused"); got != "999" {
			t.Errorf("summary refused=%s, want 999", got)
		}
		if h.attr(1, "last_reason") != "decrypt" || h.attr(1, "last_from") != "192.0.2.2:1" {
			t.Errorf("summary last_reason=%q last_from=%q", h.attr(1, "last_reason"), h.attr(1, "last_from"))
		}
		if got := h.attr(1, "over"); got != "1m0s" {
			t.Errorf("summary over=%s, want 1m0s", got)
		}

		// A refusal inside the interval after the summary waits for the
		// next summary, exactly one interval after the last line.
		time.Sleep(30 * time.Second)
		l.Refuse("label")
		synctest.Wait()
		if h.len() != 2 {
			t.Fatalf("%d lines, want the refusal held for the next summary", h.len())
		}
		time.Sleep(time.Until(start.Add(2*time.Minute - time.Nanosecond)))
		synctest.Wait()
		if h.len() != 2 {
			t.Fatalf("summary written before the interval ended")
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if h.len() != 3 || h.attr(2, "refused") != "1" {
			t.Fatalf("%d lines, want a third (refused=1)", h.len())
		}

		// Quiet for longer than an interval: nothing is written, and the
		// next refusal is reported at once.
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if h.len() != 3 {
			t.Fatalf("quiet interval wrote %d lines", h.len()-3)
		}
		l.Refuse("decrypt")
		if h.len() != 4 || h.attr(3, "reason") != "decrypt" {
			t.Fatalf("refusal after quiet: %d lines, want 4", h.len())
		}
		if got := l.Count(""); got != 1002 {
			t.Errorf("Count = %d, want 1002", got)
		}
		if got := l.Count("decrypt"); got != 1000 {
			t.Errorf("Count(decrypt) = %d, want 1000", got)
		}
	})
}

// Close writes the summary still due at once, and later refusals are counted
// but not logged (memberlist's goroutines may outlive the gossip's Stop).
func TestLogCloseFlushes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &lines{}
		l := newLog(t, h, nil)
		l.Refuse("label")
		l.Refuse("label")
		l.Refuse("label")
		time.Sleep(time.Second)
		l.Close()
		if h.len() != 2 || h.attr(1, "refused") != "2" || h.attr(1, "over") != "1s" {
			t.Fatalf("Close: %d lines, want the first and a summary of 2 over 1s", h.len())
		}
		l.Refuse("label")
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if h.len() != 2 {
			t.Fatalf("refusal after Close logged")
		}
		if l.Count("label") != 4 {
			t.Errorf("Count(label) = %d, want 4", l.Count("label"))
		}
		l.Close() // idempotent
	})
}

// The counter's label values are the fixed reasons and "other", each present
// from zero, whatever reason a caller passes; a restarted owner on the same
// registry adds to the same counter.
func TestLogCounterLabelsAreFixed(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := &lines{}
	l := newLog(t, h, reg)
	l.Refuse("decrypt")
	l.Refuse("from=evil\nlevel=ERROR msg=forged")
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "test_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				got[lp.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if want := map[string]float64{"decrypt": 1, "label": 0, "other": 1}; !maps.Equal(got, want) {
		t.Fatalf("counter = %v, want %v", got, want)
	}
	again := newLog(t, h, reg)
	again.Refuse("decrypt")
	if got := again.Count("decrypt"); got != 2 {
		t.Fatalf("counter after a second New on the registry = %v, want 2", got)
	}
	for i := range h.len() {
		if strings.Contains(h.attr(i, "reason"), "forged") {
			t.Fatalf("a caller's reason reached a line: %q", h.attr(i, "reason"))
		}
	}
}

func TestValue(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7946":                        "127.0.0.1:7946",
		"[::1]:80":                              "[::1]:80",
		"::ffff:10.0.0.1":                       "::ffff:10.0.0.1",
		"/ip4/127.0.0.1/tcp/4001":               "/ip4/127.0.0.1/tcp/4001",
		"1.2.3.4:5\nlevel=ERROR msg=\"forged\"": "1.2.3.4:5?level?ERROR?msg??forged?",
		strings.Repeat("a", 500):                strings.Repeat("a", maxValueLen),
	} {
		if got := Value(in); got != want {
			t.Errorf("Value(%q) = %q, want %q", in, got, want)
		}
	}
}
