//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/helpmesh/helpmesh/internal/rostermodel"
)

// The roster, seen through the HTTP API while containers are killed, paused
// and cut off, must behave like one register per volunteer: a linearizable
// read (GET /v1/roster?consistency=linearizable) sees every write that
// completed before it began and never a value nobody wrote. A background
// client records a history of writes and reads during the whole fault suite
// and porcupine checks it at the end (as node/linearizability_test.go does in
// process).

// histKeys are the volunteers the history writes; their home is centre-a.
var histKeys = []string{"hist-0", "hist-1", "hist-2"}

// histOp is one history operation on one key: the roster's porcupine model
// (internal/rostermodel), shared with node's in-process test. A write sets
// the volunteer's alias to Value; a read observes the alias ("" while the
// volunteer is absent).
type histOp = rostermodel.Op

// histModel is a register per volunteer id, partitioned by id.
var histModel = rostermodel.Model()

// summary is what the roster history client did.
type summary struct {
	Clients  int
	Duration time.Duration
	// WritesOK were answered 200. WritesAmbiguous got no definite answer
	// (5xx, timeout, a connection lost after the request was sent): they
	// may have taken effect at any time after the call. WritesRefused got a
	// 4xx (nothing changed); WritesNotSent could not even connect.
	WritesOK, WritesAmbiguous, WritesRefused, WritesNotSent int
	// Reads were answered 200 (each is one read op per key); ReadsFailed
	// were not and are left out of the history.
	Reads, ReadsFailed int
	// Errors counts every request without a 200, by centre and kind.
	Errors map[string]map[string]int
	// Examples are a few of those errors, for the log.
	Examples []string
	Ops      int // history operations recorded
}

// rosterHistory is the background roster client.
type rosterHistory struct {
	f       *fed
	centres []*centre
	start   time.Time
	timeout time.Duration // per request
	pauseLo time.Duration // between a client's operations: pauseLo..2*pauseLo
	stopCh  chan struct{}
	wg      sync.WaitGroup
	values  atomic.Int64
	hc      *http.Client

	mu  sync.Mutex
	ops []porcupine.Operation
	sum summary

	stopOnce sync.Once
}

// startRosterHistory starts three clients that each, until stop, pick a
// random centre and alternate a roster write (an upsert of one of histKeys
// with a fresh alias) with a linearizable roster read, with a short pause
// between operations.
func startRosterHistory(ctx context.Context, f *fed) *rosterHistory {
	return startRosterHistoryWith(ctx, f, 3, 3*time.Second, 50*time.Millisecond)
}

func startRosterHistoryWith(ctx context.Context, f *fed, clients int, timeout, pause time.Duration) *rosterHistory {
	h := &rosterHistory{
		f: f, centres: f.all(), start: time.Now(), timeout: timeout, pauseLo: pause,
		stopCh: make(chan struct{}),
		// Its own connections: a fault suite helper's idle connection is
		// not ours to break, and ours are not theirs.
		hc:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}},
		sum: summary{Clients: clients, Errors: map[string]map[string]int{}},
	}
	seed := uint64(time.Now().UnixNano())
	for i := range clients {
		h.wg.Go(func() { h.client(ctx, i, rand.New(rand.NewPCG(seed, uint64(i)))) })
	}
	return h
}

// stop ends the clients (an operation in flight runs to its answer or its
// timeout) and returns what they did. It may be called more than once.
func (h *rosterHistory) stop() summary {
	h.stopOnce.Do(func() {
		close(h.stopCh)
		h.wg.Wait()
		h.hc.CloseIdleConnections()
		h.sum.Duration = time.Since(h.start)
		h.sum.Ops = len(h.ops)
	})
	return h.sum
}

func (h *rosterHistory) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *rosterHistory) client(ctx context.Context, id int, rng *rand.Rand) {
	write := rng.IntN(2) == 0
	for {
		select {
		case <-h.stopCh:
			return
		case <-ctx.Done():
			return
		case <-time.After(h.pauseLo + rand.N(h.pauseLo)):
		}
		c := h.centres[rng.IntN(len(h.centres))]
		if write {
			h.write(ctx, id, c, histKeys[rng.IntN(len(histKeys))])
		} else {
			h.read(ctx, id, c)
		}
		write = !write
	}
}

// do sends one admin request to c within the per-request timeout.
// sent is false when no byte of it can have reached the centre.
func (h *rosterHistory) do(ctx context.Context, c *centre, method, path, body string) (code int, b []byte, sent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+c.http+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, false, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		var op *net.OpError
		return 0, nil, !(errors.As(err, &op) && op.Op == "dial"), err
	}
	defer resp.Body.Close()
	b, err = io.ReadAll(resp.Body)
	return resp.StatusCode, b, true, err
}

func (h *rosterHistory) failed(c *centre, kind, detail string) {
	m := h.sum.Errors[c.svc]
	if m == nil {
		m = map[string]int{}
		h.sum.Errors[c.svc] = m
	}
	m[kind]++
	if len(h.sum.Examples) < 12 {
		h.sum.Examples = append(h.sum.Examples, fmt.Sprintf("%7.2fs %s at %s: %.200s", time.Since(h.start).Seconds(), kind, c.svc, detail))
	}
}

func (h *rosterHistory) write(ctx context.Context, client int, c *centre, key string) {
	value := fmt.Sprintf("w%d", h.values.Add(1))
	body := fmt.Sprintf(`{"id":%q,"centre":"centre-a","alias":%q,"channels":["chat"],"languages":["nb"],"capacity":1,"role":"volunteer"}`, key, value)
	call := h.now()
	code, b, sent, err := h.do(ctx, c, http.MethodPost, "/v1/volunteers", body)
	ret := h.now()
	op := porcupine.Operation{ClientId: client, Input: histOp{Key: key, Write: true, Value: value}, Call: call, Return: ret,
		Metadata: "via " + c.svc}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil && code == http.StatusOK:
		h.sum.WritesOK++
		h.ops = append(h.ops, op)
	case err == nil && code >= 400 && code < 500:
		// A refused request changes nothing (docs/api.md).
		h.sum.WritesRefused++
		h.failed(c, fmt.Sprintf("write %d", code), string(b))
	case !sent:
		h.sum.WritesNotSent++
		h.failed(c, "write not sent", err.Error())
	default:
		// It may or may not have happened, at any time after the call: it
		// never returns (porcupine's convention).
		h.sum.WritesAmbiguous++
		op.Return = math.MaxInt64
		why := fmt.Sprint(err)
		kind := "write ambiguous (error)"
		if err == nil {
			why = fmt.Sprintf("%d %s", code, b)
			kind = fmt.Sprintf("write ambiguous (%d)", code)
		}
		op.Metadata = fmt.Sprintf("via %s, ambiguous after %.0fms: %.120s", c.svc, float64(ret-call)/1e6, why)
		h.ops = append(h.ops, op)
		h.failed(c, kind, why)
	}
}

func (h *rosterHistory) read(ctx context.Context, client int, c *centre) {
	call := h.now()
	code, b, _, err := h.do(ctx, c, http.MethodGet, "/v1/roster?consistency=linearizable", "")
	ret := h.now()
	var r struct {
		Volunteers map[string]struct {
			Alias string `json:"alias"`
		} `json:"volunteers"`
	}
	if err == nil && code == http.StatusOK {
		err = json.Unmarshal(b, &r)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil || code != http.StatusOK {
		h.sum.ReadsFailed++
		kind, why := "read error", fmt.Sprint(err)
		if err == nil {
			kind, why = fmt.Sprintf("read %d", code), string(b)
		}
		h.failed(c, kind, why)
		return
	}
	// One read observes every key at one moment; it is recorded as one
	// read per key (a weaker claim than the atomic snapshot).
	h.sum.Reads++
	for _, key := range histKeys {
		h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: histOp{Key: key}, Output: r.Volunteers[key].Alias,
			Call: call, Return: ret, Metadata: "via " + c.svc})
	}
}

// reduceAmbiguous returns history with every ambiguous write (Return
// MaxInt64) that no read observed left out, and every observed one given
// the earliest return among the reads that observed it. Neither changes
// porcupine's verdict, since aliases are unique: an unobserved write can
// always be linearized last, after everything else; and in any linearization
// an observed write precedes each read of its value, so before that read's
// return. It keeps the search from exploring which of many never-answered
// writes (every write through a frozen centre) happened where.
func reduceAmbiguous(history []porcupine.Operation) (out []porcupine.Operation, dropped, bounded int) {
	seen := map[histOp]int64{} // a written value -> earliest return of a read of it
	for _, op := range history {
		in := op.Input.(histOp)
		if in.Write || op.Output.(string) == "" {
			continue
		}
		k := histOp{Key: in.Key, Write: true, Value: op.Output.(string)}
		if r, ok := seen[k]; !ok || op.Return < r {
			seen[k] = op.Return
		}
	}
	for _, op := range history {
		if op.Return == math.MaxInt64 {
			r, ok := seen[op.Input.(histOp)]
			if !ok {
				dropped++
				continue
			}
			op.Return = max(r, op.Call)
			bounded++
		}
		out = append(out, op)
	}
	return out, dropped, bounded
}

// checkHistory runs porcupine over the reduced history. On anything but Ok
// it writes the visualization and a text dump into HELPMESH_ARTIFACTS (else
// dir) and returns an error naming them; illegal lists the keys whose
// history alone is not linearizable.
func checkHistory(name, dir string, history []porcupine.Operation, timeout time.Duration) (res porcupine.CheckResult, illegal []string, err error) {
	reduced, _, _ := reduceAmbiguous(history)
	res, info := porcupine.CheckOperationsVerbose(histModel, reduced, timeout)
	if res == porcupine.Ok {
		return res, nil, nil
	}
	if res == porcupine.Illegal {
		for _, part := range histModel.Partition(reduced) {
			if porcupine.CheckOperationsTimeout(histModel, part, timeout) == porcupine.Illegal {
				illegal = append(illegal, part[0].Input.(histOp).Key)
			}
		}
	}
	if d := os.Getenv("HELPMESH_ARTIFACTS"); d != "" {
		dir = d
	}
	if mkErr := os.MkdirAll(dir, 0o755); mkErr != nil {
		return res, illegal, fmt.Errorf("porcupine says %s (keys %v), and no artifacts dir: %v", res, illegal, mkErr)
	}
	html, dump := rostermodel.WriteArtifacts(dir, name, info, history, time.Second)
	return res, illegal, fmt.Errorf("porcupine says %s (illegal keys %v): visualization %s, history %s", res, illegal, html, dump)
}

// check stops the clients, logs what they did and fails the test unless
// porcupine finds the history linearizable.
func (h *rosterHistory) check(t *testing.T) {
	t.Helper()
	s := h.stop()
	h.mu.Lock()
	history := h.ops
	h.mu.Unlock()
	for _, e := range s.Examples {
		t.Logf("roster history: e.g. %s", e)
	}
	var perCentre []string
	for _, c := range h.centres {
		var kinds []string
		for k, n := range s.Errors[c.svc] {
			kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
		}
		sort.Strings(kinds)
		if len(kinds) == 0 {
			kinds = []string{"none"}
		}
		perCentre = append(perCentre, c.svc+": "+strings.Join(kinds, ", "))
	}
	_, dropped, bounded := reduceAmbiguous(history)
	t.Logf("roster history: %v, %d clients: %d writes ok, %d ambiguous (%d later seen by a read, %d never seen), %d refused (4xx), %d not sent (connect failed); "+
		"%d linearizable reads ok, %d failed; %d operations; errors by centre: %s",
		s.Duration.Round(time.Second), s.Clients, s.WritesOK, s.WritesAmbiguous, bounded, dropped, s.WritesRefused, s.WritesNotSent,
		s.Reads, s.ReadsFailed, len(history), strings.Join(perCentre, "; "))

	dir := t.TempDir()
	start := time.Now()
	res, illegal, err := checkHistory(t.Name(), dir, history, 60*time.Second)
	t.Logf("roster history: porcupine checked %d operations in %v: %s", len(history), time.Since(start).Round(time.Millisecond), res)
	violations := fmt.Sprint(len(illegal))
	if res == porcupine.Unknown {
		violations = "unknown (porcupine timed out)"
	}
	h.f.figure(t, "roster history across all faults: %d writes ok, %d ambiguous, %d linearizable reads (%d failed) by %d clients over %v; %s linearizability violations",
		s.WritesOK, s.WritesAmbiguous, s.Reads, s.ReadsFailed, s.Clients, s.Duration.Round(time.Second), violations)
	switch {
	case res == porcupine.Unknown:
		t.Errorf("roster history: the linearizability check timed out, so nothing was proven: %v", err)
	case err != nil:
		t.Errorf("roster history is NOT linearizable (%d writes ok, %d ambiguous, %d reads): %v", s.WritesOK, s.WritesAmbiguous, s.Reads, err)
	case s.WritesOK < 20 || s.Reads < 20:
		t.Errorf("roster history: too little completed work to mean anything: %d writes and %d reads ok", s.WritesOK, s.Reads)
	}
}

// TestRosterHistoryChecker needs no Docker (go test -tags faults -run
// TestRosterHistoryChecker ./deploy/faults/): the check above rejects the
// histories a broken roster would produce, accepts ambiguous writes seen or
// not, and its reduction of ambiguous writes keeps porcupine's verdict.
func TestRosterHistoryChecker(t *testing.T) {
	cases := rostermodel.Cases()
	for _, tc := range cases {
		raw := porcupine.CheckOperationsTimeout(histModel, tc.History, 10*time.Second)
		reduced, _, _ := reduceAmbiguous(tc.History)
		red := porcupine.CheckOperationsTimeout(histModel, reduced, 10*time.Second)
		if raw != tc.Want || red != tc.Want {
			t.Errorf("%s: porcupine says %s on the raw history, %s on the reduced one, want %s", tc.Name, raw, red, tc.Want)
		}
	}
	// The reporting path: a stale read is Illegal, on its key, with a
	// visualization that exists.
	t.Setenv("HELPMESH_ARTIFACTS", "")
	dir := t.TempDir()
	res, illegal, err := checkHistory(t.Name(), dir, cases[1].History, 10*time.Second)
	if res != porcupine.Illegal || err == nil || len(illegal) != 1 || illegal[0] != "hist-1" {
		t.Fatalf("checkHistory on a stale read: %s, illegal keys %v, %v", res, illegal, err)
	}
	if fi, serr := os.Stat(filepath.Join(dir, t.Name()+".html")); serr != nil || fi.Size() == 0 {
		t.Fatalf("no visualization (%v): %v", serr, err)
	}
}

// fakeRoster serves the two endpoints the history client uses from one
// in-memory roster; stale makes centre-c answer reads from a copy refreshed
// only every 50 ms, as a centre serving its lagging local copy would.
type fakeRoster struct {
	mu      sync.Mutex
	aliases map[string]string
	old     map[string]string
	calls   int
}

func (fr *fakeRoster) handler(svc string, stale bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fr.mu.Lock()
		defer fr.mu.Unlock()
		fr.calls++
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/volunteers":
			var v struct{ ID, Alias string }
			if json.NewDecoder(r.Body).Decode(&v) != nil {
				http.Error(w, "bad", http.StatusBadRequest)
				return
			}
			switch fr.calls % 10 {
			case 3: // refused: nothing changes
				http.Error(w, `{"code":"conflict"}`, http.StatusConflict)
				return
			case 7: // applied, but the answer says otherwise: ambiguous
				fr.aliases[v.ID] = v.Alias
				http.Error(w, `{"code":"no_quorum"}`, http.StatusServiceUnavailable)
				return
			case 9: // not applied, and the answer cannot say so: ambiguous
				http.Error(w, `{"code":"no_quorum"}`, http.StatusServiceUnavailable)
				return
			}
			fr.aliases[v.ID] = v.Alias
			w.Write([]byte(`{}`))
		case r.Method == http.MethodGet && r.URL.Path == "/v1/roster" && r.URL.Query().Get("consistency") == "linearizable":
			src := fr.aliases
			if stale && svc == "centre-c" {
				src = fr.old
			}
			vols := map[string]map[string]string{}
			for k, a := range src {
				vols[k] = map[string]string{"alias": a}
			}
			json.NewEncoder(w).Encode(map[string]any{"volunteers": vols})
		default:
			http.NotFound(w, r)
		}
	})
}

// TestRosterHistoryClientWithoutDocker runs the history client against
// three fake centres (go test -tags faults -run TestRosterHistory
// ./deploy/faults/): one consistent roster checks out, with its ambiguous and
// refused writes; a centre serving stale reads is caught.
func TestRosterHistoryClientWithoutDocker(t *testing.T) {
	for _, stale := range []bool{false, true} {
		t.Run(fmt.Sprintf("stale=%v", stale), func(t *testing.T) {
			fr := &fakeRoster{aliases: map[string]string{}, old: map[string]string{}}
			f := &fed{t: t, c: map[string]*centre{}}
			for _, svc := range []string{"centre-a", "centre-b", "centre-c"} {
				srv := httptest.NewServer(fr.handler(svc, stale))
				t.Cleanup(srv.Close)
				f.c[svc] = &centre{svc: svc, http: strings.TrimPrefix(srv.URL, "http://"), token: "t"}
			}
			refresh := time.NewTicker(50 * time.Millisecond)
			defer refresh.Stop()
			done := make(chan struct{})
			go func() {
				for {
					select {
					case <-done:
						return
					case <-refresh.C:
						fr.mu.Lock()
						fr.old = maps.Clone(fr.aliases)
						fr.mu.Unlock()
					}
				}
			}()
			h := startRosterHistoryWith(context.Background(), f, 3, time.Second, 2*time.Millisecond)
			time.Sleep(1500 * time.Millisecond)
			s := h.stop()
			close(done)
			if s.WritesOK == 0 || s.WritesAmbiguous == 0 || s.WritesRefused == 0 || s.Reads == 0 {
				t.Fatalf("the fake should produce every kind of outcome: %+v", s)
			}
			if !stale {
				h.check(t)
				t.Logf("figures: %v", f.figs)
				return
			}
			res, illegal, err := checkHistory(t.Name(), t.TempDir(), h.ops, 30*time.Second)
			if res != porcupine.Illegal {
				t.Fatalf("stale reads at centre-c: porcupine says %s (%v), want Illegal", res, err)
			}
			t.Logf("stale reads caught: keys %v: %v", illegal, err)
		})
	}
}
