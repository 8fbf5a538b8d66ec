// Command vulndb builds the v1 layout of a Go vulnerability database, the
// one govulncheck reads with -db file:///DIR, from the OSV files that the
// golang.org/x/vulndb module ships in data/osv. CI reaches no network but the
// Go module proxy, so .ci/govulncheck.sh downloads that module and runs
//
//	go run .ci/vulndb/main.go -osv VULNDB_MODULE_DIR/data/osv -out DIR
//
// It writes what x/vulndb's own cmd/indexdb writes, byte for byte
// (index/db.json, index/modules.json, index/vulns.json and ID/<id>.json;
// not the .gz copies, which only HTTP clients fetch), with the standard
// library only: "go run golang.org/x/vulndb/cmd/indexdb" downloads
// x/vulndb's whole cloud dependency graph first, 3.5 minutes here.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// entry is the part of an OSV entry that the index needs.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
	Affected []struct {
		Package struct {
			Name string `json:"name"`
		} `json:"package"`
		Ranges []struct {
			Type   string `json:"type"`
			Events []struct {
				Introduced string `json:"introduced,omitempty"`
				Fixed      string `json:"fixed,omitempty"`
			} `json:"events"`
		} `json:"ranges,omitempty"`
	} `json:"affected"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Fixed    string    `json:"fixed,omitempty"`
}

type module struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

func main() {
	osvDir := flag.String("osv", "", "directory of OSV JSON files (x/vulndb's data/osv)")
	out := flag.String("out", "", "directory to write the database to")
	flag.Parse()
	if *osvDir == "" || *out == "" {
		log.Fatal("usage: vulndb -osv DIR -out DIR")
	}
	if err := build(*osvDir, *out); err != nil {
		log.Fatal(err)
	}
}

func build(osvDir, out string) error {
	files, err := filepath.Glob(filepath.Join(osvDir, "*.json"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no OSV files in %s", osvDir)
	}
	if err := os.MkdirAll(filepath.Join(out, "ID"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(out, "index"), 0o755); err != nil {
		return err
	}
	var (
		modified time.Time
		modules  = map[string]*module{}
		vulns    []vuln
		seen     = map[string]bool{}
	)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var e entry
		if err := json.Unmarshal(b, &e); err != nil {
			return fmt.Errorf("%s: %v", f, err)
		}
		if e.ID == "" || filepath.Base(f) != e.ID+".json" {
			return fmt.Errorf("%s: file name does not match id %q", f, e.ID)
		}
		if seen[e.ID] {
			return fmt.Errorf("%s appears twice", e.ID)
		}
		seen[e.ID] = true
		// The entry itself, compacted as the real database serves it.
		var c bytes.Buffer
		if err := json.Compact(&c, b); err != nil {
			return fmt.Errorf("%s: %v", f, err)
		}
		if err := os.WriteFile(filepath.Join(out, "ID", e.ID+".json"), c.Bytes(), 0o644); err != nil {
			return err
		}
		if e.Modified.After(modified) {
			modified = e.Modified
		}
		vulns = append(vulns, vuln{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &module{Path: a.Package.Name, Vulns: []moduleVuln{}}
				modules[a.Package.Name] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified, Fixed: latestFixed(a.Ranges)})
		}
	}

	mods := make([]*module, 0, len(modules))
	for _, m := range modules {
		slices.SortStableFunc(m.Vulns, func(a, b moduleVuln) int { return strings.Compare(a.ID, b.ID) })
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b *module) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(vulns, func(a, b vuln) int { return strings.Compare(a.ID, b.ID) })

	for name, v := range map[string]any{
		"db.json": struct {
			Modified time.Time `json:"modified"`
		}{modified},
		"modules.json": mods,
		"vulns.json":   vulns,
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(out, "index", name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// latestFixed is x/vulndb's osvutils.LatestFixed: the latest fixed version
// of the SEMVER ranges, or "" if the vulnerability was introduced again after
// it. govulncheck skips an entry whose fixed version is at or below the
// version in use, so this must never come out too low.
func latestFixed(ranges []struct {
	Type   string `json:"type"`
	Events []struct {
		Introduced string `json:"introduced,omitempty"`
		Fixed      string `json:"fixed,omitempty"`
	} `json:"events"`
}) string {
	var latest string
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed != "" && less(latest, e.Fixed) {
				latest = e.Fixed
			}
		}
		for _, e := range r.Events {
			if e.Introduced != "" && e.Introduced != "0" && less(latest, e.Introduced) {
				latest = ""
				break
			}
		}
	}
	return latest
}

// less reports whether semantic version a (no "v" prefix) sorts before b, as
// golang.org/x/mod/semver.Compare does: an invalid version sorts before every
// valid one, and build metadata is ignored.
func less(a, b string) bool {
	va, oka := parse(a)
	vb, okb := parse(b)
	switch {
	case !oka || !okb:
		return !oka && okb
	}
	for i := range 3 {
		if c := cmpNum(va.num[i], vb.num[i]); c != 0 {
			return c < 0
		}
	}
	return cmpPrerelease(va.pre, vb.pre) < 0
}

type semver struct {
	num [3]string
	pre string // without the leading "-"
}

func parse(v string) (semver, bool) {
	var s semver
	suffix := false
	if i := strings.IndexByte(v, '+'); i >= 0 {
		if !idents(v[i+1:], false) {
			return s, false
		}
		v, suffix = v[:i], true
	}
	if i := strings.IndexByte(v, '-'); i >= 0 {
		s.pre = v[i+1:]
		if !idents(s.pre, true) {
			return s, false
		}
		v, suffix = v[:i], true
	}
	parts := strings.Split(v, ".")
	// x/mod/semver takes "1" and "1.2" for "1.0.0" and "1.2.0", but only
	// without a pre-release or build suffix.
	for len(parts) < 3 && !suffix {
		parts = append(parts, "0")
	}
	if len(parts) != 3 {
		return s, false
	}
	for i, p := range parts {
		if !numeric(p) || (len(p) > 1 && p[0] == '0') {
			return s, false
		}
		s.num[i] = p
	}
	return s, true
}

// idents checks a dot-separated list of identifiers; in a pre-release a
// numeric identifier may not have a leading zero.
func idents(s string, pre bool) bool {
	for _, id := range strings.Split(s, ".") {
		if id == "" {
			return false
		}
		for _, c := range id {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return false
			}
		}
		if pre && numeric(id) && len(id) > 1 && id[0] == '0' {
			return false
		}
	}
	return true
}

func numeric(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// cmpNum compares decimal strings without leading zeros, of any length.
func cmpNum(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

func cmpPrerelease(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return 1 // a release sorts after its pre-releases
	case b == "":
		return -1
	}
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, y := as[i], bs[i]
		if x == y {
			continue
		}
		nx, ny := numeric(x), numeric(y)
		switch {
		case nx && ny:
			return cmpNum(x, y)
		case nx:
			return -1
		case ny:
			return 1
		default:
			return strings.Compare(x, y)
		}
	}
	return len(as) - len(bs)
}
