package rostermodel

import (
	"math"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

func TestFormatInEitherUnit(t *testing.T) {
	h := []porcupine.Operation{
		{ClientId: 1, Input: Op{Key: "b"}, Output: "x", Call: 3e6, Return: 4e6, Metadata: "via c2"},
		{ClientId: 0, Input: Op{Key: "a", Write: true, Value: "x"}, Call: 1e6, Return: math.MaxInt64},
	}
	want := "client 0  [1.000ms, ?(ambiguous)]  put(a, \"x\")  <nil>\n" +
		"client 1  [3.000ms, 4.000ms]  get(b) -> \"x\"  via c2\n"
	if got := Format(h, time.Millisecond); got != want {
		t.Errorf("in ms:\n%s\nwant\n%s", got, want)
	}
	want = "client 0  [0.001s, ?(ambiguous)]  put(a, \"x\")  <nil>\n" +
		"client 1  [0.003s, 0.004s]  get(b) -> \"x\"  via c2\n"
	if got := Format(h, time.Second); got != want {
		t.Errorf("in s:\n%s\nwant\n%s", got, want)
	}
}

func TestModelIsARegisterPerKey(t *testing.T) {
	w := porcupine.Operation{Input: Op{Key: "a", Write: true, Value: "x"}, Call: 0, Return: 10}
	stale := porcupine.Operation{ClientId: 1, Input: Op{Key: "a"}, Output: "", Call: 20, Return: 30}
	other := porcupine.Operation{ClientId: 1, Input: Op{Key: "b"}, Output: "", Call: 20, Return: 30}
	if got := porcupine.CheckOperations(Model(), []porcupine.Operation{w, other}); !got {
		t.Error("a read of an untouched key after a write of another was refused")
	}
	if got := porcupine.CheckOperations(Model(), []porcupine.Operation{w, stale}); got {
		t.Error("a stale read after a completed write was accepted")
	}
}
