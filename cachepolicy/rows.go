package cachepolicy

import (
	"encoding/binary"
	"slices"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// RowParam is an equality `column = $Param`, or `column = Const` with a
// non-negative integer constant, at the top level of a statement's WHERE
// clause (alone or among ANDed conditions): every row the statement reads
// or writes has that value in that column.
type RowParam struct {
	Column string
	Param  int // 1-based, as in $1; 0 for a constant
	// Const is the constant in decimal, when Param is 0, and Token its
	// index in Analysis.Lexemes (-1 for a write, whose analysis is never
	// reused).
	Const string
	Token int
}

// RowRead is how a cacheable answer is tied to one row: it reads nothing
// but the row (if any) of Table whose primary key Column equals parameter
// Param (or the constant Const, when Param is 0), and only a change of
// that row, or of the whole table, changes it.
type RowRead struct {
	Table   string
	Column  string
	Param   int
	Const   string // the key in decimal, when Param is 0
	KeyType uint32 // the key column's type OID: int2, int4 or int8
}

// Key returns the row's key when it is a constant of the statement.
func (r RowRead) Key() (string, bool) { return r.Const, r.Param == 0 && r.Const != "" }

// Type OIDs of the key columns rows are tracked by.
const (
	oidInt8    = 20
	oidInt2    = 21
	oidInt4    = 23
	oidUnknown = 705
)

// rowFilters returns the RowParams of a WHERE clause over a relation that
// the statement names name (or alias).
func rowFilters(where *pg_query.Node, name, alias string) []RowParam {
	conds := []*pg_query.Node{where}
	if b := where.GetBoolExpr(); b != nil {
		if b.GetBoolop() != pg_query.BoolExprType_AND_EXPR {
			return nil
		}
		conds = b.GetArgs()
	}
	var out []RowParam
	for _, c := range conds {
		e := c.GetAExpr()
		if e == nil || e.GetKind() != pg_query.A_Expr_Kind_AEXPR_OP || len(e.GetName()) != 1 ||
			e.GetName()[0].GetString_().GetSval() != "=" {
			continue
		}
		col, param := e.GetLexpr(), e.GetRexpr()
		if col.GetColumnRef() == nil {
			col, param = param, col
		}
		rp, ok := rowValue(param)
		if !ok {
			continue
		}
		if rp.Column, ok = columnOf(col.GetColumnRef(), name, alias); ok {
			out = append(out, rp)
		}
	}
	return out
}

// rowValue returns the RowParam, Column left out, of a value compared with
// a column: a parameter or a non-negative integer constant. A negative
// constant is left out: its text is two tokens, which Reuse does not
// follow. The Token of a constant is its byte offset in the text until
// Analyze numbers the tokens.
func rowValue(v *pg_query.Node) (RowParam, bool) {
	if p := v.GetParamRef(); p != nil && p.GetNumber() > 0 {
		return RowParam{Param: int(p.GetNumber())}, true
	}
	c := v.GetAConst()
	if c == nil || c.GetIsnull() || c.GetIval() == nil || c.GetIval().GetIval() < 0 {
		return RowParam{}, false
	}
	return RowParam{Const: strconv.Itoa(int(c.GetIval().GetIval())), Token: int(c.GetLocation())}, true
}

// columnOf returns the column a reference names, if it is one of the
// relation's: `col`, or `name.col` / `alias.col`.
func columnOf(ref *pg_query.ColumnRef, name, alias string) (string, bool) {
	var parts []string
	for _, f := range ref.GetFields() {
		s := f.GetString_()
		if s == nil {
			return "", false // a star
		}
		parts = append(parts, s.GetSval())
	}
	switch {
	case len(parts) == 1:
		return parts[0], true
	case len(parts) == 2 && (alias != "" && parts[0] == alias || alias == "" && parts[0] == name):
		return parts[1], true
	}
	return "", false
}

// readRows returns the RowParams of a candidate SELECT that reads one
// table and nothing else: no joins, subqueries, CTEs or set operations,
// so that its answer depends on the rows its WHERE clause selects.
func readRows(sel *pg_query.SelectStmt, sc *scan) []RowParam {
	if sel.GetOp() != pg_query.SetOperation_SETOP_NONE || sel.GetWithClause() != nil ||
		sc.sublinks > 0 || len(sc.rels) != 1 || len(sel.GetFromClause()) != 1 || sel.GetWhereClause() == nil {
		return nil
	}
	rv := sel.GetFromClause()[0].GetRangeVar()
	if rv == nil || len(rv.GetAlias().GetColnames()) > 0 {
		// FROM t AS x(a, b) renames columns: x's id need not be t's.
		return nil
	}
	return rowFilters(sel.GetWhereClause(), rv.GetRelname(), rv.GetAlias().GetAliasname())
}

// writeRows returns the RowParams of an UPDATE or DELETE statement (the
// rows it writes all satisfy them) or of a one-row INSERT. An UPDATE that
// sets a column gives no RowParam of that column: the row's key may
// change.
func writeRows(stmt *pg_query.Node) []RowParam {
	var rv *pg_query.RangeVar
	var where *pg_query.Node
	var set []string
	switch {
	case stmt.GetInsertStmt() != nil:
		return insertRow(stmt.GetInsertStmt())
	case stmt.GetUpdateStmt() != nil:
		u := stmt.GetUpdateStmt()
		if u.GetWithClause() != nil {
			return nil
		}
		rv, where = u.GetRelation(), u.GetWhereClause()
		for _, t := range u.GetTargetList() {
			set = append(set, t.GetResTarget().GetName())
		}
	case stmt.GetDeleteStmt() != nil:
		d := stmt.GetDeleteStmt()
		if d.GetWithClause() != nil {
			return nil
		}
		rv, where = d.GetRelation(), d.GetWhereClause()
	default:
		return nil
	}
	if rv == nil || where == nil {
		return nil
	}
	var out []RowParam
	for _, p := range rowFilters(where, rv.GetRelname(), rv.GetAlias().GetAliasname()) {
		if !slices.Contains(set, p.Column) {
			out = append(out, p)
		}
	}
	return out
}

// insertRow returns the RowParams of `INSERT INTO t (cols) VALUES (...)`
// with one row: the columns given a parameter. ON CONFLICT is allowed as
// DO NOTHING, or DO UPDATE on a conflict of those very columns (a
// conflict elsewhere would update another row).
func insertRow(ins *pg_query.InsertStmt) []RowParam {
	sel := ins.GetSelectStmt().GetSelectStmt()
	if ins.GetWithClause() != nil || ins.GetRelation() == nil || len(ins.GetCols()) == 0 ||
		sel == nil || len(sel.GetValuesLists()) != 1 {
		return nil
	}
	if ins.GetOverride() == pg_query.OverridingKind_OVERRIDING_USER_VALUE {
		return nil // an identity column takes its next value, not the one given
	}
	values := sel.GetValuesLists()[0].GetList().GetItems()
	if len(values) != len(ins.GetCols()) {
		return nil
	}
	var out []RowParam
	for i, c := range ins.GetCols() {
		if rp, ok := rowValue(values[i]); ok {
			rp.Column = c.GetResTarget().GetName()
			out = append(out, rp)
		}
	}
	oc := ins.GetOnConflictClause()
	switch {
	case oc == nil, oc.GetAction() == pg_query.OnConflictAction_ONCONFLICT_NOTHING:
		return out
	case oc.GetAction() != pg_query.OnConflictAction_ONCONFLICT_UPDATE || oc.GetInfer() == nil ||
		oc.GetInfer().GetWhereClause() != nil || len(oc.GetInfer().GetIndexElems()) != 1:
		return nil
	}
	target := oc.GetInfer().GetIndexElems()[0].GetIndexElem().GetName()
	for _, t := range oc.GetTargetList() {
		if t.GetResTarget().GetName() == target {
			return nil // DO UPDATE moves the row
		}
	}
	for _, p := range out {
		if p.Column == target {
			return []RowParam{p}
		}
	}
	return nil
}

// keyedTable returns the key column and type of the one relation of a
// name that Facts describe, if rows of it can be tracked: an ordinary
// table, not a partition or inheritance parent or child, with a
// single-column integer primary key.
func keyedTable(name string, f Facts) (RelInfo, bool) {
	infos := f.Relations[name]
	if len(infos) != 1 {
		return RelInfo{}, false
	}
	ri := infos[0]
	if ri.Kind != 'r' || ri.Temp || ri.Root != "" || len(ri.Base) > 0 || ri.Key == "" {
		return RelInfo{}, false
	}
	switch ri.KeyType {
	case oidInt2, oidInt4, oidInt8:
		return ri, true
	}
	return RelInfo{}, false
}

// rowOf picks, among params, the one on the table's primary key.
func rowOf(table string, params []RowParam, f Facts) (RowRead, bool) {
	ri, ok := keyedTable(table, f)
	if !ok {
		return RowRead{}, false
	}
	for _, p := range params {
		if p.Column == ri.Key {
			return RowRead{Table: table, Column: ri.Key, Param: p.Param, Const: p.Const, KeyType: ri.KeyType}, true
		}
	}
	return RowRead{}, false
}

// WriteRow reports whether a's statement writes only the row of one table
// picked by its primary key: an UPDATE or DELETE with `key = $n` or
// `key = constant` among the ANDed conditions of its WHERE clause that does
// not set the key, or a one-row INSERT of the key, on a table that runs
// no code of its own (a trigger, a foreign key's ON DELETE CASCADE, a rule
// may write other rows of it, or change the key). f must describe
// a.Writes.
func WriteRow(a *Analysis, f Facts) (RowRead, bool) {
	if a.Statements != 1 || len(a.Writes) != 1 || a.InvalidateAll || a.CatalogChange || len(a.RowWrites) == 0 {
		return RowRead{}, false
	}
	if ri, ok := keyedTable(a.Writes[0], f); !ok || ri.RunsCode {
		return RowRead{}, false
	}
	return rowOf(a.Writes[0], a.RowWrites, f)
}

// RowKey returns the canonical key of a parameter value for a RowRead:
// the integer in decimal, as PostgreSQL prints it (and the change stream
// carries it). declared is the parameter's type OID from Parse (0 if the
// server infers it), binary its format. It returns false for a value it
// cannot read with certainty, which must then not be tied to a row.
func RowKey(r RowRead, value []byte, binaryFormat bool, declared uint32) (string, bool) {
	typ := r.KeyType
	switch declared {
	case 0, oidUnknown:
	case oidInt2, oidInt4, oidInt8:
		typ = declared
	default:
		return "", false
	}
	var v int64
	if binaryFormat {
		switch {
		case typ == oidInt2 && len(value) == 2:
			v = int64(int16(binary.BigEndian.Uint16(value)))
		case typ == oidInt4 && len(value) == 4:
			v = int64(int32(binary.BigEndian.Uint32(value)))
		case typ == oidInt8 && len(value) == 8:
			v = int64(binary.BigEndian.Uint64(value))
		default:
			return "", false
		}
		return strconv.FormatInt(v, 10), true
	}
	// PostgreSQL's integer input skips surrounding whitespace and takes a
	// sign and leading zeros; anything fancier is left alone.
	s := strings.Trim(string(value), " \t\n\r\v\f")
	s = strings.TrimPrefix(s, "+")
	if s == "" || s[0] == '+' {
		return "", false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return "", false
	}
	return strconv.FormatInt(v, 10), true
}
