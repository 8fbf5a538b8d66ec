package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/logsink"
)

func urlOf(id string) string { return "https://chat." + id + ".example" }

// listsURL reports whether n's roster lists each centre's public URL.
func listsURL(n *Node, ids ...string) bool {
	r := n.Roster()
	for _, id := range ids {
		if r.Centres[id].PublicURL != urlOf(id) {
			return false
		}
	}
	return true
}

// A bad public URL in the configuration stops the node at start.
func TestBadPublicURLRefusedAtStart(t *testing.T) {
	_, err := Start(context.Background(), Config{Centre: "c1", DataDir: t.TempDir(), PublicURL: "http://chat.c1.example"})
	if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("got %v, want ErrBadConfig saying http is for loopback", err)
	}
}

// With a centre on the release before public URLs (roster level 4), the
// leader refuses set_centre_public_url with ErrNotEverywhere, nothing
// reaches the log, and every centre that wants to publish retries quietly
// (debug lines, no warning per try). Upgraded, every URL lands in every
// roster and each centre says once that it published.
func TestLevel4CentreHoldsBackThePublicURL(t *testing.T) {
	sink := &logsink.Buffer{}
	f := newFederation(t, 3, fedOptions{
		logger: func(string) *slog.Logger {
			return slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
		},
		configure: func(id string, cfg *Config) {
			if id == "c3" {
				cfg.testRosterLevel = 4
			}
			cfg.PublicURL = urlOf(id)
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(sink.String(), "\n") {
				if strings.Contains(l, "public URL") {
					t.Log(l)
				}
			}
		}
	})
	leader := f.leaderSeeingLevel("c3", 4)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, lastBefore, _ := leader.Consensus().LogBounds()
	err := leader.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetCentrePublicURL,
		CentreURL: &consensus.CentreURL{Centre: leader.Centre(), PublicURL: ""}})
	if !errors.Is(err, consensus.ErrNotEverywhere) || !strings.Contains(err.Error(), "c3 speaks level 4") {
		t.Fatalf("set_centre_public_url with c3 behind: %v, want ErrNotEverywhere naming c3", err)
	}
	if _, lastAfter, _ := leader.Consensus().LogBounds(); lastAfter != lastBefore {
		t.Fatalf("a refused set_centre_public_url reached the log (%d -> %d)", lastBefore, lastAfter)
	}
	// c3 itself (this build, saying level 4 to the others) keeps trying
	// and is refused by the gate each time, quietly.
	mark := countLines(sink.String(), "centre=c3", "waits until every centre speaks roster level 5")
	eventually(t, 30*time.Second, "c3 refused twice more by the release gate", func() bool {
		return countLines(sink.String(), "centre=c3", "waits until every centre speaks roster level 5") >= mark+2
	})
	for _, n := range f.live() {
		if got := n.Roster().Centres["c3"].PublicURL; got != "" {
			t.Fatalf("%s's roster lists c3's public URL %q while c3 is behind", n.Centre(), got)
		}
	}
	if warns := countLines(sink.String(), "level=WARN", "public URL"); warns > 2 {
		t.Errorf("%d warnings about the public URL while the gate holds it back, want at most one per leader change", warns)
	}

	f.kill("c3")
	f.restartWith("c3", func(cfg *Config) { cfg.testRosterLevel = 0 })
	for _, n := range f.live() {
		eventually(t, 30*time.Second, n.Centre()+" listing every centre's public URL", func() bool {
			return listsURL(n, "c1", "c2", "c3")
		})
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		eventually(t, 15*time.Second, id+" saying it published", func() bool {
			return countLines(sink.String(), "centre="+id, "published own public URL") > 0
		})
		if got := countLines(sink.String(), "centre="+id, "published own public URL"); got != 1 {
			t.Errorf("%s said %d times that it published its public URL, want once", id, got)
		}
	}
}
