package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/helpmesh/helpmesh/switchboard"
)

// PromSource says which Prometheus to read a federation's numbers from, and
// over which window.
type PromSource struct {
	// URL is Prometheus's base URL (http://prometheus:9090, with the path
	// prefix if it runs with --web.route-prefix).
	URL string
	// Start and End bound the window read. A zero End is now; a zero Start
	// is seven days before End.
	Start, End time.Time
	// Step is the resolution of the range queries: it must divide an hour
	// (0: about a two-thousandth of the window, from 1 s to 1 h).
	Step time.Duration
	// Client makes the requests (nil: a plain http.Client; each query's
	// deadline comes from ctx and QueryTimeout).
	Client *http.Client
	// QueryTimeout bounds each query (0: 30 s).
	QueryTimeout time.Duration
	// Name is the scenario's name (default: where and when it came from).
	Name   string
	Logger *slog.Logger
}

const (
	// MaxPromResponseBytes bounds one answer of Prometheus. Range queries
	// are cut into pieces of promPointsPerQuery points so that a big
	// federation's week stays well below it.
	MaxPromResponseBytes = 8 << 20
	promPointsPerQuery   = 150_000
	// promMaxSteps bounds the steps of a window, and with it the memory a
	// build takes.
	promMaxSteps = 20_000
	// promBridge is the longest gap in a centre's series (failed scrapes,
	// a restart) across which its counters' increase is still counted and
	// the time still counts as observed. Longer gaps (Prometheus down for
	// hours) are left out, time and contacts alike.
	promBridge = 15 * time.Minute
	// promGaugeRange is the least range over which gauges are averaged at
	// each step, so a step shorter than the scrape interval still sees a
	// sample.
	promGaugeRange = time.Minute

	// Defaults where the metrics say too little (see FromPrometheus).
	promDefaultTalkSeconds     = 1200
	promDefaultPatienceSeconds = 300
	promMinAbandoned           = 10
)

var (
	// ErrPromResponse is wrapped by every error about what Prometheus
	// answered: an error status, a malformed or oversized body.
	ErrPromResponse = errors.New("bad prometheus response")
	// ErrNoData is wrapped when Prometheus holds none of helpmesh's
	// contact metrics for the window.
	ErrNoData = errors.New("no helpmesh data in prometheus")
)

// FromPrometheus builds a scenario from the numbers a federation's
// Prometheus recorded over a past window (by default the last seven days),
// so that a coordinator starts from their own arrivals and staffing rather
// than from the example. It reads helpmesh's KPI metrics (node/metrics.go)
// with range queries and builds:
//
//   - Start and Hours: the window itself, so the scenario replays it. Hours
//     of the day are UTC (Start is written in UTC).
//   - Centres: every centre label of helpmesh_contacts_offered_total
//     (exported_centre if a target label renamed it).
//   - Arrivals: per centre and language, the chat contacts of
//     helpmesh_contacts_offered_total counted per hour of day over the time
//     that centre was scraped in that hour of day, as contacts per hour.
//     Counter resets and series born in the window are counted; gaps over
//     15 minutes are left out, time and contacts both. Phone is not
//     simulated: its contacts are counted in a note and dropped. Urgent is
//     the centre's share of helpmesh_urgent_contacts_total among its chat
//     contacts. A window of minutes (a test) gives rates over those
//     minutes, cut to MaxPerHour if above it.
//   - Volunteers: helpmesh_volunteers{channel="chat"} (free plus busy) per
//     centre, averaged per hour of day and rounded; runs of hours with the
//     same number become one group with one daily shift, so a centre's
//     groups never overlap. Their languages are those answered locally at
//     the centre, plus, if the centre accepted other centres' overflow
//     offers, those answered by overflow anywhere (the metrics do not say
//     which centre answered which language); failing both, those offered
//     at the centre. Capacity 1: the metrics count people, not chat slots.
//   - Talk time: exponential, with the mean from Little's law: the
//     conversation-seconds of helpmesh_contacts_in_progress over the window
//     divided by the conversations that ended
//     (helpmesh_contacts_answered_total). With none ended, 1200 s.
//   - Patience: exponential. A visitor of mean patience θ leaves at rate 1/θ
//     while waiting, so abandonments ≈ waiting-seconds/θ, and θ is
//     estimated as the contact-seconds of helpmesh_contacts_waiting divided
//     by the abandonments (helpmesh_contacts_abandoned_total): the
//     maximum-likelihood estimate when the answered visitors' waits are
//     censored. The share abandoned alone cannot give patience without the
//     waits. With fewer than 10 abandonments it is too noisy, and 300 s is
//     used.
//   - Policy: the languages of the series; overflow_after, ring and
//     service level are left at the simulator's defaults (no metric holds
//     the policy). Decline and no-answer rates are 0 (no metric tells them
//     apart), the network is the example's (20 ms, 300 ms gossip).
//
// What was estimated, defaulted or dropped is listed in the scenario's
// Notes. Each query has its own deadline under ctx, each answer is read up
// to MaxPromResponseBytes and decoded strictly; errors wrap ErrPromResponse,
// ErrNoData, or the scenario's own ErrInvalid if the result does not
// validate.
func FromPrometheus(ctx context.Context, cfg PromSource) (*Scenario, error) {
	q, err := newPromQuerier(cfg)
	if err != nil {
		return nil, fmt.Errorf("scenario from prometheus: %w", err)
	}
	b := newPromBuilder(q.w)
	gauge := fmt.Sprintf("%ds", int(max(q.w.step, promGaugeRange)/time.Second))
	steps := []struct {
		expr string
		use  func([]promSeries) error
	}{
		// offered first: it says when each centre was scraped.
		{`helpmesh_contacts_offered_total`, b.offered},
		{`helpmesh_contacts_answered_total{channel="chat"}`, b.answered},
		{`helpmesh_contacts_abandoned_total{channel="chat"}`, b.abandoned},
		{`helpmesh_urgent_contacts_total{channel="chat"}`, b.urgent},
		{`helpmesh_overflow_offers_received_total{channel="chat",result="` + switchboard.OfferAccepted + `"}`, b.received},
		{`sum by (centre, exported_centre) (avg_over_time(helpmesh_volunteers{channel="chat"}[` + gauge + `]))`, b.volunteers},
		{`sum(avg_over_time(helpmesh_contacts_in_progress{channel="chat"}[` + gauge + `]))`, b.exposure(&b.talking)},
		{`sum(avg_over_time(helpmesh_contacts_waiting{channel="chat"}[` + gauge + `]))`, b.exposure(&b.waiting)},
	}
	for i, s := range steps {
		if err := q.rangeQuery(ctx, s.expr, s.use); err != nil {
			return nil, fmt.Errorf("scenario from prometheus: %w", err)
		}
		if i == 0 && len(b.alive) == 0 {
			return nil, fmt.Errorf("scenario from prometheus: no helpmesh_contacts_offered_total between %s and %s at %s: %w",
				q.w.start.Format(time.RFC3339), q.w.end.Format(time.RFC3339), q.base.Redacted(), ErrNoData)
		}
	}
	for _, w := range q.warnings {
		b.note("Prometheus warned: %s", w)
	}
	sc, err := b.scenario(cfg.Name, q.base)
	if err != nil {
		return nil, fmt.Errorf("scenario from prometheus: %w", err)
	}
	for _, n := range sc.Notes {
		q.log.Info("scenario from prometheus", slog.String("note", n))
	}
	return sc, nil
}

// ---- the window ----

// promWindow is the window read, as steps: step i is the interval
// (at(i)-step, at(i)], whose hour of day is that of its middle.
type promWindow struct {
	start, end time.Time
	first      time.Time // at(0), the first multiple of step at or after start
	step       time.Duration
	n          int
	bridge     int // steps
}

func (w promWindow) at(i int) time.Time { return w.first.Add(time.Duration(i) * w.step) }

func (w promWindow) hour(i int) int { return w.at(i).Add(-w.step / 2).UTC().Hour() }

// index returns the step of a sample's timestamp (seconds since the epoch).
func (w promWindow) index(ts float64) (int, bool) {
	d := ts - float64(w.first.UnixNano())/1e9
	i := math.Round(d / w.step.Seconds())
	if math.Abs(d-i*w.step.Seconds()) > 0.001 || i < 0 || i >= float64(w.n) {
		return 0, false
	}
	return int(i), true
}

var promSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
}

func newPromWindow(cfg PromSource, now time.Time) (promWindow, error) {
	end, start := cfg.End, cfg.Start
	if end.IsZero() {
		end = now
	}
	if start.IsZero() {
		start = end.Add(-7 * 24 * time.Hour)
	}
	start, end = start.UTC().Truncate(time.Second), end.UTC()
	if !end.After(start) {
		return promWindow{}, fmt.Errorf("window %s to %s: the end must be after the start: %w", start.Format(time.RFC3339), end.Format(time.RFC3339), ErrInvalid)
	}
	if end.Sub(start).Hours() > MaxHours {
		return promWindow{}, fmt.Errorf("window of %.0f hours, at most %d: %w", end.Sub(start).Hours(), MaxHours, ErrTooLarge)
	}
	step := cfg.Step
	if step == 0 {
		step = promSteps[len(promSteps)-1]
		for _, s := range promSteps {
			if s >= end.Sub(start)/2000 {
				step = s
				break
			}
		}
	}
	// Steps that divide an hour keep each step inside one hour of day.
	if step < time.Second || step%time.Second != 0 || time.Hour%step != 0 {
		return promWindow{}, fmt.Errorf("step %v: whole seconds that divide an hour: %w", step, ErrInvalid)
	}
	w := promWindow{start: start, end: end, step: step}
	w.first = start.Truncate(step)
	if w.first.Before(start) {
		w.first = w.first.Add(step)
	}
	// The last step is at or after the end, so the samples scraped between
	// the step before it and the end are read too (of a window of minutes,
	// they may be most of it).
	w.n = int((end.Sub(w.first)+step-1)/step) + 1
	if w.n < 2 {
		return promWindow{}, fmt.Errorf("window %s to %s holds fewer than two steps of %v: %w", start.Format(time.RFC3339), end.Format(time.RFC3339), step, ErrInvalid)
	}
	if w.n > promMaxSteps {
		return promWindow{}, fmt.Errorf("window of %d steps of %v, at most %d: give a longer step: %w", w.n, step, promMaxSteps, ErrTooLarge)
	}
	w.bridge = max(1, int(promBridge/step))
	return w, nil
}

// ---- the HTTP API ----

type promQuerier struct {
	base     *url.URL
	client   *http.Client
	timeout  time.Duration
	w        promWindow
	log      *slog.Logger
	warnings []string
}

func newPromQuerier(cfg PromSource) (*promQuerier, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("prometheus url %q: want http(s)://host:port: %w", clip(cfg.URL), ErrInvalid)
	}
	w, err := newPromWindow(cfg, time.Now())
	if err != nil {
		return nil, err
	}
	q := &promQuerier{base: u, client: cfg.Client, timeout: cfg.QueryTimeout, w: w, log: cfg.Logger}
	if q.client == nil {
		q.client = &http.Client{}
	}
	if q.timeout <= 0 {
		q.timeout = 30 * time.Second
	}
	if q.log == nil {
		q.log = slog.New(slog.DiscardHandler)
	}
	return q, nil
}

// rangeQuery runs expr over the window in pieces small enough for
// MaxPromResponseBytes, handing each piece's series to use in time order.
func (q *promQuerier) rangeQuery(ctx context.Context, expr string, use func([]promSeries) error) error {
	chunk := min(q.w.n, 60) // until the first piece says how many series there are
	for from := 0; from < q.w.n; {
		to := min(from+chunk, q.w.n) - 1
		series, err := q.get(ctx, expr, from, to)
		if err != nil {
			return err
		}
		for si := range series {
			for _, p := range series[si].Values {
				if _, ok := q.w.index(p.T); !ok {
					return fmt.Errorf("query %s: a sample at %v is not a step of the window: %w", expr, p.T, ErrPromResponse)
				}
			}
		}
		if err := use(series); err != nil {
			return fmt.Errorf("query %s: %w", expr, err)
		}
		chunk = max(1, min(10_000, promPointsPerQuery/max(1, len(series))))
		from = to + 1
	}
	return nil
}

func (q *promQuerier) get(ctx context.Context, expr string, from, to int) ([]promSeries, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	u := q.base.JoinPath("api", "v1", "query_range")
	secs := func(t time.Time) string { return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', -1, 64) }
	u.RawQuery = url.Values{
		"query":   {expr},
		"start":   {secs(q.w.at(from))},
		"end":     {secs(q.w.at(to))},
		"step":    {strconv.Itoa(int(q.w.step / time.Second))},
		"timeout": {q.timeout.String()},
	}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	req.Header.Set("Accept", "application/json")
	began := time.Now()
	resp, err := q.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	defer resp.Body.Close()
	series, warnings, err := decodePromMatrix(resp.Body, MaxPromResponseBytes)
	if err != nil {
		if resp.StatusCode != http.StatusOK && !errors.Is(err, errPromStatus) {
			return nil, fmt.Errorf("query %s: HTTP %s: %w", expr, resp.Status, err)
		}
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("query %s: HTTP %s: %w", expr, resp.Status, ErrPromResponse)
	}
	for _, w := range warnings {
		if len(q.warnings) < 10 && !slices.Contains(q.warnings, clip(w)) {
			q.warnings = append(q.warnings, clip(w))
		}
	}
	q.log.Debug("prometheus range query", slog.String("query", expr), slog.Int("from", from), slog.Int("to", to),
		slog.Int("series", len(series)), slog.Duration("took", time.Since(began)))
	return series, nil
}

// promSeries is one series of a range query's answer.
type promSeries struct {
	Metric map[string]string `json:"metric"`
	Values []promPoint       `json:"values"`
}

// promPoint is one sample: [seconds since the epoch, "value"].
type promPoint struct {
	T, V float64
}

func (p *promPoint) UnmarshalJSON(b []byte) error {
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) != 2 || bytes.Equal(bytes.TrimSpace(raw[0]), []byte("null")) {
		return errors.New(`a sample is [time, "value"]`)
	}
	if err := json.Unmarshal(raw[0], &p.T); err != nil {
		return fmt.Errorf("sample time: %w", err)
	}
	var s string
	if err := json.Unmarshal(raw[1], &s); err != nil {
		return fmt.Errorf("sample value: %w", err)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("sample value %q: not a number", clip(s))
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return fmt.Errorf("sample value %q: helpmesh's counters and gauges are finite and never negative", clip(s))
	}
	// Seconds since the epoch, from 1970 to 5138: anything else is not a time.
	if math.IsNaN(p.T) || p.T < 0 || p.T > 1e11 {
		return fmt.Errorf("sample time %v: out of range", p.T)
	}
	p.V = v
	return nil
}

// errPromStatus marks an answer whose status is "error": its own message
// says more than the HTTP status.
var errPromStatus = fmt.Errorf("%w: status error", ErrPromResponse)

// decodePromMatrix reads a range query's answer: at most limit bytes, one
// JSON value, no unknown fields, a matrix of finite samples in time order.
// It returns Prometheus's warnings beside the series.
func decodePromMatrix(r io.Reader, limit int64) ([]promSeries, []string, error) {
	body, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read prometheus response: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, nil, fmt.Errorf("prometheus response over %d bytes (shorten the window or lengthen the step): %w", limit, ErrPromResponse)
	}
	var out struct {
		Status    string   `json:"status"`
		ErrorType string   `json:"errorType"`
		Error     string   `json:"error"`
		Warnings  []string `json:"warnings"`
		Infos     []string `json:"infos"`
		Data      *struct {
			ResultType string       `json:"resultType"`
			Result     []promSeries `json:"result"`
		} `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		return nil, nil, fmt.Errorf("decode prometheus response: %w: %w", ErrPromResponse, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, fmt.Errorf("decode prometheus response: more than one JSON value: %w", ErrPromResponse)
	}
	switch out.Status {
	case "success":
	case "error":
		return nil, nil, fmt.Errorf("prometheus answered %s: %s: %w", clip(out.ErrorType), clipLong(out.Error), errPromStatus)
	default:
		return nil, nil, fmt.Errorf("prometheus response status %q: %w", clip(out.Status), ErrPromResponse)
	}
	if out.Data == nil || out.Data.ResultType != "matrix" {
		return nil, nil, fmt.Errorf("prometheus response: want a matrix: %w", ErrPromResponse)
	}
	for i, s := range out.Data.Result {
		for j := 1; j < len(s.Values); j++ {
			if s.Values[j].T <= s.Values[j-1].T {
				return nil, nil, fmt.Errorf("prometheus response: series %d: samples out of time order: %w", i, ErrPromResponse)
			}
		}
	}
	return out.Data.Result, out.Warnings, nil
}

func clipLong(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// ---- from series to scenario ----

type promLast struct {
	i int
	v float64
}

type promBuilder struct {
	w     promWindow
	alive map[string][]bool // centre -> steps at which it was scraped
	last  map[string]promLast
	notes []string

	langs         map[string]bool
	offeredN      map[string]map[string]*[24]float64 // centre, language -> contacts per hour of day
	offeredChat   map[string]float64                 // centre
	phone         float64
	answeredLocal map[string]map[string]float64 // centre, language
	overflowLangs map[string]float64            // language
	answeredN     float64
	abandonedN    float64
	urgentN       map[string]float64 // centre
	receivedN     map[string]float64 // centre
	onDuty        map[string]*[24][2]float64
	talking       float64 // contact-seconds
	waiting       float64
	unlabelled    int
}

func newPromBuilder(w promWindow) *promBuilder {
	return &promBuilder{
		w: w, alive: map[string][]bool{}, last: map[string]promLast{}, langs: map[string]bool{},
		offeredN: map[string]map[string]*[24]float64{}, offeredChat: map[string]float64{},
		answeredLocal: map[string]map[string]float64{}, overflowLangs: map[string]float64{},
		urgentN: map[string]float64{}, receivedN: map[string]float64{}, onDuty: map[string]*[24][2]float64{},
	}
}

func (b *promBuilder) note(format string, a ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, a...))
}

// promCentre is the exporting centre's id: the metric's own centre label, or
// exported_centre if a target label of the same name displaced it.
func promCentre(m map[string]string) string {
	if c := m["exported_centre"]; c != "" {
		return c
	}
	return m["centre"]
}

func seriesKey(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sb strings.Builder
	for _, k := range keys {
		sb.WriteString(k)
		sb.WriteByte('=')
		sb.WriteString(m[k])
		sb.WriteByte(0xff)
	}
	return sb.String()
}

// increases walks a chunk of a counter's series and reports each increase
// by the step it happened in. A series' first sample is its baseline,
// unless its centre was scraped just before without it: then the series
// was born in the window and counted from zero. A drop is a reset (the
// counter restarted from zero). Across a gap of up to promBridge the
// increase is spread over the gap's steps; across a longer one it is lost.
func (b *promBuilder) increases(series []promSeries, add func(m map[string]string, i int, inc float64)) {
	for _, s := range series {
		c := promCentre(s.Metric)
		if c == "" {
			b.unlabelled++
			continue
		}
		key := seriesKey(s.Metric)
		for _, p := range s.Values {
			i, _ := b.w.index(p.T)
			prev, had := b.last[key]
			b.last[key] = promLast{i, p.V}
			switch {
			case had && i-prev.i <= b.w.bridge:
				inc := p.V - prev.v
				if inc < 0 {
					inc = p.V
				}
				if inc > 0 {
					for j := prev.i + 1; j <= i; j++ {
						add(s.Metric, j, inc/float64(i-prev.i))
					}
				}
			case p.V > 0 && b.scrapedBefore(c, i):
				add(s.Metric, i, p.V)
			}
		}
	}
}

func (b *promBuilder) scrapedBefore(centre string, i int) bool {
	a := b.alive[centre]
	for j := i - 1; j >= max(0, i-b.w.bridge) && j < len(a); j-- {
		if a[j] {
			return true
		}
	}
	return false
}

func (b *promBuilder) offered(series []promSeries) error {
	for _, s := range series {
		c := promCentre(s.Metric)
		if c == "" {
			continue
		}
		if b.alive[c] == nil {
			b.alive[c] = make([]bool, b.w.n)
		}
		for _, p := range s.Values {
			i, _ := b.w.index(p.T)
			b.alive[c][i] = true
		}
		if s.Metric["channel"] == "chat" && s.Metric["language"] != "" {
			b.langs[s.Metric["language"]] = true
		}
	}
	b.increases(series, func(m map[string]string, i int, inc float64) {
		c, l := promCentre(m), m["language"]
		if m["channel"] != "chat" {
			b.phone += inc
			return
		}
		if b.offeredN[c] == nil {
			b.offeredN[c] = map[string]*[24]float64{}
		}
		if b.offeredN[c][l] == nil {
			b.offeredN[c][l] = &[24]float64{}
		}
		b.offeredN[c][l][b.w.hour(i)] += inc
		b.offeredChat[c] += inc
	})
	return nil
}

func (b *promBuilder) answered(series []promSeries) error {
	b.increases(series, func(m map[string]string, _ int, inc float64) {
		c, l := promCentre(m), m["language"]
		b.answeredN += inc
		switch m["answered_by"] {
		case switchboard.AnsweredByLocal:
			if b.answeredLocal[c] == nil {
				b.answeredLocal[c] = map[string]float64{}
			}
			b.answeredLocal[c][l] += inc
		case switchboard.AnsweredByOverflow:
			b.overflowLangs[l] += inc
		}
	})
	return nil
}

func (b *promBuilder) abandoned(series []promSeries) error {
	b.increases(series, func(_ map[string]string, _ int, inc float64) { b.abandonedN += inc })
	return nil
}

func (b *promBuilder) urgent(series []promSeries) error {
	b.increases(series, func(m map[string]string, _ int, inc float64) { b.urgentN[promCentre(m)] += inc })
	return nil
}

func (b *promBuilder) received(series []promSeries) error {
	b.increases(series, func(m map[string]string, _ int, inc float64) { b.receivedN[promCentre(m)] += inc })
	return nil
}

func (b *promBuilder) volunteers(series []promSeries) error {
	for _, s := range series {
		c := promCentre(s.Metric)
		if c == "" {
			b.unlabelled++
			continue
		}
		if b.onDuty[c] == nil {
			b.onDuty[c] = &[24][2]float64{}
		}
		for _, p := range s.Values {
			i, _ := b.w.index(p.T)
			h := b.w.hour(i)
			b.onDuty[c][h][0] += p.V
			b.onDuty[c][h][1]++
		}
	}
	return nil
}

// exposure adds up a national gauge's contact-seconds.
func (b *promBuilder) exposure(into *float64) func([]promSeries) error {
	return func(series []promSeries) error {
		for _, s := range series {
			for _, p := range s.Values {
				*into += p.V * b.w.step.Seconds()
			}
		}
		return nil
	}
}

// observed is, per hour of day, the hours a centre was scraped: steps
// whose centre was seen at most promBridge before.
func (b *promBuilder) observed(centre string) (hours [24]float64) {
	prev := -1
	for i, ok := range b.alive[centre] {
		if !ok {
			continue
		}
		if prev >= 0 && i-prev <= b.w.bridge {
			for j := prev + 1; j <= i; j++ {
				hours[b.w.hour(j)] += b.w.step.Hours()
			}
		}
		prev = i
	}
	return hours
}

func (b *promBuilder) scenario(name string, base *url.URL) (*Scenario, error) {
	w := b.w
	b.note("Built from Prometheus at %s over %s to %s (step %v); hours of the day are UTC.",
		base.Redacted(), w.start.Format(time.RFC3339), w.end.Format(time.RFC3339), w.step)
	if name == "" {
		name = fmt.Sprintf("%s, %s to %s (chat)", base.Host, w.start.Format("2006-01-02 15:04"), w.end.Format("2006-01-02 15:04 MST"))
	}
	if b.phone > 0 {
		b.note("Phone: %.0f contacts in the window are left out; only chat is simulated.", b.phone)
	}
	if b.unlabelled > 0 {
		b.note("%d series without a centre label were ignored.", b.unlabelled)
	}
	langs := make([]string, 0, len(b.langs))
	for l := range b.langs {
		langs = append(langs, l)
	}
	sort.Strings(langs)
	if len(langs) == 0 {
		return nil, fmt.Errorf("no chat series of helpmesh_contacts_offered_total: %w", ErrNoData)
	}
	sc := &Scenario{
		Name:    name,
		Start:   w.start.Format(time.RFC3339),
		Hours:   w.end.Sub(w.start).Hours(),
		Seed:    1,
		Policy:  Policy{Languages: langs},
		Network: Network{DelayMillis: 20, GossipMillis: 300},
	}

	centres := make([]string, 0, len(b.alive))
	for c := range b.alive {
		centres = append(centres, c)
	}
	sort.Strings(centres)
	clamped, rounded := 0, false
	for _, id := range centres {
		c := Centre{ID: id}
		obs := b.observed(id)
		var unseen [24]bool
		n := 0
		for h, o := range obs {
			if o == 0 {
				unseen[h] = true
				n++
			}
		}
		if n == 24 {
			b.note("Centre %s: never scraped twice in a row: no arrivals.", id)
		} else if n > 0 {
			b.note("Centre %s: no data for the hours %s (UTC): no arrivals then.", id, hourRanges(unseen))
		}
		total := 0.0
		for _, o := range obs {
			total += o
		}
		if window := w.end.Sub(w.start).Hours(); total < 0.99*window {
			b.note("Centre %s: scraped for %.4g h of the window's %.4g h; its rates are over the time scraped.", id, total, window)
		}
		urgent := 0.0
		if b.offeredChat[id] > 0 {
			urgent = math.Round(min(1, b.urgentN[id]/b.offeredChat[id])*1e4) / 1e4
		}
		for _, l := range langs {
			counts := b.offeredN[id][l]
			if counts == nil {
				continue
			}
			a := Arrivals{Channel: "chat", Language: l, PerHour: make([]float64, 24), Urgent: urgent}
			some := false
			for h := range 24 {
				if obs[h] == 0 || counts[h] == 0 {
					continue
				}
				r := counts[h] / obs[h]
				if r > MaxPerHour {
					r, clamped = MaxPerHour, clamped+1
				}
				a.PerHour[h] = math.Round(r*1e4) / 1e4
				some = some || a.PerHour[h] > 0
			}
			if some {
				c.Arrivals = append(c.Arrivals, a)
			}
		}
		var counts [24]int
		if d := b.onDuty[id]; d != nil {
			for h := range 24 {
				if d[h][1] > 0 {
					mean := d[h][0] / d[h][1]
					counts[h] = min(MaxGroupCount, int(math.Round(mean)))
					rounded = rounded || math.Abs(mean-math.Round(mean)) > 0.01
				}
			}
		}
		speaks := b.speaks(id, langs)
		for _, g := range promShifts(counts) {
			g.Languages = speaks
			g.Channels = []string{"chat"}
			g.Capacity = 1
			c.Volunteers = append(c.Volunteers, g)
		}
		if len(c.Volunteers) == 0 {
			b.note("Centre %s: nobody on chat duty in the window.", id)
		}
		sc.Centres = append(sc.Centres, c)
	}
	if clamped > 0 {
		b.note("%d hourly rates above %d contacts an hour (a window of minutes) were cut to %d.", clamped, MaxPerHour, MaxPerHour)
	}
	if rounded {
		b.note("Volunteers on duty are the mean per hour of day, rounded to whole people; capacity 1 each (the metrics count people, not chat slots).")
	} else {
		b.note("Volunteers on duty: the mean per hour of day; capacity 1 each (the metrics count people, not chat slots).")
	}
	b.note("Volunteers' languages: those answered locally at their centre, plus those answered by overflow anywhere if the centre accepted overflow offers; failing both, those offered there.")

	bh := &sc.Behaviour
	if b.answeredN > 0 {
		talk := min(86400, b.talking/b.answeredN)
		bh.TalkTime = Dist{Kind: "exponential", Mean: math.Round(talk*10) / 10}
		b.note("Talk time: exponential, mean %.1f s by Little's law (%.0f conversation-seconds in progress over %.0f conversations ended).", bh.TalkTime.Mean, b.talking, b.answeredN)
	} else {
		bh.TalkTime = Dist{Kind: "exponential", Mean: promDefaultTalkSeconds}
		b.note("Talk time: no conversation ended in the window; exponential with a mean of %d s assumed.", promDefaultTalkSeconds)
	}
	if b.abandonedN >= promMinAbandoned && b.waiting > 0 {
		patience := min(86400, b.waiting/b.abandonedN)
		bh.Patience = Dist{Kind: "exponential", Mean: math.Round(patience*10) / 10}
		b.note("Patience: exponential, mean %.1f s: %.0f contact-seconds waiting over %.0f abandoned (the estimate for exponential patience).", bh.Patience.Mean, b.waiting, b.abandonedN)
	} else {
		bh.Patience = Dist{Kind: "exponential", Mean: promDefaultPatienceSeconds}
		b.note("Patience: %.0f abandoned in the window, too few to estimate (at least %d); exponential with a mean of %d s assumed.", b.abandonedN, promMinAbandoned, promDefaultPatienceSeconds)
	}
	b.note("Not in the metrics, left at defaults: decline and no-answer rates 0, answer time 0, overflow_after, ring and service level the simulator's; network 20 ms, gossip 300 ms.")
	sc.Notes = b.notes
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("the scenario built does not validate: %w", err)
	}
	return sc, nil
}

// speaks is the languages a centre's volunteers are taken to speak.
func (b *promBuilder) speaks(centre string, langs []string) []string {
	var out []string
	for _, l := range langs {
		if b.answeredLocal[centre][l] > 0 || (b.receivedN[centre] > 0 && b.overflowLangs[l] > 0) {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		for _, l := range langs {
			if c := b.offeredN[centre][l]; c != nil && slices.ContainsFunc(c[:], func(v float64) bool { return v > 0 }) {
				out = append(out, l)
			}
		}
	}
	if len(out) == 0 {
		out = slices.Clone(langs)
	}
	return out
}

// promShifts turns the volunteers on duty per hour of day into groups, one
// per run of hours with the same number, each with one daily shift: the
// runs do not overlap, so neither do a centre's groups.
func promShifts(counts [24]int) []Volunteers {
	start := -1
	for h := range 24 {
		if counts[h] != counts[(h+23)%24] {
			start = h
			break
		}
	}
	if start < 0 { // the same all day
		if counts[0] == 0 {
			return nil
		}
		return []Volunteers{{Name: "00-24", Count: counts[0], Shifts: []Shift{{From: "00:00", To: "24:00"}}}}
	}
	var out []Volunteers
	for k := 0; k < 24; {
		from := (start + k) % 24
		n := 1
		for k+n < 24 && counts[(start+k+n)%24] == counts[from] {
			n++
		}
		if counts[from] > 0 {
			to := from + n
			if to > 24 {
				to -= 24
			}
			out = append(out, Volunteers{
				Name:   fmt.Sprintf("%02d-%02d", from, to),
				Count:  counts[from],
				Shifts: []Shift{{From: fmt.Sprintf("%02d:00", from), To: fmt.Sprintf("%02d:00", to)}},
			})
		}
		k += n
	}
	slices.SortFunc(out, func(a, b Volunteers) int { return strings.Compare(a.Shifts[0].From, b.Shifts[0].From) })
	return out
}

// hourRanges writes the hours set as ranges of the clock ("00:00-14:00, 15:00-24:00").
func hourRanges(set [24]bool) string {
	var out []string
	for h := 0; h < 24; {
		if !set[h] {
			h++
			continue
		}
		e := h
		for e < 24 && set[e] {
			e++
		}
		out = append(out, fmt.Sprintf("%02d:00-%02d:00", h, e))
		h = e
	}
	return strings.Join(out, ", ")
}
