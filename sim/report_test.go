package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/helpmesh/helpmesh/internal/browsertest"
)

// The shipped example's report opens from disk in Chromium, fetches
// nothing, and shows the three-way comparison (table and charts); the
// screenshot is kept beside the test's other output.
func TestReportOpensFromDiskInChromium(t *testing.T) {
	rep, err := Compare(context.Background(), ExampleScenario(), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var b bytes.Buffer
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	for _, external := range []string{"<script", "http://", "https://", "@import", "url("} {
		if strings.Contains(strings.ReplaceAll(b.String(), `xmlns="http://www.w3.org/2000/svg"`, ""), external) {
			t.Errorf("the report holds %q: it must open from disk with nothing fetched", external)
		}
	}
	if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx := browsertest.NewMediaBrowser(t, "")
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var requests []string
	chromedp.ListenTarget(ctx, func(ev any) {
		if r, ok := ev.(*network.EventRequestWillBeSent); ok {
			requests = append(requests, r.Request.URL)
		}
	})
	browsertest.Run(t, ctx, "open the report", network.Enable(), chromedp.Navigate("file://"+page),
		chromedp.WaitVisible("#three-way", chromedp.ByQuery))

	var rows []string
	browsertest.Eval(t, ctx, `[...document.querySelectorAll('#three-way tbody tr')].map(r => r.innerText)`, &rows)
	if len(rows) != 3+len(rep.WhatIfs) {
		t.Fatalf("the comparison has %d rows, want %d: %q", len(rows), 3+len(rep.WhatIfs), rows)
	}
	for i, name := range []string{"Federation (helpmesh)", "Isolated centres", "One pooled queue"} {
		if !strings.HasPrefix(rows[i], name) {
			t.Errorf("row %d is %q, want %s first", i, rows[i], name)
		}
	}
	// The charts are drawn: each SVG has a size on screen and one bar per run.
	var charts []struct {
		Label        string
		Width, Bars  float64
		Lines, Texts float64
	}
	browsertest.Eval(t, ctx, `[...document.querySelectorAll('svg.chart')].map(s => ({Label: s.getAttribute('aria-label'),
		Width: s.getBoundingClientRect().width, Bars: s.querySelectorAll('rect').length, Lines: s.querySelectorAll('polyline').length,
		Texts: s.querySelectorAll('text').length}))`, &charts)
	if len(charts) != 5 {
		t.Fatalf("%d charts, want 4 bar charts and the hourly one: %+v", len(charts), charts)
	}
	for _, c := range charts[:4] {
		if c.Width < 300 || int(c.Bars) != 3+len(rep.WhatIfs) {
			t.Errorf("chart %q: width %.0f, %v bars; want one bar per run", c.Label, c.Width, c.Bars)
		}
	}
	if charts[4].Lines != 3 {
		t.Errorf("the hourly chart has %v lines, want federation, isolated and pooled", charts[4].Lines)
	}
	var matrix int
	browsertest.Eval(t, ctx, `document.querySelectorAll('#overflow-matrix tbody tr').length`, &matrix)
	if matrix != len(rep.Federation.Centres) {
		t.Errorf("the overflow matrix has %d rows, want one per centre (%d)", matrix, len(rep.Federation.Centres))
	}
	for _, u := range requests {
		if !strings.HasPrefix(u, "file://") {
			t.Errorf("the report fetched %s", u)
		}
	}

	var png []byte
	browsertest.Run(t, ctx, "screenshot", chromedp.FullScreenshot(&png, 90))
	if len(png) < 10_000 {
		t.Fatalf("the screenshot is %d bytes: nothing drawn?", len(png))
	}
	// Kept with the other browser tests' screenshots ($HELPMESH_SCREENSHOTS,
	// which .ci/run sets), or in the test's own directory.
	shots := os.Getenv("HELPMESH_SCREENSHOTS")
	if shots == "" {
		shots = dir
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(shots, "simulation-report.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("report %s (%d bytes), screenshot %s (%d bytes), %d requests", page, b.Len(), shot, len(png), len(requests))

	// The JSON beside it carries the same three runs, for scripts.
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Federation == nil || back.Isolated == nil || back.Pooled == nil || back.Federation.National.Arrived != rep.Federation.National.Arrived {
		t.Errorf("the JSON report lost a run: %+v", back)
	}
}
