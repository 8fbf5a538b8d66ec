package api

// The national policy over HTTP (docs/api.md, "Policy"): GET serves it with
// its version as a strong ETag; PUT replaces it; PATCH changes some of its
// fields with a JSON merge patch (RFC 7396). A write with If-Match, and
// every PATCH, is conditional on the version it was made from, checked by
// the roster at apply (consensus.Command.ExpectedPolicyVersion), so of two
// writes made from the same read only one lands and the other is a 412.
//
// Errors name the field they are about ({"error": ..., "field":
// "languages"}) so that a form can show the message beside its input.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
)

// maxPatchDepth bounds how deeply a merge patch may nest. The policy's
// deepest value (an emergency number's name in a language) is four levels
// down; anything deeper is refused before the merge walks it.
const maxPatchDepth = 8

// policyRequired are the fields a PUT must send: the policy's fields that
// are always present in it. Leaving out one of the others (emergency
// numbers, open hours, time zone) clears it.
func policyRequired() []string {
	return []string{"overflow_after_seconds", "languages", "topics", "service_level_seconds"}
}

// policyFields points at each field of p by its JSON name, so that a body
// is decoded one field at a time and every decoding error names its field.
// TestPolicyFieldsAreThePolicys keeps it in step with consensus.Policy.
func policyFields(p *consensus.Policy) map[string]any {
	return map[string]any{
		"overflow_after_seconds": &p.OverflowAfterSeconds,
		"languages":              &p.Languages,
		"topics":                 &p.Topics,
		"service_level_seconds":  &p.ServiceLevelSeconds,
		"emergency_numbers":      &p.EmergencyNumbers,
		"open_hours":             &p.OpenHours,
		"time_zone":              &p.TimeZone,
		"supervision_order":      &p.SupervisionOrder,
		"read_along_silent":      &p.ReadAlongSilent,
		"wait_locally_when_busy": &p.WaitLocallyWhenBusy,
		"care":                   &p.Care,
		"care_by_centre":         &p.CareByCentre,
	}
}

// policyFieldNames lists the policy's fields for error messages.
func policyFieldNames() string {
	return strings.Join(slices.Sorted(maps.Keys(policyFields(&consensus.Policy{}))), ", ")
}

// requestError is a refusal of a request body, with the field it is about
// when it is about one.
type requestError struct {
	status  int
	code    string
	msg     string
	field   string
	pointer string
}

func (e *requestError) write(w http.ResponseWriter) {
	writeJSON(w, e.status, ErrorBody{Code: e.code, Error: e.msg, Field: e.field, Pointer: e.pointer})
}

func badField(field, format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, code: "bad_request", msg: fmt.Sprintf(format, args...), field: field, pointer: "/" + field}
}

// etag is a policy version as a strong entity tag.
func etag(version string) string { return `"` + version + `"` }

// ifMatch is a request's If-Match: absent, "*" (any version), or one
// version.
type ifMatch struct {
	present bool
	any     bool
	version string
}

// matches reports whether the policy at version may be written.
func (m ifMatch) matches(version string) bool {
	return !m.present || m.any || m.version == version
}

// readIfMatch parses If-Match. It takes "*" or exactly one strong entity
// tag, as GET /v1/policy gives: the roster checks one version at apply, and
// a weak tag never matches under If-Match's strong comparison, so either
// would only ever fail later and less clearly.
func readIfMatch(r *http.Request) (ifMatch, *requestError) {
	vals := r.Header.Values("If-Match")
	if len(vals) == 0 {
		return ifMatch{}, nil
	}
	v := strings.TrimSpace(strings.Join(vals, ","))
	bad := func(why string) (ifMatch, *requestError) {
		return ifMatch{}, &requestError{status: http.StatusBadRequest, code: "bad_request",
			msg: fmt.Sprintf("If-Match %q: %s; send the ETag of GET /v1/policy as it came (or * for any version)", clipText(v), why)}
	}
	switch {
	case v == "*":
		return ifMatch{present: true, any: true}, nil
	case strings.Contains(v, ","):
		return bad("give one entity tag, not a list")
	case strings.HasPrefix(v, "W/"):
		return bad("a weak entity tag never matches (If-Match compares strongly)")
	case len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || strings.Contains(v[1:len(v)-1], `"`):
		return bad("not an entity tag (a quoted string)")
	}
	return ifMatch{present: true, version: v[1 : len(v)-1]}, nil
}

// preconditionFailed answers a write whose If-Match (or PATCH's base) is
// not the policy's version any more: nothing was written.
func preconditionFailed(w http.ResponseWriter, detail string) {
	writeError(w, http.StatusPreconditionFailed, "policy_changed",
		"the policy changed since you read it ("+detail+"); nothing was written: GET /v1/policy again, redo your change on what it says now, and send it with its ETag")
}

// readPolicyWrite reads what PUT and PATCH share: the If-Match header and
// the bounded body.
func readPolicyWrite(w http.ResponseWriter, r *http.Request) (ifMatch, []byte, *requestError) {
	match, rerr := readIfMatch(r)
	if rerr != nil {
		return ifMatch{}, nil, rerr
	}
	b, rerr := readPolicyBody(w, r)
	return match, b, rerr
}

// readPolicyBody reads a policy request's bounded body.
func readPolicyBody(w http.ResponseWriter, r *http.Request) ([]byte, *requestError) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &requestError{status: http.StatusRequestEntityTooLarge, code: "too_large", msg: fmt.Sprintf("request body over %d bytes", maxBody)}
		}
		return nil, &requestError{status: http.StatusBadRequest, code: "bad_request", msg: "request body not read: " + err.Error()}
	}
	return b, nil
}

// decodeObject reads b as one JSON object of the policy's fields (numbers
// kept as written), refusing trailing data and naming the first field (in
// sorted order) that the policy does not have.
func decodeObject(b []byte) (map[string]json.RawMessage, *requestError) {
	dec := json.NewDecoder(bytes.NewReader(b))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		return nil, &requestError{status: http.StatusBadRequest, code: "bad_request", msg: "malformed JSON body: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &requestError{status: http.StatusBadRequest, code: "bad_request", msg: "malformed JSON body: trailing data"}
	}
	if obj == nil {
		return nil, &requestError{status: http.StatusBadRequest, code: "bad_request", msg: "the body must be a JSON object of the policy's fields, not null"}
	}
	known := policyFields(&consensus.Policy{})
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if _, ok := known[k]; !ok {
			return nil, badField(clipText(k), "unknown field %q: the policy's fields are %s", clipText(k), policyFieldNames())
		}
	}
	return obj, nil
}

// decodePolicy decodes a policy object one field at a time, strictly, so
// that a value of the wrong shape is refused naming its field.
func decodePolicy(obj map[string]json.RawMessage) (consensus.Policy, *requestError) {
	var p consensus.Policy
	fields := policyFields(&p)
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		dec := json.NewDecoder(bytes.NewReader(obj[k]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(fields[k]); err != nil {
			return consensus.Policy{}, badField(k, "%s: %s", k, strings.TrimPrefix(err.Error(), "json: "))
		}
	}
	return p, nil
}

// decodePatch reads a JSON merge patch of the policy: an object of the
// policy's fields, nested at most maxPatchDepth deep.
func decodePatch(b []byte) (map[string]any, *requestError) {
	obj, rerr := decodeObject(b)
	if rerr != nil {
		return nil, rerr
	}
	patch := make(map[string]any, len(obj))
	for k, raw := range obj {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, badField(k, "%s: %s", k, strings.TrimPrefix(err.Error(), "json: "))
		}
		if depth(v) > maxPatchDepth-1 {
			return nil, badField(k, "%s is nested more than %d levels deep", k, maxPatchDepth)
		}
		patch[k] = v
	}
	return patch, nil
}

// depth is how deeply v nests objects and arrays (a scalar is 0).
func depth(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			d = max(d, depth(e))
		}
		return d + 1
	case []any:
		for _, e := range v {
			d = max(d, depth(e))
		}
		return d + 1
	}
	return 0
}

// mergePatch applies patch to target as RFC 7396 says: an object merges
// member by member (null removes one), anything else replaces.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
		} else {
			t[k] = mergePatch(t[k], v)
		}
	}
	return t
}

// mergePolicy applies a merge patch to base and decodes the result.
func mergePolicy(base consensus.Policy, patch map[string]any) (consensus.Policy, *requestError) {
	b, err := json.Marshal(base)
	if err != nil {
		return consensus.Policy{}, &requestError{status: http.StatusInternalServerError, code: "internal", msg: "encode the policy: " + err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var target any
	if err := dec.Decode(&target); err != nil {
		return consensus.Policy{}, &requestError{status: http.StatusInternalServerError, code: "internal", msg: "decode the policy: " + err.Error()}
	}
	merged := mergePatch(target, patch).(map[string]any)
	obj := make(map[string]json.RawMessage, len(merged))
	for k, v := range merged {
		raw, err := json.Marshal(v)
		if err != nil {
			return consensus.Policy{}, badField(k, "%s: %v", k, err)
		}
		obj[k] = raw
	}
	return decodePolicy(obj)
}

// getPolicy answers GET /v1/policy: the policy with its version as ETag,
// from this centre's copy or, with ?consistency=linearizable, through the
// leader (as GET /v1/roster). If-None-Match with the current ETag is a 304.
func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) {
	roster, ok := s.readRosterAs(w, r)
	if !ok {
		return
	}
	v := roster.Policy.Version()
	w.Header().Set("ETag", etag(v))
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, tag := range strings.Split(inm, ",") {
			tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
			if tag == "*" || tag == etag(v) {
				w.Header().Set("Cache-Control", "no-store")
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, roster.Policy)
}

// readRosterAs reads the roster as the request's consistency parameter
// says: "local" (the default) or "linearizable".
func (s *Server) readRosterAs(w http.ResponseWriter, r *http.Request) (consensus.Roster, bool) {
	switch c := r.URL.Query().Get("consistency"); c {
	case "", "local":
		return s.cfg.Centre.Roster(), true
	case "linearizable":
		return s.readRosterLinearizable(w, r)
	default:
		writeError(w, http.StatusBadRequest, "bad_request",
			fmt.Sprintf("unknown consistency %q: want \"local\" (the default) or \"linearizable\"", clipText(c)))
		return consensus.Roster{}, false
	}
}

// readRosterLinearizable reads the roster through the leader, or answers
// 503 no_quorum when no leader answers within 10 s.
func (s *Server) readRosterLinearizable(w http.ResponseWriter, r *http.Request) (consensus.Roster, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	roster, err := s.cfg.Centre.ReadRoster(ctx)
	if err == nil {
		return roster, true
	}
	// As for a write (propose): no leader within the deadline is a 503.
	if errors.Is(err, consensus.ErrNotLeader) || errors.Is(err, consensus.ErrOutcomeUnknown) || errors.Is(err, context.DeadlineExceeded) {
		writeError(w, http.StatusServiceUnavailable, "no_quorum", err.Error())
		return consensus.Roster{}, false
	}
	s.log.Error("linearizable roster read failed", "err", err)
	writeError(w, http.StatusInternalServerError, "internal", err.Error())
	return consensus.Roster{}, false
}

// putPolicy answers PUT /v1/policy: the body replaces the whole policy.
// Without If-Match the last writer wins; with it the write lands only on
// that version.
func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) {
	match, b, rerr := readPolicyWrite(w, r)
	if rerr != nil {
		rerr.write(w)
		return
	}
	obj, rerr := decodeObject(b)
	if rerr != nil {
		rerr.write(w)
		return
	}
	var missing []string
	for _, f := range policyRequired() {
		if _, ok := obj[f]; !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		e := badField(missing[0], "PUT /v1/policy replaces the whole policy, and the body has no %s: send every field (GET /v1/policy gives them to edit), or PATCH /v1/policy to change only the fields you send",
			strings.Join(missing, ", "))
		e.write(w)
		return
	}
	p, rerr := decodePolicy(obj)
	if rerr != nil {
		rerr.write(w)
		return
	}
	cmd := consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetPolicy, Policy: &p}
	if match.present && !match.any {
		if !isVersion(match.version) {
			preconditionFailed(w, fmt.Sprintf("%q is not a version it has ever had", clipText(match.version)))
			return
		}
		cmd.ExpectedPolicyVersion = match.version
	}
	if s.propose(w, r, cmd) {
		w.Header().Set("ETag", etag(p.Version()))
		writeJSON(w, http.StatusOK, p)
	}
}

// isVersion reports whether v has the shape of a policy version.
func isVersion(v string) bool {
	if len(v) != 64 {
		return false
	}
	for _, c := range v {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// patchPolicy answers PATCH /v1/policy: a JSON merge patch (RFC 7396) of
// the policy's fields. It reads the policy through the leader, merges,
// validates, and proposes the result conditional on the version it read,
// so a change made meanwhile makes it a 412 rather than lost.
func (s *Server) patchPolicy(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/merge-patch+json" && mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
			"send the patch as Content-Type: application/merge-patch+json (or application/json)")
		return
	}
	match, b, rerr := readPolicyWrite(w, r)
	if rerr != nil {
		rerr.write(w)
		return
	}
	patch, rerr := decodePatch(b)
	if rerr != nil {
		rerr.write(w)
		return
	}
	roster, ok := s.readRosterLinearizable(w, r)
	if !ok {
		return
	}
	base := roster.Policy.Version()
	if !match.matches(base) {
		preconditionFailed(w, "it is now at "+etag(base)+", not "+etag(match.version))
		return
	}
	p, rerr := mergePolicy(roster.Policy, patch)
	if rerr != nil {
		rerr.write(w)
		return
	}
	if p.Version() == base {
		// Nothing to change: no write, and no level-4 command for a
		// federation that may not speak it yet.
		w.Header().Set("ETag", etag(base))
		writeJSON(w, http.StatusOK, p)
		return
	}
	cmd := consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetPolicy, Policy: &p, ExpectedPolicyVersion: base}
	if s.propose(w, r, cmd) {
		w.Header().Set("ETag", etag(p.Version()))
		writeJSON(w, http.StatusOK, p)
	}
}
