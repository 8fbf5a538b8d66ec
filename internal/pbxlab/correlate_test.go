package pbxlab_test

import (
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/pbxlab"
)

// Two espeak-ng sentences: each matches itself (also shifted by half a
// second, as a recording starts late) and not the other; silence matches
// nothing.
func TestCorrelateTellsVoicesApart(t *testing.T) {
	pbxlab.Need(t)
	dir := t.TempDir()
	a := pbxlab.Speech(t, dir, "Hello, this is the caller speaking. I would like to talk to someone about my day.", 7*time.Second)
	b := pbxlab.Speech(t, dir, "Good evening, you are talking to a volunteer. Take your time, I am listening.", 7*time.Second)
	late := shifted(t, dir, a, 500*time.Millisecond)
	quiet := pbxlab.Speech(t, dir, "", 7*time.Second) // espeak-ng says nothing: all padding

	for _, c := range []struct {
		name     string
		x, y     string
		min, max float64
	}{
		{"same", a, a, 0.99, 1.01},
		{"same, 0.5 s late", a, late, 0.95, 1.01},
		{"other sentence", a, b, -1, 0.5},
		{"other sentence, reversed", b, a, -1, 0.5},
		{"silence", a, quiet, -1, 0.01},
	} {
		got, err := pbxlab.Correlate(c.x, c.y)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		t.Logf("%s: %.3f", c.name, got)
		if got < c.min || got > c.max {
			t.Errorf("%s: correlation %.3f, want within [%.2f, %.2f]", c.name, got, c.min, c.max)
		}
	}
	if lvl, err := pbxlab.Level(a); err != nil || lvl < -30 || lvl > -10 {
		t.Errorf("speech level %.1f dBFS (%v), want about -20", lvl, err)
	}
	if lvl, err := pbxlab.Level(quiet); err != nil || !(lvl < -90) && !math.IsInf(lvl, -1) {
		t.Errorf("silence level %.1f dBFS (%v), want below -90", lvl, err)
	}
}

func TestCorrelateRefusesNonWAV(t *testing.T) {
	if _, err := pbxlab.Correlate("correlate_test.go", "correlate_test.go"); !errors.Is(err, pbxlab.ErrNotWAV) {
		t.Fatalf("Correlate on Go source: %v, want ErrNotWAV", err)
	}
}

// shifted is src delayed by d (silence in front), as a recording that
// started before the speech arrived.
func shifted(t *testing.T, dir, src string, d time.Duration) string {
	t.Helper()
	out := filepath.Join(dir, "shifted.wav")
	run(t, "sox", src, out, "pad", secs(d), "0")
	return out
}
