package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/node"
)

// ReadRoster makes the API tests' in-memory centre a Centre: its roster has
// no leader to lag behind, so the linearizable read is the local copy.
func (c *deskCentre) ReadRoster(context.Context) (consensus.Roster, error) {
	return c.Roster(), nil
}

// laggingCentre is a real node whose local roster copy is frozen in the past,
// as a follower's is while it catches up; its linearizable read can be made
// to fail as it does when no leader is reachable.
type laggingCentre struct {
	*node.Node
	local    consensus.Roster
	noLeader atomic.Bool
}

func (c *laggingCentre) Roster() consensus.Roster { return c.local.Clone() }

func (c *laggingCentre) ReadRoster(ctx context.Context) (consensus.Roster, error) {
	if c.noLeader.Load() {
		return consensus.Roster{}, fmt.Errorf("read roster: %w: %w", consensus.ErrNotLeader, context.DeadlineExceeded)
	}
	return c.Node.ReadRoster(ctx)
}

// TestRosterConsistencyModes: GET /v1/roster serves the local copy, and with
// ?consistency=linearizable the roster read through the leader; an unknown
// mode is refused and a read without a leader is a 503 no_quorum.
func TestRosterConsistencyModes(t *testing.T) {
	c := startCentre(t)
	if r := c.admin(http.MethodPost, "/v1/volunteers", mustJSON(t, validVolunteer("v1"))); r.status != http.StatusOK {
		t.Fatalf("seed volunteer: %d %s", r.status, r.body)
	}
	get := func(c *centre, query string) consensus.Roster {
		t.Helper()
		r := c.admin(http.MethodGet, "/v1/roster"+query, nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET /v1/roster%s = %d %s", query, r.status, r.body)
		}
		var out consensus.Roster
		decodeStrict(t, r.body, &out)
		return out
	}
	// On the real node both modes see the write that completed.
	for _, q := range []string{"", "?consistency=local", "?consistency=linearizable"} {
		if _, ok := get(c, q).Volunteers["v1"]; !ok {
			t.Errorf("GET /v1/roster%s lacks v1, written before it", q)
		}
	}
	if r := c.do(http.MethodGet, "/v1/roster?consistency=linearizable", "", nil); r.status != http.StatusUnauthorized {
		t.Errorf("linearizable read without a token: %d %s", r.status, r.body)
	}

	// A centre whose local copy is from before v2 was written.
	lag := &laggingCentre{Node: c.node, local: c.node.Roster()}
	lc := startCentreFor(t, lag, c.token)
	if r := c.admin(http.MethodPost, "/v1/volunteers", mustJSON(t, validVolunteer("v2"))); r.status != http.StatusOK {
		t.Fatalf("write v2: %d %s", r.status, r.body)
	}
	for _, q := range []string{"", "?consistency=local"} {
		if _, ok := get(lc, q).Volunteers["v2"]; ok {
			t.Errorf("GET /v1/roster%s at the lagging centre shows v2: it should serve the stale local copy", q)
		}
	}
	lin := get(lc, "?consistency=linearizable")
	if _, ok := lin.Volunteers["v2"]; !ok {
		t.Errorf("linearizable read at the lagging centre lacks v2, written before it: %v", lin.Volunteers)
	}

	for _, bad := range []string{"strong", "Linearizable", strings.Repeat("x", 200)} {
		r := lc.admin(http.MethodGet, "/v1/roster?consistency="+bad, nil)
		msg := errorBody(t, "consistency="+bad[:min(len(bad), 20)], r, http.StatusBadRequest, "bad_request")
		if !strings.Contains(msg, "linearizable") || len(msg) > 200 {
			t.Errorf("consistency=%.20s: message %q should name the modes and stay short", bad, msg)
		}
	}

	// No leader within the deadline: 503 no_quorum, as for a write.
	lag.noLeader.Store(true)
	r := lc.admin(http.MethodGet, "/v1/roster?consistency=linearizable", nil)
	if msg := errorBody(t, "linearizable read without a leader", r, http.StatusServiceUnavailable, "no_quorum"); !strings.Contains(msg, "leader") {
		t.Errorf("no_quorum message %q does not say why", msg)
	}
	// The local copy is still served.
	if _, ok := get(lc, "").Volunteers["v1"]; !ok {
		t.Error("local read without a leader lacks v1")
	}
}

// startCentreFor serves cen's API on loopback with the given admin token.
func startCentreFor(t *testing.T, cen Centre, token string) *centre {
	t.Helper()
	srv, err := Start(Config{Addr: "127.0.0.1:0", Centre: cen, AdminToken: token})
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
	return &centre{t: t, url: "http://" + srv.Addr(), token: token}
}
