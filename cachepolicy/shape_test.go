package cachepolicy_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlcache/sqlcache/cachepolicy"
)

func TestShapeReuse(t *testing.T) {
	rowDecisions := 0
	for _, tt := range []struct {
		name      string
		a, b      string
		sameShape bool
		reusable  bool
	}{
		{"constants differ", `SELECT abalance FROM pgbench_accounts WHERE aid = 1`, `SELECT abalance FROM pgbench_accounts WHERE aid = 99`, true, true},
		{"limit differs", `SELECT * FROM t ORDER BY v LIMIT 10`, `SELECT * FROM t ORDER BY v LIMIT 20`, true, true},
		{"table differs", `SELECT v FROM a WHERE id = 1`, `SELECT v FROM b WHERE id = 1`, false, false},
		{"function differs", `SELECT lower(v) FROM t`, `SELECT upper(v) FROM t`, false, false},
		// pg_query's fingerprint leaves digits out of relation names (for
		// partitions); the tables differ all the same.
		{"digits in table name", `SELECT v FROM events_2024 WHERE id = 1`, `SELECT v FROM events_2025 WHERE id = 1`, false, false},
		{"keyword case", `SELECT v FROM t WHERE id = 1`, `select v from t where id = 1`, false, false},
		{"clock literal", `SELECT v FROM t WHERE at < '2024-01-01'`, `SELECT v FROM t WHERE at < 'now'`, true, false},
		{"clock word in text", `SELECT v FROM t WHERE name = 'a'`, `SELECT v FROM t WHERE name = 'Today'`, true, false},
		// Words the text hides: an escape, a continued string, UESCAPE.
		{"clock word escaped", `SELECT v FROM t WHERE at < E'2024-01-01'`, `SELECT v FROM t WHERE at < E'\x6eow'`, true, false},
		{"clock word continued", `SELECT v FROM t WHERE at < 'a'` + "\n" + `'b'`, `SELECT v FROM t WHERE at < 'n'` + "\n" + `'ow'`, true, false},
		{"clock word with UESCAPE", `SELECT v FROM t WHERE at < U&'a' UESCAPE '!'`, `SELECT v FROM t WHERE at < U&'!006eow' UESCAPE '!'`, true, false},
		{"explain analyze option", `EXPLAIN (ANALYZE false) DELETE FROM t`, `EXPLAIN (ANALYZE true) DELETE FROM t`, false, false},
		{"set value", `SET search_path = a`, `SET search_path = b`, false, false},
		{"set constant", `SET statement_timeout = 1`, `SET statement_timeout = 2`, true, false},
		{"write", `UPDATE t SET v = 1`, `UPDATE t SET v = 2`, true, false},
		{"constant, then parameter", `SELECT v FROM t WHERE id = 1`, `SELECT v FROM t WHERE id = $1`, false, false},
		{"parameter, then constant", `SELECT v FROM t WHERE id = $1`, `SELECT v FROM t WHERE id = 1`, false, false},
		{"parameters renumbered", `SELECT v FROM t WHERE id = $1 AND v > $2`, `SELECT v FROM t WHERE id = $2 AND v > $1`, false, false},
		// A constant compared with a column is read from the other text.
		{"row constant", `SELECT v FROM t WHERE id = 7 AND v > 2`, `SELECT v FROM t WHERE id = 0012345 AND v > 99`, true, true},
		{"row constants, comments", `SELECT v FROM t WHERE id = 7 AND k = 3`, `SELECT /* x */ v FROM t WHERE id = 8 -- y` + "\n" + `AND k = 4`, true, true},
		{"row constant, spacing", `SELECT v FROM t WHERE id = 7`, `SELECT v  FROM t  WHERE id=70000`, true, true},
		{"row constant, hex", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 0x1F`, true, false},
		{"row constant, negative", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = -7`, false, false},
		{"row constant, too large for int4", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 3000000000`, false, false},
		{"row constant, string", `SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = '7'`, false, false},
		{"row constant, then IN list", `SELECT v FROM t WHERE id = 7 AND k IN (1, 2)`, `SELECT v FROM t WHERE id = 7 AND k IN (1, 2, 3)`, false, false},
		{"too long to keep", `SELECT v FROM t WHERE id = 7 AND k IN (` + strings.Repeat("1, ", 600) + `1)`, `SELECT v FROM t WHERE id = 8 AND k IN (` + strings.Repeat("2, ", 600) + `2)`, true, false},
		{"negative constants", `SELECT v FROM t WHERE id = -7`, `SELECT v FROM t WHERE id = -8`, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sa, err := cachepolicy.ShapeOf(tt.a)
			if err != nil {
				t.Fatal(err)
			}
			sb, err := cachepolicy.ShapeOf(tt.b)
			if err != nil {
				t.Fatal(err)
			}
			if (sa.Hash == sb.Hash) != tt.sameShape {
				t.Fatalf("same shape = %v; want %v", sa.Hash == sb.Hash, tt.sameShape)
			}
			a := cachepolicy.Analyze(tt.a)
			if diff := cmp.Diff(a, cachepolicy.AnalyzeShape(sa)); diff != "" {
				t.Errorf("AnalyzeShape differs from Analyze (-Analyze +AnalyzeShape):\n%s", diff)
			}
			reused, got := cachepolicy.Reuse(a, sb)
			if got != tt.reusable {
				t.Fatalf("Reuse = %v; want %v", got, tt.reusable)
			}
			if got {
				// Reuse must give exactly what analyzing b would.
				if diff := cmp.Diff(cachepolicy.Analyze(tt.b), reused); diff != "" {
					t.Errorf("reused analysis differs (-fresh +reused):\n%s", diff)
				}
				// And a's decision, taken for b's rows, what deciding b would.
				want := cachepolicy.Decide(cachepolicy.Analyze(tt.b), tt.b, keyedFacts, nil, 0)
				got := cachepolicy.Decide(a, tt.a, keyedFacts, nil, 0).ForRows(reused)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("ForRows differs from Decide (-Decide +ForRows):\n%s", diff)
				}
				if want.Row != nil {
					rowDecisions++
				}
			}
		})
	}
	if rowDecisions == 0 {
		t.Error("no case tied a decision to a row: ForRows was not tested")
	}
}

// keyedFacts describe the tables of TestShapeReuse with integer primary
// keys, so that decisions are tied to rows.
var keyedFacts = cachepolicy.Facts{
	Relations: map[string][]relInfo{
		"t":                {{Schema: "public", Name: "t", Kind: 'r', Key: "id", KeyType: 23}},
		"pgbench_accounts": {{Schema: "public", Name: "pgbench_accounts", Kind: 'r', Key: "aid", KeyType: 23}},
	},
	Functions: rowFacts.Functions,
}

// BenchmarkShapeReuse is what a new text of a known shape costs a proxy:
// its shape, and the reused analysis with its row constant read in.
func BenchmarkShapeReuse(b *testing.B) {
	a := cachepolicy.Analyze(`SELECT abalance FROM pgbench_accounts WHERE aid = 1`)
	const sql = `SELECT abalance FROM pgbench_accounts WHERE aid = 12345`
	b.ReportAllocs()
	for b.Loop() {
		sh, err := cachepolicy.ShapeOf(sql)
		if err != nil {
			b.Fatal(err)
		}
		if _, ok := cachepolicy.Reuse(a, sh); !ok {
			b.Fatal("not reused")
		}
	}
}
