package overflow

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func sampleAvailability() Availability {
	return Availability{
		Centre:    "leeds-1",
		Version:   42,
		Accepting: true,
		Channels: map[string]ChannelState{
			"chat":  {Free: map[string]int{"en": 2, "cy": 1}, Busy: map[string]int{"en": 5}, QueueLength: 3, OldestWaitMillis: 12000},
			"phone": {Busy: map[string]int{"en": 4}},
		},
		UpdatedUnixMilli:  1_700_000_000_000,
		SupervisorsOnDuty: 2,
	}
}

func TestAvailabilityRoundTrip(t *testing.T) {
	in := sampleAvailability()
	b, err := EncodeAvailability(in)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	if b[0] != WireVersion || b[1] != kindState {
		t.Fatalf("header = %v, want [%d %d]", b[:2], WireVersion, kindState)
	}
	out, err := DecodeAvailability(b)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed value:\n in: %+v\nout: %+v", in, out)
	}
	t.Logf("sample state encodes to %d bytes", len(b))
}

func TestCloneIsDeep(t *testing.T) {
	a := sampleAvailability()
	c := a.Clone()
	c.Channels["chat"].Free["en"] = 99
	c.Channels["sms"] = ChannelState{}
	if a.Channels["chat"].Free["en"] != 2 || len(a.Channels) != 2 {
		t.Fatal("Clone shares maps with the original")
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	valid, err := EncodeAvailability(sampleAvailability())
	if err != nil {
		t.Fatal(err)
	}
	withBody := func(body string) []byte { return append([]byte{WireVersion, kindState}, body...) }
	huge := withBody(`{"c":"x","v":1,"pad":"` + strings.Repeat("a", MaxStateBytes) + `"}`)

	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nil", nil, ErrMalformed},
		{"one byte", []byte{WireVersion}, ErrMalformed},
		{"header only", []byte{WireVersion, kindState}, ErrMalformed},
		{"version 0", append([]byte{0}, valid[1:]...), ErrUnsupportedVersion},
		{"version 2", append([]byte{2}, valid[1:]...), ErrUnsupportedVersion},
		{"version 255", append([]byte{255}, valid[1:]...), ErrUnsupportedVersion},
		{"snapshot kind", append([]byte{WireVersion, kindSnapshot}, valid[2:]...), ErrMalformed},
		{"not json", withBody("hello"), ErrMalformed},
		{"truncated json", valid[:len(valid)-1], ErrMalformed},
		{"trailing garbage", append(bytes.Clone(valid), "{}"...), ErrMalformed},
		{"json array", withBody(`[1,2]`), ErrMalformed},
		{"json null", withBody(`null`), ErrInvalidCentre},
		{"wrong type", withBody(`{"c":"x","v":"1"}`), ErrMalformed},
		{"version overflow", withBody(`{"c":"x","v":18446744073709551616}`), ErrMalformed},
		{"negative version", withBody(`{"c":"x","v":-1}`), ErrMalformed},
		{"oversized", huge, ErrTooLarge},
		{"missing centre", withBody(`{"v":1}`), ErrInvalidCentre},
		{"centre with space", withBody(`{"c":"a b","v":1}`), ErrInvalidCentre},
		{"centre too long", withBody(`{"c":"` + strings.Repeat("a", MaxCentreIDLen+1) + `","v":1}`), ErrInvalidCentre},
		{"version zero", withBody(`{"c":"x","v":0}`), ErrInvalidAvailability},
		{"version above 2^53", withBody(`{"c":"x","v":9007199254740993}`), ErrInvalidAvailability},
		{"negative time", withBody(`{"c":"x","v":1,"u":-5}`), ErrInvalidAvailability},
		{"negative free", withBody(`{"c":"x","v":1,"ch":{"chat":{"f":{"en":-1}}}}`), ErrInvalidAvailability},
		{"huge busy", withBody(`{"c":"x","v":1,"ch":{"chat":{"b":{"en":2000000}}}}`), ErrInvalidAvailability},
		{"negative queue", withBody(`{"c":"x","v":1,"ch":{"chat":{"q":-3}}}`), ErrInvalidAvailability},
		{"negative wait", withBody(`{"c":"x","v":1,"ch":{"chat":{"w":-3}}}`), ErrInvalidAvailability},
		{"empty channel name", withBody(`{"c":"x","v":1,"ch":{"":{}}}`), ErrInvalidAvailability},
		{"bad language code", withBody(`{"c":"x","v":1,"ch":{"chat":{"f":{"e n":1}}}}`), ErrInvalidAvailability},
		{"negative supervisors", withBody(`{"c":"x","v":1,"s":-1}`), ErrInvalidAvailability},
		{"huge supervisors", withBody(`{"c":"x","v":1,"s":2000000}`), ErrInvalidAvailability},
		{"too many channels", withBody(manyChannels(MaxChannels + 1)), ErrInvalidAvailability},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := DecodeAvailability(tt.in)
			if err == nil {
				t.Fatalf("decoded %+v, want error", a)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %q does not wrap %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "decode availability") {
				t.Fatalf("error %q does not name the operation", err)
			}
		})
	}
}

func manyChannels(n int) string {
	var b strings.Builder
	b.WriteString(`{"c":"x","v":1,"ch":{`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"c%d":{}`, i)
	}
	b.WriteString(`}}`)
	return b.String()
}

func TestEncodeRejectsInvalidAndOversized(t *testing.T) {
	if _, err := EncodeAvailability(Availability{Centre: "x"}); !errors.Is(err, ErrInvalidAvailability) {
		t.Fatalf("version 0: got %v, want ErrInvalidAvailability", err)
	}
	big := Availability{Centre: "x", Version: 1, Channels: map[string]ChannelState{}}
	for c := range MaxChannels {
		free := map[string]int{}
		for l := range MaxLanguages {
			free[fmt.Sprintf("lang-%02d-%s", l, strings.Repeat("z", 20))] = 1
		}
		big.Channels[fmt.Sprintf("channel-%02d", c)] = ChannelState{Free: free}
	}
	if _, err := EncodeAvailability(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized: got %v, want ErrTooLarge", err)
	}
}

func TestSnapshotRoundTripAndRejects(t *testing.T) {
	a := sampleAvailability()
	b := sampleAvailability()
	b.Centre, b.Version = "york", 7
	var bodies [][]byte
	for _, x := range []Availability{a, b} {
		body, err := encodeBody(x)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	snap, omitted := encodeSnapshot(bodies)
	if omitted != 0 {
		t.Fatalf("omitted %d", omitted)
	}
	got, err := decodeSnapshot(snap)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, []Availability{a, b}) {
		t.Fatalf("snapshot round trip: %+v", got)
	}
	if empty, _ := encodeSnapshot(nil); len(empty) != headerLen {
		t.Fatalf("empty snapshot is %d bytes", len(empty))
	} else if got, err := decodeSnapshot(empty); err != nil || len(got) != 0 {
		t.Fatalf("empty snapshot: %v %v", got, err)
	}

	lengthTooBig := binary.AppendUvarint([]byte{WireVersion, kindSnapshot}, 1000)
	badVarint := append([]byte{WireVersion, kindSnapshot}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	badEntry := binary.AppendUvarint([]byte{WireVersion, kindSnapshot}, 2)
	badEntry = append(badEntry, "{}"...)
	tooMany := []byte{WireVersion, kindSnapshot}
	for range MaxCentres + 1 {
		tooMany = binary.AppendUvarint(tooMany, uint64(len(bodies[1])))
		tooMany = append(tooMany, bodies[1]...)
	}
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"wrong version":  {append([]byte{9}, snap[1:]...), ErrUnsupportedVersion},
		"state kind":     {append([]byte{WireVersion, kindState}, snap[2:]...), ErrMalformed},
		"length too big": {lengthTooBig, ErrMalformed},
		"bad varint":     {badVarint, ErrMalformed},
		"invalid entry":  {badEntry, ErrInvalidCentre},
		"too many":       {tooMany, ErrTooLarge},
		"oversized":      {make([]byte, MaxSnapshotBytes+1), ErrTooLarge},
	} {
		if _, err := decodeSnapshot(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

func TestSnapshotTruncatesAtLimit(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 100_000)
	bodies := make([][]byte, 20)
	for i := range bodies {
		bodies[i] = body
	}
	out, omitted := encodeSnapshot(bodies)
	if len(out) > MaxSnapshotBytes {
		t.Fatalf("snapshot is %d bytes, limit %d", len(out), MaxSnapshotBytes)
	}
	if omitted != 10 {
		t.Fatalf("omitted %d entries, want 10", omitted)
	}
}

func TestMetaRoundTripAndRejects(t *testing.T) {
	meta := encodeMeta("leeds-1")
	if len(meta) > 512 {
		t.Fatalf("meta is %d bytes", len(meta))
	}
	if got, err := decodeMeta(meta); err != nil || got != "leeds-1" {
		t.Fatalf("decodeMeta = %q, %v", got, err)
	}
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"empty":       {nil, ErrMalformed},
		"old version": {append([]byte{0}, meta[1:]...), ErrUnsupportedVersion},
		"state kind":  {append([]byte{WireVersion, kindState}, meta[2:]...), ErrMalformed},
		"no centre":   {meta[:2], ErrInvalidCentre},
		"too long":    {append(meta, bytes.Repeat([]byte("a"), 100)...), ErrTooLarge},
	} {
		if _, err := decodeMeta(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

func TestLeaveRoundTripAndRejects(t *testing.T) {
	msg := encodeLeave("leeds-1", 1_700_000_000_000_000)
	if c, v, err := decodeLeave(msg); err != nil || c != "leeds-1" || v != 1_700_000_000_000_000 {
		t.Fatalf("decodeLeave = %q %d %v", c, v, err)
	}
	for name, tc := range map[string]struct {
		in   []byte
		want error
	}{
		"empty":         {nil, ErrMalformed},
		"other version": {append([]byte{2}, msg[1:]...), ErrUnsupportedVersion},
		"meta kind":     {encodeMeta("leeds-1"), ErrMalformed},
		"no version":    {[]byte{WireVersion, kindLeave}, ErrMalformed},
		"version zero":  {encodeLeave("leeds-1", 0), ErrMalformed},
		"no centre":     {encodeLeave("", 5), ErrInvalidCentre},
		"too long":      {encodeLeave(strings.Repeat("a", 200), 5), ErrTooLarge},
	} {
		if _, _, err := decodeLeave(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", name, err, tc.want)
		}
	}
}

func FuzzDecodeAvailability(f *testing.F) {
	valid, err := EncodeAvailability(sampleAvailability())
	if err != nil {
		f.Fatal(err)
	}
	body, _ := encodeBody(sampleAvailability())
	snap, _ := encodeSnapshot([][]byte{body, body})
	f.Add(valid)
	f.Add(snap)
	f.Add([]byte{})
	f.Add([]byte{WireVersion, kindState})
	f.Add([]byte{2, kindState, '{', '}'})
	f.Add(append([]byte{WireVersion, kindState}, `{"c":"x","v":1,"ch":{"chat":{"f":{"en":-1}}}}`...))
	f.Add(append([]byte{WireVersion, kindState}, `{"c":"x","v":1,"s":3}`...))
	f.Add(encodeMeta("leeds-1"))
	f.Add(encodeLeave("leeds-1", 99))

	f.Fuzz(func(t *testing.T, in []byte) {
		a, err := DecodeAvailability(in)
		if err == nil {
			if verr := a.Validate(); verr != nil {
				t.Fatalf("decoded an invalid value: %v", verr)
			}
			again, err := EncodeAvailability(a)
			if err != nil {
				t.Fatalf("decoded value does not re-encode: %v", err)
			}
			b, err := DecodeAvailability(again)
			if err != nil || !reflect.DeepEqual(a, b) {
				t.Fatalf("re-encoded value does not round trip: %v\n%+v\n%+v", err, a, b)
			}
		}
		// The other two decoders face the same untrusted bytes.
		if states, err := decodeSnapshot(in); err == nil {
			for _, s := range states {
				if verr := s.Validate(); verr != nil {
					t.Fatalf("snapshot held an invalid value: %v", verr)
				}
			}
		}
		_, _ = decodeMeta(in)
		if centre, v, err := decodeLeave(in); err == nil {
			if validateCentre(centre) != nil || v == 0 || v > MaxVersion {
				t.Fatalf("decodeLeave accepted %q v%d", centre, v)
			}
		}
	})
}
