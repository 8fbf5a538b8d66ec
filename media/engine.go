package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Config is the media engine's configuration.
type Config struct {
	// Host is the IP the caller legs' RTP sockets bind to and announce in
	// SDP (required).
	Host netip.Addr
	// PortMin and PortMax bound the caller legs' RTP ports (0, 0: any
	// port). Legs take even ports, as RTP's convention has it (RTCP would
	// be the odd one above; the node neither sends nor reads it).
	PortMin, PortMax uint16
	// ICEPortMin and ICEPortMax bound the UDP ports of the browsers' side
	// (0, 0: any), for the firewall; a separate range from the callers'.
	ICEPortMin, ICEPortMax uint16
	// ICEServers are the STUN/TURN servers for the node's WebRTC side; the
	// browser should get the same.
	ICEServers []ICEServer
	// Loopback gathers 127.0.0.1 host candidates only (tests and the local
	// demo); otherwise only non-loopback addresses are candidates.
	Loopback bool
	// ICEDisconnectedTimeout and ICEFailedTimeout (0: 5 s and 10 s): a
	// browser silent for the first is disconnected, and after both failed,
	// which is when Leg.Lost fires for a tab that vanished without a word.
	ICEDisconnectedTimeout, ICEFailedTimeout time.Duration
	// Logger gets debug lines (never an SDP or a caller's address); nil
	// discards.
	Logger *slog.Logger

	// observe, if set (by tests and the benchmark), gets the time each
	// relayed packet spent in the bridge: from the socket read (or the
	// track read) returning to the write returning.
	observe func(toBrowser bool, d time.Duration)
}

// ICEServer is a STUN or TURN server, in the shape of the browser's
// RTCIceServer so the same JSON can go to the console.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Engine opens the caller legs of a node and bridges them to browsers.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	legs   map[*Leg]struct{}
	closed bool
}

// NewEngine checks cfg and returns an engine with no legs.
func NewEngine(cfg Config) (*Engine, error) {
	if !cfg.Host.IsValid() || cfg.Host.IsUnspecified() || cfg.Host.IsMulticast() {
		return nil, fmt.Errorf("new media engine: Host %v is not a unicast IP", cfg.Host)
	}
	cfg.Host = cfg.Host.Unmap()
	if (cfg.PortMin == 0) != (cfg.PortMax == 0) || cfg.PortMin > cfg.PortMax ||
		cfg.PortMin != 0 && cfg.PortMin == cfg.PortMax && cfg.PortMin%2 == 1 {
		return nil, fmt.Errorf("new media engine: port range %d-%d holds no even port", cfg.PortMin, cfg.PortMax)
	}
	if cfg.ICEDisconnectedTimeout <= 0 {
		cfg.ICEDisconnectedTimeout = 5 * time.Second
	}
	if cfg.ICEFailedTimeout <= 0 {
		cfg.ICEFailedTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Engine{cfg: cfg, log: log.With("component", "media"), legs: map[*Leg]struct{}{}}, nil
}

// Close closes every open leg; later Opens fail with ErrClosed.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	legs := make([]*Leg, 0, len(e.legs))
	for l := range e.legs {
		legs = append(legs, l)
	}
	e.mu.Unlock()
	var errs []error
	for _, l := range legs {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

// Open binds a caller leg's RTP socket on Config.Host (within the port
// range) for the caller whose offer was read into caller. Its reader runs
// from now on, so the socket never fills; caller audio is dropped until
// Bridge.
func (e *Engine) Open(ctx context.Context, caller Offer) (*Leg, error) {
	if caller.Codec != PCMU && caller.Codec != PCMA {
		return nil, fmt.Errorf("open leg: codec %q: %w", caller.Codec.Name, ErrNoCodec)
	}
	remote := netip.AddrPortFrom(caller.Remote.Addr().Unmap(), caller.Remote.Port())
	if !remote.IsValid() || remote.Port() == 0 {
		return nil, fmt.Errorf("open leg: no caller address: %w", ErrBadSDP)
	}
	if remote.Addr().Is4() != e.cfg.Host.Is4() {
		return nil, fmt.Errorf("open leg: %w", ErrAddressFamily)
	}
	conn, err := e.bind(ctx)
	if err != nil {
		return nil, err
	}
	l := newLeg(e, conn, remote, caller.Codec)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		_ = conn.Close()
		return nil, fmt.Errorf("open leg: %w", ErrClosed)
	}
	e.legs[l] = struct{}{}
	e.mu.Unlock()
	l.start()
	e.log.Debug("leg opened", "local", l.local, "codec", l.codec.Name)
	return l, nil
}

func (e *Engine) forget(l *Leg) {
	e.mu.Lock()
	delete(e.legs, l)
	e.mu.Unlock()
}

// bind takes a UDP socket on Host: any port, or an even one in the range
// starting at a random place (so two nodes sharing a range, or a restart,
// do not all race for the first port).
func (e *Engine) bind(ctx context.Context) (*net.UDPConn, error) {
	network := "udp6"
	if e.cfg.Host.Is4() {
		network = "udp4"
	}
	if e.cfg.PortMin == 0 {
		conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(e.cfg.Host, 0)))
		if err != nil {
			return nil, fmt.Errorf("open leg: bind: %w", err)
		}
		return conn, nil
	}
	first := (int(e.cfg.PortMin) + 1) &^ 1
	n := (int(e.cfg.PortMax)-first)/2 + 1
	start := rand.IntN(n)
	for i := range n {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("open leg: bind: %w", err)
		}
		port := uint16(first + 2*((start+i)%n))
		conn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(e.cfg.Host, port)))
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("open leg: bind: %w", err)
		}
	}
	return nil, fmt.Errorf("open leg: ports %d-%d: %w", e.cfg.PortMin, e.cfg.PortMax, ErrNoPort)
}

// api is a pion API for one call. Its MediaEngine registers only the
// caller leg's G.711, so the browser must answer in the same law and no
// packet needs transcoding. Interceptors: RTCP sender and receiver
// reports only (no NACK: audio is not retransmitted; no TWCC: nothing
// here adapts its bitrate).
func (e *Engine) api(c Codec) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: capability(c),
		PayloadType:        webrtc.PayloadType(c.PayloadType),
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("media engine: register %s: %w", c.Name, err)
	}
	var reg interceptor.Registry
	if err := webrtc.ConfigureRTCPReports(&reg); err != nil {
		return nil, fmt.Errorf("media engine: RTCP reports: %w", err)
	}
	var se webrtc.SettingEngine
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if e.cfg.Loopback {
		se.SetIncludeLoopbackCandidate(true)
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	} else {
		se.SetIPFilter(func(ip net.IP) bool { return !ip.IsLoopback() })
	}
	se.SetICETimeouts(e.cfg.ICEDisconnectedTimeout, e.cfg.ICEFailedTimeout, 2*time.Second)
	if e.cfg.ICEPortMin != 0 {
		if err := se.SetEphemeralUDPPortRange(e.cfg.ICEPortMin, e.cfg.ICEPortMax); err != nil {
			return nil, fmt.Errorf("media engine: ICE ports: %w", err)
		}
	}
	se.LoggerFactory = pionLogs{e.log}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se), webrtc.WithInterceptorRegistry(&reg)), nil
}

func capability(c Codec) webrtc.RTPCodecCapability {
	mime := webrtc.MimeTypePCMU
	if c == PCMA {
		mime = webrtc.MimeTypePCMA
	}
	return webrtc.RTPCodecCapability{MimeType: mime, ClockRate: 8000}
}

func (e *Engine) iceServers() []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(e.cfg.ICEServers))
	for _, s := range e.cfg.ICEServers {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}
