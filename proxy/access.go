package proxy

import (
	"context"
	"fmt"
	"maps"

	"github.com/jackc/pgx/v5"
)

// accessRelationsSQL and accessSharedSQL describe, in the connected
// database, what decides which rows a role may read and how a new session
// resolves names. A cached answer is keyed by role and session settings,
// not by these, so when they change the answers cached before must go.
// Such DDL made through sqlcache drops them at once; made elsewhere it is
// not in the change stream, and these queries are how it is noticed.
//
// accessRelationsSQL gives each relation that answers can read (not
// system catalogs, not temporary tables) with its owner, privileges, row
// security switches, column privileges and policies. Relations are
// compared one by one, so that creating or dropping one is not a change
// for the others; values rather than row versions (xmin), so that
// TRUNCATE, ANALYZE and the like, which rewrite pg_class rows, are not
// changes either.
const accessRelationsSQL = `
SELECT c.oid, concat_ws(':', c.relowner, c.relacl, c.relrowsecurity, c.relforcerowsecurity,
  (SELECT string_agg(a.attnum || '=' || a.attacl::text, ',' ORDER BY a.attnum)
     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL),
  (SELECT string_agg(p::text, ',' ORDER BY p.oid) FROM pg_policy p WHERE p.polrelid = c.oid))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.relpersistence <> 't'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')`

// accessSharedSQL fingerprints the rest as a whole: schema owners and
// privileges (not the temporary schemas sessions create), function
// privileges, roles, role membership, and per-role and per-database
// settings (ALTER ROLE … SET search_path).
const accessSharedSQL = `
SELECT md5(concat_ws('|',
  (SELECT string_agg(concat_ws(':', n.oid, n.nspowner, n.nspacl), ',' ORDER BY n.oid) FROM pg_namespace n
     WHERE n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'),
  (SELECT string_agg(concat_ws(':', f.oid, f.proacl), ',' ORDER BY f.oid) FROM pg_proc f WHERE f.proacl IS NOT NULL),
  (SELECT string_agg(concat_ws(':', r.oid, r.rolsuper, r.rolinherit, r.rolbypassrls), ',' ORDER BY r.oid) FROM pg_roles r),
  (SELECT string_agg(m::text, ',' ORDER BY m::text) FROM pg_auth_members m),
  (SELECT string_agg(s::text, ',' ORDER BY s::text) FROM pg_db_role_setting s)))`

// access is what accessRelationsSQL and accessSharedSQL returned.
type access struct {
	shared string
	rels   map[uint32]string
}

// changedFrom says whether a differs from old in anything but relations
// that only one of them has.
func (a *access) changedFrom(old *access) bool {
	if a.shared != old.shared {
		return true
	}
	for oid, v := range a.rels {
		if w, ok := old.rels[oid]; ok && w != v {
			return true
		}
	}
	return false
}

func readAccess(ctx context.Context, conn *pgx.Conn) (*access, error) {
	a := &access{rels: make(map[uint32]string)}
	rows, err := conn.Query(ctx, accessRelationsSQL)
	if err != nil {
		return nil, err
	}
	var oid uint32
	var v string
	if _, err := pgx.ForEachRow(rows, []any{&oid, &v}, func() error {
		a.rels[oid] = v
		return nil
	}); err != nil {
		return nil, err
	}
	if err := conn.QueryRow(ctx, accessSharedSQL).Scan(&a.shared); err != nil {
		return nil, err
	}
	return a, nil
}

// checkAccess compares database db's access (readAccess) with what it was
// at the last check, on conn, and calls c.accessChanged if it changed or
// if a check failed since. The first check only takes note: it runs when
// the database's first service connection opens, before anything of the
// database can be cached. The caller holds d.lookupMu.
func (c *catalog) checkAccess(ctx context.Context, d *dbCatalog, db string, conn *pgx.Conn) error {
	a, err := readAccess(ctx, conn)
	if err != nil {
		err = fmt.Errorf("catalog access check: %w", err)
		c.accessLost(d, db, err)
		return err
	}
	switch {
	case d.accessLost:
		c.accessChanged(db, "the access check works again after failing", false)
	case d.access != nil && a.changedFrom(d.access):
		c.accessChanged(db, "privileges, row security, roles or role settings changed", false)
	}
	d.access, d.accessLost = a, false
	return nil
}

// accessLost records that database db's access could not be checked.
// Until a check succeeds again, nothing cached before can be vouched for:
// the database's answers are dropped now and again at the next success.
// The caller holds d.lookupMu.
func (c *catalog) accessLost(d *dbCatalog, db string, err error) {
	d.accessLost = true
	c.accessChanged(db, err.Error(), true)
}

// checkAllAccess checks the access fingerprint of every database that has
// had lookups, connecting again where a connection was lost.
func (c *catalog) checkAllAccess(ctx context.Context) {
	c.mu.Lock()
	dbs := maps.Clone(c.dbs)
	c.mu.Unlock()
	for db, d := range dbs {
		c.checkDBAccess(ctx, db, d)
	}
}

func (c *catalog) checkDBAccess(ctx context.Context, db string, d *dbCatalog) {
	d.lookupMu.Lock()
	defer d.lookupMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	if d.conn == nil || d.conn.IsClosed() {
		// A new connection checks first.
		c.connect(ctx, d, db)
		return
	}
	if err := c.checkAccess(ctx, d, db, d.conn); err != nil {
		d.conn.Close(context.Background())
		d.conn = nil
	}
}
