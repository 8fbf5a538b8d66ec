// Package logadapt lets hashicorp/raft and hashicorp/memberlist log through
// the node's slog.Logger, so that one handler decides what reaches a log line.
package logadapt

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// HCLog adapts a slog.Logger to hclog.Logger for hashicorp/raft.
func HCLog(l *slog.Logger, name string) hclog.Logger {
	return &hcl{l: l.With("component", name), name: name}
}

type hcl struct {
	l    *slog.Logger
	name string
	args []any
}

func toSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (h *hcl) Log(level hclog.Level, msg string, args ...any) {
	h.l.Log(context.Background(), toSlog(level), msg, append(h.args, args...)...)
}
func (h *hcl) Trace(msg string, args ...any) { h.Log(hclog.Trace, msg, args...) }
func (h *hcl) Debug(msg string, args ...any) { h.Log(hclog.Debug, msg, args...) }
func (h *hcl) Info(msg string, args ...any)  { h.Log(hclog.Info, msg, args...) }
func (h *hcl) Warn(msg string, args ...any)  { h.Log(hclog.Warn, msg, args...) }
func (h *hcl) Error(msg string, args ...any) { h.Log(hclog.Error, msg, args...) }
func (h *hcl) IsTrace() bool                 { return false }
func (h *hcl) IsDebug() bool                 { return h.l.Enabled(context.Background(), slog.LevelDebug) }
func (h *hcl) IsInfo() bool                  { return h.l.Enabled(context.Background(), slog.LevelInfo) }
func (h *hcl) IsWarn() bool                  { return h.l.Enabled(context.Background(), slog.LevelWarn) }
func (h *hcl) IsError() bool                 { return h.l.Enabled(context.Background(), slog.LevelError) }
func (h *hcl) ImpliedArgs() []any            { return h.args }
func (h *hcl) With(args ...any) hclog.Logger {
	return &hcl{l: h.l, name: h.name, args: append(append([]any{}, h.args...), args...)}
}
func (h *hcl) Name() string { return h.name }
func (h *hcl) Named(name string) hclog.Logger {
	return &hcl{l: h.l.With("sub", name), name: h.name + "." + name, args: h.args}
}
func (h *hcl) ResetNamed(name string) hclog.Logger { return h.Named(name) }
func (h *hcl) SetLevel(hclog.Level)                {}
func (h *hcl) GetLevel() hclog.Level               { return hclog.Info }
func (h *hcl) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return StdLog(h.l, h.name)
}
func (h *hcl) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &levelWriter{l: h.l}
}
