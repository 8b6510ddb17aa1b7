package integration

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestFailedTests: the tests runSuite runs again are the top-level tests
// and examples that failed, by package; a failure that names none makes
// it run the whole suite again.
func TestFailedTests(t *testing.T) {
	for _, tc := range []struct {
		name, out string
		want      map[string][]string
	}{
		{"two packages, one failing", `--- FAIL: TestCancelRequestContextWatcherHandler (0.99s)
    --- FAIL: TestCancelRequestContextWatcherHandler/Stress_8 (6.18s)
        helper_test.go:31: conn closed
--- FAIL: ExampleConn_Query (0.00s)
FAIL
FAIL	github.com/jackc/pgx/v5/pgconn	33.527s
ok  	github.com/jackc/pgx/v5/pgtype	15.625s
FAIL
`, map[string][]string{"github.com/jackc/pgx/v5/pgconn": {"TestCancelRequestContextWatcherHandler", "ExampleConn_Query"}}},
		{"names are quoted", "--- FAIL: TestA.b (1.00s)\nFAIL\nFAIL\tp\t1s\n", map[string][]string{"p": {`TestA\.b`}}},
		{"a passing package's lines do not count", "--- FAIL: TestX (1s)\nok  \tp\t1s\nFAIL\tq\t1s\n", nil},
		{"build failure", "# p\n./x.go:1: syntax error\nFAIL\tp [build failed]\n", nil},
		{"timeout panic", "panic: test timed out after 8m0s\nFAIL\tp\t480.1s\n", nil},
		{"a panic ends the run", "--- FAIL: TestListen (0.10s)\npanic: timed out waiting for event [recovered]\nFAIL\tp\t1s\n", nil},
		{"nothing failed", "ok  \tp\t1s\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, failedTests(tc.out)); diff != "" {
				t.Errorf("failedTests (-want +got):\n%s", diff)
			}
		})
	}
}
