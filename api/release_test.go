package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/node"
)

// oldPeerCentre is a real node whose leader found another centre on an
// older release: operations above level 1 are refused, as the leader
// refuses them (consensus/release.go).
type oldPeerCentre struct {
	*node.Node
}

func (c oldPeerCentre) Propose(ctx context.Context, cmd consensus.Command) error {
	if consensus.CommandLevel(cmd) > 1 {
		return fmt.Errorf("propose %s: %s needs roster level 2 at every centre of the roster group, but bergen speaks level 1: upgrade bergen (or remove it from the roster), then retry: %w",
			cmd.Op, cmd.Op, consensus.ErrNotEverywhere)
	}
	return c.Node.Propose(ctx, cmd)
}

// A rotation refused because a centre runs an older release is a 409
// not_everywhere that names the centre and says what to do.
func TestRotateGossipKeyNotEverywhere(t *testing.T) {
	c := startCentre(t)
	old := startCentreFor(t, oldPeerCentre{c.node}, c.token)
	r := old.admin(http.MethodPost, "/v1/federation/gossip-key", nil)
	if msg := errorBody(t, "rotation with an old centre", r, http.StatusConflict, "not_everywhere"); !strings.Contains(msg, "upgrade bergen") {
		t.Errorf("message %q does not say what to do", msg)
	}
	if g := c.roster().GossipKeyGeneration; g != 0 {
		t.Fatalf("a refused rotation rotated the key: generation %d", g)
	}
}
