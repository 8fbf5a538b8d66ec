package sim

import (
	"context"
	"testing"
)

// The shipped example runs, and shows what the federation is for: it
// answers more of the same visitors than the isolated centres, and overflow
// carries some contacts between centres.
func TestExampleScenarioThreeWays(t *testing.T) {
	rep, err := Compare(context.Background(), ExampleScenario(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Result{rep.Federation, rep.Isolated, rep.Pooled} {
		n := r.National
		t.Logf("%-10s %5d contacts: answered %.1f%%, abandoned %.1f%%, ASA %.0f s, p90 %.0f s, SL %.1f%%, occupancy %.1f%%, overflowed %d (%.2f s)",
			r.Mode, n.Arrived, 100*n.AnswerRate, 100*n.AbandonRate, n.ASA, n.P90, 100*n.ServiceLevel, 100*n.Occupancy, n.AnsweredOverflow, r.WallSeconds)
	}
	for _, o := range rep.WhatIfs {
		n := o.Result.National
		t.Logf("what if %-28s answered %.1f%%, ASA %.0f s, p90 %.0f s", o.Name, 100*n.AnswerRate, n.ASA, n.P90)
	}
	f, i, p := rep.Federation.National, rep.Isolated.National, rep.Pooled.National
	if f.Arrived != i.Arrived || f.Arrived != p.Arrived {
		t.Errorf("the three runs saw different visitors: %d, %d, %d", f.Arrived, i.Arrived, p.Arrived)
	}
	if f.AnsweredOverflow == 0 {
		t.Error("no contact overflowed in the federation")
	}
	if i.AnsweredOverflow != 0 {
		t.Errorf("isolated centres overflowed %d contacts", i.AnsweredOverflow)
	}
	if f.AnswerRate <= i.AnswerRate {
		t.Errorf("the federation answered %.3f, isolated centres %.3f: overflow did not help", f.AnswerRate, i.AnswerRate)
	}
	for from, row := range rep.Federation.Overflow {
		for to, n := range row {
			if to != from && n > 0 {
				t.Logf("overflow %s -> %s: %d", from, to, n)
			}
		}
	}
}
