// Package rostermodel is the porcupine model of the roster as its clients
// see it: one register per volunteer, whose value is the volunteer's alias
// ("" while the volunteer is absent). node's in-process linearizability test
// and the fault suite's roster history both check their histories against
// it, so that the two prove the same property. It must not import node:
// node's own tests use it.
package rostermodel

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Op is the input of one history operation on one key (a volunteer id). A
// write sets the volunteer's alias to Value; a read's output is the alias it
// observed.
type Op struct {
	Key   string
	Write bool
	Value string
}

// Model returns the model: a register per key, partitioned by key.
func Model() porcupine.Model {
	return porcupine.Model{
		Partition: partition,
		Init:      func() any { return "" },
		Step: func(state, input, output any) (bool, any) {
			in := input.(Op)
			if in.Write {
				return true, in.Value
			}
			return output.(string) == state.(string), state
		},
		Equal:             func(a, b any) bool { return a.(string) == b.(string) },
		DescribeOperation: describe,
		DescribeState:     func(state any) string { return fmt.Sprintf("%q", state) },
	}
}

func partition(history []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	for _, op := range history {
		k := op.Input.(Op).Key
		byKey[k] = append(byKey[k], op)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

func describe(input, output any) string {
	in := input.(Op)
	if in.Write {
		return fmt.Sprintf("put(%s, %q)", in.Key, in.Value)
	}
	return fmt.Sprintf("get(%s) -> %q", in.Key, output)
}

// Format lists a history by key, then by call time, one operation a line,
// with times in unit (time.Millisecond prints "12.345ms", time.Second
// "12.345s"). An ambiguous operation (Return math.MaxInt64) has no return.
func Format(history []porcupine.Operation, unit time.Duration) string {
	ops := append([]porcupine.Operation(nil), history...)
	sort.SliceStable(ops, func(i, j int) bool {
		ki, kj := ops[i].Input.(Op).Key, ops[j].Input.(Op).Key
		if ki != kj {
			return ki < kj
		}
		return ops[i].Call < ops[j].Call
	})
	suffix := strings.TrimPrefix(unit.String(), "1")
	at := func(ns int64) string { return fmt.Sprintf("%.3f%s", float64(ns)/float64(unit), suffix) }
	var b strings.Builder
	for _, op := range ops {
		ret := at(op.Return)
		if op.Return == math.MaxInt64 {
			ret = "?(ambiguous)"
		}
		fmt.Fprintf(&b, "client %d  [%s, %s]  %s  %v\n", op.ClientId, at(op.Call), ret,
			describe(op.Input, op.Output), op.Metadata)
	}
	return b.String()
}

// WriteArtifacts writes what a failed check leaves for a person to read into
// dir, named after name: porcupine's visualization (name.html) and history
// (name.history.txt, see Format). It returns the two paths; the first says
// why instead if the visualization could not be written.
func WriteArtifacts(dir, name string, info porcupine.LinearizationInfo, history []porcupine.Operation, unit time.Duration) (html, dump string) {
	base := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(name))
	html = base + ".html"
	if err := porcupine.VisualizePath(Model(), info, html); err != nil {
		html = "(visualization failed: " + err.Error() + ")"
	}
	dump = base + ".history.txt"
	_ = os.WriteFile(dump, []byte(Format(history, unit)), 0o644)
	return html, dump
}
