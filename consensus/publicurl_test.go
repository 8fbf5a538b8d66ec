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

func setURL(centre, u string) Command {
	return Command{Version: CommandVersion, Op: OpSetCentrePublicURL, CentreURL: &CentreURL{Centre: centre, PublicURL: u}}
}

// Through real Raft: set_centre_public_url sets and clears the URL; bad
// URLs (a path, a query, plain http to a real host, a default port, upper
// case), an unknown centre and a public_url smuggled into an update are
// refused and change nothing; an update keeps the URL.
func TestSetCentrePublicURL(t *testing.T) {
	c := startOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, u := range []string{"https://chat.oslo.example", "https://chat.oslo.example:8443", "https://chat.oslo.example/",
		"http://127.0.0.1:8080", "http://localhost:9", "http://[::1]:8080", "https://10.0.0.7"} {
		if err := c.Propose(ctx, setURL("oslo", u)); err != nil {
			t.Fatalf("set %q: %v", u, err)
		}
		if got := c.Roster().Centres["oslo"].PublicURL; got != u {
			t.Fatalf("after set %q the roster says %q", u, got)
		}
	}
	if got := PublicOrigin("https://chat.oslo.example/"); got != "https://chat.oslo.example" {
		t.Errorf("PublicOrigin = %q", got)
	}

	before := c.Roster()
	long := "https://" + strings.Repeat("a", maxPublicURL) + ".example"
	for _, u := range []string{"chat.oslo.example", "ftp://chat.oslo.example", "http://chat.oslo.example",
		"http://10.0.0.7:8080", "https://chat.oslo.example/chat", "https://chat.oslo.example?x=1",
		"https://chat.oslo.example#x", "https://u:p@chat.oslo.example", "https://chat.oslo.example:0",
		"https://chat.oslo.example:443", "http://127.0.0.1:80", "https://chat.oslo.example:", "https://Chat.Oslo.example",
		"https://", "https://-bad.example", "https://chat oslo.example", "javascript:alert(1)", "https://a\x00b.example",
		"https://chat.oslo.example:65536", "//chat.oslo.example", long} {
		err := c.Propose(ctx, setURL("oslo", u))
		if !errors.Is(err, ErrBadCommand) {
			t.Errorf("set %q: got %v, want ErrBadCommand", clip(u), err)
		}
		if err := CheckPublicURL(u); !errors.Is(err, ErrBadCommand) {
			t.Errorf("CheckPublicURL(%q): got %v, want ErrBadCommand", clip(u), err)
		}
	}
	if err := c.Propose(ctx, setURL("bergen", "https://chat.bergen.example")); !errors.Is(err, ErrUnknownCentre) {
		t.Errorf("set for an unknown centre: got %v, want ErrUnknownCentre", err)
	}
	up := admit("oslo", before.Centres["oslo"].PeerID)
	up.Op = OpUpdateCentre
	up.Centre.PublicURL = "https://chat.oslo.example"
	if err := c.Propose(ctx, up); !errors.Is(err, ErrBadCommand) {
		t.Errorf("update carrying public_url: got %v, want ErrBadCommand", err)
	}
	if !reflect.DeepEqual(before, c.Roster()) {
		t.Fatal("a refused command changed the roster")
	}

	up.Centre.PublicURL = ""
	up.Centre.Name = "Oslo renamed"
	if err := c.Propose(ctx, up); err != nil {
		t.Fatal(err)
	}
	if got := c.Roster().Centres["oslo"]; got.PublicURL != "https://10.0.0.7" || got.Name != "Oslo renamed" {
		t.Fatalf("after an update: %+v, want the name changed and the public url kept", got)
	}
	if err := c.Propose(ctx, setURL("oslo", "")); err != nil {
		t.Fatal(err)
	}
	if got := c.Roster().Centres["oslo"].PublicURL; got != "" {
		t.Fatalf("after clearing the roster says %q", got)
	}
}

// The URL survives a snapshot and a restore.
func TestSnapshotKeepsThePublicURL(t *testing.T) {
	f, snap := applyAndSnapshot(t, admit("oslo", testPeer), setURL("oslo", "https://chat.oslo.example"))
	g := newFSM(func() {})
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.read(), g.read()) || g.read().Centres["oslo"].PublicURL != "https://chat.oslo.example" {
		t.Fatalf("restored roster differs: %+v", g.read().Centres["oslo"])
	}
}

// Through real Raft, with a second server in the group: the op is refused
// while that server speaks level 4, and goes through at level 5.
func TestSetCentrePublicURLNeedsLevel5(t *testing.T) {
	levels := &fakeLevels{levels: map[string]int{}}
	c := startOneWith(t, levels.ask)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addSilentServer(ctx, t, c)
	levels.set("bergen", 4)
	before := c.Roster()
	err := c.Propose(ctx, setURL("oslo", "https://chat.oslo.example"))
	if !errors.Is(err, ErrNotEverywhere) || !strings.Contains(err.Error(), "set_centre_public_url needs roster level 5") ||
		!strings.Contains(err.Error(), "bergen speaks level 4") {
		t.Fatalf("got %v, want ErrNotEverywhere naming bergen at level 4", err)
	}
	if !reflect.DeepEqual(before, c.Roster()) {
		t.Fatal("a refused set_centre_public_url changed the roster")
	}
	levels.set("bergen", 5)
	if err := c.Propose(ctx, setURL("oslo", "https://chat.oslo.example")); err != nil {
		t.Fatalf("with every centre at level 5: %v", err)
	}
	if got := c.Roster().Centres["oslo"].PublicURL; got != "https://chat.oslo.example" {
		t.Fatalf("roster says %q", got)
	}
}

// CheckPublicURL never panics and, when it accepts, the URL's origin is
// what PublicOrigin gives.
func FuzzCheckPublicURL(f *testing.F) {
	for _, s := range []string{"https://chat.oslo.example", "http://127.0.0.1:8080", "https://x:443", "https://[::1]:1/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckPublicURL(s) != nil {
			return
		}
		o := PublicOrigin(s)
		if strings.ContainsAny(o, " ?#;'\"") || !strings.HasPrefix(o, "http") || len(o) > maxPublicURL {
			t.Fatalf("accepted %q with origin %q", s, o)
		}
	})
}
