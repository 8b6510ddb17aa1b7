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
	// key is the index of the one replica identity column, or -1 when
	// there are none or several (REPLICA IDENTITY FULL flags them all).
	key int
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
	r := relation{schema: m.Namespace, name: m.RelationName, columns: make([]column, 0, len(m.Columns)), key: -1}
	keys := 0
	for _, c := range m.Columns {
		if c == nil {
			// Tuples would not line up with the columns.
			return relation{schema: r.schema, name: r.name, key: -1}
		}
		r.columns = append(r.columns, column{name: c.Name, typ: c.DataType, mod: c.TypeModifier})
		if c.Flags&1 != 0 {
			keys++
			r.key = len(r.columns) - 1
		}
	}
	if keys != 1 {
		r.key = -1
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

// maxKeys bounds the keys a transaction's change of one table lists;
// beyond it the change is to any rows.
const maxKeys = 256

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
	xid   uint32              // the open transaction's, from its Begin
	txn   []invalidator.Change
	seen  map[changeKey]int // index in txn of each change
}

func newDecoder() *decoder {
	return &decoder{rels: make(map[uint32]relation), seen: make(map[changeKey]int)}
}

// step is what one message asks of the stream.
type step struct {
	// apply, if not empty, goes to Handler.Apply.
	apply []invalidator.Change
	// commitEnd, if not zero, is the end of a transaction just applied:
	// every commit up to it has been passed to Handler.Apply.
	commitEnd uint64
	// xid is the transaction ID of the commit applied (apply), or 0.
	xid uint32
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
		d.inTxn, d.xid = true, m.Xid
		return step{}, nil
	case *pglogrepl.CommitMessage:
		return d.commit(m)
	case *pglogrepl.RelationMessage:
		return d.relation(m, pos), nil
	case *rowChange:
		return step{}, d.markRows(m)
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if err := d.mark("Truncate", id, invalidator.Truncate, nil); err != nil {
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
	changes, xid := d.txn, d.xid
	for i := range changes {
		changes[i].Pos = uint64(m.CommitLSN)
	}
	d.endSession()
	return step{apply: changes, commitEnd: uint64(m.TransactionEndLSN), xid: xid}, nil
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

// markRows adds a row change to the open transaction, with the keys of the
// rows when the table has a single-column replica identity.
func (d *decoder) markRows(m *rowChange) error {
	r, ok := d.rels[m.oid]
	if !ok || r.key < 0 || m.large {
		return d.mark(m.what(), m.oid, invalidator.Data, nil)
	}
	keys := make([]string, 0, len(m.tuples))
	for _, t := range m.tuples {
		key, ok := tupleColumn(t, r.key)
		if !ok {
			// Unchanged TOAST, NULL or malformed: not a known row.
			return d.mark(m.what(), m.oid, invalidator.Data, nil)
		}
		if !slices.Contains(keys, key) {
			keys = append(keys, key)
		}
	}
	return d.mark(m.what(), m.oid, invalidator.Data, &rowKeys{r.columns[r.key].name, keys})
}

// rowKeys are rows of a table by a key column.
type rowKeys struct {
	column string
	keys   []string
}

// mark adds a change to table oid to the open transaction: to the rows
// named by rows, or to any rows if rows is nil.
func (d *decoder) mark(what string, oid uint32, kind invalidator.ChangeKind, rows *rowKeys) error {
	if !d.inTxn {
		return fmt.Errorf("%w: %s outside a transaction", errProtocol, what)
	}
	r, ok := d.rels[oid]
	if !ok {
		return fmt.Errorf("%w: %s of table OID %d before its Relation message", errProtocol, what, oid)
	}
	k := changeKey{r.schema, r.name, kind}
	i, seen := d.seen[k]
	if !seen {
		d.seen[k] = len(d.txn)
		c := invalidator.Change{Schema: r.schema, Table: r.name, Kind: kind}
		if rows != nil {
			c.KeyColumn, c.Keys = rows.column, rows.keys
		}
		d.txn = append(d.txn, c)
		return nil
	}
	c := &d.txn[i]
	switch {
	case c.KeyColumn == "":
		// Already any rows.
	case rows == nil || rows.column != c.KeyColumn || len(c.Keys)+len(rows.keys) > maxKeys:
		c.KeyColumn, c.Keys = "", nil
	default:
		for _, key := range rows.keys {
			if !slices.Contains(c.Keys, key) {
				c.Keys = append(c.Keys, key)
			}
		}
	}
	return nil
}

// parseMessage decodes the pgoutput message in an XLogData.
//
// Row changes (Insert, Update, Delete) are decoded here, only as far as
// the table's OID and the bounds of their tuples: pglogrepl.Parse would
// copy every column value of every row (allocating as much as a length
// field claims, up to 4 GiB), and the stream needs one at most. A Truncate's table count is checked against its
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

// rowChange is an Insert, Update or Delete message: its table and its
// tuples (old key or row, new row), undecoded.
type rowChange struct {
	kind   pglogrepl.MessageType
	oid    uint32
	tuples [][]byte // each a TupleData, checked to be well formed; copied
	// large: a tuple was over maxTupleCopy and tuples is empty, so the
	// rows are not known.
	large bool
}

// maxTupleCopy bounds the bytes of a row change kept for decoding its key
// later (the message's buffer is reused by the next receive).
const maxTupleCopy = 8 << 10

func (m *rowChange) Type() pglogrepl.MessageType { return m.kind }

func (m *rowChange) what() string { return m.kind.String() }

// parseRowChange decodes an Insert ('I', OID, 'N' tuple), Update ('U', OID,
// optional 'K' or 'O' tuple, 'N' tuple) or Delete ('D', OID, 'K' or 'O'
// tuple) of protocol version 1.
func parseRowChange(data []byte) (pglogrepl.Message, error) {
	kind := pglogrepl.MessageType(data[0])
	bad := func(why string) error {
		return fmt.Errorf("%w: %s message of %d bytes: %s", errProtocol, kind, len(data), why)
	}
	if len(data) < 6 {
		return nil, bad("too short")
	}
	m := &rowChange{kind: kind, oid: binary.BigEndian.Uint32(data[1:])}
	rest := data[5:]
	for len(rest) > 0 {
		tag := rest[0]
		switch {
		case tag == 'N',
			(tag == 'K' || tag == 'O') && kind != pglogrepl.MessageTypeInsert && len(m.tuples) == 0:
		default:
			return nil, bad(fmt.Sprintf("unexpected tuple tag %q", tag))
		}
		n, err := tupleLen(rest[1:])
		if err != nil {
			return nil, bad(err.Error())
		}
		if n > maxTupleCopy || m.large {
			m.large, m.tuples = true, nil
		} else {
			m.tuples = append(m.tuples, slices.Clone(rest[1:1+n]))
		}
		rest = rest[1+n:]
		if tag == 'N' && len(rest) > 0 {
			return nil, bad("data after the new tuple")
		}
	}
	if len(m.tuples) == 0 && !m.large {
		return nil, bad("no tuple")
	}
	return m, nil
}

// tupleLen returns the length of the TupleData at the start of b: Int16
// column count, then per column Byte1 kind ('n' null, 'u' unchanged TOAST,
// 't' text or 'b' binary followed by Int32 length and the value).
func tupleLen(b []byte) (int, error) {
	if len(b) < 2 {
		return 0, errors.New("truncated tuple")
	}
	cols, off := int(binary.BigEndian.Uint16(b)), 2
	for range cols {
		if off >= len(b) {
			return 0, errors.New("truncated tuple")
		}
		switch b[off] {
		case 'n', 'u':
			off++
		case 't', 'b':
			if len(b)-off < 5 {
				return 0, errors.New("truncated tuple")
			}
			n := uint64(binary.BigEndian.Uint32(b[off+1:]))
			if n > uint64(len(b)-off-5) {
				return 0, errors.New("column value past the message end")
			}
			off += 5 + int(n)
		default:
			return 0, fmt.Errorf("unknown column kind %q", b[off])
		}
	}
	return off, nil
}

// tupleColumn returns the text value of column i of a TupleData that
// tupleLen accepted; false if it is NULL, unchanged TOAST, binary or
// missing.
func tupleColumn(t []byte, i int) (string, bool) {
	cols, off := int(binary.BigEndian.Uint16(t)), 2
	if i >= cols {
		return "", false
	}
	for c := 0; ; c++ {
		kind := t[off]
		if kind == 'n' || kind == 'u' {
			if c == i {
				return "", false
			}
			off++
			continue
		}
		n := int(binary.BigEndian.Uint32(t[off+1:]))
		if c == i {
			return string(t[off+5 : off+5+n]), kind == 't'
		}
		off += 5 + n
	}
}
