package logadapt

import (
	"log/slog"
	"testing"
)

func TestSplitLevel(t *testing.T) {
	for _, c := range []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[WARN] memberlist: Refuting a suspect message\n", slog.LevelWarn, "memberlist: Refuting a suspect message"},
		{"[ERR] memberlist: failed", slog.LevelError, "memberlist: failed"},
		{"[ERROR] raft: failed", slog.LevelError, "raft: failed"},
		{"[DEBUG] memberlist: Stream connection", slog.LevelDebug, "memberlist: Stream connection"},
		{"[TRACE] x", slog.LevelDebug, "x"},
		{"[INFO] x", slog.LevelInfo, "x"},
		{"2026/11/29 08:00:00 [WARN] raft: slow", slog.LevelWarn, "raft: slow"},
		{"[WARN] quoting [ERR] later", slog.LevelWarn, "quoting [ERR] later"},
		{"no marker", slog.LevelInfo, "no marker"},
	} {
		level, msg := SplitLevel(c.line)
		if level != c.level || msg != c.msg {
			t.Errorf("SplitLevel(%q) = %v, %q; want %v, %q", c.line, level, msg, c.level, c.msg)
		}
	}
}
