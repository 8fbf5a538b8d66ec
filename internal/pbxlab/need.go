package pbxlab

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Need skips the test when a tool is missing, so a laptop without the
// telephony packages still runs the rest; in CI (CI=true) a missing tool is a
// failure, because .ci/run installs them and a skip there would hide a
// broken rig.
func Need(t testing.TB) {
	t.Helper()
	var missing []string
	// The programs the rig runs (Debian packages kamailio, baresip-core,
	// espeak-ng, sox).
	for _, tool := range []string{"kamailio", "baresip", "espeak-ng", "sox"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "pbxlab: missing " + strings.Join(missing, ", ") +
		" (apt-get install -y kamailio baresip-core espeak-ng sox)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
