package pglogical

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pglogrepl"

	"github.com/sqlcache/sqlcache/invalidator"
)

// relation is what a Relation message said about a table.
type relation struct {
	schema, name string
	columns      []column
}

// column is the part of a column's definition that can change an answer.
// Flags (part of the key) and the replica identity cannot, so a change to
// them is not a Schema change.
type column struct {
	name string
	typ  uint32
	mod  int32
}

func relationOf(m *pglogrepl.RelationMessage) relation {
	r := relation{schema: m.Namespace, name: m.RelationName, columns: make([]column, 0, len(m.Columns))}
	for _, c := range m.Columns {
		if c != nil {
			r.columns = append(r.columns, column{name: c.Name, typ: c.DataType, mod: c.TypeModifier})
		}
	}
	return r
}

func (r relation) equal(o relation) bool {
	return r.schema == o.schema && r.name == o.name && slices.Equal(r.columns, o.columns)
}

// changeKey deduplicates a transaction's changes.
type changeKey struct {
	schema, table string
	kind          invalidator.ChangeKind
}

// decoder turns pgoutput messages into changes: the transaction state
// machine of a stream. It is not safe for concurrent use.
//
// Relations outlive a replication session: the walsender sends a Relation
// message before a table's first change in each session, and comparing it
// with the one from the previous session reveals a definition changed
// while disconnected.
type decoder struct {
	rels  map[uint32]relation // by table OID
	inTxn bool                // between Begin and Commit
	txn   []invalidator.Change
	seen  map[changeKey]bool // keys of txn
}

func newDecoder() *decoder {
	return &decoder{rels: make(map[uint32]relation), seen: make(map[changeKey]bool)}
}

// step is what one message asks of the stream.
type step struct {
	// apply, if not empty, goes to Handler.Apply.
	apply []invalidator.Change
	// commitEnd, if not zero, is the end of a transaction just applied:
	// every commit up to it has been passed to Handler.Apply.
	commitEnd uint64
}

// errProtocol marks messages out of order or naming unknown tables: the
// session cannot continue, and reconnecting starts clean.
var errProtocol = errors.New("unexpected pgoutput message")

// endSession forgets an unfinished transaction: a new session sends it
// again from its Begin.
func (d *decoder) endSession() {
	d.inTxn = false
	d.txn = nil
	clear(d.seen)
}

// decode handles one message. pos is the WAL position of the XLogData
// that carried it.
func (d *decoder) decode(msg pglogrepl.Message, pos uint64) (step, error) {
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		if d.inTxn {
			return step{}, fmt.Errorf("%w: Begin inside a transaction", errProtocol)
		}
		d.inTxn = true
		return step{}, nil
	case *pglogrepl.CommitMessage:
		return d.commit(m)
	case *pglogrepl.RelationMessage:
		return d.relation(m, pos), nil
	case *pglogrepl.InsertMessage:
		return step{}, d.mark("Insert", m.RelationID, invalidator.Data)
	case *pglogrepl.UpdateMessage:
		return step{}, d.mark("Update", m.RelationID, invalidator.Data)
	case *pglogrepl.DeleteMessage:
		return step{}, d.mark("Delete", m.RelationID, invalidator.Data)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if err := d.mark("Truncate", id, invalidator.Truncate); err != nil {
				return step{}, err
			}
		}
		return step{}, nil
	case *pglogrepl.TypeMessage, *pglogrepl.OriginMessage, *pglogrepl.LogicalDecodingMessage:
		// Types name column types, origins name the node a change came
		// from, messages are not requested: none changes a table.
		return step{}, nil
	}
	return step{}, fmt.Errorf("%w: %T", errProtocol, msg)
}

// commit ends the transaction and hands over its changes.
func (d *decoder) commit(m *pglogrepl.CommitMessage) (step, error) {
	if !d.inTxn {
		return step{}, fmt.Errorf("%w: Commit outside a transaction", errProtocol)
	}
	changes := d.txn
	for i := range changes {
		changes[i].Pos = uint64(m.CommitLSN)
	}
	d.endSession()
	return step{apply: changes, commitEnd: uint64(m.TransactionEndLSN)}, nil
}

// relation records a table's definition and reports a Schema change if it
// differs from the last one seen: under the old name too if it was renamed.
func (d *decoder) relation(m *pglogrepl.RelationMessage, pos uint64) step {
	r := relationOf(m)
	old, seen := d.rels[m.RelationID]
	d.rels[m.RelationID] = r
	if !seen || old.equal(r) {
		return step{}
	}
	changes := []invalidator.Change{{Schema: r.schema, Table: r.name, Kind: invalidator.Schema, Pos: pos}}
	if old.schema != r.schema || old.name != r.name {
		changes = append(changes, invalidator.Change{Schema: old.schema, Table: old.name, Kind: invalidator.Schema, Pos: pos})
	}
	return step{apply: changes}
}

// mark adds a change to table oid to the open transaction.
func (d *decoder) mark(what string, oid uint32, kind invalidator.ChangeKind) error {
	if !d.inTxn {
		return fmt.Errorf("%w: %s outside a transaction", errProtocol, what)
	}
	r, ok := d.rels[oid]
	if !ok {
		return fmt.Errorf("%w: %s of table OID %d before its Relation message", errProtocol, what, oid)
	}
	k := changeKey{r.schema, r.name, kind}
	if !d.seen[k] {
		d.seen[k] = true
		d.txn = append(d.txn, invalidator.Change{Schema: r.schema, Table: r.name, Kind: kind})
	}
	return nil
}

// parseMessage decodes the pgoutput message in an XLogData.
//
// Row changes (Insert, Update, Delete) are decoded here, only as far as
// the table's OID: pglogrepl.Parse would copy every column value of every
// row (allocating as much as a length field claims, up to 4 GiB), and the
// stream needs none. A Truncate's table count is checked against its
// length for the same reason. Everything else goes to pglogrepl.Parse,
// which indexes its input without checking lengths (a truncated message
// panics): a panic is turned into an error here, so that a corrupt message
// ends the session, not the process.
func parseMessage(data []byte) (msg pglogrepl.Message, err error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", errProtocol)
	}
	typ := pglogrepl.MessageType(data[0])
	switch typ {
	case pglogrepl.MessageTypeInsert, pglogrepl.MessageTypeUpdate, pglogrepl.MessageTypeDelete:
		return parseRowChange(data)
	case pglogrepl.MessageTypeTruncate:
		// Byte1('T'), Int32 count, Int8 options, Int32 OID × count.
		if len(data) < 6 || uint64(len(data)-6) < 4*uint64(binary.BigEndian.Uint32(data[1:])) {
			return nil, fmt.Errorf("%w: Truncate message of %d bytes too short", errProtocol, len(data))
		}
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("%w: malformed %s message: %v", errProtocol, typ, r)
		}
	}()
	msg, err = pglogrepl.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s message (%q): %w", errProtocol, typ, data[0], err)
	}
	return msg, nil
}

// parseRowChange decodes the OID of an Insert, Update or Delete message:
// Byte1 type, Int32 OID, then tuples.
func parseRowChange(data []byte) (pglogrepl.Message, error) {
	if len(data) < 6 {
		return nil, fmt.Errorf("%w: %s message of %d bytes too short", errProtocol, pglogrepl.MessageType(data[0]), len(data))
	}
	oid := binary.BigEndian.Uint32(data[1:])
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeInsert:
		m := &pglogrepl.InsertMessage{RelationID: oid}
		m.SetType(pglogrepl.MessageTypeInsert)
		return m, nil
	case pglogrepl.MessageTypeUpdate:
		m := &pglogrepl.UpdateMessage{RelationID: oid}
		m.SetType(pglogrepl.MessageTypeUpdate)
		return m, nil
	}
	m := &pglogrepl.DeleteMessage{RelationID: oid}
	m.SetType(pglogrepl.MessageTypeDelete)
	return m, nil
}
