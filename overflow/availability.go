// Package overflow shares volunteer availability between helpline centres so
// that a centre whose queue is full can hand calls to one that has free
// volunteers. There is no central server: every centre runs one node and the
// nodes gossip with hashicorp/memberlist. See DESIGN.md for the reasoning.
package overflow

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/helpmesh/helpmesh/switchboard"
)

// Wire format constants. Every payload starts with a two-byte header,
// WireVersion then a kind byte, so that a peer running an incompatible release is
// refused explicitly instead of being half-understood.
const (
	// WireVersion is the only protocol version this release speaks. A peer
	// sending any other version is refused rather than guessed at, because a
	// misread queue length could route a caller to a centre that cannot answer.
	WireVersion byte = 1

	// MaxStateBytes bounds one encoded Availability, header included. It is far
	// above a realistic centre (a few channels times a few dozen languages is
	// well under 2 KiB) so that it only ever stops runaway or hostile input.
	MaxStateBytes = 16 << 10

	// MaxSnapshotBytes bounds the full view exchanged in a push/pull, so one
	// peer cannot make another allocate without limit.
	MaxSnapshotBytes = 1 << 20

	// MaxCentres bounds how many distinct centres a node will remember; a
	// national federation has tens, so this only stops a flood of made-up ids.
	MaxCentres = 512

	// MaxCentreIDLen bounds a centre id. The id is also the memberlist node
	// name and appears in logs and metrics labels.
	MaxCentreIDLen = 64

	// MaxChannels bounds the channels one centre may publish.
	MaxChannels = 16

	// MaxLanguages bounds the languages in one Free or Busy map.
	MaxLanguages = 64

	// MaxCount bounds any single counter (volunteers, queue length); real
	// values are in the tens, so anything near this is corrupt input.
	MaxCount = 1 << 20

	// MaxVersion keeps versions exactly representable as JSON numbers in
	// every consumer (2^53), including JavaScript dashboards.
	MaxVersion = 1 << 53

	maxChannelNameLen  = 32
	maxLanguageCodeLen = 35 // the longest well-formed BCP 47 tag in practice
	headerLen          = 2
)

// Payload kinds, the second header byte.
const (
	kindState    byte = 1 // one Availability: broadcasts and direct sends
	kindSnapshot byte = 2 // every known Availability: push/pull
	kindMeta     byte = 3 // memberlist NodeMeta
	kindLeave    byte = 4 // a centre announcing a deliberate leave
)

// Sentinel errors. Callers match them with errors.Is; the wrapping error
// carries the operation and the detail.
var (
	// ErrTooLarge reports input or output above MaxStateBytes or
	// MaxSnapshotBytes.
	ErrTooLarge = errors.New("payload too large")

	// ErrMalformed reports bytes that do not parse as the expected payload.
	ErrMalformed = errors.New("malformed payload")

	// ErrUnsupportedVersion reports a payload whose protocol version this
	// release does not speak.
	ErrUnsupportedVersion = errors.New("unsupported protocol version")

	// ErrInvalidCentre reports a centre id that is empty, too long or uses
	// characters outside [A-Za-z0-9._-].
	ErrInvalidCentre = errors.New("invalid centre id")

	// ErrInvalidAvailability reports an Availability that parses but breaks a
	// bound: negative counters, too many channels, bad language codes.
	ErrInvalidAvailability = errors.New("invalid availability")

	// ErrCentreMismatch reports an Availability or node naming a centre other
	// than the one it claims to come from.
	ErrCentreMismatch = errors.New("centre mismatch")

	// ErrInvalidKey reports a gossip key that is not exactly 32 bytes.
	ErrInvalidKey = errors.New("gossip key must be 32 bytes")

	// ErrKeyNotInstalled reports a request to encrypt with a gossip key that
	// was never added to the keyring (or was already dropped).
	ErrKeyNotInstalled = errors.New("gossip key not installed")

	// ErrInvalidConfig reports a GossipConfig field that cannot be used:
	// unparsable address, over-long label.
	ErrInvalidConfig = errors.New("invalid gossip config")

	// ErrUnknownTiming reports a GossipConfig.Timing profile that does not
	// exist.
	ErrUnknownTiming = errors.New("unknown timing profile")

	// ErrJoinFailed reports that none of the given peers could be contacted.
	ErrJoinFailed = errors.New("no peer could be joined")

	// ErrStopped reports a call on a Gossip after Stop.
	ErrStopped = errors.New("gossip stopped")
)

// Availability is what one centre publishes about itself.
type Availability struct {
	// Centre is the publishing centre's id; it equals its memberlist node name.
	Centre string `json:"centre"`
	// Version increases with every SetLocal of that centre; receivers keep
	// only the highest version they have seen.
	Version uint64 `json:"version"`
	// Accepting says whether the centre takes overflow from others at all.
	Accepting bool `json:"accepting"`
	// Draining says the centre takes no new visitor (a rolling restart):
	// other centres' chat pages then start chats elsewhere. A release
	// before it existed never says so.
	Draining bool `json:"draining,omitempty"`
	// SupervisorsOnDuty counts the centre's supervisors (and coordinators)
	// on duty in a supervisor console now: whether a centre has one, never
	// who. A release before it existed never says so (0).
	SupervisorsOnDuty int `json:"supervisors_on_duty,omitempty"`
	// Channels is keyed by channel name, e.g. "chat", "phone".
	Channels map[string]ChannelState `json:"channels"`
	// UpdatedUnixMilli is the publisher's wall clock when it called SetLocal.
	UpdatedUnixMilli int64 `json:"updated_unix_milli"`
}

// ChannelState is one channel's load at one centre.
type ChannelState struct {
	// Free counts idle volunteers by language code: a volunteer who speaks
	// three languages counts once in each.
	Free map[string]int `json:"free"`
	// Busy counts volunteers on a contact by language code.
	Busy map[string]int `json:"busy"`
	// FreeVolunteers counts idle volunteers, each once. A release before it
	// existed sends none: 0 with a non-empty Free.
	FreeVolunteers int `json:"free_volunteers"`
	// QueueLength is the number of contacts waiting.
	QueueLength int `json:"queue_length"`
	// OldestWaitMillis is how long the longest-waiting contact has waited.
	OldestWaitMillis int64 `json:"oldest_wait_millis"`
}

// Clone returns a deep copy, so a caller can keep or change the result without
// racing the gossip goroutines that hold the original.
func (a Availability) Clone() Availability {
	out := a
	if a.Channels != nil {
		out.Channels = make(map[string]ChannelState, len(a.Channels))
		for name, ch := range a.Channels {
			ch.Free = maps.Clone(ch.Free)
			ch.Busy = maps.Clone(ch.Busy)
			out.Channels[name] = ch
		}
	}
	return out
}

// Validate checks every bound that decoding enforces, so a node never
// publishes something its peers would refuse.
func (a Availability) Validate() error {
	if err := validateCentre(a.Centre); err != nil {
		return err
	}
	if a.Version == 0 || a.Version > MaxVersion {
		return fmt.Errorf("%w: version %d outside [1, 2^53]", ErrInvalidAvailability, a.Version)
	}
	if a.UpdatedUnixMilli < 0 {
		return fmt.Errorf("%w: negative update time", ErrInvalidAvailability)
	}
	if a.SupervisorsOnDuty < 0 || a.SupervisorsOnDuty > MaxCount {
		return fmt.Errorf("%w: supervisors on duty %d", ErrInvalidAvailability, a.SupervisorsOnDuty)
	}
	if len(a.Channels) > MaxChannels {
		return fmt.Errorf("%w: %d channels, at most %d", ErrInvalidAvailability, len(a.Channels), MaxChannels)
	}
	for name, ch := range a.Channels {
		if !validToken(name, maxChannelNameLen) {
			return fmt.Errorf("%w: channel name %q", ErrInvalidAvailability, name)
		}
		if err := validateCounts(name, "free", ch.Free); err != nil {
			return err
		}
		if err := validateCounts(name, "busy", ch.Busy); err != nil {
			return err
		}
		if ch.FreeVolunteers < 0 || ch.FreeVolunteers > MaxCount {
			return fmt.Errorf("%w: channel %q free volunteers %d", ErrInvalidAvailability, name, ch.FreeVolunteers)
		}
		if ch.QueueLength < 0 || ch.QueueLength > MaxCount {
			return fmt.Errorf("%w: channel %q queue length %d", ErrInvalidAvailability, name, ch.QueueLength)
		}
		if ch.OldestWaitMillis < 0 {
			return fmt.Errorf("%w: channel %q negative oldest wait", ErrInvalidAvailability, name)
		}
	}
	return nil
}

func validateCounts(channel, which string, counts map[string]int) error {
	if len(counts) > MaxLanguages {
		return fmt.Errorf("%w: channel %q has %d %s languages, at most %d",
			ErrInvalidAvailability, channel, len(counts), which, MaxLanguages)
	}
	for lang, n := range counts {
		if !validToken(lang, maxLanguageCodeLen) {
			return fmt.Errorf("%w: channel %q %s language %q", ErrInvalidAvailability, channel, which, lang)
		}
		if n < 0 || n > MaxCount {
			return fmt.Errorf("%w: channel %q %s[%s] = %d", ErrInvalidAvailability, channel, which, lang, n)
		}
	}
	return nil
}

func validateCentre(id string) error {
	if !validToken(id, MaxCentreIDLen) {
		return fmt.Errorf("%w: %q", ErrInvalidCentre, id)
	}
	return nil
}

// validToken restricts ids to a charset that is safe in logs, metric labels
// and URLs without escaping.
func validToken(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// wireAvailability is the JSON body. It is separate from Availability so the
// public type can be marshalled by other packages (HTTP APIs, logs) with
// readable names while the gossip wire stays compact; short keys matter
// because a state has to fit one UDP packet to travel by broadcast.
type wireAvailability struct {
	C  string                 `json:"c"`
	V  uint64                 `json:"v"`
	A  bool                   `json:"a,omitempty"`
	Ch map[string]wireChannel `json:"ch,omitempty"`
	U  int64                  `json:"u,omitempty"`
	// D is Draining, added without a version bump: older nodes ignore it
	// (decodeBody accepts unknown fields).
	D bool `json:"d,omitempty"`
	// S is SupervisorsOnDuty, added without a version bump likewise.
	S int `json:"s,omitempty"`
}

type wireChannel struct {
	F map[string]int `json:"f,omitempty"`
	B map[string]int `json:"b,omitempty"`
	Q int            `json:"q,omitempty"`
	W int64          `json:"w,omitempty"`
	// P is FreeVolunteers, added without a version bump: older nodes
	// ignore it (decodeBody accepts unknown fields).
	P int `json:"p,omitempty"`
}

// EncodeAvailability validates a and encodes it with the protocol header. The
// result is at most MaxStateBytes long.
func EncodeAvailability(a Availability) ([]byte, error) {
	body, err := encodeBody(a)
	if err != nil {
		return nil, fmt.Errorf("overflow: encode availability: %w", err)
	}
	out := make([]byte, 0, headerLen+len(body))
	out = append(out, WireVersion, kindState)
	return append(out, body...), nil
}

// encodeBody returns the JSON body without header, the unit that snapshots
// are built from.
func wireOf(a Availability) wireAvailability {
	w := wireAvailability{C: a.Centre, V: a.Version, A: a.Accepting, U: a.UpdatedUnixMilli, D: a.Draining, S: a.SupervisorsOnDuty}
	if len(a.Channels) > 0 {
		w.Ch = make(map[string]wireChannel, len(a.Channels))
		for name, ch := range a.Channels {
			w.Ch[name] = wireChannel{F: ch.Free, B: ch.Busy, Q: ch.QueueLength, W: ch.OldestWaitMillis, P: ch.FreeVolunteers}
		}
	}
	return w
}

func encodeBody(a Availability) ([]byte, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(wireOf(a))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if headerLen+len(body) > MaxStateBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, headerLen+len(body), MaxStateBytes)
	}
	return body, nil
}

// DecodeAvailability parses what EncodeAvailability produced. It refuses
// oversized input before parsing, unknown protocol versions, trailing data
// and anything that fails Validate; it never panics on any input.
func DecodeAvailability(b []byte) (Availability, error) {
	if len(b) > MaxStateBytes {
		return Availability{}, fmt.Errorf("overflow: decode availability: %w: %d bytes, limit %d",
			ErrTooLarge, len(b), MaxStateBytes)
	}
	if err := checkHeader(b, kindState); err != nil {
		return Availability{}, fmt.Errorf("overflow: decode availability: %w", err)
	}
	a, err := decodeBody(b[headerLen:])
	if err != nil {
		return Availability{}, fmt.Errorf("overflow: decode availability: %w", err)
	}
	return a, nil
}

func checkHeader(b []byte, kind byte) error {
	if len(b) < headerLen {
		return fmt.Errorf("%w: %d bytes is shorter than the header", ErrMalformed, len(b))
	}
	if b[0] != WireVersion {
		return fmt.Errorf("%w: got %d, speak %d", ErrUnsupportedVersion, b[0], WireVersion)
	}
	if b[1] != kind {
		return fmt.Errorf("%w: payload kind %d, want %d", ErrMalformed, b[1], kind)
	}
	return nil
}

func decodeBody(body []byte) (Availability, error) {
	if headerLen+len(body) > MaxStateBytes {
		return Availability{}, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, headerLen+len(body), MaxStateBytes)
	}
	// Unknown fields are accepted on purpose: a later release may add an
	// optional field without a version bump, and old nodes should keep
	// working. Anything that changes the meaning of known fields must bump
	// WireVersion instead.
	var w wireAvailability
	if err := json.Unmarshal(body, &w); err != nil {
		return Availability{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	a := Availability{Centre: w.C, Version: w.V, Accepting: w.A, UpdatedUnixMilli: w.U, Draining: w.D, SupervisorsOnDuty: w.S}
	if len(w.Ch) > 0 {
		a.Channels = make(map[string]ChannelState, len(w.Ch))
		for name, ch := range w.Ch {
			a.Channels[name] = ChannelState{
				Free:             nilIfEmpty(ch.F),
				Busy:             nilIfEmpty(ch.B),
				FreeVolunteers:   ch.P,
				QueueLength:      ch.Q,
				OldestWaitMillis: ch.W,
			}
		}
	}
	if err := a.Validate(); err != nil {
		return Availability{}, err
	}
	return a, nil
}

// nilIfEmpty makes decoding canonical: "{}" and an absent map decode alike,
// so a decoded value re-encodes to the same bytes and compares equal.
func nilIfEmpty(m map[string]int) map[string]int {
	if len(m) == 0 {
		return nil
	}
	return m
}

// encodeSnapshot frames already-encoded bodies (see encodeBody) as
// [header][uvarint len][body]... It stops before MaxSnapshotBytes and reports
// how many bodies it left out, so the caller can log the truncation.
func encodeSnapshot(bodies [][]byte) (out []byte, omitted int) {
	out = append(make([]byte, 0, 1024), WireVersion, kindSnapshot)
	for i, body := range bodies {
		if len(out)+binary.MaxVarintLen64+len(body) > MaxSnapshotBytes {
			return out, len(bodies) - i
		}
		out = binary.AppendUvarint(out, uint64(len(body)))
		out = append(out, body...)
	}
	return out, 0
}

// decodeSnapshot parses encodeSnapshot output. One bad entry fails the
// whole snapshot: a peer producing garbage is not trusted for the rest.
func decodeSnapshot(b []byte) ([]Availability, error) {
	if len(b) > MaxSnapshotBytes {
		return nil, fmt.Errorf("overflow: decode snapshot: %w: %d bytes, limit %d", ErrTooLarge, len(b), MaxSnapshotBytes)
	}
	if err := checkHeader(b, kindSnapshot); err != nil {
		return nil, fmt.Errorf("overflow: decode snapshot: %w", err)
	}
	rest := b[headerLen:]
	var out []Availability
	for len(rest) > 0 {
		if len(out) >= MaxCentres {
			return nil, fmt.Errorf("overflow: decode snapshot: %w: more than %d centres", ErrTooLarge, MaxCentres)
		}
		n, used := binary.Uvarint(rest)
		if used <= 0 {
			return nil, fmt.Errorf("overflow: decode snapshot: %w: bad length prefix", ErrMalformed)
		}
		rest = rest[used:]
		if n > uint64(len(rest)) {
			return nil, fmt.Errorf("overflow: decode snapshot: %w: entry of %d bytes, %d left", ErrMalformed, n, len(rest))
		}
		a, err := decodeBody(rest[:n])
		if err != nil {
			return nil, fmt.Errorf("overflow: decode snapshot entry %d: %w", len(out), err)
		}
		out = append(out, a)
		rest = rest[n:]
	}
	return out, nil
}

// encodeMeta is the memberlist NodeMeta: protocol version and centre id only.
// The availability version is deliberately not in it: memberlist captures
// NodeMeta only when it (re)advertises the node, so a version there would be
// stale almost at once unless every change also paid for an UpdateNode round.
func encodeMeta(centre string) []byte {
	return append([]byte{WireVersion, kindMeta}, centre...)
}

func decodeMeta(b []byte) (string, error) {
	if len(b) > headerLen+MaxCentreIDLen {
		return "", fmt.Errorf("overflow: decode node meta: %w: %d bytes", ErrTooLarge, len(b))
	}
	if err := checkHeader(b, kindMeta); err != nil {
		return "", fmt.Errorf("overflow: decode node meta: %w", err)
	}
	centre := string(b[headerLen:])
	if err := validateCentre(centre); err != nil {
		return "", fmt.Errorf("overflow: decode node meta: %w", err)
	}
	return centre, nil
}

// encodeLeave is the leave intent a centre broadcasts before memberlist's own
// leave. memberlist reports a graceful leave and a failure through the same
// NotifyLeave callback and never fills in Node.State, so without this message
// peers could not tell "left" (planned) from "dead" (alert someone). The
// version comes from the centre's availability counter, which lets receivers
// ignore an intent older than the centre's current availability, i.e. one
// from before a restart.
func encodeLeave(centre string, version uint64) []byte {
	out := binary.AppendUvarint([]byte{WireVersion, kindLeave}, version)
	return append(out, centre...)
}

func decodeLeave(b []byte) (string, uint64, error) {
	if len(b) > headerLen+binary.MaxVarintLen64+MaxCentreIDLen {
		return "", 0, fmt.Errorf("overflow: decode leave: %w: %d bytes", ErrTooLarge, len(b))
	}
	if err := checkHeader(b, kindLeave); err != nil {
		return "", 0, fmt.Errorf("overflow: decode leave: %w", err)
	}
	version, used := binary.Uvarint(b[headerLen:])
	if used <= 0 {
		return "", 0, fmt.Errorf("overflow: decode leave: %w: bad version", ErrMalformed)
	}
	if version == 0 || version > MaxVersion {
		return "", 0, fmt.Errorf("overflow: decode leave: %w: version %d", ErrMalformed, version)
	}
	centre := string(b[headerLen+used:])
	if err := validateCentre(centre); err != nil {
		return "", 0, fmt.Errorf("overflow: decode leave: %w", err)
	}
	return centre, version, nil
}

// DeskState is what AvailabilityOf reads of a switchboard.
type DeskState interface {
	Availability() map[string]switchboard.ChannelView
	Draining() bool
	SupervisorsOnDuty() int
}

// AvailabilityOf is what a centre tells the federation of its desk: the node
// publishes it by gossip, the capacity simulator (sim/) by its in-memory
// links. Version is left for the publisher to set.
func AvailabilityOf(centre string, desk DeskState) Availability {
	a := Availability{Centre: centre, Channels: map[string]ChannelState{}, Draining: desk.Draining(), SupervisorsOnDuty: desk.SupervisorsOnDuty()}
	for ch, v := range desk.Availability() {
		free := 0
		for _, f := range v.Free {
			free += f
		}
		if free > 0 {
			a.Accepting = true
		}
		a.Channels[ch] = ChannelState{Free: v.Free, Busy: v.Busy, FreeVolunteers: v.FreeVolunteers, QueueLength: v.QueueLength, OldestWaitMillis: v.OldestWait.Milliseconds()}
	}
	return a
}
