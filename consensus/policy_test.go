package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// namedPolicy is the default policy with names per language on its first
// emergency number.
func namedPolicy() Policy {
	p := DefaultPolicy()
	p.EmergencyNumbers[0].Names = map[string]string{"nb": "Medisinsk nødhjelp", "de": "Notruf"}
	return p
}

func setPolicy(p Policy, expected string) Command {
	return Command{Version: CommandVersion, Op: OpSetPolicy, Policy: &p, ExpectedPolicyVersion: expected}
}

func supervised(mod func(*Policy)) Policy {
	p := DefaultPolicy()
	mod(&p)
	return p
}

// A set_policy is level 1 as before unless it carries names or an expected
// version; then 4, which this build speaks.
func TestCommandLevel(t *testing.T) {
	plain := DefaultPolicy()
	emptyNames := DefaultPolicy()
	emptyNames.EmergencyNumbers[1].Names = map[string]string{}
	for _, tc := range []struct {
		name string
		cmd  Command
		want int
	}{
		{"plain set_policy", setPolicy(plain, ""), 1},
		{"empty names", setPolicy(emptyNames, ""), 1},
		{"names", setPolicy(namedPolicy(), ""), 4},
		{"expected version", setPolicy(plain, plain.Version()), 4},
		{"rotation", rotate(1, GossipKeyBytes), 2},
		{"set_centre_sip", setSIP("oslo", ""), 3},
		{"put_volunteer", volunteer("v1", "oslo", "nb"), 1},
		{"put_volunteer supervisor", withRole(volunteer("v1", "oslo", "nb"), RoleSupervisor), 1},
		{"put_volunteer coordinator", withRole(volunteer("v1", "oslo", "nb"), RoleCoordinator), 6},
		{"supervision order", setPolicy(supervised(func(p *Policy) { p.SupervisionOrder = []string{"oslo"} }), ""), 7},
		{"read along silent", setPolicy(supervised(func(p *Policy) { p.ReadAlongSilent = true }), ""), 7},
		// "care":{} turns nothing on but is in the command's JSON, which
		// a level-6 release refuses (review finding).
		{"empty care", setPolicy(supervised(func(p *Policy) { p.Care = &Care{} }), ""), 7},
		{"wait locally when busy", setPolicy(supervised(func(p *Policy) { p.WaitLocallyWhenBusy = true }), ""), 7},
	} {
		if got := CommandLevel(tc.cmd); got != tc.want {
			t.Errorf("%s: level %d, want %d", tc.name, got, tc.want)
		}
		if CommandLevel(tc.cmd) > RosterLevel {
			t.Errorf("%s: above RosterLevel", tc.name)
		}
	}
	if got := describe(withRole(volunteer("v1", "oslo", "nb"), RoleCoordinator)); got != "put_volunteer with the coordinator role" {
		t.Errorf("a coordinator's put_volunteer is described as %q", got)
	}
	if got := describe(setPolicy(supervised(func(p *Policy) { p.WaitLocallyWhenBusy = true }), "")); !strings.Contains(got, "wait_locally_when_busy") {
		t.Errorf("a set_policy with wait_locally_when_busy is described as %q", got)
	}
	// The gate is only needed because an older release refuses the
	// fields: a level-1 command must encode exactly as it did, with no
	// trace of them.
	b, _ := EncodeCommand(setPolicy(emptyNames, ""))
	for _, field := range []string{"names", "expected_policy_version", "supervision_order", "read_along_silent", "wait_locally_when_busy"} {
		if bytes.Contains(b, []byte(field)) {
			t.Errorf("a level-1 set_policy encodes %q: %s", field, b)
		}
	}
}

// The version is a hash of the content: equal policies have equal
// versions however they were built (nil or empty lists, map order), any
// change gives another, and a snapshot round trip keeps it.
func TestPolicyVersionIsTheContent(t *testing.T) {
	a := DefaultPolicy()
	v := a.Version()
	if len(v) != 64 || strings.Trim(v, "0123456789abcdef") != "" {
		t.Fatalf("version %q is not 64 lowercase hex digits", v)
	}
	b := DefaultPolicy()
	b.OpenHours = []OpenPeriod{}
	b.EmergencyNumbers[0].Names = map[string]string{}
	if b.Version() != v {
		t.Error("empty lists and maps change the version")
	}
	for name, change := range map[string]func(*Policy){
		"topic":     func(p *Policy) { p.Topics = append(p.Topics, "new-topic") },
		"order":     func(p *Policy) { p.Languages[0], p.Languages[1] = p.Languages[1], p.Languages[0] },
		"overflow":  func(p *Policy) { p.OverflowAfterSeconds["chat"]++ },
		"name":      func(p *Policy) { p.EmergencyNumbers[0].Names = map[string]string{"de": "Notruf"} },
		"time zone": func(p *Policy) { p.TimeZone = "" },
	} {
		c := DefaultPolicy()
		change(&c)
		if c.Version() == v {
			t.Errorf("changing the %s keeps the version", name)
		}
	}
	f, snap := applyAndSnapshot(t, setPolicy(namedPolicy(), ""))
	g := newFSM(func() {})
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got, want := g.read().Policy.Version(), f.read().Policy.Version(); got != want {
		t.Fatalf("restored policy at version %s, applied one at %s", got, want)
	}
	if !reflect.DeepEqual(g.read().Policy.EmergencyNumbers[0].Names, namedPolicy().EmergencyNumbers[0].Names) {
		t.Fatalf("the snapshot lost the names: %+v", g.read().Policy.EmergencyNumbers)
	}
}

// A conditional set_policy lands only on the version it names; a refused
// one changes nothing and names ErrPolicyChanged.
func TestSetPolicyChecksTheVersionAtApply(t *testing.T) {
	r := NewRoster()
	base := r.Policy.Version()
	first := DefaultPolicy()
	first.ServiceLevelSeconds = 30
	second := DefaultPolicy()
	second.ServiceLevelSeconds = 90
	if err := apply(&r, setPolicy(first, base)); err != nil {
		t.Fatalf("first write on the version it read: %v", err)
	}
	before := r.Clone()
	err := apply(&r, setPolicy(second, base))
	if !errors.Is(err, ErrPolicyChanged) {
		t.Fatalf("second write on the same read: %v, want ErrPolicyChanged", err)
	}
	if !reflect.DeepEqual(before, r) {
		t.Fatal("a refused conditional write changed the roster")
	}
	if err := fromWire(codeOf(err), err.Error()); !errors.Is(err, ErrPolicyChanged) {
		t.Fatalf("ErrPolicyChanged does not cross the wire: %v", err)
	}
	if err := apply(&r, setPolicy(second, "")); err != nil || r.Policy.ServiceLevelSeconds != 90 {
		t.Fatalf("an unconditional write: %v, service level %d", err, r.Policy.ServiceLevelSeconds)
	}
	for _, bad := range []string{"abc", strings.Repeat("A", 64), strings.Repeat("0", 63) + "g"} {
		if err := setPolicy(first, bad).Validate(); !errors.Is(err, ErrBadCommand) {
			t.Errorf("expected version %q: %v, want ErrBadCommand", bad, err)
		}
	}
	onVolunteer := volunteer("v1", "oslo", "nb")
	onVolunteer.ExpectedPolicyVersion = base
	if err := onVolunteer.Validate(); !errors.Is(err, ErrBadCommand) {
		t.Errorf("an expected policy version on put_volunteer: %v, want ErrBadCommand", err)
	}
}

// Each refusal of a policy names the field (and the exact value) it is
// about, keeps the words it always had, and is still ErrBadCommand.
func TestPolicyRefusalsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name           string
		change         func(*Policy)
		field, pointer string
		says           string
	}{
		{"no languages", func(p *Policy) { p.Languages = nil }, "languages", "/languages", "set_policy: 1-64 languages needed, got 0"},
		{"bad language", func(p *Policy) { p.Languages = []string{"nb", "xx"} }, "languages", "/languages", `unknown language code "xx"`},
		{"no topics", func(p *Policy) { p.Topics = nil }, "topics", "/topics", "the policy needs 1-64 topics"},
		{"bad topic", func(p *Policy) { p.Topics = []string{"ok", "Not OK"} }, "topics", "/topics/1", `topic "Not OK"`},
		{"service level", func(p *Policy) { p.ServiceLevelSeconds = 0 }, "service_level_seconds", "/service_level_seconds", "service_level_seconds 0 must be 1-3600"},
		{"channel", func(p *Policy) { p.OverflowAfterSeconds["fax"] = 1 }, "overflow_after_seconds", "/overflow_after_seconds", `unknown channel "fax"`},
		{"overflow", func(p *Policy) { p.OverflowAfterSeconds["chat"] = -1 }, "overflow_after_seconds", "/overflow_after_seconds/chat", "overflow_after_seconds[chat] = -1"},
		{"number", func(p *Policy) { p.EmergencyNumbers[1].Number = "call us" }, "emergency_numbers", "/emergency_numbers/1/number", `emergency number "call us"`},
		{"name", func(p *Policy) { p.EmergencyNumbers[0].Name = "" }, "emergency_numbers", "/emergency_numbers/0/name", "emergency number name must be 1-60 bytes"},
		{"names language", func(p *Policy) { p.EmergencyNumbers[0].Names = map[string]string{"klingon": "x"} }, "emergency_numbers", "/emergency_numbers/0/names", `unknown language code "klingon"`},
		{"empty name", func(p *Policy) { p.EmergencyNumbers[1].Names = map[string]string{"de": ""} }, "emergency_numbers", "/emergency_numbers/1/names/de", "emergency number name in de must be 1-60 bytes"},
		{"long name", func(p *Policy) { p.EmergencyNumbers[1].Names = map[string]string{"de": strings.Repeat("ü", 31)} }, "emergency_numbers", "/emergency_numbers/1/names/de", "must be 1-60 bytes"},
		{"control", func(p *Policy) { p.EmergencyNumbers[1].Names = map[string]string{"de": "Po\nlizei"} }, "emergency_numbers", "/emergency_numbers/1/names/de", "has a control character"},
		{"too many names", func(p *Policy) {
			p.EmergencyNumbers[1].Names = map[string]string{}
			for _, l := range strings.Fields(iso6391)[:maxLangs+1] {
				p.EmergencyNumbers[1].Names[l] = "x"
			}
		}, "emergency_numbers", "/emergency_numbers/1/names", "65 names, at most 64"},
		{"too large", func(p *Policy) {
			p.EmergencyNumbers = nil
			for i := range maxEmergency {
				e := EmergencyNumber{Name: "x", Number: fmt.Sprint(100 + i), Names: map[string]string{}}
				for _, l := range strings.Fields(iso6391)[:maxLangs] {
					e.Names[l] = strings.Repeat("<", maxEmergencyName)
				}
				p.EmergencyNumbers = append(p.EmergencyNumbers, e)
			}
		}, "emergency_numbers", "/emergency_numbers", "at most 49152"},
		{"open hours", func(p *Policy) { p.OpenHours = []OpenPeriod{{Weekday: 7, From: "18:00", To: "06:00"}} }, "open_hours", "/open_hours/0", "opening period 7"},
		{"time zone", func(p *Policy) { p.TimeZone = "not a zone" }, "time_zone", "/time_zone", "is not an IANA zone name"},
	} {
		p := DefaultPolicy()
		tc.change(&p)
		err := setPolicy(p, "").Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: %v, want a FieldError that is ErrBadCommand", tc.name, err)
			continue
		}
		if fe.Field != tc.field || fe.Pointer != tc.pointer || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: field %q pointer %q text %q, want %q %q saying %q", tc.name, fe.Field, fe.Pointer, err, tc.field, tc.pointer, tc.says)
		}
	}
	if err := setPolicy(namedPolicy(), "").Validate(); err != nil {
		t.Fatalf("a policy with names: %v", err)
	}
	// The largest policy that validates still makes a command.
	big := DefaultPolicy()
	big.EmergencyNumbers = nil
	for i := range maxEmergency {
		e := EmergencyNumber{Name: strings.Repeat("n", maxEmergencyName), Number: fmt.Sprint(100 + i), Names: map[string]string{}}
		for _, l := range strings.Fields(iso6391)[:maxLangs] {
			e.Names[l] = strings.Repeat("<", maxEmergencyName/6)
		}
		big.EmergencyNumbers = append(big.EmergencyNumbers, e)
	}
	cmd := setPolicy(big, DefaultPolicy().Version())
	if err := cmd.Validate(); err != nil {
		t.Fatalf("a big policy: %v", err)
	}
	if b, err := EncodeCommand(cmd); err != nil || len(b) > MaxCommandBytes {
		t.Fatalf("a policy that validates does not make a command: %d bytes, %v", len(b), err)
	}
}

// Through real Raft, with a second server in the group at level 3 (it
// speaks set_centre_sip but not names): a set_policy with names, or with a
// version check, is refused before the log with the level error; a plain
// one still goes through without asking; at level 4 both go through, and
// names round-trip through ReadRoster.
func TestSetPolicyWithNamesNeedsLevel4(t *testing.T) {
	levels := &fakeLevels{levels: map[string]int{}}
	c := startOneWith(t, levels.ask)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addSilentServer(ctx, t, c)
	levels.set("bergen", 3)
	base := c.Roster().Policy.Version()
	for _, tc := range []struct {
		name string
		cmd  Command
		says string
	}{
		{"names", setPolicy(namedPolicy(), ""), "set_policy with emergency numbers' names per language needs roster level 4"},
		{"version check", setPolicy(DefaultPolicy(), base), "set_policy with a version check (If-Match, or any PATCH) needs roster level 4"},
	} {
		before := c.Roster()
		_, lastBefore, _ := c.LogBounds()
		err := c.Propose(ctx, tc.cmd)
		if !errors.Is(err, ErrNotEverywhere) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "bergen speaks level 3") {
			t.Fatalf("%s at level 3: %v, want ErrNotEverywhere saying %q and naming bergen", tc.name, err, tc.says)
		}
		if _, lastAfter, _ := c.LogBounds(); lastAfter != lastBefore {
			t.Fatalf("%s: a refused command reached the log", tc.name)
		}
		if !reflect.DeepEqual(before, c.Roster()) {
			t.Fatalf("%s: a refused command changed the roster", tc.name)
		}
	}
	asked := levels.count()
	plain := DefaultPolicy()
	plain.ServiceLevelSeconds = 45
	if err := c.Propose(ctx, setPolicy(plain, "")); err != nil {
		t.Fatalf("a plain set_policy with bergen at level 3: %v", err)
	}
	if levels.count() != asked {
		t.Fatal("a plain set_policy asked for the centres' levels")
	}

	levels.set("bergen", 4)
	named := namedPolicy()
	if err := c.Propose(ctx, setPolicy(named, plain.Version())); err != nil {
		t.Fatalf("names with a version check at level 4: %v", err)
	}
	err := c.Propose(ctx, setPolicy(plain, plain.Version()))
	if !errors.Is(err, ErrPolicyChanged) {
		t.Fatalf("a write on a stale version: %v, want ErrPolicyChanged", err)
	}
	r, err := c.ReadRoster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r.Policy, named) {
		got, _ := json.Marshal(r.Policy)
		t.Fatalf("ReadRoster's policy %s, want the named one", got)
	}
}

// The roster starts from DefaultPolicy before the first log entry, and the
// policy's version is a hash of its content. A release that changed either
// (a new default, a Policy field without omitempty, another encoding)
// would give centres replaying the same log different policies or
// versions, and a conditional set_policy would then apply at some centres
// and not at others. This pins both; a deliberate change needs a roster
// level and a migration, not a new constant here.
func TestDefaultPolicyVersionIsPinned(t *testing.T) {
	const want = "dfc7d3119a7af1b092e01ea813f4f7eff7e466ebb87a479c620f9c282a7a28bd"
	if got := DefaultPolicy().Version(); got != want {
		t.Fatalf("DefaultPolicy().Version() = %s, want %s: the roster's starting state or the version's encoding changed between releases", got, want)
	}
}

// withRole sets cmd's volunteer's role.
func withRole(cmd Command, role string) Command {
	v := *cmd.Volunteer
	v.Role = role
	cmd.Volunteer = &v
	return cmd
}
