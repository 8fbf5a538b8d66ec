package consensus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/gostream"

	"github.com/helpmesh/helpmesh/internal/logadapt"
)

// raftProtocol carries Raft RPCs between centres. Raft runs over the same
// libp2p host as everything else, so a centre has one identity, one encrypted
// channel and one allowlist. A Raft server address is the node's peer id.
const raftProtocol = "/helpmesh/raft/1"

// streamLayer adapts libp2p streams to raft.StreamLayer.
type streamLayer struct {
	host host.Host
	net.Listener
}

func newStreamLayer(h host.Host) (*streamLayer, error) {
	l, err := gostream.Listen(h, raftProtocol)
	if err != nil {
		return nil, fmt.Errorf("listen for raft: %w", err)
	}
	return &streamLayer{host: h, Listener: l}, nil
}

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	pid, err := peer.Decode(string(address))
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %q: %w", address, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := gostream.Dial(ctx, s.host, pid, raftProtocol)
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s: %w", pid.ShortString(), err)
	}
	return conn, nil
}

func newTransport(h host.Host, log *slog.Logger) (*fencedTransport, error) {
	sl, err := newStreamLayer(h)
	if err != nil {
		return nil, err
	}
	return &fencedTransport{NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  sl,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logadapt.HCLog(log, "raft-transport"),
	})}, nil
}

// fencedTransport is raft's transport with a fence around the heartbeat fast
// path. raft runs heartbeats on the transport's connection goroutine, not on
// one of its own, so raft.Shutdown does not wait for one that is under way: it
// can pass raft's shutdown check, and then save the leader's term into a store
// that Close has shut, which raft answers with a panic. fence waits for any
// heartbeat in flight and turns later ones away (unanswered, as raft itself
// does once shut down), so the store closes only after the last one is done.
type fencedTransport struct {
	*raft.NetworkTransport

	mu     sync.RWMutex
	fenced bool
}

// SetHeartbeatHandler wraps raft's handler so fence can wait for it.
func (t *fencedTransport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	if cb == nil {
		t.NetworkTransport.SetHeartbeatHandler(nil)
		return
	}
	t.NetworkTransport.SetHeartbeatHandler(t.guard(cb))
}

func (t *fencedTransport) guard(cb func(rpc raft.RPC)) func(rpc raft.RPC) {
	return func(rpc raft.RPC) {
		t.mu.RLock()
		defer t.mu.RUnlock()
		if t.fenced {
			return
		}
		cb(rpc)
	}
}

// fence returns once no heartbeat is being handled, and none will be again.
func (t *fencedTransport) fence() {
	t.mu.Lock()
	t.fenced = true
	t.mu.Unlock()
}
