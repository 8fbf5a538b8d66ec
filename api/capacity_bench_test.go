//go:build unix

package api

// Capacity figures for one node, measured over real WebSockets on loopback
// against the real Server and switchboard. They report numbers; nothing here
// asserts a time or a size. Run them once each:
//
//	go test -run '^$' -bench 'MemoryPerIdleChat|ConcurrentChats' -benchtime 1x ./api
//
// The clients live in the same process as the server (except in the
// server-only memory run, which puts them in a child process), so CPU, memory
// and latency figures include the clients' share of this machine.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/switchboard"
)

const (
	// capIdleChats is how many idle chats BenchmarkMemoryPerIdleChat holds.
	capIdleChats = 2000
	// capDialers bounds concurrent dials.
	capDialers = 16

	capChildURLEnv = "HELPMESH_CAPBENCH_CLIENT_URL"
	capChildNEnv   = "HELPMESH_CAPBENCH_CLIENT_N"
	capChildReady  = "capbench-ready"
)

// capRig is one centre's API on an httptest server, for benchmarks: a real
// switchboard, no chat-start limit worth the name, logs discarded.
type capRig struct {
	centre *deskCentre
	srv    *Server
	hs     *httptest.Server
	ws     string // ws:// base URL
}

func newCapRig(b *testing.B) *capRig {
	b.Helper()
	logger := slog.New(slog.DiscardHandler)
	c := &deskCentre{id: "oslo", dir: b.TempDir(), roster: consensus.NewRoster()}
	c.roster.Centres["oslo"] = consensus.Centre{ID: "oslo", Name: "oslo"}
	c.sb = switchboard.New(switchboard.Config{
		Centre:        "oslo",
		RingTimeout:   time.Minute,
		OverflowAfter: func(string) time.Duration { return time.Hour },
		Languages:     func() []string { return c.Roster().Policy.Languages },
		Topics:        func() []string { return c.Roster().Policy.Topics },
		Logger:        logger,
	})
	srv, err := newServer(Config{
		Centre: c, AdminToken: "bench-admin-token", Logger: logger, argon: cheapArgon,
		// Every client comes from 127.0.0.1.
		ChatStartsPerMinute: 1 << 24, ChatStartBurst: 1 << 24,
	})
	if err != nil {
		b.Fatalf("new server: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	return &capRig{centre: c, srv: srv, hs: hs, ws: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// close stops the rig; close the clients first.
func (r *capRig) close(b *testing.B) {
	b.Helper()
	r.srv.closeSockets("benchmark over")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.srv.waitSockets(ctx); err != nil {
		b.Errorf("sockets did not close: %v", err)
	}
	r.hs.Close()
	r.centre.sb.Close()
}

func (r *capRig) sockets() int {
	r.srv.sockMu.Lock()
	defer r.srv.sockMu.Unlock()
	return len(r.srv.socks)
}

// capEnsureFiles raises the soft open-file limit to the hard one and skips
// when even that is below need.
func capEnsureFiles(b *testing.B, need uint64) {
	b.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		b.Fatalf("getrlimit: %v", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			b.Logf("raising the open-file limit to %d: %v", rl.Max, err)
		}
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			b.Fatalf("getrlimit: %v", err)
		}
	}
	if rl.Cur < need {
		b.Skipf("needs %d open files, the limit is %d (hard %d)", need, rl.Cur, rl.Max)
	}
}

// capWaitFor polls cond for up to d.
func capWaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// capWaitQuiet waits until the goroutine count stops moving (outbox
// goroutines finish draining, writers park).
func capWaitQuiet() {
	last, same := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(5 * time.Second); same < 5 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
}

// ---- BenchmarkMemoryPerIdleChat ----

type capMem struct {
	heap, stack uint64
	goroutines  int
}

func capMeasure() capMem {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return capMem{heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

type capPerConn struct {
	heap, stack, goroutines float64
}

func (p capPerConn) bytes() float64 { return p.heap + p.stack }

func capDelta(before, after capMem, n int) capPerConn {
	return capPerConn{
		heap:       float64(int64(after.heap)-int64(before.heap)) / float64(n),
		stack:      float64(int64(after.stack)-int64(before.stack)) / float64(n),
		goroutines: float64(after.goroutines-before.goroutines) / float64(n),
	}
}

// capDialIdle opens n sockets to url and reads the first frame of each
// ("queued" for a chat). The clients then hold no goroutine: an idle page.
func capDialIdle(url string, n int) ([]*websocket.Conn, error) {
	conns := make([]*websocket.Conn, n)
	var (
		next     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(capDialers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				conn, err := capDialOne(url)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("chat %d: %w", i, err) })
					return
				}
				conns[i] = conn
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		capCloseAll(conns)
		return nil, firstErr
	}
	return conns, nil
}

func capDialOne(url string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	if _, _, err := conn.Read(ctx); err != nil {
		_ = conn.CloseNow()
		return nil, fmt.Errorf("first frame: %w", err)
	}
	return conn, nil
}

func capCloseAll(conns []*websocket.Conn) {
	for _, c := range conns {
		if c != nil {
			_ = c.CloseNow()
		}
	}
}

const capChatPath = "/v1/chat?channel=chat&lang=nb"

// capIdleAPI holds n idle chats on a fresh API server with the clients in
// this process and returns the per-chat cost of server and clients.
func capIdleAPI(b *testing.B, n int) capPerConn {
	b.Helper()
	r := newCapRig(b)
	defer r.close(b)
	url := r.ws + capChatPath
	capWarmUp(b, r, url)

	before := capMeasure()
	conns, err := capDialIdle(url, n)
	if err != nil {
		b.Fatalf("open idle chats: %v", err)
	}
	defer capCloseAll(conns)
	r.waitIdle(b, n)
	capWaitQuiet()
	return capDelta(before, capMeasure(), n)
}

// capIdleAPIServerOnly holds n idle chats on a fresh API server with the
// clients in a child process, so what is measured here is the server alone.
func capIdleAPIServerOnly(b *testing.B, n int) (capPerConn, error) {
	b.Helper()
	r := newCapRig(b)
	defer r.close(b)
	url := r.ws + capChatPath
	capWarmUp(b, r, url)

	before := capMeasure()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCapacityBenchClientProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), capChildURLEnv+"="+url, capChildNEnv+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return capPerConn{}, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return capPerConn{}, err
	}
	if err := cmd.Start(); err != nil {
		return capPerConn{}, fmt.Errorf("start the client process: %w", err)
	}
	defer func() {
		_ = stdin.Close() // the child closes its sockets and exits
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
	}()
	sc := bufio.NewScanner(stdout)
	ready := false
	for sc.Scan() {
		if line := sc.Text(); line == capChildReady {
			ready = true
			break
		} else if strings.HasPrefix(line, "capbench-error") {
			return capPerConn{}, fmt.Errorf("client process: %s", line)
		}
	}
	if !ready {
		return capPerConn{}, fmt.Errorf("the client process ended before it was ready: %v", sc.Err())
	}
	r.waitIdle(b, n)
	capWaitQuiet()
	return capDelta(before, capMeasure(), n), nil
}

// capWarmUp opens and closes a few chats so that one-time costs (pools,
// lazily built tables) are paid before the baseline is read.
func capWarmUp(b *testing.B, r *capRig, url string) {
	b.Helper()
	conns, err := capDialIdle(url, 50)
	if err != nil {
		b.Fatalf("warm up: %v", err)
	}
	capCloseAll(conns)
	if !capWaitFor(20*time.Second, func() bool { return r.sockets() == 0 && r.centre.sb.Stats().Total().Waiting == 0 }) {
		b.Fatalf("warm-up chats still open: %d sockets", r.sockets())
	}
	capWaitQuiet()
}

// waitIdle waits until the server holds n queued chats.
func (r *capRig) waitIdle(b *testing.B, n int) {
	b.Helper()
	if !capWaitFor(30*time.Second, func() bool { return r.sockets() == n && r.centre.sb.Stats().Total().Waiting == n }) {
		b.Fatalf("the server holds %d sockets and %d waiting chats, want %d", r.sockets(), r.centre.sb.Stats().Total().Waiting, n)
	}
}

// capIdleBare holds n connections from the same client code to a bare
// WebSocket server (accept, send one frame, read until closed): the cost of
// a client plus the least a WebSocket server can spend.
func capIdleBare(b *testing.B, n int) capPerConn {
	b.Helper()
	var open atomic.Int64
	var handlers sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"queued","position":1,"wait":"free_now"}`))
		cancel()
		if err != nil {
			return
		}
		open.Add(1)
		defer open.Add(-1)
		for {
			if _, _, err := conn.Read(context.Background()); err != nil {
				return
			}
		}
	}))
	defer func() {
		hs.Close()
		handlers.Wait()
	}()
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/ws"
	warm, err := capDialIdle(url, 50)
	if err != nil {
		b.Fatalf("warm up the bare server: %v", err)
	}
	capCloseAll(warm)
	capWaitFor(20*time.Second, func() bool { return open.Load() == 0 })
	capWaitQuiet()

	before := capMeasure()
	conns, err := capDialIdle(url, n)
	if err != nil {
		b.Fatalf("open bare connections: %v", err)
	}
	defer capCloseAll(conns)
	if !capWaitFor(30*time.Second, func() bool { return open.Load() == int64(n) }) {
		b.Fatalf("the bare server holds %d connections, want %d", open.Load(), n)
	}
	capWaitQuiet()
	return capDelta(before, capMeasure(), n)
}

// TestCapacityBenchClientProcess is not a test: it is the client process of
// BenchmarkMemoryPerIdleChat's server-only run, and skips otherwise.
func TestCapacityBenchClientProcess(t *testing.T) {
	url := os.Getenv(capChildURLEnv)
	if url == "" {
		t.Skip("the client process of BenchmarkMemoryPerIdleChat")
	}
	n, err := strconv.Atoi(os.Getenv(capChildNEnv))
	if err != nil || n <= 0 {
		fmt.Println("capbench-error bad", capChildNEnv)
		t.Fatalf("%s: %v", capChildNEnv, err)
	}
	conns, err := capDialIdle(url, n)
	if err != nil {
		fmt.Println("capbench-error", err)
		t.Fatal(err)
	}
	fmt.Println(capChildReady)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the benchmark closes our stdin
	capCloseAll(conns)
}

// BenchmarkMemoryPerIdleChat: what one queued, idle visitor chat costs.
//
//	bytes/chat, goroutines/chat
//	    API server and client together, both in this process (HeapInuse +
//	    StackInuse after GC, and goroutines, per chat).
//	baseline-bytes/conn, baseline-goroutines/conn
//	    The same client code against a bare WebSocket server that accepts,
//	    sends one frame and reads: bytes/chat minus this is what the API and
//	    switchboard add over the least a WebSocket server spends.
//	server-bytes/chat, server-goroutines/chat
//	    The API server alone: the clients run in a child process.
func BenchmarkMemoryPerIdleChat(b *testing.B) {
	n := capIdleChats
	capEnsureFiles(b, uint64(2*n+512))
	var total, bare, server capPerConn
	serverRuns := 0
	for range b.N {
		s, err := capIdleAPIServerOnly(b, n)
		if err != nil {
			b.Logf("server-only run skipped: %v", err)
		} else {
			server.heap += s.heap
			server.stack += s.stack
			server.goroutines += s.goroutines
			serverRuns++
		}
		t := capIdleAPI(b, n)
		total.heap += t.heap
		total.stack += t.stack
		total.goroutines += t.goroutines
		bl := capIdleBare(b, n)
		bare.heap += bl.heap
		bare.stack += bl.stack
		bare.goroutines += bl.goroutines
	}
	avg := func(p capPerConn, runs int) capPerConn {
		return capPerConn{heap: p.heap / float64(runs), stack: p.stack / float64(runs), goroutines: p.goroutines / float64(runs)}
	}
	total, bare = avg(total, b.N), avg(bare, b.N)
	b.ReportMetric(total.bytes(), "bytes/chat")
	b.ReportMetric(total.goroutines, "goroutines/chat")
	b.ReportMetric(bare.bytes(), "baseline-bytes/conn")
	b.ReportMetric(bare.goroutines, "baseline-goroutines/conn")
	b.Logf("%d idle chats; per chat: server+client %.0f B (heap %.0f, stack %.0f), %.2f goroutines; "+
		"bare ws server+client %.0f B (heap %.0f, stack %.0f), %.2f goroutines; API over bare %.0f B",
		n, total.bytes(), total.heap, total.stack, total.goroutines,
		bare.bytes(), bare.heap, bare.stack, bare.goroutines, total.bytes()-bare.bytes())
	if serverRuns > 0 {
		server = avg(server, serverRuns)
		b.ReportMetric(server.bytes(), "server-bytes/chat")
		b.ReportMetric(server.goroutines, "server-goroutines/chat")
		b.Logf("server alone (clients in a child process): %.0f B (heap %.0f, stack %.0f), %.2f goroutines per chat",
			server.bytes(), server.heap, server.stack, server.goroutines)
	}
}

// ---- BenchmarkConcurrentChats ----

const (
	capVolunteers = 250
	capCapacity   = 8
	capPeriod     = 2 * time.Second  // each side sends one message per period
	capWindow     = 10 * time.Second // the measured window
)

// capFrame is the fields the load clients look at; decoding is lenient.
type capFrame struct {
	Type    string `json:"type"`
	Contact string `json:"contact"`
	ID      string `json:"id"`
	Text    string `json:"text"`
	Code    string `json:"code"`
	Error   string `json:"error"`
	Reason  string `json:"reason"`
}

// capLoad is the shared state of one level's clients.
type capLoad struct {
	stopping atomic.Bool

	consoleConnected atomic.Int64
	dropped          atomic.Int64 // chats requeued, closed or cut
	oddities         atomic.Int64 // error frames and other surprises
	firstOddity      sync.Once
	oddity           string

	sentIn, sentOut atomic.Int64 // visitor to volunteer, and back
	gotIn, gotOut   atomic.Int64

	latMu         sync.Mutex
	latIn, latOut []time.Duration
	padding       string
}

func (l *capLoad) odd(format string, args ...any) {
	l.oddities.Add(1)
	l.firstOddity.Do(func() { l.oddity = fmt.Sprintf(format, args...) })
}

// text carries its send time, so the receiver can tell the latency.
func (l *capLoad) text() string {
	return strconv.FormatInt(time.Now().UnixNano(), 10) + "|" + l.padding
}

func (l *capLoad) received(text string, in bool) {
	at := time.Now()
	ts, _, ok := strings.Cut(text, "|")
	ns, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil {
		l.odd("a message without a send time: %.40q", text)
		return
	}
	d := at.Sub(time.Unix(0, ns))
	l.latMu.Lock()
	if in {
		l.latIn = append(l.latIn, d)
	} else {
		l.latOut = append(l.latOut, d)
	}
	l.latMu.Unlock()
	if in {
		l.gotIn.Add(1)
	} else {
		l.gotOut.Add(1)
	}
}

type capVisitor struct {
	conn      *websocket.Conn
	connected chan struct{}
	once      sync.Once
	lost      atomic.Bool
}

func (l *capLoad) lose(v *capVisitor, why string) {
	if l.stopping.Load() {
		return
	}
	if v.lost.CompareAndSwap(false, true) {
		l.dropped.Add(1)
		l.odd("a chat was dropped: %s", why)
	}
}

func (l *capLoad) readVisitor(v *capVisitor) {
	for {
		_, b, err := v.conn.Read(context.Background())
		if err != nil {
			l.lose(v, "visitor socket: "+err.Error())
			return
		}
		var f capFrame
		if err := json.Unmarshal(b, &f); err != nil {
			l.odd("visitor frame %.60q: %v", b, err)
			continue
		}
		switch f.Type {
		case "queued", "delivered", "typing":
		case "connected":
			v.once.Do(func() { close(v.connected) })
		case "message":
			l.received(f.Text, false)
		case "requeued", "closed", "ended":
			l.lose(v, "visitor got "+string(b))
		default:
			l.odd("visitor got %.100s", b)
		}
	}
}

type capConsole struct {
	conn     *websocket.Conn
	mu       sync.Mutex
	contacts []string
}

func (l *capLoad) readConsole(c *capConsole) {
	for {
		_, b, err := c.conn.Read(context.Background())
		if err != nil {
			if !l.stopping.Load() {
				l.odd("console socket: %v", err)
			}
			return
		}
		var f capFrame
		if err := json.Unmarshal(b, &f); err != nil {
			l.odd("console frame %.60q: %v", b, err)
			continue
		}
		switch f.Type {
		case "policy", "availability", "delivered", "typing":
		case "offer":
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := c.conn.Write(ctx, websocket.MessageText, []byte(`{"type":"accept","contact":"`+f.Contact+`"}`))
			cancel()
			if err != nil && !l.stopping.Load() {
				l.odd("accept: %v", err)
			}
		case "connected":
			c.mu.Lock()
			c.contacts = append(c.contacts, f.Contact)
			c.mu.Unlock()
			l.consoleConnected.Add(1)
		case "message":
			l.received(f.Text, true)
		default:
			if !l.stopping.Load() {
				l.odd("console got %.100s", b)
			}
		}
	}
}

// signIn puts n volunteers in the roster and opens their consoles,
// available for chat.
func (r *capRig) signIn(b *testing.B, l *capLoad, n, capacity int) []*capConsole {
	b.Helper()
	tokens := make([]string, n)
	r.centre.mu.Lock()
	for i := range n {
		id := fmt.Sprintf("v-%04d", i)
		r.centre.roster.Volunteers[id] = testVolunteer(id, "oslo", fmt.Sprintf("Vol%d", i), capacity)
	}
	r.centre.mu.Unlock()
	for i := range n {
		// A session as POST /v1/volunteer/login would make one.
		tok, _, err := r.srv.sessions.create(fmt.Sprintf("v-%04d", i))
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = tok
	}
	consoles := make([]*capConsole, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	for range capDialers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				conn, _, err := websocket.Dial(ctx, r.ws+"/v1/console", &websocket.DialOptions{
					HTTPHeader: http.Header{"Cookie": {SessionCookie + "=" + tokens[i]}},
				})
				if err == nil {
					err = conn.Write(ctx, websocket.MessageText, []byte(`{"type":"available","channel":"chat","on":true}`))
				}
				cancel()
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("console %d: %w", i, err) })
					return
				}
				consoles[i] = &capConsole{conn: conn}
				go l.readConsole(consoles[i])
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	return consoles
}

// drive sends one message per capPeriod, from a random phase after start,
// until end.
func (l *capLoad) drive(start, end time.Time, sent *atomic.Int64, send func(ctx context.Context, seq int) error) {
	next := start.Add(rand.N(capPeriod))
	for seq := 1; next.Before(end); seq++ {
		time.Sleep(time.Until(next))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := send(ctx, seq)
		cancel()
		if err != nil {
			if !l.stopping.Load() {
				l.odd("send: %v", err)
			}
			return
		}
		sent.Add(1)
		next = next.Add(capPeriod)
	}
}

func capPercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(float64(len(ds)-1) * p)
	return ds[i]
}

// capMachineBusy is the CPU time the whole machine has spent busy (all
// processes), from /proc/stat; 0 where there is none.
func capMachineBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, f := range fields[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / 100 // USER_HZ is 100 on Linux
}

func capCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkConcurrentChats: how many chats in conversation one node carries.
// 250 volunteers of capacity 8 sign in over the console socket and accept
// every offer; C visitors connect; then for 10 s each visitor and each
// volunteer sends one message every 2 s in each conversation. Per level:
//
//	chats        conversations still connected at the end
//	dropped      chats requeued, closed or cut (must be 0 for the level to hold)
//	held         1 if every chat connected, none dropped and every message arrived
//	msgs/s       messages delivered per second, both directions
//	p50-ms, p99-ms              visitor send -> volunteer receive
//	reply-p50-ms, reply-p99-ms  volunteer send -> visitor receive
//	undelivered  messages sent in the window and never received
//	connect-s    time to connect all C chats (dial, offer, accept)
//	cpu-cores    process CPU (server and all clients) during the window
//	other-cores  CPU the rest of the machine used meanwhile: the latency
//	             tail is only as good as the machine was quiet
func BenchmarkConcurrentChats(b *testing.B) {
	for _, c := range []int{500, 1000, 2000} {
		b.Run(fmt.Sprintf("chats=%d", c), func(b *testing.B) {
			capEnsureFiles(b, uint64(2*(c+capVolunteers)+512))
			for range b.N {
				capConcurrentLevel(b, c)
			}
		})
	}
}

func capConcurrentLevel(b *testing.B, chats int) {
	if chats > capVolunteers*capCapacity {
		b.Fatalf("%d chats exceed the volunteers' capacity %d", chats, capVolunteers*capCapacity)
	}
	r := newCapRig(b)
	l := &capLoad{padding: "hei, jeg trenger noen å snakke med " + strings.Repeat("x", 40)}
	consoles := r.signIn(b, l, capVolunteers, capCapacity)
	visitors := make([]*capVisitor, chats)
	defer func() {
		l.stopping.Store(true)
		for _, v := range visitors {
			if v != nil {
				_ = v.conn.CloseNow()
			}
		}
		for _, c := range consoles {
			_ = c.conn.CloseNow()
		}
		r.close(b)
	}()

	// Connect the chats, a few at a time, so the queue stays short.
	t0 := time.Now()
	var next atomic.Int64
	var notConnected atomic.Int64
	var wg sync.WaitGroup
	for range capDialers * 2 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= chats {
					return
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				conn, _, err := websocket.Dial(ctx, r.ws+capChatPath, nil)
				cancel()
				if err != nil {
					l.odd("visitor dial: %v", err)
					notConnected.Add(1)
					continue
				}
				v := &capVisitor{conn: conn, connected: make(chan struct{})}
				visitors[i] = v
				go l.readVisitor(v)
				select {
				case <-v.connected:
				case <-time.After(30 * time.Second):
					l.odd("a visitor was not connected within 30 s")
					notConnected.Add(1)
				}
			}
		})
	}
	wg.Wait()
	connected := int64(chats) - notConnected.Load()
	if !capWaitFor(30*time.Second, func() bool { return l.consoleConnected.Load() >= connected }) {
		l.odd("consoles saw %d conversations, visitors %d", l.consoleConnected.Load(), connected)
	}
	connectTime := time.Since(t0)
	if st := r.centre.sb.Stats().Total(); int64(st.InProgress) != connected {
		l.odd("the switchboard has %d conversations in progress, want %d", st.InProgress, connected)
	}

	// The window: every side of every conversation talks.
	cpu0, machine0, start := capCPU(), capMachineBusy(), time.Now()
	end := start.Add(capWindow)
	for _, v := range visitors {
		if v == nil {
			continue
		}
		wg.Go(func() {
			select {
			case <-v.connected:
			default:
				return
			}
			l.drive(start, end, &l.sentIn, func(ctx context.Context, seq int) error {
				f := `{"type":"message","id":"c` + strconv.Itoa(seq) + `","text":"` + l.text() + `"}`
				return v.conn.Write(ctx, websocket.MessageText, []byte(f))
			})
		})
	}
	for _, c := range consoles {
		c.mu.Lock()
		contacts := slices.Clone(c.contacts)
		c.mu.Unlock()
		for _, contact := range contacts {
			wg.Go(func() {
				l.drive(start, end, &l.sentOut, func(ctx context.Context, seq int) error {
					f := `{"type":"message","contact":"` + contact + `","id":"v` + strconv.Itoa(seq) + `","text":"` + l.text() + `"}`
					return c.conn.Write(ctx, websocket.MessageText, []byte(f))
				})
			})
		}
	}
	wg.Wait()
	// Let what is in flight arrive.
	capWaitFor(5*time.Second, func() bool {
		return l.gotIn.Load() >= l.sentIn.Load() && l.gotOut.Load() >= l.sentOut.Load()
	})
	elapsed, cpu, machine := time.Since(start), capCPU()-cpu0, capMachineBusy()-machine0
	still := r.centre.sb.Stats().Total().InProgress

	l.latMu.Lock()
	in, out := slices.Clone(l.latIn), slices.Clone(l.latOut)
	l.latMu.Unlock()
	slices.Sort(in)
	slices.Sort(out)
	undelivered := l.sentIn.Load() - l.gotIn.Load() + l.sentOut.Load() - l.gotOut.Load()
	delivered := l.gotIn.Load() + l.gotOut.Load()
	dropped := l.dropped.Load()
	held := 0.0
	if connected == int64(chats) && dropped == 0 && undelivered == 0 && still == chats {
		held = 1
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(float64(still), "chats")
	b.ReportMetric(float64(dropped), "dropped")
	b.ReportMetric(held, "held")
	b.ReportMetric(float64(delivered)/capWindow.Seconds(), "msgs/s")
	b.ReportMetric(ms(capPercentile(in, 0.50)), "p50-ms")
	b.ReportMetric(ms(capPercentile(in, 0.99)), "p99-ms")
	b.ReportMetric(ms(capPercentile(out, 0.50)), "reply-p50-ms")
	b.ReportMetric(ms(capPercentile(out, 0.99)), "reply-p99-ms")
	b.ReportMetric(float64(undelivered), "undelivered")
	b.ReportMetric(connectTime.Seconds(), "connect-s")
	b.ReportMetric(cpu.Seconds()/elapsed.Seconds(), "cpu-cores")
	if machine > 0 {
		b.ReportMetric(max(machine-cpu, 0).Seconds()/elapsed.Seconds(), "other-cores")
	}
	b.Logf("%d/%d chats connected in %v, %d in progress at the end, %d dropped; %d+%d messages sent, %d delivered "+
		"(%.0f/s), %d undelivered; visitor->volunteer p50 %v p99 %v max %v; volunteer->visitor p50 %v p99 %v; "+
		"%.2f CPU cores of %d (other processes %.2f); %d oddities",
		connected, chats, connectTime.Round(time.Millisecond), still, dropped, l.sentIn.Load(), l.sentOut.Load(), delivered,
		float64(delivered)/capWindow.Seconds(), undelivered,
		capPercentile(in, 0.50).Round(10*time.Microsecond), capPercentile(in, 0.99).Round(10*time.Microsecond),
		capPercentile(in, 1).Round(10*time.Microsecond),
		capPercentile(out, 0.50).Round(10*time.Microsecond), capPercentile(out, 0.99).Round(10*time.Microsecond),
		cpu.Seconds()/elapsed.Seconds(), runtime.NumCPU(), max(machine-cpu, 0).Seconds()/elapsed.Seconds(), l.oddities.Load())
	if l.oddities.Load() > 0 {
		l.firstOddity.Do(func() {}) // waits for the first oddity's text
		b.Logf("first oddity: %s", l.oddity)
	}
}
