package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helpmesh/helpmesh/sim"
)

// helpmesh simulate --example prints a scenario that helpmesh simulate then
// runs, writing the HTML and JSON reports and a summary of the three runs.
func TestSimulateCommandRunsTheExample(t *testing.T) {
	dir := t.TempDir()
	var example, errs bytes.Buffer
	if err := dispatch(context.Background(), []string{"simulate", "--example"}, &example, &errs); err != nil {
		t.Fatal(err)
	}
	scenario := filepath.Join(dir, "week.json")
	if err := os.WriteFile(scenario, example.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	htmlPath, jsonPath := filepath.Join(dir, "r.html"), filepath.Join(dir, "r.json")
	if err := dispatch(context.Background(), []string{"simulate", "--quiet", "--html", htmlPath, "--json", jsonPath, scenario}, &out, &errs); err != nil {
		t.Fatalf("simulate: %v\n%s", err, errs.String())
	}
	for _, want := range []string{"federation", "isolated centres", "one pooled queue", "what if: one more at oslo 22-02", "report: " + htmlPath} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the summary lacks %q:\n%s", want, out.String())
		}
	}
	page, err := os.ReadFile(htmlPath)
	if err != nil || !bytes.Contains(page, []byte(`id="three-way"`)) {
		t.Errorf("the HTML report: %v (%d bytes)", err, len(page))
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep sim.Report
	if err := json.Unmarshal(b, &rep); err != nil || rep.Federation == nil || rep.Isolated == nil || rep.Pooled == nil {
		t.Errorf("the JSON report: %v", err)
	}
}

// A bad scenario file is refused with the field's path, and nothing runs.
func TestSimulateCommandNamesTheBadField(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	text := strings.Replace(string(sim.Example()), `"language": "en",`, `"language": "xx",`, 1)
	if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	err := dispatch(context.Background(), []string{"simulate", "--quiet", bad}, &out, &errs)
	if err == nil || !strings.Contains(err.Error(), `centres[0].arrivals[1].language: "xx" is not a language of the policy`) {
		t.Fatalf("err = %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("printed a summary for a bad scenario:\n%s", out.String())
	}
}
