package centre

// The browser phone (issue 13): for a centre without a PBX the node is the
// centre's phone. Calls come from the centre's SIP trunk (SIPConfig.PBX
// lists its addresses) or, redirected, from other centres' phone systems;
// volunteers answer in the console, and the voice passes between the
// caller's RTP and their browser through this node's media engine only.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/helpmesh/helpmesh/api"
	"github.com/helpmesh/helpmesh/media"
	"github.com/helpmesh/helpmesh/node"
	"github.com/helpmesh/helpmesh/sip"
	"github.com/helpmesh/helpmesh/switchboard"
)

// BrowserPhoneConfig makes the node the centre's phone.
type BrowserPhoneConfig struct {
	// MediaHost is the IP address the callers' RTP reaches the node at
	// (bound and written in the SDP).
	MediaHost netip.Addr
	// PortMin and PortMax bound the callers' RTP ports (0, 0: any), for
	// the firewall (docs/phone.md).
	PortMin, PortMax uint16
	// ICEPortMin and ICEPortMax bound the browsers' voice ports at the
	// node (0, 0: any).
	ICEPortMin, ICEPortMax uint16
	// ICEServers are the STUN/TURN servers of the node and the browsers.
	ICEServers []media.ICEServer
	// Loopback offers 127.0.0.1 to browsers: the demo and tests, where the
	// browser runs on the node's machine.
	Loopback bool
	// Prompt is a WAV file (8 kHz, mono, 16-bit) the caller hears when
	// nobody is free anywhere ("": the built-in message).
	Prompt string
	// RawAudio switches the browser's echo cancellation, noise suppression
	// and gain control off (tests that compare voices; a headset does not
	// need them either, a laptop's speakers do).
	RawAudio bool
}

// browserPhoneConfig reads the config file's phone.browser (nil: none).
func browserPhoneConfig(b *node.BrowserPhone) (*BrowserPhoneConfig, error) {
	if b == nil {
		return nil, nil
	}
	host, rtp, ice, err := b.Media() // checked by LoadFileConfig
	if err != nil {
		return nil, err
	}
	cfg := &BrowserPhoneConfig{MediaHost: host, PortMin: rtp[0], PortMax: rtp[1], ICEPortMin: ice[0], ICEPortMax: ice[1],
		Prompt: b.Prompt, Loopback: b.Loopback}
	for _, s := range b.ICEServers {
		cfg.ICEServers = append(cfg.ICEServers, media.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return cfg, nil
}

// browserPhone is the running browser phone's parts.
type browserPhone struct {
	engine     *media.Engine
	prompt     *media.Prompt
	softphones *sip.Softphones
	ice        []media.ICEServer
}

func startBrowserPhone(cfg *BrowserPhoneConfig, log *slog.Logger) (*browserPhone, error) {
	prompt := media.DefaultPrompt()
	if cfg.Prompt != "" {
		b, err := os.ReadFile(cfg.Prompt)
		if err != nil {
			return nil, fmt.Errorf("browser phone: prompt: %w", err)
		}
		if prompt, err = media.LoadPrompt(b); err != nil {
			return nil, fmt.Errorf("browser phone: prompt %s: %w", cfg.Prompt, err)
		}
	}
	engine, err := media.NewEngine(media.Config{
		Host: cfg.MediaHost, PortMin: cfg.PortMin, PortMax: cfg.PortMax, ICEPortMin: cfg.ICEPortMin, ICEPortMax: cfg.ICEPortMax,
		ICEServers: cfg.ICEServers, Loopback: cfg.Loopback, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("browser phone: %w", err)
	}
	return &browserPhone{engine: engine, prompt: prompt, softphones: sip.NewSoftphones(), ice: cfg.ICEServers}, nil
}

// voice adapts the media engine to the ingress.
type voice struct{ bp *browserPhone }

func (v voice) Open(ctx context.Context, caller media.Offer) (sip.VoiceLeg, error) {
	l, err := v.bp.engine.Open(ctx, caller)
	if err != nil {
		return nil, err
	}
	return voiceLeg{l, v.bp.prompt}, nil
}

type voiceLeg struct {
	*media.Leg
	prompt *media.Prompt
}

func (l voiceLeg) Prompt(ctx context.Context) error { return l.Play(ctx, l.prompt) }

// consoles adapts the softphone desk to the console API.
type consoles struct{ bp *browserPhone }

func (c consoles) ICEServers() []api.ICEServer {
	out := make([]api.ICEServer, 0, len(c.bp.ice))
	for _, s := range c.bp.ice {
		out = append(out, api.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// Answer says in the console's words what went wrong: the call is gone
// (no_call), or the browser's offer cannot be used (bad_sdp); anything
// else is the node's failure (call_failed).
func (c consoles) Answer(ctx context.Context, volunteer, browserSDP string) (string, error) {
	sdp, err := c.bp.softphones.Answer(ctx, volunteer, browserSDP)
	switch {
	case err == nil:
		return sdp, nil
	case errors.Is(err, sip.ErrNoCall), errors.Is(err, sip.ErrAnswered), errors.Is(err, media.ErrClosed):
		return "", fmt.Errorf("%w: %w", api.ErrNoCall, err)
	case errors.Is(err, media.ErrBadSDP), errors.Is(err, media.ErrNoCodec):
		return "", fmt.Errorf("%w: %w", api.ErrBadSDP, err)
	}
	return "", err
}

func (c consoles) HangUp(volunteer string) { _ = c.bp.softphones.HangUp(volunteer) }

// trunk adapts the desk's held calls to the ingress.
type trunk struct{ r callRouter }

func (t trunk) OpenCall(language string, urgent bool) (sip.TrunkCall, error) {
	tc, err := t.r.n.Switchboard().OpenCallWith(language, switchboard.ContactOptions{Urgent: urgent})
	if err != nil {
		return nil, err
	}
	return trunkCall{tc, t.r}, nil
}

type trunkCall struct {
	*switchboard.TrunkCall
	r callRouter
}

func (t trunkCall) Overflow(ctx context.Context) (string, error) {
	placed, err := t.TrunkCall.Overflow(ctx)
	if err != nil {
		return "", err
	}
	return t.r.contactFor(placed)
}

// peers says whether an address may send calls other centres redirect
// here: a phone system the roster publishes (IP literals only: a name is
// not resolved per packet), or one listed in the config. The roster's set
// is read at most once a second.
type peers struct {
	n      *node.Node
	listed []netip.Prefix
	mu     sync.Mutex
	at     time.Time
	set    map[netip.Addr]bool
}

func (p *peers) has(ip netip.Addr) bool {
	for _, l := range p.listed {
		if l.Contains(ip.Unmap()) {
			return true
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := time.Now(); now.Sub(p.at) > time.Second {
		p.at = now
		p.set = map[netip.Addr]bool{}
		for id, c := range p.n.Roster().Centres {
			if id == p.n.Centre() {
				continue
			}
			if ap, err := netip.ParseAddrPort(c.SIPAddr); err == nil {
				p.set[ap.Addr().Unmap()] = true
			}
		}
	}
	return p.set[ip.Unmap()]
}
