package consensus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/helpmesh/helpmesh/internal/wire"
)

// rosterProtocol carries writes, linearizable reads and join requests from a
// follower to the leader, so any centre can take a coordinator's command.
const rosterProtocol = "/helpmesh/roster/1"

const (
	maxRosterRequest  = MaxCommandBytes + 1024
	maxRosterResponse = 64 << 20
	rpcTimeout        = 10 * time.Second
)

type rpcKind string

const (
	rpcApply     rpcKind = "apply"
	rpcRead      rpcKind = "read"
	rpcAddServer rpcKind = "add_server"
)

type rosterRequest struct {
	Kind    rpcKind  `json:"kind"`
	Command *Command `json:"command,omitempty"`
	Centre  string   `json:"centre,omitempty"`
	PeerID  string   `json:"peer_id,omitempty"`
}

type rosterResponse struct {
	Code   string  `json:"code,omitempty"`
	Error  string  `json:"error,omitempty"`
	Roster *Roster `json:"roster,omitempty"`
	// Index is the log index a write was committed at.
	Index uint64 `json:"index,omitempty"`
}

// result is what the leader produced for a request.
type result struct {
	roster Roster
	index  uint64
}

// Propose writes cmd to the roster. It is refused with a clear error, and
// nothing changes, when cmd is malformed or does not fit the roster. On a
// follower it is forwarded to the leader. It waits for a leader until ctx ends.
func (c *Consensus) Propose(ctx context.Context, cmd Command) error {
	if err := cmd.Validate(); err != nil {
		return fmt.Errorf("propose: %w", err)
	}
	res, err := c.onLeader(ctx, rosterRequest{Kind: rpcApply, Command: &cmd})
	if err != nil {
		return fmt.Errorf("propose %s: %w", cmd.Op, err)
	}
	// Read your writes: whoever proposed through this centre sees the
	// change in its local roster as soon as Propose returns.
	if err := c.WaitForIndex(ctx, res.index); err != nil {
		return fmt.Errorf("propose %s: committed, but not yet applied here: %w", cmd.Op, err)
	}
	return nil
}

// ReadRoster returns the roster as of a moment within the call: it is
// answered by the leader after a barrier, so it reflects every write that
// completed before the call began.
func (c *Consensus) ReadRoster(ctx context.Context) (Roster, error) {
	res, err := c.onLeader(ctx, rosterRequest{Kind: rpcRead})
	if err != nil {
		return Roster{}, fmt.Errorf("read roster: %w", err)
	}
	return res.roster, nil
}

// AddServer asks the leader to take an admitted centre into the Raft group
// as a non-voter; the leader promotes it when a voter seat is free.
func (c *Consensus) AddServer(ctx context.Context, centre, peerID string) error {
	if _, err := c.onLeader(ctx, rosterRequest{Kind: rpcAddServer, Centre: centre, PeerID: peerID}); err != nil {
		return fmt.Errorf("add %s to the roster group: %w", centre, err)
	}
	return nil
}

// onLeader runs req here if this node leads, else on the leader, retrying
// while no leader is known or leadership moves, until ctx ends.
func (c *Consensus) onLeader(ctx context.Context, req rosterRequest) (result, error) {
	backoff := 20 * time.Millisecond
	for {
		var r result
		var err error
		if c.IsLeader() {
			r, err = c.handle(ctx, req)
		} else if addr, _ := c.raft.LeaderWithID(); addr != "" {
			r, err = c.forward(ctx, addr, req)
		} else {
			err = ErrNotLeader
		}
		// Retry only when the request surely did not take effect.
		if !errors.Is(err, ErrNotLeader) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return result{}, fmt.Errorf("%w: %w", err, ctx.Err())
		case <-c.stop.Done():
			return result{}, ErrStopped
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// handle executes req on the leader.
func (c *Consensus) handle(ctx context.Context, req rosterRequest) (result, error) {
	timeout := timeoutFrom(ctx, rpcTimeout)
	switch req.Kind {
	case rpcApply:
		if req.Command == nil {
			return result{}, fmt.Errorf("apply without a command: %w", ErrBadCommand)
		}
		// Refused before the log: a bad command never becomes an entry.
		if err := c.fsm.check(*req.Command); err != nil {
			return result{}, err
		}
		// A command newer than level 1 waits until every centre speaks
		// it, or one on an older release would refuse it at apply.
		if err := c.confirmLevel(ctx, *req.Command); err != nil {
			return result{}, err
		}
		// The check may have taken a moment of the caller's time.
		timeout = timeoutFrom(ctx, rpcTimeout)
		b, err := EncodeCommand(*req.Command)
		if err != nil {
			return result{}, err
		}
		f := c.raft.Apply(b, timeout)
		if err := f.Error(); err != nil {
			return result{}, raftError(err)
		}
		if res, ok := f.Response().(applyResult); ok && res.err != nil {
			return result{}, res.err
		}
		return result{index: f.Index()}, nil
	case rpcRead:
		// The barrier commits in this leader's term, so the FSM holds every
		// write acknowledged before this read began.
		if err := c.raft.Barrier(timeout).Error(); err != nil {
			return result{}, raftError(err)
		}
		return result{roster: c.fsm.read(), index: c.raft.AppliedIndex()}, nil
	case rpcAddServer:
		return result{}, c.addServer(req.Centre, req.PeerID, timeout)
	default:
		return result{}, fmt.Errorf("unknown roster request %q: %w", clip(string(req.Kind)), ErrBadCommand)
	}
}

// raftError maps Raft's "not leader before we started" errors to
// ErrNotLeader (safe to retry) and keeps every other error as it is, since the
// write may or may not have happened.
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("%w: %w", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	}
	return err
}

func (c *Consensus) forward(ctx context.Context, leader raft.ServerAddress, req rosterRequest) (result, error) {
	pid, err := peer.Decode(string(leader))
	if err != nil {
		return result{}, fmt.Errorf("leader address %q: %w", leader, err)
	}
	timeout := timeoutFrom(ctx, rpcTimeout)
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s, err := c.cfg.Host.NewStream(sctx, pid, rosterProtocol)
	if err != nil {
		// Nothing was sent, so retrying is safe.
		return result{}, fmt.Errorf("%w: reach leader %s: %w", ErrNotLeader, pid.ShortString(), err)
	}
	defer s.Close()
	var resp rosterResponse
	if err := wire.Exchange(s, s, req, &resp, maxRosterRequest, maxRosterResponse, timeout); err != nil {
		_ = s.Reset()
		// The request may have reached the leader: not safe to retry.
		return result{}, fmt.Errorf("forward to leader %s: %w: %w", pid.ShortString(), ErrOutcomeUnknown, err)
	}
	if err := fromWire(resp.Code, resp.Error); err != nil {
		return result{}, err
	}
	out := result{index: resp.Index}
	if resp.Roster != nil {
		out.roster = *resp.Roster
	}
	return out, nil
}

// serveRoster answers a forwarded request. Only admitted centres reach it:
// the node's connection gater refuses everyone else.
func (c *Consensus) serveRoster(s network.Stream) {
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	var req rosterRequest
	if err := wire.Read(s, &req, maxRosterRequest); err != nil {
		c.log.Warn("refused roster request", "from", s.Conn().RemotePeer().ShortString(), "err", err)
		_ = wire.Write(s, rosterResponse{Code: "bad_command", Error: fmt.Sprintf("bad roster request: %v", err)}, maxRosterResponse)
		return
	}
	// An add_server request may only add the centre that is asking, unless a
	// member forwards it on the joiner's behalf (then the member vouched).
	var resp rosterResponse
	if !c.IsLeader() {
		resp = rosterResponse{Code: "not_leader", Error: ErrNotLeader.Error()}
	} else {
		ctx, cancel := context.WithTimeout(c.stop.Context(), rpcTimeout)
		r, err := c.handle(ctx, req)
		cancel()
		if err != nil {
			resp = rosterResponse{Code: codeOf(err), Error: err.Error()}
		} else {
			resp.Index = r.index
			if req.Kind == rpcRead {
				resp.Roster = &r.roster
			}
		}
	}
	_ = s.SetWriteDeadline(time.Now().Add(rpcTimeout))
	if err := wire.Write(s, resp, maxRosterResponse); err != nil {
		c.log.Warn("answer roster request", "err", err)
	}
}
