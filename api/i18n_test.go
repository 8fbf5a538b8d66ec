package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEmbeddedCataloguesComplete fails on any text missing from, or extra
// in, an embedded catalogue, shipped or not (pt, lb), and on any key the
// staff pages use that English lacks: CI catches a forgotten translation.
func TestEmbeddedCataloguesComplete(t *testing.T) {
	cats, problems, err := LoadCatalogues("")
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("problems with no data dir: %v", problems)
	}
	seen := map[string]bool{}
	for _, r := range cats.Check() {
		seen[r.Kind+"/"+r.Lang] = true
		if len(r.Missing)+len(r.Extra)+len(r.Placeholders)+len(r.Empty) > 0 {
			t.Errorf("%s %s: missing %q, extra %q, placeholders differ %q, empty %q", r.Kind, r.Lang, r.Missing, r.Extra, r.Placeholders, r.Empty)
		}
	}
	for _, l := range ShippedLanguages() {
		for _, k := range []string{CatalogueVisitor, CatalogueStaff} {
			if !seen[k+"/"+l] {
				t.Errorf("no %s catalogue for %s", k, l)
			}
		}
	}
	for _, l := range []string{"pt", "lb"} {
		c := cats.Catalogue(CatalogueVisitor, l)
		if c == nil || c.Notes["_machine_made"] == "" {
			t.Errorf("visitor %s: want a catalogue marked _machine_made", l)
		}
	}
	for _, l := range ShippedLanguages() {
		if l != "en" && cats.Catalogue(CatalogueStaff, l).Notes["_review"] == "" {
			t.Errorf("staff %s: no _review note", l)
		}
	}

	en := cats.Catalogue(CatalogueStaff, "en").Texts
	used := staffKeysUsed(t)
	if len(used) < 150 {
		t.Fatalf("the key scan found only %d keys: it would miss some", len(used))
	}
	for _, want := range []string{"console.accept", "overview.policy_saved", "common.pw_weak_short", "common.language", "console.sp_no_call"} {
		if !slices.Contains(used, want) {
			t.Errorf("the key scan missed %s", want)
		}
	}
	for _, k := range used {
		if _, ok := en[k]; !ok {
			t.Errorf("the staff pages use %s, which staff/en.json lacks", k)
		}
	}
	// The default policy's topics have labels in every catalogue.
	for _, topic := range []string{"mental-health", "abuse-violence", "suicidal-thoughts", "other"} {
		for _, kind := range []string{CatalogueVisitor, CatalogueStaff} {
			if _, ok := cats.Catalogue(kind, "en").Texts["topic."+topic]; !ok {
				t.Errorf("%s en: no topic.%s", kind, topic)
			}
		}
	}
}

var (
	staffKeyLiteral = regexp.MustCompile(`['"]((?:console|overview|enrol|common|supervisor)\.[a-z0-9_]+)['"]`)
	// Keys built at run time: a prefix and the ids that complete it.
	staffKeyPrefixes = map[string][]string{
		"common.channel_":  {"chat", "phone"},
		"common.role_":     {"volunteer", "supervisor"},
		"overview.gossip_": {"alive", "suspect", "dead", "left", "unknown"},
		"overview.raft_":   {"leader", "voter", "nonvoter", "none"},
		"console.sp_":      {"no_call", "bad_sdp", "call_failed", "busy", "no_softphone"},
		// Asking for support (console.js) and its alerts (supervisor.js).
		"console.support_reason_":  {"none", "risk", "abuse", "unsure", "tired"},
		"supervisor.reason_":       {"none", "risk", "abuse", "unsure", "tired"},
		"supervisor.said_by_":      {"visitor", "volunteer"},
		"supervisor.desk_support_": {"asked", "coming"},
	}
)

// staffKeysUsed lists the catalogue keys the staff pages' HTML and
// JavaScript name.
func staffKeysUsed(t *testing.T) []string {
	t.Helper()
	var keys []string
	for _, f := range []string{"console.html", "overview.html", "enrol.html", "static/console.js", "static/overview.js", "static/enrol.js", "static/i18n.js", "static/password.js", "supervisor.html", "static/supervisor.js"} {
		b, err := web.ReadFile("web/" + f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range staffKeyLiteral.FindAllStringSubmatch(string(b), -1) {
			k := m[1]
			if ids, ok := staffKeyPrefixes[k]; ok {
				for _, id := range ids {
					keys = append(keys, k+id)
				}
				continue
			}
			if strings.HasSuffix(k, "_") {
				t.Errorf("%s builds keys from %q: add it to staffKeyPrefixes", f, k)
				continue
			}
			keys = append(keys, k)
		}
		// data-i18n-attr="placeholder:console.x;title:console.y"
		if !strings.HasSuffix(f, ".html") {
			continue
		}
		for _, m := range regexp.MustCompile(`data-i18n-attr="([^"]+)"`).FindAllStringSubmatch(string(b), -1) {
			for pair := range strings.SplitSeq(m[1], ";") {
				if _, k, ok := strings.Cut(pair, ":"); ok {
					keys = append(keys, strings.TrimSpace(k))
				}
			}
		}
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCentreCataloguesServed: a centre's own catalogues are served over the
// embedded ones and listed in the manifest; bad files are skipped with a
// logged reason and the rest still served.
func TestCentreCataloguesServed(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "sv.json"), `{"_language": "Svenska", "title": "Chatta med oss"}`)
	writeFile(t, filepath.Join(dir, "staff", "sv.json"), `{"_language": "Svenska", "console.logout": "Logga ut"}`)
	writeFile(t, filepath.Join(dir, "nb.json"), `{"heading": "Snakk med oss i Oslo"}`)
	writeFile(t, filepath.Join(dir, "EN.json"), `{"title": "x"}`)                                // not a lower-case code
	writeFile(t, filepath.Join(dir, "xx.json"), `{"title": ["not", "a string"]}`)                // not strings
	writeFile(t, filepath.Join(dir, "zz.json"), `{"title": "a"} {"title": "b"}`)                 // two objects
	writeFile(t, filepath.Join(dir, "yy.json"), `{"title": "`+strings.Repeat("a", 300<<10)+`"}`) // too big
	writeFile(t, filepath.Join(dir, "README"), "not a catalogue, ignored")
	rig := newChatRig(t, func(cfg *Config, srv *Server) {
		if srv == nil {
			cfg.CatalogueDir = dir
		}
	})
	get := func(path string, out any) int {
		t.Helper()
		resp, err := http.Get(rig.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK && out != nil {
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
		}
		return resp.StatusCode
	}
	var m map[string][]LanguageEntry
	if code := get("/i18n/languages.json", &m); code != http.StatusOK {
		t.Fatalf("manifest: HTTP %d", code)
	}
	codes := func(l []LanguageEntry) (out []string) {
		for _, e := range l {
			out = append(out, e.Code)
		}
		return out
	}
	if got, want := codes(m[CatalogueVisitor]), []string{"nb", "nn", "en", "fr", "de", "lb", "pt", "sv"}; !slices.Equal(got, want) {
		t.Errorf("visitor languages %q, want %q", got, want)
	}
	if got, want := codes(m[CatalogueStaff]), []string{"nb", "nn", "en", "fr", "de", "sv"}; !slices.Equal(got, want) {
		t.Errorf("staff languages %q, want %q", got, want)
	}
	if e := m[CatalogueVisitor][len(m[CatalogueVisitor])-1]; e.Name != "Svenska" || e.MachineMade {
		t.Errorf("sv entry %+v", e)
	}
	if e := m[CatalogueVisitor][6]; e.Code != "pt" || !e.MachineMade || e.Name != "Português" {
		t.Errorf("pt entry %+v", e)
	}
	var nb, sv, staffSV map[string]string
	get("/i18n/nb.json", &nb)
	if nb["heading"] != "Snakk med oss i Oslo" || nb["title"] == "" || nb["start"] == "" {
		t.Errorf("nb: the centre's heading over the embedded texts, got heading %q title %q", nb["heading"], nb["title"])
	}
	get("/i18n/sv.json", &sv)
	if sv["title"] != "Chatta med oss" {
		t.Errorf("sv.json: %v", sv)
	}
	get("/i18n/staff/sv.json", &staffSV)
	if staffSV["console.logout"] != "Logga ut" {
		t.Errorf("staff/sv.json: %v", staffSV)
	}
	for _, p := range []string{"/i18n/xx.json", "/i18n/EN.json", "/i18n/yy.json", "/i18n/zz.json", "/i18n/README", "/i18n/staff/", "/i18n/../web/chat.html"} {
		if code := get(p, nil); code != http.StatusNotFound {
			t.Errorf("%s: HTTP %d, want 404", p, code)
		}
	}
	logs := rig.logs.String()
	for _, f := range []string{"EN.json", "xx.json", "yy.json", "zz.json"} {
		if !strings.Contains(logs, "catalogue skipped") || !strings.Contains(logs, f) {
			t.Errorf("no skip logged for %s: %s", f, logs)
		}
	}
	if strings.Contains(logs, "README") {
		t.Errorf("a non-JSON file was reported: %s", logs)
	}
}

func TestCatalogueFileLimit(t *testing.T) {
	dir := t.TempDir()
	for i := range maxCatalogueFiles + 2 {
		writeFile(t, filepath.Join(dir, "a"+string(rune('a'+i/26))+string(rune('a'+i%26))+".json"), `{"title": "t"}`)
	}
	cats, problems, err := LoadCatalogues(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 2 || !errors.Is(problems[0], ErrBadCatalogue) {
		t.Fatalf("problems %v, want 2 files over the limit", problems)
	}
	if n := len(cats.Languages(CatalogueVisitor)); n != 7+maxCatalogueFiles {
		t.Errorf("%d visitor languages, want the 7 embedded and %d of the centre's", n, maxCatalogueFiles)
	}
}

func FuzzParseCatalogue(f *testing.F) {
	for _, s := range []string{`{"a": "b"}`, `{"_language": "x", "topic.a-b": "{n} c"}`, `[]`, `null`, `{"A": "b"}`, `{"a": 1}`, `{"a":"b"}x`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		texts, notes, err := ParseCatalogue(b)
		if err != nil {
			if !errors.Is(err, ErrBadCatalogue) {
				t.Fatalf("error %v is not ErrBadCatalogue", err)
			}
			return
		}
		if len(texts)+len(notes) > maxCatalogueKeys {
			t.Fatalf("%d keys", len(texts)+len(notes))
		}
		for k, v := range texts {
			if strings.HasPrefix(k, "_") || !catalogueKey.MatchString(k) || len(v) > maxCatalogueText {
				t.Fatalf("text %q = %q let through", k, v)
			}
		}
		for k := range notes {
			if !strings.HasPrefix(k, "_") {
				t.Fatalf("note %q without _", k)
			}
		}
	})
}
