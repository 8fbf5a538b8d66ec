package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
)

// WhatIf is one change to try against the scenario: more volunteers
// somewhere, or another policy. Each runs as a federation beside the
// scenario itself.
type WhatIf struct {
	Name string `json:"name"`
	// Add puts more volunteers at a centre.
	Add []AddVolunteers `json:"add,omitempty"`
	// OverflowAfterSeconds and WaitLocallyWhenBusy replace the policy's.
	OverflowAfterSeconds map[string]float64 `json:"overflow_after_seconds,omitempty"`
	WaitLocallyWhenBusy  *bool              `json:"wait_locally_when_busy,omitempty"`
}

// AddVolunteers is a group of volunteers added to one centre.
type AddVolunteers struct {
	Centre string `json:"centre"`
	Volunteers
}

// apply returns the scenario with the change made, as a copy.
func (w WhatIf) apply(sc *Scenario) (*Scenario, error) {
	b, err := json.Marshal(sc)
	if err != nil {
		return nil, fmt.Errorf("copy scenario: %w", err)
	}
	var out Scenario
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("copy scenario: %w", err)
	}
	out.WhatIf = nil
	out.Name = sc.Name + ": " + w.Name
	for i, a := range w.Add {
		n := slices.IndexFunc(out.Centres, func(c Centre) bool { return c.ID == a.Centre })
		if n < 0 {
			return nil, fmt.Errorf("add[%d].centre: %q is not a centre of the scenario: %w", i, clip(a.Centre), ErrInvalid)
		}
		if a.Name == "" {
			a.Name = "added"
		}
		out.Centres[n].Volunteers = append(out.Centres[n].Volunteers, a.Volunteers)
	}
	for ch, v := range w.OverflowAfterSeconds {
		out.Policy.OverflowAfterSeconds[ch] = v
	}
	if w.WaitLocallyWhenBusy != nil {
		out.Policy.WaitLocallyWhenBusy = *w.WaitLocallyWhenBusy
	}
	return &out, nil
}

// Report is everything one scenario's simulation says: the federation, the
// same centres isolated and as one pooled queue, and each what-if.
type Report struct {
	Scenario   string    `json:"scenario"`
	Hours      float64   `json:"hours"`
	Policy     Policy    `json:"policy"`
	Federation *Result   `json:"federation"`
	Isolated   *Result   `json:"isolated"`
	Pooled     *Result   `json:"pooled"`
	WhatIfs    []Outcome `json:"what_if,omitempty"`
	// Notes are the scenario's: where a built scenario's numbers came from.
	Notes []string `json:"notes,omitempty"`
	// ErlangC is what Erlang C says for the pooled queue, from the
	// scenario's mean load and volunteers (nil when it has no steady
	// state): the planner's formula, for comparison.
	ErlangC *ErlangFigure `json:"erlang_c,omitempty"`
}

// Outcome is one what-if's result.
type Outcome struct {
	Name   string  `json:"name"`
	Result *Result `json:"result"`
}

// ErlangFigure is a formula's answer.
type ErlangFigure struct {
	Volunteers float64 `json:"volunteers_on_shift"`
	Erlangs    float64 `json:"offered_erlangs"`
	PWait      float64 `json:"p_wait"`
	MeanWait   float64 `json:"mean_wait_seconds"`
}

// Compare runs the scenario as a federation, isolated and pooled, then each
// what-if, reporting progress (0 to 1 over all the runs) and what runs.
func Compare(ctx context.Context, sc *Scenario, progress func(run string, done float64)) (*Report, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	variants := make([]*Scenario, len(sc.WhatIf))
	for i, w := range sc.WhatIf {
		v, err := w.apply(sc)
		if err == nil {
			err = v.Validate()
		}
		if err != nil {
			return nil, fmt.Errorf("what_if[%d] (%s): %w", i, clip(w.Name), err)
		}
		variants[i] = v
	}
	rep := &Report{Scenario: sc.Name, Hours: sc.Hours, Policy: sc.Policy, Notes: sc.Notes}
	total := float64(3 + len(variants))
	step := 0
	one := func(name string, s *Scenario, mode Mode) (*Result, error) {
		base := float64(step)
		step++
		return Run(ctx, s, Options{Mode: mode, Progress: func(d float64) {
			if progress != nil {
				progress(name, (base+d)/total)
			}
		}})
	}
	var err error
	if rep.Federation, err = one("federation", sc, Federation); err != nil {
		return nil, err
	}
	if rep.Isolated, err = one("isolated centres", sc, Isolated); err != nil {
		return nil, err
	}
	if rep.Pooled, err = one("one pooled queue", sc, Pooled); err != nil {
		return nil, err
	}
	for i, v := range variants {
		res, err := one("what if: "+sc.WhatIf[i].Name, v, Federation)
		if err != nil {
			return nil, err
		}
		rep.WhatIfs = append(rep.WhatIfs, Outcome{Name: sc.WhatIf[i].Name, Result: res})
	}
	rep.ErlangC = erlangFor(rep.Pooled, sc)
	return rep, nil
}

// erlangFor is Erlang C at the run's mean load on its mean staffing: what a
// spreadsheet that ignores the hour of day and the centres would say.
func erlangFor(pooled *Result, sc *Scenario) *ErlangFigure {
	if pooled == nil || pooled.OfferedErlangs == 0 || pooled.SlotHours == 0 {
		return nil
	}
	c := pooled.SlotHours / sc.Hours
	talk := 0.0
	if pooled.Contacts > 0 {
		talk = pooled.OfferedErlangs * sc.Hours * 3600 / float64(pooled.Contacts)
	}
	if talk == 0 {
		return nil
	}
	lambda := float64(pooled.Contacts) / sc.Hours / 3600
	p, w, ok := ErlangC(lambda, 1/talk, int(c))
	if !ok {
		return nil
	}
	return &ErlangFigure{Volunteers: c, Erlangs: pooled.OfferedErlangs, PWait: p, MeanWait: w}
}
