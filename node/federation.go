package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/overflow"
)

// FederationView is one centre's live picture of the whole federation.
type FederationView struct {
	// Observer is the centre that produced this view.
	Observer string           `json:"observer"`
	Leader   string           `json:"leader"`
	Raft     consensus.Status `json:"raft"`
	// GossipKey is the observer's gossip key generations (never the key).
	GossipKey GossipKeyStatus `json:"gossip_key"`
	Centres   []CentreView    `json:"centres"`
}

// CentreView is what the observer knows of one centre.
type CentreView struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	PeerID   string `json:"peer_id"`
	HTTPAddr string `json:"http_addr,omitempty"`
	// SIPAddr is where the centre's SIP ingress takes calls from other
	// centres' PBXs, as the roster says; empty when it takes none.
	SIPAddr string `json:"sip_addr,omitempty"`
	// Gossip is the memberlist state: alive, suspect, dead, left or unknown.
	Gossip string `json:"gossip"`
	// RaftRole is leader, voter, nonvoter or none.
	RaftRole string `json:"raft_role"`
	// Availability is the last state gossiped by the centre, if any.
	Availability *overflow.Availability `json:"availability,omitempty"`
	// AvailabilityAgeSeconds is how long ago that state was received.
	AvailabilityAgeSeconds float64 `json:"availability_age_seconds"`
	// RosterLevel is the roster command level the centre speaks, as the
	// observer last confirmed it (the observer's own for itself); 0 while
	// unconfirmed or outside the Raft group. Build names its build, if it
	// said. See "Releases and roster commands" in docs/operations.md.
	RosterLevel int    `json:"roster_level,omitempty"`
	Build       string `json:"build,omitempty"`
}

// Federation returns the live view: roster centres, their gossip state and
// Raft role, and their last availability.
func (n *Node) Federation() FederationView {
	st := n.consensus.Status()
	r := n.consensus.Roster()
	seen := map[string]overflow.Seen{}
	for _, s := range n.gossip.View() {
		seen[s.Centre] = s
	}
	// Lists and maps are empty, never null, so a script reads one shape.
	st.Voters, st.Nonvoters = nonNil(st.Voters), nonNil(st.Nonvoters)
	v := FederationView{Observer: n.cfg.Centre, Leader: st.Leader, Raft: st, GossipKey: n.GossipKeyStatus(), Centres: []CentreView{}}
	for _, id := range r.CentreIDs() {
		c := r.Centres[id]
		cv := CentreView{ID: c.ID, Name: c.Name, PeerID: c.PeerID, HTTPAddr: c.HTTPAddr, SIPAddr: c.SIPAddr, Gossip: "unknown", RaftRole: "none"}
		switch {
		case id == st.Leader:
			cv.RaftRole = "leader"
		case slices.Contains(st.Voters, id):
			cv.RaftRole = "voter"
		case slices.Contains(st.Nonvoters, id):
			cv.RaftRole = "nonvoter"
		}
		if id == n.cfg.Centre {
			cv.RosterLevel, cv.Build = consensus.RosterLevel, n.build
		} else if rel, ok := n.releaseOf(id); ok {
			cv.RosterLevel, cv.Build = rel.Level, rel.Build
		}
		if s, ok := seen[id]; ok {
			cv.Gossip = s.State
			if !s.ReceivedAt.IsZero() {
				a := s.Availability // View gives a copy
				if a.Channels == nil {
					a.Channels = map[string]overflow.ChannelState{}
				}
				for name, ch := range a.Channels {
					if ch.Free == nil {
						ch.Free = map[string]int{}
					}
					if ch.Busy == nil {
						ch.Busy = map[string]int{}
					}
					a.Channels[name] = ch
				}
				cv.Availability = &a
				cv.AvailabilityAgeSeconds = time.Since(s.ReceivedAt).Seconds()
			}
		}
		v.Centres = append(v.Centres, cv)
	}
	return v
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Roster returns the local copy of the roster.
func (n *Node) Roster() consensus.Roster { return n.consensus.Roster() }

// ReadRoster returns the roster through the Raft leader, after it confirmed
// its leadership: unlike Roster it reflects every write that completed before
// the call. It waits for a leader until ctx ends.
func (n *Node) ReadRoster(ctx context.Context) (consensus.Roster, error) {
	return n.consensus.ReadRoster(ctx)
}

// Propose writes a roster command through Raft (forwarded to the leader).
func (n *Node) Propose(ctx context.Context, cmd consensus.Command) error {
	return n.consensus.Propose(ctx, cmd)
}

// ErrNotReady says why the centre cannot serve yet.
var ErrNotReady = errors.New("centre not ready")

// Ready reports whether the centre can route: it is in its own roster and
// its gossip runs. A missing Raft leader does not make it unready, since
// routing never waits on Raft; it is reported in the federation view.
func (n *Node) Ready() error {
	if _, ok := n.consensus.Roster().Centres[n.cfg.Centre]; !ok {
		return fmt.Errorf("%w: not yet in its own roster", ErrNotReady)
	}
	if n.gossip.Members() < 1 {
		return fmt.Errorf("%w: gossip not running", ErrNotReady)
	}
	return nil
}
