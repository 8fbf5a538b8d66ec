package pbxlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Speech writes text spoken by espeak-ng (English voice, 140 words a minute)
// as an 8 kHz 16-bit mono WAV in dir, padded with silence (or cut) to length,
// and returns its path. The padding matters: baresip hangs up when its audio
// file ends (telephony-lab gotcha 12), so make length longer than the call
// and end the call with Phone.Hangup.
func Speech(t testing.TB, dir, text string, length time.Duration) string {
	t.Helper()
	raw, err := tempName(dir, "speech-*.raw.wav")
	if err != nil {
		t.Fatalf("pbxlab: speech: %v", err)
	}
	out := raw[:len(raw)-len(".raw.wav")] + ".wav"
	if b, err := exec.Command("espeak-ng", "-v", "en", "-s", "140", "-w", raw, text).CombinedOutput(); err != nil {
		t.Fatalf("pbxlab: speech: espeak-ng: %v\n%s", err, b)
	}
	secs := strconv.FormatFloat(length.Seconds(), 'f', 3, 64)
	// pad then trim: exactly length, whatever the speech's own length.
	// -D: no dither, so the padding is digital silence, not noise that
	// correlates a little with anything.
	if b, err := exec.Command("sox", "-D", raw, "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
		out, "pad", "0", secs, "trim", "0", secs).CombinedOutput(); err != nil {
		t.Fatalf("pbxlab: speech: sox: %v\n%s", err, b)
	}
	return out
}

// tempName reserves a fresh file name in dir matching pattern.
func tempName(dir, pattern string) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", fmt.Errorf("temp name in %s: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	return filepath.Clean(name), nil
}
