package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/helpmesh/helpmesh/api"
	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/node"
)

// adminClient talks to one centre's admin API.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

// clientFlags adds the flags that say which centre to talk to.
type clientFlags struct{ dir, server, token, tokenFile *string }

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		dir:       fs.String("dir", "", "a centre's data directory on this machine (gives --server and the token)"),
		server:    fs.String("server", "", "the centre's API, e.g. http://127.0.0.1:8080"),
		token:     fs.String("token", "", "admin token (prefer --token-file or HELPMESH_TOKEN)"),
		tokenFile: fs.String("token-file", "", "file holding the admin token"),
	}
}

func newAdminClient(base, token string) *adminClient {
	return &adminClient{base: base, token: token, http: &http.Client{Timeout: 30 * time.Second}}
}

func (f clientFlags) client() (*adminClient, error) {
	c := newAdminClient(*f.server, *f.token)
	if *f.dir != "" {
		fc, err := node.LoadFileConfig(*f.dir)
		if err != nil {
			return nil, err
		}
		if c.base == "" {
			if err := c.toOwnCentre(*f.dir, fc); err != nil {
				return nil, err
			}
		}
		if c.token == "" && *f.tokenFile == "" {
			if c.token, err = node.LoadAdminToken(*f.dir); err != nil {
				return nil, err
			}
		}
	}
	if *f.tokenFile != "" {
		b, err := os.ReadFile(*f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("read token file: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	if c.token == "" {
		c.token = os.Getenv("HELPMESH_TOKEN")
	}
	if c.base == "" {
		return nil, fmt.Errorf("say which centre: --dir or --server")
	}
	if !strings.Contains(c.base, "://") {
		c.base = "http://" + c.base
	}
	return c, nil
}

// toOwnCentre points c at the admin API of the centre in data directory
// dir on this machine: its staff listener if it has one, over HTTPS if it
// serves TLS, trusting the certificate in its own files (plus the system's
// roots, for its chain) and checking it for the certificate's own name,
// since the address here is a loopback one.
func (c *adminClient) toOwnCentre(dir string, fc node.FileConfig) error {
	addr := fc.HTTPAddr
	if fc.Web.StaffAddr != "" {
		addr = fc.Web.StaffAddr
	}
	addr = strings.Replace(addr, "0.0.0.0", "127.0.0.1", 1)
	if fc.Web.TLSCert == "" {
		c.base = "http://" + addr
		return nil
	}
	certPath, _ := fc.Web.TLSFiles(dir)
	b, err := os.ReadFile(certPath)
	if err != nil {
		return fmt.Errorf("read the centre's tls certificate: %w", err)
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	var leaf *x509.Certificate
	for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil && block.Type == "CERTIFICATE" {
			roots.AddCert(cert)
			if leaf == nil {
				leaf = cert
			}
		}
	}
	if leaf == nil {
		return fmt.Errorf("read the centre's tls certificate %s: no certificate in it", certPath)
	}
	tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if len(leaf.DNSNames) > 0 {
		tc.ServerName = leaf.DNSNames[0]
	}
	c.base = "https://" + addr
	c.http.Transport = &http.Transport{TLSClientConfig: tc}
	return nil
}

// call sends one request (see do) to the centre the flags name.
func (f clientFlags) call(ctx context.Context, method, path string, body, out any) error {
	c, err := f.client()
	if err != nil {
		return err
	}
	return c.do(ctx, method, path, body, out)
}

// do sends a request and decodes a JSON reply into out, turning an error
// reply into a Go error carrying the server's message.
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var e api.ErrorBody
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s %s: HTTP %d", method, path, resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

func cmdCentreAdmit(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("centre admit", flag.ContinueOnError)
	cf := addClientFlags(fs)
	from := fs.String("from", "", "the new centre's data directory, when it is on this machine")
	id := fs.String("id", "", "the new centre's id")
	name := fs.String("name", "", "the new centre's name")
	peerID := fs.String("peer-id", "", "the new centre's peer id (printed by its helpmesh init)")
	gossip := fs.String("gossip", "", "the new centre's gossip address, host:port")
	httpAddr := fs.String("http", "", "the new centre's HTTP address (optional)")
	var addrs multiFlag
	fs.Var(&addrs, "addr", "the new centre's libp2p multiaddr (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := consensus.Centre{ID: *id, Name: *name, PeerID: *peerID, Addrs: addrs, GossipAddr: *gossip, HTTPAddr: *httpAddr}
	if *from != "" {
		fc, err := node.LoadFileConfig(*from)
		if err != nil {
			return err
		}
		key, err := node.LoadOrCreateIdentity(*from + "/" + node.IdentityFile)
		if err != nil {
			return err
		}
		pid, err := node.PeerIDOf(key)
		if err != nil {
			return err
		}
		c = consensus.Centre{ID: fc.Centre, Name: fc.Name, PeerID: pid.String(), GossipAddr: fc.GossipAddr, HTTPAddr: fc.HTTPAddr,
			Addrs: []string{strings.Replace(fc.P2PAddr, "/0.0.0.0/", "/127.0.0.1/", 1)}}
		c.GossipAddr = strings.Replace(c.GossipAddr, "0.0.0.0", "127.0.0.1", 1)
	}
	var resp api.AdmitResponse
	if err := cf.call(ctx, http.MethodPost, "/v1/centres", c, &resp); err != nil {
		return fmt.Errorf("centre admit: %w", err)
	}
	fmt.Fprintf(stdout, "admitted centre %s (%s)\n", resp.Centre.ID, resp.Centre.PeerID)
	if len(resp.JoinAddrs) > 0 {
		fmt.Fprintf(stdout, "start it with:\n  helpmesh run --dir DIR --join %s\n", resp.JoinAddrs[0])
	}
	return nil
}

func cmdCentreRemove(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("centre remove", flag.ContinueOnError)
	cf := addClientFlags(fs)
	id := fs.String("id", "", "the centre to remove")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" {
		return fmt.Errorf("centre remove: --id is required")
	}
	if err := cf.call(ctx, http.MethodDelete, "/v1/centres/"+*id, nil, nil); err != nil {
		return fmt.Errorf("centre remove: %w", err)
	}
	fmt.Fprintf(stdout, "removed centre %s\n", *id)
	return nil
}
