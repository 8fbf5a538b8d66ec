package pbxlab

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

// ctrl_tcp frames: two netstrings in a row read one by one; a bad length
// or a missing comma is refused.
func TestReadNetstring(t *testing.T) {
	r := bufio.NewReader(strings.NewReader(`14:{"event":true},2:{},`))
	for _, want := range []string{`{"event":true}`, `{}`} {
		got, err := readNetstring(r)
		if err != nil || string(got) != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	for _, bad := range []string{"x:{},", "2:{}.", "-1:,"} {
		if _, err := readNetstring(bufio.NewReader(strings.NewReader(bad))); !errors.Is(err, errNetstring) {
			t.Errorf("%q: %v, want errNetstring", bad, err)
		}
	}
}
