package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestI18nCheck: the embedded catalogues pass; a centre's file that breaks
// a shipped language's placeholders, or cannot be read, fails the check and
// is named; a language of the centre's own that lacks texts is reported
// but passes.
func TestI18nCheck(t *testing.T) {
	var out bytes.Buffer
	if err := dispatch(t.Context(), []string{"i18n", "check"}, &out, &out); err != nil {
		t.Fatalf("embedded catalogues: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "visitor pt [embedded] (machine-made") {
		t.Errorf("pt not reported as machine-made:\n%s", out.String())
	}

	data := t.TempDir()
	write := func(name, content string) {
		p := filepath.Join(data, "i18n", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("sv.json", `{"_language": "Svenska", "title": "Chatta med oss", "made_up": "x"}`)
	out.Reset()
	if err := dispatch(t.Context(), []string{"i18n", "check", "--data", data}, &out, &out); err != nil {
		t.Fatalf("a partial language of the centre's own: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "partial  visitor sv") || !strings.Contains(out.String(), "extra (1): made_up") {
		t.Errorf("sv not reported as partial with an extra key:\n%s", out.String())
	}

	write("staff/nb.json", `{"console.rings_at": "Anrop ringer på {telefon}."}`)
	write("de.json", `{"title": 3}`)
	out.Reset()
	err := dispatch(t.Context(), []string{"i18n", "check", "--data", data}, &out, &out)
	if err == nil {
		t.Fatalf("a broken shipped catalogue passed:\n%s", out.String())
	}
	for _, want := range []string{"FAIL     staff nb", "placeholders differ (1): console.rings_at", "SKIPPED  catalogue de.json (visitor)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
}
