package sim

import (
	"context"
	"fmt"
	"testing"
)

// kirkensScale is a week of ten centres at about the scale of Kirkens SOS
// (some 550 chats a day nationally): uneven centres, an evening peak, day,
// evening and night shifts.
func kirkensScale() *Scenario {
	shape := []float64{0.8, 0.7, 0.5, 0.35, 0.25, 0.2, 0.2, 0.25, 0.35, 0.45, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0, 1.1, 1.25, 1.4, 1.5, 1.4, 1.1}
	sum := 0.0
	for _, s := range shape {
		sum += s
	}
	share := []float64{0.22, 0.16, 0.12, 0.1, 0.09, 0.08, 0.07, 0.06, 0.05, 0.05}
	sc := &Scenario{
		Name: "ten centres, a week", Hours: 168, Seed: 42,
		Policy:  Policy{Languages: []string{"nb", "en"}},
		Network: Network{DelayMillis: 20, GossipMillis: 300},
		Behaviour: Behaviour{
			TalkTime:      Dist{Kind: "lognormal", Mean: 1200, SD: 900},
			Patience:      Dist{Kind: "exponential", Mean: 300},
			AnswerSeconds: Dist{Kind: "exponential", Mean: 8},
			DeclineRate:   0.03, NoAnswerRate: 0.02,
		},
	}
	for i, sh := range share {
		perDay := 550 * sh
		rates := make([]float64, 24)
		for h := range rates {
			rates[h] = perDay * shape[h] / sum
		}
		staff := max(1, int(perDay/40))
		sc.Centres = append(sc.Centres, Centre{
			ID: fmt.Sprintf("c%02d", i+1),
			Volunteers: []Volunteers{
				{Name: "day", Count: staff, Languages: []string{"nb", "en"}, Shifts: []Shift{{From: "08:00", To: "16:00"}}},
				{Name: "evening", Count: staff + 1, Languages: []string{"nb"}, Shifts: []Shift{{From: "16:00", To: "23:00"}}},
				{Name: "night", Count: staff, Languages: []string{"nb", "en"}, Shifts: []Shift{{From: "23:00", To: "08:00"}}},
			},
			Arrivals: []Arrivals{{Language: "nb", PerHour: rates}, {Language: "en", PerHour: []float64{perDay * 0.05 / 24}}},
		})
	}
	return sc
}

// BenchmarkWeekOfTenCentres: one op is a whole week of the ten-centre
// federation. Issue 18 asks for under a minute; contacts/s is the speed.
func BenchmarkWeekOfTenCentres(b *testing.B) {
	sc := kirkensScale()
	if err := sc.Validate(); err != nil {
		b.Fatal(err)
	}
	var contacts, answered int
	for b.Loop() {
		res, err := Run(context.Background(), sc, Options{})
		if err != nil {
			b.Fatal(err)
		}
		contacts += res.Contacts
		answered += res.National.Answered
	}
	sec := b.Elapsed().Seconds()
	b.ReportMetric(float64(contacts)/sec, "contacts/s")
	b.ReportMetric(float64(contacts)/float64(b.N), "contacts/week")
	b.ReportMetric(float64(answered)/float64(contacts), "answered")
}
