package media

import (
	"fmt"
	"log/slog"

	"github.com/pion/logging"
)

// pionLogs hands pion's warnings and errors to the engine's logger at
// debug level (pion's own default writes errors to stderr). Its debug and
// trace lines are dropped: they are many, and some carry candidates.
type pionLogs struct{ log *slog.Logger }

func (f pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (pionLogger) Trace(string)          {}
func (pionLogger) Tracef(string, ...any) {}
func (pionLogger) Debug(string)          {}
func (pionLogger) Debugf(string, ...any) {}
func (pionLogger) Info(string)           {}
func (pionLogger) Infof(string, ...any)  {}
func (l pionLogger) Warn(msg string)     { l.log.Debug(msg, "level", "warn") }
func (l pionLogger) Warnf(f string, a ...any) {
	l.log.Debug(fmt.Sprintf(f, a...), "level", "warn")
}
func (l pionLogger) Error(msg string) { l.log.Debug(msg, "level", "error") }
func (l pionLogger) Errorf(f string, a ...any) {
	l.log.Debug(fmt.Sprintf(f, a...), "level", "error")
}
