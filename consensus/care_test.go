package consensus

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func seconds(n int) *int { return &n }

// recommendedCare is what docs/operations.md recommends.
func recommendedCare() *Care {
	return &Care{HeavyTopics: []string{"suicidal-thoughts", "abuse-violence"}, CoolDownSeconds: 300,
		MaxInARow: 6, BreakSeconds: 600, MaxShiftSeconds: 4 * 3600, ShiftNoticeSeconds: 1800}
}

// A centre's override replaces exactly the fields it sets, 0 included; a
// centre without one has the national care; no care is the zero Care.
func TestCareForAppliesTheCentresOverrides(t *testing.T) {
	p := DefaultPolicy()
	if c := p.CareFor("oslo"); !c.isZeroValue() {
		t.Fatalf("no care in the policy: %+v, want the zero Care", c)
	}
	p.Care = recommendedCare()
	p.CareByCentre = map[string]CareOverride{"bergen": {CoolDownSeconds: seconds(0), MaxShiftSeconds: seconds(3 * 3600)}}
	if c := p.CareFor("oslo"); c.CoolDownSeconds != 300 || c.MaxShiftSeconds != 4*3600 {
		t.Fatalf("oslo: %+v, want the national care", c)
	}
	c := p.CareFor("bergen")
	if c.CoolDownSeconds != 0 || c.MaxShiftSeconds != 3*3600 || c.MaxInARow != 6 || c.BreakSeconds != 600 || len(c.HeavyTopics) != 2 {
		t.Fatalf("bergen: %+v, want cool-down off, a 3 h shift and the rest national", c)
	}
	if err := setPolicy(p, "").Validate(); err != nil {
		t.Fatalf("the recommended care with an override: %v", err)
	}
}

func (c Care) isZeroValue() bool { return (&c).isZero() && c.HeavyTopics == nil }

// A policy without care hashes as before level 7 (an empty care is
// absent), and care survives the JSON round trip a snapshot makes.
func TestCareKeepsTheVersionAndRoundTrips(t *testing.T) {
	plain := DefaultPolicy()
	empty := DefaultPolicy()
	empty.Care, empty.CareByCentre = &Care{HeavyTopics: []string{}}, map[string]CareOverride{}
	if plain.Version() != empty.Version() {
		t.Fatal("an empty care changed the policy's version")
	}
	p := DefaultPolicy()
	p.Care = recommendedCare()
	p.CareByCentre = map[string]CareOverride{"bergen": {BreakSeconds: seconds(900)}}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Policy
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Version() != p.Version() || back.CareFor("bergen").BreakSeconds != 900 {
		t.Fatalf("round trip: %+v", back.CareFor("bergen"))
	}
	q := p.clone()
	*q.CareByCentre["bergen"].BreakSeconds = 1
	q.Care.HeavyTopics[0] = "other"
	if p.CareFor("bergen").BreakSeconds != 900 || p.Care.HeavyTopics[0] != "suicidal-thoughts" {
		t.Fatal("clone shares the care with the original")
	}
}

// A policy with care is level 7, and the refusal names it.
func TestCareIsLevel7(t *testing.T) {
	p := DefaultPolicy()
	p.Care = &Care{CoolDownSeconds: 60}
	if got := CommandLevel(setPolicy(p, "")); got != 7 {
		t.Fatalf("care: level %d, want 7", got)
	}
	q := DefaultPolicy()
	q.CareByCentre = map[string]CareOverride{"oslo": {}}
	if got := CommandLevel(setPolicy(q, "")); got != 7 {
		t.Fatalf("care_by_centre: level %d, want 7", got)
	}
	if d := describe(setPolicy(p, "")); !strings.Contains(d, "care") {
		t.Fatalf("describe: %q does not name care", d)
	}
}

// Each refusal of a care field names the field and its pointer.
func TestCareRefusalsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Policy)
		field   string
		pointer string
		says    string
	}{
		{"unknown heavy topic", func(p *Policy) { p.Care.HeavyTopics = []string{"abuse-violence", "weather"} }, "care", "/care/heavy_topics/1", `"weather" is not one of the policy's topics`},
		{"twice", func(p *Policy) { p.Care.HeavyTopics = []string{"abuse-violence", "abuse-violence"} }, "care", "/care/heavy_topics/1", "named twice"},
		{"cool-down", func(p *Policy) { p.Care.CoolDownSeconds = -1 }, "care", "/care/cool_down_seconds", "care.cool_down_seconds = -1 must be 0-3600"},
		{"in a row", func(p *Policy) { p.Care.MaxInARow = 101 }, "care", "/care/max_in_a_row", "must be 0-100"},
		{"no break", func(p *Policy) { p.Care.BreakSeconds = 0 }, "care", "/care/break_seconds", "must be set"},
		{"shift", func(p *Policy) { p.Care.MaxShiftSeconds = 90000 }, "care", "/care/max_shift_seconds", "must be 0-86400"},
		{"notice", func(p *Policy) { p.Care.ShiftNoticeSeconds = p.Care.MaxShiftSeconds }, "care", "/care/shift_notice_seconds", "must be shorter than max_shift_seconds"},
		{"centre id", func(p *Policy) { p.CareByCentre = map[string]CareOverride{"Oslo!": {}} }, "care_by_centre", "/care_by_centre", `"Oslo!" is not a centre id`},
		{"centre value", func(p *Policy) {
			p.CareByCentre = map[string]CareOverride{"oslo": {CoolDownSeconds: seconds(4000)}}
		}, "care_by_centre", "/care_by_centre/oslo/cool_down_seconds", "care_by_centre.oslo.cool_down_seconds = 4000"},
		{"centre breaks a rule", func(p *Policy) {
			p.CareByCentre = map[string]CareOverride{"oslo": {BreakSeconds: seconds(0)}}
		}, "care_by_centre", "/care_by_centre/oslo/break_seconds", "must be set"},
	} {
		p := DefaultPolicy()
		p.Care = recommendedCare()
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
}
