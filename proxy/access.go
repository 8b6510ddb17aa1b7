package proxy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// accessColumn, accessRelationsSQL and accessSharedSQL describe, in the
// connected database, what decides which rows a role may read and how a
// session resolves names and formats values. A cached answer is keyed by
// role and by the session settings sqlcache sees, not by these, so when
// they change the answers cached before must go. Such DDL made through
// sqlcache drops them at once; made elsewhere it is not in the change
// stream, and these queries are how it is noticed.
//
// accessColumn describes relation c, each part for a change that alters
// its answers without a row change in the stream:
//   - name, schema, owner, privileges, row security switches and policies;
//   - options: a view's security_invoker decides whose privileges and
//     policies apply to the tables it reads;
//   - a view's definition (CREATE OR REPLACE VIEW);
//   - its columns with their privileges and, for an enum type, its labels
//     (after ALTER TABLE … ADD COLUMN a cached SELECT * lacks one; ALTER
//     TYPE … RENAME VALUE changes how every row reads).
//
// Its storage and its descendants' are watched apart (storageColumn): a
// change there changes only its rows.
//
// Values rather than row versions (xmin), so that TRUNCATE, ANALYZE and
// the like, which rewrite pg_class rows, are not changes.
//
// Each relation sqlcache looks up is described by the same lookup
// (relationsSQL, viewBasesSQL), before any answer that reads it can be
// cached; accessRelationsSQL describes those relations again at each
// check. Relations no answer reads are not watched.
var accessColumn = `concat_ws(':', c.relname, c.relnamespace, c.relowner, c.relacl, c.relrowsecurity, c.relforcerowsecurity, c.reloptions,
  (SELECT string_agg(p::text, ',' ORDER BY p.oid) FROM pg_policy p WHERE p.polrelid = c.oid),
  (SELECT ` + sqlDigest(`r.ev_action::text`) + ` FROM pg_rewrite r WHERE r.ev_class = c.oid AND r.rulename = '_RETURN'),
  (SELECT ` + sqlDigest(`string_agg(concat_ws(' ', a.attnum, a.attname, a.atttypid, a.atttypmod, a.attcollation, a.attacl,
       (SELECT string_agg(e.enumlabel, '|' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = a.atttypid)), ',' ORDER BY a.attnum)`) + `
     FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  ` + sqlDigest(userTypesColumn) + `)`

// userTypesColumn describes the user-defined types relation c's columns
// are of, and those they are made of (array elements, domains' base
// types, composite types' attributes), transitively: a composite type's
// attributes and an enum's labels. ALTER TYPE … DROP ATTRIBUTE changes
// what a column of that type reads as, with nothing in the change stream
// and no change to c's own attributes.
const userTypesColumn = `(WITH RECURSIVE ty(oid) AS (
    SELECT a.atttypid FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid >= 16384
  UNION
    SELECT n.x FROM ty JOIN pg_type t ON t.oid = ty.oid,
      LATERAL (SELECT t.typelem UNION ALL SELECT t.typbasetype
               UNION ALL SELECT ca.atttypid FROM pg_attribute ca
               WHERE ca.attrelid = t.typrelid AND ca.attnum > 0 AND NOT ca.attisdropped) n(x)
    WHERE n.x >= 16384)
  SELECT string_agg(concat_ws(' ', t.oid, t.typname,
      (SELECT string_agg(concat_ws(' ', ca.attnum, ca.attname, ca.atttypid, ca.atttypmod, ca.attcollation), ',' ORDER BY ca.attnum)
       FROM pg_attribute ca WHERE t.typrelid <> 0 AND ca.attrelid = t.typrelid AND ca.attnum > 0 AND NOT ca.attisdropped),
      (SELECT string_agg(e.enumlabel, '|' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid)), ',' ORDER BY t.oid)
  FROM ty JOIN pg_type t ON t.oid = ty.oid)`

var accessRelationsSQL = `SELECT c.oid, ` + accessColumn + ` FROM pg_class c WHERE c.oid = ANY($1)`

// storageColumn names relation c, then describes where its rows come
// from: its storage (relfilenode), and its partitions and inheritance
// children at every depth with theirs. A rewrite replaces the storage:
// ALTER COLUMN … TYPE … USING changes every row without a row in the
// change stream or a change in the column's description. ATTACH
// PARTITION and INHERIT bring rows in, DETACH and NO INHERIT take them
// away, and a TRUNCATE of one partition, which the stream (naming
// partitions by their root) does not carry, gives it new storage. Each
// costs the relation's answers only: the access check drops those, not
// the database's (access.namesOnly), so TRUNCATE, VACUUM FULL and
// CLUSTER, which replace storage too, cost little.
const storageColumn = `c.relname || ':' || concat_ws(' ', c.relfilenode,
  (WITH RECURSIVE d(oid) AS (SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = c.oid
     UNION SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.oid)
   SELECT string_agg(d.oid::text || '/' || k.relfilenode, ',' ORDER BY d.oid) FROM d JOIN pg_class k ON k.oid = d.oid))`

var accessStorageSQL = `SELECT c.oid, ` + storageColumn + ` FROM pg_class c WHERE c.oid = ANY($1)`

// sqlDigest is SQL for the SHA-256 of text expression expr, in hex: md5()
// fails on a server in FIPS mode.
func sqlDigest(expr string) string {
	return `encode(sha256(convert_to(` + expr + `, 'UTF8')), 'hex')`
}

// funcAccessColumn describes user-defined function p: its whole pg_proc
// row (owner, privileges, definition, whether in prosrc or, in standard
// SQL, prosqlbody, argument defaults, strictness…), and the rows of
// every user-defined function whose name is a word of its source,
// transitively, as functionsSQL's reach follows them. Answers computed
// by an IMMUTABLE or STABLE function are cached; CREATE OR REPLACE
// FUNCTION made elsewhere, of it or of a function it calls (or a new
// overload of one), changes what they should have been. The functions
// sqlcache looked up (functionsSQL) are watched as relations are.
//
// The rows are found by f.oid = ANY (ARRAY(...)), an index scan of
// pg_proc: with f.oid IN (SELECT ...) PostgreSQL 15 hashed the CTE and
// scanned all of pg_proc (3,000-odd rows) for every function described,
// 140 ms for the 63 functions of the operator = in every first lookup
// of a statement with an = and at every catalog_check, which all sessions'
// decisions waited for; now 7 ms, the same rows.
var funcAccessColumn = sqlDigest(`(WITH RECURSIVE calls(oid, src) AS (
    SELECT p.oid, ` + funcSource("p") + `
  UNION
    SELECT q.oid, ` + funcSource("q") + `
    FROM calls c, regexp_split_to_table(c.src, '[^a-z0-9_$]+') w, pg_catalog.pg_proc q
    WHERE c.oid >= 16384 AND lower(q.proname) = w AND q.oid >= 16384 AND q.prolang NOT IN (12, 13))
  SELECT string_agg(pg_catalog.to_jsonb(f)::text, ',' ORDER BY f.oid) FROM pg_catalog.pg_proc f WHERE f.oid = ANY (ARRAY(SELECT oid FROM calls)))`)

var accessFunctionsSQL = `SELECT p.oid, ` + funcAccessColumn + ` FROM pg_proc p WHERE p.oid = ANY($1)`

// accessSharedSQL fingerprints the rest as a whole: schema names, owners
// and privileges (not the temporary schemas sessions create; a schema
// renamed changes what a search path names), function privileges, roles
// (their names too: keys carry the login role's name, and a role renamed
// and another made under its name must not share its answers), role
// membership, per-role and per-database settings
// (ALTER ROLE … SET search_path), and the server's defaults of settings a
// user may change (postgresql.conf and ALTER SYSTEM, after a reload),
// which apply to every session that has not set them itself, and the
// settings row security policies read (policySettingsSQL). A session's
// settings are in the key only as far as sqlcache sees them (startup
// parameters, ParameterStatus, SET, a read-back), not these defaults.
var accessSharedSQL = `
SELECT ` + sqlDigest(`concat_ws('|',
  (SELECT string_agg(concat_ws(':', n.oid, n.nspname, n.nspowner, n.nspacl), ',' ORDER BY n.oid) FROM pg_namespace n
     WHERE n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'),
  (SELECT string_agg(concat_ws(':', f.oid, f.proacl), ',' ORDER BY f.oid) FROM pg_proc f WHERE f.proacl IS NOT NULL),
  (SELECT string_agg(concat_ws(':', r.oid, r.rolname, r.rolsuper, r.rolinherit, r.rolbypassrls), ',' ORDER BY r.oid) FROM pg_roles r),
  (SELECT string_agg(m::text, ',' ORDER BY m::text) FROM pg_auth_members m),
  (SELECT string_agg(s::text, ',' ORDER BY s::text) FROM pg_db_role_setting s),
  (SELECT string_agg(g.name || '=' || g.setting, ',' ORDER BY g.name) FROM pg_settings g
     WHERE g.context IN ('user', 'superuser')),
  (SELECT string_agg(n, ',' ORDER BY n) FROM (`+policySettingsSQL+`) s))`) + `,
  (` + loginDefaultsSQL + `)`

// relNamesSQL and funcNamesSQL list, for each name among $1, the OIDs of
// the relations of that name, and of the functions, operators or casts it
// stands for (functionsSQL; not temporary ones: only their own session
// sees those, and it stops using the cache), in every schema, as
// lookupRelations and lookupFunctions record them (appendOID).
// A name's list changes when a relation, function, operator or cast of
// that name is created, dropped or renamed: a table created in a schema
// earlier on the search path shadows the one an answer read, a table
// swapped in by ALTER TABLE … RENAME, or dropped and created again, is
// another table under the same name, and a new overload of a function or
// an operator, or a new cast, may be the one a call, an expression or a
// cast now resolves to. None of that is in the change stream.
var relNamesSQL = `SELECT n, coalesce((SELECT string_agg(c.oid::text, ',' ORDER BY c.oid)
  FROM pg_class c WHERE c.relname = n AND c.relpersistence <> 't'), '') FROM unnest($1::text[]) n`

var funcNamesSQL = `SELECT n, coalesce((SELECT string_agg(w::text, ',' ORDER BY w) FROM (
    SELECT DISTINCT f.watched AS w FROM (` + namedFuncs + `) f(name, fn, watched) JOIN pg_proc p ON p.oid = f.fn
    WHERE f.name = n AND NOT ` + tempFunc("p") + `) u), '') FROM unnest($1::text[]) n`

// access is what accessSharedSQL returned, accessColumn of each watched
// relation and funcAccessColumn of each watched function by OID, and the
// OIDs of each watched relation and function name.
type access struct {
	shared string
	// loginDefaults fingerprints the per-role and per-database settings
	// (ALTER ROLE … SET), which sessions take when they log in; shared
	// covers them too.
	loginDefaults string
	rels          map[uint32]string
	storage       map[uint32]string // storageColumn of each watched relation
	funcs         map[uint32]string
	relNames      map[string]string
	funcNames     map[string]string
}

func newAccess() *access {
	return &access{
		rels:      make(map[uint32]string),
		storage:   make(map[uint32]string),
		funcs:     make(map[uint32]string),
		relNames:  make(map[string]string),
		funcNames: make(map[string]string),
	}
}

// changedFrom says whether a differs from old in anything old has.
func (a *access) changedFrom(old *access) bool {
	if a.shared != old.shared {
		return true
	}
	return changedIn(a.rels, old.rels) || changedIn(a.storage, old.storage) || changedIn(a.funcs, old.funcs) ||
		changedIn(a.relNames, old.relNames) || changedIn(a.funcNames, old.funcNames)
}

// namesOnly returns the names of the relations whose answers alone a
// differs from old in, when nothing else old has differs: a relation of a
// watched name was made (or one not watched dropped) somewhere, which
// changes only what that name means, or a watched relation's storage was
// replaced (storageColumn), which changes only its rows. ok is false if
// anything else changed too.
func (a *access) namesOnly(old *access) (names []string, ok bool) {
	if a.shared != old.shared || changedIn(a.rels, old.rels) || changedIn(a.funcs, old.funcs) ||
		changedIn(a.funcNames, old.funcNames) {
		return nil, false
	}
	for name, oids := range old.relNames {
		if a.relNames[name] != oids {
			names = append(names, name)
		}
	}
	for oid, was := range old.storage {
		if now, ok := a.storage[oid]; !ok {
			return nil, false // dropped: rels says so too
		} else if now != was {
			names = append(names, was[:strings.LastIndexByte(was, ':')])
		}
	}
	slices.Sort(names)
	names = slices.Compact(names)
	return names, len(names) > 0
}

// changedIn says whether now differs from old for a key of old. A key
// missing from now is a change: the relation or function was dropped.
func changedIn[K comparable](now, old map[K]string) bool {
	for k, v := range old {
		if w, ok := now[k]; !ok || w != v {
			return true
		}
	}
	return false
}

// appendOID adds oid to list, a name's OIDs as relNamesSQL and
// funcNamesSQL spell them: ascending, comma-separated.
func appendOID(list string, oid uint32) string {
	var oids []uint32
	for f := range strings.SplitSeq(list, ",") {
		if n, err := strconv.ParseUint(f, 10, 32); err == nil {
			oids = append(oids, uint32(n))
		}
	}
	if i, found := slices.BinarySearch(oids, oid); !found {
		oids = slices.Insert(oids, i, oid)
	}
	fields := make([]string, len(oids))
	for i, o := range oids {
		fields[i] = strconv.FormatUint(uint64(o), 10)
	}
	return strings.Join(fields, ",")
}

// readAccess reads the database's access now, for the relations and
// functions watched in old (none if old is nil).
func readAccess(ctx context.Context, conn *pgx.Conn, old *access) (*access, error) {
	a := newAccess()
	if old != nil {
		if err := readWatched(ctx, conn, accessRelationsSQL, old.rels, a.rels); err != nil {
			return nil, err
		}
		if err := readWatched(ctx, conn, accessStorageSQL, old.storage, a.storage); err != nil {
			return nil, err
		}
		if err := readWatched(ctx, conn, accessFunctionsSQL, old.funcs, a.funcs); err != nil {
			return nil, err
		}
		if err := readWatched(ctx, conn, relNamesSQL, old.relNames, a.relNames); err != nil {
			return nil, err
		}
		if err := readWatched(ctx, conn, funcNamesSQL, old.funcNames, a.funcNames); err != nil {
			return nil, err
		}
	}
	if err := conn.QueryRow(ctx, accessSharedSQL).Scan(&a.shared, &a.loginDefaults); err != nil {
		return nil, err
	}
	return a, nil
}

// readWatched runs query for the keys (OIDs or names) of old into now.
func readWatched[K comparable](ctx context.Context, conn *pgx.Conn, query string, old, now map[K]string) error {
	if len(old) == 0 {
		return nil
	}
	rows, err := conn.Query(ctx, query, slices.Collect(maps.Keys(old)))
	if err != nil {
		return err
	}
	var k K
	var v string
	_, err = pgx.ForEachRow(rows, []any{&k, &v}, func() error {
		now[k] = v
		return nil
	})
	return err
}

// watch adds the relations, functions and names looked up for the first
// time, as the lookup described them, to those the access checks compare:
// what was watched already keeps its older description, so that a change
// since is still seen. The caller holds d.lookupMu; d.access is set, since
// a connection checks first.
func (d *dbCatalog) watch(seen *access) {
	if d.access == nil {
		return
	}
	addNew(d.access.rels, seen.rels)
	addNew(d.access.storage, seen.storage)
	addNew(d.access.funcs, seen.funcs)
	addNew(d.access.relNames, seen.relNames)
	addNew(d.access.funcNames, seen.funcNames)
}

// addNew adds to m the keys of seen it lacks.
func addNew[K comparable](m, seen map[K]string) {
	for k, v := range seen {
		if _, ok := m[k]; !ok {
			m[k] = v
		}
	}
}

// checkAccess compares database db's access (readAccess) with what it was
// at the last check or lookup, on conn, and calls c.accessChanged if it
// changed or if a check failed since. The first check only takes note: it
// runs when the database's first service connection opens, before
// anything of the database can be cached. A watched relation or function
// dropped since is a change, and is no longer watched after it. The
// caller holds d.lookupMu.
func (c *catalog) checkAccess(ctx context.Context, d *dbCatalog, db string, conn *pgx.Conn) error {
	began, seq := time.Now(), c.checkBegins(db)
	a, err := readAccess(ctx, conn, d.access)
	c.accessChecked(err != nil)
	if err != nil {
		err = fmt.Errorf("catalog access check: %w", err)
		c.accessLost(d, db, err)
		return err
	}
	switch {
	case d.accessLost:
		c.accessChanged(db, "the access check works again after failing", false)
	case d.access == nil || !a.changedFrom(d.access):
	default:
		// A table made under a watched name in another schema (a new
		// tenant's) may shadow the one answers read, for sessions whose
		// search path puts it first; a table rewritten has new rows:
		// those answers go, not the rest.
		if names, ok := a.namesOnly(d.access); ok {
			c.relationsChanged(db, names, d.checkedSeq)
			break
		}
		c.accessChanged(db, "privileges, row security, roles or role settings changed", false)
	}
	c.sawLoginDefaults(a.loginDefaults, began)
	d.access, d.accessLost, d.checkedAt, d.checkedSeq = a, false, began, seq
	return nil
}

// loginDefaultsSQL fingerprints pg_db_role_setting, a shared catalog: the
// settings sessions of every database log in with.
var loginDefaultsSQL = `SELECT ` + sqlDigest(`coalesce((SELECT string_agg(s::text, ',' ORDER BY s::text) FROM pg_db_role_setting s), '')`)

// sawLoginDefaults takes note of the fingerprint of the settings sessions
// log in with, read at began (loginDefaultsSQL, in any database): if it
// changed since the last read, the sessions that logged in since that
// read may have either (loginDefaultsSeen).
func (c *catalog) sawLoginDefaults(digest string, began time.Time) {
	c.loginMu.Lock()
	prev, known := c.login, c.loginKnown
	// The change fell between the two reads, whichever began first.
	since := c.loginReadAt
	if began.Before(since) {
		since = began
	}
	if !known || began.After(c.loginReadAt) {
		c.login, c.loginReadAt, c.loginKnown = digest, began, true
	}
	c.loginMu.Unlock()
	if known && digest != prev {
		c.loginDefaultsSeen(since)
	}
}

// readLoginDefaults reads the fingerprint of the settings sessions log in
// with over a connection of its own, until it succeeds or ctx ends: run
// when sqlcache starts, so that a change before the first access check
// is seen too.
func (c *catalog) readLoginDefaults(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for {
		began := time.Now()
		err := func() error {
			ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			defer cancel()
			conn, err := pgx.Connect(ctx, c.dsn)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			var digest string
			if err := conn.QueryRow(ctx, loginDefaultsSQL).Scan(&digest); err != nil {
				return err
			}
			c.sawLoginDefaults(digest, began)
			return nil
		}()
		if err == nil {
			return
		}
		c.log.Debug("could not read the settings sessions log in with; trying again", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
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
