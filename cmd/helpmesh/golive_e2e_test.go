package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/testcert"
	"github.com/helpmesh/helpmesh/node"
)

// goLiveSection is the heading of docs/operations.md's go-live page, whose
// sh blocks this test runs.
const goLiveSection = "## Go live: a centre from a blank server"

// goLiveBlocks returns the sh blocks of the go-live page, in order.
func goLiveBlocks(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i := strings.Index(s, goLiveSection)
	if i < 0 {
		t.Fatalf("docs/operations.md has no %q", goLiveSection)
	}
	s = s[i+len(goLiveSection):]
	if j := strings.Index(s, "\n## "); j >= 0 {
		s = s[:j]
	}
	var blocks []string
	for _, m := range regexp.MustCompile("(?s)\n```sh\n(.*?)\n```\n").FindAllStringSubmatch(s, -1) {
		blocks = append(blocks, m[1])
	}
	return blocks
}

// shell runs the page's blocks one after another, each in its own bash
// with what the ones before it set (set -a exports every assignment, and
// the environment is saved between blocks), as an operator's shell would
// keep it.
type shell struct {
	env  string // the file the environment is saved in
	base []string
}

func (sh *shell) run(t *testing.T, block string) string {
	t.Helper()
	script := fmt.Sprintf("set -a\n[ -f %[1]q ] && . %[1]q\nset -euo pipefail\n%[2]s\nexport -p > %[1]q\n", sh.env, block)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Env = sh.base
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("the go-live page's block\n%s\nfailed: %v\n%s", block, err, out.String())
	}
	return out.String()
}

// TestGoLivePageRunsAsWritten runs docs/operations.md's go-live page as
// written: the settings, init with TLS and the three listeners, the start
// (here helpmesh run; systemd on a server), the readiness wait and status,
// the policy PATCH with Norwegian names of the emergency numbers, the
// first volunteer's registration and enrolment, and the check of what
// faces the internet. Then a first conversation with the terminal
// clients, over HTTPS on both sides, as its step 9 says.
func TestGoLivePageRunsAsWritten(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("curl is needed (.ci/run installs it)")
		}
		t.Skip("curl is not installed: the go-live page's steps use it")
	}
	bin := buildBinary(t)
	blocks := goLiveBlocks(t)
	if len(blocks) != 7 {
		t.Fatalf("the go-live page has %d sh blocks; this test knows 7 (settings, init, ready, policy, volunteer, enrol, check): update it with the page", len(blocks))
	}
	root := t.TempDir()
	ca, err := testcert.NewCA("helpmesh go-live test ca")
	if err != nil {
		t.Fatal(err)
	}
	caFile, cert, key := filepath.Join(root, "ca.pem"), filepath.Join(root, "fullchain.pem"), filepath.Join(root, "privkey.pem")
	if err := ca.WriteCert(caFile); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Issue(cert, key, "localhost", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	port := func() int { return fedtest.FreePort(t) }
	public, staff := port(), port()
	dir := filepath.Join(root, "bergen")
	const password = "a password Kari chose"
	vars := map[string]string{
		"CENTRE": "bergen", "NAME": "Kirkens SOS Bergen", "DIR": dir,
		"PUBLIC_ADDR": fmt.Sprintf("127.0.0.1:%d", public), "PUBLIC_URL": fmt.Sprintf("https://localhost:%d", public),
		"STAFF_ADDR": fmt.Sprintf("127.0.0.1:%d", staff), "STAFF_URL": fmt.Sprintf("https://localhost:%d", staff),
		"METRICS_ADDR": fmt.Sprintf("127.0.0.1:%d", port()),
		"P2P_ADDR":     fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port()), "GOSSIP_ADDR": fmt.Sprintf("127.0.0.1:%d", port()),
		"CERT": cert, "KEY": key, "KARI_PASSWORD": password,
		// Trust the test's authority, as a server trusts the ACME one.
		"SSL_CERT_FILE": caFile, "CURL_CA_BUNDLE": caFile,
	}
	base := []string{"PATH=" + filepath.Dir(bin) + ":" + filepath.Dir(curl) + ":/usr/bin:/bin", "HOME=" + root, "LANG=C.UTF-8"}
	for k, v := range vars {
		base = append(base, k+"="+v)
		// The terminal clients below are started with this process's
		// environment: they trust the same authority.
		if strings.HasPrefix(k, "SSL_") {
			t.Setenv(k, v)
		}
	}
	sh := &shell{env: filepath.Join(root, "env.sh"), base: base}

	sh.run(t, blocks[0]) // step 3: the settings (the test's values win)
	sh.run(t, blocks[1]) // step 4: init
	// Step 5: systemd on a server; here the binary itself.
	start(t, bin, "run", "--dir", dir)
	out := sh.run(t, blocks[2]) // step 5: wait until ready, status
	if !strings.Contains(out, `"status": "ready"`) || !regexp.MustCompile(`(?m)^bergen\s`).MatchString(out) {
		t.Fatalf("readyz and status after the start:\n%s", out)
	}
	sh.run(t, blocks[3]) // step 6: the policy
	out = sh.run(t, blocks[4])
	if !regexp.MustCompile(`send to Kari: https://localhost:\d+/enrol#v=bergen-kari&c=\w{4}-\w{4}-\w{4}\n`).MatchString(out) {
		t.Fatalf("step 7 should print Kari's enrolment link:\n%s", out)
	}
	sh.run(t, blocks[5]) // step 7: Kari enrols with the code
	sh.run(t, blocks[6]) // step 8: what faces the internet

	// Step 9: a visitor before anyone is on duty sees the Norwegian names
	// step 6 set; then Kari comes on duty and answers.
	chat := startCLI(t, bin, "chat", "--server", vars["PUBLIC_URL"], "--lang", "nb")
	chat.await(t, "Koblet til.")
	chat.await(t, "Medisinsk nødhjelp: 113")
	chat.say(t, "hei, er det noen der?")
	vol := startCLI(t, bin, "volunteer", "--server", vars["STAFF_URL"], "--id", "bergen-kari", "--password", password)
	vol.await(t, "[offer (chat, nb)")
	vol.say(t, "/accept")
	chat.await(t, "[Du snakker med Kari.]")
	vol.await(t, "visitor: hei, er det noen der?")
	vol.say(t, "hei, jeg er her")
	chat.await(t, "hei, jeg er her")
	vol.say(t, "/end")
	chat.await(t, "Samtalen er avsluttet.")
	if code := chat.exited(t, 5*time.Second, "the end of the conversation"); code != 0 {
		t.Fatalf("chat exited %d after the conversation ended, want 0", code)
	}

	// Step 4's --public-url reaches the roster, for other centres' pages.
	token, err := node.LoadAdminToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	waitFor(t, 20*time.Second, "bergen's public_url in the roster", func() bool {
		req, _ := http.NewRequest(http.MethodGet, vars["STAFF_URL"]+"/v1/roster", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var r consensus.Roster
		return json.NewDecoder(resp.Body).Decode(&r) == nil && r.Centres["bergen"].PublicURL == vars["PUBLIC_URL"]
	})
}
