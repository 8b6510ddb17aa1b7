package pglogical

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// queryRows runs one SQL statement with the simple protocol, which a
// replication connection requires, and returns its rows as text; NULL is "".
func queryRows(ctx context.Context, conn *pgconn.PgConn, sql string) ([][]string, error) {
	results, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var rows [][]string
	for _, r := range results {
		if r.Err != nil {
			return nil, r.Err
		}
		for _, row := range r.Rows {
			vals := make([]string, len(row))
			for i, v := range row {
				vals[i] = string(v)
			}
			rows = append(rows, vals)
		}
	}
	return rows, nil
}

// queryRow is queryRows for exactly one row of at least n columns; ok is
// false if there is no row.
func queryRow(ctx context.Context, conn *pgconn.PgConn, sql string, n int) (row []string, ok bool, err error) {
	rows, err := queryRows(ctx, conn, sql)
	if err != nil || len(rows) == 0 {
		return nil, false, err
	}
	if len(rows) > 1 || len(rows[0]) < n {
		return nil, false, fmt.Errorf("%.40q: got %d rows of %d columns; want 1 of %d", sql, len(rows), len(rows[0]), n)
	}
	return rows[0], true, nil
}

// quoteLiteral quotes s as an SQL string constant, whatever
// standard_conforming_strings is.
func quoteLiteral(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return `E'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

// quoteIdent quotes s as an SQL identifier, which then matches s exactly.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// showIdent is s as an operator would type it in a fix: quoted only if
// needed.
func showIdent(s string) string {
	if plainIdent.MatchString(s) {
		return s
	}
	return quoteIdent(s)
}

// replicationString quotes s as a string in a replication command
// (START_REPLICATION options), whose scanner knows only a doubled single
// quote as an escape.
func replicationString(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

// validSlotName matches what PostgreSQL accepts as a replication slot name
// (ReplicationSlotValidateName), so a name can go into a replication
// command unquoted.
var validSlotName = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// parseLSN parses "X/Y", as the server prints an LSN.
func parseLSN(s string) (uint64, error) {
	lsn, err := pglogrepl.ParseLSN(s)
	return uint64(lsn), err
}
