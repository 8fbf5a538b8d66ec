package media

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// needSox skips without sox, except in CI, where a missing sox is a
// failure (.ci/run installs it).
func needSox(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sox"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sox is missing in CI")
		}
		t.Skip("sox not installed")
	}
}

// The encoders against sox's, on the default prompt's speech (sox -D:
// without it sox dithers silence on the way to 8 bits). Both decode to the
// same values; the encoders may round differently inside a step (this is
// Sun's g711.c, which truncates), so a code may be one step apart, never
// more. And the decoders equal sox's for all 256 codes.
func TestG711MatchesSox(t *testing.T) {
	needSox(t)
	dir := t.TempDir()
	pcm := DefaultPrompt().pcm
	src := filepath.Join(dir, "src.wav")
	if err := os.WriteFile(src, wavBytes(pcm, 1, 8000, 16), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		codec Codec
		sox   string
	}{{PCMU, "u-law"}, {PCMA, "a-law"}} {
		t.Run(tc.codec.Name, func(t *testing.T) {
			raw := filepath.Join(dir, tc.sox+".raw")
			if b, err := exec.Command("sox", "-D", src, "-t", "raw", "-e", tc.sox, "-b", "8", raw).CombinedOutput(); err != nil {
				t.Fatalf("sox: %v %s", err, b)
			}
			theirs, err := os.ReadFile(raw)
			if err != nil || len(theirs) != len(pcm) {
				t.Fatalf("sox wrote %d bytes for %d samples: %v", len(theirs), len(pcm), err)
			}
			ours := make([]byte, len(pcm))
			tc.codec.encode(ours, pcm)
			same, near := 0, 0
			for i := range pcm {
				a, b := make([]int16, 1), make([]int16, 1)
				tc.codec.decode(a, ours[i:i+1])
				tc.codec.decode(b, theirs[i:i+1])
				switch d := int(a[0]) - int(b[0]); {
				case d == 0:
					same++
				case adjacent(tc.codec, ours[i], theirs[i]):
					near++
				default:
					t.Fatalf("sample %d (%d): ours %#x -> %d, sox %#x -> %d", i, pcm[i], ours[i], a[0], theirs[i], b[0])
				}
			}
			t.Logf("%d samples: %d as sox, %d one step apart", len(pcm), same, near)

			codes := make([]byte, 256)
			for i := range codes {
				codes[i] = byte(i)
			}
			craw, cwav := filepath.Join(dir, "codes.raw"), filepath.Join(dir, "codes.wav")
			if err := os.WriteFile(craw, codes, 0o600); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command("sox", "-D", "-t", "raw", "-r", "8000", "-c", "1", "-e", tc.sox, "-b", "8", craw,
				"-e", "signed-integer", "-b", "16", cwav).CombinedOutput(); err != nil {
				t.Fatalf("sox: %v %s", err, b)
			}
			w, err := os.ReadFile(cwav)
			if err != nil {
				t.Fatal(err)
			}
			p, err := LoadPrompt(w)
			if err != nil || len(p.pcm) != 256 {
				t.Fatalf("sox's decoding: %v", err)
			}
			dec := make([]int16, 256)
			tc.codec.decode(dec, codes)
			for i := range dec {
				if dec[i] != p.pcm[i] {
					t.Errorf("code %#x: ours %d, sox %d", i, dec[i], p.pcm[i])
				}
			}
		})
	}
}

// adjacent: two codes one quantisation step apart (same sign), or both
// around zero.
func adjacent(c Codec, a, b byte) bool {
	x, y := make([]int16, 1), make([]int16, 1)
	c.decode(x, []byte{a})
	c.decode(y, []byte{b})
	if max(x[0], y[0])-min(x[0], y[0]) <= 16 {
		return true
	}
	if c == PCMA {
		a, b = a^0x55, b^0x55
	}
	d := int(a) - int(b)
	return (d == 1 || d == -1) && a&0x80 == b&0x80
}

// Round trips: every code decodes and encodes back to itself (except the
// two zeros of µ-law, which are one value).
func TestG711RoundTrip(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		for i := range 256 {
			v := make([]int16, 1)
			c.decode(v, []byte{byte(i)})
			b := make([]byte, 1)
			c.encode(b, v)
			if b[0] != byte(i) && !(c == PCMU && v[0] == 0) {
				t.Errorf("%s code %#x -> %d -> %#x", c.Name, i, v[0], b[0])
			}
		}
	}
}
