// Package pbxlab is a test rig for calls between centres (issue 12): it runs
// real Kamailio PBXs (deploy/pbx/kamailio.cfg), real baresip phones that
// speak espeak-ng speech and record what they hear, and compares recordings
// by envelope correlation, so a test can prove which voice reached whom.
//
// It is a normal package, not a _test file, so that the tests of several
// packages (this one's stand-in topology, the node's real two-centre test)
// share it; nothing outside tests should import it. Every helper takes the
// test's testing.TB, stops what it started in t.Cleanup (by PID, with
// SIGTERM) and puts the tool's own output in the failure message.
//
// Recipes, verified commands and gotchas: docs/dev/telephony-lab.md; how to
// use the rig: README.md next to this file.
package pbxlab
