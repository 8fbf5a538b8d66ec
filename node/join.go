package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/refusal"
	"github.com/helpmesh/helpmesh/internal/wire"
)

// joinProtocol lets an admitted centre join the federation through any
// member: the member asks the leader to add it to the roster group and hands
// back the federation's gossip secrets and the centres to reach. The stream
// is mutually authenticated and encrypted, and the member's gater only lets
// admitted peer ids open it.
const joinProtocol = "/helpmesh/join/1"

const (
	maxJoinRequest  = 1 << 10
	maxJoinResponse = 8 << 20
)

type joinRequest struct {
	Centre string `json:"centre"`
}

type joinResponse struct {
	Error      string             `json:"error,omitempty"`
	Federation Federation         `json:"federation"`
	Centres    []consensus.Centre `json:"centres,omitempty"`
}

// joinThrough asks the member at target to take us in. It retries until ctx
// ends, because the member may not have applied our admission yet.
func (n *Node) joinThrough(ctx context.Context, target peer.AddrInfo) (joinResponse, error) {
	var lastErr error
	for attempt := 0; ; attempt++ {
		resp, err := n.askToJoin(ctx, target)
		if err == nil {
			n.log.Info("joined the federation", "through", target.ID.ShortString())
			return resp, nil
		}
		if errors.Is(err, ErrJoinRefused) && attempt >= 20 {
			return joinResponse{}, err
		}
		lastErr = err
		n.log.Debug("join attempt failed", "through", target.ID.ShortString(), "err", err)
		select {
		case <-ctx.Done():
			return joinResponse{}, fmt.Errorf("join through %s: %w (last: %w)", target.ID.ShortString(), ctx.Err(), lastErr)
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
		}
	}
}

func (n *Node) askToJoin(ctx context.Context, target peer.AddrInfo) (joinResponse, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := n.host.Connect(cctx, target); err != nil {
		return joinResponse{}, fmt.Errorf("connect: %w", err)
	}
	s, err := n.host.NewStream(cctx, target.ID, joinProtocol)
	if err != nil {
		return joinResponse{}, fmt.Errorf("open join stream: %w", err)
	}
	defer s.Close()
	var resp joinResponse
	if err := wire.Exchange(s, s, joinRequest{Centre: n.cfg.Centre}, &resp, maxJoinRequest, maxJoinResponse, 15*time.Second); err != nil {
		_ = s.Reset()
		return joinResponse{}, fmt.Errorf("join exchange: %w", err)
	}
	if resp.Error != "" {
		return joinResponse{}, fmt.Errorf("%w: %s", ErrJoinRefused, resp.Error)
	}
	if len(resp.Federation.GossipKey) != 32 || resp.Federation.Label == "" {
		return joinResponse{}, fmt.Errorf("%w: member sent no federation secrets", ErrJoinRefused)
	}
	return resp, nil
}

// serveJoin answers a centre that wants to join through us. The connecting
// peer id must be the admitted peer id of the centre it names.
func (n *Node) serveJoin(s network.Stream) {
	defer s.Close()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	from := s.Conn().RemotePeer()
	var req joinRequest
	reply := func(resp joinResponse) {
		_ = s.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_ = wire.Write(s, resp, maxJoinResponse)
	}
	if err := wire.Read(s, &req, maxJoinRequest); err != nil {
		reply(joinResponse{Error: fmt.Sprintf("bad join request: %v", err)})
		return
	}
	ctx, cancel := context.WithTimeout(n.stop.Context(), 15*time.Second)
	defer cancel()
	r := n.consensus.Roster()
	c, ok := r.Centres[req.Centre]
	if !ok || c.PeerID != from.String() {
		// Our copy may lag the leader by a moment: ask the leader.
		if lr, err := n.consensus.ReadRoster(ctx); err == nil {
			r = lr
			c, ok = r.Centres[req.Centre]
		}
	}
	if !ok || c.PeerID != from.String() {
		// Counted and sampled with the gater's refusals: an admitted peer
		// could repeat this as fast as it likes.
		n.refused.Refuse(refusedJoinNotAdmitted, slog.String("peer", refusal.Value(from.String())))
		reply(joinResponse{Error: fmt.Sprintf("centre %q with peer id %s is not admitted: ask a coordinator to admit it first", req.Centre, from)})
		return
	}
	if err := n.consensus.AddServer(ctx, c.ID, c.PeerID); err != nil {
		reply(joinResponse{Error: err.Error()})
		return
	}
	resp := joinResponse{Federation: n.currentFederation()}
	for _, id := range r.CentreIDs() {
		if id != req.Centre {
			resp.Centres = append(resp.Centres, r.Centres[id])
		}
	}
	reply(resp)
}
