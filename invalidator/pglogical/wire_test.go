package pglogical

import "encoding/binary"

// Encoders of the replication stream's messages, for tests and fuzz seeds.
// Layouts are from the PostgreSQL documentation, "Logical Replication
// Message Formats" and "Streaming Replication Protocol".

func be64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
func be32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func be16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func cstr(b []byte, s string) []byte { return append(append(b, s...), 0) }

// xlogData wraps a pgoutput message in a CopyData payload.
func xlogData(walStart, walEnd uint64, msg []byte) []byte {
	b := []byte{'w'}
	b = be64(b, walStart)
	b = be64(b, walEnd)
	b = be64(b, 0) // send time
	return append(b, msg...)
}

func keepaliveData(walEnd uint64, reply bool) []byte {
	b := []byte{'k'}
	b = be64(b, walEnd)
	b = be64(b, 0) // send time
	if reply {
		return append(b, 1)
	}
	return append(b, 0)
}

func beginMsg(finalLSN uint64, xid uint32) []byte {
	b := []byte{'B'}
	b = be64(b, finalLSN)
	b = be64(b, 0) // commit time
	return be32(b, xid)
}

func commitMsg(commitLSN, endLSN uint64) []byte {
	b := []byte{'C', 0} // flags
	b = be64(b, commitLSN)
	b = be64(b, endLSN)
	return be64(b, 0) // commit time
}

// relationMsg describes table oid with int4 columns named cols.
func relationMsg(oid uint32, schema, name string, cols ...string) []byte {
	b := []byte{'R'}
	b = be32(b, oid)
	b = cstr(b, schema)
	b = cstr(b, name)
	b = append(b, 'd') // replica identity: default
	b = be16(b, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, 0) // flags
		b = cstr(b, c)
		b = be32(b, 23)         // int4
		b = be32(b, 0xffffffff) // typmod -1
	}
	return b
}

// tuple is a TupleData with one text column "1".
func tuple(b []byte) []byte {
	b = be16(b, 1)
	b = append(b, 't')
	b = be32(b, 1)
	return append(b, '1')
}

func insertMsg(oid uint32) []byte { return tuple(append(be32([]byte{'I'}, oid), 'N')) }
func updateMsg(oid uint32) []byte { return tuple(append(be32([]byte{'U'}, oid), 'N')) }
func deleteMsg(oid uint32) []byte { return tuple(append(be32([]byte{'D'}, oid), 'K')) }

func truncateMsg(oids ...uint32) []byte {
	b := be32([]byte{'T'}, uint32(len(oids)))
	b = append(b, 0) // options
	for _, o := range oids {
		b = be32(b, o)
	}
	return b
}

// keyedRelationMsg is relationMsg with the columns in keys flagged as the
// replica identity.
func keyedRelationMsg(oid uint32, name string, cols []string, keys ...string) []byte {
	b := []byte{'R'}
	b = be32(b, oid)
	b = cstr(b, "public")
	b = cstr(b, name)
	b = append(b, 'd')
	b = be16(b, uint16(len(cols)))
	for _, c := range cols {
		flags := byte(0)
		for _, k := range keys {
			if k == c {
				flags = 1
			}
		}
		b = append(b, flags)
		b = cstr(b, c)
		b = be32(b, 23)
		b = be32(b, 0xffffffff)
	}
	return b
}

// col is one column of a TupleData: kind 'n', 'u', 't' or 'b', and a value
// for 't' and 'b'.
type col struct {
	kind  byte
	value string
}

func tupleOf(b []byte, cols ...col) []byte {
	b = be16(b, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, c.kind)
		if c.kind == 't' || c.kind == 'b' {
			b = be32(b, uint32(len(c.value)))
			b = append(b, c.value...)
		}
	}
	return b
}

// rowMsg is an Insert, Update or Delete of table oid with tuples, each
// after its tag ('N', 'K' or 'O').
func rowMsg(kind byte, oid uint32, tuples ...any) []byte {
	b := be32([]byte{kind}, oid)
	for i := 0; i < len(tuples); i += 2 {
		b = append(b, tuples[i].(byte))
		b = tupleOf(b, tuples[i+1].([]col)...)
	}
	return b
}
