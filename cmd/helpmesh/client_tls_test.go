package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/centre"
	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/internal/localfed/fedtest"
	"github.com/helpmesh/helpmesh/internal/testcert"
	"github.com/helpmesh/helpmesh/internal/timing"
	"github.com/helpmesh/helpmesh/node"
)

// The CLI given a data directory (--dir) finds its centre's admin API when
// the centre serves it on a staff listener over TLS, with a certificate for
// a public name and not for the loopback address: it trusts the centre's
// own certificate file and checks it for that name. The public side, as
// the split wants, does not answer the same request.
func TestClientWithDirReachesTheStaffSideOverTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oslo")
	if err := os.MkdirAll(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	ca, err := testcert.NewCA("a CA the system does not trust")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Issue(filepath.Join(dir, "tls", "cert.pem"), filepath.Join(dir, "tls", "key.pem"), "staff.oslo.example"); err != nil {
		t.Fatal(err)
	}
	free := func() string { return fmt.Sprintf("127.0.0.1:%d", fedtest.FreePort(t)) }
	fc := node.FileConfig{Centre: "oslo", Name: "oslo", HTTPAddr: free(),
		P2PAddr: fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", fedtest.FreePort(t)), GossipAddr: free(),
		Web: node.WebConfig{StaffAddr: free(), TLSCert: "tls/cert.pem", TLSKey: "tls/key.pem"}}
	if _, err := node.Init(dir, fc); err != nil {
		t.Fatal(err)
	}
	cfg, err := centre.ConfigFromDir(dir, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Node.Timing = timing.Test
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := centre.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })

	empty := ""
	flags := clientFlags{dir: &dir, server: &empty, token: &empty, tokenFile: &empty}
	client, err := flags.client()
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://" + fc.Web.StaffAddr; client.base != want {
		t.Fatalf("the CLI talks to %s, want %s", client.base, want)
	}
	var roster consensus.Roster
	if err := flags.call(ctx, http.MethodGet, "/v1/roster", nil, &roster); err != nil {
		t.Fatalf("GET /v1/roster through --dir: %v", err)
	}
	if _, ok := roster.Centres["oslo"]; !ok {
		t.Fatalf("roster without oslo: %+v", roster)
	}
	// The same request at the public side (same certificate) is a 404.
	client.base = "https://" + fc.HTTPAddr
	if err := client.do(ctx, http.MethodGet, "/v1/roster", nil, &roster); err == nil {
		t.Fatal("the public side answered GET /v1/roster")
	} else {
		t.Logf("public side: %v", err)
	}
}

// helpmesh init writes the going-live flags into the web section, and
// refuses a certificate without its key.
func TestInitWritesStaffMetricsAndTLS(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bergen")
	err := cmdInit([]string{"--dir", dir, "--centre", "bergen", "--http", "0.0.0.0:8443", "--staff", "10.0.0.5:8090",
		"--metrics", "10.0.0.5:9100", "--tls-cert", "tls/fullchain.pem", "--tls-key", "tls/privkey.pem"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := node.LoadFileConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := node.WebConfig{StaffAddr: "10.0.0.5:8090", MetricsAddr: "10.0.0.5:9100", TLSCert: "tls/fullchain.pem", TLSKey: "tls/privkey.pem"}
	if !reflect.DeepEqual(fc.Web, want) {
		t.Fatalf("web section %+v, want %+v", fc.Web, want)
	}
	err = cmdInit([]string{"--dir", filepath.Join(t.TempDir(), "x"), "--centre", "x", "--tls-cert", "cert.pem"}, io.Discard)
	if !errors.Is(err, node.ErrBadConfig) {
		t.Fatalf("a certificate without its key: %v", err)
	}
}
