package api

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/helpmesh/helpmesh/consensus"
	"github.com/helpmesh/helpmesh/node"
)

// A centre's published SIP address is in GET /v1/roster and GET
// /v1/federation as sip_addr; an admission that carries one is refused
// (only set_centre_sip sets it), and a centre without one has no field.
func TestSIPAddrInRosterAndFederation(t *testing.T) {
	const addr = "sip.oslo.example:5060"
	c := startCentreWith(t, func(cfg *node.Config) { cfg.SIPAddr = addr })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := c.node.Consensus().Watch(ctx, consensus.Wake{Every: 100 * time.Millisecond}, func(r consensus.Roster) bool {
		return r.Centres["oslo"].SIPAddr == addr
	})
	if err != nil {
		t.Fatalf("the centre did not publish its SIP address: %v", err)
	}

	if got := c.roster().Centres["oslo"].SIPAddr; got != addr {
		t.Fatalf("GET /v1/roster: oslo's sip_addr = %q, want %q", got, addr)
	}
	r := c.admin(http.MethodGet, "/v1/federation", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/federation = %d %s", r.status, r.body)
	}
	var v node.FederationView
	decodeStrict(t, r.body, &v)
	if len(v.Centres) != 1 || v.Centres[0].SIPAddr != addr {
		t.Fatalf("GET /v1/federation: %+v, want oslo with sip_addr %q", v.Centres, addr)
	}
	if !strings.Contains(strings.ReplaceAll(string(r.body), " ", ""), `"sip_addr":"`+addr+`"`) {
		t.Fatalf("GET /v1/federation does not say sip_addr: %s", r.body)
	}

	bergen := validCentre(t, "bergen")
	bergen.SIPAddr = "sip.bergen.example:5060"
	r = c.admin(http.MethodPost, "/v1/centres", mustJSON(t, bergen))
	if msg := errorBody(t, "admission with sip_addr", r, http.StatusBadRequest, "bad_request"); !strings.Contains(msg, "set_centre_sip") {
		t.Errorf("message %q does not say how the address is set", msg)
	}
	bergen.SIPAddr = ""
	if r := c.admin(http.MethodPost, "/v1/centres", mustJSON(t, bergen)); r.status != http.StatusCreated {
		t.Fatalf("admission = %d %s", r.status, r.body)
	}
	if strings.Contains(string(c.admin(http.MethodGet, "/v1/roster", nil).body), `"sip.bergen`) {
		t.Fatal("bergen has a SIP address")
	}
	r = c.admin(http.MethodGet, "/v1/roster", nil)
	if n := strings.Count(string(r.body), `"sip_addr"`); n != 1 {
		t.Fatalf("GET /v1/roster has %d sip_addr fields, want oslo's alone: %s", n, r.body)
	}
}
