package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A scenario is one night, week or month to replay through the router:
// the centres, who is on shift when, who arrives when, and how long people
// talk and wait. docs/simulator.md explains each field for coordinators.
type Scenario struct {
	Name string `json:"name"`
	// Start is the scenario's first moment (RFC 3339; default Monday
	// 2026-11-30 00:00 UTC): shift days and hours are counted from it.
	Start string `json:"start,omitempty"`
	// Hours simulated.
	Hours float64 `json:"hours"`
	// Seed fixes the visitors: their arrivals, talk times and patience.
	// Volunteers' choices at one instant may interleave differently from
	// run to run, so figures can differ a little between runs of one seed.
	Seed      uint64    `json:"seed"`
	Policy    Policy    `json:"policy"`
	Network   Network   `json:"network"`
	Behaviour Behaviour `json:"behaviour"`
	Centres   []Centre  `json:"centres"`
	// Trace, if given, replaces every centre's arrivals with these
	// contacts, each with its own talk time and patience: a recorded
	// sequence replayed (the simulator's agreement test replays the one it
	// sent through real centres).
	Trace []Contact `json:"trace,omitempty"`
	// WhatIf are changes to run beside the scenario (compare.go).
	WhatIf []WhatIf `json:"what_if,omitempty"`
	// Notes say where a built scenario's numbers came from and what was
	// assumed (FromPrometheus); the simulator does not read them.
	Notes []string `json:"notes,omitempty"`
}

// Policy is the part of the national policy that routing reads.
type Policy struct {
	Languages            []string           `json:"languages"`
	OverflowAfterSeconds map[string]float64 `json:"overflow_after_seconds"`
	WaitLocallyWhenBusy  bool               `json:"wait_locally_when_busy"`
	RingSeconds          float64            `json:"ring_seconds"`
	ServiceLevelSeconds  float64            `json:"service_level_seconds"`
	// MaxQueue bounds the contacts waiting per channel at a centre (0:
	// the switchboard's default).
	MaxQueue int `json:"max_queue,omitempty"`
}

// Network is the in-memory links between centres.
type Network struct {
	// DelayMillis one way, for offers, answers and conversation events.
	DelayMillis float64 `json:"delay_ms"`
	// GossipMillis until a change of a centre's availability reaches the
	// others.
	GossipMillis float64 `json:"gossip_ms"`
	// Loss is the share of offers that never arrive (the offering centre
	// hears nothing until the ring time has passed).
	Loss float64 `json:"loss"`
}

// Behaviour is how visitors and volunteers behave.
type Behaviour struct {
	TalkTime Dist `json:"talk_time"`
	// Patience is how long a visitor waits before leaving ("none": they
	// never leave).
	Patience Dist `json:"patience"`
	// AnswerSeconds is how long a volunteer takes to accept an offer.
	AnswerSeconds Dist `json:"answer_time"`
	// DeclineRate and NoAnswerRate are the shares of offers a volunteer
	// declines or lets ring out.
	DeclineRate  float64 `json:"decline_rate"`
	NoAnswerRate float64 `json:"no_answer_rate"`
}

// Dist is a distribution of durations in seconds.
type Dist struct {
	// Kind: "exponential", "lognormal" (with SD), "fixed", or "none" (never;
	// for patience only).
	Kind string  `json:"dist"`
	Mean float64 `json:"mean_seconds"`
	SD   float64 `json:"sd_seconds,omitempty"`
}

// Centre is one centre of the federation.
type Centre struct {
	ID         string       `json:"id"`
	Volunteers []Volunteers `json:"volunteers"`
	Arrivals   []Arrivals   `json:"arrivals"`
}

// Volunteers is a group of alike volunteers who work the same shifts.
type Volunteers struct {
	Name      string   `json:"name"`
	Count     int      `json:"count"`
	Languages []string `json:"languages"`
	Channels  []string `json:"channels"`
	// Capacity is how many chats each holds at once (default 1).
	Capacity int     `json:"capacity"`
	Shifts   []Shift `json:"shifts"`
}

// Shift is a time of day on some days of the week. A shift that ends at or
// before it starts ends the next day ("22:00" to "02:00").
type Shift struct {
	From string   `json:"from"`
	To   string   `json:"to"`
	Days []string `json:"days,omitempty"` // "mon".."sun"; empty: every day
}

// Arrivals are contacts of one channel and language arriving at a centre
// by a Poisson process whose rate follows the hour of day.
type Arrivals struct {
	Channel  string `json:"channel"`
	Language string `json:"language"`
	// PerHour is one rate for every hour, or 24, one per hour of the day.
	PerHour []float64 `json:"per_hour"`
	// Urgent is the share of these contacts that say they need someone now.
	Urgent float64 `json:"urgent,omitempty"`
}

// Contact is one contact of a Trace.
type Contact struct {
	AtSeconds   float64 `json:"at_seconds"` // from the scenario's start
	Centre      string  `json:"centre"`
	Channel     string  `json:"channel,omitempty"` // chat
	Language    string  `json:"language"`
	TalkSeconds float64 `json:"talk_seconds"`
	// PatienceSeconds is how long they wait before leaving; 0: they
	// never leave.
	PatienceSeconds float64 `json:"patience_seconds,omitempty"`
	Urgent          bool    `json:"urgent,omitempty"`
}

// Limits keep a scenario to what a coordinator's laptop runs in minutes.
const (
	MaxScenarioBytes = 1 << 20
	MaxHours         = 24 * 366
	MaxCentres       = 64
	MaxGroupCount    = 1000
	MaxVolunteers    = 5000
	MaxPerHour       = 5000
	MaxContacts      = 2_000_000 // expected arrivals in the whole run
	// MaxShifts bounds the shifts all volunteers work in a run (each is
	// two events): 1000 volunteers on 1440 one-minute shifts a day for a
	// year would be a billion.
	MaxShifts = 1_000_000
)

var (
	// ErrInvalid is wrapped by every error of a scenario that cannot run;
	// the message names the field by its path (centres[1].arrivals[0].language).
	ErrInvalid = errors.New("invalid scenario")
	// ErrTooLarge is wrapped when the scenario file or what it asks for is
	// beyond the limits above.
	ErrTooLarge = errors.New("scenario too large")
)

var weekdays = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// DefaultStart is a Monday, so that shift days count from it.
var DefaultStart = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)

// Decode reads and validates a scenario: at most MaxScenarioBytes, no
// unknown fields, every problem named by the field's path.
func Decode(r io.Reader) (*Scenario, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxScenarioBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	if len(b) > MaxScenarioBytes {
		return nil, fmt.Errorf("read scenario: over %d bytes: %w", MaxScenarioBytes, ErrTooLarge)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var sc Scenario
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("decode scenario: %w: %w", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decode scenario: %w: more than one JSON value", ErrInvalid)
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	return &sc, nil
}

// Validate checks the scenario and fills in defaults. Every error wraps
// ErrInvalid or ErrTooLarge and starts with the field's path.
func (sc *Scenario) Validate() error {
	var errs []error
	bad := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %w", path, fmt.Sprintf(format, a...), ErrInvalid))
	}
	big := func(path, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %w", path, fmt.Sprintf(format, a...), ErrTooLarge))
	}
	number := func(path string, v, lo, hi float64) bool {
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			bad(path, "not a number")
		case v < lo:
			bad(path, "%v is below %v", v, lo)
		case v > hi:
			big(path, "%v is above %v", v, hi)
		default:
			return true
		}
		return false
	}
	if sc.Start != "" {
		if _, err := time.Parse(time.RFC3339, sc.Start); err != nil {
			bad("start", "not an RFC 3339 time (2026-12-04T18:00:00Z)")
		}
	}
	if !(sc.Hours >= 1.0/3600) {
		bad("hours", "must be at least one second (1/3600)")
	} else {
		number("hours", sc.Hours, 0, MaxHours)
	}

	p := &sc.Policy
	if len(p.Languages) == 0 {
		bad("policy.languages", "at least one language is needed")
	}
	for i, l := range p.Languages {
		if !token(l) {
			bad(fmt.Sprintf("policy.languages[%d]", i), "%q is not a language code", clip(l))
		}
	}
	for ch, v := range p.OverflowAfterSeconds {
		path := "policy.overflow_after_seconds." + clip(ch)
		if ch != "chat" && ch != "phone" {
			bad(path, "unknown channel (chat or phone)")
			continue
		}
		number(path, v, 0, 3600)
	}
	if _, ok := p.OverflowAfterSeconds["chat"]; !ok {
		if p.OverflowAfterSeconds == nil {
			p.OverflowAfterSeconds = map[string]float64{}
		}
		p.OverflowAfterSeconds["chat"] = 60
	}
	if p.RingSeconds == 0 {
		p.RingSeconds = 20
	}
	number("policy.ring_seconds", p.RingSeconds, 1, 600)
	if p.ServiceLevelSeconds == 0 {
		p.ServiceLevelSeconds = 60
	}
	number("policy.service_level_seconds", p.ServiceLevelSeconds, 1, 3600)
	if p.MaxQueue < 0 || p.MaxQueue > 100000 {
		bad("policy.max_queue", "must be 0 (default) to 100000")
	}

	number("network.delay_ms", sc.Network.DelayMillis, 0, 60000)
	number("network.gossip_ms", sc.Network.GossipMillis, 0, 600000)
	number("network.loss", sc.Network.Loss, 0, 1)

	b := &sc.Behaviour
	checkDist := func(path string, d *Dist, none bool) {
		switch d.Kind {
		case "exponential", "fixed":
			number(path+".mean_seconds", d.Mean, 0, 86400)
		case "lognormal":
			if number(path+".mean_seconds", d.Mean, 0, 86400) && d.Mean == 0 {
				bad(path+".mean_seconds", "a lognormal needs a mean above 0")
			}
			number(path+".sd_seconds", d.SD, 0, 86400)
		case "none":
			if !none {
				bad(path+".dist", `"none" is only for patience`)
			}
		case "":
			bad(path+".dist", "missing (exponential, lognormal, fixed%s)", map[bool]string{true: " or none"}[none])
		default:
			bad(path+".dist", "%q is not a distribution (exponential, lognormal, fixed%s)", clip(d.Kind), map[bool]string{true: " or none"}[none])
		}
	}
	checkDist("behaviour.talk_time", &b.TalkTime, false)
	if b.Patience.Kind == "" {
		b.Patience.Kind = "none"
	}
	checkDist("behaviour.patience", &b.Patience, true)
	if b.AnswerSeconds.Kind == "" {
		b.AnswerSeconds = Dist{Kind: "fixed", Mean: 0}
	}
	checkDist("behaviour.answer_time", &b.AnswerSeconds, false)
	number("behaviour.decline_rate", b.DeclineRate, 0, 1)
	number("behaviour.no_answer_rate", b.NoAnswerRate, 0, 1)
	if b.DeclineRate+b.NoAnswerRate >= 1 {
		bad("behaviour", "decline_rate plus no_answer_rate must stay below 1, or nobody is ever answered")
	}

	// A contact's channel (chat by default: the only one simulated so far)
	// and language (one of the policy's).
	channelAndLanguage := func(path string, channel *string, language string) {
		if *channel == "" {
			*channel = "chat"
		}
		if *channel != "chat" {
			bad(path+".channel", "%q: only chat is simulated so far", clip(*channel))
		}
		if !slices.Contains(p.Languages, language) {
			bad(path+".language", "%q is not a language of the policy (%s)", clip(language), strings.Join(p.Languages, ", "))
		}
	}
	if len(sc.Centres) == 0 {
		bad("centres", "at least one centre is needed")
	}
	if len(sc.Centres) > MaxCentres {
		big("centres", "%d centres, at most %d", len(sc.Centres), MaxCentres)
		return errors.Join(errs...)
	}
	ids := map[string]bool{}
	volunteers, shifts := 0, 0
	weeks := int(math.Ceil(sc.Hours/168)) + 2
	expected := 0.0
	for ci := range sc.Centres {
		c := &sc.Centres[ci]
		cp := fmt.Sprintf("centres[%d]", ci)
		if !token(c.ID) {
			bad(cp+".id", "%q is not a centre id (letters, digits, - and _)", clip(c.ID))
		} else if ids[c.ID] {
			bad(cp+".id", "%q appears twice", c.ID)
		}
		ids[c.ID] = true
		for gi := range c.Volunteers {
			g := &c.Volunteers[gi]
			gp := fmt.Sprintf("%s.volunteers[%d]", cp, gi)
			if g.Count < 1 {
				bad(gp+".count", "must be at least 1")
			} else if g.Count > MaxGroupCount {
				big(gp+".count", "%d, at most %d", g.Count, MaxGroupCount)
			} else {
				volunteers += g.Count
			}
			if g.Capacity == 0 {
				g.Capacity = 1
			}
			if g.Capacity < 1 || g.Capacity > 8 {
				bad(gp+".capacity", "must be 1 to 8")
			}
			if len(g.Languages) == 0 {
				bad(gp+".languages", "at least one language is needed")
			}
			for li, l := range g.Languages {
				if !slices.Contains(p.Languages, l) {
					bad(fmt.Sprintf("%s.languages[%d]", gp, li), "%q is not a language of the policy (%s)", clip(l), strings.Join(p.Languages, ", "))
				}
			}
			if len(g.Channels) == 0 {
				g.Channels = []string{"chat"}
			}
			for chi, ch := range g.Channels {
				if ch != "chat" {
					bad(fmt.Sprintf("%s.channels[%d]", gp, chi), "%q: only chat is simulated so far", clip(ch))
				}
			}
			if len(g.Shifts) == 0 {
				bad(gp+".shifts", "at least one shift is needed")
			}
			var spans []span
			for si, s := range g.Shifts {
				sp := fmt.Sprintf("%s.shifts[%d]", gp, si)
				got, err := s.spans()
				if err != nil {
					bad(sp+err.field, "%s", err.msg)
					continue
				}
				for _, n := range got {
					for _, o := range spans {
						if n.overlaps(o) {
							bad(sp, "overlaps shift %d on %s: one group cannot work two shifts at once", o.shift, weekdays[(n.from/(24*60))%7])
						}
					}
				}
				for i := range got {
					got[i].shift = si
				}
				spans = append(spans, got...)
				if g.Count > 0 && g.Count <= MaxGroupCount {
					shifts += g.Count * len(got) * weeks
				}
			}
		}
		for ai := range c.Arrivals {
			a := &c.Arrivals[ai]
			ap := fmt.Sprintf("%s.arrivals[%d]", cp, ai)
			channelAndLanguage(ap, &a.Channel, a.Language)
			if len(a.PerHour) != 1 && len(a.PerHour) != 24 {
				bad(ap+".per_hour", "give one rate, or 24 (one per hour of the day); got %d", len(a.PerHour))
			}
			sum := 0.0
			for hi, r := range a.PerHour {
				if number(fmt.Sprintf("%s.per_hour[%d]", ap, hi), r, 0, MaxPerHour) {
					sum += r
				}
			}
			if len(a.PerHour) > 0 {
				expected += sum / float64(len(a.PerHour)) * sc.Hours
			}
			number(ap+".urgent", a.Urgent, 0, 1)
		}
	}
	if len(sc.Trace) > 0 {
		if len(sc.Trace) > MaxContacts {
			big("trace", "%d contacts, at most %d", len(sc.Trace), MaxContacts)
		} else {
			expected = float64(len(sc.Trace))
		}
		for ci, c := range sc.Centres {
			if len(c.Arrivals) > 0 {
				bad(fmt.Sprintf("centres[%d].arrivals", ci), "give arrivals or a trace, not both")
			}
		}
		for i := range sc.Trace {
			if len(errs) > 20 {
				break // enough to go on with
			}
			tc := &sc.Trace[i]
			tp := fmt.Sprintf("trace[%d]", i)
			if number(tp+".at_seconds", tc.AtSeconds, 0, sc.Hours*3600) && tc.AtSeconds == sc.Hours*3600 {
				bad(tp+".at_seconds", "%v is the end of the run; a contact arrives before it", tc.AtSeconds)
			}
			if !ids[tc.Centre] {
				bad(tp+".centre", "%q is not a centre of the scenario", clip(tc.Centre))
			}
			channelAndLanguage(tp, &tc.Channel, tc.Language)
			number(tp+".talk_seconds", tc.TalkSeconds, 0, 86400)
			number(tp+".patience_seconds", tc.PatienceSeconds, 0, 86400)
		}
	}
	if shifts > MaxShifts {
		big("centres", "about %d shifts worked in all, at most %d: fewer, longer shifts or a shorter run", shifts, MaxShifts)
	}
	if volunteers > MaxVolunteers {
		big("centres", "%d volunteers in all, at most %d", volunteers, MaxVolunteers)
	}
	if expected > MaxContacts {
		big("centres", "about %.0f contacts expected, at most %d: shorten hours or lower per_hour", expected, MaxContacts)
	}
	return errors.Join(errs...)
}

// StartTime is the scenario's first moment, in its own offset: shift times
// and the hours of per_hour are read in it (UTC by default).
func (sc *Scenario) StartTime() time.Time {
	if t, err := time.Parse(time.RFC3339, sc.Start); err == nil && sc.Start != "" {
		return t
	}
	return DefaultStart
}

// span is a shift on one day, in minutes from Monday 00:00 (it may run past
// the end of the week into the next Monday).
type span struct{ from, to, shift int }

const week = 7 * 24 * 60

func (a span) overlaps(b span) bool {
	for _, shift := range []int{-week, 0, week} {
		if a.from < b.to+shift && b.from+shift < a.to {
			return true
		}
	}
	return false
}

type fieldErr struct{ field, msg string }

func (s Shift) spans() ([]span, *fieldErr) {
	from, ok := clockTime(s.From)
	if !ok {
		return nil, &fieldErr{".from", fmt.Sprintf("%q is not a time of day (22:00)", clip(s.From))}
	}
	to, ok := clockTime(s.To)
	if !ok {
		return nil, &fieldErr{".to", fmt.Sprintf("%q is not a time of day (02:00)", clip(s.To))}
	}
	if to <= from {
		to += 24 * 60
	}
	days := s.Days
	if len(days) == 0 {
		days = weekdays
	}
	var out []span
	seen := map[int]bool{}
	for i, d := range days {
		n := slices.Index(weekdays, strings.ToLower(d))
		if n < 0 {
			return nil, &fieldErr{fmt.Sprintf(".days[%d]", i), fmt.Sprintf("%q is not a day (mon, tue, wed, thu, fri, sat, sun)", clip(d))}
		}
		if seen[n] {
			return nil, &fieldErr{fmt.Sprintf(".days[%d]", i), fmt.Sprintf("%q appears twice", d)}
		}
		seen[n] = true
		out = append(out, span{from: n*24*60 + from, to: n*24*60 + to})
	}
	return out, nil
}

func clockTime(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || (hh == 24 && mm != 0) {
		return 0, false
	}
	return hh*60 + mm, true
}

func token(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
