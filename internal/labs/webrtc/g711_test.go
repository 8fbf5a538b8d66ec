package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/pbxlab"
)

// The table codec against sox's µ-law (sox -D: without it sox dithers
// silence into ±8 on the way to 8 bits). Both decode with the same table;
// the encoders round differently (this one truncates within a step, as
// Sun's g711.c does; sox rounds up more often), so a code may differ by one
// step, never more.
func TestUlawMatchesSox(t *testing.T) {
	needLab(t)
	dir := t.TempDir()
	src := pbxlab.Speech(t, dir, callerSays, 4*time.Second)
	raw := filepath.Join(dir, "ulaw.raw")
	if b, err := exec.Command("sox", "-D", src, "-t", "raw", "-e", "u-law", "-b", "8", raw).CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, b)
	}
	want, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	pcm, _, err := readWAV(src)
	if err != nil {
		t.Fatal(err)
	}
	same, oneStep, worst := 0, 0, 0
	for i, s := range pcm {
		ours, theirs := ulawDecode[ulawEncode(s)], ulawDecode[want[i]]
		e := int(ours) - int(s)
		worst = max(worst, e, -e)
		switch d := int(ulawEncode(s)) - int(want[i]); {
		case ours == theirs:
			same++
		case d == 1 || d == -1 || (ours == 0 || theirs == 0) && max(ours, theirs)-min(ours, theirs) <= 8:
			oneStep++
		default:
			t.Errorf("sample %d: ours %#x (%d), sox %#x (%d)", s, ulawEncode(s), ours, want[i], theirs)
		}
	}
	t.Logf("%d samples: %d decode to the same value as sox's, %d one step apart; worst error of ours %d",
		len(pcm), same, oneStep, worst)
}

// The decode table equals sox's decoder for all 256 codes.
func TestUlawDecodeMatchesSox(t *testing.T) {
	needLab(t)
	dir := t.TempDir()
	codes := make([]byte, 256)
	for i := range codes {
		codes[i] = byte(i)
	}
	raw, wav := filepath.Join(dir, "codes.raw"), filepath.Join(dir, "codes.wav")
	if err := os.WriteFile(raw, codes, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("sox", "-D", "-t", "raw", "-r", "8000", "-c", "1", "-e", "u-law", "-b", "8", raw,
		"-e", "signed-integer", "-b", "16", wav).CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, b)
	}
	pcm, _, err := readWAV(wav)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range pcm {
		if ulawDecode[i] != v {
			t.Errorf("code %#x: ours %d, sox %d", i, ulawDecode[i], v)
		}
	}
	t.Logf("%d codes compared", len(pcm))
}
