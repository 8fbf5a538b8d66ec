package pbxlab_test

import (
	"os"
	"strings"
	"testing"

	"github.com/helpmesh/helpmesh/internal/pbxlab"
)

// docs/pbx.md carries the Kamailio configuration the tests run, whole: a
// change to one without the other fails here.
func TestDocsCarryTheTestedKamailioConfig(t *testing.T) {
	cfg, err := os.ReadFile(pbxlab.ConfigPath(t))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../../docs/pbx.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```\n"+string(cfg)+"```\n") {
		t.Fatal("docs/pbx.md does not carry deploy/pbx/kamailio.cfg verbatim in a code block")
	}
}
