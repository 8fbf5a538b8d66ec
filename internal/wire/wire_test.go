package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

type msg struct {
	A int    `json:"a"`
	S string `json:"s,omitempty"`
}

// frame builds a raw frame: a 4-byte big-endian length, then body.
func frame(announced uint32, body string) []byte {
	b := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(b, announced)
	return append(b, body...)
}

func whole(body string) []byte { return frame(uint32(len(body)), body) }

// failAfter serves data and then fails every read, so a test can tell whether
// Read went on reading past what it should have.
type failAfter struct {
	data []byte
	err  error
}

func (r *failAfter) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadRefusesBadFrames(t *testing.T) {
	const limit = 64
	cases := []struct {
		name  string
		in    []byte
		is    error  // errors.Is target, if any
		say   string // substring the message must carry
		noAlc bool   // the announced body must not be allocated
	}{
		{name: "no input at all", in: nil, is: io.EOF, say: "header"},
		{name: "zero-length frame", in: frame(0, ""), is: ErrEmptyFrame, say: "empty frame"},
		{name: "zero-length frame followed by data", in: frame(0, `{"a":1}`), is: ErrEmptyFrame},
		{name: "announced length one over the limit", in: frame(limit+1, strings.Repeat(" ", limit+1)), is: ErrFrameTooLarge, say: "65 bytes announced, limit 64"},
		{name: "announced length 2 GiB without the body", in: frame(1<<31, ""), is: ErrFrameTooLarge, say: "2147483648 bytes announced", noAlc: true},
		{name: "announced length 4 GiB-1 without the body", in: frame(1<<32-1, "x"), is: ErrFrameTooLarge, noAlc: true},
		{name: "truncated header of 1 byte", in: []byte{0}, is: io.ErrUnexpectedEOF, say: "header"},
		{name: "truncated header of 3 bytes", in: []byte{0, 0, 0}, is: io.ErrUnexpectedEOF, say: "header"},
		{name: "header without body", in: frame(7, ""), is: io.EOF, say: "body"},
		{name: "truncated body", in: frame(7, `{"a":`), is: io.ErrUnexpectedEOF, say: "body"},
		{name: "body not JSON", in: whole(`hello`), say: "decode frame"},
		{name: "body truncated JSON", in: whole(`{"a":1`), say: "decode frame"},
		{name: "unknown field", in: whole(`{"a":1,"zzz":2}`), say: `unknown field "zzz"`},
		{name: "wrong type", in: whole(`{"a":"one"}`), say: "decode frame"},
		{name: "trailing second document", in: whole(`{"a":1} {"a":2}`), say: "trailing data"},
		{name: "trailing garbage", in: whole(`{"a":1} x`), say: "trailing data"},
		{name: "trailing comma", in: whole(`{"a":1},`), say: "trailing data"},
		{name: "trailing closing brace", in: whole(`{"a":1}}`), say: "trailing data"},
		{name: "trailing closing bracket and garbage", in: whole(`{"a":1}]]]garbage`), say: "trailing data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &failAfter{data: tc.in, err: io.EOF}
			if tc.noAlc {
				// Past the header the reader fails loudly, so reading the
				// body would show up as a different error.
				r.err = errors.New("read past the header")
			}
			var v msg
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := Read(r, &v, limit)
			runtime.ReadMemStats(&after)
			if err == nil {
				t.Fatalf("Read(%q) = nil error, decoded %+v; want a refusal", tc.in, v)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Read(%q) = %v; want errors.Is %v", tc.in, err, tc.is)
			}
			if tc.say != "" && !strings.Contains(err.Error(), tc.say) {
				t.Errorf("Read(%q) = %q; want the message to say %q", tc.in, err, tc.say)
			}
			if tc.is != nil && v != (msg{}) {
				t.Errorf("refused frame still filled the value: %+v", v)
			}
			if tc.noAlc {
				if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
					t.Errorf("Read allocated %d bytes for a refused frame announcing %d", grew, binary.BigEndian.Uint32(tc.in))
				}
			}
		})
	}
}

func TestReadAcceptsGoodFrames(t *testing.T) {
	t.Run("frame exactly at the limit", func(t *testing.T) {
		body := `{"a":7,"s":"` + strings.Repeat("x", 20) + `"}`
		var v msg
		if err := Read(bytes.NewReader(whole(body)), &v, len(body)); err != nil {
			t.Fatalf("Read at the limit: %v", err)
		}
		if v.A != 7 || v.S != strings.Repeat("x", 20) {
			t.Fatalf("decoded %+v", v)
		}
	})
	t.Run("trailing whitespace inside the frame", func(t *testing.T) {
		var v msg
		if err := Read(bytes.NewReader(whole("{\"a\":3}\n \t")), &v, 64); err != nil {
			t.Fatalf("Read: %v", err)
		}
		if v.A != 3 {
			t.Fatalf("decoded %+v", v)
		}
	})
	t.Run("reads exactly one frame of a stream", func(t *testing.T) {
		var buf bytes.Buffer
		for i := 1; i <= 3; i++ {
			if err := Write(&buf, msg{A: i}, 64); err != nil {
				t.Fatal(err)
			}
		}
		for i := 1; i <= 3; i++ {
			var v msg
			if err := Read(&buf, &v, 64); err != nil {
				t.Fatalf("frame %d: %v", i, err)
			}
			if v.A != i {
				t.Fatalf("frame %d decoded as %+v", i, v)
			}
		}
		var v msg
		if err := Read(&buf, &v, 64); !errors.Is(err, io.EOF) {
			t.Fatalf("after the last frame: %v, want io.EOF", err)
		}
	})
}

func TestWriteRefusesFramesOverTheLimit(t *testing.T) {
	var buf bytes.Buffer
	err := Write(&buf, msg{A: 1, S: strings.Repeat("x", 100)}, 64)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("Write over the limit = %v, want ErrFrameTooLarge", err)
	}
	if buf.Len() != 0 {
		t.Fatalf("refused Write still wrote %d bytes", buf.Len())
	}
	if err := Write(&buf, func() {}, 64); err == nil || buf.Len() != 0 {
		t.Fatalf("Write of an unencodable value = %v, wrote %d bytes", err, buf.Len())
	}
}

type fuzzMsg struct {
	S string `json:"s"`
	B []byte `json:"b"`
	N int64  `json:"n"`
}

func FuzzRead(f *testing.F) {
	f.Add([]byte{}, "", int64(0))
	f.Add(frame(0, ""), "x", int64(1))
	f.Add(whole(`{"s":"a","b":"AQI=","n":3}`), "héllo", int64(-1))
	f.Add(whole(`{"s":"a"}}`), "\xff\xfe", int64(1<<62))
	f.Add(whole(`{"zzz":1}`), "\x00", int64(42))
	f.Add(frame(1<<31, `{}`), strings.Repeat("y", 100), int64(7))
	f.Add(frame(5, `{}`), "", int64(0))
	f.Fuzz(func(t *testing.T, raw []byte, s string, n int64) {
		// Arbitrary bytes never panic and never decode past the limit.
		var v fuzzMsg
		err := Read(bytes.NewReader(raw), &v, 64)
		if err == nil && (len(raw) < 4 || binary.BigEndian.Uint32(raw) > 64) {
			t.Fatalf("Read accepted %q despite a bad header", raw)
		}

		// What Write produces, Read gives back.
		in := fuzzMsg{S: s, B: []byte(s), N: n}
		var buf bytes.Buffer
		if err := Write(&buf, in, 1<<20); err != nil {
			t.Fatalf("Write(%+v): %v", in, err)
		}
		framed := buf.Len()
		var out fuzzMsg
		if err := Read(&buf, &out, 1<<20); err != nil {
			t.Fatalf("Read of Write's frame (%d bytes): %v", framed, err)
		}
		if buf.Len() != 0 {
			t.Fatalf("Read left %d bytes of its own frame", buf.Len())
		}
		if out.N != in.N || !bytes.Equal(out.B, in.B) {
			t.Fatalf("round trip: got %+v, want %+v", out, in)
		}
		// JSON coerces invalid UTF-8 to U+FFFD, so only valid text must
		// come back byte for byte.
		if utf8.ValidString(s) && out.S != s {
			t.Fatalf("round trip of %q gave %q", s, out.S)
		}
	})
}
