package sim

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
)

//go:embed report.html
var reportPage string

// WriteJSON writes the report for scripts.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("write report json: %w", err)
	}
	return nil
}

// WriteHTML writes the report as one self-contained page: inline CSS and
// SVG, no script, nothing fetched, so it opens from disk or an e-mail.
func (rep *Report) WriteHTML(w io.Writer) error {
	t, err := template.New("report").Funcs(template.FuncMap{
		"pct":  func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
		"secs": func(f float64) string { return fmt.Sprintf("%.0f s", f) },
		"num":  func(f float64) string { return fmt.Sprintf("%.2f", f) },
	}).Parse(reportPage)
	if err != nil {
		return fmt.Errorf("report template: %w", err)
	}
	if err := t.Execute(w, rep.view()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

type reportView struct {
	*Report
	Runs    []namedResult
	Charts  []template.HTML
	Hourly  template.HTML
	Centres []string
	Matrix  [][]string
}

type namedResult struct {
	Name string
	*Result
}

func (rep *Report) view() reportView {
	v := reportView{Report: rep, Runs: []namedResult{
		{"Federation (helpmesh)", rep.Federation}, {"Isolated centres", rep.Isolated}, {"One pooled queue", rep.Pooled},
	}}
	for _, o := range rep.WhatIfs {
		v.Runs = append(v.Runs, namedResult{"What if: " + o.Name, o.Result})
	}
	names := make([]string, len(v.Runs))
	for i, r := range v.Runs {
		names[i] = r.Name
	}
	metric := func(title, unit string, f func(Stats) float64) template.HTML {
		vals := make([]float64, len(v.Runs))
		for i, r := range v.Runs {
			vals[i] = f(r.National)
		}
		return barChart(title, unit, names, vals)
	}
	v.Charts = []template.HTML{
		metric("Answer rate", "%", func(s Stats) float64 { return 100 * s.AnswerRate }),
		metric("Mean speed to answer", "s", func(s Stats) float64 { return s.ASA }),
		metric("90th percentile speed to answer", "s", func(s Stats) float64 { return s.P90 }),
		metric(fmt.Sprintf("Service level (answered within %.0f s)", rep.Policy.ServiceLevelSeconds), "%", func(s Stats) float64 { return 100 * s.ServiceLevel }),
	}
	series := map[string][]float64{}
	for _, r := range v.Runs[:3] {
		for _, h := range r.Hourly {
			series[r.Name] = append(series[r.Name], h.ASA)
		}
	}
	v.Hourly = lineChart("Mean speed to answer by hour of arrival (s)", []string{v.Runs[0].Name, v.Runs[1].Name, v.Runs[2].Name}, series)
	if rep.Federation != nil {
		for _, c := range rep.Federation.Centres {
			v.Centres = append(v.Centres, c.Centre)
		}
		for _, from := range v.Centres {
			row := []string{from}
			for _, to := range v.Centres {
				row = append(row, fmt.Sprint(rep.Federation.Overflow[from][to]))
			}
			v.Matrix = append(v.Matrix, row)
		}
	}
	return v
}

var palette = []string{"#1f6f8b", "#b5523b", "#5b8c3a", "#7a5195", "#c49a00", "#3b6fb5", "#8c3a5b", "#3a8c7a"}

// barChart is a horizontal bar chart, one bar per run.
func barChart(title, unit string, names []string, vals []float64) template.HTML {
	const w, rowH, left = 640, 26, 230
	h := 34 + rowH*len(vals)
	top := 0.0
	for _, x := range vals {
		top = math.Max(top, x)
	}
	if top == 0 {
		top = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`,
		template.HTMLEscapeString(title), w, h, w, h)
	fmt.Fprintf(&b, `<text x="0" y="16" class="title">%s</text>`, template.HTMLEscapeString(title))
	for i, x := range vals {
		y := 28 + i*rowH
		bw := (w - left - 80) * x / top
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="label" text-anchor="end">%s</text>`, left-8, y+15, template.HTMLEscapeString(names[i]))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, left, y+2, bw, rowH-8, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="value">%.1f %s</text>`, float64(left)+bw+6, y+15, x, unit)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// lineChart draws one line per named series over the hours.
func lineChart(title string, order []string, series map[string][]float64) template.HTML {
	const w, h, left, bottom, top = 720, 280, 50, 30, 30
	n, peak := 0, 0.0
	for _, s := range series {
		n = max(n, len(s))
		for _, x := range s {
			peak = math.Max(peak, x)
		}
	}
	if n < 2 || peak == 0 {
		peak = 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %d %d" width="%d" height="%d" xmlns="http://www.w3.org/2000/svg">`,
		template.HTMLEscapeString(title), w, h, w, h)
	fmt.Fprintf(&b, `<text x="0" y="16" class="title">%s</text>`, template.HTMLEscapeString(title))
	x := func(i int) float64 { return left + float64(w-left-10)*float64(i)/float64(max(n-1, 1)) }
	y := func(v float64) float64 { return float64(h-bottom) - float64(h-bottom-top)*v/peak }
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>`, left, h-bottom, w-10, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" class="label" text-anchor="end">%.0f</text>`, left-4, y(peak)+4, peak)
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="label" text-anchor="end">0</text>`, left-4, h-bottom+4)
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="label">hour 0</text>`, left, h-8)
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="label" text-anchor="end">hour %d</text>`, w-10, h-8, n)
	keys := order
	if keys == nil {
		keys = slices.Sorted(maps.Keys(series))
	}
	for si, name := range keys {
		var pts []string
		for i, v := range series[name] {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, palette[si%len(palette)], strings.Join(pts, " "))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="12" height="4" fill="%s"/><text x="%d" y="%d" class="label">%s</text>`,
			left+10+si*210, top-6, palette[si%len(palette)], left+26+si*210, top, template.HTMLEscapeString(name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
