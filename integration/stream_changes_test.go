package integration

import (
	"context"
	"testing"
	"time"

	"github.com/sqlcache/sqlcache/invalidator"
)

// TestStreamChanges: writes made directly on Postgres — plain, through a
// partitioned table, by a trigger, by a cascade, in one transaction, with
// a changed definition — reach Handler.Apply within a second, each
// transaction as one call with its tables deduplicated.
func TestStreamChanges(t *testing.T) {
	t.Parallel()
	p := StartPostgres(t)
	p.Exec(t, `
CREATE TABLE plain (id int PRIMARY KEY, v text);
CREATE TABLE other (id int PRIMARY KEY);
CREATE TABLE parted (k int PRIMARY KEY, v text) PARTITION BY LIST (k);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES IN (1);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES IN (2);
CREATE TABLE audited (id int PRIMARY KEY);
CREATE TABLE audit (id int PRIMARY KEY, n int);
INSERT INTO audit VALUES (1, 0);
CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN UPDATE audit SET n = n + 1; RETURN NEW; END $$;
CREATE TRIGGER bump AFTER INSERT ON audited FOR EACH ROW EXECUTE FUNCTION bump();
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent ON DELETE CASCADE);
INSERT INTO parent VALUES (1);
INSERT INTO child VALUES (10, 1);
-- No primary key: a FOR ALL TABLES publication needs a replica identity.
CREATE TABLE nokey (a int);
ALTER TABLE nokey REPLICA IDENTITY FULL;
INSERT INTO nokey VALUES (1);
`)
	s, rec, _ := startStream(t, p, nil)
	waitStreamFresh(t, s, 10*time.Second)

	data := func(table string) change { return change{table, invalidator.Data} }
	for _, tc := range []struct {
		name  string
		write string
		want  []change
	}{
		{"insert", `INSERT INTO plain VALUES (1, 'a'), (2, 'b')`, []change{data("plain")}},
		{"update", `UPDATE plain SET v = 'z' WHERE id = 1`, []change{data("plain")}},
		{"delete", `DELETE FROM plain WHERE id = 2`, []change{data("plain")}},
		{"truncate", `TRUNCATE plain`, []change{{"plain", invalidator.Truncate}}},
		{"truncate two", `TRUNCATE plain, other`, []change{{"plain", invalidator.Truncate}, {"other", invalidator.Truncate}}},
		{"partitioned insert", `INSERT INTO parted VALUES (1, 'a'), (2, 'b')`, []change{data("parted")}},
		{"partition update", `UPDATE parted_1 SET v = 'c'`, []change{data("parted")}},
		{"partitioned truncate", `TRUNCATE parted`, []change{{"parted", invalidator.Truncate}}},
		{"trigger", `INSERT INTO audited VALUES (1)`, []change{data("audited"), data("audit")}},
		{"cascade", `DELETE FROM parent WHERE id = 1`, []change{data("parent"), data("child")}},
		{"transaction", `BEGIN; INSERT INTO plain VALUES (3, 'c'); INSERT INTO other VALUES (1); UPDATE plain SET v = 'd'; DELETE FROM plain; COMMIT`,
			[]change{data("plain"), data("other")}},
		{"replica identity full", `UPDATE nokey SET a = 2`, []change{data("nokey")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mark := rec.mark()
			p.Exec(t, tc.write)
			start := time.Now()
			changes := rec.waitApply(t, mark, 5*time.Second, tc.want...)
			if d := time.Since(start); d > time.Second {
				t.Errorf("Apply came %v after the commit; want within 1s", d)
			}
			for _, c := range changes {
				if c.Pos == 0 {
					t.Errorf("%+v: no position", c)
				}
			}
		})
	}

	// A changed definition shows at the table's next change, as a Schema
	// change (immediately) and then the transaction's Data change.
	t.Run("schema", func(t *testing.T) {
		mark := rec.mark()
		p.Exec(t, `ALTER TABLE plain ADD COLUMN w int`)
		p.Exec(t, `INSERT INTO plain VALUES (5, 'e', 5)`)
		rec.waitApply(t, mark, 5*time.Second, change{"plain", invalidator.Schema})
		rec.waitApply(t, mark, 5*time.Second, data("plain"))
		mark = rec.mark()
		p.Exec(t, `ALTER TABLE plain RENAME TO renamed`)
		p.Exec(t, `INSERT INTO renamed VALUES (6, 'f', 6)`)
		rec.waitApply(t, mark, 5*time.Second, change{"renamed", invalidator.Schema}, change{"plain", invalidator.Schema})
		// An unchanged definition sent again (a new index invalidates the
		// table) is not a Schema change.
		mark = rec.mark()
		p.Exec(t, `CREATE INDEX ON renamed (v)`)
		p.Exec(t, `INSERT INTO renamed VALUES (7, 'g', 7)`)
		rec.waitApply(t, mark, 5*time.Second, data("renamed"))
		if n := rec.count(mark, "renamed", invalidator.Schema); n != 0 {
			t.Errorf("%d Schema changes for a new index; want none", n)
		}
	})

	// Known limit, pinned here so that it is noticed if it changes: with
	// publish_via_partition_root, pgoutput sends nothing at all for a
	// TRUNCATE of a single partition (pgoutput_truncate skips partitions
	// published as their root). The proxy cannot learn of it from the
	// stream.
	t.Run("partition truncate is not streamed", func(t *testing.T) {
		mark := rec.mark()
		p.Exec(t, `TRUNCATE parted_1`)
		committed := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if !s.WaitFresh(ctx, committed) {
			t.Fatalf("not fresh after the TRUNCATE: %+v", s.Status())
		}
		// Only changes of the partitioned table count: a late Apply of an
		// earlier subtest's table may land after the mark.
		var got []invalidator.Change
		for _, batch := range rec.since(mark) {
			for _, c := range batch {
				if c.Table == "parted" || c.Table == "parted_1" {
					got = append(got, c)
				}
			}
		}
		if len(got) != 0 {
			t.Errorf("TRUNCATE of a partition now arrives as %v: update the documentation of this limit", got)
		}
	})
}
