package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Leg is one call's media: the caller's RTP socket and, once bridged, the
// volunteer's browser. All its methods may be called from any goroutine.
type Leg struct {
	e       *Engine
	log     *slog.Logger
	conn    *net.UDPConn
	local   netip.AddrPort
	remote  netip.AddrPort // the only source relayed, and where the node sends
	codec   Codec
	observe func(toBrowser bool, d time.Duration)

	done     chan struct{} // closed by Close
	lost     chan struct{}
	lostOnce sync.Once
	playSem  chan struct{} // one Play at a time

	mu       sync.Mutex
	closed   bool
	bridging bool // a Bridge is under way or done
	pc       *webrtc.PeerConnection
	wg       sync.WaitGroup // Add only under mu while !closed

	// toBrowser is the browser's track once Bridge has answered; the
	// caller reader relays into it.
	toBrowser atomic.Pointer[webrtc.TrackLocalStaticRTP]

	// outMu serialises what the node sends to the caller: the browser's
	// audio, or a prompt, which has the line while it plays.
	outMu   sync.Mutex
	out     *stream
	playing bool
	prompts uint64
	outBuf  [1500]byte
}

func newLeg(e *Engine, conn *net.UDPConn, remote netip.AddrPort, c Codec) *Leg {
	a := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	return &Leg{
		e: e, log: e.log, conn: conn, codec: c, remote: remote, observe: e.cfg.observe,
		local:   netip.AddrPortFrom(a.Addr().Unmap(), a.Port()),
		done:    make(chan struct{}),
		lost:    make(chan struct{}),
		playSem: make(chan struct{}, 1),
		out:     newStream(),
	}
}

func (l *Leg) start() { l.spawn(l.readCaller) }

// spawn runs f as one of the leg's goroutines, unless the leg is closed.
func (l *Leg) spawn(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		f()
	}()
	return true
}

// Local is the leg's RTP address (Config.Host and the bound port).
func (l *Leg) Local() netip.AddrPort { return l.local }

// AnswerSDP is the node's answer to the caller's INVITE: Answer for this
// leg's address and codec.
func (l *Leg) AnswerSDP(sessionID uint64) []byte { return Answer(l.local, l.codec, sessionID) }

// Lost is closed when the browser's side is gone: its PeerConnection
// failed (ICE silent for ICEDisconnectedTimeout+ICEFailedTimeout, as
// when a tab is killed) or closed (the browser closed it, or its DTLS
// said goodbye, as when a tab is closed). It is not closed by Close: the
// node's own hang-up is not a loss. Never closed for a leg never bridged.
func (l *Leg) Lost() <-chan struct{} { return l.lost }

func (l *Leg) markLost() {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if !closed {
		l.lostOnce.Do(func() { close(l.lost) })
	}
}

// Close ends the leg: the socket and the PeerConnection are closed and
// every goroutine of the leg has ended when it returns. Idempotent.
func (l *Leg) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	pc := l.pc
	l.mu.Unlock()
	close(l.done)
	errs := []error{l.conn.Close()}
	if pc != nil {
		// GracefulClose also waits for pion's own goroutines (the
		// receivers' readers), so none outlives the call.
		errs = append(errs, pc.GracefulClose())
	}
	l.wg.Wait()
	l.e.forget(l)
	l.log.Debug("leg closed", "local", l.local)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close leg: %w", err)
	}
	return nil
}

// readCaller reads the caller's socket for the life of the leg: packets
// from the caller's address, parsing as RTP in the leg's codec, go to the
// browser once bridged; everything else is dropped. Reading from Open on
// keeps the socket drained before the bridge.
func (l *Leg) readCaller() {
	buf := make([]byte, 1500)
	in := newStream()
	var p rtp.Packet
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-l.done:
				return
			default:
			}
			l.log.Debug("caller leg read", "err", err)
			continue
		}
		at := time.Now()
		// Strict source check: the address the caller's SDP named, no
		// latching onto whoever sends first (DESIGN.md).
		if from.Port() != l.remote.Port() || from.Addr().Unmap() != l.remote.Addr() {
			continue
		}
		if err := p.Unmarshal(buf[:n]); err != nil || p.Version != 2 || p.PayloadType != l.codec.PayloadType {
			continue
		}
		track := l.toBrowser.Load()
		if track == nil {
			continue
		}
		in.rewrite(&p.Header, uint64(p.SSRC), at)
		if err := track.WriteRTP(&p); err != nil {
			continue // the PeerConnection is closing; Lost or Close follows
		}
		if l.observe != nil {
			l.observe(true, time.Since(at))
		}
	}
}

// readBrowser relays the browser's audio to the caller until the track
// ends (the PeerConnection closes).
func (l *Leg) readBrowser(tr *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	pt := uint8(tr.PayloadType())
	var p rtp.Packet
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		at := time.Now()
		if err := p.Unmarshal(buf[:n]); err != nil || p.PayloadType != pt {
			continue
		}
		// The browser may have named the codec with another number; the
		// caller gets the static one its SDP agreed.
		p.PayloadType = l.codec.PayloadType
		if err := l.send(&p, uint64(p.SSRC), at, false); err != nil {
			l.log.Debug("relay to caller", "err", err)
			continue
		}
		if l.observe != nil {
			l.observe(false, time.Since(at))
		}
	}
}

// send puts p on the node's stream to the caller. Browser audio (prompt
// false) is dropped while a prompt plays.
func (l *Leg) send(p *rtp.Packet, src uint64, now time.Time, prompt bool) error {
	l.outMu.Lock()
	defer l.outMu.Unlock()
	if l.playing && !prompt {
		return nil
	}
	l.out.rewrite(&p.Header, src, now)
	n, err := p.MarshalTo(l.outBuf[:])
	if err != nil {
		return fmt.Errorf("send to caller: %w", err)
	}
	if _, err := l.conn.WriteToUDPAddrPort(l.outBuf[:n], l.remote); err != nil {
		return fmt.Errorf("send to caller: %w", err)
	}
	return nil
}
