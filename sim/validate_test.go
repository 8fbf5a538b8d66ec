package sim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Each bad scenario is refused with the field's path and what is wrong.
func TestBadScenariosNameTheField(t *testing.T) {
	base := string(Example())
	cases := []struct {
		name, from, to string
		want           []string
		tooLarge       bool
	}{
		{"negative rate", `"per_hour": [
            3.15,`, `"per_hour": [
            -3,`, []string{"centres[0].arrivals[0].per_hour[0]", "-3 is below 0"}, false},
		{"unknown language", `"language": "en",`, `"language": "xx",`, []string{"centres[0].arrivals[1].language", `"xx" is not a language of the policy (nb, en)`}, false},
		{"overlapping shifts", `{
              "from": "16:00",
              "to": "22:00"
            }`, `{
              "from": "16:00",
              "to": "22:00"
            },
            {
              "from": "21:00",
              "to": "23:00",
              "days": ["fri"]
            }`, []string{"centres[0].volunteers[1].shifts[1]", "overlaps shift 0 on fri"}, false},
		{"shift across midnight overlapping the next morning", `"shifts": [
            {
              "from": "22:00",
              "to": "02:00"
            }`, `"shifts": [
            {
              "from": "22:00",
              "to": "02:00"
            },
            {
              "from": "01:00",
              "to": "03:00",
              "days": ["tue"]
            }`, []string{"centres[0].volunteers[2].shifts[1]", "overlaps shift 0 on tue"}, false},
		{"bad time of day", `"from": "10:00"`, `"from": "25:00"`, []string{"centres[0].volunteers[0].shifts[0].from", `"25:00" is not a time of day`}, false},
		{"unknown field", `"seed": 1,`, `"seed": 1, "sedd": 2,`, []string{`unknown field "sedd"`}, false},
		{"huge group", `"count": 2,`, `"count": 50000,`, []string{"centres[0].volunteers[0].count", "at most 1000"}, true},
		{"huge rate", `"per_hour": [
            3.15,`, `"per_hour": [
            1e9,`, []string{"centres[0].arrivals[0].per_hour[0]", "above 5000"}, true},
		{"too many hours", `"hours": 168,`, `"hours": 100000,`, []string{"hours", "above 8784"}, true},
		{"unknown distribution", `"dist": "lognormal"`, `"dist": "gamma"`, []string{"behaviour.talk_time.dist", `"gamma" is not a distribution`}, false},
		{"rates that leave nobody answered", `"decline_rate": 0.03`, `"decline_rate": 0.99`, []string{"behaviour", "must stay below 1"}, false},
		{"duplicate centre", `"id": "bergen"`, `"id": "oslo"`, []string{"centres[1].id", `"oslo" appears twice`}, false},
		{"what-if at an unknown centre", `"centre": "oslo",`, `"centre": "paris",`, []string{"what_if[0]", "add[0].centre", `"paris" is not a centre`}, false},
		{"phone not simulated", `"channel": "chat",
          "language": "en"`, `"channel": "phone",
          "language": "en"`, []string{"centres[0].arrivals[1].channel", "only chat is simulated so far"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.from) {
				t.Fatalf("the example no longer holds %q", c.from)
			}
			text := strings.Replace(base, c.from, c.to, 1)
			sc, err := Decode(strings.NewReader(text))
			if err == nil && strings.HasPrefix(c.name, "what-if") {
				_, err = Compare(t.Context(), sc, nil)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if c.tooLarge != errors.Is(err, ErrTooLarge) {
				t.Errorf("errors.Is(err, ErrTooLarge) = %v, want %v (%v)", !c.tooLarge, c.tooLarge, err)
			}
			if !c.tooLarge && !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
		})
	}
}

func TestHugeScenarioFileRefusedBeforeDecoding(t *testing.T) {
	big := `{"name": "` + strings.Repeat("x", MaxScenarioBytes) + `"}`
	_, err := Decode(strings.NewReader(big))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a file over %d bytes: err = %v, want ErrTooLarge", MaxScenarioBytes, err)
	}
}

func TestExampleScenarioIsValid(t *testing.T) {
	if err := ExampleScenario().Validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzScenario: whatever a coordinator's file holds, Decode returns a
// scenario that validates or an error; it never panics.
func FuzzScenario(f *testing.F) {
	f.Add(Example())
	f.Add([]byte(`{"hours": 1, "policy": {"languages": ["nb"]}, "behaviour": {"talk_time": {"dist": "fixed", "mean_seconds": 60}}, "centres": [{"id": "a", "volunteers": [{"name": "n", "count": 1, "languages": ["nb"], "shifts": [{"from": "22:00", "to": "02:00", "days": ["sun"]}]}], "arrivals": [{"language": "nb", "per_hour": [1]}]}]}`))
	f.Add([]byte(`{"hours": -1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := Decode(strings.NewReader(string(b)))
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wraps neither ErrInvalid nor ErrTooLarge: %v", err)
			}
			return
		}
		if err := sc.Validate(); err != nil {
			t.Fatalf("decoded, then invalid: %v", err)
		}
	})
}

// The reviewer's cases: each once ran away or broke the report.
func TestScenarioLimitsThatOnceRanAway(t *testing.T) {
	t.Run("a tiny rate does not loop at one instant", func(t *testing.T) {
		sc := oneCentre(1, 1e-7, 60, Dist{Kind: "none"}, 24)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		res, err := Run(ctx, sc, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Contacts > 1 {
			t.Errorf("%d contacts from a rate of 1e-7 an hour over a day", res.Contacts)
		}
	})
	t.Run("a run of no length is refused", func(t *testing.T) {
		sc := oneCentre(1, 1, 60, Dist{Kind: "none"}, 1e-13)
		if err := sc.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "hours: must be at least one second") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a million shifts are refused", func(t *testing.T) {
		sc := oneCentre(1000, 1, 60, Dist{Kind: "none"}, MaxHours)
		var shifts []Shift
		for m := 0; m < 1440; m += 2 {
			shifts = append(shifts, Shift{From: fmt.Sprintf("%02d:%02d", m/60, m%60), To: fmt.Sprintf("%02d:%02d", (m+1)/60, (m+1)%60)})
		}
		sc.Centres[0].Volunteers[0].Shifts = shifts
		if err := sc.Validate(); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "shifts worked in all") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("a run is stopped by its context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := Run(ctx, ExampleScenario(), Options{}); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}
