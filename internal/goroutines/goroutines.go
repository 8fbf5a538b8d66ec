// Package goroutines lets a lifecycle test see which goroutines are still
// running: a component's Stop must end every goroutine it started, and the
// only honest check is the runtime's own list.
package goroutines

import (
	"runtime"
	"strings"
	"time"
)

// Running returns the stacks of the goroutines running one of funcs (each a
// substring of a stack, e.g. "overflow.(*relay).readLoop").
func Running(funcs ...string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, f := range funcs {
			if strings.Contains(g, f) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// Await returns the stacks of the goroutines running one of funcs as soon
// as there is one, or nil after within. A goroutine that was started but
// has not run yet shows only its launcher on its stack, so a test that has
// just started something waits for it to show rather than looking once.
func Await(within time.Duration, funcs ...string) []string {
	deadline := time.Now().Add(within)
	for {
		if gs := Running(funcs...); len(gs) > 0 || time.Now().After(deadline) {
			return gs
		}
		time.Sleep(5 * time.Millisecond)
	}
}
