package rostermodel

import (
	"math"

	"github.com/anishathalye/porcupine"
)

// Case is a hand-made history and the verdict a correct check gives it.
type Case struct {
	Name    string
	History []porcupine.Operation
	Want    porcupine.CheckResult
}

// Cases are the histories a broken roster would produce (Illegal) beside
// legal ones, ambiguous writes included (Ok). A checker built on Model runs
// them to prove it can fail: node's linearizability test and the fault
// suite's history check both do. Case 1 is a stale read on key hist-1 only.
func Cases() []Case {
	w := func(client int, key, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: Op{Key: key, Write: true, Value: v}, Call: call, Return: ret}
	}
	r := func(client int, key, v string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: Op{Key: key}, Output: v, Call: call, Return: ret}
	}
	// never is the return time of a write whose outcome is unknown.
	const never = math.MaxInt64
	return []Case{
		{"stale read after a completed write", []porcupine.Operation{
			w(0, "hist-0", "w1", 0, 10), r(1, "hist-0", "", 20, 30),
		}, porcupine.Illegal},
		{"stale read on one key of an atomic read", []porcupine.Operation{
			w(0, "hist-0", "w1", 0, 10), w(1, "hist-1", "w2", 0, 10),
			r(2, "hist-0", "w1", 20, 30), r(2, "hist-1", "", 20, 30), r(2, "hist-2", "", 20, 30),
		}, porcupine.Illegal},
		{"read of a refused write", []porcupine.Operation{
			r(1, "hist-0", "w1", 20, 30),
		}, porcupine.Illegal},
		{"read of a value never written", []porcupine.Operation{
			w(0, "hist-0", "w1", 0, 10), r(1, "hist-0", "w9", 20, 30),
		}, porcupine.Illegal},
		{"stale read on one key among healthy others", []porcupine.Operation{
			w(0, "hist-0", "w1", 0, 10), w(1, "hist-1", "w2", 0, 10), r(2, "hist-1", "w2", 20, 30), r(2, "hist-0", "", 20, 30),
		}, porcupine.Illegal},
		{"reads going back in time", []porcupine.Operation{
			w(0, "hist-0", "w1", 0, 10), w(0, "hist-0", "w2", 20, 30), r(1, "hist-0", "w2", 35, 40), r(2, "hist-0", "w1", 45, 50),
		}, porcupine.Illegal},
		{"concurrent write seen or not", []porcupine.Operation{
			w(0, "hist-0", "w1", 0, 100), r(1, "hist-0", "", 10, 20), r(2, "hist-0", "w1", 30, 40), r(1, "hist-0", "w1", 110, 120),
		}, porcupine.Ok},
		{"ambiguous write seen much later", []porcupine.Operation{
			w(0, "hist-0", "w1", 0, 10), w(1, "hist-0", "w2", 20, never), r(2, "hist-0", "w1", 30, 40), r(2, "hist-0", "w2", 500, 600),
		}, porcupine.Ok},
		{"ambiguous write never seen", []porcupine.Operation{
			w(0, "hist-0", "w1", 0, 10), w(1, "hist-0", "w2", 20, never), r(2, "hist-0", "w1", 30, 40), r(2, "hist-0", "w1", 50, 60),
		}, porcupine.Ok},
		{"ambiguous write seen, then the old value again", []porcupine.Operation{
			w(0, "hist-0", "w1", 0, 10), w(1, "hist-0", "w2", 20, never), r(2, "hist-0", "w2", 30, 40), r(2, "hist-0", "w1", 50, 60),
		}, porcupine.Illegal},
		{"ambiguous write seen before it was sent", []porcupine.Operation{
			w(0, "hist-0", "w1", 50, never), r(2, "hist-0", "w1", 10, 20),
		}, porcupine.Illegal},
		{"ambiguous writes seen and unseen, then a completed write is lost", []porcupine.Operation{
			w(0, "hist-0", "w1", 0, never), w(1, "hist-0", "w2", 5, never), w(2, "hist-0", "w3", 8, 12),
			r(0, "hist-0", "w3", 15, 20), r(1, "hist-0", "w1", 25, 30), w(2, "hist-0", "w4", 35, 40), r(1, "hist-0", "w1", 45, 50),
		}, porcupine.Illegal},
	}
}
