//go:build race

package api

// raceEnabled: the race detector slows CPU-bound code such as argon2 many
// times over, so timed bounds are checked only without it.
const raceEnabled = true
