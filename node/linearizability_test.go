package node

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/rostermodel"
)

// The roster, seen through Propose and ReadRoster, must behave like one
// register per volunteer: every completed write is visible to every read that
// starts after it, and a read never sees a value nobody wrote. These tests
// record a concurrent history while the leader is killed and partitioned and
// check it with porcupine.

// linOp is the input of one history operation on one key (a volunteer id):
// the roster's porcupine model (internal/rostermodel), shared with the fault
// suite.
type linOp = rostermodel.Op

// checkLinearizable runs porcupine over history. On anything but Ok it writes
// the visualization and a text dump of the history to an artifacts directory
// that outlives the test (HELPMESH_ARTIFACTS, else a fresh temp dir) and
// returns an error naming it.
func checkLinearizable(t *testing.T, history []porcupine.Operation, timeout time.Duration) (porcupine.CheckResult, error) {
	t.Helper()
	res, info := porcupine.CheckOperationsVerbose(rostermodel.Model(), history, timeout)
	if res == porcupine.Ok {
		return res, nil
	}
	dir := os.Getenv("HELPMESH_ARTIFACTS")
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", "helpmesh-linearizability-")
	} else {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return res, fmt.Errorf("porcupine says %s (and no artifacts dir: %v)", res, err)
	}
	html, dump := rostermodel.WriteArtifacts(dir, t.Name(), info, history, time.Millisecond)
	return res, fmt.Errorf("porcupine says %s: visualization %s, history %s", res, html, dump)
}

// definitelyNotApplied reports whether a Propose error guarantees the
// command never took effect. Everything else (timeouts, lost leadership, a
// reset stream, a stopped node mid-apply) is ambiguous.
func definitelyNotApplied(err error) bool {
	for _, sentinel := range []error{
		consensus.ErrNotLeader, consensus.ErrBadCommand, consensus.ErrUnsupportedVersion,
		consensus.ErrUnknownCentre, consensus.ErrDuplicate,
	} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	return false
}

type linStats struct {
	mu                sync.Mutex
	writesOK          int
	writesAmbiguous   int
	writesRejected    int
	rejectedBy        map[string]int
	reads             int
	readsFailed       int
	ambiguousExamples []string
	rejectedExamples  []string
	history           []porcupine.Operation
	kills, partitions int
	faultLog          []string
}

func (s *linStats) fault(start time.Time, format string, args ...any) {
	s.mu.Lock()
	s.faultLog = append(s.faultLog, fmt.Sprintf("%7.3fs ", time.Since(start).Seconds())+fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

const linHome = "c1" // the volunteers' home centre: never removed

func linWrite(key, value string) consensus.Command {
	return consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpPutVolunteer, Volunteer: &consensus.Volunteer{
		ID: key, Centre: linHome, Alias: value, Channels: []string{"chat"}, Languages: []string{"nb"}, Capacity: 1, Role: "volunteer",
	}}
}

// runLinClient issues random writes and linearizable reads, each through a
// random live centre, until stop closes.
func runLinClient(client int, seed uint64, f *federation, keys []string, start time.Time, stop <-chan struct{}, s *linStats) {
	rng := rand.New(rand.NewPCG(seed, uint64(client)))
	now := func() int64 { return time.Since(start).Nanoseconds() }
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return
		default:
		}
		live := f.live()
		if len(live) == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		n := live[rng.IntN(len(live))]
		c := n.Consensus()
		via := n.Centre()
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1500+rng.IntN(1500))*time.Millisecond)
		if rng.IntN(2) == 0 {
			key := keys[rng.IntN(len(keys))]
			value := fmt.Sprintf("w-%d-%d", client, seq)
			call := now()
			err := c.Propose(ctx, linWrite(key, value))
			ret := now()
			op := porcupine.Operation{ClientId: client, Input: linOp{Key: key, Write: true, Value: value}, Call: call, Return: ret, Metadata: "via " + via}
			s.mu.Lock()
			switch {
			case err == nil:
				s.writesOK++
				s.history = append(s.history, op)
			case definitelyNotApplied(err):
				s.writesRejected++
				kind := "not leader"
				if !errors.Is(err, consensus.ErrNotLeader) {
					kind = "refused"
					if len(s.rejectedExamples) < 5 {
						s.rejectedExamples = append(s.rejectedExamples, fmt.Sprintf("via %s: %v", via, err))
					}
				}
				s.rejectedBy[kind]++
			default:
				// It may or may not have happened, at any time after the call.
				s.writesAmbiguous++
				op.Return = math.MaxInt64
				op.Metadata = fmt.Sprintf("via %s, ambiguous after %.0fms: %v", via, float64(ret-call)/1e6, err)
				if len(s.ambiguousExamples) < 5 {
					s.ambiguousExamples = append(s.ambiguousExamples, fmt.Sprintf("via %s: %v", via, err))
				}
				s.history = append(s.history, op)
			}
			s.mu.Unlock()
		} else {
			call := now()
			r, err := c.ReadRoster(ctx)
			ret := now()
			if err != nil {
				s.mu.Lock()
				s.readsFailed++
				s.mu.Unlock()
			} else {
				// One ReadRoster observes every key at one moment; record it as
				// one read per key (a weaker claim than the atomic snapshot).
				ops := make([]porcupine.Operation, 0, len(keys))
				for _, key := range keys {
					ops = append(ops, porcupine.Operation{ClientId: client, Input: linOp{Key: key}, Call: call,
						Output: r.Volunteers[key].Alias, Return: ret, Metadata: "via " + via})
				}
				s.mu.Lock()
				s.reads++
				s.history = append(s.history, ops...)
				s.mu.Unlock()
			}
		}
		cancel()
	}
}

// leaderAmong waits until every live centre but excluded agrees on a leader
// other than excluded, and returns its id.
func leaderAmong(t *testing.T, f *federation, excluded string) string {
	t.Helper()
	var leader string
	eventually(t, 20*time.Second, "a leader among the centres other than "+excluded, func() bool {
		leader = ""
		for _, n := range f.live() {
			if n.Centre() == excluded {
				continue
			}
			st := n.Consensus().Status()
			if st.Leader == "" || st.Leader == excluded || (leader != "" && st.Leader != leader) {
				return false
			}
			leader = st.Leader
		}
		if l := f.node(leader); l == nil || !l.Consensus().IsLeader() {
			return false
		}
		return true
	})
	return leader
}

// TestRosterLinearizableUnderLeaderFaults: concurrent roster writes and
// linearizable reads through random centres while the leader is killed and
// restarted, then partitioned and healed, repeatedly; porcupine must find the
// history linearizable.
func TestRosterLinearizableUnderLeaderFaults(t *testing.T) {
	const clients = 4
	// minOps keeps the check from passing on an empty history; it is set
	// well below a quiet machine's ~300 so a loaded CI machine still passes.
	budget, minOps := 9*time.Second, 25
	if testing.Short() {
		budget = 4 * time.Second
	}
	// How long the clients run under each configuration before the next fault.
	dwell := 400 * time.Millisecond
	keys := []string{"lin-a", "lin-b", "lin-c"}

	f := newFederation(t, 3, fedOptions{})
	f.leader()

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	s := &linStats{rejectedBy: map[string]int{}}
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	stopClients := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	// Runs before the federation's own cleanup (cleanups run last-in first-out),
	// so clients stop before the nodes do, even when the test fails early.
	t.Cleanup(stopClients)
	for i := range clients {
		wg.Go(func() { runLinClient(i, seed, f, keys, start, stop, s) })
	}

	// Faults run on the test goroutine: the harness helpers may t.Fatal.
	pause := func() { time.Sleep(dwell) } // workload time under this configuration, not a wait for an event
	deadline := start.Add(budget)
	// Alternate the two faults, at least one of each, until the budget is spent.
	for i := 0; s.kills == 0 || s.partitions == 0 || time.Now().Before(deadline); i++ {
		pause()
		id := f.leader().Centre()
		if i%2 == 0 {
			s.fault(start, "kill leader %s", id)
			f.kill(id)
			s.kills++
			s.fault(start, "new leader %s", f.leader().Centre())
			pause()
			f.restart(id)
			s.fault(start, "restarted %s", id)
			s.fault(start, "all agree on leader %s", f.leader().Centre())
		} else {
			s.fault(start, "partition leader %s", id)
			f.partition(id)
			s.partitions++
			s.fault(start, "new leader %s on the majority side", leaderAmong(t, f, id))
			pause()
			f.heal(id)
			s.fault(start, "healed %s", id)
			s.fault(start, "all agree on leader %s", f.leader().Centre())
		}
	}
	pause()
	stopClients()
	elapsed := time.Since(start)

	// The clients have stopped: s is ours alone now.
	st, history := s, s.history
	for _, line := range st.faultLog {
		t.Log("fault: " + line)
	}
	for _, e := range st.ambiguousExamples {
		t.Log("ambiguous write, e.g.: " + e)
	}
	for _, e := range st.rejectedExamples {
		t.Log("refused write (not applied), e.g.: " + e)
	}
	t.Logf("%v of load, %d clients, %d keys: %d writes ok, %d writes ambiguous, %d writes surely not applied %v, "+
		"%d linearizable reads ok (%d read ops checked), %d reads failed; faults: %d leader kills, %d leader partitions",
		elapsed.Round(time.Millisecond), clients, len(keys), st.writesOK, st.writesAmbiguous, st.writesRejected, st.rejectedBy,
		st.reads, st.reads*len(keys), st.readsFailed, st.kills, st.partitions)

	checkStart := time.Now()
	res, err := checkLinearizable(t, history, 60*time.Second)
	t.Logf("porcupine checked %d operations in %v: %s", len(history), time.Since(checkStart).Round(time.Millisecond), res)
	switch {
	case res == porcupine.Unknown:
		t.Fatalf("linearizability check timed out, so nothing was proven: %v", err)
	case err != nil:
		t.Fatalf("the roster history is NOT linearizable: %v", err)
	}
	t.Logf("0 linearizability violations")

	if st.kills < 1 || st.partitions < 1 {
		t.Fatalf("only %d kills and %d partitions were injected", st.kills, st.partitions)
	}
	if st.writesOK < minOps || st.reads < minOps {
		t.Fatalf("too little completed work to mean anything: %d writes and %d reads ok, want at least %d of each",
			st.writesOK, st.reads, minOps)
	}
}

// TestLinearizabilityCheckerRejectsBadHistories proves the check above can
// fail: hand-made histories a broken roster would produce are Illegal, and
// the legal ones (including ambiguous writes) are Ok.
func TestLinearizabilityCheckerRejectsBadHistories(t *testing.T) {
	cases := rostermodel.Cases()
	for _, tc := range cases {
		if got := porcupine.CheckOperationsTimeout(rostermodel.Model(), tc.History, 10*time.Second); got != tc.Want {
			t.Errorf("%s: porcupine says %s, want %s", tc.Name, got, tc.Want)
		}
	}
	// The reporting path: an Illegal history yields an error naming the
	// visualization, which exists.
	t.Setenv("HELPMESH_ARTIFACTS", t.TempDir())
	res, err := checkLinearizable(t, cases[0].History, 10*time.Second)
	if res != porcupine.Illegal || err == nil {
		t.Fatalf("checkLinearizable on a stale read: %s, %v", res, err)
	}
	html := filepath.Join(os.Getenv("HELPMESH_ARTIFACTS"), t.Name()+".html")
	if fi, serr := os.Stat(html); serr != nil || fi.Size() == 0 {
		t.Fatalf("no visualization at %s (%v): %v", html, serr, err)
	}
}
