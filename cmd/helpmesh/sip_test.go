package main

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helpmesh/helpmesh/node"
)

// init --sip writes the address to the configuration; without it the
// configuration has none; a bad one is refused before anything is written.
func TestInitSIPFlag(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "oslo")
	var out bytes.Buffer
	if err := cmdInit([]string{"--dir", dir, "--centre", "oslo", "--sip", "sip.oslo.example:5060"}, &out); err != nil {
		t.Fatal(err)
	}
	fc, err := node.LoadFileConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fc.SIPAddr != "sip.oslo.example:5060" {
		t.Fatalf("config sip_addr = %q", fc.SIPAddr)
	}

	plain := filepath.Join(t.TempDir(), "bergen")
	if err := cmdInit([]string{"--dir", plain, "--centre", "bergen"}, &out); err != nil {
		t.Fatal(err)
	}
	if fc, err := node.LoadFileConfig(plain); err != nil || fc.SIPAddr != "" {
		t.Fatalf("config without --sip: %+v %v", fc, err)
	}

	bad := filepath.Join(t.TempDir(), "tromso")
	err = cmdInit([]string{"--dir", bad, "--centre", "tromso", "--sip", "sip.tromso.example:99999"}, &out)
	if !errors.Is(err, node.ErrBadConfig) || !strings.Contains(err.Error(), "port must be 1-65535") {
		t.Fatalf("init with a bad --sip: %v, want ErrBadConfig about the port", err)
	}
	if _, err := node.LoadFileConfig(bad); err == nil {
		t.Fatal("init with a bad --sip wrote a configuration")
	}
}

// status lists the SIP ingress addresses that centres publish, and says
// nothing of them when none does.
func TestStatusShowsSIPAddr(t *testing.T) {
	v := node.FederationView{Observer: "oslo", Centres: []node.CentreView{
		{ID: "bergen", Name: "Bergen", SIPAddr: "sip.bergen.example:5060"},
		{ID: "oslo", Name: "Oslo"},
	}}
	var out bytes.Buffer
	printStatus(&out, v)
	if !strings.Contains(out.String(), "SIP ingress:\n  bergen  sip.bergen.example:5060\n") || strings.Contains(out.String(), "  oslo  ") {
		t.Fatalf("status:\n%s", out.String())
	}
	v.Centres[0].SIPAddr = ""
	out.Reset()
	printStatus(&out, v)
	if strings.Contains(out.String(), "SIP ingress") {
		t.Fatalf("status with no SIP address:\n%s", out.String())
	}
}

// init --media-host makes the node the centre's phone: the browser phone
// is written with its port range and STUN/TURN URLs; without a SIP
// ingress, or with a bad range or host, init refuses before writing.
func TestInitBrowserPhoneFlags(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "alltid")
	var out bytes.Buffer
	if err := cmdInit([]string{"--dir", dir, "--centre", "alltid", "--sip-listen", "0.0.0.0:5090", "--pbx", "192.0.2.10",
		"--media-host", "198.51.100.7", "--rtp-ports", "10000-10999", "--ice-ports", "20000-20999", "--ice-servers", "stun:stun.example:3478, turn:turn.example:3478"}, &out); err != nil {
		t.Fatal(err)
	}
	fc, err := node.LoadFileConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := fc.Phone.Browser
	if b == nil || b.MediaHost != "198.51.100.7" || b.RTPPorts != "10000-10999" || b.ICEPorts != "20000-20999" || len(b.ICEServers) != 2 || b.ICEServers[1].URLs[0] != "turn:turn.example:3478" {
		t.Fatalf("browser phone in the config: %+v", b)
	}
	for name, args := range map[string][]string{
		"no SIP ingress": {"--media-host", "198.51.100.7"},
		"bad range":      {"--sip-listen", "0.0.0.0:5090", "--pbx", "192.0.2.10", "--media-host", "198.51.100.7", "--rtp-ports", "10999-10000"},
		"bad ICE range":  {"--sip-listen", "0.0.0.0:5090", "--pbx", "192.0.2.10", "--media-host", "198.51.100.7", "--ice-ports", "80-90"},
		"bad host":       {"--sip-listen", "0.0.0.0:5090", "--pbx", "192.0.2.10", "--media-host", "0.0.0.0"},
	} {
		d := filepath.Join(t.TempDir(), "x")
		err := cmdInit(append([]string{"--dir", d, "--centre", "x"}, args...), &out)
		if !errors.Is(err, node.ErrBadConfig) {
			t.Errorf("%s: %v, want ErrBadConfig", name, err)
		}
	}
}
