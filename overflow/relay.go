package overflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/libp2p/go-libp2p/core/network"

	"github.com/helpmesh/helpmesh/internal/wire"
	"github.com/helpmesh/helpmesh/switchboard"
)

// Relay timing: a heartbeat every second when idle; a peer silent for
// longer than relayDeadAfter is taken for dead (a killed process usually
// resets the stream at once; a frozen or cut-off one is caught by this).
const (
	relayHeartbeat = time.Second
	relayDeadAfter = 3500 * time.Millisecond
	relayOutbox    = 512
	relayWriteWait = 5 * time.Second
)

// ErrRelayClosed means the conversation's relay has ended.
var ErrRelayClosed = errors.New("relay closed")

// relay carries one overflowed conversation between two centres on the
// stream its offer came on. Every event has a sequence number and the other
// side acknowledges what it received, so when the stream dies each side
// knows how many of its messages never arrived and says so: a message is
// never lost silently. Text lives only in memory, in flight.
type relay struct {
	s   network.Stream
	log *slog.Logger
	// check refuses what no honest centre sends on this kind of relay
	// (nil: a conversation's, checkEvent).
	check func(switchboard.Event) error
	// owner: we are the contact's owner (the relay came from our
	// offer), so what we read comes from the answering centre.
	owner bool

	mu       sync.Mutex
	handler  switchboard.PeerHandler
	nextSeq  uint64
	unacked  map[uint64]bool // seq -> is a message
	received uint64          // highest in-order seq received
	ackDue   bool
	closed   bool
	out      chan frame
	done     chan struct{}
	// writerDone is closed when the writer has flushed: the reader frees
	// the stream only then.
	writerDone chan struct{}
}

func newRelay(s network.Stream, log *slog.Logger) *relay {
	return newRelayChecking(s, log, nil)
}

func newRelayChecking(s network.Stream, log *slog.Logger, check func(switchboard.Event) error) *relay {
	return &relay{s: s, log: log, check: check, unacked: map[uint64]bool{}, out: make(chan frame, relayOutbox), done: make(chan struct{}), writerDone: make(chan struct{})}
}

// start runs the reader and writer under the router's spawn; h hears
// events and loss. False means the router is closed and nothing started.
// When the router closes, the writer says goodbye and the reader ends once
// the other side answers it (or within relayDeadAfter if it stays silent).
func (r *relay) start(spawn func(func(context.Context)) bool, h switchboard.PeerHandler) bool {
	r.mu.Lock()
	r.handler = h
	r.mu.Unlock()
	if !spawn(r.writeLoop) {
		return false
	}
	if !spawn(r.readLoop) {
		r.lost("the centre is shutting down")
	}
	return true
}

// Send queues an event for the other centre. It never blocks: a relay
// whose outbox is full is broken and is closed.
func (r *relay) Send(e switchboard.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrRelayClosed
	}
	r.nextSeq++
	seq := r.nextSeq
	r.unacked[seq] = e.Kind == switchboard.EventMessage
	ev := e
	select {
	case r.out <- frame{Type: frameEvent, Seq: seq, Ack: r.received, Event: &ev}:
		return nil
	default:
		r.closeLocked()
		return fmt.Errorf("relay outbox full: %w", ErrRelayClosed)
	}
}

// Close ends the relay from our side; the other side hears a bye.
func (r *relay) Close(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	select {
	case r.out <- frame{Type: frameBye, Reason: reason, Ack: r.received}:
	default:
	}
	r.closeLocked()
}

func (r *relay) closeLocked() {
	r.closed = true
	close(r.done)
}

func (r *relay) undeliveredLocked() int {
	n := 0
	for _, msg := range r.unacked {
		if msg {
			n++
		}
	}
	return n
}

func (r *relay) writeLoop(ctx context.Context) {
	defer close(r.writerDone)
	t := time.NewTicker(relayHeartbeat)
	defer t.Stop()
	write := func(f frame) error {
		_ = r.s.SetWriteDeadline(time.Now().Add(relayWriteWait))
		return wire.Write(r.s, f, maxFrame)
	}
	for {
		select {
		case f := <-r.out:
			if err := write(f); err != nil {
				r.lost("write: " + err.Error())
				return
			}
			if f.Type == frameBye {
				_ = r.s.CloseWrite()
				return
			}
		case <-t.C:
			r.mu.Lock()
			ack := r.received
			r.ackDue = false
			r.mu.Unlock()
			if err := write(frame{Type: frameHeartbeat, Ack: ack}); err != nil {
				r.lost("heartbeat: " + err.Error())
				return
			}
		case <-ctx.Done():
			r.Close("the centre is shutting down")
			r.flush(write)
			return
		case <-r.done:
			r.flush(write)
			return
		}
	}
}

// flush writes what was queued before the close (the bye last).
func (r *relay) flush(write func(frame) error) {
	for {
		select {
		case f := <-r.out:
			if write(f) != nil || f.Type == frameBye {
				_ = r.s.CloseWrite()
				return
			}
		default:
			_ = r.s.CloseWrite()
			return
		}
	}
}

func (r *relay) readLoop(context.Context) {
	defer func() {
		// Let the writer flush (its writes have a deadline), then free
		// the stream.
		<-r.writerDone
		_ = r.s.Close()
	}()
	for {
		_ = r.s.SetReadDeadline(time.Now().Add(relayDeadAfter))
		var f frame
		if err := wire.Read(r.s, &f, maxFrame); err != nil {
			r.lost("read: " + err.Error())
			return
		}
		r.mu.Lock()
		for seq := range r.unacked {
			if seq <= f.Ack {
				delete(r.unacked, seq)
			}
		}
		switch f.Type {
		case frameHeartbeat, frameAck:
			r.mu.Unlock()
		case frameEvent:
			if f.Event == nil || f.Seq != r.received+1 {
				r.mu.Unlock()
				if f.Event != nil && f.Seq <= r.received {
					continue // a duplicate; already delivered
				}
				r.lost("sequence gap") // a gap means a broken peer
				return
			}
			r.received = f.Seq
			h := r.handler
			if !r.closed && !r.ackDue {
				r.ackDue = true
				select {
				case r.out <- frame{Type: frameAck, Ack: r.received}:
				default:
				}
			}
			r.mu.Unlock()
			check := r.check
			if check == nil {
				check = func(e switchboard.Event) error { return checkEvent(e, r.owner) }
			}
			if err := check(*f.Event); err != nil {
				r.lost(err.Error())
				return
			}
			h.OnEvent(*f.Event)
		case frameBye:
			r.mu.Unlock()
			r.lost("the other centre closed it")
			return
		default:
			r.mu.Unlock()
			r.lost("unexpected frame")
			return
		}
	}
}

// lost reports the relay's death to the handler once, unless we closed it.
// The reason is logged (never content): a conversation cut short is what a
// centre's operator must be able to explain.
func (r *relay) lost(reason string) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.log.Info("overflow: relay lost mid-conversation", "peer", r.s.Conn().RemotePeer().ShortString(), "reason", reason)
	n := r.undeliveredLocked()
	h := r.handler
	r.closeLocked()
	r.mu.Unlock()
	_ = r.s.Reset()
	if h != nil {
		h.OnLost(n)
	}
}

// checkEvent refuses what no honest centre sends. fromAnswering says the
// event came from the answering centre (we own the contact): only that
// side asks for a transfer or leaves one, and only the owner answers.
func checkEvent(e switchboard.Event, fromAnswering bool) error {
	if len(e.Centre) > maxEventCentre || len(e.Language) > maxEventLanguage || len(e.Note) > switchboard.MaxNoteBytes ||
		len(e.Alias) > maxEventAlias || len(e.Reason) > maxEventReason || len(e.By) > maxEventBy || len(e.Support) > maxEventSupport ||
		!utf8.ValidString(e.Note) || !utf8.ValidString(e.Alias) || !utf8.ValidString(e.Reason) {
		return fmt.Errorf("relay event field out of bounds")
	}
	switch e.Kind {
	case switchboard.EventMessage:
		if len(e.ID) == 0 || len(e.ID) > switchboard.MaxMessageIDBytes || len(e.Text) == 0 || len(e.Text) > switchboard.MaxTextBytes {
			return fmt.Errorf("relay message out of bounds")
		}
	case switchboard.EventTyping, switchboard.EventEnded, switchboard.EventAnswered:
	case switchboard.EventSupervised:
		// The volunteer's centre tells the visitor's that a supervisor
		// reads along; never the other way.
		if !fromAnswering {
			return fmt.Errorf("relay %s from the contact's owner", e.Kind)
		}
	case switchboard.EventDelivered:
		if len(e.ID) == 0 || len(e.ID) > switchboard.MaxMessageIDBytes {
			return fmt.Errorf("relay delivered id out of bounds")
		}
	case switchboard.EventTransfer, switchboard.EventLeave:
		if !fromAnswering {
			return fmt.Errorf("relay %s from the contact's owner", e.Kind)
		}
	case switchboard.EventTransferAccepted, switchboard.EventTransferFailed:
		if fromAnswering {
			return fmt.Errorf("relay %s from the answering centre", e.Kind)
		}
	default:
		return fmt.Errorf("relay event kind %q unknown", e.Kind)
	}
	return nil
}

// Bounds on an event's small fields (the note's is switchboard's).
const (
	maxEventCentre   = 64
	maxEventLanguage = 8
	maxEventAlias    = 80
	maxEventReason   = 200
	maxEventBy       = 32
	maxEventSupport  = 64
)
