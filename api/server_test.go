package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// centre is one real node (libp2p, Raft on Pebble, memberlist) behind a real
// HTTP server on loopback.
type centre struct {
	t     *testing.T
	node  *node.Node
	url   string
	token string
}

func startCentre(t *testing.T) *centre {
	t.Helper()
	return startCentreWith(t, nil)
}

// startCentreWith is startCentre with the node's configuration adjusted
// first by change, if set.
func startCentreWith(t *testing.T, change func(*node.Config)) *centre {
	t.Helper()
	dir := t.TempDir()
	res, err := node.Init(dir, node.FileConfig{Centre: "oslo"})
	if err != nil {
		t.Fatalf("init: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := node.Config{Centre: "oslo", DataDir: dir, Timing: timing.Test}
	if change != nil {
		change(&cfg)
	}
	n, err := node.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Stop(); err != nil {
			t.Errorf("stop node: %v", err)
		}
	})
	srv, err := Start(Config{Addr: "127.0.0.1:0", Centre: n, AdminToken: res.AdminToken})
	if err != nil {
		t.Fatalf("start api: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop api: %v", err)
		}
	})
	return &centre{t: t, node: n, url: "http://" + srv.Addr(), token: res.AdminToken}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request; auth is the whole Authorization header ("" for none).
func (c *centre) do(method, path, auth string, body []byte) response {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (c *centre) admin(method, path string, body []byte) response {
	c.t.Helper()
	return c.do(method, path, "Bearer "+c.token, body)
}

// roster reads the roster through the API.
func (c *centre) roster() consensus.Roster {
	c.t.Helper()
	r := c.admin(http.MethodGet, "/v1/roster", nil)
	if r.status != http.StatusOK {
		c.t.Fatalf("GET /v1/roster = %d %s", r.status, r.body)
	}
	var out consensus.Roster
	decodeStrict(c.t, r.body, &out)
	return out
}

func decodeStrict(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// errorBody checks that r is a JSON error with the given status and code and
// returns its message.
func errorBody(t *testing.T, what string, r response, status int, code string) string {
	t.Helper()
	if r.status != status {
		t.Errorf("%s: status %d, want %d (body %s)", what, r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var e ErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Errorf("%s: error body %q is not {code, error}: %v", what, r.body, err)
		return ""
	}
	if e.Code != code {
		t.Errorf("%s: code %q, want %q (error %q)", what, e.Code, code, e.Error)
	}
	if strings.TrimSpace(e.Error) == "" {
		t.Errorf("%s: empty error message", what)
	}
	return e.Error
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newPeerID(t *testing.T) string {
	t.Helper()
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := peer.IDFromPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pid.String()
}

func validCentre(t *testing.T, id string) consensus.Centre {
	return consensus.Centre{
		ID: id, Name: "Centre " + id, PeerID: newPeerID(t),
		Addrs: []string{"/ip4/127.0.0.1/tcp/7999"}, GossipAddr: "127.0.0.1:7998", HTTPAddr: "127.0.0.1:7997",
	}
}

func validVolunteer(id string) consensus.Volunteer {
	return consensus.Volunteer{ID: id, Centre: "oslo", Alias: "Alias " + id, Channels: []string{"chat"}, Languages: []string{"nb", "en"}, Capacity: 2, Role: "volunteer"}
}

func TestAdminEndpointsRefuseMissingOrWrongToken(t *testing.T) {
	c := startCentre(t)
	// A volunteer that the DELETE below would remove if it got through.
	if r := c.admin(http.MethodPost, "/v1/volunteers", mustJSON(t, validVolunteer("v1"))); r.status != http.StatusOK {
		t.Fatalf("seed volunteer: %d %s", r.status, r.body)
	}
	before := c.roster()

	policy := consensus.DefaultPolicy()
	policy.Topics = []string{"only-this"}
	// Every admin route, each with a body that would change the roster if
	// the request were let through.
	routes := []struct {
		method, path string
		body         []byte
	}{
		{http.MethodGet, "/v1/federation", nil},
		{http.MethodGet, "/v1/roster", nil},
		{http.MethodGet, "/v1/audit", nil},
		{http.MethodPost, "/v1/centres", mustJSON(t, validCentre(t, "bergen"))},
		{http.MethodDelete, "/v1/centres/oslo", nil},
		{http.MethodDelete, "/v1/centres/x", nil},
		{http.MethodGet, "/v1/policy", nil},
		{http.MethodPut, "/v1/policy", mustJSON(t, policy)},
		{http.MethodPatch, "/v1/policy", []byte(`{"topics":["only-this"]}`)},
		{http.MethodPost, "/v1/federation/gossip-key", []byte(`{}`)},
		{http.MethodPost, "/v1/federation/gossip-key", nil},
		{http.MethodPost, "/v1/volunteers", mustJSON(t, validVolunteer("v2"))},
		{http.MethodDelete, "/v1/volunteers/v1", nil},
		{http.MethodDelete, "/v1/volunteers/x", nil},
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+c.token))
	auths := []struct{ name, header string }{
		{"no Authorization", ""},
		{"Bearer wrong", "Bearer wrong"},
		{"Bearer empty", "Bearer "},
		{"Bearer token plus a byte", "Bearer " + c.token + "x"},
		{"Bearer token prefix", "Bearer " + c.token[:len(c.token)-1]},
		{"right token in Basic", basic},
		{"bare token without scheme", c.token},
	}
	for _, rt := range routes {
		for _, a := range auths {
			what := fmt.Sprintf("%s %s with %s", rt.method, rt.path, a.name)
			r := c.do(rt.method, rt.path, a.header, rt.body)
			msg := errorBody(t, what, r, http.StatusUnauthorized, "unauthorized")
			if !strings.Contains(msg, "token") {
				t.Errorf("%s: message %q does not say a token is missing or wrong", what, msg)
			}
			if h := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer ") {
				t.Errorf("%s: WWW-Authenticate %q, want a Bearer challenge", what, h)
			}
			if bytes.Contains(r.body, []byte("oslo")) || bytes.Contains(r.body, []byte(c.node.PeerID())) {
				t.Errorf("%s: refusal leaks federation data: %s", what, r.body)
			}
		}
	}
	if after := c.roster(); !reflect.DeepEqual(before, after) {
		t.Fatalf("roster changed by refused requests:\nbefore %+v\nafter  %+v", before, after)
	}

	r := c.admin(http.MethodGet, "/v1/federation", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/federation with the token = %d %s", r.status, r.body)
	}
	var view node.FederationView
	decodeStrict(t, r.body, &view)
	if view.Observer != "oslo" || view.Leader != "oslo" {
		t.Errorf("federation view observer %q leader %q, want oslo and oslo", view.Observer, view.Leader)
	}
	if len(view.Centres) != 1 || view.Centres[0].ID != "oslo" || view.Centres[0].RaftRole != "leader" {
		t.Fatalf("federation view centres = %+v, want oslo alone as raft leader", view.Centres)
	}
	if view.Centres[0].PeerID != c.node.PeerID() {
		t.Errorf("federation view lists peer %s, node is %s", view.Centres[0].PeerID, c.node.PeerID())
	}
}

func TestHealthAndReadiness(t *testing.T) {
	c := startCentre(t)
	r := c.do(http.MethodGet, "/healthz", "", nil)
	if r.status != http.StatusOK {
		t.Fatalf("/healthz = %d %s", r.status, r.body)
	}
	var health map[string]string
	decodeStrict(t, r.body, &health)
	if health["status"] != "ok" || health["centre"] != "oslo" {
		t.Fatalf("/healthz body %v", health)
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		r = c.do(http.MethodGet, "/readyz", "", nil)
		if r.status == http.StatusOK {
			break
		}
		errorBody(t, "/readyz before ready", r, http.StatusServiceUnavailable, "not_ready")
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after 15s: %s", r.status, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var ready map[string]string
	decodeStrict(t, r.body, &ready)
	if ready["status"] != "ready" || ready["centre"] != "oslo" {
		t.Fatalf("/readyz body %v", ready)
	}
}

func TestAdminAPIRefusesBadInput(t *testing.T) {
	c := startCentre(t)
	if r := c.admin(http.MethodPost, "/v1/volunteers", mustJSON(t, validVolunteer("v1"))); r.status != http.StatusOK {
		t.Fatalf("seed volunteer: %d %s", r.status, r.body)
	}
	before := c.roster()

	vol := validVolunteer("v2")
	volJSON := string(mustJSON(t, vol))
	unknownCentre := vol
	unknownCentre.Centre = "nowhere"
	unknownLang := vol
	unknownLang.Languages = []string{"nb", "xx"}
	dupOslo := validCentre(t, "oslo")
	dupPeer := validCentre(t, "bergen")
	dupPeer.PeerID = c.node.PeerID()
	noTopics := consensus.DefaultPolicy()
	noTopics.Topics = nil
	badPeer := validCentre(t, "bergen")
	badPeer.PeerID = "not-a-peer-id"
	// Over 64 KiB, and valid JSON were it allowed through.
	huge := validCentre(t, "bergen")
	huge.Name = strings.Repeat("a", 70<<10)

	cases := []struct {
		name         string
		method, path string
		body         string
		status       int
		code         string
		say          string // the message must name the problem
	}{
		{"malformed JSON", http.MethodPost, "/v1/centres", `{"id":"bergen",`, 400, "bad_request", "malformed JSON"},
		{"not JSON at all", http.MethodPut, "/v1/policy", `topics=a`, 400, "bad_request", "malformed JSON"},
		{"empty body", http.MethodPost, "/v1/volunteers", ``, 400, "bad_request", "malformed JSON"},
		{"JSON of the wrong type", http.MethodPost, "/v1/volunteers", `["v2"]`, 400, "bad_request", "malformed JSON"},
		{"unknown JSON field", http.MethodPost, "/v1/volunteers", strings.TrimSuffix(volJSON, "}") + `,"favourite_colour":"red"}`, 400, "bad_request", "favourite_colour"},
		{"body over 64 KiB", http.MethodPost, "/v1/centres", string(mustJSON(t, huge)), 413, "too_large", "65536"},
		{"trailing second document", http.MethodPost, "/v1/volunteers", volJSON + ` {"id":"v3"}`, 400, "bad_request", "trailing data"},
		{"trailing garbage", http.MethodPost, "/v1/volunteers", volJSON + ` garbage`, 400, "bad_request", "trailing data"},
		{"trailing closing brace", http.MethodPost, "/v1/volunteers", volJSON + `}`, 400, "bad_request", "trailing data"},
		{"trailing closing bracket", http.MethodPost, "/v1/volunteers", volJSON + `]`, 400, "bad_request", "trailing data"},
		{"volunteer of an unknown centre", http.MethodPost, "/v1/volunteers", string(mustJSON(t, unknownCentre)), 404, "not_found", `"nowhere"`},
		{"volunteer with unknown language xx", http.MethodPost, "/v1/volunteers", string(mustJSON(t, unknownLang)), 400, "bad_request", `"xx"`},
		{"duplicate centre id oslo", http.MethodPost, "/v1/centres", string(mustJSON(t, dupOslo)), 409, "conflict", `"oslo"`},
		{"centre with a peer id already admitted", http.MethodPost, "/v1/centres", string(mustJSON(t, dupPeer)), 409, "conflict", "peer id already belongs"},
		{"centre with a bad peer id", http.MethodPost, "/v1/centres", string(mustJSON(t, badPeer)), 400, "bad_request", "not-a-peer-id"},
		{"policy with zero topics", http.MethodPut, "/v1/policy", string(mustJSON(t, noTopics)), 400, "bad_request", "topics"},
		{"remove an unknown centre", http.MethodDelete, "/v1/centres/nowhere", ``, 404, "not_found", `"nowhere"`},
		{"remove a centre by a malformed id", http.MethodDelete, "/v1/centres/NOT_AN_ID", ``, 400, "bad_request", "NOT_AN_ID"},
		{"remove an unknown volunteer", http.MethodDelete, "/v1/volunteers/nobody", ``, 404, "not_found", `"nobody"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.method != http.MethodDelete {
				body = []byte(tc.body)
			}
			r := c.admin(tc.method, tc.path, body)
			msg := errorBody(t, tc.name, r, tc.status, tc.code)
			if !strings.Contains(msg, tc.say) {
				t.Errorf("message %q does not name the problem (want %q in it)", msg, tc.say)
			}
		})
	}
	if after := c.roster(); !reflect.DeepEqual(before, after) {
		t.Fatalf("roster changed by refused requests:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestAdmitCentreThroughAPI(t *testing.T) {
	c := startCentre(t)
	want := validCentre(t, "bergen")
	r := c.admin(http.MethodPost, "/v1/centres", mustJSON(t, want))
	if r.status != http.StatusCreated {
		t.Fatalf("POST /v1/centres = %d %s", r.status, r.body)
	}
	var admitted AdmitResponse
	decodeStrict(t, r.body, &admitted)
	if !reflect.DeepEqual(admitted.Centre, want) {
		t.Errorf("admit answered centre %+v, want %+v", admitted.Centre, want)
	}
	if len(admitted.JoinAddrs) == 0 {
		t.Fatal("admit answered no join_addrs")
	}
	for _, a := range admitted.JoinAddrs {
		if _, err := peer.AddrInfoFromString(a); err != nil {
			t.Errorf("join addr %q is not a multiaddr with /p2p/: %v", a, err)
		} else if !strings.HasSuffix(a, "/p2p/"+c.node.PeerID()) {
			t.Errorf("join addr %q does not name this centre's peer %s", a, c.node.PeerID())
		}
	}

	roster := c.roster()
	if got, ok := roster.Centres["bergen"]; !ok || !reflect.DeepEqual(got, want) {
		t.Fatalf("roster after admit has bergen = %+v (present %v), want %+v", got, ok, want)
	}
	if len(roster.Centres) != 2 {
		t.Fatalf("roster after admit has centres %v, want oslo and bergen", roster.CentreIDs())
	}

	r = c.admin(http.MethodDelete, "/v1/centres/bergen", nil)
	if r.status != http.StatusOK {
		t.Fatalf("DELETE /v1/centres/bergen = %d %s", r.status, r.body)
	}
	var removed map[string]string
	decodeStrict(t, r.body, &removed)
	if removed["removed"] != "bergen" {
		t.Errorf("remove answered %v", removed)
	}
	roster = c.roster()
	if _, ok := roster.Centres["bergen"]; ok {
		t.Fatal("bergen still in the roster after DELETE")
	}
	if ids := roster.CentreIDs(); !reflect.DeepEqual(ids, []string{"oslo"}) {
		t.Fatalf("roster after remove has centres %v, want [oslo]", ids)
	}
}
