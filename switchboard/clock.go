package switchboard

import (
	"context"
	"time"
)

// Clock is the switchboard's time. Production runs on the wall clock; the
// capacity simulator (sim/) runs the same switchboard on a virtual one, so
// that a week of contacts takes seconds and every routing decision in it is
// this package's own.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) Timer
	// Hold is called just before the switchboard starts a goroutine, and
	// release when it ends: a virtual clock moves on only once all the
	// work that the present moment started has finished or waits on it.
	Hold() (release func())
}

// Timer is what the switchboard does with a timer: *time.Timer satisfies it.
type Timer interface {
	Stop() bool
	Reset(d time.Duration) bool
}

// WallClock is the real time; the zero Config uses it.
type WallClock struct{}

func (WallClock) Now() time.Time { return time.Now() }

func (WallClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

func (WallClock) Hold() func() { return func() {} }

func (s *Switchboard) now() time.Time { return s.clock.Now() }

func (s *Switchboard) since(t time.Time) time.Duration { return s.clock.Now().Sub(t) }

func (s *Switchboard) afterFunc(d time.Duration, f func()) Timer { return s.clock.AfterFunc(d, f) }

// spawn runs f on a goroutine the stopper owns, held on the clock from now
// until it ends.
func (s *Switchboard) spawn(f func(ctx context.Context)) {
	release := s.clock.Hold()
	s.stop.Go(func(ctx context.Context) {
		defer release()
		f(ctx)
	})
}
