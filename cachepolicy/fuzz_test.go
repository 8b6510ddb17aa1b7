package cachepolicy_test

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlcache/sqlcache/cachepolicy"
)

func FuzzAnalyze(f *testing.F) {
	for _, tt := range candidateTests {
		f.Add(tt.sql)
	}
	for _, tt := range rejectTests {
		f.Add(tt.sql)
	}
	for _, tt := range writeTests {
		f.Add(tt.sql)
	}
	for _, tt := range sessionTests {
		f.Add(tt.sql)
	}
	f.Add("SELECT 1\x00; DROP TABLE t")
	f.Fuzz(func(t *testing.T, sql string) {
		a := cachepolicy.Analyze(sql) // must not panic
		if a == nil {
			t.Fatal("Analyze returned nil")
		}
		switch {
		case a.ParseError != nil:
			unknown := len(a.Session) == 1 && a.Session[0].Kind == cachepolicy.Unknown
			if a.Candidate || a.InvalidateAll || a.CatalogChange || len(a.Writes) > 0 || len(a.Session) > 0 && !unknown {
				t.Errorf("a string that does not parse changes something: %+v", a)
			}
		case a.Candidate:
			if a.Statements != 1 || a.Reason != "" || a.InvalidateAll || len(a.Writes) > 0 {
				t.Errorf("inconsistent candidate: %+v", a)
			}
		case a.Reason == "":
			t.Errorf("not a candidate, without a reason: %+v", a)
		}
		if a.InvalidateAll && !a.CatalogChange {
			t.Errorf("InvalidateAll without CatalogChange: %+v", a)
		}
		d := cachepolicy.Decide(a, sql, cachepolicy.Facts{}, nil, 0) // must not panic
		if d.Cacheable && len(a.Functions) > 0 {
			t.Errorf("cacheable with functions unknown: %+v for %+v", d, a)
		}
		for _, r := range a.Relations {
			if d.Cacheable && !r.MaybeCTE {
				t.Errorf("cacheable with relation %v unknown: %+v", r, d)
			}
		}
	})
}

// FuzzReuse checks that an analysis reused for another text of the same
// shape is exactly the analysis of that text.
func FuzzReuse(f *testing.F) {
	f.Add(`SELECT v FROM t WHERE id = 7 AND v > 2`, `SELECT v FROM t WHERE id = 0012345 AND v > 99`)
	f.Add(`SELECT v FROM t WHERE id = 7 AND k = 3`, "SELECT /* x */ v FROM t WHERE id = 8 -- y\nAND k = 4")
	f.Add(`SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = -7`)
	f.Add(`SELECT v FROM t WHERE id = 7`, `SELECT v FROM t WHERE id = 0x1F`)
	f.Add(`INSERT INTO t (id) VALUES (1)`, `INSERT INTO t (id) VALUES (2)`)
	f.Add(`SELECT * FROM t ORDER BY v LIMIT 10`, `SELECT * FROM t ORDER BY v LIMIT 20`)
	f.Fuzz(func(t *testing.T, a, b string) {
		sb, err := cachepolicy.ShapeOf(b)
		if err != nil {
			return
		}
		// Reuse compares the tokens itself: texts of other shapes must
		// be refused, not only those of one shape whose hashes collide.
		fresh := cachepolicy.Analyze(b)
		if diff := cmp.Diff(fresh, cachepolicy.AnalyzeShape(sb), sameErrorText); diff != "" {
			t.Errorf("AnalyzeShape(%q) differs from Analyze (-Analyze +AnalyzeShape):\n%s", b, diff)
		}
		reused, ok := cachepolicy.Reuse(cachepolicy.Analyze(a), sb)
		if !ok {
			return
		}
		if diff := cmp.Diff(fresh, reused, sameErrorText); diff != "" {
			t.Errorf("Reuse(Analyze(%q), %q) differs from Analyze (-fresh +reused):\n%s", a, b, diff)
		}
		// And a's decision, taken for b's rows, is what deciding b gives.
		want := cachepolicy.Decide(fresh, b, keyedFacts, nil, 0)
		got := cachepolicy.Decide(cachepolicy.Analyze(a), a, keyedFacts, nil, 0).ForRows(reused)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Decide(%q).ForRows differs from Decide(%q) (-Decide +ForRows):\n%s", a, b, diff)
		}
	})
}

// sameErrorText compares errors by their text: two analyses of one string
// fail with equal errors that are not the same value.
var sameErrorText = cmp.Comparer(func(x, y error) bool { return fmt.Sprint(x) == fmt.Sprint(y) })
