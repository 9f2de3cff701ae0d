package supervisor

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDoesNotDependOnLabels guards the typed contract (issue 10, point 9):
// the snapshotter parses a layer's labels once (package labels) and hands
// the supervisor a layer.Layer. A supervisor that depends on labels again,
// directly or through another package, fails here.
func TestDoesNotDependOnLabels(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "github.com/lazyfs/lazyfs/labels" {
			t.Fatalf("package supervisor depends on %s: pass it a layer.Layer instead of labels", dep)
		}
	}
}
