package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// The pages' texts come from catalogues: flat JSON objects of key -> text
// with {placeholders}. Two kinds: the visitor's chat page (web/i18n/LL.json,
// served at /i18n/LL.json) and the staff pages, console, overview and
// enrolment (web/i18n/staff/LL.json, served at /i18n/staff/LL.json). Keys
// that begin with "_" are notes, not texts: "_language" is the language's
// own name for the pickers, "_machine_made" marks wording a machine made,
// "_review" lists what a native speaker should check. A centre adds or
// overrides catalogues without rebuilding, in <data dir>/i18n/LL.json and
// <data dir>/i18n/staff/LL.json: its keys win over the embedded ones of the
// same language. A bad file there is skipped with a logged reason (the
// helpline keeps running in its other languages); `helpmesh i18n check`
// reports it and exits 1.

// Catalogue kinds.
const (
	CatalogueVisitor = "visitor"
	CatalogueStaff   = "staff"
)

// Bounds on a centre's catalogues: they are read at start into memory and
// served to every page, so neither a big file nor many files may cost much.
const (
	maxCatalogueBytes = 256 << 10
	maxCatalogueFiles = 64 // per kind
	maxCatalogueKeys  = 2000
	maxCatalogueKey   = 128
	maxCatalogueText  = 4096
)

// Errors of catalogue files.
var (
	// ErrBadCatalogue is a catalogue file that cannot be used: not a flat
	// JSON object of strings, too big, a bad key or a bad language code.
	ErrBadCatalogue = errors.New("bad catalogue")
)

var (
	// catalogueLang is a BCP 47 primary language subtag, lower case.
	catalogueLang = regexp.MustCompile(`^[a-z]{2,3}$`)
	catalogueKey  = regexp.MustCompile(`^[a-z0-9_][a-z0-9_.\-]*$`)
	placeholder   = regexp.MustCompile(`\{\w+\}`)
)

// ShippedLanguages are the languages whose visitor and staff catalogues
// ship complete with helpmesh; the check fails when one lacks a key.
func ShippedLanguages() []string { return []string{"nb", "nn", "en", "fr", "de"} }

// Catalogue is one language's texts of one kind.
type Catalogue struct {
	Kind string
	Lang string
	// Texts are the keys the pages use.
	Texts map[string]string
	// Notes are the keys that begin with "_".
	Notes map[string]string
	// Sources says where it came from: "embedded", a file, or both.
	Sources []string
}

// Catalogues are every catalogue a centre serves, the embedded ones merged
// with its data directory's.
type Catalogues struct {
	byKind map[string]map[string]*Catalogue
	bodies map[string][]byte // URL path -> JSON
}

// ParseCatalogue reads one catalogue file: a flat JSON object whose values
// are strings, at most maxCatalogueBytes.
func ParseCatalogue(b []byte) (texts, notes map[string]string, err error) {
	if len(b) > maxCatalogueBytes {
		return nil, nil, fmt.Errorf("parse catalogue: %w: %d bytes, at most %d", ErrBadCatalogue, len(b), maxCatalogueBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var raw map[string]string
	if err := dec.Decode(&raw); err != nil {
		return nil, nil, fmt.Errorf("parse catalogue: %w: want a JSON object of strings: %v", ErrBadCatalogue, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, fmt.Errorf("parse catalogue: %w: data after the object", ErrBadCatalogue)
	}
	if raw == nil {
		return nil, nil, fmt.Errorf("parse catalogue: %w: want a JSON object, not null", ErrBadCatalogue)
	}
	if len(raw) > maxCatalogueKeys {
		return nil, nil, fmt.Errorf("parse catalogue: %w: %d keys, at most %d", ErrBadCatalogue, len(raw), maxCatalogueKeys)
	}
	texts, notes = map[string]string{}, map[string]string{}
	for k, v := range raw {
		if len(k) > maxCatalogueKey || !catalogueKey.MatchString(k) {
			return nil, nil, fmt.Errorf("parse catalogue: %w: key %q must be 1-%d of a-z, 0-9, _ . -", ErrBadCatalogue, clipText(k), maxCatalogueKey)
		}
		if len(v) > maxCatalogueText || !utf8.ValidString(v) {
			return nil, nil, fmt.Errorf("parse catalogue: %w: %s: text must be UTF-8, at most %d bytes", ErrBadCatalogue, k, maxCatalogueText)
		}
		if strings.HasPrefix(k, "_") {
			notes[k] = v
		} else {
			texts[k] = v
		}
	}
	return texts, notes, nil
}

// LoadCatalogues reads the embedded catalogues and, when dir is not "",
// a centre's own from dir (LL.json for the visitor page, staff/LL.json for
// the staff pages; a missing dir is no error). A file that cannot be used
// is skipped and named in problems; err is only for the embedded tree.
func LoadCatalogues(dir string) (c *Catalogues, problems []error, err error) {
	c = &Catalogues{byKind: map[string]map[string]*Catalogue{CatalogueVisitor: {}, CatalogueStaff: {}}}
	sub, err := fs.Sub(web, "web/i18n")
	if err != nil {
		return nil, nil, fmt.Errorf("load catalogues: %w", err)
	}
	for kind, folder := range map[string]string{CatalogueVisitor: ".", CatalogueStaff: "staff"} {
		if err := c.readDir(sub, folder, kind, "embedded", nil); err != nil {
			return nil, nil, fmt.Errorf("load catalogues: embedded: %w", err)
		}
		if dir != "" {
			probs := []error{}
			if err := c.readDir(os.DirFS(dir), folder, kind, "", &probs); err != nil && !errors.Is(err, fs.ErrNotExist) {
				probs = append(probs, fmt.Errorf("load catalogues: %s: %w", filepath.Join(dir, folder), err))
			}
			problems = append(problems, probs...)
		}
	}
	c.render()
	return c, problems, nil
}

// readDir reads the *.json files of folder in fsys as catalogues of kind,
// merged over what c has. With problems nil (the embedded tree) a bad file
// is an error; otherwise it is skipped and appended to problems.
func (c *Catalogues) readDir(fsys fs.FS, folder, kind, source string, problems *[]error) error {
	entries, err := fs.ReadDir(fsys, folder)
	if err != nil {
		return err
	}
	n := 0
	for _, e := range entries { // sorted by name
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		where := source
		if where == "" {
			where = path.Join(folder, name)
		}
		fail := func(err error) error {
			err = fmt.Errorf("catalogue %s (%s): %w", path.Join(folder, name), kind, err)
			if problems == nil {
				return err
			}
			*problems = append(*problems, err)
			return nil
		}
		if n++; n > maxCatalogueFiles {
			if err := fail(fmt.Errorf("%w: more than %d catalogue files, this one is skipped", ErrBadCatalogue, maxCatalogueFiles)); err != nil {
				return err
			}
			continue
		}
		lang := strings.TrimSuffix(name, ".json")
		if !catalogueLang.MatchString(lang) {
			if err := fail(fmt.Errorf("%w: the file name must be a language code of 2-3 lower-case letters (BCP 47 primary tag), such as nb.json", ErrBadCatalogue)); err != nil {
				return err
			}
			continue
		}
		b, err := readBounded(fsys, path.Join(folder, name))
		if err != nil {
			if err := fail(err); err != nil {
				return err
			}
			continue
		}
		texts, notes, err := ParseCatalogue(b)
		if err != nil {
			if err := fail(err); err != nil {
				return err
			}
			continue
		}
		cat := c.byKind[kind][lang]
		if cat == nil {
			cat = &Catalogue{Kind: kind, Lang: lang, Texts: map[string]string{}, Notes: map[string]string{}}
			c.byKind[kind][lang] = cat
		}
		maps.Copy(cat.Texts, texts)
		maps.Copy(cat.Notes, notes)
		cat.Sources = append(cat.Sources, where)
	}
	return nil
}

// readBounded reads name, refusing more than maxCatalogueBytes before it
// reads them all.
func readBounded(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCatalogueBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCatalogueBytes {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadCatalogue, maxCatalogueBytes)
	}
	return b, nil
}

// LanguageEntry is one language in the pages' pickers.
type LanguageEntry struct {
	Code string `json:"code"`
	// Name is the language's own name ("_language"), else its code.
	Name        string `json:"name"`
	MachineMade bool   `json:"machine_made,omitempty"`
}

// Languages lists kind's languages: the shipped ones in their order, then
// the rest by code.
func (c *Catalogues) Languages(kind string) []LanguageEntry {
	var out []LanguageEntry
	for _, code := range c.langs(kind) {
		cat := c.byKind[kind][code]
		e := LanguageEntry{Code: code, Name: cat.Notes["_language"], MachineMade: cat.Notes["_machine_made"] != ""}
		if e.Name == "" {
			e.Name = code
		}
		out = append(out, e)
	}
	return out
}

func (c *Catalogues) langs(kind string) []string {
	shipped := ShippedLanguages()
	codes := slices.Collect(maps.Keys(c.byKind[kind]))
	slices.SortFunc(codes, func(a, b string) int {
		ia, ib := slices.Index(shipped, a), slices.Index(shipped, b)
		switch {
		case ia >= 0 && ib >= 0:
			return ia - ib
		case ia >= 0:
			return -1
		case ib >= 0:
			return 1
		}
		return strings.Compare(a, b)
	})
	return codes
}

// Catalogue returns kind's catalogue for lang, or nil.
func (c *Catalogues) Catalogue(kind, lang string) *Catalogue { return c.byKind[kind][lang] }

// render prepares what is served: each catalogue (texts and notes) and
// the manifest /i18n/languages.json.
func (c *Catalogues) render() {
	c.bodies = map[string][]byte{}
	for kind, prefix := range map[string]string{CatalogueVisitor: "/i18n/", CatalogueStaff: "/i18n/staff/"} {
		for lang, cat := range c.byKind[kind] {
			all := maps.Clone(cat.Texts)
			maps.Copy(all, cat.Notes)
			b, _ := json.Marshal(all) // a map of strings always marshals
			c.bodies[prefix+lang+".json"] = b
		}
	}
	b, _ := json.Marshal(map[string][]LanguageEntry{
		CatalogueVisitor: c.Languages(CatalogueVisitor),
		CatalogueStaff:   c.Languages(CatalogueStaff),
	})
	c.bodies["/i18n/languages.json"] = b
}

// CatalogueReport is what the check finds in one catalogue, against the
// English one of the same kind.
type CatalogueReport struct {
	Kind, Lang string
	Sources    []string
	// Shipped: one of ShippedLanguages, which must be complete.
	Shipped     bool
	MachineMade bool
	Missing     []string
	Extra       []string
	// Placeholders are keys whose {placeholders} differ from English.
	Placeholders []string
	Empty        []string
}

// Failed says whether the report fails the check: a shipped catalogue with
// a missing, empty or mis-placeholdered text.
func (r CatalogueReport) Failed() bool {
	return r.Shipped && (len(r.Missing) > 0 || len(r.Placeholders) > 0 || len(r.Empty) > 0)
}

// Check compares every catalogue with the English one of its kind.
func (c *Catalogues) Check() []CatalogueReport {
	var out []CatalogueReport
	shipped := ShippedLanguages()
	for _, kind := range []string{CatalogueVisitor, CatalogueStaff} {
		en := c.byKind[kind]["en"]
		for _, lang := range c.langs(kind) {
			cat := c.byKind[kind][lang]
			r := CatalogueReport{Kind: kind, Lang: lang, Sources: cat.Sources, Shipped: slices.Contains(shipped, lang),
				MachineMade: cat.Notes["_machine_made"] != ""}
			var want map[string]string
			if en != nil {
				want = en.Texts
			}
			for k, v := range want {
				got, ok := cat.Texts[k]
				if !ok {
					r.Missing = append(r.Missing, k)
					continue
				}
				if !slices.Equal(sortedPlaceholders(got), sortedPlaceholders(v)) {
					r.Placeholders = append(r.Placeholders, k)
				}
			}
			for k, v := range cat.Texts {
				if _, ok := want[k]; !ok {
					r.Extra = append(r.Extra, k)
				}
				if strings.TrimSpace(v) == "" {
					r.Empty = append(r.Empty, k)
				}
			}
			slices.Sort(r.Missing)
			slices.Sort(r.Extra)
			slices.Sort(r.Placeholders)
			slices.Sort(r.Empty)
			out = append(out, r)
		}
		for _, lang := range shipped {
			if c.byKind[kind][lang] == nil {
				out = append(out, CatalogueReport{Kind: kind, Lang: lang, Shipped: true, Missing: []string{"(the whole catalogue)"}})
			}
		}
	}
	return out
}

func sortedPlaceholders(s string) []string {
	p := placeholder.FindAllString(s, -1)
	slices.Sort(p)
	return slices.Compact(p)
}
