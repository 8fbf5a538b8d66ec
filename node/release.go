package node

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"
	"unicode"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/internal/wire"
)

// releaseProtocol asks a centre which roster level it speaks, so that the
// leader proposes an operation only once every centre can apply it (see
// consensus/release.go). It is a protocol of its own, not a field added to
// an existing message: those are decoded strictly, and an older release
// simply does not support this one, which says "level 1" plainly. The
// gater lets only admitted centres open it.
const releaseProtocol = "/helpmesh/release/1"

const (
	// A request is "{}"; an answer is a level and a short build string.
	maxReleaseRequest  = 64
	maxReleaseResponse = 512
	maxBuild           = 64
	// releaseServeTimeout bounds each side of serving one question.
	releaseServeTimeout = 5 * time.Second
	// releaseProbeTimeout bounds one background probe.
	releaseProbeTimeout = 2 * time.Second
)

type releaseRequest struct{}

type releaseResponse struct {
	// Level is consensus.RosterLevel of the answering build.
	Level int `json:"level"`
	// Build names the answering build, when it knows it.
	Build string `json:"build,omitempty"`
}

// ReleaseInfo is what this centre last confirmed of another centre's
// release.
type ReleaseInfo struct {
	// Level is the roster level the centre speaks.
	Level int `json:"level"`
	// Build names its build, if it said (an older release says nothing).
	Build string `json:"build,omitempty"`
	// ConfirmedAt is when it last answered.
	ConfirmedAt time.Time `json:"confirmed_at"`
}

// releaseLevels is the in-memory record of the last release confirmed for
// each centre of the Raft group. It is what the leader falls back on for a
// centre that does not answer when asked: a centre that was confirmed and
// then went down still counts, one never confirmed does not.
type releaseLevels struct {
	mu    sync.Mutex
	known map[string]ReleaseInfo
}

// releaseProbeEvery is how often each centre confirms the others' levels.
func releaseProbeEvery(t timing.Profile) (every, soon time.Duration) {
	if t == timing.Test {
		return time.Second, 100 * time.Millisecond
	}
	return 10 * time.Second, time.Second
}

// buildName names this build from the module version Go records, or else
// the VCS revision; "" when the binary carries neither.
func buildName() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return clipBuild(v)
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return ""
	}
	return clipBuild(rev + dirty)
}

// clipBuild keeps a build string short and printable: it reaches logs and
// the federation view from another centre.
func clipBuild(s string) string {
	out := make([]rune, 0, len(s))
	for _, r := range s {
		if len(out) == maxBuild {
			break
		}
		if !unicode.IsPrint(r) {
			r = '?'
		}
		out = append(out, r)
	}
	return string(out)
}

// serveRelease answers one centre's question about our release.
func (n *Node) serveRelease(s network.Stream) {
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(releaseServeTimeout))
	var req releaseRequest
	if err := wire.Read(s, &req, maxReleaseRequest); err != nil {
		n.log.Debug("refused release question", "from", s.Conn().RemotePeer().ShortString(), "err", err)
		_ = s.Reset()
		return
	}
	_ = s.SetWriteDeadline(time.Now().Add(releaseServeTimeout))
	level := consensus.RosterLevel
	if n.cfg.testRosterLevel > 0 {
		level = n.cfg.testRosterLevel
	}
	if err := wire.Write(s, releaseResponse{Level: level, Build: n.build}, maxReleaseResponse); err != nil {
		n.log.Debug("answer release question", "err", err)
	}
}

// askRelease asks m which roster level it speaks. A centre on a release
// from before this protocol answers "protocol not supported": level 1.
func (n *Node) askRelease(ctx context.Context, m consensus.Member) (ReleaseInfo, error) {
	pid, err := peer.Decode(m.PeerID)
	if err != nil {
		return ReleaseInfo{}, fmt.Errorf("ask %s its release: peer id: %w", m.Centre, err)
	}
	timeout := releaseProbeTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := n.host.NewStream(sctx, pid, releaseProtocol)
	if errors.Is(err, msmux.ErrNotSupported[protocol.ID]{}) {
		return ReleaseInfo{Level: 1, ConfirmedAt: time.Now()}, nil
	}
	if err != nil {
		return ReleaseInfo{}, fmt.Errorf("ask %s its release: %w", m.Centre, err)
	}
	defer s.Close()
	var resp releaseResponse
	if err := wire.Exchange(s, s, releaseRequest{}, &resp, maxReleaseRequest, maxReleaseResponse, timeout); err != nil {
		_ = s.Reset()
		return ReleaseInfo{}, fmt.Errorf("ask %s its release: %w", m.Centre, err)
	}
	// Level 1 is the release without this protocol: nobody answers it.
	if resp.Level < 2 || len(resp.Build) > maxBuild {
		return ReleaseInfo{}, fmt.Errorf("ask %s its release: level %d: %w", m.Centre, resp.Level, ErrBadRelease)
	}
	return ReleaseInfo{Level: resp.Level, Build: clipBuild(resp.Build), ConfirmedAt: time.Now()}, nil
}

// confirmLevels asks each of others for its level at once, within ctx, and
// records every answer. For a centre that does not answer it reports the
// level last confirmed, or 0. It is consensus.Config.ReleaseLevels.
func (n *Node) confirmLevels(ctx context.Context, others []consensus.Member) map[string]int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	levels := make(map[string]int, len(others))
	for _, m := range others {
		wg.Go(func() {
			info, err := n.askRelease(ctx, m)
			if err != nil {
				n.log.Debug("release not confirmed", "of", m.Centre, "err", err)
				info, _ = n.releaseOf(m.Centre)
			} else {
				n.noteRelease(m.Centre, info)
			}
			mu.Lock()
			levels[m.Centre] = info.Level
			mu.Unlock()
		})
	}
	wg.Wait()
	return levels
}

// noteRelease records a confirmed release, and says so when it is news.
func (n *Node) noteRelease(centre string, info ReleaseInfo) {
	n.releases.mu.Lock()
	old, had := n.releases.known[centre]
	n.releases.known[centre] = info
	n.releases.mu.Unlock()
	if had && old.Level == info.Level && old.Build == info.Build {
		return
	}
	if info.Level < consensus.RosterLevel {
		n.log.Info("centre runs an older release: roster commands of later levels wait until it is upgraded",
			"of", centre, "roster_level", info.Level, "ours", consensus.RosterLevel)
		return
	}
	n.log.Info("centre release confirmed", "of", centre, "roster_level", info.Level, "build", info.Build)
}

// releaseOf is the release last confirmed for centre.
func (n *Node) releaseOf(centre string) (ReleaseInfo, bool) {
	n.releases.mu.Lock()
	defer n.releases.mu.Unlock()
	info, ok := n.releases.known[centre]
	return info, ok
}

// forgetReleasesBut drops the record of centres that left the Raft group,
// so a centre id admitted again later is asked afresh.
func (n *Node) forgetReleasesBut(members []consensus.Member) {
	keep := map[string]bool{}
	for _, m := range members {
		keep[m.Centre] = true
	}
	n.releases.mu.Lock()
	defer n.releases.mu.Unlock()
	for id := range n.releases.known {
		if !keep[id] {
			delete(n.releases.known, id)
		}
	}
}

// releaseLoop keeps the record fresh: every few seconds, and soon after a
// roster change (a centre admitted or restarted on a new release), each
// centre asks the others of the Raft group. Any centre may become leader,
// and a leader can count a centre that went down only if it asked it
// before.
func (n *Node) releaseLoop(ctx context.Context) {
	every, soon := releaseProbeEvery(n.cfg.Timing)
	// A burst of roster writes makes one round, not one per write.
	_ = n.consensus.Watch(ctx, consensus.Wake{Every: every, Settle: soon}, func(consensus.Roster) bool {
		members := n.consensus.Members()
		n.forgetReleasesBut(members)
		var others []consensus.Member
		for _, m := range members {
			if m.Centre != n.cfg.Centre {
				others = append(others, m)
			}
		}
		if len(others) > 0 {
			pctx, cancel := context.WithTimeout(ctx, releaseProbeTimeout)
			n.confirmLevels(pctx, others)
			cancel()
		}
		return false
	})
}
