package invalidator_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sqlcache/sqlcache"

// TestDeps keeps imports flowing one way (STYLE.md section 1): the
// invalidator packages report changes and know nothing of the proxy, the
// cache policy or the command; they may reuse wire's decoders.
func TestDeps(t *testing.T) {
	pkgs := module + "/invalidator/..."
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkgs)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %s: %v\n%s", pkgs, err, ee.Stderr)
		}
		t.Fatalf("go list %s: %v", pkgs, err)
	}
	bad := []string{module + "/proxy", module + "/cachepolicy", module + "/cmd"}
	for dep := range strings.FieldsSeq(string(out)) {
		for _, b := range bad {
			if dep == b || strings.HasPrefix(dep, b+"/") {
				t.Errorf("%s depends on %s: invalidator must not import proxy, cachepolicy or cmd", pkgs, dep)
			}
		}
	}
}
