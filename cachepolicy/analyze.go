package cachepolicy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Analysis is what one SQL string, as sent in a simple Query or a Parse
// message, means for the cache. Analyze fills it from the parse tree alone;
// Decide adds what the catalog knows.
type Analysis struct {
	Statements int   // statements in the string
	ParseError error // the parser's error; then Reason is "parse error" and all else is zero

	// Read side.

	// Candidate is true for exactly one plain SELECT (joins, subqueries,
	// CTEs, set operations, VALUES, TABLE x...) without FOR UPDATE/SHARE,
	// SELECT INTO, data-modifying CTEs, TABLESAMPLE, CURRENT_TIMESTAMP and
	// its kin, clock literals such as 'now'::timestamptz, or set_config.
	Candidate bool
	Reason    string   // why not a candidate: "FOR UPDATE", "several statements"...
	Relations []RelRef // relations the candidate reads, sorted, deduplicated
	// Functions are what the candidate runs by name, sorted, deduplicated:
	// the functions it calls (last name element), and the functions of
	// the operators it uses and the casts it makes, named by OperatorPrefix
	// or CastPrefix (see Implicit).
	Functions []string
	// RowParams: the candidate reads one table and nothing else, only
	// rows with these column = parameter (or constant) equalities.
	RowParams []RowParam
	// Lexemes are a candidate's tokens, comments left out: Reuse requires
	// the same of another text of the same shape, and finds the constants
	// of RowParams by them. Nil for a text of more than maxLexemes.
	Lexemes []Lexeme

	// Write side, for every statement in the string (candidate or not).

	// Writes are relnames (no schema) whose data or definition the string
	// may change: DML targets, COPY FROM, TRUNCATE, and DDL on relations.
	Writes []string
	// InvalidateAll is set when the string may change results anywhere in
	// the database: DO, CALL, EXECUTE, DDL on types, functions, schemas or
	// roles, and every statement type this package does not classify.
	InvalidateAll bool
	// CatalogChange is set for DDL (CREATE, ALTER, DROP, RENAME, GRANT,
	// REVOKE, REFRESH, policies, rules, triggers) and with InvalidateAll:
	// catalog facts cached for the database are stale. Not for creating a
	// temporary relation, which no other session sees.
	CatalogChange bool
	// Calls are what any of the statements runs by name, as Functions
	// names it, sorted, deduplicated: code a write may run.
	Calls []string
	// RowWrites: the string is one UPDATE or DELETE, and every row it
	// writes satisfies these column = parameter (or constant) equalities
	// (on columns it does not set), or a one-row INSERT giving them.
	RowWrites []RowParam

	// Session side, in statement order.
	Session []SessionEffect

	// Transaction: the string holds a statement that opens, ends or
	// divides a transaction (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, …), so
	// whether its other statements' session effects last depends on how
	// those went: BEGIN; SET x = 1; ROLLBACK sets nothing.
	Transaction bool

	// Prepared names the prepared statements the string makes or drops
	// in SQL (PREPARE, DEALLOCATE), which share the protocol's namespace;
	// AllPrepared: it drops them all (DEALLOCATE ALL, DISCARD ALL).
	Prepared    []string
	AllPrepared bool

	// RoleDefaults: the string changes the settings sessions start with
	// (ALTER ROLE/USER/DATABASE … SET or RESET), which PostgreSQL applies
	// to sessions that log in after it commits.
	RoleDefaults bool

	// CopyIn: the string holds a COPY … FROM STDIN, during which
	// PostgreSQL reads CopyData and ignores Sync and Flush.
	CopyIn bool

	// BeginOptions: the string holds a BEGIN or START TRANSACTION with
	// options, which inside a block sets the block's characteristics
	// (SetsTransaction).
	BeginOptions bool

	// EndsBlock: the string is one COMMIT or ROLLBACK (END, ABORT)
	// without AND CHAIN, which leaves no transaction open after it.
	EndsBlock bool

	// OpensBlock: the string is one BEGIN or START TRANSACTION that leaves
	// the block it opens at read committed or at the session's default
	// isolation level (no ISOLATION LEVEL REPEATABLE READ or SERIALIZABLE).
	OpensBlock bool
}

// RelRef is a relation a query reads, as written.
type RelRef struct {
	Schema string // as written; "" if unqualified
	Name   string // relname as the parser returns it: folded unless quoted
	// MaybeCTE is set when the name is unqualified and equal to a CTE's
	// name somewhere in the statement. The parse tree does not say which
	// one a reference means, so it is a dependency only if a relation of
	// that name exists.
	MaybeCTE bool
}

var (
	errNUL     = errors.New("parse: NUL byte in query")
	errTooDeep = errors.New("parse: expression nested too deeply for sqlcache to read")
)

// maxNesting bounds how deeply a text's expressions may nest before
// Analyze refuses to parse it: pg_query turns the parse tree into protobuf
// by recursion, without PostgreSQL's stack depth check, and `SELECT 1+1+…`
// with some 25,000 terms overflows the C stack, which kills the process.
// PostgreSQL itself refuses such depths (54001, max_stack_depth) well
// before; texts shorter than maxNesting bytes cannot nest that deep.
const maxNesting = 5000

// tooDeep reports whether sql may nest deeper than maxNesting: the depth of
// its parentheses, plus the longest chain of operators (which nest to the
// left: 1+1+1) between two commas, semicolons, ANDs, ORs or CASE branches
// (lists, whose members do not nest). sh, if not nil, holds sql's tokens.
func tooDeep(sql string, sh *Shape) bool {
	if len(sql) < maxNesting {
		return false
	}
	var lexemes []Lexeme
	if sh != nil {
		lexemes = sh.lexemes
	} else {
		var ok bool
		if lexemes, _, _, ok = lex(sql); !ok {
			return false // pg_query.Parse reports it
		}
	}
	runs := []int{0} // per open parenthesis: operators since a list separator
	for _, l := range lexemes {
		top := len(runs) - 1
		switch pg_query.Token(l.Kind) {
		case pg_query.Token_ASCII_40, pg_query.Token_ASCII_91: // ( [
			runs = append(runs, 0)
		case pg_query.Token_ASCII_41, pg_query.Token_ASCII_93: // ) ]
			if top > 0 {
				runs = runs[:top]
			}
		case pg_query.Token_ASCII_44, pg_query.Token_ASCII_59, pg_query.Token_AND, pg_query.Token_OR,
			pg_query.Token_WHEN, pg_query.Token_THEN, pg_query.Token_ELSE: // , ;
			runs[top] = 0
		case pg_query.Token_Op, pg_query.Token_TYPECAST, pg_query.Token_LESS_EQUALS, pg_query.Token_GREATER_EQUALS,
			pg_query.Token_NOT_EQUALS, pg_query.Token_NOT, pg_query.Token_IS, pg_query.Token_COLLATE,
			pg_query.Token_ASCII_37, pg_query.Token_ASCII_42, pg_query.Token_ASCII_43, pg_query.Token_ASCII_45,
			pg_query.Token_ASCII_47, pg_query.Token_ASCII_60, pg_query.Token_ASCII_61, pg_query.Token_ASCII_62,
			pg_query.Token_ASCII_94: // % * + - / < = > ^
			runs[top]++
		}
		if len(runs)-1+runs[len(runs)-1] > maxNesting {
			return true
		}
	}
	return false
}

// SetsTransaction reports whether the string sets its transaction's
// characteristics or snapshot (SET TRANSACTION …, SET transaction_isolation
// …), which PostgreSQL refuses once the transaction has run a query.
func (a *Analysis) SetsTransaction() bool {
	if a.BeginOptions {
		return true
	}
	for _, e := range a.Session {
		switch e.Name {
		case "transaction_isolation", "transaction_read_only", "transaction_deferrable", "transaction_snapshot":
			return true
		}
	}
	return false
}

// prepared records the prepared statements stmt makes or drops, and
// whether it changes the settings sessions start with.
func (a *Analysis) prepared(stmt *pg_query.Node) {
	switch n := stmt.GetNode().(type) {
	case *pg_query.Node_PrepareStmt:
		a.Prepared = append(a.Prepared, n.PrepareStmt.GetName())
	case *pg_query.Node_DeallocateStmt:
		if n.DeallocateStmt.GetIsall() {
			a.AllPrepared = true
		} else {
			a.Prepared = append(a.Prepared, n.DeallocateStmt.GetName())
		}
	case *pg_query.Node_DiscardStmt:
		a.AllPrepared = a.AllPrepared || n.DiscardStmt.GetTarget() == pg_query.DiscardMode_DISCARD_ALL
	case *pg_query.Node_AlterRoleSetStmt, *pg_query.Node_AlterDatabaseSetStmt:
		a.RoleDefaults = true
	}
}

// Analyze parses sql, which may hold several statements, and classifies
// it. It never returns nil. A string that does not parse is mostly one
// that PostgreSQL rejects whole; should PostgreSQL accept it (a syntax
// the parser here lacks), it may have changed the session, so its effect
// on the session is Unknown (and it invalidates as an unparsed write).
func Analyze(sql string) *Analysis { return analyze(sql, nil) }

// AnalyzeShape is Analyze of the text of sh, whose tokens it does not
// scan again.
func AnalyzeShape(sh *Shape) *Analysis { return analyze(sh.sql, sh) }

// analyze is Analyze with the text's shape, or nil to scan it if needed.
func analyze(sql string, sh *Shape) *Analysis {
	if strings.IndexByte(sql, 0) >= 0 {
		// The C parser would stop at the NUL; Postgres rejects the message.
		return &Analysis{ParseError: errNUL, Reason: "parse error"}
	}
	if tooDeep(sql, sh) {
		return &Analysis{ParseError: errTooDeep, Reason: "parse error", InvalidateAll: true,
			Session: []SessionEffect{{Kind: Unknown, Value: "a statement nested too deeply to read"}}}
	}
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return &Analysis{ParseError: fmt.Errorf("parse: %w", err), Reason: "parse error",
			Session: []SessionEffect{{Kind: Unknown, Value: "a statement sqlcache could not parse"}}}
	}
	stmts := tree.GetStmts()
	a := &Analysis{Statements: len(stmts)}
	var first *scan
	for _, raw := range stmts {
		stmt := raw.GetStmt()
		s := scanStatement(stmt)
		if first == nil {
			first = s
		}
		a.changes(stmt, s.dml)
		a.Calls = append(a.Calls, s.funcs...)
		a.Session = append(a.Session, sessionEffects(stmt)...)
		if t := stmt.GetTransactionStmt(); t != nil {
			a.Transaction = true
			switch t.GetKind() {
			case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
				a.BeginOptions = a.BeginOptions || len(t.GetOptions()) > 0
			case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT, pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
				a.EndsBlock = len(stmts) == 1 && !t.GetChain()
			}
		}
		a.prepared(stmt)
		if e, ok := setConfigStatement(stmt); ok {
			a.Session = append(a.Session, e)
			continue
		}
		for _, fc := range s.setConfig {
			a.Session = append(a.Session, setConfigEffect(fc))
		}
	}
	a.Writes = sortedUnique(a.Writes)
	a.Calls = sortedUnique(a.Calls)
	if slices.Contains(a.Calls, "pg_reload_conf") {
		// New server defaults apply from the next statement on (the
		// default isolation of blocks among them): as after DDL, what
		// sessions know of them is read again.
		a.CatalogChange = true
	}
	if len(stmts) == 1 {
		a.OpensBlock = opensBlock(stmts[0].GetStmt())
		a.RowWrites = writeRows(stmts[0].GetStmt())
		for i := range a.RowWrites {
			a.RowWrites[i].Token = -1
		}
	}
	a.read(stmts, first)
	a.numberConstants(sql, sh)
	return a
}

// numberConstants records a candidate's Lexemes and replaces the byte
// offsets that rowValue leaves in the Token of constant RowParams by token
// indexes. A constant it cannot place is no RowParam. sh is sql's shape,
// or nil to scan it here.
func (a *Analysis) numberConstants(sql string, sh *Shape) {
	if !a.Candidate {
		return
	}
	var lexemes []Lexeme
	var starts []int32
	ok := true
	if sh != nil {
		lexemes, starts = sh.lexemes, sh.starts
	} else {
		lexemes, starts, _, ok = lex(sql)
	}
	if len(lexemes) <= maxLexemes {
		a.Lexemes = lexemes
	}
	if !slices.ContainsFunc(a.RowParams, isConst) {
		return
	}
	var kept []RowParam
	for _, p := range a.RowParams {
		if p.Param == 0 {
			i, found := slices.BinarySearch(starts, int32(p.Token))
			if !ok || !found || lexemes[i].Kind != int32(pg_query.Token_ICONST) {
				continue
			}
			p.Token = i
		}
		kept = append(kept, p)
	}
	a.RowParams = kept
}

// maxLexemes bounds the Lexemes an analysis keeps: a longer text (a large
// IN list, say) is analyzed on its own rather than kept for reuse.
const maxLexemes = 1024

func isConst(p RowParam) bool { return p.Param == 0 }

// Lexeme is a token of a text: its kind, and its text unless it is a
// constant.
type Lexeme struct {
	Kind int32
	Text string
}

// lex returns sql's tokens and their byte offsets (start, end), comments
// left out.
func lex(sql string) (lexemes []Lexeme, starts, ends []int32, ok bool) {
	res, err := pg_query.Scan(sql)
	if err != nil {
		return nil, nil, nil, false
	}
	n := len(res.GetTokens())
	lexemes, starts, ends = make([]Lexeme, 0, n), make([]int32, 0, n), make([]int32, 0, n)
	for _, t := range res.GetTokens() {
		l := Lexeme{Kind: int32(t.GetToken())}
		switch t.GetToken() {
		case pg_query.Token_SQL_COMMENT, pg_query.Token_C_COMMENT:
			continue
		case pg_query.Token_ICONST, pg_query.Token_FCONST, pg_query.Token_SCONST, pg_query.Token_USCONST,
			pg_query.Token_BCONST, pg_query.Token_XCONST:
		default:
			if t.GetStart() < 0 || t.GetEnd() > int32(len(sql)) || t.GetStart() > t.GetEnd() {
				return nil, nil, nil, false
			}
			l.Text = sql[t.GetStart():t.GetEnd()]
		}
		lexemes = append(lexemes, l)
		starts = append(starts, t.GetStart())
		ends = append(ends, t.GetEnd())
	}
	return lexemes, starts, ends, true
}

// read fills the read side from the statements and the scan of the first.
func (a *Analysis) read(stmts []*pg_query.RawStmt, s *scan) {
	switch len(stmts) {
	case 0:
		a.Reason = "empty query"
		return
	case 1:
	default:
		a.Reason = "several statements"
		return
	}
	stmt := stmts[0].GetStmt()
	if stmt.GetSelectStmt() == nil {
		a.Reason = "not a SELECT (" + statementTag(stmt) + ")"
		return
	}
	if why := s.why(); why != "" {
		a.Reason = why
		return
	}
	a.Candidate = true
	a.Relations = s.relations()
	a.Functions = sortedUnique(s.funcs)
	a.RowParams = readRows(stmt.GetSelectStmt(), s)
}

// Reasons a SELECT is not a candidate, most telling first: when a query
// has several, Reason names the first.
const (
	whyInto = iota
	whyLocking
	whyDataCTE
	whySetConfig
	whySample
	whyValueFunc
	whyCatalogCast
	whyClockLiteral
	whyRowLock
	whyCount
)

// scan is what one walk over a statement finds: the read side, for when
// it is a SELECT, and what any statement may write or set.
type scan struct {
	rels     []RelRef
	ctes     map[string]bool
	funcs    []string
	sublinks int              // subqueries in expressions
	reasons  [whyCount]string // first reason found of each kind

	// dml are the targets of every INSERT, UPDATE, DELETE and MERGE: the
	// statement itself, data-modifying CTEs, COPY (DELETE ...) TO. Whether
	// they run depends on the statement (not under PREPARE, CREATE RULE
	// or a plain EXPLAIN).
	dml       []string
	setConfig []*pg_query.FuncCall
}

// scanStatement walks stmt once.
func scanStatement(stmt *pg_query.Node) *scan {
	s := new(scan)
	walk(stmt, s.visit)
	return s
}

func (sc *scan) visit(m proto.Message) bool {
	switch n := m.(type) {
	case *pg_query.RangeVar:
		sc.rels = append(sc.rels, RelRef{Schema: n.GetSchemaname(), Name: n.GetRelname()})
	case *pg_query.FuncCall:
		sc.call(n)
	case *pg_query.A_Expr:
		sc.operator(n)
	case *pg_query.SubLink:
		sc.sublinks++
		op := lastString(n.GetOperName(), 0) // x < ANY (SELECT …)
		if op == "" && n.GetSubLinkType() == pg_query.SubLinkType_ANY_SUBLINK {
			op = "=" // x IN (SELECT …)
		}
		sc.uses(OperatorPrefix, op)
	case *pg_query.SortBy:
		sc.uses(OperatorPrefix, lastString(n.GetUseOp(), 0)) // ORDER BY x USING >
	case *pg_query.CaseExpr:
		if n.GetArg() != nil { // CASE x WHEN v: x = v
			sc.uses(OperatorPrefix, "=")
		}
	case *pg_query.JoinExpr:
		if n.GetIsNatural() || len(n.GetUsingClause()) > 0 {
			sc.uses(OperatorPrefix, "=")
		}
	case *pg_query.CommonTableExpr:
		sc.cte(n)
	case *pg_query.InsertStmt:
		sc.dml = appendRel(sc.dml, n.GetRelation())
	case *pg_query.UpdateStmt:
		sc.dml = appendRel(sc.dml, n.GetRelation())
	case *pg_query.DeleteStmt:
		sc.dml = appendRel(sc.dml, n.GetRelation())
	case *pg_query.MergeStmt:
		sc.dml = appendRel(sc.dml, n.GetRelation())
	case *pg_query.IntoClause:
		sc.reject(whyInto, "SELECT INTO")
	case *pg_query.LockingClause:
		sc.reject(whyLocking, lockingName(n.GetStrength()))
	case *pg_query.RangeTableSample:
		sc.reject(whySample, "TABLESAMPLE")
	case *pg_query.SQLValueFunction:
		sc.reject(whyValueFunc, valueFuncReason(n.GetOp()))
	case *pg_query.TypeCast:
		typ := lastString(n.GetTypeName().GetNames(), 0)
		if _, ok := CatalogTypes[typ]; ok {
			sc.reject(whyCatalogCast, "reads the catalog (::"+typ+")")
		}
		sc.uses(CastPrefix, typ)
	case *pg_query.ColumnRef:
		// xmax, cmin and cmax change when a row is locked (FOR UPDATE, a
		// foreign key's check) or an update of it rolls back, which the
		// change stream never carries. No user column has these names.
		switch col := lastString(n.GetFields(), 0); col {
		case "xmax", "cmin", "cmax":
			sc.reject(whyRowLock, "reads row lock state ("+col+")")
		}
	case *pg_query.A_Const:
		if s := n.GetSval(); s != nil && ReadsClock(s.GetSval()) {
			sc.reject(whyClockLiteral, "reads the clock ("+quoteLiteral(s.GetSval())+")")
		}
	}
	return true
}

func (sc *scan) call(fc *pg_query.FuncCall) {
	name := funcName(fc)
	sc.funcs = append(sc.funcs, name)
	if name == "set_config" {
		sc.setConfig = append(sc.setConfig, fc)
		sc.reject(whySetConfig, "changes the session (set_config)")
	}
}

// operator notes the operators e uses: its name's, or the comparisons a
// BETWEEN stands for.
func (sc *scan) operator(e *pg_query.A_Expr) {
	switch e.GetKind() {
	case pg_query.A_Expr_Kind_AEXPR_BETWEEN, pg_query.A_Expr_Kind_AEXPR_BETWEEN_SYM:
		sc.uses(OperatorPrefix, ">=")
		sc.uses(OperatorPrefix, "<=")
	case pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN, pg_query.A_Expr_Kind_AEXPR_NOT_BETWEEN_SYM:
		sc.uses(OperatorPrefix, "<")
		sc.uses(OperatorPrefix, ">")
	default:
		// IN and IS DISTINCT FROM are named "=" or "<>", LIKE "~~".
		sc.uses(OperatorPrefix, lastString(e.GetName(), 0))
	}
}

// uses notes the functions of an operator or cast (prefix) named name, if
// any.
func (sc *scan) uses(prefix, name string) {
	if name != "" {
		sc.funcs = append(sc.funcs, prefix+name)
	}
}

func (sc *scan) reject(why int, reason string) {
	if sc.reasons[why] == "" {
		sc.reasons[why] = reason
	}
}

func (sc *scan) why() string {
	for _, reason := range sc.reasons {
		if reason != "" {
			return reason
		}
	}
	return ""
}

// cte notes a CTE's name and rejects a data-modifying one.
func (sc *scan) cte(c *pg_query.CommonTableExpr) {
	if sc.ctes == nil {
		sc.ctes = make(map[string]bool)
	}
	sc.ctes[c.GetCtename()] = true
	switch c.GetCtequery().GetNode().(type) {
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt,
		*pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt:
		sc.reject(whyDataCTE, "data-modifying CTE")
	}
}

// relations returns the relations read, sorted and deduplicated, with
// MaybeCTE set.
func (sc *scan) relations() []RelRef {
	for i := range sc.rels {
		sc.rels[i].MaybeCTE = sc.rels[i].Schema == "" && sc.ctes[sc.rels[i].Name]
	}
	slices.SortFunc(sc.rels, func(x, y RelRef) int {
		return cmp.Or(cmp.Compare(x.Name, y.Name), cmp.Compare(x.Schema, y.Schema))
	})
	return slices.Compact(sc.rels)
}

func lockingName(s pg_query.LockClauseStrength) string {
	switch s {
	case pg_query.LockClauseStrength_LCS_FORKEYSHARE:
		return "FOR KEY SHARE"
	case pg_query.LockClauseStrength_LCS_FORSHARE:
		return "FOR SHARE"
	case pg_query.LockClauseStrength_LCS_FORNOKEYUPDATE:
		return "FOR NO KEY UPDATE"
	}
	return "FOR UPDATE"
}

// CatalogTypes are the object identifier types whose input and output
// functions look names up in the system catalogs, by name, with their
// OIDs (fixed across versions): 'orders'::regclass is an OID that changes
// when the table is dropped and created again, and 16384::regclass a name
// that changes with ALTER TABLE ... RENAME. The change stream carries no
// catalog changes, so such a cast is never cached, nor a read of a table
// with a column of such a type (RelInfo.CatalogColumn). regconfig and
// regdictionary are not among them: text search configurations are not
// watched for to_tsvector('english', …) either (README), ORMs spell that
// call to_tsvector('english'::regconfig, …), and a column of
// configurations beside documents is their one common use in tables.
var CatalogTypes = map[string]uint32{
	"regproc": 24, "regprocedure": 2202, "regoper": 2203, "regoperator": 2204,
	"regclass": 2205, "regtype": 2206, "regnamespace": 4089, "regrole": 4096,
	"regcollation": 4191,
}

// valueFuncReason names an SQL value function such as CURRENT_TIMESTAMP(3)
// and what it reads.
func valueFuncReason(op pg_query.SQLValueFunctionOp) string {
	name := strings.TrimSuffix(strings.TrimPrefix(op.String(), "SVFOP_"), "_N")
	switch op {
	case pg_query.SQLValueFunctionOp_SVFOP_CURRENT_ROLE, pg_query.SQLValueFunctionOp_SVFOP_CURRENT_USER,
		pg_query.SQLValueFunctionOp_SVFOP_USER, pg_query.SQLValueFunctionOp_SVFOP_SESSION_USER,
		pg_query.SQLValueFunctionOp_SVFOP_CURRENT_CATALOG, pg_query.SQLValueFunctionOp_SVFOP_CURRENT_SCHEMA:
		return "reads the session (" + name + ")"
	}
	return "reads the clock (" + name + ")"
}

// ReadsClock reports whether a string literal (or a text-format parameter
// value) can read the clock when Postgres converts it to a date or time:
// it holds one of the words now, today, tomorrow or yesterday, in any case
// ('now', ' Today ', 'tomorrow 10:00', '{now}'). Literals are checked
// whether or not they are cast, because an uncast literal compared with a
// timestamp column is converted too; a text literal that merely contains
// such a word is a lost cache hit, not a wrong answer.
func ReadsClock(s string) bool {
	for word := range strings.FieldsFuncSeq(s, notASCIILetter) {
		for _, clock := range [...]string{"now", "today", "tomorrow", "yesterday"} {
			if strings.EqualFold(word, clock) {
				return true
			}
		}
	}
	return false
}

func notASCIILetter(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
}

// quoteLiteral quotes s for a Reason, shortened.
func quoteLiteral(s string) string {
	const limit = 40
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit], "") + "..."
	}
	return "'" + s + "'"
}

// statementTags names the statements most often sent instead of a SELECT.
var statementTags = map[protoreflect.Name]string{
	"InsertStmt":        "INSERT",
	"UpdateStmt":        "UPDATE",
	"DeleteStmt":        "DELETE",
	"MergeStmt":         "MERGE",
	"VariableSetStmt":   "SET",
	"VariableShowStmt":  "SHOW",
	"TransactionStmt":   "transaction control",
	"ExplainStmt":       "EXPLAIN",
	"CopyStmt":          "COPY",
	"CallStmt":          "CALL",
	"DoStmt":            "DO",
	"ExecuteStmt":       "EXECUTE",
	"PrepareStmt":       "PREPARE",
	"DeclareCursorStmt": "DECLARE",
	"FetchStmt":         "FETCH",
}

// statementTag names stmt's type: a command name for common ones, else the
// parse node's name ("CreateStmt").
func statementTag(stmt *pg_query.Node) string {
	m := stmt.ProtoReflect()
	fd := m.WhichOneof(m.Descriptor().Oneofs().Get(0))
	if fd == nil {
		return "unknown"
	}
	name := fd.Message().Name()
	if tag, ok := statementTags[name]; ok {
		return tag
	}
	return string(name)
}

// sortedUnique sorts s and removes duplicates.
func sortedUnique(s []string) []string {
	slices.Sort(s)
	return slices.Compact(s)
}
