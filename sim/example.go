package sim

import (
	"bytes"
	_ "embed"
)

//go:embed example.json
var example []byte

// Example is the shipped example scenario (three centres, one week), a
// starting point to copy: helpmesh simulate --example prints it.
func Example() []byte { return bytes.Clone(example) }

// ExampleScenario is Example decoded.
func ExampleScenario() *Scenario {
	sc, err := Decode(bytes.NewReader(example))
	if err != nil {
		panic("the shipped example scenario is invalid: " + err.Error())
	}
	return sc
}
