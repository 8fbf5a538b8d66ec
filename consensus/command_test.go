package consensus

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const testPeer = "12D3KooWBFEQoHV65QWuFCn913NpjaJNHd7xV1JmYafbVYw2N5Db"
const testPeer2 = "12D3KooWPr9dFZoZLSYxW4QWuxo3ga6uHkv3waqXsF1vhn6ZK5e3"

func admit(id, peer string) Command {
	return Command{Version: CommandVersion, Op: OpAdmitCentre, Centre: &Centre{
		ID: id, Name: "Centre " + id, PeerID: peer, Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}, GossipAddr: "127.0.0.1:7946",
	}}
}

func volunteer(id, centre string, langs ...string) Command {
	return Command{Version: CommandVersion, Op: OpPutVolunteer, Volunteer: &Volunteer{
		ID: id, Centre: centre, Alias: "Kari", Channels: []string{"chat"}, Languages: langs, Capacity: 2, Role: "volunteer",
	}}
}

// badCommands are refused, each with the sentinel a caller can act on,
// against a roster that holds centre "oslo".
func badCommands() []struct {
	name string
	cmd  Command
	want error
} {
	longName := admit("bergen", testPeer2)
	longName.Centre.Name = strings.Repeat("x", 101)
	wrongVersion := admit("bergen", testPeer2)
	wrongVersion.Version = 2
	noVersion := admit("bergen", testPeer2)
	noVersion.Version = 0
	manyAddrs := admit("bergen", testPeer2)
	manyAddrs.Centre.Addrs = make([]string, 9)
	for i := range manyAddrs.Centre.Addrs {
		manyAddrs.Centre.Addrs[i] = "/ip4/127.0.0.1/tcp/1"
	}
	control := volunteer("v1", "oslo", "nb")
	control.Volunteer.Alias = "Kari\n"
	overCap := volunteer("v1", "oslo", "nb")
	overCap.Volunteer.Capacity = 99
	badPolicy := DefaultPolicy()
	badPolicy.Languages = []string{"xx"}
	extra := admit("bergen", testPeer2)
	extra.ID = "oslo"
	keyOnAdmit := admit("bergen", testPeer2)
	keyOnAdmit.GossipKey = &GossipKey{Generation: 1, Key: make([]byte, GossipKeyBytes)}
	return []struct {
		name string
		cmd  Command
		want error
	}{
		{"unknown centre for volunteer", volunteer("v1", "narnia", "nb"), ErrUnknownCentre},
		{"remove unknown centre", Command{Version: 1, Op: OpRemoveCentre, ID: "narnia"}, ErrUnknownCentre},
		{"update unknown centre", Command{Version: 1, Op: OpUpdateCentre, Centre: admit("narnia", testPeer2).Centre}, ErrUnknownCentre},
		{"duplicate centre id", admit("oslo", testPeer2), ErrDuplicate},
		{"duplicate peer id", admit("bergen", testPeer), ErrDuplicate},
		{"unknown language code", volunteer("v1", "oslo", "nb", "xx"), ErrBadCommand},
		{"unknown language in policy", Command{Version: 1, Op: OpSetPolicy, Policy: &badPolicy}, ErrBadCommand},
		{"oversized name", longName, ErrBadCommand},
		{"too many addresses", manyAddrs, ErrBadCommand},
		{"control character in alias", control, ErrBadCommand},
		{"capacity over limit", overCap, ErrBadCommand},
		{"wrong version", wrongVersion, ErrUnsupportedVersion},
		{"missing version", noVersion, ErrUnsupportedVersion},
		{"unknown op", Command{Version: 1, Op: "drop_tables"}, ErrBadCommand},
		{"fields of another op", extra, ErrBadCommand},
		{"remove volunteer unknown", Command{Version: 1, Op: OpRemoveVolunteer, ID: "nobody"}, ErrUnknownVolunteer},
		{"bad centre id", admit("Oslo!", testPeer2), ErrBadCommand},
		{"bad peer id", admit("bergen", "not-a-peer"), ErrBadCommand},
		{"gossip key generation skipped", rotate(2, GossipKeyBytes), ErrStaleGeneration},
		{"gossip key generation zero", rotate(0, GossipKeyBytes), ErrBadCommand},
		{"short gossip key", rotate(1, 16), ErrBadCommand},
		{"long gossip key", rotate(1, 64), ErrBadCommand},
		{"rotation without a key", Command{Version: 1, Op: OpRotateGossipKey}, ErrBadCommand},
		{"gossip key on another op", keyOnAdmit, ErrBadCommand},
	}
}

func TestApplyRefusesBadCommandsAndChangesNothing(t *testing.T) {
	r := NewRoster()
	if err := apply(&r, admit("oslo", testPeer)); err != nil {
		t.Fatal(err)
	}
	if err := apply(&r, volunteer("v0", "oslo", "nb")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range badCommands() {
		t.Run(tc.name, func(t *testing.T) {
			before := r.Clone()
			err := apply(&r, tc.cmd)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err.Error() == tc.want.Error() {
				t.Fatalf("error %q says nothing about what was wrong", err)
			}
			if !reflect.DeepEqual(before, r) {
				t.Fatalf("refused command changed the roster")
			}
		})
	}
}

func TestRemoveCentreTakesItsVolunteers(t *testing.T) {
	r := NewRoster()
	for _, c := range []Command{admit("oslo", testPeer), admit("bergen", testPeer2), volunteer("v1", "oslo", "nb"), volunteer("v2", "bergen", "en")} {
		if err := apply(&r, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := apply(&r, Command{Version: 1, Op: OpRemoveCentre, ID: "oslo"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Volunteers["v1"]; ok {
		t.Fatal("volunteer of a removed centre is still in the roster")
	}
	if _, ok := r.Volunteers["v2"]; !ok {
		t.Fatal("another centre's volunteer was removed")
	}
}

func TestDecodeCommandRefusesMalformedInput(t *testing.T) {
	good, err := EncodeCommand(admit("oslo", testPeer))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeCommand(good); err != nil {
		t.Fatalf("good command refused: %v", err)
	}
	cases := map[string]string{
		"empty":                  ``,
		"not json":               `hello`,
		"unknown field":          `{"v":1,"op":"remove_centre","id":"oslo","evil":true}`,
		"trailing data":          `{"v":1,"op":"remove_centre","id":"oslo"} {}`,
		"wrong type":             `{"v":"1","op":"remove_centre","id":"oslo"}`,
		"wrong version":          `{"v":7,"op":"remove_centre","id":"oslo"}`,
		"null centre":            `{"v":1,"op":"admit_centre","centre":null}`,
		"oversized":              `{"v":1,"op":"remove_centre","id":"` + strings.Repeat("a", MaxCommandBytes) + `"}`,
		"deeply nested":          strings.Repeat("[", 10000),
		"invalid utf8 id":        "{\"v\":1,\"op\":\"remove_centre\",\"id\":\"\xff\"}",
		"gossip key not base64":  `{"v":1,"op":"rotate_gossip_key","gossip_key":{"generation":1,"key":"%%%"}}`,
		"gossip key extra field": `{"v":1,"op":"rotate_gossip_key","gossip_key":{"generation":1,"key":"` + strings.Repeat("A", 43) + `=","old":1}}`,
		"negative generation":    `{"v":1,"op":"rotate_gossip_key","gossip_key":{"generation":-1,"key":"` + strings.Repeat("A", 43) + `="}}`,
	}
	for name, in := range cases {
		if _, err := DecodeCommand([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, ErrBadCommand) && !errors.Is(err, ErrUnsupportedVersion) {
			t.Errorf("%s: error %v is neither ErrBadCommand nor ErrUnsupportedVersion", name, err)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []Command{admit("oslo", testPeer), volunteer("v1", "oslo", "nb", "en"), {Version: 1, Op: OpRemoveCentre, ID: "oslo"}, rotate(1, GossipKeyBytes),
		setSIP("oslo", "sip.oslo.example:5060"), setSIP("oslo", ""), setSIP("oslo", "[2001:db8::1]:5070")} {
		b, _ := EncodeCommand(c)
		f.Add(b)
	}
	p := DefaultPolicy()
	b, _ := EncodeCommand(Command{Version: 1, Op: OpSetPolicy, Policy: &p})
	f.Add(b)
	named := namedPolicy()
	b, _ = EncodeCommand(Command{Version: 1, Op: OpSetPolicy, Policy: &named, ExpectedPolicyVersion: p.Version()})
	f.Add(b)
	f.Add([]byte(`{"v":1,"op":"x"}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := DecodeCommand(in)
		if err != nil {
			return
		}
		// Whatever decodes must be valid, re-encode, and apply without
		// panicking to a roster that holds one centre.
		if err := c.Validate(); err != nil {
			t.Fatalf("decoded command fails validation: %v", err)
		}
		if _, err := EncodeCommand(c); err != nil {
			t.Fatalf("decoded command does not re-encode: %v", err)
		}
		r := NewRoster()
		_ = apply(&r, admit("oslo", testPeer))
		before := r.Clone()
		if err := apply(&r, c); err != nil && !reflect.DeepEqual(before, r) {
			t.Fatalf("refused command changed the roster")
		}
	})
}
