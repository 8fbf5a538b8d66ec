// Package localfed runs a federation of centres in one process on loopback,
// for the demo and the tests: the first centre starts a new federation; each
// later one is admitted through the first, as a coordinator would, and joins
// through it; any can then be killed, stopped, restarted on its data
// directory and ports, or cut off from the others and healed.
//
// It knows a centre only through a Driver, and imports neither node nor
// api: node's own tests (package node, which use its unexported fault
// hooks) and api's (package api) cannot import a package that imports
// theirs, yet they share this federation logic with the demo and the rigs
// built on package centre.
package localfed

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/helpmesh/helpmesh/consensus"
)

// Member is a running centre as later centres need it: the roster to be
// admitted to, and the address to join through.
type Member interface {
	Propose(ctx context.Context, cmd consensus.Command) error
	P2PAddrs() []string
}

// Driver makes, starts and stops one kind of centre (a bare node, a node
// with its HTTP API, a whole centre) with configuration C, running as M.
type Driver[C, M any] struct {
	// Prepare makes centre id's configuration and data directory; i counts
	// the centres added before it (0: it starts the federation). It returns
	// the centre as the roster is to admit it, or nil when the data
	// directory already holds a member (from an earlier run), which then
	// starts without joining.
	Prepare func(id string, i int) (C, *consensus.Centre, error)
	// Start runs a centre; join is the address to join through on a newly
	// admitted centre's first start, "" otherwise.
	Start func(ctx context.Context, cfg C, join string) (M, error)
	// Member gives the running centre's roster and join address.
	Member func(m M) Member
	// Stop stops a centre gracefully.
	Stop func(m M) error
	// Crash stops a centre abruptly, as a power cut would look to the
	// others. Nil: Kill stops it gracefully.
	Crash func(m M)
	// Cut cuts (cut true) or heals the link between two running centres,
	// both ways. Nil: Partition and Heal do nothing.
	Cut func(a, b M, cut bool)
}

var (
	// ErrUnknownCentre means the federation never added that centre.
	ErrUnknownCentre = errors.New("no such centre in the federation")
	// ErrFirstNotRunning means a centre cannot be admitted: the first
	// centre, through which every later one is admitted, is not running.
	ErrFirstNotRunning = errors.New("the federation's first centre is not running")
	// ErrRunning means a centre that is running was started again.
	ErrRunning = errors.New("the centre is already running")
)

// Federation is the centres a Driver started, in the order added.
type Federation[C, M any] struct {
	d Driver[C, M]

	mu      sync.Mutex
	order   []string
	cfgs    map[string]C
	running map[string]M
}

// New returns an empty federation of d's centres.
func New[C, M any](d Driver[C, M]) *Federation[C, M] {
	return &Federation[C, M]{d: d, cfgs: map[string]C{}, running: map[string]M{}}
}

// Add prepares centre id, admits it through the first centre unless it is
// the first or already a member, and starts it.
func (f *Federation[C, M]) Add(ctx context.Context, id string) (M, error) {
	var zero M
	f.mu.Lock()
	i := len(f.order)
	f.mu.Unlock()
	cfg, admit, err := f.d.Prepare(id, i)
	if err != nil {
		return zero, fmt.Errorf("prepare %s: %w", id, err)
	}
	join := ""
	if i > 0 && admit != nil {
		first, ok := f.Running(f.first())
		if !ok {
			return zero, fmt.Errorf("admit %s: %w", id, ErrFirstNotRunning)
		}
		via := f.d.Member(first)
		if err := Admit(ctx, via, *admit); err != nil {
			return zero, fmt.Errorf("admit %s: %w", id, err)
		}
		join = via.P2PAddrs()[0]
	}
	m, err := f.d.Start(ctx, cfg, join)
	if err != nil {
		return zero, fmt.Errorf("start %s: %w", id, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.order = append(f.order, id)
	f.cfgs[id], f.running[id] = cfg, m
	return m, nil
}

// Admit does what a coordinator does (helpmesh centre admit): it writes c
// into the roster through via.
func Admit(ctx context.Context, via Member, c consensus.Centre) error {
	return via.Propose(ctx, consensus.Command{Version: consensus.CommandVersion, Op: consensus.OpAdmitCentre, Centre: &c})
}

func (f *Federation[C, M]) first() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.order) == 0 {
		return ""
	}
	return f.order[0]
}

// Running returns centre id if it is running.
func (f *Federation[C, M]) Running(id string) (M, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.running[id]
	return m, ok
}

// Live returns the running centres in the order they were added.
func (f *Federation[C, M]) Live() []M {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []M
	for _, id := range f.order {
		if m, ok := f.running[id]; ok {
			out = append(out, m)
		}
	}
	return out
}

// take forgets centre id as running and returns it, if it was.
func (f *Federation[C, M]) take(id string) (M, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.running[id]
	delete(f.running, id)
	return m, ok
}

// Kill crashes centre id (see Driver.Crash). A centre not running is left
// as it is.
func (f *Federation[C, M]) Kill(id string) {
	m, ok := f.take(id)
	switch {
	case !ok:
	case f.d.Crash != nil:
		f.d.Crash(m)
	default:
		_ = f.d.Stop(m)
	}
}

// Stop stops centre id gracefully. A centre not running is left as it is.
func (f *Federation[C, M]) Stop(id string) error {
	m, ok := f.take(id)
	if !ok {
		return nil
	}
	return f.d.Stop(m)
}

// Restart starts a stopped or killed centre again on its data directory
// and ports, without joining. change, if not nil, adjusts its configuration
// first, for this and later restarts, like a new binary on the same data.
func (f *Federation[C, M]) Restart(ctx context.Context, id string, change func(*C)) (M, error) {
	var zero M
	f.mu.Lock()
	cfg, known := f.cfgs[id]
	_, running := f.running[id]
	if known && !running && change != nil {
		change(&cfg)
		f.cfgs[id] = cfg
	}
	f.mu.Unlock()
	switch {
	case !known:
		return zero, fmt.Errorf("restart %s: %w", id, ErrUnknownCentre)
	case running:
		return zero, fmt.Errorf("restart %s: %w", id, ErrRunning)
	}
	m, err := f.d.Start(ctx, cfg, "")
	if err != nil {
		return zero, fmt.Errorf("restart %s: %w", id, err)
	}
	f.mu.Lock()
	f.running[id] = m
	f.mu.Unlock()
	return m, nil
}

// Partition cuts centre id off from every other running centre, both ways
// (see Driver.Cut); Heal undoes it.
func (f *Federation[C, M]) Partition(id string) { f.setCut(id, true) }

// Heal reconnects a centre Partition cut off.
func (f *Federation[C, M]) Heal(id string) { f.setCut(id, false) }

func (f *Federation[C, M]) setCut(id string, cut bool) {
	a, ok := f.Running(id)
	if !ok || f.d.Cut == nil {
		return
	}
	f.mu.Lock()
	var others []M
	for _, other := range f.order {
		if m, ok := f.running[other]; ok && other != id {
			others = append(others, m)
		}
	}
	f.mu.Unlock()
	for _, b := range others {
		f.d.Cut(a, b, cut)
	}
}

// StopAll stops every running centre gracefully, the last added first.
func (f *Federation[C, M]) StopAll() error {
	f.mu.Lock()
	ids := slices.Clone(f.order)
	f.mu.Unlock()
	var errs []error
	for _, id := range slices.Backward(ids) {
		errs = append(errs, f.Stop(id))
	}
	return errors.Join(errs...)
}

// FreePort returns a loopback port that was free for TCP and UDP a moment
// ago (gossip binds both on one port). It picks at random below the
// kernel's ephemeral range: a port taken from that range (":0") is handed
// out again to the next outgoing connection or ":0" listener of any process
// on the machine, which is how parallel test binaries used to steal each
// other's ports between the pick and the bind.
func FreePort() (int, error) {
	low := ephemeralLow()
	const first = 10000
	for range 64 {
		if low <= first {
			break
		}
		p := first + rand.IntN(low-first)
		if bindable(p) {
			return p, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (0 when it
// cannot be read, e.g. off Linux).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	low, _ := strconv.Atoi(f[0])
	return low
}

func bindable(port int) bool {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	_ = u.Close()
	return true
}
