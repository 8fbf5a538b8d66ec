// Package stopper gives every goroutine of a component one owner: started
// through Go, told to end by the context being cancelled, and waited for by
// Stop. Modelled on CockroachDB's stopper, much reduced.
package stopper

import (
	"context"
	"sync"
)

// Stopper owns a set of goroutines.
type Stopper struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New returns a Stopper whose goroutines run until Stop.
func New() *Stopper {
	ctx, cancel := context.WithCancel(context.Background())
	return &Stopper{ctx: ctx, cancel: cancel}
}

// Go runs f in a goroutine that Stop waits for. f must return soon after ctx
// is done.
func (s *Stopper) Go(f func(ctx context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(s.ctx)
	}()
}

// Done is closed when Stop has been called.
func (s *Stopper) Done() <-chan struct{} { return s.ctx.Done() }

// Context is cancelled when Stop is called.
func (s *Stopper) Context() context.Context { return s.ctx }

// Stop cancels every goroutine and waits for all of them. It is idempotent.
func (s *Stopper) Stop() {
	s.once.Do(s.cancel)
	s.wg.Wait()
}
