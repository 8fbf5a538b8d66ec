package logadapt

import (
	"context"
	"log"
	"log/slog"
	"strings"
)

// StdLog returns a *log.Logger whose "[LEVEL] msg" lines (memberlist's and
// raft's habit) become slog records at the matching level.
func StdLog(l *slog.Logger, name string) *log.Logger {
	return log.New(&levelWriter{l: l.With("component", name)}, "", 0)
}

type levelWriter struct{ l *slog.Logger }

func (w *levelWriter) Write(p []byte) (int, error) {
	level, msg := SplitLevel(string(p))
	w.l.Log(context.Background(), level, msg)
	return len(p), nil
}

// levels are the markers hashicorp's libraries put on their log lines.
var levels = []struct {
	marker string
	level  slog.Level
}{
	{"[TRACE]", slog.LevelDebug},
	{"[DEBUG]", slog.LevelDebug},
	{"[INFO]", slog.LevelInfo},
	{"[WARN]", slog.LevelWarn},
	{"[ERR]", slog.LevelError},
	{"[ERROR]", slog.LevelError},
}

// SplitLevel reads the level marker of a "[WARN] memberlist: ..." line and
// returns the level and the message after it, trimmed. The first marker in
// the line counts (a timestamp may precede it); a line without one is Info.
func SplitLevel(line string) (slog.Level, string) {
	line = strings.TrimSpace(line)
	at, level, msg := -1, slog.LevelInfo, line
	for _, l := range levels {
		if i := strings.Index(line, l.marker); i >= 0 && (at < 0 || i < at) {
			at, level, msg = i, l.level, strings.TrimSpace(line[i+len(l.marker):])
		}
	}
	return level, msg
}
