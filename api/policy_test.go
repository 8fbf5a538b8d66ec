package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/node"
)

// policyCall sends one admin request to a policy endpoint with the given
// headers (Content-Type defaults to JSON when there is a body).
func policyCall(t *testing.T, base, token, method string, body []byte, header map[string]string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+"/v1/policy", rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s /v1/policy: %v", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// getPolicy reads the policy and its ETag, checking that the ETag is the
// strong, quoted version of the policy served.
func getPolicy(t *testing.T, base, token string) (consensus.Policy, string) {
	t.Helper()
	r := policyCall(t, base, token, http.MethodGet, nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/policy: %d %s", r.status, r.body)
	}
	var p consensus.Policy
	decodeStrict(t, r.body, &p)
	tag := r.header.Get("ETag")
	if tag != `"`+p.Version()+`"` {
		t.Fatalf("ETag %q, want the policy's version %q, strong and quoted", tag, p.Version())
	}
	return p, tag
}

// fieldError checks a JSON error reply that names a field.
func fieldError(t *testing.T, what string, r response, status int, code, field, says string) ErrorBody {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d (body %s)", what, r.status, status, r.body)
	}
	var e ErrorBody
	decodeStrict(t, r.body, &e)
	if e.Code != code || e.Field != field || !strings.Contains(e.Error, says) {
		t.Fatalf("%s: %+v, want code %q field %q saying %q", what, e, code, field, says)
	}
	return e
}

// policyFields names every JSON field of consensus.Policy, and the fields
// a PUT requires are among them.
func TestPolicyFieldsAreThePolicys(t *testing.T) {
	full := consensus.DefaultPolicy()
	full.OpenHours = []consensus.OpenPeriod{{Weekday: 1, From: "18:00", To: "06:00"}}
	// The fields left out when unset must be set to be seen.
	full.SupervisionOrder = []string{"c2"}
	full.ReadAlongSilent = true
	full.WaitLocallyWhenBusy = true
	full.Care = &consensus.Care{CoolDownSeconds: 300}
	full.CareByCentre = map[string]consensus.CareOverride{"c2": {}}
	b, _ := json.Marshal(full)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(maps.Keys(m))
	got := slices.Sorted(maps.Keys(policyFields(&consensus.Policy{})))
	if !slices.Equal(got, want) {
		t.Fatalf("policyFields has %v, consensus.Policy encodes %v", got, want)
	}
	for _, f := range policyRequired() {
		if !slices.Contains(want, f) {
			t.Errorf("required field %q is not a policy field", f)
		}
	}
	// And decoding field by field gives the policy back.
	obj, rerr := decodeObject(b)
	if rerr != nil {
		t.Fatal(rerr.msg)
	}
	p, rerr := decodePolicy(obj)
	if rerr != nil || !reflect.DeepEqual(p, full) {
		t.Fatalf("decoded %+v (%v), want %+v", p, rerr, full)
	}
}

// On one real centre: GET gives the policy and its ETag; PATCH changes the
// fields it sends and leaves the rest; a stale If-Match is a 412 that
// changes nothing; bad patches are refused naming their field; a PUT with
// a partial body says what is missing; PUT honours If-Match.
func TestPolicyOverHTTP(t *testing.T) {
	c := startCentre(t)
	patch := func(body string, header map[string]string) response {
		t.Helper()
		return policyCall(t, c.url, c.token, http.MethodPatch, []byte(body), header)
	}
	put := func(p any, header map[string]string) response {
		t.Helper()
		return policyCall(t, c.url, c.token, http.MethodPut, mustJSON(t, p), header)
	}

	start, tag0 := getPolicy(t, c.url, c.token)
	if !reflect.DeepEqual(start, consensus.DefaultPolicy()) {
		t.Fatalf("a new federation's policy %+v", start)
	}
	if r := policyCall(t, c.url, c.token, http.MethodGet, nil, map[string]string{"If-None-Match": tag0}); r.status != http.StatusNotModified {
		t.Fatalf("GET with If-None-Match of the current ETag: %d, want 304", r.status)
	}

	// One field changes, the rest stays.
	r := patch(`{"service_level_seconds": 30}`, map[string]string{"Content-Type": "application/merge-patch+json"})
	if r.status != http.StatusOK {
		t.Fatalf("PATCH service_level_seconds: %d %s", r.status, r.body)
	}
	want := consensus.DefaultPolicy()
	want.ServiceLevelSeconds = 30
	got, tag1 := getPolicy(t, c.url, c.token)
	if !reflect.DeepEqual(got, want) || tag1 == tag0 || r.header.Get("ETag") != tag1 {
		t.Fatalf("after PATCH: %+v (ETag %s, PATCH answered %s), want %+v with a new ETag", got, tag1, r.header.Get("ETag"), want)
	}
	if !reflect.DeepEqual(c.roster().Policy, want) {
		t.Fatal("the roster does not hold the patched policy")
	}

	// Objects merge member by member, and null removes one.
	if r := patch(`{"overflow_after_seconds": {"chat": 20}}`, nil); r.status != http.StatusOK {
		t.Fatalf("PATCH overflow chat: %d %s", r.status, r.body)
	}
	if got, _ := getPolicy(t, c.url, c.token); !reflect.DeepEqual(got.OverflowAfterSeconds, map[string]int{"chat": 20, "phone": 45}) {
		t.Fatalf("overflow after merging chat: %v", got.OverflowAfterSeconds)
	}
	if r := patch(`{"overflow_after_seconds": {"phone": null}, "time_zone": null}`, nil); r.status != http.StatusOK {
		t.Fatalf("PATCH removing phone: %d %s", r.status, r.body)
	}
	got, tag2 := getPolicy(t, c.url, c.token)
	if !reflect.DeepEqual(got.OverflowAfterSeconds, map[string]int{"chat": 20}) || got.TimeZone != "" {
		t.Fatalf("after nulls: overflow %v, time zone %q", got.OverflowAfterSeconds, got.TimeZone)
	}

	// A stale If-Match is a 412 and changes nothing, for PATCH and PUT.
	before := c.roster()
	fieldError(t, "PATCH on a stale ETag", patch(`{"topics": ["only-this"]}`, map[string]string{"If-Match": tag1}), 412, "policy_changed", "", "changed since you read it")
	fieldError(t, "PUT on a stale ETag", put(consensus.DefaultPolicy(), map[string]string{"If-Match": tag0}), 412, "policy_changed", "", "changed since you read it")
	fieldError(t, "PUT on a made-up ETag", put(consensus.DefaultPolicy(), map[string]string{"If-Match": `"nope"`}), 412, "policy_changed", "", "nothing was written")
	if !reflect.DeepEqual(before, c.roster()) {
		t.Fatal("a 412 changed the roster")
	}

	// Names per language round-trip, with the current ETag.
	named := `{"emergency_numbers": [{"name": "Medical emergency", "number": "113", "names": {"nb": "Medisinsk nødhjelp", "de": "Notruf"}}]}`
	r = patch(named, map[string]string{"If-Match": tag2})
	if r.status != http.StatusOK {
		t.Fatalf("PATCH names on the current ETag: %d %s", r.status, r.body)
	}
	got, tag3 := getPolicy(t, c.url, c.token)
	wantNumbers := []consensus.EmergencyNumber{{Name: "Medical emergency", Number: "113", Names: map[string]string{"nb": "Medisinsk nødhjelp", "de": "Notruf"}}}
	if !reflect.DeepEqual(got.EmergencyNumbers, wantNumbers) || !reflect.DeepEqual(c.roster().Policy.EmergencyNumbers, wantNumbers) {
		t.Fatalf("emergency numbers %+v, want %+v", got.EmergencyNumbers, wantNumbers)
	}
	if n := got.EmergencyNumbers[0]; n.NameIn("de") != "Notruf" || n.NameIn("fr") != "Medical emergency" {
		t.Fatalf("NameIn: de %q, fr %q", n.NameIn("de"), n.NameIn("fr"))
	}

	// A patch that changes nothing keeps the ETag (and writes nothing:
	// TestPolicyWritesNotEverywhere).
	if r := patch(`{"service_level_seconds": 30}`, nil); r.status != http.StatusOK || r.header.Get("ETag") != tag3 {
		t.Fatalf("a no-op PATCH: %d ETag %s, want 200 %s", r.status, r.header.Get("ETag"), tag3)
	}

	// Refusals name their field, and change nothing.
	before = c.roster()
	e := fieldError(t, "no languages", patch(`{"languages": []}`, nil), 400, "bad_request", "languages", "1-64 languages needed, got 0")
	if e.Pointer != "/languages" {
		t.Errorf("pointer %q", e.Pointer)
	}
	fieldError(t, "languages null", patch(`{"languages": null}`, nil), 400, "bad_request", "languages", "1-64 languages needed, got 0")
	fieldError(t, "unknown field", patch(`{"service_level_seconds": 20, "favourite_colour": "red"}`, nil), 400, "bad_request", "favourite_colour", `unknown field "favourite_colour": the policy's fields are care, care_by_centre, emergency_numbers, languages`)
	fieldError(t, "wrong type", patch(`{"languages": "nb"}`, nil), 400, "bad_request", "languages", "cannot unmarshal string")
	fieldError(t, "fraction", patch(`{"overflow_after_seconds": {"chat": 1.5}}`, nil), 400, "bad_request", "overflow_after_seconds", "overflow_after_seconds")
	fieldError(t, "unknown field in a number", patch(`{"emergency_numbers": [{"name": "x", "number": "112", "nme": "y"}]}`, nil), 400, "bad_request", "emergency_numbers", `unknown field "nme"`)
	e = fieldError(t, "bad number", patch(`{"emergency_numbers": [{"name": "x", "number": "112"}, {"name": "y", "number": "call us"}]}`, nil), 400, "bad_request", "emergency_numbers", `emergency number "call us"`)
	if e.Pointer != "/emergency_numbers/1/number" {
		t.Errorf("pointer %q, want /emergency_numbers/1/number", e.Pointer)
	}
	e = fieldError(t, "bad name language", patch(`{"emergency_numbers": [{"name": "x", "number": "112", "names": {"de": "Polizei", "de-AT": "Polizei"}}]}`, nil), 400, "bad_request", "emergency_numbers", `unknown language code "de-AT"`)
	fieldError(t, "channel", patch(`{"overflow_after_seconds": {"fax": 3}}`, nil), 400, "bad_request", "overflow_after_seconds", `unknown channel "fax"`)
	fieldError(t, "deep", patch(`{"overflow_after_seconds": {"chat": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}`, nil), 400, "bad_request", "overflow_after_seconds", "nested more than 8 levels")
	fieldError(t, "not an object", patch(`["languages"]`, nil), 400, "bad_request", "", "malformed JSON body")
	fieldError(t, "null patch", patch(`null`, nil), 400, "bad_request", "", "must be a JSON object")
	fieldError(t, "trailing data", patch(`{"topics": ["a"]} {}`, nil), 400, "bad_request", "", "trailing data")
	fieldError(t, "form post", patch(`{"topics": ["a"]}`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type", "", "merge-patch+json")
	fieldError(t, "weak If-Match", patch(`{"topics": ["a"]}`, map[string]string{"If-Match": "W/" + tag3}), 400, "bad_request", "", "weak entity tag")
	fieldError(t, "If-Match list", patch(`{"topics": ["a"]}`, map[string]string{"If-Match": tag3 + ", " + tag2}), 400, "bad_request", "", "not a list")
	fieldError(t, "If-Match unquoted", patch(`{"topics": ["a"]}`, map[string]string{"If-Match": strings.Trim(tag3, `"`)}), 400, "bad_request", "", "quoted string")
	fieldError(t, "huge", patch(`{"topics": ["`+strings.Repeat("a", maxBody)+`"]}`, nil), 413, "too_large", "", "65536")

	// PUT replaces the whole policy: a partial body says what is missing.
	e = fieldError(t, "partial PUT", put(map[string]any{"topics": []string{"only-this"}}, nil), 400, "bad_request", "overflow_after_seconds",
		"replaces the whole policy, and the body has no overflow_after_seconds, languages, service_level_seconds")
	if !strings.Contains(e.Error, "PATCH /v1/policy") {
		t.Errorf("the partial PUT's error %q does not point at PATCH", e.Error)
	}
	fieldError(t, "PUT with an unknown field", policyCall(t, c.url, c.token, http.MethodPut, []byte(`{"languages": ["nb"], "colour": 1}`), nil), 400, "bad_request", "colour", "unknown field")
	noTopics := consensus.DefaultPolicy()
	noTopics.Topics = []string{}
	fieldError(t, "PUT without topics", put(noTopics, nil), 400, "bad_request", "topics", "the policy needs 1-64 topics")
	if !reflect.DeepEqual(before, c.roster()) {
		t.Fatal("a refused request changed the roster")
	}

	// PUT on the current ETag, with *, and without If-Match.
	p := consensus.DefaultPolicy()
	p.Topics = []string{"one"}
	r = put(p, map[string]string{"If-Match": tag3})
	if r.status != http.StatusOK || r.header.Get("ETag") != `"`+p.Version()+`"` {
		t.Fatalf("PUT on the current ETag: %d %s (ETag %s)", r.status, r.body, r.header.Get("ETag"))
	}
	p.Topics = []string{"two"}
	if r := put(p, map[string]string{"If-Match": "*"}); r.status != http.StatusOK {
		t.Fatalf("PUT with If-Match *: %d %s", r.status, r.body)
	}
	p.Topics = []string{"three"}
	if r := put(p, nil); r.status != http.StatusOK {
		t.Fatalf("PUT without If-Match: %d %s", r.status, r.body)
	}
	if got, _ := getPolicy(t, c.url, c.token); !reflect.DeepEqual(got, p) {
		t.Fatalf("after PUTs: %+v, want %+v", got, p)
	}
}

// waitRoster waits until cond holds for n's local roster, waking on each
// roster change.
func waitRoster(t *testing.T, n *node.Node, what string, cond func(consensus.Roster) bool) {
	t.Helper()
	changed, stop := n.Consensus().Subscribe()
	defer stop()
	deadline := time.After(20 * time.Second)
	for !cond(n.Roster()) {
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: %s not within 20 s", n.Centre(), what)
		}
	}
}

// Three real centres (Raft, libp2p, Pebble). Two PATCHes sent at once to
// two centres on the same ETag: exactly one wins and the other is a 412,
// in every round, and every centre converges on the winner. Two PATCHes
// without If-Match of different fields never lose a change that was
// answered 200. Names round-trip to every centre's roster.
func TestConcurrentPolicyPatches(t *testing.T) {
	fed := startPageFederation(t, 3)
	for _, pc := range fed {
		waitRoster(t, pc.node, "all three centres in the roster", func(r consensus.Roster) bool { return len(r.Centres) == 3 })
	}
	a, b := fed[1], fed[2]
	send := func(pc *pageCentre, body string, header map[string]string) response {
		return policyCall(t, pc.url, pc.token, http.MethodPatch, []byte(body), header)
	}
	for round := range 5 {
		_, tag := getPolicy(t, a.url, a.token)
		bodies := []string{
			fmt.Sprintf(`{"service_level_seconds": %d}`, 100+round),
			fmt.Sprintf(`{"service_level_seconds": %d, "emergency_numbers": [{"name": "Police", "number": "112", "names": {"nb": "Politi %d", "de": "Polizei"}}]}`, 200+round, round),
		}
		var wg sync.WaitGroup
		res := make([]response, 2)
		start := make(chan struct{})
		for i, pc := range []*pageCentre{a, b} {
			wg.Go(func() {
				<-start
				res[i] = send(pc, bodies[i], map[string]string{"If-Match": tag})
			})
		}
		close(start)
		wg.Wait()
		won := -1
		for i, r := range res {
			switch r.status {
			case http.StatusOK:
				if won >= 0 {
					t.Fatalf("round %d: both PATCHes on %s won", round, tag)
				}
				won = i
			case http.StatusPreconditionFailed:
				fieldError(t, "the losing PATCH", r, 412, "policy_changed", "", "changed since you read it")
			default:
				t.Fatalf("round %d: PATCH %d answered %d %s", round, i, r.status, r.body)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: neither PATCH won: %s / %s", round, res[0].body, res[1].body)
		}
		var winner consensus.Policy
		decodeStrict(t, res[won].body, &winner)
		for _, pc := range fed {
			waitRoster(t, pc.node, fmt.Sprintf("round %d's winner", round), func(r consensus.Roster) bool {
				return r.Policy.Version() == winner.Version()
			})
		}
		t.Logf("round %d: PATCH via %s won", round, []string{"c2", "c3"}[won])
	}

	// Names reached every centre's roster.
	named := `{"emergency_numbers": [{"name": "Police", "number": "112", "names": {"nb": "Politi", "se": "Poliisa"}}]}`
	if r := send(a, named, nil); r.status != http.StatusOK {
		t.Fatalf("PATCH names: %d %s", r.status, r.body)
	}
	for _, pc := range fed {
		waitRoster(t, pc.node, "the names", func(r consensus.Roster) bool {
			e := r.Policy.EmergencyNumbers
			return len(e) == 1 && reflect.DeepEqual(e[0].Names, map[string]string{"nb": "Politi", "se": "Poliisa"})
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lin, err := pc.node.ReadRoster(ctx)
		cancel()
		if err != nil || lin.Policy.EmergencyNumbers[0].Names["se"] != "Poliisa" {
			t.Fatalf("%s's linearizable read: %v %+v", pc.node.Centre(), err, lin.Policy.EmergencyNumbers)
		}
	}

	// Without If-Match, each PATCH is still conditional on what it read:
	// a change answered 200 is never lost.
	for round := range 3 {
		var wg sync.WaitGroup
		res := make([]response, 2)
		topics := fmt.Sprintf(`{"topics": ["round-%d"]}`, round)
		level := fmt.Sprintf(`{"service_level_seconds": %d}`, 300+round)
		wg.Go(func() { res[0] = send(a, topics, nil) })
		wg.Go(func() { res[1] = send(b, level, nil) })
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lin, err := fed[0].node.ReadRoster(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		got := lin.Policy
		for i, r := range res {
			switch r.status {
			case http.StatusOK:
			case http.StatusPreconditionFailed:
				t.Logf("round %d: PATCH %d lost the race (412)", round, i)
				continue
			default:
				t.Fatalf("round %d: PATCH %d answered %d %s", round, i, r.status, r.body)
			}
			if i == 0 && !slices.Equal(got.Topics, []string{fmt.Sprintf("round-%d", round)}) {
				t.Fatalf("round %d: the topics PATCH was answered 200 but the policy has %v", round, got.Topics)
			}
			if i == 1 && got.ServiceLevelSeconds != 300+round {
				t.Fatalf("round %d: the service level PATCH was answered 200 but the policy has %d", round, got.ServiceLevelSeconds)
			}
		}
	}
}

// A PATCH (always conditional) and a PUT with names are refused with the
// level error while a centre of the group speaks an older roster level; a
// plain PUT is not, and a PATCH that changes nothing proposes nothing.
func TestPolicyWritesNotEverywhere(t *testing.T) {
	c := startCentre(t)
	old := startCentreFor(t, oldPeerCentre{c.node}, c.token)
	if r := policyCall(t, old.url, old.token, http.MethodPatch, []byte(`{"service_level_seconds": 60}`), nil); r.status != http.StatusOK {
		t.Fatalf("a PATCH that changes nothing, with an old centre: %d %s", r.status, r.body)
	}
	r := policyCall(t, old.url, old.token, http.MethodPatch, []byte(`{"service_level_seconds": 30}`), nil)
	if msg := errorBody(t, "PATCH with an old centre", r, http.StatusConflict, "not_everywhere"); !strings.Contains(msg, "upgrade bergen") {
		t.Errorf("message %q does not say what to do", msg)
	}
	p := consensus.DefaultPolicy()
	p.EmergencyNumbers[0].Names = map[string]string{"nb": "Legevakt"}
	errorBody(t, "PUT with names and an old centre", policyCall(t, old.url, old.token, http.MethodPut, mustJSON(t, p), nil), http.StatusConflict, "not_everywhere")
	p.EmergencyNumbers[0].Names = nil
	p.ServiceLevelSeconds = 40
	if r := policyCall(t, old.url, old.token, http.MethodPut, mustJSON(t, p), nil); r.status != http.StatusOK {
		t.Fatalf("a plain PUT with an old centre: %d %s", r.status, r.body)
	}
	if got := c.roster().Policy; !reflect.DeepEqual(got, p) {
		t.Fatalf("policy %+v, want %+v", got, p)
	}
}

// Whatever the patch decoder takes: it never panics, a patch it accepts
// merges onto the default policy without panicking, and a merged policy
// that validates re-encodes to a body the PUT decoder reads back the same.
func FuzzPolicyPatch(f *testing.F) {
	for _, seed := range []string{
		`{"service_level_seconds": 30}`,
		`{"overflow_after_seconds": {"chat": 20, "phone": null}}`,
		`{"languages": ["nb", "en"], "topics": ["a", "b"]}`,
		`{"emergency_numbers": [{"name": "Police", "number": "112", "names": {"nb": "Politi", "de": "Polizei"}}]}`,
		`{"open_hours": [{"weekday": 1, "from": "18:00", "to": "06:00"}], "time_zone": "Europe/Oslo"}`,
		`{"time_zone": null}`,
		`{"favourite_colour": "red"}`,
		`{"overflow_after_seconds": {"chat": 1e2}}`,
		`{"overflow_after_seconds": {"chat": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}`,
		`null`, `[]`, `{}`, `{"topics": ["a"]} {}`, `{"languages": "nb"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		patch, rerr := decodePatch(b)
		if rerr != nil {
			if rerr.status != http.StatusBadRequest || rerr.msg == "" {
				t.Fatalf("refusal %+v", rerr)
			}
			return
		}
		if depth(any(patch)) > maxPatchDepth {
			t.Fatalf("a patch %d deep got through", depth(any(patch)))
		}
		base := consensus.DefaultPolicy()
		p, rerr := mergePolicy(base, patch)
		if rerr != nil {
			if rerr.field == "" || !strings.HasPrefix(rerr.pointer, "/"+rerr.field) {
				t.Fatalf("a merge refusal names no field: %+v", rerr)
			}
			return
		}
		if !reflect.DeepEqual(base, consensus.DefaultPolicy()) {
			t.Fatal("the merge changed its base")
		}
		cmd := consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetPolicy, Policy: &p}
		if cmd.Validate() != nil {
			return
		}
		obj, rerr := decodeObject(mustJSON(t, p))
		if rerr != nil {
			t.Fatalf("a valid merged policy does not decode: %s", rerr.msg)
		}
		back, rerr := decodePolicy(obj)
		if rerr != nil || back.Version() != p.Version() {
			t.Fatalf("a valid merged policy reads back as %+v (%v), want %+v", back, rerr, p)
		}
	})
}

// A bad care value in a PATCH is refused with the field and the pointer
// to the value (consensus/care.go), and nothing is written.
func TestPolicyCareErrorsNameTheField(t *testing.T) {
	c := startCentre(t)
	r := policyCall(t, c.url, c.token, http.MethodPatch, []byte(`{"care": {"heavy_topics": ["suicidal-thoughts"], "max_in_a_row": 6}}`), nil)
	if e := fieldError(t, "break missing", r, 400, "bad_request", "care", "break_seconds must be set"); e.Pointer != "/care/break_seconds" {
		t.Errorf("pointer %q, want /care/break_seconds", e.Pointer)
	}
	r = policyCall(t, c.url, c.token, http.MethodPatch, []byte(`{"care": {"heavy_topics": ["weather"]}}`), nil)
	fieldError(t, "unknown topic", r, 400, "bad_request", "care", `"weather" is not one of the policy's topics`)
	r = policyCall(t, c.url, c.token, http.MethodPatch, []byte(`{"care": {"cool_down_seconds": 300, "heavy_topics": ["abuse-violence"]}, "care_by_centre": {"c1": {"cool_down_seconds": 0}}}`), nil)
	if r.status != http.StatusOK {
		t.Fatalf("a good care: %d %s", r.status, r.body)
	}
}
