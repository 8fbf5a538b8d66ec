package consensus

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func setSIP(centre, addr string) Command {
	return Command{Version: CommandVersion, Op: OpSetCentreSIP, CentreSIP: &CentreSIP{Centre: centre, SIPAddr: addr}}
}

// Through real Raft: set_centre_sip sets and clears the address; bad
// addresses, an unknown centre and a sip_addr smuggled into admit or update
// are refused and change nothing; an update keeps the address.
func TestSetCentreSIP(t *testing.T) {
	c := startOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, addr := range []string{"sip.oslo.example:5060", "10.0.0.7:5070", "[2001:db8::1]:5061", "localhost:1", "h:65535"} {
		if err := c.Propose(ctx, setSIP("oslo", addr)); err != nil {
			t.Fatalf("set %q: %v", addr, err)
		}
		if got := c.Roster().Centres["oslo"].SIPAddr; got != addr {
			t.Fatalf("after set %q the roster says %q", addr, got)
		}
	}

	before := c.Roster()
	long := strings.Repeat("a", maxAddr) + ":5060"
	for _, addr := range []string{"sip.oslo.example", "sip.oslo.example:0", "sip.oslo.example:65536", ":5060",
		"sip.oslo.example:-1", "sip.oslo.example:05060", "sip.oslo.example:sip", "sip oslo:5060", "a\x00b:5060",
		"-bad.example:5060", "2001:db8::1:5060", long} {
		err := c.Propose(ctx, setSIP("oslo", addr))
		if !errors.Is(err, ErrBadCommand) {
			t.Errorf("set %q: got %v, want ErrBadCommand", clip(addr), err)
		}
	}
	if err := c.Propose(ctx, setSIP("bergen", "sip.bergen.example:5060")); !errors.Is(err, ErrUnknownCentre) {
		t.Errorf("set for an unknown centre: got %v, want ErrUnknownCentre", err)
	}
	if err := c.Propose(ctx, setSIP("Bad_Id", "sip.bergen.example:5060")); !errors.Is(err, ErrBadCommand) {
		t.Errorf("set for a bad centre id: got %v, want ErrBadCommand", err)
	}
	up := admit("oslo", before.Centres["oslo"].PeerID)
	up.Op = OpUpdateCentre
	up.Centre.SIPAddr = "sip.oslo.example:5060"
	if err := c.Propose(ctx, up); !errors.Is(err, ErrBadCommand) {
		t.Errorf("update carrying sip_addr: got %v, want ErrBadCommand", err)
	}
	if !reflect.DeepEqual(before, c.Roster()) {
		t.Fatal("a refused command changed the roster")
	}

	up.Centre.SIPAddr = ""
	up.Centre.Name = "Oslo renamed"
	if err := c.Propose(ctx, up); err != nil {
		t.Fatal(err)
	}
	if got := c.Roster().Centres["oslo"]; got.SIPAddr != "h:65535" || got.Name != "Oslo renamed" {
		t.Fatalf("after an update: %+v, want the name changed and the sip address kept", got)
	}
	if err := c.Propose(ctx, setSIP("oslo", "")); err != nil {
		t.Fatal(err)
	}
	if got := c.Roster().Centres["oslo"].SIPAddr; got != "" {
		t.Fatalf("after clearing the roster says %q", got)
	}
}

// The address survives a snapshot and a restore. Snapshots are decoded
// leniently (unlike commands): an older release restoring one drops the
// fields it does not know instead of failing, which is what this checks
// with a field no release knows.
func TestSnapshotKeepsTheSIPAddr(t *testing.T) {
	f, snap := applyAndSnapshot(t, admit("oslo", testPeer), setSIP("oslo", "sip.oslo.example:5060"))
	g := newFSM(func() {})
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.read(), g.read()) || g.read().Centres["oslo"].SIPAddr != "sip.oslo.example:5060" {
		t.Fatalf("restored roster differs: %+v", g.read().Centres["oslo"])
	}

	future := bytes.Replace(snap, []byte(`"sip_addr":`), []byte(`"from_a_later_release":1,"sip_addr":`), 1)
	if bytes.Equal(future, snap) {
		t.Fatal("the snapshot does not hold sip_addr")
	}
	h := newFSM(func() {})
	if err := h.Restore(io.NopCloser(bytes.NewReader(future))); err != nil {
		t.Fatalf("a snapshot with a field this release does not know: %v", err)
	}
	if !reflect.DeepEqual(f.read(), h.read()) {
		t.Fatal("a snapshot with an unknown field restored differently")
	}
}

// Through real Raft, with a second server in the group: set_centre_sip is
// refused while that server speaks level 2 (it knows rotation, not this),
// and goes through at level 3.
func TestSetCentreSIPNeedsLevel3(t *testing.T) {
	levels := &fakeLevels{levels: map[string]int{}}
	c := startOneWith(t, levels.ask)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addSilentServer(ctx, t, c)
	levels.set("bergen", 2)
	before := c.Roster()
	err := c.Propose(ctx, setSIP("oslo", "sip.oslo.example:5060"))
	if !errors.Is(err, ErrNotEverywhere) || !strings.Contains(err.Error(), "set_centre_sip needs roster level 3") ||
		!strings.Contains(err.Error(), "bergen speaks level 2") {
		t.Fatalf("got %v, want ErrNotEverywhere naming bergen at level 2", err)
	}
	if !reflect.DeepEqual(before, c.Roster()) {
		t.Fatal("a refused set_centre_sip changed the roster")
	}
	levels.set("bergen", 3)
	if err := c.Propose(ctx, setSIP("oslo", "sip.oslo.example:5060")); err != nil {
		t.Fatalf("with every centre at level 3: %v", err)
	}
	if got := c.Roster().Centres["oslo"].SIPAddr; got != "sip.oslo.example:5060" {
		t.Fatalf("roster says %q", got)
	}
}

// One centre is read as the whole roster has it, and what the caller does
// with it does not reach the roster.
func TestFSMReadsOneCentre(t *testing.T) {
	f, _ := applyAndSnapshot(t, admit("oslo", testPeer), setSIP("oslo", "sip.oslo.example:5060"))
	c, ok := f.centre("oslo")
	if !ok || !reflect.DeepEqual(c, f.read().Centres["oslo"]) {
		t.Fatalf("centre(oslo) = %+v %v, roster has %+v", c, ok, f.read().Centres["oslo"])
	}
	if len(c.Addrs) > 0 {
		c.Addrs[0] = "changed"
		if f.read().Centres["oslo"].Addrs[0] == "changed" {
			t.Fatal("centre shares its addresses with the roster")
		}
	}
	if _, ok := f.centre("bergen"); ok {
		t.Fatal("an unknown centre was found")
	}
}
