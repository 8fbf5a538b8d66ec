package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/helpmesh/helpmesh/internal/atomicfile"
	"github.com/helpmesh/helpmesh/sim"
)

// cmdSimulate replays a scenario through helpmesh's own router (package
// sim): the federation, its centres isolated and one pooled queue, side by
// side, and each what-if of the scenario.
func cmdSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	example := fs.Bool("example", false, "print the shipped example scenario (a starting point to copy) and exit")
	htmlOut := fs.String("html", "", "write the report as a self-contained HTML page to this file")
	jsonOut := fs.String("json", "", "write the report as JSON to this file ('-': standard output)")
	quiet := fs.Bool("quiet", false, "no progress bar")
	fromProm := fs.String("from-prometheus", "", "build a scenario from this Prometheus's recorded KPIs (http://prometheus:9090), print it and exit")
	window := fs.Duration("window", 7*24*time.Hour, "with --from-prometheus: how far back to read, ending now")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: helpmesh simulate [--html report.html] [--json report.json] SCENARIO.json\n       helpmesh simulate --example > scenario.json\n       helpmesh simulate --from-prometheus http://prometheus:9090 [--window 168h] > scenario.json")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *example {
		_, err := stdout.Write(sim.Example())
		return err
	}
	if *fromProm != "" {
		end := time.Now()
		sc, err := sim.FromPrometheus(ctx, sim.PromSource{URL: *fromProm, Start: end.Add(-*window), End: end})
		if err != nil {
			return fmt.Errorf("simulate: %w", err)
		}
		for _, n := range sc.Notes {
			fmt.Fprintln(stderr, "note:", n)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sc)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("simulate: want one scenario file (or --example)")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	sc, err := sim.Decode(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("simulate %s: %w", fs.Arg(0), err)
	}
	bar := &progressBar{w: stderr, off: *quiet}
	rep, err := sim.Compare(ctx, sc, bar.show)
	bar.done()
	if err != nil {
		return fmt.Errorf("simulate: %w", err)
	}
	printReport(stdout, rep)
	if *htmlOut != "" {
		if err := writeReport(*htmlOut, rep.WriteHTML); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nreport: %s\n", *htmlOut)
	}
	switch *jsonOut {
	case "":
	case "-":
		return rep.WriteJSON(stdout)
	default:
		if err := writeReport(*jsonOut, rep.WriteJSON); err != nil {
			return err
		}
	}
	return nil
}

func writeReport(path string, write func(io.Writer) error) error {
	var b strings.Builder
	if err := write(&b); err != nil {
		return err
	}
	if err := atomicfile.Write(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func printReport(w io.Writer, rep *sim.Report) {
	fmt.Fprintf(w, "%s: %.0f hours\n\n", rep.Scenario, rep.Hours)
	fmt.Fprintf(w, "%-34s %8s %9s %9s %7s %7s %9s %9s\n", "", "contacts", "answered", "abandoned", "ASA", "p90", "service", "occupancy")
	row := func(name string, r *sim.Result) {
		n := r.National
		fmt.Fprintf(w, "%-34s %8d %8.1f%% %8.1f%% %6.0fs %6.0fs %8.1f%% %8.1f%%\n", name, n.Arrived, 100*n.AnswerRate, 100*n.AbandonRate, n.ASA, n.P90, 100*n.ServiceLevel, 100*n.Occupancy)
	}
	row("federation", rep.Federation)
	row("isolated centres", rep.Isolated)
	row("one pooled queue", rep.Pooled)
	for _, o := range rep.WhatIfs {
		row("what if: "+o.Name, o.Result)
	}
}

// progressBar draws one line on a terminal, redrawn at most ten times a
// second.
type progressBar struct {
	w    io.Writer
	off  bool
	mu   sync.Mutex
	last time.Time
	drew bool
}

func (p *progressBar) show(run string, done float64) {
	if p.off {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond && done < 1 {
		return
	}
	p.last = time.Now()
	const width = 30
	n := int(done * width)
	fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %-40.40s", strings.Repeat("=", n), strings.Repeat(" ", width-n), 100*done, run)
	p.drew = true
}

func (p *progressBar) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drew {
		fmt.Fprintln(p.w)
	}
}
