package invalidator

import "strconv"

// Change is one table-level change from a committed transaction.
type Change struct {
	Schema string
	// Table is the relation's name (relname). With
	// publish_via_partition_root, a partition's changes come as the root's.
	Table string
	Kind  ChangeKind
	// KeyColumn and Keys narrow a Data change to some rows: every row it
	// changed had one of Keys, old or new, in KeyColumn, the table's
	// single-column replica identity (its primary key, by default), as
	// PostgreSQL prints the values. KeyColumn "" means any rows.
	KeyColumn string
	Keys      []string
	// Pos is the LSN of the commit, or of the Relation message for Schema.
	Pos uint64
}

// ChangeKind says what happened to a table.
type ChangeKind int

const (
	// Data is an INSERT, UPDATE or DELETE of some rows (including those
	// made by triggers and foreign-key cascades).
	Data ChangeKind = iota
	// Truncate is a TRUNCATE of the whole table.
	Truncate
	// Schema is a changed definition: a Relation message showed other
	// columns, column types or name than before for the same table.
	Schema
)

func (k ChangeKind) String() string {
	switch k {
	case Data:
		return "Data"
	case Truncate:
		return "Truncate"
	case Schema:
		return "Schema"
	}
	return "ChangeKind(" + strconv.Itoa(int(k)) + ")"
}
