package consensus

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftbench "github.com/hashicorp/raft/bench"
)

func testStore(tb testing.TB) *Store {
	tb.Helper()
	s, err := OpenStore(tb.TempDir())
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close: %v", err)
		}
	})
	return s
}

func testRaftLog(idx uint64, data string) *raft.Log {
	return &raft.Log{
		Data:  []byte(data),
		Index: idx,
	}
}

// requireLogEqual compares field by field because AppendedAt must be
// compared with Equal (the store normalises the zone to UTC).
func requireLogEqual(tb testing.TB, got, want *raft.Log) {
	tb.Helper()
	if got.Index != want.Index || got.Term != want.Term || got.Type != want.Type ||
		!bytes.Equal(got.Data, want.Data) || (got.Data == nil) != (want.Data == nil) ||
		!bytes.Equal(got.Extensions, want.Extensions) || (got.Extensions == nil) != (want.Extensions == nil) ||
		!got.AppendedAt.Equal(want.AppendedAt) {
		tb.Fatalf("log mismatch:\n got  %#v\n want %#v", got, want)
	}
}

// --- Ported from hashicorp/raft-boltdb bolt_store_test.go ---

func TestBoltStore_Implements(t *testing.T) {
	var store any = &Store{}
	if _, ok := store.(raft.StableStore); !ok {
		t.Fatalf("Store does not implement raft.StableStore")
	}
	if _, ok := store.(raft.LogStore); !ok {
		t.Fatalf("Store does not implement raft.LogStore")
	}
}

func TestBoltStore_FirstIndex(t *testing.T) {
	store := testStore(t)

	// Should get 0 index on empty log
	idx, err := store.FirstIndex()
	if err != nil {
		t.Fatalf("err: %s", err)
	}
	if idx != 0 {
		t.Fatalf("bad: %v", idx)
	}

	logs := []*raft.Log{
		testRaftLog(1, "log1"),
		testRaftLog(2, "log2"),
		testRaftLog(3, "log3"),
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatalf("bad: %s", err)
	}

	idx, err = store.FirstIndex()
	if err != nil {
		t.Fatalf("err: %s", err)
	}
	if idx != 1 {
		t.Fatalf("bad: %d", idx)
	}
}

func TestBoltStore_LastIndex(t *testing.T) {
	store := testStore(t)

	// Should get 0 index on empty log
	idx, err := store.LastIndex()
	if err != nil {
		t.Fatalf("err: %s", err)
	}
	if idx != 0 {
		t.Fatalf("bad: %v", idx)
	}

	logs := []*raft.Log{
		testRaftLog(1, "log1"),
		testRaftLog(2, "log2"),
		testRaftLog(3, "log3"),
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatalf("bad: %s", err)
	}

	idx, err = store.LastIndex()
	if err != nil {
		t.Fatalf("err: %s", err)
	}
	if idx != 3 {
		t.Fatalf("bad: %d", idx)
	}
}

func TestBoltStore_GetLog(t *testing.T) {
	store := testStore(t)

	log := new(raft.Log)

	// Should return an error on non-existent log; raft compares with ==.
	if err := store.GetLog(1, log); err != raft.ErrLogNotFound {
		t.Fatalf("expected raft log not found error, got: %v", err)
	}

	logs := []*raft.Log{
		testRaftLog(1, "log1"),
		testRaftLog(2, "log2"),
		testRaftLog(3, "log3"),
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatalf("bad: %s", err)
	}

	if err := store.GetLog(2, log); err != nil {
		t.Fatalf("err: %s", err)
	}
	if !reflect.DeepEqual(log, logs[1]) {
		t.Fatalf("bad: %#v", log)
	}

	// Still not found past the end.
	if err := store.GetLog(4, log); err != raft.ErrLogNotFound {
		t.Fatalf("expected raft log not found error, got: %v", err)
	}
}

func TestBoltStore_SetLog(t *testing.T) {
	store := testStore(t)

	log := &raft.Log{
		Data:  []byte("log1"),
		Index: 1,
	}
	if err := store.StoreLog(log); err != nil {
		t.Fatalf("err: %s", err)
	}

	result := new(raft.Log)
	if err := store.GetLog(1, result); err != nil {
		t.Fatalf("err: %s", err)
	}
	if !reflect.DeepEqual(log, result) {
		t.Fatalf("bad: %v", result)
	}
}

func TestBoltStore_SetLogs(t *testing.T) {
	store := testStore(t)

	logs := []*raft.Log{
		testRaftLog(1, "log1"),
		testRaftLog(2, "log2"),
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatalf("err: %s", err)
	}

	result1, result2 := new(raft.Log), new(raft.Log)
	if err := store.GetLog(1, result1); err != nil {
		t.Fatalf("err: %s", err)
	}
	if !reflect.DeepEqual(logs[0], result1) {
		t.Fatalf("bad: %#v", result1)
	}
	if err := store.GetLog(2, result2); err != nil {
		t.Fatalf("err: %s", err)
	}
	if !reflect.DeepEqual(logs[1], result2) {
		t.Fatalf("bad: %#v", result2)
	}
}

func TestBoltStore_DeleteRange(t *testing.T) {
	store := testStore(t)

	log1 := testRaftLog(1, "log1")
	log2 := testRaftLog(2, "log2")
	log3 := testRaftLog(3, "log3")
	logs := []*raft.Log{log1, log2, log3}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatalf("err: %s", err)
	}

	if err := store.DeleteRange(1, 2); err != nil {
		t.Fatalf("err: %s", err)
	}

	if err := store.GetLog(1, new(raft.Log)); err != raft.ErrLogNotFound {
		t.Fatalf("should have deleted log1")
	}
	if err := store.GetLog(2, new(raft.Log)); err != raft.ErrLogNotFound {
		t.Fatalf("should have deleted log2")
	}
	// Not in the original: the upper end is inclusive but nothing beyond.
	got := new(raft.Log)
	if err := store.GetLog(3, got); err != nil {
		t.Fatalf("log3 should survive: %v", err)
	}
	if !reflect.DeepEqual(got, log3) {
		t.Fatalf("bad: %#v", got)
	}
}

func TestBoltStore_Set_Get(t *testing.T) {
	store := testStore(t)

	// Returns error on non-existent key
	_, err := store.Get([]byte("bad"))
	if err != ErrKeyNotFound {
		t.Fatalf("expected not found error, got: %q", err)
	}
	// raft detects a fresh node with err.Error() == "not found".
	if err.Error() != "not found" {
		t.Fatalf("error text = %q, want exactly %q", err.Error(), "not found")
	}

	k, v := []byte("hello"), []byte("world")
	if err := store.Set(k, v); err != nil {
		t.Fatalf("err: %s", err)
	}

	val, err := store.Get(k)
	if err != nil {
		t.Fatalf("err: %s", err)
	}
	if !bytes.Equal(val, v) {
		t.Fatalf("bad: %v", val)
	}
}

func TestBoltStore_SetUint64_GetUint64(t *testing.T) {
	store := testStore(t)

	// Returns error on non-existent key
	_, err := store.GetUint64([]byte("bad"))
	if err != ErrKeyNotFound {
		t.Fatalf("expected not found error, got: %q", err)
	}
	if err.Error() != "not found" {
		t.Fatalf("error text = %q, want exactly %q", err.Error(), "not found")
	}

	k, v := []byte("abc"), uint64(123)
	if err := store.SetUint64(k, v); err != nil {
		t.Fatalf("err: %s", err)
	}

	val, err := store.GetUint64(k)
	if err != nil {
		t.Fatalf("err: %s", err)
	}
	if val != v {
		t.Fatalf("bad: %v", val)
	}
}

// --- Store-specific behaviour ---

func TestStoreLogRoundTripAllFields(t *testing.T) {
	store := testStore(t)

	zone := time.FixedZone("helpline", 5*3600+1800)
	logs := []*raft.Log{
		{Index: 1, Term: 7, Type: raft.LogConfiguration, Data: []byte("cfg"), Extensions: []byte("ext"),
			AppendedAt: time.Date(2025, 3, 4, 5, 6, 7, 891011, zone)},
		{Index: 2, Term: 7, Type: raft.LogNoop},                                              // nil slices, zero time
		{Index: 3, Term: 8, Type: raft.LogCommand, Data: []byte{}, Extensions: []byte{}},     // empty, not nil
		{Index: 4, Term: 8, Type: raft.LogBarrier, AppendedAt: time.Unix(-1, 999999999)},     // pre-epoch
		{Index: 5, Term: math.MaxUint64, Type: raft.LogType(255), Data: make([]byte, 1<<20)}, // large
		{Index: math.MaxUint64, Term: 1, Data: []byte("last possible index")},
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	for _, want := range logs {
		var got raft.Log
		if err := store.GetLog(want.Index, &got); err != nil {
			t.Fatalf("get %d: %v", want.Index, err)
		}
		requireLogEqual(t, &got, want)
	}
	if last, err := store.LastIndex(); err != nil || last != math.MaxUint64 {
		t.Fatalf("LastIndex = %d, %v", last, err)
	}

	// DeleteRange up to MaxUint64 must not overflow its exclusive end key.
	if err := store.DeleteRange(5, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	if last, err := store.LastIndex(); err != nil || last != 4 {
		t.Fatalf("LastIndex after tail delete = %d, %v", last, err)
	}
}

func TestStoreDoesNotAliasCallerBuffers(t *testing.T) {
	store := testStore(t)

	in := &raft.Log{Index: 1, Data: []byte("abc"), Extensions: []byte("xyz")}
	if err := store.StoreLog(in); err != nil {
		t.Fatal(err)
	}
	in.Data[0], in.Extensions[0] = 'Z', 'Z'

	var out raft.Log
	if err := store.GetLog(1, &out); err != nil {
		t.Fatal(err)
	}
	if string(out.Data) != "abc" || string(out.Extensions) != "xyz" {
		t.Fatalf("store aliased caller buffers: %q %q", out.Data, out.Extensions)
	}
	out.Data[0] = 'Q'
	var again raft.Log
	if err := store.GetLog(1, &again); err != nil {
		t.Fatal(err)
	}
	if string(again.Data) != "abc" {
		t.Fatalf("returned slice aliases store memory: %q", again.Data)
	}

	key, val := []byte("k"), []byte("v1")
	if err := store.Set(key, val); err != nil {
		t.Fatal(err)
	}
	val[0] = 'X'
	got, err := store.Get(key)
	if err != nil || string(got) != "v1" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	got[0] = 'Y'
	if got, _ := store.Get(key); string(got) != "v1" {
		t.Fatalf("Get result aliases store memory: %q", got)
	}
}

func TestStoreDeleteRangeBounds(t *testing.T) {
	store := testStore(t)

	var logs []*raft.Log
	for i := uint64(1); i <= 10; i++ {
		logs = append(logs, testRaftLog(i, fmt.Sprint("log", i)))
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	present := func(idx uint64) bool {
		err := store.GetLog(idx, new(raft.Log))
		if err != nil && err != raft.ErrLogNotFound {
			t.Fatalf("get %d: %v", idx, err)
		}
		return err == nil
	}

	// min > max is a no-op rather than a reversed range.
	if err := store.DeleteRange(6, 5); err != nil {
		t.Fatal(err)
	}
	// Single-element range.
	if err := store.DeleteRange(5, 5); err != nil {
		t.Fatal(err)
	}
	// Prefix truncation as raft does after a snapshot, starting below the
	// first index.
	if err := store.DeleteRange(0, 3); err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 10; i++ {
		want := i > 3 && i != 5
		if present(i) != want {
			t.Fatalf("index %d present=%v want %v", i, !want, want)
		}
	}
	if first, err := store.FirstIndex(); err != nil || first != 4 {
		t.Fatalf("FirstIndex = %d, %v", first, err)
	}
	// Suffix truncation as raft does on a follower log conflict.
	if err := store.DeleteRange(8, 10); err != nil {
		t.Fatal(err)
	}
	if last, err := store.LastIndex(); err != nil || last != 7 {
		t.Fatalf("LastIndex = %d, %v", last, err)
	}
	// Everything.
	if err := store.DeleteRange(0, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	first, err1 := store.FirstIndex()
	last, err2 := store.LastIndex()
	if first != 0 || last != 0 || err1 != nil || err2 != nil {
		t.Fatalf("after deleting all: first=%d (%v) last=%d (%v)", first, err1, last, err2)
	}
}

func TestStoreKeyspacesAreDisjoint(t *testing.T) {
	store := testStore(t)

	// A stable key that looks like a log key must not show up as a log.
	k := logKey(42)
	if err := store.Set(k[:], []byte("not a log")); err != nil {
		t.Fatal(err)
	}
	if err := store.SetUint64([]byte{0xff, 0xff}, 1); err != nil {
		t.Fatal(err)
	}
	if err := store.Set(nil, []byte("empty key")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func() (uint64, error){store.FirstIndex, store.LastIndex} {
		if idx, err := f(); err != nil || idx != 0 {
			t.Fatalf("index = %d, %v; stable keys leaked into the log keyspace", idx, err)
		}
	}
	if err := store.StoreLog(testRaftLog(1, "x")); err != nil {
		t.Fatal(err)
	}
	if err := store.DeleteRange(0, math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	if v, err := store.Get(k[:]); err != nil || string(v) != "not a log" {
		t.Fatalf("DeleteRange touched the stable keyspace: %q, %v", v, err)
	}
	if v, err := store.Get(nil); err != nil || string(v) != "empty key" {
		t.Fatalf("Get(nil) = %q, %v", v, err)
	}
}

func TestStoreEmptyStableValue(t *testing.T) {
	store := testStore(t)
	if err := store.Set([]byte("LastVoteCand"), nil); err != nil {
		t.Fatal(err)
	}
	v, err := store.Get([]byte("LastVoteCand"))
	if err != nil || v == nil || len(v) != 0 {
		t.Fatalf("Get = %#v, %v; want empty non-nil slice", v, err)
	}
	if _, err := store.GetUint64([]byte("LastVoteCand")); err == nil {
		t.Fatal("GetUint64 of a 0-byte value should fail")
	}
}

func TestStoreReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 100; i++ {
		logs = append(logs, &raft.Log{
			Index: i, Term: i / 10, Type: raft.LogCommand,
			Data: []byte(fmt.Sprint("entry-", i)), Extensions: []byte{byte(i)},
			AppendedAt: time.Unix(1_700_000_000+int64(i), int64(i)),
		})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 9); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-b")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	check := func(first, last uint64) {
		t.Helper()
		if f, err := s.FirstIndex(); err != nil || f != first {
			t.Fatalf("FirstIndex = %d, %v; want %d", f, err, first)
		}
		if l, err := s.LastIndex(); err != nil || l != last {
			t.Fatalf("LastIndex = %d, %v; want %d", l, err, last)
		}
		for _, want := range logs {
			var got raft.Log
			err := s.GetLog(want.Index, &got)
			if want.Index < first || want.Index > last {
				if err != raft.ErrLogNotFound {
					t.Fatalf("index %d: err = %v, want ErrLogNotFound", want.Index, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("index %d: %v", want.Index, err)
			}
			requireLogEqual(t, &got, want)
		}
		if v, err := s.GetUint64([]byte("CurrentTerm")); err != nil || v != 9 {
			t.Fatalf("CurrentTerm = %d, %v", v, err)
		}
		if v, err := s.Get([]byte("LastVoteCand")); err != nil || string(v) != "node-b" {
			t.Fatalf("LastVoteCand = %q, %v", v, err)
		}
	}
	check(1, 100)

	if err := s.DeleteRange(1, 40); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(91, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(41, 90)
}

func TestStoreClosed(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v, want nil", err)
	}
	checks := map[string]error{}
	_, checks["FirstIndex"] = s.FirstIndex()
	_, checks["LastIndex"] = s.LastIndex()
	checks["GetLog"] = s.GetLog(1, new(raft.Log))
	checks["StoreLog"] = s.StoreLog(testRaftLog(1, "x"))
	checks["DeleteRange"] = s.DeleteRange(1, 2)
	checks["Set"] = s.Set([]byte("k"), []byte("v"))
	_, checks["Get"] = s.Get([]byte("k"))
	checks["SetUint64"] = s.SetUint64([]byte("k"), 1)
	_, checks["GetUint64"] = s.GetUint64([]byte("k"))
	for name, err := range checks {
		if !errors.Is(err, ErrStoreClosed) {
			t.Errorf("%s after Close: err = %v, want ErrStoreClosed", name, err)
		}
	}
}

func TestStoreOpenErrors(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// A second opener must be refused: two writers on one raft log would
	// silently diverge.
	if s2, err := OpenStore(dir); err == nil {
		s2.Close()
		t.Fatal("second OpenStore on a locked dir succeeded")
	} else if !strings.HasPrefix(err.Error(), "open raft store: ") {
		t.Fatalf("error not wrapped with operation: %v", err)
	}

	file := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenStore(file); err == nil {
		t.Fatal("OpenStore on a regular file succeeded")
	}
}

func TestStoreRejectsCorruptValues(t *testing.T) {
	store := testStore(t)

	good, err := appendLog(nil, testRaftLog(2, "two"))
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := logKey(1), logKey(3)
	// Index 1 holds garbage; index 3 holds a valid entry claiming index 2.
	if err := store.db.Set(k1[:], []byte{1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	if err := store.db.Set(k2[:], good, nil); err != nil {
		t.Fatal(err)
	}
	for _, idx := range []uint64{1, 3} {
		var l raft.Log
		err := store.GetLog(idx, &l)
		if !errors.Is(err, ErrCorruptLog) {
			t.Fatalf("GetLog(%d) = %v, want ErrCorruptLog", idx, err)
		}
		if !reflect.DeepEqual(l, raft.Log{}) {
			t.Fatalf("GetLog(%d) modified its output on error: %#v", idx, l)
		}
	}
	if err := store.Set([]byte("CurrentTerm"), []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() == "not found" {
		t.Fatalf("GetUint64 of a 3-byte value = %v, want a corruption error", err)
	}
}

func TestStoreNilLogRejected(t *testing.T) {
	store := testStore(t)
	if err := store.StoreLogs([]*raft.Log{testRaftLog(1, "a"), nil}); err == nil {
		t.Fatal("StoreLogs with a nil entry succeeded")
	}
	// The batch is atomic: the good entry must not have been written.
	if err := store.GetLog(1, new(raft.Log)); err != raft.ErrLogNotFound {
		t.Fatalf("partial batch persisted: %v", err)
	}
	if err := store.StoreLogs(nil); err != nil {
		t.Fatalf("StoreLogs(nil) = %v", err)
	}
}

func TestStoreConcurrentUse(t *testing.T) {
	store := testStore(t)
	const writers, perWriter = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				idx := uint64(w*perWriter + i + 1)
				if err := store.StoreLog(testRaftLog(idx, fmt.Sprint(idx))); err != nil {
					t.Error(err)
					return
				}
				if _, err := store.LastIndex(); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if last, err := store.LastIndex(); err != nil || last != writers*perWriter {
		t.Fatalf("LastIndex = %d, %v", last, err)
	}
}

// countFSM counts applied commands; enough to prove raft replays the log
// from this store after a restart.
type countFSM struct {
	mu sync.Mutex
	n  int
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l.Type == raft.LogCommand {
		f.n++
	}
	return nil
}

func (f *countFSM) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("unsupported") }
func (f *countFSM) Restore(io.ReadCloser) error         { return errors.New("unsupported") }

// TestStoreWithRaft runs a real single-node raft on the store twice: the
// first run exercises the "not found" contract in BootstrapCluster, the
// second proves raft recovers its term, vote and log from disk.
func TestStoreWithRaft(t *testing.T) {
	dir := t.TempDir()
	const commands = 25

	run := func(bootstrap bool, apply int) (fsm *countFSM, term uint64) {
		t.Helper()
		store, err := OpenStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()

		conf := raft.DefaultConfig()
		conf.LocalID = "node-1"
		conf.LogOutput = io.Discard
		conf.HeartbeatTimeout = 50 * time.Millisecond
		conf.ElectionTimeout = 50 * time.Millisecond
		conf.LeaderLeaseTimeout = 50 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		snaps := raft.NewDiscardSnapshotStore()
		addr, trans := raft.NewInmemTransport("")
		defer trans.Close()

		existing, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			t.Fatalf("HasExistingState: %v", err)
		}
		if existing == bootstrap {
			t.Fatalf("HasExistingState = %v on bootstrap=%v", existing, bootstrap)
		}
		if bootstrap {
			cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
			if err := raft.BootstrapCluster(conf, store, store, snaps, trans, cfg); err != nil {
				t.Fatalf("bootstrap: %v", err)
			}
		}

		fsm = &countFSM{}
		r, err := raft.NewRaft(conf, fsm, store, store, snaps, trans)
		if err != nil {
			t.Fatalf("NewRaft: %v", err)
		}
		defer func() {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("shutdown: %v", err)
			}
		}()
		select {
		case <-r.LeaderCh():
		case <-time.After(10 * time.Second):
			t.Fatal("no leader elected")
		}
		for i := range apply {
			if err := r.Apply([]byte(fmt.Sprint("cmd-", i)), 5*time.Second).Error(); err != nil {
				t.Fatalf("apply: %v", err)
			}
		}
		// Barrier waits until everything committed so far, including
		// entries replayed from disk, has reached the FSM.
		if err := r.Barrier(5 * time.Second).Error(); err != nil {
			t.Fatalf("barrier: %v", err)
		}
		term, err = strconv.ParseUint(r.Stats()["term"], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return fsm, term
	}

	fsm1, term1 := run(true, commands)
	if got := fsm1.count(); got != commands {
		t.Fatalf("first run applied %d commands, want %d", got, commands)
	}
	fsm2, term2 := run(false, 0)
	if got := fsm2.count(); got != commands {
		t.Fatalf("after restart FSM replayed %d commands, want %d", got, commands)
	}
	if term2 <= term1 {
		t.Fatalf("term after restart = %d, want > %d (term must persist)", term2, term1)
	}
}

// --- Crash safety: kill -9 in the middle of writes ---

const (
	kill9DirEnv  = "HELPMESH_KILL9_DIR"
	kill9SeedEnv = "HELPMESH_KILL9_SEED"
	// kill9IterationsEnv overrides the iteration count for soak runs.
	kill9IterationsEnv = "HELPMESH_KILL9_ITERATIONS"
	// kill9Keep is how many recent entries the writer retains when it
	// truncates the head of the log, mimicking raft's TrailingLogs.
	kill9Keep = 200
)

var kill9TermKey = []byte("CurrentTerm")

// kill9Entry derives an entry entirely from its index so the parent can
// check content, not just presence. Every 64th entry is large so that
// memtable flushes and WAL rotation happen while the writer is killed.
func kill9Entry(idx uint64) *raft.Log {
	l := &raft.Log{
		Index:      idx,
		Term:       idx/97 + 1,
		Type:       raft.LogType(idx % 6),
		Data:       bytes.Repeat(fmt.Appendf(nil, "helpmesh-%d;", idx), int(idx%13)+1),
		AppendedAt: time.Unix(1_700_000_000+int64(idx), int64(idx%1_000_000_000)).UTC(),
	}
	if idx%64 == 0 {
		l.Data = bytes.Repeat([]byte{byte(idx)}, 48<<10)
	}
	if idx%3 != 0 {
		l.Extensions = fmt.Appendf(nil, "ext-%d", idx)
	}
	return l
}

// TestKill9Writer is the child half of TestStoreSurvivesKill9. It appends
// until killed, printing a line only after each durable write returned.
func TestKill9Writer(t *testing.T) {
	dir := os.Getenv(kill9DirEnv)
	if dir == "" {
		t.Skip("child process for TestStoreSurvivesKill9")
	}
	seed, err := strconv.ParseUint(os.Getenv(kill9SeedEnv), 10, 64)
	if err != nil {
		t.Fatalf("bad %s: %v", kill9SeedEnv, err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x6865_6c70))

	// Wait for the parent's go-ahead: until then the previous writer, or
	// the parent's verification, holds the store.
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		t.Skipf("parent went away before releasing this writer: %v", err)
	}
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if first == 0 {
		first = 1
	}

	ack := func(kind string, v uint64) {
		// Unbuffered write: the line is in the pipe before the next write
		// starts, so whatever the parent reads was truly acknowledged.
		if _, err := fmt.Fprintf(os.Stdout, "%s %d\n", kind, v); err != nil {
			t.Fatal(err)
		}
	}

	// The parent normally kills within milliseconds; the deadline only
	// stops an orphan from running forever.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		n := 1 + rng.IntN(20)
		logs := make([]*raft.Log, n)
		for i := range logs {
			logs[i] = kill9Entry(last + 1 + uint64(i))
		}
		if err := s.StoreLogs(logs); err != nil {
			t.Fatal(err)
		}
		last += uint64(n)
		ack("log", last)

		if err := s.SetUint64(kill9TermKey, last); err != nil {
			t.Fatal(err)
		}
		ack("stable", last)

		if last-first+1 >= 2*kill9Keep {
			upTo := last - kill9Keep
			if err := s.DeleteRange(first, upTo); err != nil {
				t.Fatal(err)
			}
			first = upTo + 1
			ack("trunc", upTo)
		}
	}
}

type kill9Acks struct {
	log, stable, trunc uint64
	lines              int
}

// kill9Child is a writer process that has been started but waits for a
// line on stdin before opening the store. Starting the next child while the
// current one runs hides the test binary's start-up cost.
type kill9Child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr bytes.Buffer
	done   bool
}

func startKill9Child(t *testing.T, exe, dir string, seed uint64) *kill9Child {
	t.Helper()
	c := &kill9Child{lines: make(chan string)}
	c.cmd = exec.Command(exe, "-test.run=^TestKill9Writer$", "-test.count=1", "-test.timeout=60s")
	c.cmd.Env = append(os.Environ(), kill9DirEnv+"="+dir, kill9SeedEnv+"="+strconv.FormatUint(seed, 10))
	c.cmd.Stderr = &c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	// Reap the child whatever happens to the test.
	t.Cleanup(func() { c.stop() })
	return c
}

// stop kills the child if still running and waits for it; it is idempotent.
func (c *kill9Child) stop() error {
	if c.done {
		return nil
	}
	c.done = true
	_ = c.cmd.Process.Kill()
	for range c.lines {
	}
	c.stdin.Close()
	return c.cmd.Wait()
}

// run lets the child open the store, kills it delay after its first ack
// and returns the highest acknowledged values.
func (c *kill9Child) run(t *testing.T, delay time.Duration) kill9Acks {
	t.Helper()
	var acks kill9Acks
	var other []string
	record := func(line string) {
		kind, num, ok := strings.Cut(line, " ")
		v, err := strconv.ParseUint(num, 10, 64)
		if !ok || err != nil {
			other = append(other, line)
			return
		}
		switch kind {
		case "log":
			acks.log = max(acks.log, v)
		case "stable":
			acks.stable = max(acks.stable, v)
		case "trunc":
			acks.trunc = max(acks.trunc, v)
		default:
			other = append(other, line)
			return
		}
		acks.lines++
	}
	fail := func(format string, args ...any) {
		t.Helper()
		_ = c.stop()
		t.Fatalf(format+"\nchild stdout: %q\nchild stderr: %s",
			append(args, other, c.stderr.String())...)
	}

	if _, err := io.WriteString(c.stdin, "go\n"); err != nil {
		fail("release child: %v", err)
	}
	// Kill only once the writer is demonstrably mid-stream.
	select {
	case line, ok := <-c.lines:
		if !ok {
			fail("child exited before its first ack")
		}
		record(line)
	case <-time.After(60 * time.Second):
		fail("no ack from child within 60s")
	}
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for killed := false; !killed; {
		select {
		case line, ok := <-c.lines:
			if !ok {
				fail("child exited on its own before being killed")
			}
			record(line)
		case <-timer.C:
			if err := c.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	// Lines still in the pipe were written, hence acknowledged, before
	// the kill landed; they count too.
	for line := range c.lines {
		record(line)
	}
	err := c.stop()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode() != -1 {
		// ExitCode is -1 only when the process died from a signal.
		t.Fatalf("child did not die from SIGKILL: %v\nchild stdout: %q\nchild stderr: %s",
			err, other, c.stderr.String())
	}
	return acks
}

// TestStoreSurvivesKill9 repeatedly SIGKILLs a writer process mid-stream and
// checks that every write it acknowledged is on disk with exact content.
// Note that SIGKILL leaves the OS page cache intact, so this proves the
// store's acknowledgement ordering and atomicity and pebble's recovery of a
// torn WAL tail, not fsync against power loss (pebble.Sync covers that).
func TestStoreSurvivesKill9(t *testing.T) {
	if os.Getenv(kill9DirEnv) != "" {
		t.Skip("running as kill -9 child")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Each child pays ~0.3s of process start-up under -race, so 50 keeps
	// the test cheap enough to always run; raise it for a soak.
	iterations := 50
	if v := os.Getenv(kill9IterationsEnv); v != "" {
		if iterations, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(kill9SeedEnv); v != "" {
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (rerun with %s=%d)", seed, kill9SeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0x6d657368))

	dir := t.TempDir()
	start := time.Now()
	var acked kill9Acks
	losses := 0
	lost := func(format string, args ...any) {
		t.Helper()
		losses++
		t.Errorf(format, args...)
	}
	checked, ran := 0, 0
	next := startKill9Child(t, exe, dir, rng.Uint64())
	for iter := 0; iter < iterations; iter++ {
		ran++
		delay := time.Duration(5+rng.IntN(56)) * time.Millisecond
		cur := next
		if iter+1 < iterations {
			next = startKill9Child(t, exe, dir, rng.Uint64())
		}
		a := cur.run(t, delay)
		// A child resumes from LastIndex, so its first ack (always a log
		// ack) lands above earlier ones unless acknowledged entries were
		// lost. The stable and trunc acks may be absent if the kill was quick.
		if a.log <= acked.log {
			lost("iteration %d: child resumed at or below earlier acks: %+v vs %+v", iter, a, acked)
		}
		acked.log = a.log
		acked.stable = max(acked.stable, a.stable)
		acked.trunc = max(acked.trunc, a.trunc)
		acked.lines += a.lines

		s, err := OpenStore(dir)
		if err != nil {
			t.Fatalf("iteration %d: reopen after kill: %v", iter, err)
		}
		first, err := s.FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		last, err := s.LastIndex()
		if err != nil {
			t.Fatal(err)
		}
		if last < acked.log {
			lost("iteration %d: LastIndex %d < acknowledged %d", iter, last, acked.log)
		}
		if acked.trunc > 0 && first <= acked.trunc {
			lost("iteration %d: FirstIndex %d but truncation through %d was acknowledged", iter, first, acked.trunc)
		}
		if first > 1 && last-first+1 < kill9Keep {
			lost("iteration %d: only %d entries left (%d..%d), writer always keeps %d",
				iter, last-first+1, first, last, kill9Keep)
		}
		for idx := first; idx <= last && first > 0; idx++ {
			var got raft.Log
			if err := s.GetLog(idx, &got); err != nil {
				lost("iteration %d: index %d in [%d, %d]: %v", iter, idx, first, last, err)
				continue
			}
			want := kill9Entry(idx)
			if !reflect.DeepEqual(&got, want) {
				lost("iteration %d: index %d content mismatch:\n got  %#v\n want %#v", iter, idx, &got, want)
			}
			checked++
		}
		term, err := s.GetUint64(kill9TermKey)
		if err != nil && !(errors.Is(err, ErrKeyNotFound) && acked.stable == 0) {
			t.Fatalf("iteration %d: GetUint64: %v", iter, err)
		}
		if term < acked.stable {
			lost("iteration %d: stable key %d < acknowledged %d", iter, term, acked.stable)
		}
		if term > last {
			lost("iteration %d: stable key %d is ahead of the log (%d); the log write it followed was lost", iter, term, last)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			break
		}
	}
	t.Logf("kill -9 iterations=%d final acked index=%d ack lines=%d entry checks=%d losses=%d elapsed=%s",
		ran, acked.log, acked.lines, checked, losses, time.Since(start).Round(time.Millisecond))
	if losses != 0 {
		t.Fatalf("%d acknowledged writes lost", losses)
	}
}

// --- Decoder robustness ---

func FuzzDecodeLog(f *testing.F) {
	seeds := []*raft.Log{
		{},
		testRaftLog(1, "log1"),
		{Index: 3, Term: 2, Type: raft.LogConfiguration, Data: []byte{}, Extensions: []byte("x"),
			AppendedAt: time.Unix(1_700_000_000, 5)},
		kill9Entry(65),
	}
	for _, l := range seeds {
		b, err := appendLog(nil, l)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{logFormatV1, knownFlags})
	f.Add([]byte{logFormatV1, flagData, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, b []byte) {
		var l raft.Log
		if err := decodeLog(b, &l); err != nil {
			if !errors.Is(err, ErrCorruptLog) {
				t.Fatalf("decode error does not wrap ErrCorruptLog: %v", err)
			}
			return
		}
		// Accepted input must be canonical...
		again, err := appendLog(nil, &l)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("non-canonical encoding accepted:\n in  %x\n out %x", b, again)
		}
		// ...and the decoded entry must not alias the input buffer, which
		// in the store belongs to pebble.
		data, ext := bytes.Clone(l.Data), bytes.Clone(l.Extensions)
		for i := range b {
			b[i] ^= 0xff
		}
		if !bytes.Equal(l.Data, data) || !bytes.Equal(l.Extensions, ext) {
			t.Fatal("decoded log aliases the input buffer")
		}
	})
}

// --- Benchmarks: hashicorp/raft's shared store benchmarks, plus batching ---

func BenchmarkStore_FirstIndex(b *testing.B)  { raftbench.FirstIndex(b, testStore(b)) }
func BenchmarkStore_LastIndex(b *testing.B)   { raftbench.LastIndex(b, testStore(b)) }
func BenchmarkStore_GetLog(b *testing.B)      { raftbench.GetLog(b, testStore(b)) }
func BenchmarkStore_StoreLog(b *testing.B)    { raftbench.StoreLog(b, testStore(b)) }
func BenchmarkStore_StoreLogs(b *testing.B)   { raftbench.StoreLogs(b, testStore(b)) }
func BenchmarkStore_DeleteRange(b *testing.B) { raftbench.DeleteRange(b, testStore(b)) }
func BenchmarkStore_Set(b *testing.B)         { raftbench.Set(b, testStore(b)) }
func BenchmarkStore_Get(b *testing.B)         { raftbench.Get(b, testStore(b)) }
func BenchmarkStore_SetUint64(b *testing.B)   { raftbench.SetUint64(b, testStore(b)) }
func BenchmarkStore_GetUint64(b *testing.B)   { raftbench.GetUint64(b, testStore(b)) }

func BenchmarkStoreLogs(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			store := testStore(b)
			logs := make([]*raft.Log, batch)
			data := bytes.Repeat([]byte("x"), 256)
			next := uint64(1)
			b.SetBytes(int64(batch * len(data)))
			b.ReportAllocs()
			for b.Loop() {
				for i := range logs {
					logs[i] = &raft.Log{Index: next, Term: 1, Data: data, AppendedAt: time.Now()}
					next++
				}
				if err := store.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/entry")
		})
	}
}
