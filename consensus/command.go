package consensus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/helpmesh/helpmesh/internal/channels"
)

// CommandVersion is the only roster command version this build speaks. A
// newer node proposing a newer version to an older leader is refused cleanly,
// never half-understood.
const CommandVersion = 1

// MaxCommandBytes bounds one encoded roster command.
const MaxCommandBytes = 64 << 10

// Op names a roster change.
type Op string

// The roster changes there are.
const (
	OpAdmitCentre     Op = "admit_centre"
	OpUpdateCentre    Op = "update_centre"
	OpRemoveCentre    Op = "remove_centre"
	OpPutVolunteer    Op = "put_volunteer"
	OpRemoveVolunteer Op = "remove_volunteer"
	OpSetPolicy       Op = "set_policy"
	OpRotateGossipKey Op = "rotate_gossip_key"
	OpSetCentreSIP    Op = "set_centre_sip"
	// OpSetCentrePublicURL sets a centre's public chat URL (roster level 5).
	OpSetCentrePublicURL Op = "set_centre_public_url"
)

// Command is one versioned roster change, as proposed and as stored in the
// Raft log.
type Command struct {
	Version   int        `json:"v"`
	Op        Op         `json:"op"`
	Centre    *Centre    `json:"centre,omitempty"`
	Volunteer *Volunteer `json:"volunteer,omitempty"`
	Policy    *Policy    `json:"policy,omitempty"`
	// ID names the centre or volunteer a remove applies to.
	ID string `json:"id,omitempty"`
	// GossipKey is a rotate_gossip_key's new key and generation.
	GossipKey *GossipKey `json:"gossip_key,omitempty"`
	// CentreSIP is a set_centre_sip's centre and address.
	CentreSIP *CentreSIP `json:"centre_sip,omitempty"`
	// CentreURL is a set_centre_public_url's centre and URL.
	CentreURL *CentreURL `json:"centre_url,omitempty"`
	// ExpectedPolicyVersion makes a set_policy conditional: it is applied
	// only while the roster's policy still has this Version, else refused
	// with ErrPolicyChanged, checked at apply so that of two writes made
	// from the same read only the first lands. Empty: unconditional (last
	// writer wins). A command carrying it is of roster level 4.
	ExpectedPolicyVersion string `json:"expected_policy_version,omitempty"`
}

// CentreSIP sets (or, with an empty address, clears) a centre's SIP ingress
// address. It is an operation of its own rather than a field of admit or
// update, so that those stay level 1 (see DESIGN.md, Releases).
type CentreSIP struct {
	Centre  string `json:"centre"`
	SIPAddr string `json:"sip_addr"`
}

// CentreURL sets (or, with an empty URL, clears) a centre's public chat
// URL. Like CentreSIP it is an operation of its own, so that admit and update
// stay level 1 (see DESIGN.md, Releases).
type CentreURL struct {
	Centre    string `json:"centre"`
	PublicURL string `json:"public_url"`
}

var (
	idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	// maxCentresInOrder bounds the policy's supervision_order: more
	// centres than any national helpline has.
	maxCentresInOrder = 64
	peerPattern       = regexp.MustCompile(`^[1-9A-HJ-NP-Za-km-z]{46,64}$`)
	phonePattern      = regexp.MustCompile(`^\+?[0-9][0-9 ()-]{1,19}$`)
	hashPattern       = regexp.MustCompile(`^[0-9a-f]{64}$`)
	clockPattern      = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	zonePattern       = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_+-]{0,30}(/[A-Za-z0-9_+-]{1,30}){0,2}$`)
)

const (
	maxName    = 100
	maxAddrs   = 8
	maxAddr    = 256
	maxTopics  = 64
	maxLangs   = 64
	maxCap     = 8
	maxSeconds = 3600
	// maxEmergency bounds the policy's emergency numbers, maxEmergencyName
	// each name (Name and every one of Names).
	maxEmergency     = 8
	maxEmergencyName = 60
	// maxPolicyBytes bounds a policy's encoding, so a set_policy stays
	// within MaxCommandBytes (and a follower's forwarded request within
	// its limit) even when every name is escaped six-fold (encoding/json
	// writes < > & as \u003c). Only names per language can reach it.
	maxPolicyBytes = 48 << 10
)

// EncodeCommand returns the canonical encoding of c.
func EncodeCommand(c Command) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode roster command: %w", err)
	}
	if len(b) > MaxCommandBytes {
		return nil, fmt.Errorf("encode roster command: %d bytes: %w", len(b), ErrBadCommand)
	}
	return b, nil
}

// DecodeCommand parses and shape-checks one command. It refuses oversized
// input, unknown fields, trailing data and unknown versions.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if len(b) > MaxCommandBytes {
		return c, fmt.Errorf("decode roster command: %d bytes, limit %d: %w", len(b), MaxCommandBytes, ErrBadCommand)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Command{}, fmt.Errorf("decode roster command: %v: %w", err, ErrBadCommand)
	}
	// More() is false before a stray '}' or ']': only the end will do.
	if _, err := dec.Token(); err != io.EOF {
		return Command{}, fmt.Errorf("decode roster command: trailing data: %w", ErrBadCommand)
	}
	if err := c.Validate(); err != nil {
		return Command{}, err
	}
	return c, nil
}

// Validate checks everything about c that does not depend on the roster.
func (c Command) Validate() error {
	if c.Version != CommandVersion {
		return fmt.Errorf("roster command version %d (this node speaks %d): %w", c.Version, CommandVersion, ErrUnsupportedVersion)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format+": %w", append([]any{c.Op}, append(args, ErrBadCommand)...)...)
	}
	only := func(centre, volunteer, policy, id bool) error {
		if (c.Centre != nil) != centre || (c.Volunteer != nil) != volunteer || (c.Policy != nil) != policy || (c.ID != "") != id ||
			(c.GossipKey != nil) != (c.Op == OpRotateGossipKey) || (c.CentreSIP != nil) != (c.Op == OpSetCentreSIP) ||
			(c.CentreURL != nil) != (c.Op == OpSetCentrePublicURL) ||
			c.ExpectedPolicyVersion != "" && c.Op != OpSetPolicy {
			return bad("wrong fields for this operation")
		}
		return nil
	}
	switch c.Op {
	case OpAdmitCentre, OpUpdateCentre:
		if err := only(true, false, false, false); err != nil {
			return err
		}
		return c.Centre.validate(bad)
	case OpRemoveCentre, OpRemoveVolunteer:
		if err := only(false, false, false, true); err != nil {
			return err
		}
		if !idPattern.MatchString(c.ID) {
			return bad("id %q must be 1-32 of a-z, 0-9 and -", clip(c.ID))
		}
		return nil
	case OpPutVolunteer:
		if err := only(false, true, false, false); err != nil {
			return err
		}
		return c.Volunteer.validate(bad)
	case OpSetPolicy:
		if err := only(false, false, true, false); err != nil {
			return err
		}
		if v := c.ExpectedPolicyVersion; v != "" && !hashPattern.MatchString(v) {
			return bad("expected policy version %q is not a policy version (64 lowercase hex digits)", clip(v))
		}
		return c.Policy.validate(bad)
	case OpRotateGossipKey:
		if err := only(false, false, false, false); err != nil {
			return err
		}
		return c.GossipKey.validate(bad)
	case OpSetCentreSIP:
		if err := only(false, false, false, false); err != nil {
			return err
		}
		if !idPattern.MatchString(c.CentreSIP.Centre) {
			return bad("centre id %q must be 1-32 of a-z, 0-9 and -", clip(c.CentreSIP.Centre))
		}
		if c.CentreSIP.SIPAddr == "" {
			return nil
		}
		return checkSIPAddr(c.CentreSIP.SIPAddr, bad)
	case OpSetCentrePublicURL:
		if err := only(false, false, false, false); err != nil {
			return err
		}
		if !idPattern.MatchString(c.CentreURL.Centre) {
			return bad("centre id %q must be 1-32 of a-z, 0-9 and -", clip(c.CentreURL.Centre))
		}
		if c.CentreURL.PublicURL == "" {
			return nil
		}
		return checkPublicURL(c.CentreURL.PublicURL, bad)
	default:
		return fmt.Errorf("unknown operation %q: %w", clip(string(c.Op)), ErrBadCommand)
	}
}

type badFunc func(format string, args ...any) error

func (ce *Centre) validate(bad badFunc) error {
	if !idPattern.MatchString(ce.ID) {
		return bad("centre id %q must be 1-32 of a-z, 0-9 and -", clip(ce.ID))
	}
	if err := checkText("centre name", ce.Name, maxName, bad); err != nil {
		return err
	}
	if !peerPattern.MatchString(ce.PeerID) {
		return bad("peer id %q is not a libp2p peer id", clip(ce.PeerID))
	}
	if len(ce.Addrs) == 0 || len(ce.Addrs) > maxAddrs {
		return bad("a centre needs 1-%d addresses, got %d", maxAddrs, len(ce.Addrs))
	}
	for _, a := range ce.Addrs {
		if len(a) == 0 || len(a) > maxAddr || a[0] != '/' {
			return bad("address %q is not a multiaddr", clip(a))
		}
	}
	if len(ce.GossipAddr) == 0 || len(ce.GossipAddr) > maxAddr {
		return bad("gossip address %q must be host:port", clip(ce.GossipAddr))
	}
	if len(ce.HTTPAddr) > maxAddr {
		return bad("http address too long")
	}
	// A level-1 command carrying sip_addr would be refused at apply by a
	// level-1 release, which decodes strictly: the field has its own op.
	if ce.SIPAddr != "" {
		return bad("sip_addr is set with set_centre_sip, not with admit or update")
	}
	if ce.PublicURL != "" {
		return bad("public_url is set with set_centre_public_url, not with admit or update")
	}
	return nil
}

func (v *Volunteer) validate(bad badFunc) error {
	if !idPattern.MatchString(v.ID) {
		return bad("volunteer id %q must be 1-32 of a-z, 0-9 and -", clip(v.ID))
	}
	if !idPattern.MatchString(v.Centre) {
		return bad("home centre %q is not a centre id", clip(v.Centre))
	}
	if err := checkText("alias", v.Alias, 40, bad); err != nil {
		return err
	}
	if len(v.Channels) == 0 {
		return bad("a volunteer needs at least one channel")
	}
	for _, ch := range v.Channels {
		if !channels.Known(ch) {
			return bad("unknown channel %q (want one of %v)", clip(ch), channels.All())
		}
	}
	if err := checkLanguages(v.Languages, bad); err != nil {
		return err
	}
	if v.Capacity < 1 || v.Capacity > maxCap {
		return bad("capacity %d must be 1-%d", v.Capacity, maxCap)
	}
	if !slices.Contains(roles, v.Role) {
		return bad("unknown role %q (want volunteer, supervisor or coordinator)", clip(v.Role))
	}
	return nil
}

// FieldError is a refusal of one field of a policy, so that a form can
// show the message next to the input it is about. Its text is the
// refusal's own; Field is the policy's top-level JSON field
// ("languages") and Pointer the JSON pointer (RFC 6901) to the value
// refused ("/emergency_numbers/1/names/de"), or Field's pointer when the
// refusal is about the field as a whole. Unwrap gives ErrBadCommand.
type FieldError struct {
	Field   string
	Pointer string
	Err     error
}

func (e *FieldError) Error() string { return e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// in marks err as a refusal of the value at pointer, whose first segment
// names the field.
func in(pointer string, err error) error {
	if err == nil {
		return nil
	}
	field, _, _ := strings.Cut(strings.TrimPrefix(pointer, "/"), "/")
	return &FieldError{Field: field, Pointer: pointer, Err: err}
}

func (p *Policy) validate(bad badFunc) error {
	for _, ch := range slices.Sorted(maps.Keys(p.OverflowAfterSeconds)) {
		s := p.OverflowAfterSeconds[ch]
		if !channels.Known(ch) {
			return in("/overflow_after_seconds", bad("unknown channel %q in overflow_after_seconds (want one of %v)", clip(ch), channels.All()))
		}
		if s < 0 || s > maxSeconds {
			return in("/overflow_after_seconds/"+ch, bad("overflow_after_seconds[%s] = %d must be 0-%d", ch, s, maxSeconds))
		}
	}
	if err := checkLanguages(p.Languages, bad); err != nil {
		return in("/languages", err)
	}
	if len(p.Topics) == 0 || len(p.Topics) > maxTopics {
		return in("/topics", bad("the policy needs 1-%d topics", maxTopics))
	}
	for i, t := range p.Topics {
		if !idPattern.MatchString(t) {
			return in(fmt.Sprintf("/topics/%d", i), bad("topic %q must be 1-32 of a-z, 0-9 and -", clip(t)))
		}
	}
	if p.ServiceLevelSeconds < 1 || p.ServiceLevelSeconds > maxSeconds {
		return in("/service_level_seconds", bad("service_level_seconds %d must be 1-%d", p.ServiceLevelSeconds, maxSeconds))
	}
	if len(p.EmergencyNumbers) > maxEmergency {
		return in("/emergency_numbers", bad("at most %d emergency numbers", maxEmergency))
	}
	for i, e := range p.EmergencyNumbers {
		at := fmt.Sprintf("/emergency_numbers/%d", i)
		if err := checkText("emergency number name", e.Name, maxEmergencyName, bad); err != nil {
			return in(at+"/name", err)
		}
		if !phonePattern.MatchString(e.Number) {
			return in(at+"/number", bad("emergency number %q must be digits, spaces and + - ( )", clip(e.Number)))
		}
		if len(e.Names) > maxLangs {
			return in(at+"/names", bad("emergency number %q has %d names, at most %d (one per language)", clip(e.Number), len(e.Names), maxLangs))
		}
		// Sorted, so that every centre refuses a bad command with the
		// same words.
		for _, lang := range slices.Sorted(maps.Keys(e.Names)) {
			if !KnownLanguage(lang) {
				return in(at+"/names", bad("emergency number %q: unknown language code %q in names (want ISO 639-1, e.g. nb, en)", clip(e.Number), clip(lang)))
			}
			if err := checkText("emergency number name in "+lang, e.Names[lang], maxEmergencyName, bad); err != nil {
				return in(at+"/names/"+lang, err)
			}
		}
	}
	if len(p.OpenHours) > 28 {
		return in("/open_hours", bad("at most 28 opening periods"))
	}
	for i, o := range p.OpenHours {
		if o.Weekday < 0 || o.Weekday > 6 || !clockPattern.MatchString(o.From) || !clockPattern.MatchString(o.To) {
			return in(fmt.Sprintf("/open_hours/%d", i), bad("opening period %d %q-%q: weekday 0-6 (0 is Sunday) and HH:MM times", o.Weekday, clip(o.From), clip(o.To)))
		}
	}
	// Checked by shape only: apply must be deterministic on every centre,
	// and whether a zone loads depends on the machine's time zone data.
	if p.TimeZone != "" && !zonePattern.MatchString(p.TimeZone) {
		return in("/time_zone", bad("time zone %q is not an IANA zone name like Europe/Oslo", clip(p.TimeZone)))
	}
	if len(p.SupervisionOrder) > maxCentresInOrder {
		return in("/supervision_order", bad("at most %d centres in supervision_order", maxCentresInOrder))
	}
	for i, c := range p.SupervisionOrder {
		if !idPattern.MatchString(c) || slices.Contains(p.SupervisionOrder[:i], c) {
			return in(fmt.Sprintf("/supervision_order/%d", i), bad("supervision_order: %q is not a centre id (1-32 of a-z, 0-9 and -), or is named twice", clip(c)))
		}
	}
	if err := p.validateCare(bad); err != nil {
		return err
	}
	if n := len(p.canonicalJSON()); n > maxPolicyBytes {
		return in("/emergency_numbers", bad("the policy encodes to %d bytes, at most %d: give fewer or shorter emergency numbers' names", n, maxPolicyBytes))
	}
	return nil
}

func checkLanguages(langs []string, bad badFunc) error {
	if len(langs) == 0 || len(langs) > maxLangs {
		return bad("1-%d languages needed, got %d", maxLangs, len(langs))
	}
	for _, l := range langs {
		if !KnownLanguage(l) {
			return bad("unknown language code %q (want ISO 639-1, e.g. nb, en)", clip(l))
		}
	}
	return nil
}

func checkText(what, s string, limit int, bad badFunc) error {
	if s == "" || len(s) > limit || !utf8.ValidString(s) {
		return bad("%s must be 1-%d bytes of UTF-8", what, limit)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return bad("%s has a control character", what)
		}
	}
	return nil
}

// clip keeps hostile input short in error messages and logs.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
