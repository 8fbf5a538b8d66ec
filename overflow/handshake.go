package overflow

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	msmux "github.com/multiformats/go-multistream"

	"github.com/helpmesh/helpmesh/internal/wire"
	"github.com/helpmesh/helpmesh/switchboard"
)

// The handshake every ask between centres shares (an offer, a call offer,
// a support request): the asker sends one frame and waits for accepted or
// declined; the answering side holds someone while they decide, then the
// asker confirms or cancels, and a confirmed stream becomes a relay.

// ask opens proto to centre, sends f and waits up to wait for the answer.
// Withdrawing (ctx ends) resets the stream, so the other centre frees
// whoever it held at once; so does closing the router. Once the answer is
// in, the stream may become a relay and the ctx is cancelled soon after as
// a matter of course: the reset must then never happen. A select on both
// channels would pick at random when both are ready, so the answer's
// arrival is settled under a lock. what names the ask in errors.
func (r *Router) ask(ctx context.Context, centre string, proto protocol.ID, f frame, wait time.Duration, what string) (network.Stream, frame, error) {
	pid, ok := r.cfg.Directory.PeerOf(centre)
	if !ok {
		return nil, frame{}, fmt.Errorf("%s: %w", what, ErrUnknownPeerCentre)
	}
	s, err := r.cfg.Host.NewStream(ctx, pid, proto)
	if err != nil {
		var unsupported msmux.ErrNotSupported[protocol.ID]
		if errors.As(err, &unsupported) {
			// An older release: it cannot take this.
			return nil, frame{}, fmt.Errorf("%s: %w: %w", what, err, switchboard.ErrDeclined)
		}
		return nil, frame{}, fmt.Errorf("%s: %w", what, err)
	}
	answered := make(chan struct{})
	var settle sync.Mutex
	settled := false
	if !r.spawn(func(stop context.Context) {
		select {
		case <-ctx.Done():
		case <-stop.Done():
		case <-answered:
			return
		}
		settle.Lock()
		if !settled {
			_ = s.Reset()
		}
		settle.Unlock()
	}) {
		_ = s.Reset()
		return nil, frame{}, fmt.Errorf("%s: %w", what, ErrRouterClosed)
	}
	_ = s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wire.Write(s, f, maxFrame); err != nil {
		close(answered)
		_ = s.Reset()
		return nil, frame{}, fmt.Errorf("%s: %w", what, err)
	}
	_ = s.SetReadDeadline(time.Now().Add(wait))
	w := r.await(centre, func() { _ = s.Reset() })
	var ans frame
	err = wire.Read(s, &ans, maxFrame)
	r.done(centre, w)
	settle.Lock()
	settled = true
	settle.Unlock()
	close(answered)
	if err == nil && ctx.Err() != nil {
		// Withdrawn while the answer came: it may have reset the stream.
		err = ctx.Err()
	}
	if err != nil && w.lost.Load() {
		err = fmt.Errorf("%w (withdrawn): %w", ErrCentreLost, err)
	}
	if err != nil {
		_ = s.Reset()
		return nil, frame{}, fmt.Errorf("%s: %w", what, err)
	}
	return s, ans, nil
}

// holder is what the answering side holds while its person decides: a
// volunteer for an offer, the supervisors for a support request.
type holder interface {
	Wait(ctx context.Context) (alias string, err error)
	Release(reason string)
}

// hold answers an ask from the answering side once it holds someone: it
// waits for their decision, says accepted (accepted builds the frame from
// their alias) or declined, and then for the asker's confirmation. True:
// confirmed, and the stream is the caller's to make a relay of; false:
// over, released and closed. asker names the other side in reasons, and
// cancelled is the reason our person hears when the asker cancels.
func (r *Router) hold(s network.Stream, ring time.Duration, res holder, accepted func(alias string) frame, asker, cancelled string) bool {
	// One reader for the rest of the ask: the asker may cancel (or
	// vanish) while our people decide. Closing the router ends the wait:
	// the reader's stream is reset.
	ctx, cancel := context.WithCancel(r.stop.Context())
	defer cancel()
	next := make(chan frame, 1)
	if !r.spawn(func(stop context.Context) {
		unblock := context.AfterFunc(stop, func() { _ = s.Reset() })
		defer unblock()
		_ = s.SetReadDeadline(time.Now().Add(ring + 15*time.Second))
		var f frame
		if err := wire.Read(s, &f, maxFrame); err != nil {
			f = frame{Type: frameCancel, Reason: asker + " went away"}
		}
		if f.Type != frameConfirm {
			cancel()
		}
		next <- f
	}) {
		res.Release("the centre is shutting down")
		_ = s.Reset()
		return false
	}
	alias, err := res.Wait(ctx)
	if err != nil {
		r.decline(s, err.Error())
		return false
	}
	_ = s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wire.Write(s, accepted(alias), maxFrame); err != nil {
		res.Release(asker + " went away")
		_ = s.Reset()
		return false
	}
	select {
	case f := <-next:
		if f.Type != frameConfirm {
			res.Release(cancelled)
			_ = s.Close()
			return false
		}
	case <-time.After(10 * time.Second):
		res.Release(asker + " did not confirm")
		_ = s.Reset()
		return false
	}
	return true
}
