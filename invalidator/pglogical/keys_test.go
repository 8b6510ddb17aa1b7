package pglogical

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sqlcache/sqlcache/invalidator"
)

// TestDecoderKeys: row changes of a table with a single-column replica
// identity name the rows they changed, old and new keys; anything less
// certain is a change to any rows.
func TestDecoderKeys(t *testing.T) {
	const ta, tb = 16384, 16390
	row := func(id string, v string) []col { return []col{{'t', id}, {'t', v}} }
	keyOnly := func(id string) []col { return []col{{'t', id}, {'n', ""}} }
	keyed := keyedRelationMsg(ta, "a", []string{"id", "v"}, "id")
	data := func(keys ...string) invalidator.Change {
		c := invalidator.Change{Schema: "public", Table: "a", Kind: invalidator.Data, Pos: 90}
		if keys != nil {
			c.KeyColumn, c.Keys = "id", keys
		}
		return c
	}
	many := make([][]byte, 0, maxKeys+1)
	for i := range maxKeys + 1 {
		many = append(many, rowMsg('I', ta, byte('N'), row(fmt.Sprint(i), "x")))
	}
	for _, tc := range []struct {
		name string
		rel  []byte
		rows [][]byte
		want invalidator.Change
	}{
		{"insert", keyed, [][]byte{rowMsg('I', ta, byte('N'), row("1", "x"))}, data("1")},
		{"update", keyed, [][]byte{rowMsg('U', ta, byte('N'), row("2", "y"))}, data("2")},
		{"update of the key", keyed, [][]byte{rowMsg('U', ta, byte('K'), keyOnly("3"), byte('N'), row("4", "y"))}, data("3", "4")},
		{"delete", keyed, [][]byte{rowMsg('D', ta, byte('K'), keyOnly("5"))}, data("5")},
		{"several, deduplicated", keyed, [][]byte{
			rowMsg('I', ta, byte('N'), row("1", "x")),
			rowMsg('U', ta, byte('N'), row("1", "y")),
			rowMsg('D', ta, byte('K'), keyOnly("6")),
		}, data("1", "6")},
		{"unchanged TOAST key", keyed, [][]byte{rowMsg('U', ta, byte('N'), []col{{'u', ""}, {'t', "y"}})}, data()},
		{"NULL key", keyed, [][]byte{rowMsg('I', ta, byte('N'), []col{{'n', ""}, {'t', "y"}})}, data()},
		{"binary key", keyed, [][]byte{rowMsg('I', ta, byte('N'), []col{{'b', "\x00\x00\x00\x01"}, {'t', "y"}})}, data()},
		{"keyed, then not", keyed, [][]byte{
			rowMsg('I', ta, byte('N'), row("1", "x")),
			rowMsg('U', ta, byte('N'), []col{{'u', ""}, {'t', "y"}}),
			rowMsg('I', ta, byte('N'), row("2", "x")),
		}, data()},
		{"too many keys", keyed, many, data()},
		{"large row", keyed, [][]byte{rowMsg('I', ta, byte('N'), row("1", strings.Repeat("x", maxTupleCopy)))}, data()},
		{"no key column", relationMsg(ta, "public", "a", "id", "v"), [][]byte{rowMsg('I', ta, byte('N'), row("1", "x"))}, data()},
		{"identity FULL: all columns", keyedRelationMsg(ta, "a", []string{"id", "v"}, "id", "v"),
			[][]byte{rowMsg('D', ta, byte('O'), row("1", "x"))}, data()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDecoder()
			msgs := append([][]byte{beginMsg(90, 7), tc.rel, keyedRelationMsg(tb, "b", []string{"id"}, "id")}, tc.rows...)
			msgs = append(msgs, commitMsg(90, 100))
			var got []invalidator.Change
			for i, raw := range msgs {
				raw = slices.Clone(raw)
				msg, err := parseMessage(raw)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				// The receive buffer is reused before the message is
				// decoded.
				clear(raw)
				st, err := d.decode(msg, uint64(i+1))
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				got = append(got, st.apply...)
			}
			if diff := cmp.Diff([]invalidator.Change{tc.want}, got); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseRowChangeMalformed: row changes whose tuples do not hold
// together are protocol errors, not panics.
func TestParseRowChangeMalformed(t *testing.T) {
	good := rowMsg('U', 1, byte('K'), []col{{'t', "1"}}, byte('N'), []col{{'t', "2"}})
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"no tuple", be32([]byte{'I'}, 1)},
		{"truncated count", append(be32([]byte{'I'}, 1), 'N', 0)},
		{"truncated column", append(be32([]byte{'I'}, 1), 'N', 0, 1, 't', 0, 0)},
		{"value past the end", append(be32([]byte{'I'}, 1), 'N', 0, 1, 't', 0, 0, 0, 9, 'x')},
		{"unknown kind", append(be32([]byte{'I'}, 1), 'N', 0, 1, 'z')},
		{"old tuple in an insert", rowMsg('I', 1, byte('K'), []col{{'t', "1"}}, byte('N'), []col{{'t', "2"}})},
		{"two old tuples", rowMsg('U', 1, byte('K'), []col{{'t', "1"}}, byte('O'), []col{{'t', "1"}}, byte('N'), []col{{'t', "2"}})},
		{"data after the new tuple", append(good, 'x')},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseMessage(tc.msg); err == nil {
				t.Errorf("parseMessage(%q) accepted it", tc.msg)
			}
		})
	}
	if _, err := parseMessage(good); err != nil {
		t.Errorf("parseMessage(update with key change): %v", err)
	}
}
