package consensus

// Care for volunteers (issue 17): the limits the router keeps for the
// volunteers' sake, national with per-centre overrides. Level 7.
//
// Unset (no care in the policy), nothing is enforced: the behaviour before
// level 7. That is deliberate, not an oversight. A cool-down and a
// shift limit take volunteers off the desk, so a federation turns them on
// knowingly, with a policy write, at a moment it chooses; a rolling
// upgrade must not change a centre's staffing in the middle of a night
// shift. DefaultPolicy cannot carry them either (it is the roster's state
// before the first log entry and must not change between releases), and
// heavy topics must name the federation's own topics. docs/operations.md
// gives the values we recommend and why; the demo writes them.

import (
	"fmt"
	"maps"
	"slices"
)

// Care is the policy's care for volunteers. A zero field turns its rule
// off.
type Care struct {
	// HeavyTopics are the policy topics after which a volunteer cools
	// down: a conversation categorised with any of them. National only,
	// like the topics themselves.
	HeavyTopics []string `json:"heavy_topics,omitempty"`
	// CoolDownSeconds is how long a volunteer gets no offer after a heavy
	// conversation, unless they say they are ready.
	CoolDownSeconds int `json:"cool_down_seconds,omitempty"`
	// MaxInARow is how many conversations a volunteer takes without a
	// break; after the last, they get a break of BreakSeconds.
	MaxInARow int `json:"max_in_a_row,omitempty"`
	// BreakSeconds is the break's length, and how long without a
	// conversation counts as one (the count starts again after it).
	BreakSeconds int `json:"break_seconds,omitempty"`
	// MaxShiftSeconds is the longest shift: after it a volunteer gets no
	// new offer. ShiftNoticeSeconds before it they are told, gently.
	MaxShiftSeconds    int `json:"max_shift_seconds,omitempty"`
	ShiftNoticeSeconds int `json:"shift_notice_seconds,omitempty"`
}

// CareOverride is one centre's own values: each field set replaces the
// national one (0 turns that rule off at the centre).
type CareOverride struct {
	CoolDownSeconds    *int `json:"cool_down_seconds,omitempty"`
	MaxInARow          *int `json:"max_in_a_row,omitempty"`
	BreakSeconds       *int `json:"break_seconds,omitempty"`
	MaxShiftSeconds    *int `json:"max_shift_seconds,omitempty"`
	ShiftNoticeSeconds *int `json:"shift_notice_seconds,omitempty"`
}

// Bounds of the care fields.
const (
	maxInARow     = 100
	maxShiftLimit = 24 * 3600
)

// CareFor is the care at centre: the national values with the centre's
// overrides. The zero Care when the policy has none and no override.
func (p Policy) CareFor(centre string) Care {
	var c Care
	if p.Care != nil {
		c = *p.Care
		c.HeavyTopics = slices.Clone(c.HeavyTopics)
	}
	o, ok := p.CareByCentre[centre]
	if !ok {
		return c
	}
	set := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	set(&c.CoolDownSeconds, o.CoolDownSeconds)
	set(&c.MaxInARow, o.MaxInARow)
	set(&c.BreakSeconds, o.BreakSeconds)
	set(&c.MaxShiftSeconds, o.MaxShiftSeconds)
	set(&c.ShiftNoticeSeconds, o.ShiftNoticeSeconds)
	return c
}

// isZero: a care that turns nothing on, left out of the canonical JSON.
func (c *Care) isZero() bool {
	return c == nil || len(c.HeavyTopics) == 0 && c.CoolDownSeconds == 0 && c.MaxInARow == 0 &&
		c.BreakSeconds == 0 && c.MaxShiftSeconds == 0 && c.ShiftNoticeSeconds == 0
}

// hasCare: the policy carries a care field into a command's JSON. A
// non-nil Care encodes even when it turns nothing on ("care":{}), and a
// level-6 release would refuse that at apply: presence, not effect, is
// what the release gate must see.
func (p Policy) hasCare() bool { return p.Care != nil || len(p.CareByCentre) > 0 }

func cloneCare(p *Policy) {
	if p.Care != nil {
		c := *p.Care
		c.HeavyTopics = slices.Clone(c.HeavyTopics)
		p.Care = &c
	}
	if p.CareByCentre != nil {
		m := make(map[string]CareOverride, len(p.CareByCentre))
		for id, o := range p.CareByCentre {
			m[id] = CareOverride{
				CoolDownSeconds: cloneInt(o.CoolDownSeconds), MaxInARow: cloneInt(o.MaxInARow),
				BreakSeconds: cloneInt(o.BreakSeconds), MaxShiftSeconds: cloneInt(o.MaxShiftSeconds),
				ShiftNoticeSeconds: cloneInt(o.ShiftNoticeSeconds),
			}
		}
		p.CareByCentre = m
	}
}

func cloneInt(v *int) *int {
	if v == nil {
		return nil
	}
	n := *v
	return &n
}

// canonicalCare makes an empty care and empty lists absent, as the
// canonical JSON wants (see canonicalJSON).
func canonicalCare(p *Policy) {
	if p.Care.isZero() {
		p.Care = nil
	} else if len(p.Care.HeavyTopics) == 0 {
		p.Care.HeavyTopics = nil
	}
	if len(p.CareByCentre) == 0 {
		p.CareByCentre = nil
	}
}

// validateCare checks the national care and each centre's as it comes
// out with its overrides, so a refusal names the field that breaks it.
func (p *Policy) validateCare(bad badFunc) error {
	if p.Care != nil {
		if len(p.Care.HeavyTopics) > maxTopics {
			return in("/care/heavy_topics", bad("at most %d heavy topics", maxTopics))
		}
		for i, t := range p.Care.HeavyTopics {
			if !slices.Contains(p.Topics, t) || slices.Contains(p.Care.HeavyTopics[:i], t) {
				return in(fmt.Sprintf("/care/heavy_topics/%d", i), bad("care.heavy_topics: %q is not one of the policy's topics, or is named twice", clip(t)))
			}
		}
		if err := checkCare(*p.Care, "/care", "care", bad); err != nil {
			return err
		}
	}
	if len(p.CareByCentre) > maxCentresInOrder {
		return in("/care_by_centre", bad("at most %d centres in care_by_centre", maxCentresInOrder))
	}
	// Sorted, so that every centre refuses a bad command with the same
	// words.
	for _, id := range slices.Sorted(maps.Keys(p.CareByCentre)) {
		at := "/care_by_centre/" + id
		if !idPattern.MatchString(id) {
			return in("/care_by_centre", bad("care_by_centre: %q is not a centre id (1-32 of a-z, 0-9 and -)", clip(id)))
		}
		if err := checkCare(p.CareFor(id), at, "care_by_centre."+id, bad); err != nil {
			return err
		}
	}
	return nil
}

// checkCare checks one centre's care; at is the JSON pointer of its
// object and name how the message calls it.
func checkCare(c Care, at, name string, bad badFunc) error {
	within := func(field string, v, limit int) error {
		if v < 0 || v > limit {
			return in(at+"/"+field, bad("%s.%s = %d must be 0-%d", name, field, v, limit))
		}
		return nil
	}
	for _, err := range []error{
		within("cool_down_seconds", c.CoolDownSeconds, maxSeconds),
		within("max_in_a_row", c.MaxInARow, maxInARow),
		within("break_seconds", c.BreakSeconds, maxSeconds),
		within("max_shift_seconds", c.MaxShiftSeconds, maxShiftLimit),
		within("shift_notice_seconds", c.ShiftNoticeSeconds, maxShiftLimit),
	} {
		if err != nil {
			return err
		}
	}
	if c.MaxInARow > 0 && c.BreakSeconds == 0 {
		return in(at+"/break_seconds", bad("%s.break_seconds must be set (1-%d) when max_in_a_row is: it is the break's length", name, maxSeconds))
	}
	if c.ShiftNoticeSeconds > 0 && c.ShiftNoticeSeconds >= c.MaxShiftSeconds {
		return in(at+"/shift_notice_seconds", bad("%s.shift_notice_seconds = %d must be shorter than max_shift_seconds (%d)", name, c.ShiftNoticeSeconds, c.MaxShiftSeconds))
	}
	return nil
}
