package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/helpmesh/helpmesh/api"
)

// cmdI18nCheck lists, per catalogue of the pages, the texts missing
// against English and the extra ones, with a centre's own catalogues from
// --data DIR (DIR/i18n) merged over the embedded ones as the centre serves
// them. It fails when a shipped language (api.ShippedLanguages) lacks a
// text or has one whose {placeholders} differ, or when a centre's file
// cannot be used (the centre skips it at start).
func cmdI18nCheck(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("i18n check", flag.ContinueOnError)
	data := fs.String("data", "", "the centre's data directory, whose i18n/ catalogues are checked too")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir := ""
	if *data != "" {
		dir = filepath.Join(*data, "i18n")
	}
	cats, problems, err := api.LoadCatalogues(dir)
	if err != nil {
		return fmt.Errorf("i18n check: %w", err)
	}
	failed := 0
	for _, p := range problems {
		fmt.Fprintf(stdout, "SKIPPED  %v\n", p)
		failed++
	}
	for _, r := range cats.Check() {
		mark := "ok"
		if r.Failed() {
			mark, failed = "FAIL", failed+1
		} else if len(r.Missing) > 0 || len(r.Placeholders) > 0 || len(r.Empty) > 0 {
			mark = "partial" // a centre's own language: missing texts show in English
		}
		note := ""
		if r.MachineMade {
			note = " (machine-made wording, for review by a native speaker)"
		}
		fmt.Fprintf(stdout, "%-7s  %s %s [%s]%s\n", mark, r.Kind, r.Lang, strings.Join(r.Sources, ", "), note)
		for _, l := range []struct {
			what string
			keys []string
		}{{"missing", r.Missing}, {"extra", r.Extra}, {"placeholders differ", r.Placeholders}, {"empty", r.Empty}} {
			if len(l.keys) > 0 {
				fmt.Fprintf(stdout, "         %s (%d): %s\n", l.what, len(l.keys), strings.Join(l.keys, ", "))
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("i18n check: %d problem(s): a shipped catalogue lacks texts or a file cannot be used", failed)
	}
	return nil
}
