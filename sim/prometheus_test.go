package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- the decoder ----

const goodMatrix = `{"status":"success","data":{"resultType":"matrix","result":[` +
	`{"metric":{"__name__":"helpmesh_contacts_offered_total","centre":"c1","channel":"chat","language":"nb"},"values":[[1764547200,"0"],[1764547260,"3"]]}]},` +
	`"warnings":["a warning"]}`

func TestPrometheusDecoderIsStrict(t *testing.T) {
	series, warnings, err := decodePromMatrix(strings.NewReader(goodMatrix), MaxPromResponseBytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(series) != 1 || len(series[0].Values) != 2 || series[0].Values[1] != (promPoint{T: 1764547260, V: 3}) || series[0].Metric["centre"] != "c1" {
		t.Fatalf("decoded %+v", series)
	}
	if !slices.Equal(warnings, []string{"a warning"}) {
		t.Fatalf("warnings %q", warnings)
	}
	bad := map[string]string{
		"error status":      `{"status":"error","errorType":"bad_data","error":"parse error at char 3"}`,
		"unknown field":     `{"status":"success","data":{"resultType":"matrix","result":[]},"extra":1}`,
		"unknown in series": `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[],"histograms":[]}]}}`,
		"two values":        goodMatrix + ` {}`,
		"trailing garbage":  goodMatrix + `x`,
		"vector":            `{"status":"success","data":{"resultType":"vector","result":[]}}`,
		"no data":           `{"status":"success"}`,
		"odd status":        `{"status":"partial","data":{"resultType":"matrix","result":[]}}`,
		"NaN":               strings.Replace(goodMatrix, `"3"`, `"NaN"`, 1),
		"Inf":               strings.Replace(goodMatrix, `"3"`, `"+Inf"`, 1),
		"negative":          strings.Replace(goodMatrix, `"3"`, `"-1"`, 1),
		"value not string":  strings.Replace(goodMatrix, `"3"`, `3`, 1),
		"time as string":    strings.Replace(goodMatrix, `1764547260,`, `"1764547260",`, 1),
		"time null":         strings.Replace(goodMatrix, `1764547260,`, `null,`, 1),
		"three elements":    strings.Replace(goodMatrix, `"3"]`, `"3",1]`, 1),
		"point null":        strings.Replace(goodMatrix, `[1764547260,"3"]`, `null`, 1),
		"out of order":      strings.Replace(goodMatrix, `1764547260,`, `1764547100,`, 1),
		"time far future":   strings.Replace(goodMatrix, `1764547260,`, `1e12,`, 1),
		"not json":          `<html>502 Bad Gateway</html>`,
		"empty":             ``,
	}
	for name, body := range bad {
		_, _, err := decodePromMatrix(strings.NewReader(body), MaxPromResponseBytes)
		if !errors.Is(err, ErrPromResponse) {
			t.Errorf("%s: err %v, want ErrPromResponse", name, err)
		}
	}
	_, _, err = decodePromMatrix(strings.NewReader(bad["error status"]), MaxPromResponseBytes)
	if !strings.Contains(fmt.Sprint(err), "bad_data") || !strings.Contains(fmt.Sprint(err), "parse error") {
		t.Errorf("an error answer's message is lost: %v", err)
	}
}

// countingReader is an endless stream of spaces that counts what was read.
type countingReader struct{ n int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	r.n += int64(len(p))
	return len(p), nil
}

func TestPrometheusDecoderReadsAtMostTheLimit(t *testing.T) {
	r := &countingReader{}
	_, _, err := decodePromMatrix(r, 1<<16)
	if !errors.Is(err, ErrPromResponse) || !strings.Contains(err.Error(), "over 65536 bytes") {
		t.Fatalf("endless body: %v", err)
	}
	if r.n > 1<<16+1 {
		t.Fatalf("read %d bytes of an endless body with a limit of %d", r.n, 1<<16)
	}
	body := []byte(goodMatrix)
	if _, _, err := decodePromMatrix(bytes.NewReader(body), int64(len(body))); err != nil {
		t.Fatalf("a body of exactly the limit: %v", err)
	}
	if _, _, err := decodePromMatrix(bytes.NewReader(body), int64(len(body)-1)); !errors.Is(err, ErrPromResponse) {
		t.Fatalf("a body one byte over the limit: %v", err)
	}
}

// Arbitrary bytes never panic the decoder; whatever it accepts is a matrix
// of finite, non-negative samples in time order, and nothing over the limit
// is accepted or read much beyond it.
func FuzzPromResponse(f *testing.F) {
	f.Add([]byte(goodMatrix), uint16(4096))
	f.Add([]byte(goodMatrix), uint16(10))
	f.Add([]byte(`{"status":"error","errorType":"timeout","error":"query timed out"}`), uint16(4096))
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1e308"],[2,"0x1p-2"]]}]}}`), uint16(4096))
	f.Add([]byte(`{"status":"success","data":{"resultType":"matrix","result":[{"metric":null,"values":null}]},"infos":["x"]}`), uint16(4096))
	f.Add([]byte(`[[[[[[[[[[[[[[[[`), uint16(4096))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		lr := &limitedCount{r: bytes.NewReader(data)}
		series, _, err := decodePromMatrix(lr, int64(limit))
		if lr.n > int64(limit)+1 {
			t.Fatalf("read %d bytes with a limit of %d", lr.n, limit)
		}
		if len(data) > int(limit) {
			if err == nil {
				t.Fatalf("accepted %d bytes with a limit of %d", len(data), limit)
			}
			return
		}
		if err != nil {
			if !errors.Is(err, ErrPromResponse) {
				t.Fatalf("error not wrapping ErrPromResponse: %v", err)
			}
			return
		}
		for _, s := range series {
			for j, p := range s.Values {
				if math.IsNaN(p.V) || math.IsInf(p.V, 0) || p.V < 0 || math.IsNaN(p.T) || p.T < 0 || p.T > 1e11 {
					t.Fatalf("accepted sample %+v", p)
				}
				if j > 0 && p.T <= s.Values[j-1].T {
					t.Fatalf("accepted samples out of order: %+v", s.Values)
				}
			}
		}
	})
}

type limitedCount struct {
	r io.Reader
	n int64
}

func (l *limitedCount) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

// ---- from series to a scenario ----

// promGen builds series over a window.
type promGen struct{ w promWindow }

// counter is a counter that grows by inc(i) at every step (seen or not),
// restarts from zero where reset(i), and is scraped where present(i).
func (g promGen) counter(labels map[string]string, present func(i int) bool, inc func(i int) float64, reset func(i int) bool) promSeries {
	s := promSeries{Metric: labels}
	v := 0.0
	for i := range g.w.n {
		if reset != nil && reset(i) {
			v = 0
		}
		v += inc(i)
		if present(i) {
			s.Values = append(s.Values, promPoint{T: float64(g.w.at(i).Unix()), V: v})
		}
	}
	return s
}

func (g promGen) gauge(labels map[string]string, value func(i int) float64) promSeries {
	s := promSeries{Metric: labels}
	for i := range g.w.n {
		s.Values = append(s.Values, promPoint{T: float64(g.w.at(i).Unix()), V: value(i)})
	}
	return s
}

// feed hands series to use in chunks of steps, as rangeQuery does.
func (g promGen) feed(t *testing.T, use func([]promSeries) error, chunk int, series ...promSeries) {
	t.Helper()
	for from := 0; from < g.w.n; from += chunk {
		var part []promSeries
		for _, s := range series {
			p := promSeries{Metric: s.Metric}
			for _, v := range s.Values {
				if i, _ := g.w.index(v.T); i >= from && i < from+chunk {
					p.Values = append(p.Values, v)
				}
			}
			if len(p.Values) > 0 {
				part = append(part, p)
			}
		}
		if err := use(part); err != nil {
			t.Fatal(err)
		}
	}
}

func labels(kv ...string) map[string]string {
	m := map[string]string{"job": "helpmesh"}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Two days at one-minute steps, with what a real federation's week throws
// at the counting: a counter reset, a series born in the window, a short
// gap (bridged) and a long one (left out), phone contacts (dropped),
// volunteers in runs of hours across midnight and a fractional mean.
func TestPrometheusBuildsScenarioFromSeries(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	w, err := newPromWindow(PromSource{Start: start, End: start.Add(48 * time.Hour), Step: time.Minute}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if w.n != 2881 || w.bridge != 15 {
		t.Fatalf("window of %d steps, bridge %d", w.n, w.bridge)
	}
	g := promGen{w}
	hour := func(i int) int { return w.at(i).Add(-time.Second).Hour() } // the hour step i's minute belongs to
	at := func(d, h, m int) int { return d*24*60 + h*60 + m }
	// Centre a: a 10-minute gap on day 0 at 05:05 (bridged); its nb
	// counter restarts on day 1 at 10:30.
	aUp := func(i int) bool { return i < at(0, 5, 5) || i >= at(0, 5, 15) }
	// Centre b: down from 14:00 to 16:00 on day 0 (left out).
	bUp := func(i int) bool { return i < at(0, 14, 0) || i >= at(0, 16, 0) }
	perMinuteIn := func(hours ...int) func(int) float64 {
		return func(i int) float64 {
			if i > 0 && slices.Contains(hours, hour(i)) {
				return 1
			}
			return 0
		}
	}
	b := newPromBuilder(w)
	offered := []promSeries{
		g.counter(labels("centre", "a", "channel", "chat", "language", "nb"), aUp, perMinuteIn(5, 10), func(i int) bool { return i == at(1, 10, 30) }),
		// en at a is born on day 0 at 12:01 with 3 contacts, and stays there.
		g.counter(labels("centre", "a", "channel", "chat", "language", "en"), func(i int) bool { return i >= at(0, 12, 1) },
			func(i int) float64 { return map[bool]float64{true: 3}[i == at(0, 12, 1)] }, nil),
		g.counter(labels("centre", "a", "channel", "phone", "language", "nb"), aUp,
			func(i int) float64 { return map[bool]float64{true: 1}[w.at(i).Minute() == 30] }, nil),
		g.counter(labels("centre", "b", "channel", "chat", "language", "nb"), bUp, perMinuteIn(14, 15), nil),
	}
	g.feed(t, b.offered, 500, offered...)
	g.feed(t, b.answered, 700,
		g.counter(labels("centre", "a", "channel", "chat", "language", "nb", "answered_by", "local"), aUp, func(i int) float64 { return map[bool]float64{true: 1}[i%20 == 0 && i > 0] }, nil),
		g.counter(labels("centre", "a", "channel", "chat", "language", "en", "answered_by", "overflow"), aUp, func(i int) float64 { return map[bool]float64{true: 1}[i%100 == 0 && i > 0] }, nil),
		g.counter(labels("centre", "b", "channel", "chat", "language", "nb", "answered_by", "local"), bUp, func(i int) float64 { return map[bool]float64{true: 1}[i == 2000] }, nil),
	)
	g.feed(t, b.abandoned, 1000,
		g.counter(labels("centre", "a", "channel", "chat", "language", "nb"), aUp, func(i int) float64 { return map[bool]float64{true: 1}[i%96 == 0 && i > 0] }, nil))
	g.feed(t, b.urgent, 1000,
		g.counter(labels("centre", "a", "channel", "chat"), aUp, func(i int) float64 { return map[bool]float64{true: 1}[i == 700 || i == 1700] }, nil))
	g.feed(t, b.received, 1000,
		g.counter(labels("centre", "b", "from", "a", "result", "accepted", "channel", "chat"), func(i int) bool { return bUp(i) && i >= 2500 },
			func(i int) float64 { return map[bool]float64{true: 2}[i == 2500] }, nil))
	g.feed(t, b.volunteers, 1000,
		g.gauge(map[string]string{"centre": "a"}, func(i int) float64 {
			switch h := hour(i); {
			case h >= 8 && h < 12:
				return 2
			case h >= 22 || h < 2:
				return 1
			}
			return 0
		}),
		g.gauge(map[string]string{"centre": "b"}, func(i int) float64 { return map[bool]float64{true: 2}[i%5 < 2] }))
	g.feed(t, b.exposure(&b.talking), 1000, g.gauge(map[string]string{}, func(int) float64 { return 2 }))
	g.feed(t, b.exposure(&b.waiting), 1000, g.gauge(map[string]string{}, func(int) float64 { return 0.5 }))

	sc, err := b.scenario("", &url.URL{Scheme: "http", Host: "prom:9090"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.Validate(); err != nil {
		t.Fatal(err)
	}
	if sc.Start != "2026-12-01T00:00:00Z" || sc.Hours != 48 {
		t.Errorf("start %s, hours %v", sc.Start, sc.Hours)
	}
	if !slices.Equal(sc.Policy.Languages, []string{"en", "nb"}) {
		t.Errorf("policy languages %v", sc.Policy.Languages)
	}
	if len(sc.Centres) != 2 || sc.Centres[0].ID != "a" || sc.Centres[1].ID != "b" {
		t.Fatalf("centres %+v", sc.Centres)
	}
	a, bc := sc.Centres[0], sc.Centres[1]
	rates := func(c Centre, lang string) []float64 {
		for _, ar := range c.Arrivals {
			if ar.Language == lang {
				return ar.PerHour
			}
		}
		return nil
	}
	want := make([]float64, 24)
	want[5], want[10] = 60, 60 // a restart and a bridged gap lose nothing
	if got := rates(a, "nb"); !slices.Equal(got, want) {
		t.Errorf("a nb per hour %v, want %v", got, want)
	}
	want = make([]float64, 24)
	want[12] = 1.5 // 3 contacts, born in the window, over two hours of 12:00
	if got := rates(a, "en"); !slices.Equal(got, want) {
		t.Errorf("a en per hour %v, want %v", got, want)
	}
	want = make([]float64, 24)
	want[14], want[15] = 60, 60 // day 0's hours of the outage count neither contacts nor time
	if got := rates(bc, "nb"); !slices.Equal(got, want) {
		t.Errorf("b nb per hour %v, want %v", got, want)
	}
	if u := a.Arrivals[0].Urgent; math.Abs(u-2.0/243) > 1e-4 {
		t.Errorf("a urgent %v, want 2 of 243", u)
	}
	// Volunteers: a in two runs (one across midnight), b 0.8 on average
	// all day, rounded to 1.
	type grp struct {
		name, from, to string
		count          int
	}
	groups := func(c Centre) (out []grp) {
		for _, g := range c.Volunteers {
			if len(g.Shifts) != 1 || g.Capacity != 1 || !slices.Equal(g.Channels, []string{"chat"}) {
				t.Errorf("centre %s group %+v", c.ID, g)
			}
			out = append(out, grp{g.Name, g.Shifts[0].From, g.Shifts[0].To, g.Count})
		}
		return out
	}
	if got, want := groups(a), []grp{{"08-12", "08:00", "12:00", 2}, {"22-02", "22:00", "02:00", 1}}; !slices.Equal(got, want) {
		t.Errorf("a's groups %+v, want %+v", got, want)
	}
	if got, want := groups(bc), []grp{{"00-24", "00:00", "24:00", 1}}; !slices.Equal(got, want) {
		t.Errorf("b's groups %+v, want %+v", got, want)
	}
	if got := a.Volunteers[0].Languages; !slices.Equal(got, []string{"nb"}) {
		t.Errorf("a speaks %v, want nb (answered locally)", got)
	}
	if got := bc.Volunteers[0].Languages; !slices.Equal(got, []string{"en", "nb"}) {
		t.Errorf("b speaks %v, want en (overflow it accepted) and nb (local)", got)
	}
	// Little's law: 2 in conversation at every minute over the answered.
	answered := float64((w.n-1)/20 + (w.n-1)/100 + 1)
	if tt := sc.Behaviour.TalkTime; tt.Kind != "exponential" || math.Abs(tt.Mean-2*60*float64(w.n)/answered) > 0.1 {
		t.Errorf("talk time %+v, want exponential of mean %.1f", tt, 2*60*float64(w.n)/answered)
	}
	abandoned := float64((w.n - 1) / 96)
	if p := sc.Behaviour.Patience; p.Kind != "exponential" || math.Abs(p.Mean-0.5*60*float64(w.n)/abandoned) > 0.1 {
		t.Errorf("patience %+v, want exponential of mean %.1f", p, 0.5*60*float64(w.n)/abandoned)
	}
	notes := strings.Join(sc.Notes, "\n")
	for _, want := range []string{"Phone: 48 contacts", "rounded to whole people", "Little's law", "Patience: exponential"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "no data for the hours") {
		t.Errorf("hours seen at least once were reported as unobserved:\n%s", notes)
	}
	if _, err := Run(context.Background(), sc, Options{}); err != nil {
		t.Fatal(err)
	}
}

// Without abandonments or ended conversations the defaults are used, and
// say so.
func TestPrometheusDefaultsWhenTooFewEvents(t *testing.T) {
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	w, err := newPromWindow(PromSource{Start: start, End: start.Add(time.Hour)}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if w.step != 2*time.Second {
		t.Errorf("default step for an hour: %v", w.step)
	}
	g := promGen{w}
	b := newPromBuilder(w)
	g.feed(t, b.offered, 100, g.counter(labels("centre", "x", "channel", "chat", "language", "nb"), func(int) bool { return true }, func(int) float64 { return 0 }, nil))
	g.feed(t, b.abandoned, 100, g.counter(labels("centre", "x", "channel", "chat", "language", "nb"), func(int) bool { return true },
		func(i int) float64 { return map[bool]float64{true: 1}[i == 10] }, nil))
	g.feed(t, b.exposure(&b.waiting), 100, g.gauge(nil, func(int) float64 { return 1 }))
	sc, err := b.scenario("mine", &url.URL{Scheme: "http", Host: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Name != "mine" || sc.Behaviour.TalkTime != (Dist{Kind: "exponential", Mean: promDefaultTalkSeconds}) ||
		sc.Behaviour.Patience != (Dist{Kind: "exponential", Mean: promDefaultPatienceSeconds}) {
		t.Errorf("name %q, behaviour %+v", sc.Name, sc.Behaviour)
	}
	notes := strings.Join(sc.Notes, "\n")
	if !strings.Contains(notes, "no conversation ended") || !strings.Contains(notes, "1 abandoned in the window, too few") ||
		!strings.Contains(notes, "Centre x: nobody on chat duty") {
		t.Errorf("notes:\n%s", notes)
	}
}

// Groups never overlap within a centre, whatever the hours.
func TestPrometheusShiftsNeverOverlap(t *testing.T) {
	for seed := range 200 {
		var counts [24]int
		for h := range counts {
			counts[h] = (seed*7 + h*h*(seed%5+1) + seed/3*h) % 4 / max(1, seed%3)
		}
		c := Centre{ID: "c"}
		covered := 0
		for _, g := range promShifts(counts) {
			g.Languages, g.Channels = []string{"nb"}, []string{"chat"}
			c.Volunteers = append(c.Volunteers, g)
			sp, _ := g.Shifts[0].spans()
			covered += (sp[0].to - sp[0].from) / 60 * g.Count
		}
		sc := &Scenario{Hours: 1, Policy: Policy{Languages: []string{"nb"}}, Behaviour: Behaviour{TalkTime: Dist{Kind: "fixed", Mean: 1}}, Centres: []Centre{c}}
		if err := sc.Validate(); err != nil {
			t.Fatalf("counts %v: %v", counts, err)
		}
		total := 0
		for _, n := range counts {
			total += n
		}
		if covered != total {
			t.Fatalf("counts %v: groups cover %d volunteer-hours, want %d", counts, covered, total)
		}
		// At every hour, the groups on shift add up to that hour's count.
		for h := range 24 {
			on := 0
			for _, g := range c.Volunteers {
				sp, _ := g.Shifts[0].spans()
				for _, s := range sp[:1] {
					m := h*60 + 30
					if (m >= s.from && m < s.to) || (m+24*60 >= s.from && m+24*60 < s.to) {
						on += g.Count
					}
				}
			}
			if on != counts[h] {
				t.Fatalf("counts %v: %d on shift at %02d:30, want %d", counts, on, h, counts[h])
			}
		}
	}
}

// ---- over HTTP ----

// fakeProm answers range queries for helpmesh_contacts_offered_total with
// one counter that grows by one a minute, and empty matrices otherwise.
type fakeProm struct {
	mu      sync.Mutex
	queries []url.Values
}

func (f *fakeProm) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.queries = append(f.queries, q)
	f.mu.Unlock()
	if r.URL.Path != "/prom/api/v1/query_range" {
		http.NotFound(w, r)
		return
	}
	from, _ := strconv.ParseFloat(q.Get("start"), 64)
	to, _ := strconv.ParseFloat(q.Get("end"), 64)
	step, _ := strconv.ParseFloat(q.Get("step"), 64)
	var result []map[string]any
	if q.Get("query") == "helpmesh_contacts_offered_total" {
		var values [][2]any
		for ts := from; ts <= to; ts += step {
			values = append(values, [2]any{ts, strconv.FormatFloat(math.Floor(ts/60), 'f', -1, 64)})
		}
		result = append(result, map[string]any{"metric": map[string]string{"__name__": "helpmesh_contacts_offered_total", "centre": "x", "channel": "chat", "language": "nb"}, "values": values})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"status": "success", "data": map[string]any{"resultType": "matrix", "result": result}})
}

func TestPrometheusOverHTTPInPieces(t *testing.T) {
	f := &fakeProm{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	end := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	sc, err := FromPrometheus(context.Background(), PromSource{URL: srv.URL + "/prom", Start: end.Add(-2 * time.Hour), End: end, Client: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Centres) != 1 || sc.Centres[0].ID != "x" || len(sc.Centres[0].Arrivals) != 1 {
		t.Fatalf("centres %+v", sc.Centres)
	}
	want := make([]float64, 24)
	want[22], want[23] = 60, 60
	if got := sc.Centres[0].Arrivals[0].PerHour; !slices.Equal(got, want) {
		t.Errorf("per hour %v, want %v", got, want)
	}
	offered := 0
	for _, q := range f.queries {
		if q.Get("step") != "5" || q.Get("timeout") != "30s" {
			t.Errorf("query %v", q)
		}
		if q.Get("query") == "helpmesh_contacts_offered_total" {
			offered++
		}
	}
	if offered < 2 {
		t.Errorf("the offered series came in %d pieces; a first piece of 60 steps, then the rest", offered)
	}
}

func TestPrometheusErrorsAreClear(t *testing.T) {
	end := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	serve := func(h http.HandlerFunc) string {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	cases := []struct {
		name    string
		url     string
		timeout time.Duration
		is      error
		says    string
	}{
		{"error answer", serve(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\""}`)
		}), 0, ErrPromResponse, "bad_data"},
		{"proxy page", serve(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = io.WriteString(w, `<html>bad gateway</html>`)
		}), 0, ErrPromResponse, "502"},
		{"oversized", serve(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(bytes.Repeat([]byte(" "), MaxPromResponseBytes+10))
		}), 0, ErrPromResponse, "over"},
		{"hangs", serve(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }), 200 * time.Millisecond, context.DeadlineExceeded, "query_range"},
		{"no helpmesh", serve(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, `{"status":"success","data":{"resultType":"matrix","result":[]}}`)
		}), 0, ErrNoData, "helpmesh_contacts_offered_total"},
		{"not a url", "prometheus:9090", 0, ErrInvalid, "http(s)://"},
	}
	for _, c := range cases {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := FromPrometheus(ctx, PromSource{URL: c.url, Start: end.Add(-time.Hour), End: end, QueryTimeout: c.timeout})
		cancel()
		if !errors.Is(err, c.is) || !strings.Contains(fmt.Sprint(err), c.says) {
			t.Errorf("%s: %v, want %v saying %q", c.name, err, c.is, c.says)
		}
	}
	for _, src := range []PromSource{
		{URL: "http://p", Start: end, End: end.Add(-time.Hour)},
		{URL: "http://p", Start: end.Add(-time.Hour), End: end, Step: 7 * time.Second},
		{URL: "http://p", Start: end.Add(-time.Hour), End: end, Step: time.Millisecond},
		{URL: "http://p", Start: end.Add(-400 * 24 * time.Hour), End: end},
		{URL: "http://p", Start: end.Add(-100 * 24 * time.Hour), End: end, Step: time.Minute},
	} {
		if _, err := FromPrometheus(context.Background(), src); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
			t.Errorf("window %v to %v step %v: %v", src.Start, src.End, src.Step, err)
		}
	}
}
