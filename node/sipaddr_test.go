package node

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/logsink"
)

func sipOf(id string) string { return "sip." + id + ".example:5060" }

// listsSIP reports whether n's roster lists each centre's SIP address.
func listsSIP(n *Node, ids ...string) bool {
	r := n.Roster()
	for _, id := range ids {
		if r.Centres[id].SIPAddr != sipOf(id) {
			return false
		}
	}
	return true
}

// Every centre of a federation of this release publishes its configured SIP
// address, and every roster lists all of them.
func TestCentresPublishTheirSIPAddr(t *testing.T) {
	f := newFederation(t, 3, fedOptions{configure: func(id string, cfg *Config) { cfg.SIPAddr = sipOf(id) }})
	for _, n := range f.live() {
		eventually(t, 30*time.Second, n.Centre()+" listing every centre's SIP address", func() bool {
			return listsSIP(n, "c1", "c2", "c3")
		})
	}
}

// A bad SIP address in the configuration stops the node at start.
func TestBadSIPAddrRefusedAtStart(t *testing.T) {
	_, err := Start(context.Background(), Config{Centre: "c1", DataDir: t.TempDir(), SIPAddr: "sip.c1.example"})
	if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "host:port") {
		t.Fatalf("got %v, want ErrBadConfig saying host:port", err)
	}
}

// With a centre on an older release (roster level 1 to the others), the
// leader refuses set_centre_sip with the release gate's ErrNotEverywhere:
// nothing reaches the log, the rosters stay alike, and a centre that wants
// to publish waits at debug level, with no warning per try. c1 (and maybe
// c2) published before c3 joined the group, which needs nobody's level.
// The stand-in for the older release (c3) is this build, so it is the one
// that tries, through the leader. Once it runs this release, its address
// lands too, and each centre said once that it published.
func TestOlderReleaseHoldsBackTheSIPAddr(t *testing.T) {
	sink := &logsink.Buffer{}
	f := newFederation(t, 3, fedOptions{
		logger: func(string) *slog.Logger {
			return slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug}))
		},
		configure: func(id string, cfg *Config) {
			cfg.testNoReleaseProtocol = id == "c3"
			cfg.SIPAddr = sipOf(id)
		},
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(sink.String(), "\n") {
				if strings.Contains(l, "SIP") {
					t.Log(l)
				}
			}
		}
	})
	leader := f.leaderSeeingOldRelease("c3")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, lastBefore, _ := leader.Consensus().LogBounds()
	err := leader.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpSetCentreSIP,
		CentreSIP: &consensus.CentreSIP{Centre: leader.Centre(), SIPAddr: ""}})
	if !errors.Is(err, consensus.ErrNotEverywhere) || !strings.Contains(err.Error(), "c3 speaks level 1") {
		t.Fatalf("set_centre_sip with c3 behind: %v, want ErrNotEverywhere naming c3", err)
	}
	if _, lastAfter, _ := leader.Consensus().LogBounds(); lastAfter != lastBefore {
		t.Fatalf("a refused set_centre_sip reached the log (%d -> %d)", lastBefore, lastAfter)
	}
	// c3's own tries are refused by the gate, again and again.
	mark := countLines(sink.String(), "centre=c3", "waits until every centre speaks roster level 3")
	eventually(t, 30*time.Second, "c3 refused twice more by the release gate", func() bool {
		return countLines(sink.String(), "centre=c3", "waits until every centre speaks roster level 3") >= mark+2
	})
	eventually(t, 10*time.Second, "every roster alike", func() bool {
		want := leader.Roster().Centres
		for _, n := range f.live() {
			if !reflect.DeepEqual(n.Roster().Centres, want) {
				return false
			}
		}
		return true
	})
	for _, n := range f.live() {
		if got := n.Roster().Centres["c3"].SIPAddr; got != "" {
			t.Fatalf("%s's roster lists c3's SIP address %q while c3 is behind", n.Centre(), got)
		}
	}
	if warns := countLines(sink.String(), "level=WARN", "SIP address"); warns > 2 {
		t.Errorf("%d warnings about the SIP address while the gate holds it back, want at most one per leader change", warns)
	}

	// c3 upgraded: same data directory, this release.
	f.kill("c3")
	f.restartWith("c3", func(cfg *Config) { cfg.testNoReleaseProtocol = false })
	for _, n := range f.live() {
		eventually(t, 30*time.Second, n.Centre()+" listing every centre's SIP address", func() bool {
			return listsSIP(n, "c1", "c2", "c3")
		})
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		// The roster may show it before the proposer's call returns.
		eventually(t, 15*time.Second, id+" saying it published", func() bool {
			return countLines(sink.String(), "centre="+id, "published own SIP address") > 0
		})
		if got := countLines(sink.String(), "centre="+id, "published own SIP address"); got != 1 {
			t.Errorf("%s said %d times that it published its SIP address, want once", id, got)
		}
	}
}

// countLines counts the log lines holding every one of parts.
func countLines(log string, parts ...string) int {
	n := 0
lines:
	for _, l := range strings.Split(log, "\n") {
		for _, p := range parts {
			if !strings.Contains(l, p) {
				continue lines
			}
		}
		n++
	}
	return n
}
