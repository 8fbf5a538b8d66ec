package consensus

import (
	"context"
	"fmt"
	"log/slog"
	"net"
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

func newTransport(h host.Host, log *slog.Logger) (*raft.NetworkTransport, error) {
	sl, err := newStreamLayer(h)
	if err != nil {
		return nil, err
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  sl,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logadapt.HCLog(log, "raft-transport"),
	}), nil
}
