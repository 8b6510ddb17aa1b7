package wire_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sqlcache/sqlcache"

// TestDeps keeps imports flowing one way (STYLE.md section 1): wire
// depends on no other package of our module, and proxy not on cmd.
func TestDeps(t *testing.T) {
	tests := []struct {
		pkgs string // go list pattern
		bad  func(dep string) bool
		why  string
	}{
		{
			pkgs: module + "/wire/...",
			bad: func(dep string) bool {
				return strings.HasPrefix(dep, module+"/") && dep != module+"/wire" && !strings.HasPrefix(dep, module+"/wire/")
			},
			why: "wire must not depend on the rest of the module",
		},
		{
			pkgs: module + "/proxy/...",
			bad: func(dep string) bool {
				return dep == module+"/cmd" || strings.HasPrefix(dep, module+"/cmd/")
			},
			why: "proxy must not import cmd",
		},
	}
	for _, tt := range tests {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", tt.pkgs).Output()
		if err != nil {
			if ee, ok := err.(*exec.ExitError); ok {
				t.Fatalf("go list %s: %v\n%s", tt.pkgs, err, ee.Stderr)
			}
			t.Fatalf("go list %s: %v", tt.pkgs, err)
		}
		for dep := range strings.FieldsSeq(string(out)) {
			if tt.bad(dep) {
				t.Errorf("%s depends on %s: %s", tt.pkgs, dep, tt.why)
			}
		}
	}
}
