//go:build race

package sim

// raceDetector: the long validation runs are too slow under -race; .ci/run
// runs them without it (see skipUnderRace).
const raceDetector = true
