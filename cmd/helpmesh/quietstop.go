package main

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// quietStop is the demo's log handler. When the demo stops, it stops its
// centres one after the other, and until the last has stopped the others
// keep trying to reach those already gone: Raft heartbeats and appends,
// its transport's streams, gossip. Those failures are expected then, so
// once stopping is set, WARN and ERROR records of the libraries that link
// centres are logged at DEBUG (still there with --log-level debug).
// Everything else, and everything before the stop, keeps its level.
type quietStop struct {
	slog.Handler
	stopping *atomic.Bool
	link     bool // the logger belongs to a library that links centres
}

func (h quietStop) Handle(ctx context.Context, r slog.Record) error {
	if h.link && r.Level >= slog.LevelWarn && h.stopping.Load() {
		if !h.Handler.Enabled(ctx, slog.LevelDebug) {
			return nil
		}
		r.Level = slog.LevelDebug
	}
	return h.Handler.Handle(ctx, r)
}

func (h quietStop) WithAttrs(attrs []slog.Attr) slog.Handler {
	link := h.link
	for _, a := range attrs {
		if a.Key == "component" && linksCentres(a.Value.String()) {
			link = true
		}
	}
	return quietStop{Handler: h.Handler.WithAttrs(attrs), stopping: h.stopping, link: link}
}

func (h quietStop) WithGroup(name string) slog.Handler {
	return quietStop{Handler: h.Handler.WithGroup(name), stopping: h.stopping, link: h.link}
}

// linksCentres names the components (their "component" log attribute)
// that talk to other centres.
func linksCentres(component string) bool {
	switch component {
	case "raft", "raft-transport", "memberlist", "p2p":
		return true
	}
	return false
}
