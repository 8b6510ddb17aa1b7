package cachepolicy

import pg_query "github.com/pganalyze/pg_query_go/v6"

// opensBlock reports whether stmt is a BEGIN or START TRANSACTION whose
// options leave the block it opens at read committed, or at the session's
// default isolation level: READ ONLY, READ WRITE, [NOT] DEFERRABLE (which
// matters only to serializable blocks), and ISOLATION LEVEL READ
// COMMITTED or READ UNCOMMITTED (which PostgreSQL runs as read committed).
// In such a block each statement takes a snapshot of its own, so a read
// that follows nothing but reads gets what it would get outside one.
func opensBlock(stmt *pg_query.Node) bool {
	t := stmt.GetTransactionStmt()
	if t == nil {
		return false
	}
	switch t.GetKind() {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
	default:
		return false
	}
	for _, o := range t.GetOptions() {
		d := o.GetDefElem()
		switch d.GetDefname() {
		case "transaction_read_only", "transaction_deferrable":
		case "transaction_isolation":
			switch d.GetArg().GetAConst().GetSval().GetSval() {
			case "read committed", "read uncommitted":
			default:
				return false
			}
		default:
			return false
		}
	}
	return true
}
