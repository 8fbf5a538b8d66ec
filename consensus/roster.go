package consensus

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/helpmesh/helpmesh/internal/channels"
)

// Roster is the federation's replicated, slowly changing truth: which centres
// are admitted, which volunteers belong to which centre, and the national
// policy. It never holds anything about a visitor or a conversation.
type Roster struct {
	Centres    map[string]Centre    `json:"centres"`
	Volunteers map[string]Volunteer `json:"volunteers"`
	Policy     Policy               `json:"policy"`
	// GossipKeyGeneration counts rotations of the federation's gossip key:
	// 0 is the key the federation was created with. Public on purpose, so a
	// coordinator can see that every centre has caught up with a rotation.
	// The key itself is never in a Roster (see fsm.gossipKey): a roster is
	// served by the API, sent by the roster RPC and printed in test failures.
	GossipKeyGeneration uint64 `json:"gossip_key_generation"`
}

// Centre is one admitted centre and how to reach its node.
type Centre struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	PeerID     string   `json:"peer_id"`
	Addrs      []string `json:"addrs"`
	GossipAddr string   `json:"gossip_addr"`
	HTTPAddr   string   `json:"http_addr,omitempty"`
	// SIPAddr is the host:port where the centre's SIP ingress takes calls
	// from other centres' PBXs; empty when it takes none. Only
	// set_centre_sip (roster level 3) sets it: admit and update leave it as
	// it is, so their commands stay readable by a level-1 release.
	SIPAddr string `json:"sip_addr,omitempty"`
	// PublicURL is the origin visitors open the centre's chat at
	// ("https://chat.bergen.example"); empty when it publishes none. Every
	// centre's chat page may start a chat there when its own centre
	// refuses (entry failover), and every centre lets pages from it open
	// its chat socket. Only set_centre_public_url (roster level 5) sets it.
	PublicURL string `json:"public_url,omitempty"`
}

// Volunteer is the roster's view of a volunteer: an opaque id, the home centre
// that alone decides their live state, and what they can answer.
type Volunteer struct {
	ID        string   `json:"id"`
	Centre    string   `json:"centre"`
	Alias     string   `json:"alias"`
	Channels  []string `json:"channels"`
	Languages []string `json:"languages"`
	Capacity  int      `json:"capacity"`
	Role      string   `json:"role"`
}

// Policy is the national overflow policy every centre routes by.
type Policy struct {
	// OverflowAfterSeconds is how long a contact waits locally before it is
	// offered to other centres, per channel.
	OverflowAfterSeconds map[string]int `json:"overflow_after_seconds"`
	// Languages are the language codes the federation serves.
	Languages []string `json:"languages"`
	// Topics are the categorisation list, the same at every centre.
	Topics []string `json:"topics"`
	// ServiceLevelSeconds is the speed-to-answer target.
	ServiceLevelSeconds int `json:"service_level_seconds"`
	// EmergencyNumbers are shown to a visitor when the helpline is closed
	// or nobody is free.
	EmergencyNumbers []EmergencyNumber `json:"emergency_numbers,omitempty"`
	// OpenHours are when volunteers answer, in TimeZone; none means always.
	OpenHours []OpenPeriod `json:"open_hours,omitempty"`
	TimeZone  string       `json:"time_zone,omitempty"`
	// SupervisionOrder is the order in which a centre without a
	// supervisor on duty asks the others' supervisors for support (centre
	// ids; centres it does not name come after, by id). Level 7.
	SupervisionOrder []string `json:"supervision_order,omitempty"`
	// ReadAlongSilent: a visitor is not told when a supervisor reads along
	// (the helpline's own privacy notice says so). Unset, they are told,
	// the safe default. Level 7.
	ReadAlongSilent bool `json:"read_along_silent,omitempty"`
	// WaitLocallyWhenBusy: a contact waits the whole overflow_after for a
	// volunteer at its entry centre even when every one of them is in
	// conversations (the rule before level 7). Unset, it is offered to
	// the other centres at once then, and overflow_after is only the most
	// it waits for a local answer: the default, because waiting cannot
	// help it (docs/operations.md has the figures). Level 7.
	WaitLocallyWhenBusy bool `json:"wait_locally_when_busy,omitempty"`
	// Care is the care for volunteers the router keeps (care.go):
	// cool-down after a heavy conversation, a break after so many in a
	// row, the longest shift. CareByCentre holds a centre's own values.
	// Unset, nothing is enforced. Level 7.
	Care         *Care                   `json:"care,omitempty"`
	CareByCentre map[string]CareOverride `json:"care_by_centre,omitempty"`
}

// EmergencyNumber is a number to call when the helpline cannot answer.
type EmergencyNumber struct {
	// Name is shown on the pages of every language without a name of its
	// own in Names.
	Name   string `json:"name"`
	Number string `json:"number"`
	// Names are the number's name per language code (ISO 639-1, as the
	// policy's languages), shown on that language's pages. A command that
	// carries any is of roster level 4 (see CommandLevel).
	Names map[string]string `json:"names,omitempty"`
}

// NameIn returns the number's name for a page in language lang: its own
// name there, or else Name.
func (e EmergencyNumber) NameIn(lang string) string {
	if n, ok := e.Names[lang]; ok {
		return n
	}
	return e.Name
}

// OpenPeriod is one daily opening, e.g. weekday 1 (Monday) 18:00-06:00;
// a period whose end is before its start runs past midnight.
type OpenPeriod struct {
	Weekday int    `json:"weekday"`
	From    string `json:"from"`
	To      string `json:"to"`
}

// The roles a roster entry can hold. A supervisor manages their own
// centre's volunteers; a coordinator also admits centres, sets the national
// policy and rotates the gossip key (the API's rights table, docs/api.md).
// RoleCoordinator is of roster level 6: a level-5 release refuses it.
const (
	RoleVolunteer   = "volunteer"
	RoleSupervisor  = "supervisor"
	RoleCoordinator = "coordinator"
)

// Roles a volunteer can hold.
var roles = []string{RoleVolunteer, RoleSupervisor, RoleCoordinator}

// DefaultPolicy is what a new federation starts with. The topics follow the
// main categories Child Helpline International compares helplines by.
//
// It is the roster's state before the first log entry, so it must not
// change between releases: a centre that replays the log from the start
// and one that restores an older release's snapshot would otherwise hold
// different policies (and policy versions) for the same log. New defaults,
// such as names of the emergency numbers per language, are written with a
// policy write (the demo does; docs/operations.md's go-live page shows it).
func DefaultPolicy() Policy {
	return Policy{
		OverflowAfterSeconds: map[string]int{channels.Chat: 60, channels.Phone: 45},
		Languages:            []string{"nb", "nn", "en", "fr", "de"},
		Topics: []string{
			"mental-health", "abuse-violence", "family", "peers", "sexuality",
			"physical-health", "school-work", "loneliness", "substance-use",
			"suicidal-thoughts", "other",
		},
		ServiceLevelSeconds: 60,
		EmergencyNumbers: []EmergencyNumber{
			{Name: "Medical emergency", Number: "113"},
			{Name: "Police", Number: "112"},
		},
		TimeZone: "Europe/Oslo",
	}
}

// NewRoster returns an empty roster with the default policy.
func NewRoster() Roster {
	return Roster{Centres: map[string]Centre{}, Volunteers: map[string]Volunteer{}, Policy: DefaultPolicy()}
}

// Clone returns a deep copy, so readers never share maps with the FSM.
func (r Roster) Clone() Roster {
	out := Roster{
		Centres:    make(map[string]Centre, len(r.Centres)),
		Volunteers: make(map[string]Volunteer, len(r.Volunteers)),
		Policy:     r.Policy.clone(),

		GossipKeyGeneration: r.GossipKeyGeneration,
	}
	for k, c := range r.Centres {
		c.Addrs = slices.Clone(c.Addrs)
		out.Centres[k] = c
	}
	for k, v := range r.Volunteers {
		v.Channels = slices.Clone(v.Channels)
		v.Languages = slices.Clone(v.Languages)
		out.Volunteers[k] = v
	}
	return out
}

func (p Policy) clone() Policy {
	p.EmergencyNumbers = slices.Clone(p.EmergencyNumbers)
	for i, e := range p.EmergencyNumbers {
		p.EmergencyNumbers[i].Names = maps.Clone(e.Names)
	}
	p.OpenHours = slices.Clone(p.OpenHours)
	p.OverflowAfterSeconds = maps.Clone(p.OverflowAfterSeconds)
	p.Languages = slices.Clone(p.Languages)
	p.Topics = slices.Clone(p.Topics)
	cloneCare(&p)
	return p
}

// Version is the policy's content hash: the lowercase hex SHA-256 of its
// canonical JSON. It is computed, never stored, so every centre finds the
// same version for the same policy, whatever release or snapshot the policy
// came from; the API serves it as the policy's ETag and set_policy can be
// made conditional on it (Command.ExpectedPolicyVersion).
func (p Policy) Version() string {
	sum := sha256.Sum256(p.canonicalJSON())
	return hex.EncodeToString(sum[:])
}

// canonicalJSON encodes p with its empty maps and lists as absent, so a
// policy read back from a snapshot (where encoding/json turns an omitted
// list into nil) hashes as the one applied from the log. encoding/json
// sorts map keys and keeps struct fields in declaration order.
func (p Policy) canonicalJSON() []byte {
	c := p.clone()
	if len(c.OverflowAfterSeconds) == 0 {
		c.OverflowAfterSeconds = nil
	}
	if len(c.Languages) == 0 {
		c.Languages = nil
	}
	if len(c.Topics) == 0 {
		c.Topics = nil
	}
	if len(c.EmergencyNumbers) == 0 {
		c.EmergencyNumbers = nil
	}
	for i, e := range c.EmergencyNumbers {
		if len(e.Names) == 0 {
			c.EmergencyNumbers[i].Names = nil
		}
	}
	if len(c.OpenHours) == 0 {
		c.OpenHours = nil
	}
	canonicalCare(&c)
	b, err := json.Marshal(c)
	if err != nil {
		// A Policy holds only strings, ints, maps and lists of them.
		panic(fmt.Sprintf("encode policy: %v", err))
	}
	return b
}

// CentreByPeer finds the centre whose node has the given libp2p peer id.
func (r Roster) CentreByPeer(peerID string) (Centre, bool) {
	for _, c := range r.Centres {
		if c.PeerID == peerID {
			return c, true
		}
	}
	return Centre{}, false
}

// CentreIDs returns the admitted centres' ids in order.
func (r Roster) CentreIDs() []string {
	return slices.Sorted(maps.Keys(r.Centres))
}

// iso6391 holds the ISO 639-1 two-letter language codes; a roster entry with
// any other code is refused so that routing by language never silently misses.
const iso6391 = "aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv cy " +
	"da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz " +
	"ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt " +
	"lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt " +
	"qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to " +
	"tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu"

// KnownLanguage reports whether code is an ISO 639-1 language code.
func KnownLanguage(code string) bool {
	return len(code) == 2 && strings.Contains(" "+iso6391+" ", " "+code+" ")
}
