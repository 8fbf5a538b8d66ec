// Package promrun runs a real Prometheus (Debian's binary) for the tests
// that check what a coordinator would see: the deploy rig scraping an
// in-process federation and the fault suite watching the compose one.
package promrun

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/helpmesh/helpmesh/internal/localfed"
)

// Config is a Prometheus configuration that scrapes targets (host:port)
// every second as job "helpmesh" and evaluates the rules file every second.
func Config(rules string, targets []string) string {
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = fmt.Sprintf("%q", t)
	}
	return fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: helpmesh
    metrics_path: /metrics
    static_configs:
      - targets: [%s]
`, rules, strings.Join(quoted, ", "))
}

// Server is a running Prometheus.
type Server struct {
	// Base is its URL, e.g. http://127.0.0.1:12345.
	Base string
	cmd  *exec.Cmd
	log  *os.File
}

// Start runs bin with config, keeping its data and log in dir, on a free
// loopback port, and returns once it answers /-/ready (within ready).
func Start(bin, dir, config string, ready time.Duration) (*Server, error) {
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	port, err := localfed.FreePort()
	if err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	log, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	s := &Server{Base: "http://" + addr, cmd: cmd, log: log}
	cl := http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(ready); ; {
		if resp, err := cl.Get(s.Base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("start prometheus: not ready after %v (log: %s)", ready, log.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop kills Prometheus and waits for it.
func (s *Server) Stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.log.Close()
}
