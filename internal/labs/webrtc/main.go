// Command webrtc is the issue-13 groundwork lab (docs/dev/webrtc-lab.md):
// its trials are tests, run by hand with
//
//	HELPMESH_WEBRTC_LAB=1 go test -v -count=1 ./internal/labs/webrtc/
//
// They drive headless Chromium, pion/webrtc, baresip and sipgo on loopback
// and print correlation figures. Without HELPMESH_WEBRTC_LAB they skip, so
// CI's go test ./... does not pay for them; the product tests of issue 13
// are the ones that must run in CI.
package main

import "fmt"

func main() {
	fmt.Println("run the trials: HELPMESH_WEBRTC_LAB=1 go test -v -count=1 ./internal/labs/webrtc/")
}
