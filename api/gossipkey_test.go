package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/node"
)

func rotateOK(t *testing.T, c *centre, body []byte) uint64 {
	t.Helper()
	r := c.admin(http.MethodPost, "/v1/federation/gossip-key", body)
	if r.status != http.StatusOK {
		t.Fatalf("rotate with body %q: %d %s", body, r.status, r.body)
	}
	var out GossipKeyResponse
	decodeStrict(t, r.body, &out)
	return out.Generation
}

// POST /v1/federation/gossip-key rotates with an empty body or {}, answers
// the generation, and the key shows in neither the answer, the roster nor
// the federation view.
func TestRotateGossipKeyEndpoint(t *testing.T) {
	c := startCentre(t)
	if g := rotateOK(t, c, nil); g != 1 {
		t.Fatalf("first rotation: generation %d, want 1", g)
	}
	if g := rotateOK(t, c, []byte(" {} \n")); g != 2 {
		t.Fatalf("second rotation: generation %d, want 2", g)
	}
	if got := c.roster().GossipKeyGeneration; got != 2 {
		t.Fatalf("roster generation %d, want 2", got)
	}
	k, ok := c.node.Consensus().GossipKey()
	if !ok || k.Generation != 2 {
		t.Fatalf("the node's key: generation %d, %v", k.Generation, ok)
	}
	leaks := []string{string(k.Key), base64.StdEncoding.EncodeToString(k.Key), base64.RawURLEncoding.EncodeToString(k.Key), hex.EncodeToString(k.Key)}
	for _, path := range []string{"/v1/roster", "/v1/federation"} {
		r := c.admin(http.MethodGet, path, nil)
		for _, leak := range leaks {
			if bytes.Contains(r.body, []byte(leak)) {
				t.Errorf("GET %s shows the gossip key", path)
			}
		}
	}
	var view node.FederationView
	decodeStrict(t, c.admin(http.MethodGet, "/v1/federation", nil).body, &view)
	if view.GossipKey.Generation != 2 {
		t.Errorf("federation view gossip key generation %d, want 2", view.GossipKey.Generation)
	}
}

// Bad bodies are refused with a clear error and rotate nothing.
func TestRotateGossipKeyRefusesBadBodies(t *testing.T) {
	c := startCentre(t)
	cases := []struct {
		name, body string
		status     int
		code, say  string
	}{
		{"unknown field", `{"key":"AAAA"}`, 400, "bad_request", `"key"`},
		{"not JSON", `rotate please`, 400, "bad_request", "malformed JSON"},
		{"wrong type", `[]`, 400, "bad_request", "malformed JSON"},
		{"trailing document", `{} {}`, 400, "bad_request", "trailing data"},
		{"over 64 KiB", `{"x":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "too_large", "65536"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.admin(http.MethodPost, "/v1/federation/gossip-key", []byte(tc.body))
			if msg := errorBody(t, tc.name, r, tc.status, tc.code); !strings.Contains(msg, tc.say) {
				t.Errorf("message %q does not say %q", msg, tc.say)
			}
		})
	}
	if g := c.roster().GossipKeyGeneration; g != 0 {
		t.Fatalf("refused requests rotated the key: generation %d", g)
	}
}

// behindCentre is a real node whose local roster copy is one generation
// behind, as a follower's is when another centre has just rotated.
type behindCentre struct {
	*node.Node
}

func (c behindCentre) Roster() consensus.Roster {
	r := c.Node.Roster()
	r.GossipKeyGeneration--
	return r
}

// A rotation built from a stale generation (a race with another rotation)
// is a 409 conflict that names the generations, and changes nothing.
func TestRotateGossipKeyConflict(t *testing.T) {
	c := startCentre(t)
	rotateOK(t, c, nil)
	srv, err := Start(Config{Addr: "127.0.0.1:0", Centre: behindCentre{c.node}, AdminToken: c.token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Stop(ctx)
	})
	behind := &centre{t: t, url: "http://" + srv.Addr(), token: c.token}
	before, _ := c.node.Consensus().GossipKey()
	r := behind.admin(http.MethodPost, "/v1/federation/gossip-key", nil)
	if msg := errorBody(t, "stale rotation", r, http.StatusConflict, "conflict"); !strings.Contains(msg, "generation 1") {
		t.Errorf("message %q does not name the generation", msg)
	}
	after, _ := c.node.Consensus().GossipKey()
	if after.Generation != 1 || !bytes.Equal(before.Key, after.Key) {
		t.Fatal("a refused rotation changed the key")
	}
}
