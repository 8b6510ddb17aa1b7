package cachepolicy

import (
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
)

// changes records what stmt may change in the database: relations
// (Writes), everything (InvalidateAll) and the catalog (CatalogChange).
// dml are the targets of the DML statements anywhere in stmt; they count
// when stmt runs its query. A statement type not named here invalidates
// everything.
func (a *Analysis) changes(stmt *pg_query.Node, dml []string) {
	switch s := stmt.GetNode().(type) {
	case *pg_query.Node_SelectStmt:
		// Data-modifying CTEs; SELECT INTO creates a table.
		a.Writes = append(a.Writes, dml...)
		if into := s.SelectStmt.GetIntoClause(); into != nil && !isTemp(into.GetRel()) {
			a.Writes = appendRel(a.Writes, into.GetRel())
			a.CatalogChange = true
		}
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt,
		*pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt,
		*pg_query.Node_DeclareCursorStmt:
		a.Writes = append(a.Writes, dml...)
	case *pg_query.Node_CopyStmt:
		a.copy(s.CopyStmt, dml)
	case *pg_query.Node_TruncateStmt:
		a.truncate(s.TruncateStmt)
	case *pg_query.Node_ExplainStmt:
		// Only EXPLAIN ANALYZE runs the statement.
		if explainAnalyze(s.ExplainStmt) {
			a.changes(s.ExplainStmt.GetQuery(), dml)
		}
	case *pg_query.Node_TransactionStmt:
		switch s.TransactionStmt.GetKind() {
		case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED,
			pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
			// Another session's writes become visible (or vanish).
			a.invalidateAll()
		}
	case *pg_query.Node_VariableShowStmt, *pg_query.Node_VariableSetStmt,
		*pg_query.Node_DiscardStmt, *pg_query.Node_ListenStmt,
		*pg_query.Node_NotifyStmt, *pg_query.Node_UnlistenStmt,
		*pg_query.Node_DeallocateStmt, *pg_query.Node_PrepareStmt,
		*pg_query.Node_LockStmt, *pg_query.Node_ReindexStmt,
		*pg_query.Node_VacuumStmt, *pg_query.Node_ClusterStmt,
		*pg_query.Node_CheckPointStmt, *pg_query.Node_FetchStmt,
		*pg_query.Node_ClosePortalStmt, *pg_query.Node_CommentStmt,
		*pg_query.Node_LoadStmt, *pg_query.Node_ConstraintsSetStmt:
		// Harmless: session state, locks, maintenance, cursors. PREPARE
		// does not run its statement; EXECUTE is not here.
	default:
		rels, ok := ddlRelations(stmt, dml)
		if !ok {
			a.invalidateAll()
			return
		}
		if onlyTemp(stmt, rels) {
			// Its query's DML targets, if any, were written.
			a.Writes = append(a.Writes, dml...)
			return
		}
		a.Writes = append(a.Writes, rels...)
		a.CatalogChange = true
	}
}

// onlyTemp reports whether stmt creates a temporary relation and touches
// no other (rels, from ddlRelations). Only the creating session sees a
// temporary relation, and it stops answering from the cache when it
// creates one (SessionEffect CreateTemp): no cached answer can depend on
// the new relation, and what is cached about the catalog stays true for
// every other session, so a workload that creates temporary tables
// neither drops the answers of a permanent table of the same name nor
// makes every session plan again. A temporary table that inherits from a
// permanent one changes that one's facts.
func onlyTemp(stmt *pg_query.Node, rels []string) bool {
	rv := createdRelation(stmt)
	return isTemp(rv) && len(rels) == 1 && rels[0] == rv.GetRelname()
}

func (a *Analysis) invalidateAll() {
	a.InvalidateAll = true
	a.CatalogChange = true
}

// copy records COPY ... FROM (a write of the relation) and COPY (query) TO,
// whose query may be a DML statement with RETURNING.
func (a *Analysis) copy(s *pg_query.CopyStmt, dml []string) {
	if s.GetIsFrom() {
		a.Writes = appendRel(a.Writes, s.GetRelation())
		a.CopyIn = a.CopyIn || s.GetFilename() == "" && !s.GetIsProgram()
		return
	}
	a.Writes = append(a.Writes, dml...)
}

// truncate records TRUNCATE. With CASCADE it also empties every table
// that references these, which the statement does not name.
func (a *Analysis) truncate(s *pg_query.TruncateStmt) {
	if s.GetBehavior() == pg_query.DropBehavior_DROP_CASCADE {
		a.invalidateAll()
		return
	}
	for _, n := range s.GetRelations() {
		a.Writes = appendRel(a.Writes, n.GetRangeVar())
	}
}

// explainAnalyze reports whether EXPLAIN runs its statement: ANALYZE is
// given and not plainly false (Postgres's defGetBoolean).
func explainAnalyze(s *pg_query.ExplainStmt) bool {
	for _, o := range s.GetOptions() {
		d := o.GetDefElem()
		if d.GetDefname() != "analyze" {
			continue
		}
		arg := d.GetArg()
		switch {
		case arg == nil:
			return true
		case arg.GetInteger() != nil:
			return arg.GetInteger().GetIval() != 0
		case arg.GetString_() != nil:
			v := strings.ToLower(arg.GetString_().GetSval())
			return v != "false" && v != "off" && v != "0" && v != "no"
		case arg.GetBoolean() != nil:
			return arg.GetBoolean().GetBoolval()
		}
		return true
	}
	return false
}

// ddlRelations returns the relnames a DDL statement changes. ok is false
// for a statement that is not DDL on relations, or whose effect reaches
// past them (types, functions, schemas, roles...): the caller invalidates
// everything then.
func ddlRelations(stmt *pg_query.Node, dml []string) (rels []string, ok bool) {
	switch s := stmt.GetNode().(type) {
	case *pg_query.Node_CreateStmt:
		return createRelations(s.CreateStmt), true
	case *pg_query.Node_CreateForeignTableStmt:
		return createRelations(s.CreateForeignTableStmt.GetBaseStmt()), true
	case *pg_query.Node_CreateTableAsStmt:
		return appendRel(slices.Clone(dml), s.CreateTableAsStmt.GetInto().GetRel()), true
	case *pg_query.Node_ViewStmt:
		return appendRel(nil, s.ViewStmt.GetView()), true
	case *pg_query.Node_CreateSeqStmt:
		return appendRel(nil, s.CreateSeqStmt.GetSequence()), true
	case *pg_query.Node_AlterSeqStmt:
		return appendRel(nil, s.AlterSeqStmt.GetSequence()), true
	case *pg_query.Node_RefreshMatViewStmt:
		return appendRel(nil, s.RefreshMatViewStmt.GetRelation()), true
	case *pg_query.Node_CreatePolicyStmt:
		return appendRel(nil, s.CreatePolicyStmt.GetTable()), true
	case *pg_query.Node_AlterPolicyStmt:
		return appendRel(nil, s.AlterPolicyStmt.GetTable()), true
	case *pg_query.Node_RuleStmt:
		return appendRel(nil, s.RuleStmt.GetRelation()), true
	case *pg_query.Node_CreateTrigStmt:
		return appendRel(nil, s.CreateTrigStmt.GetRelation()), true
	case *pg_query.Node_IndexStmt, *pg_query.Node_CreateStatsStmt, *pg_query.Node_AlterStatsStmt:
		return nil, true // the planner's business; data unchanged
	case *pg_query.Node_AlterTableStmt:
		return alterTableRelations(s.AlterTableStmt)
	case *pg_query.Node_RenameStmt:
		return renameRelations(s.RenameStmt)
	case *pg_query.Node_AlterObjectSchemaStmt:
		if !relationKinds[s.AlterObjectSchemaStmt.GetObjectType()] {
			return nil, false
		}
		return appendRel(nil, s.AlterObjectSchemaStmt.GetRelation()), true
	case *pg_query.Node_DropStmt:
		return dropRelations(s.DropStmt)
	case *pg_query.Node_GrantStmt:
		return grantRelations(s.GrantStmt)
	}
	return nil, false
}

// relationKinds are the object types that name a relation a query can read.
var relationKinds = map[pg_query.ObjectType]bool{
	pg_query.ObjectType_OBJECT_TABLE:         true,
	pg_query.ObjectType_OBJECT_VIEW:          true,
	pg_query.ObjectType_OBJECT_MATVIEW:       true,
	pg_query.ObjectType_OBJECT_FOREIGN_TABLE: true,
	pg_query.ObjectType_OBJECT_SEQUENCE:      true,
}

// createRelations returns the new relation and its parents: a new
// partition or inheritance child changes what its parents return.
func createRelations(s *pg_query.CreateStmt) []string {
	rels := appendRel(nil, s.GetRelation())
	for _, n := range s.GetInhRelations() {
		rels = appendRel(rels, n.GetRangeVar())
	}
	return rels
}

// alterTableRelations returns every relation an ALTER TABLE, VIEW,
// MATERIALIZED VIEW, FOREIGN TABLE or SEQUENCE names: the target, and
// partitions attached or detached, parents inherited, tables referenced.
func alterTableRelations(s *pg_query.AlterTableStmt) ([]string, bool) {
	switch s.GetObjtype() {
	case pg_query.ObjectType_OBJECT_INDEX:
		return nil, true
	case pg_query.ObjectType_OBJECT_TYPE: // ALTER TYPE on a composite type
		return nil, false
	}
	var rels []string
	walk(s, func(m proto.Message) bool {
		if rv, ok := m.(*pg_query.RangeVar); ok {
			rels = appendRel(rels, rv)
		}
		return true
	})
	return rels, true
}

// renameRelations returns the relation a RENAME changes, with its new name
// when the relation itself is renamed. ALTER INDEX ... RENAME also renames
// tables, so it counts too.
func renameRelations(s *pg_query.RenameStmt) ([]string, bool) {
	switch t := s.GetRenameType(); {
	case relationKinds[t] || t == pg_query.ObjectType_OBJECT_INDEX:
		return appendRel([]string{s.GetNewname()}, s.GetRelation()), true
	case t == pg_query.ObjectType_OBJECT_COLUMN, t == pg_query.ObjectType_OBJECT_TABCONSTRAINT,
		t == pg_query.ObjectType_OBJECT_TRIGGER, t == pg_query.ObjectType_OBJECT_POLICY,
		t == pg_query.ObjectType_OBJECT_RULE:
		if s.GetRelation() != nil {
			return appendRel(nil, s.GetRelation()), true
		}
	}
	return nil, false
}

// dropRelations returns the relations a DROP removes or changes. DROP ...
// CASCADE can remove objects the statement does not name (functions
// taking a dropped table's row type, for one), so it invalidates
// everything.
func dropRelations(s *pg_query.DropStmt) ([]string, bool) {
	if s.GetBehavior() == pg_query.DropBehavior_DROP_CASCADE {
		return nil, false
	}
	skip := 0 // objects are qualified names: [schema,] name
	switch t := s.GetRemoveType(); {
	case t == pg_query.ObjectType_OBJECT_INDEX:
		return nil, true
	case relationKinds[t]:
	case t == pg_query.ObjectType_OBJECT_POLICY, t == pg_query.ObjectType_OBJECT_RULE,
		t == pg_query.ObjectType_OBJECT_TRIGGER:
		skip = 1 // [schema,] table, name
	default:
		return nil, false
	}
	var rels []string
	for _, o := range s.GetObjects() {
		if name := lastString(o.GetList().GetItems(), skip); name != "" {
			rels = append(rels, name)
		}
	}
	return rels, true
}

// grantRelations returns the tables of GRANT or REVOKE ... ON [TABLE] or
// SEQUENCE. Grants on schemas, functions and the like, ALL TABLES IN
// SCHEMA, and anything else are not ok.
func grantRelations(s *pg_query.GrantStmt) ([]string, bool) {
	if s.GetTargtype() != pg_query.GrantTargetType_ACL_TARGET_OBJECT {
		return nil, false
	}
	switch s.GetObjtype() {
	case pg_query.ObjectType_OBJECT_TABLE, pg_query.ObjectType_OBJECT_SEQUENCE:
	default:
		return nil, false
	}
	var rels []string
	for _, n := range s.GetObjects() {
		rels = appendRel(rels, n.GetRangeVar())
	}
	return rels, true
}
