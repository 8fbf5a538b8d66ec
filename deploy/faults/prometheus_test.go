//go:build faults

package faults

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/internal/promrun"
)

// promWatch is Debian's Prometheus on the host scraping the compose
// centres through their published ports, with the federation's rules. It
// stands in for compose's "monitoring" profile, whose image cannot be
// pulled here; a coordinator's Prometheus sees the faults the same way.
type promWatch struct {
	base string
}

// watchWithPrometheus starts it; without the binary it skips the watch
// (nil) on a laptop and fails in CI, where .ci/run installs it.
func (f *fed) watchWithPrometheus(t *testing.T) *promWatch {
	t.Helper()
	bin := ""
	for _, p := range []string{"prometheus", "/usr/bin/prometheus"} {
		if path, err := exec.LookPath(p); err == nil {
			bin = path
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus not found: .ci/run installs Debian's prometheus package")
		}
		t.Log("prometheus not found (apt-get install prometheus): the suite runs without a Prometheus watching it")
		return nil
	}
	prom, err := promrun.Start(bin, t.TempDir(), promrun.Config(filepath.Join(f.root, "deploy/prometheus/rules.yml"),
		[]string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}), 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prom.Stop)
	p := &promWatch{base: prom.Base}
	f.waitFor(60*time.Second, "Prometheus scraping all three centres", func() bool {
		v, ok := p.scalar(`sum(up{job="helpmesh"})`)
		return ok && v == 3
	})
	return p
}

// scalar runs an instant query that should give one number.
func (p *promWatch) scalar(expr string) (float64, bool) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&out) != nil || out.Status != "success" || len(out.Data.Result) != 1 {
		return 0, false
	}
	s, _ := out.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// check asserts what a coordinator's Prometheus saw of the whole suite:
// centres down while they were killed, frozen or restarting, all three up
// at the end, and the recording rules fed by the bots' chats (centre-a
// has no volunteer of its own except, in one scenario, a bot when it is not
// the leader, so most of its answered contacts overflowed).
func (p *promWatch) check(t *testing.T, f *fed) {
	t.Helper()
	if p == nil {
		return
	}
	f.waitFor(60*time.Second, "Prometheus to see all three centres up again", func() bool {
		v, ok := p.scalar(`sum(up{job="helpmesh"})`)
		return ok && v == 3
	})
	downs, ok := p.scalar(`sum(changes(up{job="helpmesh"}[1h]))`)
	if !ok || downs < 2 {
		t.Errorf("Prometheus saw %v changes of up across the suite, want the centres going down and up again", downs)
	}
	overflow, ok := p.scalar(`helpmesh_centre:overflow:ratio_rate5m{centre="centre-a"}`)
	if !ok || overflow <= 0.5 || overflow > 1 {
		t.Errorf("recording rule helpmesh_centre:overflow:ratio_rate5m for centre-a = %v (%v), want most of its answers overflowed", overflow, ok)
	}
	f.figure(t, "Prometheus (Debian's, on the host, scraping the published ports with deploy/prometheus/rules.yml): %v changes of up across the suite, all three up at the end, centre-a's overflow ratio %v", downs, overflow)
}
