//go:build faults

package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// The suite's HTTP clients are as patient as the product may be on a loaded
// machine (issue 10: an enrolment at centre-b timed out after 5 s while
// another program loaded the machine). One request may take callTimeout;
// an answer docs/api.md says to retry is retried for up to patience. A 4xx
// is never retried: it means the suite or the product is wrong.
const (
	callTimeout = 45 * time.Second
	patience    = 3 * time.Minute
)

// errorCode is the code of a JSON error body ("" if there is none).
func errorCode(body []byte) string {
	var e struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Code
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// register writes a volunteer of c at c (a roster write) and returns the
// enrolment code, retrying what docs/api.md says to retry:
//   - 503 no_quorum or not_ready: refused, nothing changed; try again.
//   - 500 internal: the roster write was made but the code was not stored;
//     post it again.
//   - 503 outcome_unknown, or no answer within callTimeout: the write may or
//     may not have been made. As the docs say, read the roster first
//     (linearizable): if the volunteer is there, ask for a new enrolment
//     code (no roster write); if not, post again. (Posting again would do
//     no harm either: the write is the same upsert, and its new code voids
//     the one the lost answer carried.)
func (f *fed) register(t testing.TB, c *centre, id string) string {
	t.Helper()
	body := fmt.Sprintf(`{"id":%q,"centre":%q,"alias":%q,"channels":["chat"],"languages":["nb","en"],"capacity":2,"role":"volunteer"}`, id, c.svc, id)
	deadline := time.Now().Add(patience)
	var tries []string
	for time.Now().Before(deadline) {
		code, b, err := f.apiWithin(c, http.MethodPost, "/v1/volunteers", body, callTimeout)
		ec := errorCode(b)
		switch {
		case err == nil && code == http.StatusOK:
			var w struct {
				Code string `json:"enrolment_code"`
			}
			if json.Unmarshal(b, &w) != nil || w.Code == "" {
				t.Fatalf("register %s at %s: no enrolment code in %s", id, c.svc, clip(b))
			}
			if len(tries) > 0 {
				t.Logf("register %s at %s: done after %d retries (%v)", id, c.svc, len(tries), tries)
			}
			return w.Code
		case err == nil && code == http.StatusServiceUnavailable && (ec == "no_quorum" || ec == "not_ready"),
			err == nil && code == http.StatusInternalServerError && ec == "internal":
			tries = append(tries, fmt.Sprintf("%d %s", code, ec))
			time.Sleep(time.Second)
		case err != nil || (code == http.StatusServiceUnavailable && ec == "outcome_unknown"):
			what := fmt.Sprintf("%d %s", code, ec)
			if err != nil {
				what = err.Error()
			}
			tries = append(tries, what)
			if in, ok := f.inRoster(c, id); ok && in {
				t.Logf("register %s at %s: %s, but the roster has it: a new enrolment code instead", id, c.svc, what)
				return f.newEnrolmentCode(t, c, id)
			}
			time.Sleep(time.Second)
		default:
			t.Fatalf("register %s at %s: %d %s (a refusal the suite must not provoke, after %v)", id, c.svc, code, clip(b), tries)
		}
	}
	t.Fatalf("register %s at %s: not written within %v: %v", id, c.svc, patience, tries)
	return ""
}

// inRoster reads the roster through the leader (linearizable): ok is false
// when that read got no answer.
func (f *fed) inRoster(c *centre, id string) (in, ok bool) {
	code, b, err := f.apiWithin(c, http.MethodGet, "/v1/roster?consistency=linearizable", "", callTimeout)
	if err != nil || code != http.StatusOK {
		return false, false
	}
	var r struct {
		Volunteers map[string]json.RawMessage `json:"volunteers"`
	}
	if json.Unmarshal(b, &r) != nil {
		return false, false
	}
	_, in = r.Volunteers[id]
	return in, true
}

// newEnrolmentCode asks c for a new code for its volunteer id (no roster
// write). A timeout or a 503 is retried: each new code voids the last, and
// the suite uses the last one answered. A 404 is retried too, for a short
// while: c's own roster copy may lag behind a write it forwarded (docs/api.md,
// GET /v1/roster), and callers only ask after the volunteer was written.
func (f *fed) newEnrolmentCode(t testing.TB, c *centre, id string) string {
	t.Helper()
	deadline := time.Now().Add(patience)
	var tries []string
	for time.Now().Before(deadline) {
		code, b, err := f.apiWithin(c, http.MethodPost, "/v1/volunteers/"+id+"/enrolment", "", callTimeout)
		switch {
		case err == nil && code == http.StatusOK:
			var w struct {
				Code string `json:"enrolment_code"`
			}
			if json.Unmarshal(b, &w) != nil || w.Code == "" {
				t.Fatalf("new enrolment code for %s at %s: none in %s", id, c.svc, clip(b))
			}
			return w.Code
		case err != nil, code == http.StatusServiceUnavailable,
			code == http.StatusNotFound && len(tries) < 10:
			tries = append(tries, fmt.Sprintf("%d %s %v", code, errorCode(b), err))
			time.Sleep(time.Second)
		default:
			t.Fatalf("new enrolment code for %s at %s: %d %s (after %v)", id, c.svc, code, clip(b), tries)
		}
	}
	t.Fatalf("new enrolment code for %s at %s: none within %v: %v", id, c.svc, patience, tries)
	return ""
}

// volunteerClient is one volunteer's browser: a cookie jar and patient
// HTTP, and their logins and enrolments paced within the product's limit.
type volunteerClient struct {
	f      *fed
	c      *centre
	id     string
	hc     *http.Client
	logins *rate.Limiter
	enrols *rate.Limiter
}

const password = "a long enough password"

// enrol sets the password with code. No answer within callTimeout is
// ambiguous: it is tried again, and a bad_enrolment after that (the code
// was used up) is settled by logging in: if the password works, the lost
// attempt did it. Nothing else is retried: enrolment documents no 503.
func (v *volunteerClient) enrol(ctx context.Context, code string) error {
	ambiguous := false
	for attempt := 0; attempt < 3; attempt++ {
		if err := v.enrols.Wait(ctx); err != nil {
			return err
		}
		status, b, err := postJSONWithin(v.hc, v.c, "/v1/volunteer/enrol", map[string]string{"volunteer": v.id, "code": code, "password": password})
		switch {
		case err == nil && status == http.StatusNoContent:
			return nil
		case err != nil:
			ambiguous = true
			continue
		case ambiguous && status == http.StatusUnauthorized && errorCode(b) == "bad_enrolment":
			if lerr := v.login(ctx); lerr != nil {
				return fmt.Errorf("enrol %s at %s: code used up after an unanswered attempt, and the password does not work: %v", v.id, v.c.svc, lerr)
			}
			return nil
		case status == http.StatusTooManyRequests:
			return fmt.Errorf("enrol %s at %s: %d %s: %s", v.id, v.c.svc, status, clip(b), limitBlame)
		default:
			return fmt.Errorf("enrol %s at %s: %d %s", v.id, v.c.svc, status, clip(b))
		}
	}
	return fmt.Errorf("enrol %s at %s: no answer in 3 attempts of %v", v.id, v.c.svc, callTimeout)
}

// errLimit marks a refusal for going over a limit: never retried.
var errLimit = errors.New("refused over a limit")

// login logs in, retrying 503 busy ("try again", docs/api.md) and
// unanswered attempts (a login changes nothing but the sessions) until
// patience runs out, each attempt paced within the product's limit.
func (v *volunteerClient) login(ctx context.Context) error {
	deadline := time.Now().Add(patience)
	var tries []string
	for time.Now().Before(deadline) {
		if err := v.logins.Wait(ctx); err != nil {
			return err
		}
		status, b, err := postJSONWithin(v.hc, v.c, "/v1/volunteer/login", map[string]string{"volunteer": v.id, "password": password})
		switch {
		case err == nil && status == http.StatusNoContent:
			return nil
		case err != nil:
			if ctx.Err() != nil {
				return err
			}
			tries = append(tries, err.Error())
		case status == http.StatusServiceUnavailable && errorCode(b) == "busy":
			tries = append(tries, "503 busy")
		case status == http.StatusTooManyRequests:
			return fmt.Errorf("%w: login %s at %s: %d %s: %s", errLimit, v.id, v.c.svc, status, clip(b), limitBlame)
		default:
			return fmt.Errorf("login %s at %s: %d %s (after %v)", v.id, v.c.svc, status, clip(b), tries)
		}
	}
	return fmt.Errorf("login %s at %s: not logged in within %v: %v", v.id, v.c.svc, patience, tries)
}

func (f *fed) volunteerClient(c *centre, id string) *volunteerClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.attempts == nil {
		f.attempts = map[string][2]*rate.Limiter{}
	}
	p, ok := f.attempts[id]
	if !ok {
		p = [2]*rate.Limiter{attemptPace(), attemptPace()}
		f.attempts[id] = p
	}
	return &volunteerClient{f: f, c: c, id: id, hc: newVolunteerHTTP(), logins: p[0], enrols: p[1]}
}
