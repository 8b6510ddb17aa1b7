package pglogical

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pglogrepl"

	"github.com/sqlcache/sqlcache/invalidator"
)

// outcome is a step, comparable.
type outcome struct {
	Apply     []invalidator.Change
	CommitEnd uint64
}

func TestDecoder(t *testing.T) {
	const (
		ta = 16384
		tb = 16390
	)
	rel := func(oid uint32, name string, cols ...string) []byte { return relationMsg(oid, "public", name, cols...) }
	ch := func(table string, kind invalidator.ChangeKind, pos uint64) invalidator.Change {
		return invalidator.Change{Schema: "public", Table: table, Kind: kind, Pos: pos}
	}
	tests := []struct {
		name    string
		msgs    [][]byte // pgoutput messages, at positions 1, 2, 3...
		want    []outcome
		wantErr bool
	}{
		{
			name: "one table, deduplicated",
			msgs: [][]byte{beginMsg(90, 7), rel(ta, "a", "id"), insertMsg(ta), updateMsg(ta), deleteMsg(ta), insertMsg(ta), commitMsg(90, 100)},
			want: []outcome{{Apply: []invalidator.Change{ch("a", invalidator.Data, 90)}, CommitEnd: 100}},
		},
		{
			name: "tables and kinds in order of first change",
			msgs: [][]byte{beginMsg(90, 7), rel(tb, "b", "id"), rel(ta, "a", "id"), insertMsg(tb), truncateMsg(ta, tb), insertMsg(ta), deleteMsg(tb), commitMsg(90, 100)},
			want: []outcome{{Apply: []invalidator.Change{
				ch("b", invalidator.Data, 90), ch("a", invalidator.Truncate, 90), ch("b", invalidator.Truncate, 90), ch("a", invalidator.Data, 90),
			}, CommitEnd: 100}},
		},
		{
			name: "empty transaction still advances",
			msgs: [][]byte{beginMsg(90, 7), commitMsg(90, 100)},
			want: []outcome{{CommitEnd: 100}},
		},
		{
			name: "two transactions",
			msgs: [][]byte{rel(ta, "a", "id"), beginMsg(90, 7), insertMsg(ta), commitMsg(90, 100), beginMsg(190, 8), deleteMsg(ta), commitMsg(190, 200)},
			want: []outcome{
				{Apply: []invalidator.Change{ch("a", invalidator.Data, 90)}, CommitEnd: 100},
				{Apply: []invalidator.Change{ch("a", invalidator.Data, 190)}, CommitEnd: 200},
			},
		},
		{
			name: "same definition again is no Schema change",
			msgs: [][]byte{beginMsg(90, 7), rel(ta, "a", "id"), commitMsg(90, 100), beginMsg(190, 8), rel(ta, "a", "id"), commitMsg(190, 200)},
			want: []outcome{{CommitEnd: 100}, {CommitEnd: 200}},
		},
		{
			name: "added column is a Schema change at once",
			msgs: [][]byte{rel(ta, "a", "id"), beginMsg(190, 8), rel(ta, "a", "id", "v"), insertMsg(ta), commitMsg(190, 200)},
			want: []outcome{
				{Apply: []invalidator.Change{ch("a", invalidator.Schema, 3)}},
				{Apply: []invalidator.Change{ch("a", invalidator.Data, 190)}, CommitEnd: 200},
			},
		},
		{
			name: "rename is a Schema change of both names",
			msgs: [][]byte{rel(ta, "a", "id"), rel(ta, "z", "id")},
			want: []outcome{{Apply: []invalidator.Change{ch("z", invalidator.Schema, 2), ch("a", invalidator.Schema, 2)}}},
		},
		{
			name: "column type change is a Schema change",
			msgs: [][]byte{rel(ta, "a", "id"), func() []byte {
				m := rel(ta, "a", "id")
				m[len(m)-8+3] = 20 // int8, not int4
				return m
			}()},
			want: []outcome{{Apply: []invalidator.Change{ch("a", invalidator.Schema, 2)}}},
		},
		{
			name: "key flag change is not",
			msgs: [][]byte{rel(ta, "a", "id"), func() []byte {
				m := rel(ta, "a", "id")
				m[len(m)-8-len("id")-2] = 1 // flags: part of the key
				return m
			}()},
		},
		{
			name: "type and origin messages are ignored",
			msgs: [][]byte{beginMsg(90, 7), {'Y', 0, 0, 0, 23, 'p', 0, 'i', 0}, append(be64([]byte{'O'}, 5), 'x', 0), commitMsg(90, 100)},
			want: []outcome{{CommitEnd: 100}},
		},
		{name: "change before its Relation", msgs: [][]byte{beginMsg(90, 7), insertMsg(ta)}, wantErr: true},
		{name: "change outside a transaction", msgs: [][]byte{rel(ta, "a", "id"), insertMsg(ta)}, wantErr: true},
		{name: "truncate outside a transaction", msgs: [][]byte{rel(ta, "a", "id"), truncateMsg(ta)}, wantErr: true},
		{name: "nested Begin", msgs: [][]byte{beginMsg(90, 7), beginMsg(91, 8)}, wantErr: true},
		{name: "Commit without Begin", msgs: [][]byte{commitMsg(90, 100)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDecoder()
			var got []outcome
			var err error
			for i, raw := range tt.msgs {
				msg, perr := parseMessage(raw)
				if perr != nil {
					t.Fatalf("message %d: %v", i, perr)
				}
				var st step
				if st, err = d.decode(msg, uint64(i+1)); err != nil {
					break
				}
				if len(st.apply) > 0 || st.commitEnd != 0 {
					got = append(got, outcome{st.apply, st.commitEnd})
				}
			}
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("error %v; want error: %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errProtocol) {
				t.Errorf("error %v is not errProtocol", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecoderEndSession: a transaction cut off by a disconnection is
// forgotten, and is sent again whole by the next session; relations are
// kept, so a definition changed meanwhile still shows.
func TestDecoderEndSession(t *testing.T) {
	d := newDecoder()
	for _, raw := range [][]byte{relationMsg(1, "s", "a", "x"), beginMsg(90, 7), insertMsg(1)} {
		msg, _ := parseMessage(raw)
		if _, err := d.decode(msg, 1); err != nil {
			t.Fatal(err)
		}
	}
	d.endSession()
	var got []outcome
	for _, raw := range [][]byte{beginMsg(90, 7), relationMsg(1, "s", "a", "x", "y"), insertMsg(1), commitMsg(90, 100)} {
		msg, _ := parseMessage(raw)
		st, err := d.decode(msg, 5)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.apply) > 0 || st.commitEnd != 0 {
			got = append(got, outcome{st.apply, st.commitEnd})
		}
	}
	want := []outcome{
		{Apply: []invalidator.Change{{Schema: "s", Table: "a", Kind: invalidator.Schema, Pos: 5}}},
		{Apply: []invalidator.Change{{Schema: "s", Table: "a", Kind: invalidator.Data, Pos: 90}}, CommitEnd: 100},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestDecodeCopyData(t *testing.T) {
	tests := []struct {
		name    string
		data    []byte
		want    inbound // without msg
		msgType pglogrepl.MessageType
		wantErr bool
	}{
		{name: "keepalive", data: keepaliveData(0x1_0000_0010, true), want: inbound{keepalive: true, walEnd: 0x1_0000_0010, replyRequested: true}},
		{name: "keepalive without reply", data: keepaliveData(7, false), want: inbound{keepalive: true, walEnd: 7}},
		{name: "xlogdata", data: xlogData(5, 6, commitMsg(1, 2)), want: inbound{walStart: 5, walEnd: 6}, msgType: pglogrepl.MessageTypeCommit},
		{name: "insert", data: xlogData(5, 6, insertMsg(1)), want: inbound{walStart: 5, walEnd: 6}, msgType: pglogrepl.MessageTypeInsert},
		{name: "update", data: xlogData(5, 6, updateMsg(1)), want: inbound{walStart: 5, walEnd: 6}, msgType: pglogrepl.MessageTypeUpdate},
		{name: "delete", data: xlogData(5, 6, deleteMsg(1)), want: inbound{walStart: 5, walEnd: 6}, msgType: pglogrepl.MessageTypeDelete},
		{name: "truncate", data: xlogData(5, 6, truncateMsg(1, 2)), want: inbound{walStart: 5, walEnd: 6}, msgType: pglogrepl.MessageTypeTruncate},
		{name: "empty", data: nil, wantErr: true},
		{name: "unknown", data: []byte{'x', 1, 2}, wantErr: true},
		{name: "short keepalive", data: keepaliveData(7, false)[:10], wantErr: true},
		{name: "short xlogdata", data: xlogData(5, 6, nil)[:20], wantErr: true},
		{name: "empty pgoutput message", data: xlogData(5, 6, nil), wantErr: true},
		{name: "truncated relation", data: xlogData(5, 6, relationMsg(1, "public", "t", "a")[:12]), wantErr: true},
		{name: "truncated begin", data: xlogData(5, 6, beginMsg(1, 2)[:5]), wantErr: true},
		{name: "truncated insert", data: xlogData(5, 6, insertMsg(1)[:4]), wantErr: true},
		{name: "truncate of too many tables", data: xlogData(5, 6, append(be32([]byte{'T'}, 0x5cc0b272), 0, 0, 0, 0, 1)), wantErr: true},
		{name: "stream start (protocol 2)", data: xlogData(5, 6, []byte{'S', 0, 0, 0, 1, 1}), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodeCopyData(tt.data)
			if gotErr := got.err != nil; gotErr != tt.wantErr {
				t.Fatalf("error %v; want error: %v", got.err, tt.wantErr)
			}
			if tt.wantErr {
				if !errors.Is(got.err, errProtocol) {
					t.Errorf("error %v is not errProtocol", got.err)
				}
				return
			}
			if got.msg != nil && got.msg.Type() != tt.msgType || got.msg == nil && tt.msgType != 0 {
				t.Errorf("message %v; want type %v", got.msg, tt.msgType)
			}
			got.msg = nil
			if got != tt.want {
				t.Errorf("got %+v; want %+v", got, tt.want)
			}
		})
	}
}

// FuzzDecodeCopyData: no CopyData payload makes the decoding panic, and a
// decoder fed whatever comes out (inside a transaction, with a known
// relation) does not either.
func FuzzDecodeCopyData(f *testing.F) {
	f.Add(keepaliveData(1, true))
	for _, m := range [][]byte{
		beginMsg(90, 7), commitMsg(90, 100), relationMsg(16384, "public", "t", "id", "v"),
		insertMsg(16384), updateMsg(16384), deleteMsg(16384), truncateMsg(16384, 16385),
		{'Y', 0, 0, 0, 23, 'p', 0, 'i', 0},                        // type 23, "p"."i"
		{'M', 1, 0, 0, 0, 0, 0, 0, 0, 9, 'p', 0, 0, 0, 0, 1, 'x'}, // transactional message
		rowMsg('U', 16384, byte('K'), []col{{'t', "1"}, {'n', ""}}, byte('N'), []col{{'t', "2"}, {'u', ""}}),
	} {
		f.Add(xlogData(1, 2, m))
	}
	f.Add([]byte{})
	f.Add([]byte{'w'})
	f.Fuzz(func(t *testing.T, data []byte) {
		ev := decodeCopyData(data) // must not panic
		if ev.msg == nil {
			return
		}
		d := newDecoder()
		// A key column, so that the tuples are looked into.
		for _, raw := range [][]byte{keyedRelationMsg(16384, "t", []string{"id", "v"}, "id"), beginMsg(90, 7)} {
			msg, _ := parseMessage(raw)
			if _, err := d.decode(msg, 1); err != nil {
				t.Fatal(err)
			}
		}
		d.decode(ev.msg, ev.walStart) // must not panic
		d.decode(ev.msg, ev.walStart) // nor merging with a change before
	})
}

func BenchmarkDecodeCopyData(b *testing.B) {
	// A row change carrying a 1 KiB value: only the OID is decoded.
	msg := be32([]byte{'U'}, 16384)
	msg = append(msg, 'N')
	msg = be16(msg, 1)
	msg = append(msg, 't')
	msg = be32(msg, 1024)
	msg = append(msg, make([]byte, 1024)...)
	data := xlogData(1, 2, msg)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if ev := decodeCopyData(data); ev.err != nil {
			b.Fatal(ev.err)
		}
	}
}
