package sim

import (
	"context"
	"math"
	"testing"
)

// oneCentre is a single centre with c volunteers on all day, Poisson
// arrivals and exponential talk: the queue Erlang's formulas describe. Offers
// are accepted at once, so a contact waits only while everyone is busy.
func oneCentre(c int, perHour, talkSeconds float64, patience Dist, hours float64) *Scenario {
	return &Scenario{
		Name: "Erlang check", Hours: hours, Seed: 7,
		Policy:    Policy{Languages: []string{"nb"}, MaxQueue: 100000},
		Behaviour: Behaviour{TalkTime: Dist{Kind: "exponential", Mean: talkSeconds}, Patience: patience},
		Centres: []Centre{{
			ID:         "c1",
			Volunteers: []Volunteers{{Name: "all", Count: c, Languages: []string{"nb"}, Shifts: []Shift{{From: "00:00", To: "00:00"}}}},
			Arrivals:   []Arrivals{{Language: "nb", PerHour: []float64{perHour}}},
		}},
	}
}

// skipUnderRace: a long run under the race detector takes minutes; .ci/run
// runs these without it, after the race run of every package.
func skipUnderRace(t *testing.T) {
	if raceDetector {
		t.Skip("a long validation run: .ci/run runs it without -race (go test -run Erlang ./sim)")
	}
}

func within(t *testing.T, what string, got, want, tol float64) {
	t.Helper()
	rel := math.Abs(got-want) / want
	t.Logf("%s: simulated %.4f, formula %.4f (%.1f%% off, bar %.0f%%)", what, got, want, 100*rel, 100*tol)
	if rel > tol {
		t.Errorf("%s: simulated %.4f vs formula %.4f: %.1f%% off, more than %.0f%%", what, got, want, 100*rel, 100*tol)
	}
}

func TestOneCentreMatchesErlangC(t *testing.T) {
	skipUnderRace(t)
	const c, perHour, talk = 10, 84.0, 300.0 // 7 Erlang on 10 volunteers: 70% busy
	sc := oneCentre(c, perHour, talk, Dist{Kind: "none"}, MaxHours)
	res, err := Run(context.Background(), sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	n := res.National
	t.Logf("%d contacts in %.1f s (%.0f a second)", res.Contacts, res.WallSeconds, float64(res.Contacts)/res.WallSeconds)
	nominalP, nominalW, _ := ErlangC(perHour/3600, 1/talk, c)
	// The formula at this run's own arrival rate and talk time: a wait
	// near 70% load swings by several percent with a 1% change of load,
	// which a year of Poisson arrivals does not pin down; this checks the
	// routing, not the random numbers.
	lambda := float64(res.Contacts) / sc.Hours / 3600
	mu := lambda / res.OfferedErlangs
	pWait, meanWait, _ := ErlangC(lambda, mu, c)
	t.Logf("load %.3f Erlang (nominal %.3f); formula at nominal rates: P(wait) %.4f, mean wait %.1f s", res.OfferedErlangs, perHour*talk/3600, nominalP, nominalW)
	if n.Unfinished > 5 || n.Refused > 0 {
		t.Fatalf("%d unfinished and %d refused: the queue should have drained", n.Unfinished, n.Refused)
	}
	within(t, "probability of waiting", n.WaitedShare, pWait, 0.03)
	within(t, "mean wait", n.MeanWaitAll, meanWait, 0.03)
}

func TestOneCentreWithPatienceMatchesErlangA(t *testing.T) {
	skipUnderRace(t)
	const c, perHour, talk, patience = 5, 27.0, 600.0, 300.0 // 4.5 Erlang on 5: 90% offered
	sc := oneCentre(c, perHour, talk, Dist{Kind: "exponential", Mean: patience}, 24*183)
	res, err := Run(context.Background(), sc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	lambda := float64(res.Contacts) / sc.Hours / 3600
	mu := lambda / res.OfferedErlangs
	pWait, pAbandon, meanWait := ErlangA(lambda, mu, 1/patience, c)
	n := res.National
	t.Logf("%d contacts in %.1f s (%.0f a second)", res.Contacts, res.WallSeconds, float64(res.Contacts)/res.WallSeconds)
	waited := float64(n.Abandoned) + n.WaitedShare*float64(n.Answered)
	within(t, "probability of waiting", waited/float64(n.Arrived), pWait, 0.05)
	within(t, "probability of abandoning", n.AbandonRate, pAbandon, 0.05)
	within(t, "mean wait", n.MeanWaitAll, meanWait, 0.05)
}
