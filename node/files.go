package node

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/helpmesh/helpmesh/consensus"
)

// Files in a centre's data directory.
const (
	ConfigFile     = "helpmesh.json"
	IdentityFile   = "identity.key"
	AdminTokenFile = "admin.token"
	FederationFile = "federation.json"
)

// FileConfig is a centre's configuration as `helpmesh init` writes it.
type FileConfig struct {
	Centre     string `json:"centre"`
	Name       string `json:"name"`
	HTTPAddr   string `json:"http_addr"`
	P2PAddr    string `json:"p2p_addr"`
	GossipAddr string `json:"gossip_addr"`
	// SIPAddr, host:port, is published in the roster as where other
	// centres' PBXs reach this centre's SIP ingress; empty: none.
	SIPAddr string `json:"sip_addr,omitempty"`
	// Web holds the settings of the centre's public pages and sockets.
	Web WebConfig `json:"web,omitempty"`
	// Phone connects the centre's PBX (docs/pbx.md).
	Phone PhoneConfig `json:"phone,omitempty"`
}

// PhoneConfig is how a centre's PBX reaches its node.
type PhoneConfig struct {
	// Listen is the UDP address of the node's SIP ingress ("" : the centre
	// takes no calls).
	Listen string `json:"sip_listen,omitempty"`
	// Host is the node's IP as the PBX and phones reach it, written in its
	// Via and Record-Route; needed when Listen is 0.0.0.0.
	Host string `json:"sip_host,omitempty"`
	// PBX lists the PBX's source addresses (IP or CIDR); nobody else may
	// send the ingress a request.
	PBX []string `json:"pbx,omitempty"`
	// Domain is the PBX host volunteers' extensions live on
	// (sip:EXT@Domain); "" : volunteers give SIP addresses.
	Domain string `json:"domain,omitempty"`
	// Peers lists more senders of calls other centres redirect here (IP or
	// CIDR): their carriers' or SBCs' addresses, when those follow the
	// redirect themselves. The phone systems other centres publish in the
	// roster (sip_addr) are let in without being listed.
	Peers []string `json:"peers,omitempty"`
	// Browser makes the node the centre's phone, for a centre without a
	// PBX (docs/phone.md): volunteers answer in the console, and PBX lists
	// the SIP trunk's addresses.
	Browser *BrowserPhone `json:"browser,omitempty"`
}

// BrowserPhone is the node as the centre's phone.
type BrowserPhone struct {
	// MediaHost is the IP address callers' RTP reaches the node at.
	MediaHost string `json:"media_host"`
	// RTPPorts is the callers' RTP port range, e.g. "10000-10999" ("" :
	// any free port; a firewall then needs them all open).
	RTPPorts string `json:"rtp_ports,omitempty"`
	// ICEPorts is the UDP port range of the browsers' voice at the node,
	// e.g. "20000-20999" ("" : any free port).
	ICEPorts string `json:"ice_ports,omitempty"`
	// ICEServers are STUN and TURN servers for the node and the browsers.
	ICEServers []ICEServer `json:"ice_servers,omitempty"`
	// Prompt is a WAV (8 kHz mono 16-bit) a caller hears when nobody is
	// free anywhere ("" : the built-in message).
	Prompt string `json:"prompt,omitempty"`
	// Loopback offers 127.0.0.1 to the browsers (the demo).
	Loopback bool `json:"loopback,omitempty"`
}

// ICEServer is a STUN or TURN server, as WebRTC names its fields.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Media parses the browser phone's media host and port ranges.
func (b BrowserPhone) Media() (host netip.Addr, rtp, ice [2]uint16, err error) {
	host, err = netip.ParseAddr(b.MediaHost)
	if err != nil || host.IsUnspecified() {
		return host, rtp, ice, fmt.Errorf("load centre config: phone.browser.media_host %q: want the IP address callers reach the node at: %w", b.MediaHost, ErrBadConfig)
	}
	if rtp, err = portRange("rtp_ports", b.RTPPorts); err != nil {
		return host, rtp, ice, err
	}
	ice, err = portRange("ice_ports", b.ICEPorts)
	return host, rtp, ice, err
}

// portRange parses "LOW-HIGH" ("" : 0, 0).
func portRange(name, r string) ([2]uint16, error) {
	if r == "" {
		return [2]uint16{}, nil
	}
	lo, hi, ok := strings.Cut(r, "-")
	l, err1 := strconv.ParseUint(lo, 10, 16)
	h, err2 := strconv.ParseUint(hi, 10, 16)
	if !ok || err1 != nil || err2 != nil || l < 1024 || h < l || h-l < 1 {
		return [2]uint16{}, fmt.Errorf("load centre config: phone.browser.%s %q: want LOW-HIGH, e.g. 10000-10999: %w", name, r, ErrBadConfig)
	}
	return [2]uint16{uint16(l), uint16(h)}, nil
}

// WebConfig is what a centre tunes about its visitor-facing HTTP surface.
type WebConfig struct {
	// AllowedOrigins may embed the chat (widget) and open its socket, e.g.
	// "https://www.kirkens-sos.example".
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
	// TrustedProxies are the reverse proxies in front of the centre, as
	// addresses or CIDR ranges ("172.18.0.1", "10.0.0.0/8"). Only from them
	// is X-Forwarded-For read: the visitor is its rightmost hop that is not
	// one of them. Every per-address limit counts that address.
	TrustedProxies []string `json:"trusted_proxies,omitempty"`
	// ChatStartsPerMinute and ChatStartBurst bound chat starts per address.
	ChatStartsPerMinute int `json:"chat_starts_per_minute,omitempty"`
	ChatStartBurst      int `json:"chat_start_burst,omitempty"`
	// MaxChatsPerAddress bounds the chats open at once from one address.
	MaxChatsPerAddress int `json:"max_chats_per_address,omitempty"`
	// MaxQueue bounds the contacts waiting per channel at this centre.
	MaxQueue int `json:"max_queue,omitempty"`
	// QuickExitURL is where the quick exit sends a visitor: a neutral site.
	QuickExitURL string `json:"quick_exit_url,omitempty"`
	// PublicURL is the origin visitors open this centre's chat at, e.g.
	// "https://chat.bergen.example" (https; http for a loopback host only;
	// no path). It is published in the roster: the other centres' chat
	// pages start chats here when their own centre is draining, full or
	// down, and let pages from here open their chat sockets.
	PublicURL string `json:"public_url,omitempty"`
	// StaffAddr, host:port, if set, serves the console, enrolment, overview
	// and admin API (and /metrics without MetricsAddr); http_addr then
	// serves the visitors' paths only (docs/operations.md, "Going live over
	// HTTPS").
	StaffAddr string `json:"staff_addr,omitempty"`
	// MetricsAddr, host:port, if set, serves /metrics alone, plain HTTP.
	MetricsAddr string `json:"metrics_addr,omitempty"`
	// TLSCert and TLSKey are PEM files (absolute, or relative to the data
	// directory): the node then serves HTTPS on http_addr and staff_addr,
	// and reads the files again when they change.
	TLSCert string `json:"tls_cert,omitempty"`
	TLSKey  string `json:"tls_key,omitempty"`
}

// TLSFiles returns the certificate and key paths, relative ones resolved
// against the data directory dir ("" and "" without TLS).
func (w WebConfig) TLSFiles(dir string) (cert, key string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	return abs(w.TLSCert), abs(w.TLSKey)
}

// Federation is what every centre of one federation shares: the gossip
// label and key. A joining centre receives it over the authenticated,
// encrypted libp2p stream from the member it joins through.
type Federation struct {
	Label string `json:"label"`
	// GossipKey is the memberlist key (32 bytes), base64 on disk.
	GossipKey []byte `json:"gossip_key"`
	// GossipKeyGeneration is the roster generation of GossipKey: 0 for the
	// key the federation was created with, one more for each rotation.
	GossipKeyGeneration uint64 `json:"gossip_key_generation,omitempty"`
}

// InitResult is what `helpmesh init` reports.
type InitResult struct {
	Config     FileConfig
	PeerID     string
	AdminToken string
}

// Init writes a new centre's data directory: configuration, identity, admin
// token and fresh federation secrets (replaced if the centre later joins).
// It refuses a directory that already holds a centre.
func Init(dir string, cfg FileConfig) (InitResult, error) {
	if cfg.SIPAddr != "" {
		if err := consensus.CheckSIPAddr(cfg.SIPAddr); err != nil {
			return InitResult{}, fmt.Errorf("init centre: sip address: %v: %w", err, ErrBadConfig)
		}
	}
	if _, err := cfg.Phone.Prefixes(); err != nil {
		return InitResult{}, err
	}
	if cfg.Web.PublicURL != "" {
		if err := consensus.CheckPublicURL(cfg.Web.PublicURL); err != nil {
			return InitResult{}, fmt.Errorf("init centre: web.public_url: %v: %w", err, ErrBadConfig)
		}
	}
	if (cfg.Web.TLSCert == "") != (cfg.Web.TLSKey == "") {
		return InitResult{}, fmt.Errorf("init centre: web.tls_cert and web.tls_key go together (the certificate's PEM file and its key's): %w", ErrBadConfig)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return InitResult{}, fmt.Errorf("init centre: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigFile)); err == nil {
		return InitResult{}, fmt.Errorf("init centre: %s already holds a centre", dir)
	}
	key, err := LoadOrCreateIdentity(filepath.Join(dir, IdentityFile))
	if err != nil {
		return InitResult{}, fmt.Errorf("init centre: %w", err)
	}
	pid, err := PeerIDOf(key)
	if err != nil {
		return InitResult{}, fmt.Errorf("init centre: %w", err)
	}
	token := randomHex(32)
	if err := writeFileAtomic(filepath.Join(dir, AdminTokenFile), []byte(token+"\n"), 0o600); err != nil {
		return InitResult{}, fmt.Errorf("init centre: write admin token: %w", err)
	}
	fed := Federation{Label: "helpmesh-" + randomHex(8), GossipKey: randomBytes(32)}
	if err := SaveFederation(dir, fed); err != nil {
		return InitResult{}, fmt.Errorf("init centre: %w", err)
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, ConfigFile), append(b, '\n'), 0o600); err != nil {
		return InitResult{}, fmt.Errorf("init centre: write config: %w", err)
	}
	return InitResult{Config: cfg, PeerID: pid.String(), AdminToken: token}, nil
}

// LoadFileConfig reads a centre's configuration.
func LoadFileConfig(dir string) (FileConfig, error) {
	var c FileConfig
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return c, fmt.Errorf("load centre config (did you run helpmesh init?): %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("load centre config: %w", err)
	}
	// trust_proxy (true) trusted X-Forwarded-For from any peer. Ignoring it
	// would quietly count every visitor behind the proxy as the proxy's one
	// address, so that a handful of chat starts or logins would shut the
	// whole centre out: refuse to start instead, with what to write.
	var legacy struct {
		Web struct {
			TrustProxy bool `json:"trust_proxy"`
		} `json:"web"`
	}
	if json.Unmarshal(b, &legacy) == nil && legacy.Web.TrustProxy {
		return c, fmt.Errorf("load centre config: %w", ErrTrustProxyRemoved)
	}
	if _, err := ParseTrustedProxies(c.Web.TrustedProxies); err != nil {
		return c, fmt.Errorf("load centre config: web.trusted_proxies: %w", err)
	}
	if (c.Web.TLSCert == "") != (c.Web.TLSKey == "") {
		return c, fmt.Errorf("load centre config: web.tls_cert and web.tls_key go together (the certificate's PEM file and its key's): %w", ErrBadConfig)
	}
	if _, err := c.Phone.Prefixes(); err != nil {
		return c, err
	}
	if c.Web.PublicURL != "" {
		if err := consensus.CheckPublicURL(c.Web.PublicURL); err != nil {
			return c, fmt.Errorf("load centre config: web.public_url: %v: %w", err, ErrBadConfig)
		}
	}
	return c, nil
}

// Prefixes parses the PBX's source addresses; a PBX is required once the
// ingress listens.
func (p PhoneConfig) Prefixes() ([]netip.Prefix, error) {
	pbx, err := ParseTrustedProxies(p.PBX)
	if err != nil {
		return nil, fmt.Errorf("load centre config: phone.pbx: %v: %w", err, ErrBadConfig)
	}
	if p.Listen != "" && len(pbx) == 0 {
		return nil, fmt.Errorf("load centre config: phone.sip_listen is set but phone.pbx lists no PBX address: %w", ErrBadConfig)
	}
	if _, err := ParseTrustedProxies(p.Peers); err != nil {
		return nil, fmt.Errorf("load centre config: phone.peers: %v: %w", err, ErrBadConfig)
	}
	if p.Browser != nil {
		if p.Listen == "" {
			return nil, fmt.Errorf("load centre config: phone.browser needs phone.sip_listen (and phone.pbx: the SIP trunk's addresses): %w", ErrBadConfig)
		}
		if _, _, _, err := p.Browser.Media(); err != nil { // ranges too
			return nil, err
		}
	}
	return pbx, nil
}

// ErrTrustProxyRemoved refuses a configuration from before trusted_proxies.
var ErrTrustProxyRemoved = errors.New(`web.trust_proxy is no longer read: replace "trust_proxy": true in ` + ConfigFile +
	` by "trusted_proxies": [...], the addresses or CIDR ranges of the reverse proxies in front of the centre (for example ["127.0.0.1"] for a proxy on the same host)`)

// ParseTrustedProxies reads trusted proxies: each an IP address (a proxy)
// or a CIDR range (a proxy network).
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q is neither an address nor a CIDR range (e.g. 172.18.0.1 or 10.0.0.0/8)", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// LoadAdminToken reads the centre's admin token.
func LoadAdminToken(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		return "", fmt.Errorf("load admin token: %w", err)
	}
	tok := string(b)
	for len(tok) > 0 && (tok[len(tok)-1] == '\n' || tok[len(tok)-1] == '\r') {
		tok = tok[:len(tok)-1]
	}
	if tok == "" {
		return "", errors.New("load admin token: empty")
	}
	return tok, nil
}

// LoadFederation reads the federation secrets.
func LoadFederation(dir string) (Federation, error) {
	var f Federation
	b, err := os.ReadFile(filepath.Join(dir, FederationFile))
	if errors.Is(err, fs.ErrNotExist) {
		return f, fmt.Errorf("load federation secrets: %w", err)
	}
	if err != nil {
		return f, fmt.Errorf("load federation secrets: %w", err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("load federation secrets: %w", err)
	}
	if len(f.GossipKey) != 32 || f.Label == "" {
		return f, fmt.Errorf("load federation secrets: need a label and a 32-byte key")
	}
	return f, nil
}

// SaveFederation writes the federation secrets (mode 0600).
func SaveFederation(dir string, f Federation) error {
	b, _ := json.MarshalIndent(f, "", "  ")
	if err := writeFileAtomic(filepath.Join(dir, FederationFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save federation secrets: %w", err)
	}
	return nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return b
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }
