package cachepolicy

import (
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protopath"
	"google.golang.org/protobuf/reflect/protorange"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestWalkVisitsEveryMessage checks the generic walk against protobuf's
// own traversal: both must see the same number of messages of each type.
func TestWalkVisitsEveryMessage(t *testing.T) {
	const sql = `WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3)
		SELECT a.x, (SELECT max(b.y) FROM b WHERE b.a = a.id), count(*) FILTER (WHERE a.z) OVER w,
			CASE WHEN a.q IS NULL THEN coalesce(a.r, 0) END, (ARRAY[1, 2])[1], a.j -> 'k', 'x'::text
		FROM a JOIN LATERAL generate_series(1, a.n) g(i) ON true
			LEFT JOIN JSON_TABLE(a.doc, '$[*]' COLUMNS (v int PATH '$.v')) jt ON true
		WHERE a.id IN (SELECT id FROM r) AND EXISTS (SELECT 1 FROM c WHERE c.t > CURRENT_DATE)
		GROUP BY ROLLUP (a.x) HAVING sum(a.z::int) > 1
		WINDOW w AS (PARTITION BY a.x ORDER BY a.id)
		ORDER BY 1 LIMIT 5 FOR UPDATE OF a`
	tree, err := pg_query.Parse(sql)
	if err != nil {
		t.Fatal(err)
	}
	want := map[protoreflect.FullName]int{}
	protorange.Range(tree.ProtoReflect(), func(v protopath.Values) error {
		if m, ok := v.Index(-1).Value.Interface().(protoreflect.Message); ok {
			want[m.Descriptor().FullName()]++
		}
		return nil
	})
	got := map[protoreflect.FullName]int{}
	walk(tree, func(m proto.Message) bool {
		got[m.ProtoReflect().Descriptor().FullName()]++
		return true
	})
	if len(want) < 35 {
		t.Fatalf("only %d message types in the tree", len(want))
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("walk visited %s %d times; protorange %d", name, got[name], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("walk saw %d message types; protorange %d", len(got), len(want))
	}
}

func TestWalkSkipsBelow(t *testing.T) {
	tree, err := pg_query.Parse("SELECT (SELECT 1 FROM b) FROM a")
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	walk(tree, func(m proto.Message) bool {
		switch n := m.(type) {
		case *pg_query.SubLink:
			return false
		case *pg_query.RangeVar:
			rels = append(rels, n.Relname)
		}
		return true
	})
	if len(rels) != 1 || rels[0] != "a" {
		t.Errorf("got %q; want [a]", rels)
	}
}

// harmlessWhenEmpty are the parse node types that, with no fields set,
// change nothing. Every other type, including any a new pg_query adds and
// every expression node, must at least change the catalog: unknown means
// invalidate.
var harmlessWhenEmpty = map[protoreflect.Name]bool{
	"SelectStmt": true, "InsertStmt": true, "UpdateStmt": true, "DeleteStmt": true,
	"MergeStmt": true, "CopyStmt": true, "TruncateStmt": true, "ExplainStmt": true,
	"DeclareCursorStmt": true, "TransactionStmt": true, "VariableShowStmt": true,
	"VariableSetStmt": true, "DiscardStmt": true, "ListenStmt": true, "NotifyStmt": true,
	"UnlistenStmt": true, "DeallocateStmt": true, "PrepareStmt": true, "LockStmt": true,
	"ReindexStmt": true, "VacuumStmt": true, "ClusterStmt": true, "CheckPointStmt": true,
	"FetchStmt": true, "ClosePortalStmt": true, "CommentStmt": true, "LoadStmt": true,
	"ConstraintsSetStmt": true,
}

// TestEveryNodeType runs each of the parse tree's node types, empty,
// through the write and session classification.
func TestEveryNodeType(t *testing.T) {
	oneof := (&pg_query.Node{}).ProtoReflect().Descriptor().Oneofs().Get(0)
	fields := oneof.Fields()
	if fields.Len() < 250 {
		t.Fatalf("Node has only %d types", fields.Len())
	}
	for i := range fields.Len() {
		fd := fields.Get(i)
		name := fd.Message().Name()
		node := &pg_query.Node{}
		m := node.ProtoReflect()
		m.Set(fd, m.NewField(fd))
		var a Analysis
		a.changes(node, nil) // must not panic
		sessionEffects(node)
		if tag := statementTag(node); tag == "" || tag == "unknown" {
			t.Errorf("%s: tag %q", name, tag)
		}
		changes := a.InvalidateAll || a.CatalogChange || len(a.Writes) > 0
		if changes == harmlessWhenEmpty[name] {
			t.Errorf("%s: changes something = %v; want %v", name, changes, !changes)
		}
	}
}
