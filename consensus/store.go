package consensus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// Compile-time checks: raft consumes the store only through these interfaces,
// so a signature drift must break the build rather than a running node.
var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

var (
	// ErrKeyNotFound is returned by Get and GetUint64 for a missing stable key.
	// Its text must stay exactly "not found": hashicorp/raft detects a fresh
	// node by comparing err.Error() to that string, not by errors.Is.
	ErrKeyNotFound = errors.New("not found")

	// ErrStoreClosed is returned by every method called after Close, so a late
	// raft goroutine gets an error instead of pebble's use-after-close panic.
	ErrStoreClosed = errors.New("raft store closed")

	// ErrCorruptLog is wrapped by errors for log values that cannot be
	// decoded; raft must see a failure, never a silently wrong entry.
	ErrCorruptLog = errors.New("corrupt raft log entry")
)

// Keys are one prefix byte plus a fixed-width suffix so that the log and
// stable keyspaces can never overlap and log keys sort numerically.
const (
	logPrefix    byte = 'l'
	stablePrefix byte = 's'
	logKeyLen         = 1 + 8
)

var (
	// logLowerBound and logUpperBound bracket every possible log key; they
	// keep iterators from wandering into the stable keyspace.
	logLowerBound = []byte{logPrefix}
	logUpperBound = []byte{logPrefix + 1}
)

// Store is a raft.LogStore and raft.StableStore backed by a pebble database.
// It is safe for concurrent use.
type Store struct {
	// mu guards db against Close: methods hold it shared for their whole
	// duration so Close cannot pull the database out from under them.
	mu     sync.RWMutex
	db     *pebble.DB
	closed bool
}

// OpenStore opens (creating if needed) the raft store in dir.
func OpenStore(dir string) (*Store, error) {
	opts := &pebble.Options{
		// Pebble logs routine flush/compaction chatter to stderr by default;
		// a helpline node's log output must stay signal, not noise.
		Logger: quietLogger{},
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("open raft store: %w", err)
	}
	return &Store{db: db}, nil
}

// Close flushes and closes the database. Calling it again is a no-op.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close raft store: %w", err)
	}
	return nil
}

// FirstIndex returns the lowest stored log index, or 0 if there are none.
func (s *Store) FirstIndex() (uint64, error) {
	idx, err := s.edgeIndex(true)
	if err != nil {
		return 0, fmt.Errorf("raft store first index: %w", err)
	}
	return idx, nil
}

// LastIndex returns the highest stored log index, or 0 if there are none.
func (s *Store) LastIndex() (uint64, error) {
	idx, err := s.edgeIndex(false)
	if err != nil {
		return 0, fmt.Errorf("raft store last index: %w", err)
	}
	return idx, nil
}

// edgeIndex seeks to the first or last log key. Range tombstones left by
// DeleteRange are skipped by pebble itself, so this stays cheap after
// compaction of the raft log.
func (s *Store) edgeIndex(first bool) (idx uint64, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, ErrStoreClosed
	}
	iter, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: logLowerBound,
		UpperBound: logUpperBound,
	})
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := iter.Close(); cerr != nil && err == nil {
			idx, err = 0, cerr
		}
	}()
	var ok bool
	if first {
		ok = iter.First()
	} else {
		ok = iter.Last()
	}
	if !ok {
		// An exhausted iterator means either "empty" or an I/O error;
		// only the former may be reported as index 0.
		return 0, iter.Error()
	}
	return parseLogKey(iter.Key())
}

// GetLog reads the entry at index into log. A missing entry yields
// raft.ErrLogNotFound unwrapped, because raft compares it with ==.
func (s *Store) GetLog(index uint64, log *raft.Log) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("raft store get log %d: %w", index, ErrStoreClosed)
	}
	key := logKey(index)
	val, closer, err := s.db.Get(key[:])
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raft store get log %d: %w", index, err)
	}
	// decodeLog copies Data and Extensions out of val, which pebble reuses
	// as soon as the closer is closed.
	var out raft.Log
	derr := decodeLog(val, &out)
	cerr := closer.Close()
	if derr != nil {
		return fmt.Errorf("raft store get log %d: %w", index, derr)
	}
	if cerr != nil {
		return fmt.Errorf("raft store get log %d: %w", index, cerr)
	}
	if out.Index != index {
		return fmt.Errorf("raft store get log %d: %w: entry claims index %d",
			index, ErrCorruptLog, out.Index)
	}
	*log = out
	return nil
}

// StoreLog durably stores a single entry.
func (s *Store) StoreLog(log *raft.Log) error {
	return s.StoreLogs([]*raft.Log{log})
}

// StoreLogs durably stores entries in one atomic, fsynced batch: raft treats
// the return as an acknowledgement it may vote or commit on, so a crash
// right after must not lose any entry nor persist only part of the batch.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("raft store store logs: %w", ErrStoreClosed)
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	var buf []byte
	for _, l := range logs {
		if l == nil {
			return errors.New("raft store store logs: nil log entry")
		}
		var err error
		// Batch.Set copies key and value, so buf can be reused per entry.
		if buf, err = appendLog(buf[:0], l); err != nil {
			return fmt.Errorf("raft store store logs: index %d: %w", l.Index, err)
		}
		key := logKey(l.Index)
		if err := batch.Set(key[:], buf, nil); err != nil {
			return fmt.Errorf("raft store store logs: %w", err)
		}
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raft store store logs: %w", err)
	}
	return nil
}

// DeleteRange removes entries min through max, both inclusive, as a single
// range tombstone so that log compaction costs O(1) writes regardless of
// how many entries are dropped.
func (s *Store) DeleteRange(min, max uint64) error {
	if min > max {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("raft store delete range: %w", ErrStoreClosed)
	}
	start := logKey(min)
	end := logUpperBound // max+1 would overflow; the prefix bound is past it.
	if max < math.MaxUint64 {
		k := logKey(max + 1)
		end = k[:]
	}
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := batch.DeleteRange(start[:], end, nil); err != nil {
		return fmt.Errorf("raft store delete range: %w", err)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raft store delete range: %w", err)
	}
	return nil
}

// Set durably stores a stable value; raft persists votes and terms here and
// must not forget them across a crash or it could vote twice in one term.
func (s *Store) Set(key []byte, val []byte) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("raft store set: %w", ErrStoreClosed)
	}
	if err := s.db.Set(stableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("raft store set: %w", err)
	}
	return nil
}

// Get returns a copy of a stable value, or ErrKeyNotFound unwrapped.
func (s *Store) Get(key []byte) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("raft store get: %w", ErrStoreClosed)
	}
	val, closer, err := s.db.Get(stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("raft store get: %w", err)
	}
	out := bytes.Clone(val)
	if out == nil {
		out = []byte{}
	}
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("raft store get: %w", err)
	}
	return out, nil
}

// SetUint64 stores val as 8 big-endian bytes.
func (s *Store) SetUint64(key []byte, val uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], val)
	return s.Set(key, buf[:])
}

// GetUint64 returns a value written by SetUint64, or ErrKeyNotFound unwrapped.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	val, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(val) != 8 {
		return 0, fmt.Errorf("raft store get uint64 %q: value is %d bytes, want 8", key, len(val))
	}
	return binary.BigEndian.Uint64(val), nil
}

func logKey(index uint64) [logKeyLen]byte {
	var k [logKeyLen]byte
	k[0] = logPrefix
	binary.BigEndian.PutUint64(k[1:], index)
	return k
}

func parseLogKey(k []byte) (uint64, error) {
	if len(k) != logKeyLen || k[0] != logPrefix {
		return 0, fmt.Errorf("%w: malformed log key %x", ErrCorruptLog, k)
	}
	return binary.BigEndian.Uint64(k[1:]), nil
}

func stableKey(key []byte) []byte {
	k := make([]byte, 0, 1+len(key))
	return append(append(k, stablePrefix), key...)
}

// Log value format, version 1 (all integers big-endian):
//
//	version  u8   = 1
//	flags    u8   bit0 Data non-nil, bit1 Extensions non-nil, bit2 AppendedAt set
//	index    u64
//	term     u64
//	type     u8
//	[data]       u32 length + bytes, only if bit0
//	[extensions] u32 length + bytes, only if bit1
//	[appended]   i64 unix seconds + u32 nanoseconds, only if bit2
//
// The version byte lets a future format coexist with entries already on
// disk. The nil flags keep nil and empty slices distinct so that an entry
// reads back exactly as raft stored it. The encoding is canonical: every
// accepted value re-encodes to the same bytes, which the fuzz test checks.
const (
	logFormatV1 byte = 1

	flagData       byte = 1 << 0
	flagExtensions byte = 1 << 1
	flagAppendedAt byte = 1 << 2
	knownFlags          = flagData | flagExtensions | flagAppendedAt

	logHeaderLen = 1 + 1 + 8 + 8 + 1
)

func appendLog(buf []byte, l *raft.Log) ([]byte, error) {
	if uint64(len(l.Data)) > math.MaxUint32 || uint64(len(l.Extensions)) > math.MaxUint32 {
		return nil, errors.New("log data or extensions exceed 4 GiB")
	}
	var flags byte
	if l.Data != nil {
		flags |= flagData
	}
	if l.Extensions != nil {
		flags |= flagExtensions
	}
	if !l.AppendedAt.IsZero() {
		flags |= flagAppendedAt
	}
	buf = append(buf, logFormatV1, flags)
	buf = binary.BigEndian.AppendUint64(buf, l.Index)
	buf = binary.BigEndian.AppendUint64(buf, l.Term)
	buf = append(buf, byte(l.Type))
	if l.Data != nil {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(l.Data)))
		buf = append(buf, l.Data...)
	}
	if l.Extensions != nil {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(l.Extensions)))
		buf = append(buf, l.Extensions...)
	}
	if flags&flagAppendedAt != 0 {
		// Only wall-clock seconds and nanoseconds are kept: raft uses
		// AppendedAt for log-age metrics, where the zone is irrelevant.
		buf = binary.BigEndian.AppendUint64(buf, uint64(l.AppendedAt.Unix()))
		buf = binary.BigEndian.AppendUint32(buf, uint32(l.AppendedAt.Nanosecond()))
	}
	return buf, nil
}

// decodeLog parses b into l. It never retains b: slices in l are fresh
// copies, since b usually points into pebble's block cache.
func decodeLog(b []byte, l *raft.Log) error {
	if len(b) < logHeaderLen {
		return fmt.Errorf("%w: %d bytes is shorter than the header", ErrCorruptLog, len(b))
	}
	if b[0] != logFormatV1 {
		return fmt.Errorf("%w: unknown format version %d", ErrCorruptLog, b[0])
	}
	flags := b[1]
	if flags&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown flags %#x", ErrCorruptLog, flags)
	}
	out := raft.Log{
		Index: binary.BigEndian.Uint64(b[2:10]),
		Term:  binary.BigEndian.Uint64(b[10:18]),
		Type:  raft.LogType(b[18]),
	}
	rest := b[logHeaderLen:]
	var err error
	if flags&flagData != 0 {
		if out.Data, rest, err = takeBytes(rest, "data"); err != nil {
			return err
		}
	}
	if flags&flagExtensions != 0 {
		if out.Extensions, rest, err = takeBytes(rest, "extensions"); err != nil {
			return err
		}
	}
	if flags&flagAppendedAt != 0 {
		if len(rest) < 12 {
			return fmt.Errorf("%w: truncated appended-at time", ErrCorruptLog)
		}
		sec := int64(binary.BigEndian.Uint64(rest[:8]))
		nsec := binary.BigEndian.Uint32(rest[8:12])
		if nsec >= uint32(time.Second) {
			return fmt.Errorf("%w: appended-at nanoseconds %d out of range", ErrCorruptLog, nsec)
		}
		out.AppendedAt = time.Unix(sec, int64(nsec)).UTC()
		if out.AppendedAt.IsZero() {
			// The encoder never sets the flag for a zero time.
			return fmt.Errorf("%w: appended-at flag set on zero time", ErrCorruptLog)
		}
		rest = rest[12:]
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorruptLog, len(rest))
	}
	*l = out
	return nil
}

// takeBytes consumes a u32-length-prefixed field and returns a copy of it.
func takeBytes(b []byte, field string) (val, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: truncated %s length", ErrCorruptLog, field)
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b)) {
		return nil, nil, fmt.Errorf("%w: %s length %d exceeds remaining %d bytes",
			ErrCorruptLog, field, n, len(b))
	}
	val = make([]byte, n)
	copy(val, b[:n])
	return val, b[n:], nil
}

// quietLogger drops pebble's informational and error chatter; write errors
// still reach callers through returned errors. Fatalf must not return,
// because pebble calls it on invariant violations and continuing would
// risk corrupting the raft log, so it panics instead of exiting silently.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
