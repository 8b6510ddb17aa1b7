package cachepolicy_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sqlcache/sqlcache"

// TestDeps keeps cachepolicy pure (STYLE.md section 1): it depends on no
// other package of our module, and imports nothing that does I/O or runs
// goroutines.
func TestDeps(t *testing.T) {
	self := module + "/cachepolicy"
	for _, dep := range goList(t, "{{.ImportPath}}", "-deps", self) {
		if strings.HasPrefix(dep, module+"/") && dep != self {
			t.Errorf("cachepolicy depends on %s: it must not depend on the rest of the module", dep)
		}
	}
	bad := map[string]bool{"os": true, "os/exec": true, "net": true, "net/http": true, "io": true,
		"io/fs": true, "sync": true, "log": true, "log/slog": true, "syscall": true}
	for _, imp := range goList(t, "{{range .Imports}}{{.}}\n{{end}}", self) {
		if bad[imp] {
			t.Errorf("cachepolicy imports %s: it makes pure decisions, without I/O or goroutines", imp)
		}
	}
}

func goList(t *testing.T, format string, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-f", format}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v\n%s", args, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", args, err)
	}
	return strings.Fields(string(out))
}
