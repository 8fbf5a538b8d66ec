package consensus

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// A heartbeat under way when the centre stops must finish before fence
// returns (the store closes right after), and none may run after it: the CI
// run that found this saw raft panic saving a term into a closed store.
func TestFenceWaitsForTheHeartbeatUnderWayAndTurnsLaterOnesAway(t *testing.T) {
	ft := &fencedTransport{}
	entered := make(chan struct{})
	release := make(chan struct{})
	var finished, calls atomic.Int32
	hb := ft.guard(func(raft.RPC) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		finished.Add(1)
	})
	go hb(raft.RPC{})
	<-entered

	fenced := make(chan int32)
	go func() {
		ft.fence()
		fenced <- finished.Load()
	}()
	// Give a fence that does not wait the chance to return early; a
	// correct one cannot return before release however long this is.
	select {
	case n := <-fenced:
		t.Fatalf("fence returned while a heartbeat was under way (finished=%d)", n)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if n := <-fenced; n != 1 {
		t.Fatalf("fence returned with %d heartbeats finished, want 1", n)
	}

	hb(raft.RPC{})
	if got := calls.Load(); got != 1 {
		t.Fatalf("a heartbeat after fence reached raft (%d calls, want 1)", got)
	}
}
