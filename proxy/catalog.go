package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sqlcache/sqlcache/cachepolicy"
)

// catalog answers cachepolicy's questions about relations and functions
// from the backend's system catalogs, over sqlcache's own login
// (postgres.service_dsn) to each database clients use.
//
// Lookups happen only when a statement is first planned, never on a hit.
// One connection per database serves them one at a time; a statement
// whose names were looked up before does not wait for them.
type catalog struct {
	dsn string // postgres.service_dsn; "" means no lookups are possible
	log *slog.Logger

	// accessChanged drops database db's cached answers: who may read
	// what there may have changed (checkAccess), for the reason why;
	// failed if a check failed. Called with the database's lookupMu held.
	accessChanged func(db, why string, failed bool)
	// relationsChanged drops database db's cached answers that read a
	// relation of one of names, after a relation of that name was made or
	// dropped elsewhere, or was rewritten, and nothing else watched
	// changed (checkAccess).
	// Called with the database's lookupMu held.
	// The change was made after the check numbered window began.
	relationsChanged func(db string, names []string, window uint64)
	// checkBegins numbers an access check of database db as it begins.
	checkBegins func(db string) uint64
	// loginDefaultsSeen is told that the settings sessions log in with
	// (pg_db_role_setting) changed since they were read at since.
	loginDefaultsSeen func(since time.Time)

	loginMu     sync.Mutex // protects the fields below
	login       string     // the last fingerprint of pg_db_role_setting read
	loginReadAt time.Time  // when that read began
	loginKnown  bool
	// accessChecked counts a check, failed or not.
	accessChecked func(failed bool)

	mu  sync.Mutex // protects dbs
	dbs map[string]*dbCatalog
}

type dbCatalog struct {
	// lookupMu is held across a lookup, so that lookups run one at a time
	// on conn; it protects conn. A statement whose names are all known
	// never waits for it.
	lookupMu sync.Mutex
	conn     *pgx.Conn
	// access is what the last access check read (checkAccess);
	// accessLost: a check failed since. Protected by lookupMu.
	access     *access
	accessLost bool
	checkedAt  time.Time // when the last check that succeeded began
	checkedSeq uint64    // and its number (catalog.checkBegins)

	// mu protects the fields below and is never held across I/O. They
	// change only under lookupMu as well, so a lookup reads them without
	// mu.
	mu sync.Mutex
	// failedUntil: the last lookup failed; until then lookups fail at
	// once with failed, so that an unreachable catalog does not hold up
	// every statement for the lookup timeout. retry is the current delay,
	// doubled by each failure in a row.
	failedUntil time.Time
	failed      error
	retry       time.Duration
	epoch       uint64              // planner epoch the cached facts belong to
	rels        map[string]relFacts // by relation name
	funcs       map[string][]cachepolicy.FuncInfo
}

// relFacts is what the catalog says about one relation name, in every
// schema, with what is needed of the relations behind it if it is a view.
type relFacts struct {
	infos []cachepolicy.RelInfo
	bases []cachepolicy.RelInfo // relations the views among infos read, transitively
	// funcs are the functions the views' definitions call; reason, if
	// set, is why a view's definition is not cacheable (it reads the
	// clock, say).
	funcs  []string
	reason string
}

func newCatalog(dsn string, log *slog.Logger) *catalog {
	return &catalog{dsn: dsn, log: log, dbs: make(map[string]*dbCatalog), accessChanged: func(string, string, bool) {},
		relationsChanged: func(string, []string, uint64) {}, accessChecked: func(bool) {},
		checkBegins:       func(string) uint64 { return 0 },
		loginDefaultsSeen: func(time.Time) {}}
}

func (c *catalog) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.dbs {
		d.lookupMu.Lock()
		if d.conn != nil {
			d.conn.Close(context.Background())
			d.conn = nil
		}
		d.lookupMu.Unlock()
	}
}

func (c *catalog) db(name string) *dbCatalog {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.dbs[name]
	if d == nil {
		d = &dbCatalog{}
		c.dbs[name] = d
	}
	return d
}

// facts returns the catalog facts the policy needs for a, from what this
// database's catalog told before in the same epoch or from new lookups.
// It also returns a reason when a view a reads is not cacheable.
func (c *catalog) facts(ctx context.Context, db string, epoch uint64, a *cachepolicy.Analysis) (cachepolicy.Facts, string, error) {
	if c.dsn == "" {
		return cachepolicy.Facts{}, "", fmt.Errorf("postgres.service_dsn is not set")
	}
	d := c.db(db)
	if f, reason, ok := d.known(epoch, a); ok {
		return f, reason, nil
	}
	d.lookupMu.Lock()
	defer d.lookupMu.Unlock()
	// The lookup this one waited for may have found a's names.
	if f, reason, ok := d.known(epoch, a); ok {
		return f, reason, nil
	}
	d.mu.Lock()
	if d.epoch != epoch || d.rels == nil {
		d.epoch = epoch
		d.rels = make(map[string]relFacts)
		d.funcs = make(map[string][]cachepolicy.FuncInfo)
	}
	var failed error
	if time.Now().Before(d.failedUntil) {
		failed = d.failed
	}
	d.mu.Unlock()
	if failed != nil {
		return cachepolicy.Facts{}, "", failed
	}
	rels, funcs, err := c.fill(ctx, d, db, a)
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil {
		d.retry = min(max(2*d.retry, catalogRetryMin), catalogRetryMax)
		d.failedUntil = time.Now().Add(d.retry)
		d.failed = fmt.Errorf("%w (retried after %v)", err, d.retry)
		return cachepolicy.Facts{}, "", err
	}
	d.retry = 0
	maps.Copy(d.rels, rels)
	maps.Copy(d.funcs, funcs)
	f, reason := d.assemble(a)
	return f, reason, nil
}

// known returns a's facts if every name a needs was looked up before in
// this epoch.
func (d *dbCatalog) known(epoch uint64, a *cachepolicy.Analysis) (cachepolicy.Facts, string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.epoch != epoch || d.rels == nil {
		return cachepolicy.Facts{}, "", false
	}
	for _, r := range a.Relations {
		rf, ok := d.rels[r.Name]
		if !ok || !d.knowsFuncs(rf.funcs) {
			return cachepolicy.Facts{}, "", false
		}
	}
	if !d.knowsFuncs(a.Functions) {
		return cachepolicy.Facts{}, "", false
	}
	f, reason := d.assemble(a)
	return f, reason, true
}

// fill looks up the names of a that are not known yet and returns what
// it found, for the caller to add under d.mu. The caller holds
// d.lookupMu, and known has said that something is missing.
func (c *catalog) fill(ctx context.Context, d *dbCatalog, db string, a *cachepolicy.Analysis) (map[string]relFacts, map[string][]cachepolicy.FuncInfo, error) {
	var names []string
	for _, r := range a.Relations {
		if _, ok := d.rels[r.Name]; !ok {
			names = append(names, r.Name)
		}
	}
	funcs := slices.Clone(a.Functions)
	for _, r := range a.Relations {
		funcs = append(funcs, d.rels[r.Name].funcs...)
	}
	// The timeout only here: a statement of a known shape (known) pays for
	// no timer.
	ctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	defer cancel()
	conn, err := c.connect(ctx, d, db)
	if err != nil {
		return nil, nil, err
	}
	rels := make(map[string]relFacts)
	seen := newAccess()
	if err := lookup(ctx, conn, names, rels, seen); err != nil {
		// The connection may be broken; start afresh next time.
		conn.Close(context.Background())
		d.conn = nil
		return nil, nil, err
	}
	d.watch(seen)
	for _, rf := range rels {
		funcs = append(funcs, rf.funcs...)
	}
	var missing []string
	for _, f := range funcs {
		if _, ok := d.funcs[f]; !ok {
			missing = append(missing, f)
		}
	}
	found := make(map[string][]cachepolicy.FuncInfo)
	if len(missing) == 0 {
		return rels, found, nil
	}
	seenFuncs := newAccess()
	if err := lookupFunctions(ctx, conn, missing, found, seenFuncs); err != nil {
		conn.Close(context.Background())
		d.conn = nil
		return nil, nil, err
	}
	d.watch(seenFuncs)
	return rels, found, nil
}

// settingsSetter is cachepolicy.SettingsSetter over what database db's
// catalog knows now, without a lookup: for a statement whose lookup
// failed. A function or a written relation not looked up yet counts as a
// setter.
func (c *catalog) settingsSetter(db string, calls, writes []string) string {
	d := c.db(db)
	d.mu.Lock()
	defer d.mu.Unlock()
	f := cachepolicy.Facts{Relations: make(map[string][]cachepolicy.RelInfo), Functions: make(map[string][]cachepolicy.FuncInfo)}
	for _, w := range writes {
		if rf, ok := d.rels[w]; ok {
			f.Relations[w] = rf.infos
		}
	}
	for _, fn := range slices.Concat(calls, cachepolicy.WriteFuncs(writes, f)) {
		if fs, ok := d.funcs[fn]; ok {
			f.Functions[fn] = fs
		}
	}
	// Operators and casts not looked up yet are taken not to set settings:
	// nearly every statement uses some, and a passing lookup failure must
	// not cost each session that ran one its cache for good.
	calls = slices.DeleteFunc(slices.Clone(calls), func(fn string) bool {
		_, known := f.Functions[fn]
		return !known && cachepolicy.Implicit(fn)
	})
	return cachepolicy.SettingsSetter(calls, writes, f)
}

func (d *dbCatalog) knowsFuncs(names []string) bool {
	for _, f := range names {
		if _, ok := d.funcs[f]; !ok {
			return false
		}
	}
	return true
}

// assemble builds the policy's Facts for a from the cache.
//
// The facts share slices with the cache: nothing may change them, and
// they share no array that anything appends to.
func (d *dbCatalog) assemble(a *cachepolicy.Analysis) (cachepolicy.Facts, string) {
	f := cachepolicy.Facts{
		Relations: make(map[string][]cachepolicy.RelInfo),
		Functions: make(map[string][]cachepolicy.FuncInfo),
	}
	var reason string
	addFuncs := func(names []string) {
		for _, n := range names {
			f.Functions[n] = d.funcs[n]
		}
	}
	addFuncs(a.Functions)
	for _, r := range a.Relations {
		rf := d.rels[r.Name]
		f.Relations[r.Name] = rf.infos
		for _, b := range rf.bases {
			if !hasRel(f.Relations[b.Name], b.Schema) {
				// Clip: the slice may be d.rels's own.
				f.Relations[b.Name] = append(slices.Clip(f.Relations[b.Name]), b)
			}
		}
		addFuncs(rf.funcs)
		if rf.reason != "" && reason == "" {
			reason = rf.reason
		}
	}
	return f, reason
}

// lookup asks the catalog about relation names, the views among them,
// the relations those views read and the views' own definitions, and adds
// what it finds to rels, and to access each relation's access
// (accessColumn) by OID and the relations of each name.
func lookup(ctx context.Context, conn *pgx.Conn, names []string, rels map[string]relFacts, access *access) error {
	if len(names) == 0 {
		return nil
	}
	found := make(map[string][]cachepolicy.RelInfo)
	readers := make(map[uint32][]string) // relation → the names whose answers read it
	views, err := lookupRelations(ctx, conn, names, found, access, readers)
	if err != nil {
		return err
	}
	for _, n := range names {
		rels[n] = relFacts{infos: found[n]}
	}
	if len(views) > 0 {
		if err := lookupViews(ctx, conn, views, rels, access, readers); err != nil {
			return err
		}
	}
	return lookupPolicies(ctx, conn, readers, rels)
}

// lookupViews attaches to each view name what its views read and call.
func lookupViews(ctx context.Context, conn *pgx.Conn, views map[uint32]viewRef, rels map[string]relFacts, access *access, readers map[uint32][]string) error {
	oids := make([]uint32, 0, len(views))
	for oid := range views {
		oids = append(oids, oid)
	}
	rows, err := conn.Query(ctx, viewBasesSQL, oids)
	if err != nil {
		return fmt.Errorf("catalog view dependencies: %w", err)
	}
	type baseRow struct {
		view   uint32
		base   cachepolicy.RelInfo
		family []string
		oid    uint32
	}
	var bases []baseRow
	for rows.Next() {
		var b baseRow
		var kind, bkey string
		var storage, acc string
		if err := rows.Scan(&b.view, &b.base.Name, &b.base.Schema, &kind, &b.base.Temp, &b.base.Unlogged, &b.base.System, &b.base.RunsCode, &bkey, &b.base.Root, &b.family, &b.base.WriteFuncs, &b.base.CatalogColumn, &b.base.CatalogType, &b.oid, &storage, &acc); err != nil {
			rows.Close()
			return fmt.Errorf("catalog view dependencies: %w", err)
		}
		b.base.Kind = kind[0]
		b.base.KeyType, b.base.Key = primaryKey(bkey)
		if !b.base.Temp {
			access.rels[b.oid] = acc
			access.storage[b.oid] = storage
		}
		readers[b.oid] = append(readers[b.oid], views[b.view].name)
		bases = append(bases, b)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog view dependencies: %w", err)
	}
	// Every view in the closure: the named ones and the views they read.
	defs := make(map[uint32][]uint32) // named view → views whose definitions count
	for oid := range views {
		defs[oid] = append(defs[oid], oid)
	}
	for _, b := range bases {
		v := views[b.view]
		rf := rels[v.name]
		rf.bases = append(rf.bases, b.base)
		ri := &rf.infos[v.index]
		ri.Base = append(ri.Base, b.base.Name)
		if b.base.Root != "" {
			ri.Base = append(ri.Base, b.base.Root)
		}
		ri.Base = append(ri.Base, b.family...)
		rels[v.name] = rf
		if b.base.Kind == 'v' {
			defs[b.view] = append(defs[b.view], b.oid)
		}
	}
	return lookupViewDefs(ctx, conn, views, defs, rels)
}

// lookupViewDefs parses each view's definition, for the functions it calls
// (pinned built-ins like now() are absent from pg_depend) and anything
// else that makes it uncacheable.
func lookupViewDefs(ctx context.Context, conn *pgx.Conn, views map[uint32]viewRef, defs map[uint32][]uint32, rels map[string]relFacts) error {
	var all []uint32
	for _, oids := range defs {
		all = append(all, oids...)
	}
	rows, err := conn.Query(ctx, `SELECT c.oid, c.relname, pg_get_viewdef(c.oid) FROM pg_class c WHERE c.oid = ANY($1)`, all)
	if err != nil {
		return fmt.Errorf("catalog view definitions: %w", err)
	}
	defer rows.Close()
	analyses := make(map[uint32]*cachepolicy.Analysis)
	names := make(map[uint32]string)
	for rows.Next() {
		var oid uint32
		var name, def string
		if err := rows.Scan(&oid, &name, &def); err != nil {
			return fmt.Errorf("catalog view definitions: %w", err)
		}
		analyses[oid], names[oid] = cachepolicy.Analyze(def), name
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("catalog view definitions: %w", err)
	}
	for view, oids := range defs {
		v := views[view]
		rf := rels[v.name]
		for _, oid := range oids {
			a := analyses[oid]
			if a == nil {
				continue
			}
			if !a.Candidate && rf.reason == "" {
				rf.reason = fmt.Sprintf("view %s: %s", names[oid], a.Reason)
			}
			rf.funcs = append(rf.funcs, a.Functions...)
		}
		rels[v.name] = rf
	}
	return nil
}

// connect returns d's service connection, opening it if need be; a new
// connection checks the database's access fingerprint first. The caller
// holds d.lookupMu.
func (c *catalog) connect(ctx context.Context, d *dbCatalog, db string) (*pgx.Conn, error) {
	if d.conn != nil && !d.conn.IsClosed() {
		return d.conn, nil
	}
	cfg, err := pgx.ParseConfig(c.dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres.service_dsn: %w", err)
	}
	cfg.Database = db
	cfg.RuntimeParams["application_name"] = "sqlcache catalog"
	// Names are resolved in every schema, whatever the search_path.
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		err = fmt.Errorf("service connection to database %q: %w", db, err)
		c.accessLost(d, db, err)
		return nil, err
	}
	if err := c.checkAccess(ctx, d, db, conn); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	d.conn = conn
	return conn, nil
}

// relColumns are the columns that describe a relation c in n, after its name
// and schema: kind, temporary, unlogged (or with an unlogged or foreign
// partition or child, whose changes the stream does not carry either),
// system, whether a write to it may run code
// (cachepolicy.RelInfo.RunsCode), its single-column primary key
// ("typeoid name"; not a generated column, which an UPDATE changes without
// setting it), partition root, and its family: its
// partitions or inheritance children and its ancestors, transitively.
// Reading a parent reads its children's rows, and a write through a parent
// may change a child's, so an answer depends on the whole family. Then the
// user-defined functions a write to it may run, and the name and type of
// its first column of an object identifier type (from oidColumnJoin,
// which the query must join).
// quietTriggers are the internal trigger functions that write nothing:
// foreign keys' checks and NO ACTION or RESTRICT actions (they lock
// rows), and deferred uniqueness checks. A table with only these runs no
// code (cachepolicy.RelInfo.RunsCode); CASCADE, SET NULL and SET DEFAULT
// actions write.
const quietTriggers = `'RI_FKey_check_ins', 'RI_FKey_check_upd', 'RI_FKey_noaction_del',
         'RI_FKey_noaction_upd', 'RI_FKey_restrict_del', 'RI_FKey_restrict_upd', 'unique_key_recheck'`

const relColumns = `c.relkind::text, c.relpersistence = 't',
       c.relpersistence = 'u' OR EXISTS (WITH RECURSIVE d(oid) AS (SELECT inhrelid FROM pg_inherits WHERE inhparent = c.oid
                 UNION SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.oid)
             SELECT FROM pg_class k WHERE k.oid IN (SELECT oid FROM d) AND (k.relpersistence = 'u' OR k.relkind = 'f')),
       n.nspname IN ('pg_catalog', 'information_schema') OR n.nspname LIKE 'pg\_toast%',
       c.relhasrules OR c.relrowsecurity OR EXISTS (
         SELECT FROM pg_trigger t JOIN pg_proc f ON f.oid = t.tgfoid
         WHERE t.tgrelid = c.oid AND NOT (t.tgisinternal AND f.proname IN (` + quietTriggers + `))) OR EXISTS (
         SELECT FROM pg_depend d
         WHERE d.refclassid = 'pg_proc'::regclass AND d.refobjid >= 16384
           AND (d.classid = 'pg_attrdef'::regclass
                  AND d.objid IN (SELECT oid FROM pg_attrdef WHERE adrelid = c.oid)
                OR d.classid = 'pg_constraint'::regclass
                  AND d.objid IN (SELECT oid FROM pg_constraint WHERE conrelid = c.oid))),
       coalesce((SELECT a.atttypid::text || ' ' || a.attname
                 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                 WHERE i.indrelid = c.oid AND i.indisprimary AND i.indnkeyatts = 1 AND a.attgenerated = ''), ''),
       coalesce((SELECT r.relname FROM pg_class r
                 WHERE c.relispartition AND r.oid = pg_partition_root(c.oid)), ''),
       ARRAY(WITH RECURSIVE
               d(oid) AS (SELECT inhrelid FROM pg_inherits WHERE inhparent = c.oid
                 UNION SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.oid),
               a(oid) AS (SELECT inhparent FROM pg_inherits WHERE inhrelid = c.oid
                 UNION SELECT i.inhparent FROM pg_inherits i JOIN a ON i.inhrelid = a.oid)
             SELECT relname::text FROM pg_class
             WHERE oid IN (SELECT oid FROM d) OR oid IN (SELECT oid FROM a)),
       ARRAY(WITH RECURSIVE d(oid) AS (SELECT c.oid
                 UNION SELECT i.inhrelid FROM pg_inherits i JOIN d ON i.inhparent = d.oid)
             SELECT DISTINCT p.proname::text FROM pg_proc p
             WHERE p.oid >= 16384 AND (
               p.oid IN (SELECT t.tgfoid FROM pg_trigger t WHERE t.tgrelid IN (SELECT oid FROM d) AND NOT t.tgisinternal)
               OR p.oid IN (SELECT dp.refobjid FROM pg_depend dp
                 WHERE dp.refclassid = 'pg_proc'::regclass
                   AND (dp.classid = 'pg_attrdef'::regclass
                          AND dp.objid IN (SELECT oid FROM pg_attrdef WHERE adrelid IN (SELECT oid FROM d))
                        OR dp.classid = 'pg_constraint'::regclass
                          AND dp.objid IN (SELECT oid FROM pg_constraint WHERE conrelid IN (SELECT oid FROM d)))))),
       coalesce(oidcol.name, ''), coalesce(oidcol.type, ''),
       `

// oidColumnJoin, joined to pg_class c, gives oidcol: the name and type of
// c's first column of an object identifier type (catalogTypeOIDs), its
// elements' or its domain's base type, for relColumns.
var oidColumnJoin = `
LEFT JOIN LATERAL (SELECT a.attname::text AS name, format_type(a.atttypid, NULL) AS type
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
      AND ARRAY[t.oid, t.typelem, t.typbasetype] && ` + catalogTypeOIDs + `
    ORDER BY a.attnum LIMIT 1) oidcol ON true`

// catalogTypeOIDs is SQL for the OIDs of cachepolicy.CatalogTypes.
var catalogTypeOIDs = func() string {
	var oids []string
	for _, oid := range slices.Sorted(maps.Values(cachepolicy.CatalogTypes)) {
		oids = append(oids, strconv.FormatUint(uint64(oid), 10))
	}
	return "'{" + strings.Join(oids, ",") + "}'::oid[]"
}()

var relationsSQL = `
SELECT c.relname, n.nspname, ` + relColumns + `c.oid, ` + storageColumn + `, ` + accessColumn + `
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace` + oidColumnJoin + `
WHERE c.relname = ANY($1)`

// viewBasesSQL returns, for each view among $1, every relation it reads,
// through views of views.
var viewBasesSQL = `
WITH RECURSIVE deps(view, ref) AS (
    SELECT r.ev_class, d.refobjid
    FROM pg_rewrite r JOIN pg_depend d
      ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
    WHERE r.ev_class = ANY($1) AND d.refobjid <> r.ev_class
  UNION
    SELECT deps.view, d.refobjid
    FROM deps JOIN pg_rewrite r ON r.ev_class = deps.ref
      JOIN pg_depend d
      ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid AND d.refclassid = 'pg_class'::regclass
    WHERE d.refobjid <> r.ev_class
)
SELECT DISTINCT deps.view, c.relname, n.nspname, ` + relColumns + `c.oid, ` + storageColumn + `, ` + accessColumn + `
FROM deps JOIN pg_class c ON c.oid = deps.ref JOIN pg_namespace n ON n.oid = c.relnamespace` + oidColumnJoin

// functionsSQL describes every function each name among $1 stands for
// (cachepolicy.Analysis.Functions): the functions of that name, and for
// "operator X" and "cast T" (cachepolicy.Implicit) the functions of every
// operator named X and of every cast to a type named T. Each row gives the
// name asked for, the function's name, volatility, whether it is built in,
// its OID, the OID that the name's watch lists (the function's, the
// operator's or the cast's: funcNamesSQL), and funcAccessColumn.
//
// Its next-to-last column says whether a user-defined one may change the
// session's settings (cachepolicy.FuncInfo.SetsSettings): whether its
// source, or the source of a user-defined function whose name is a word of
// it (transitively: reach), calls set_config(), runs SET or RESET as a
// statement, or runs dynamic SQL (EXECUTE, a PL's SPI calls), which may do
// either. A text test that errs toward yes: a name or word in a comment
// counts too. C and internal functions have no source to read and are
// taken not to. A body in standard SQL (BEGIN ATOMIC) has no prosrc;
// pg_get_functiondef spells it. The next column says whether it is
// temporary, the last whether it, or one it reaches, may run DDL
// (ddlPattern).
var functionsSQL = `
WITH RECURSIVE named(name, fn, watched) AS (
` + namedFuncs + `
),
reach(root, oid, src) AS (
    SELECT p.oid, p.oid, ` + funcSource("p") + ` FROM pg_catalog.pg_proc p
    WHERE p.oid IN (SELECT fn FROM named) AND p.oid >= 16384 AND p.prolang NOT IN (12, 13)
  UNION
    SELECT r.root, q.oid, ` + funcSource("q") + `
    FROM reach r, regexp_split_to_table(r.src, '[^a-z0-9_$]+') w, pg_catalog.pg_proc q
    WHERE lower(q.proname) = w AND q.oid >= 16384 AND q.prolang NOT IN (12, 13) AND q.oid <> r.oid
),
sets AS (
    SELECT DISTINCT r.root FROM reach r
    WHERE r.src ~* ` + setsPattern + `
       OR regexp_replace(r.src, ` + commentPattern + `, ' ', 'g') ~* ` + setsPattern + `
),
ddl AS (
    SELECT DISTINCT r.root FROM reach r WHERE r.src ~* ` + ddlPattern + `
)
SELECT n.name, p.proname, p.provolatile::text, p.oid < 16384, p.oid, n.watched, ` + funcAccessColumn + `,
       p.oid IN (SELECT root FROM sets), ` + tempFunc("p") + `, p.oid IN (SELECT root FROM ddl)
FROM named n JOIN pg_catalog.pg_proc p ON p.oid = n.fn`

// setsPattern matches, in a function's source, what may change the
// session's settings or shadow its tables (functionsSQL): set_config(),
// dynamic SQL, SET or RESET as a statement, and the creation of a
// temporary relation, which the read-back then finds. A comment between
// a statement's start and its SET hides it, so the test runs on the
// source with comments taken out as well (commentPattern), and on the
// source as it is, since a "--" inside a string is not a comment.
const setsPattern = `'\mset_config\M|\mexecute\M|\mspi_|(^|;|\mbegin\M|\mthen\M|\melse\M|\mloop\M)\s*(set|reset)\M|\mcreate\s+((global|local)\s+)?temp(orary)?\M|\mpg_temp\s*[.]'`

// ddlPattern matches, in a function's source, what may run DDL
// (cachepolicy.FuncInfo.ChangesCatalog): a DDL command's first word
// anywhere, in a statement or in a string that dynamic SQL runs, and a
// PL's SPI calls. Column names such as created_at do not match.
const ddlPattern = `'\m(create|alter|drop|grant|revoke|truncate|comment\s+on|security\s+label|refresh|reindex|cluster|import\s+foreign|reassign)\M|\mspi_'`

const commentPattern = `'--[^\n]*|/[*]([^*]|[*]+[^*/])*[*]+/'`

// namedFuncs is SQL for the functions each name among $1 stands for (see
// functionsSQL), as rows of the name, the function's OID and the OID the
// name's watch lists. An aggregate stands for its support functions too:
// pg_proc calls every aggregate immutable, whatever its transition or
// final function does. A cast to a domain stands for its base type's
// input function ('rx'::regdom, a domain over regclass, looks a name up
// in the catalog as regclassin does).
const namedFuncs = `    SELECT p.proname::text, p.oid, p.oid FROM pg_catalog.pg_proc p WHERE p.proname = ANY($1)
  UNION ALL
    SELECT p.proname::text, f.fn, p.oid
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_aggregate a ON a.aggfnoid = p.oid,
         LATERAL (VALUES (a.aggtransfn::oid), (a.aggfinalfn::oid), (a.aggcombinefn::oid), (a.aggserialfn::oid),
                         (a.aggdeserialfn::oid), (a.aggmtransfn::oid), (a.aggminvtransfn::oid), (a.aggmfinalfn::oid)) f(fn)
    WHERE p.proname = ANY($1) AND f.fn <> 0
  UNION ALL
    SELECT '` + cachepolicy.OperatorPrefix + `' || o.oprname, o.oprcode, o.oid FROM pg_catalog.pg_operator o
    WHERE '` + cachepolicy.OperatorPrefix + `' || o.oprname = ANY($1) AND o.oprcode <> 0
  UNION ALL
    SELECT '` + cachepolicy.CastPrefix + `' || t.typname, c.castfunc, c.oid
    FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_type t ON t.oid = c.casttarget
    WHERE '` + cachepolicy.CastPrefix + `' || t.typname = ANY($1) AND c.castfunc <> 0
  UNION ALL
    SELECT '` + cachepolicy.CastPrefix + `' || t.typname, b.typinput::oid, t.oid
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_type b ON b.oid = t.typbasetype
    WHERE '` + cachepolicy.CastPrefix + `' || t.typname = ANY($1) AND t.typtype = 'd'`

// tempFunc is SQL for whether function alias is temporary (in a session's
// pg_temp schema): such functions are not watched.
func tempFunc(alias string) string {
	return `EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.oid = ` + alias + `.pronamespace AND n.nspname LIKE 'pg\_temp\_%')`
}

// funcSource is SQL for the source text of function alias, in lower case.
func funcSource(alias string) string {
	return `lower(CASE WHEN ` + alias + `.prosrc = '' THEN pg_catalog.pg_get_functiondef(` + alias + `.oid) ELSE ` + alias + `.prosrc END)`
}

// lookupRelations fills rels and returns the OIDs of views, indexed into
// rels so their bases can be attached.
func lookupRelations(ctx context.Context, conn *pgx.Conn, names []string, rels map[string][]cachepolicy.RelInfo, access *access, readers map[uint32][]string) (map[uint32]viewRef, error) {
	rows, err := conn.Query(ctx, relationsSQL, names)
	if err != nil {
		return nil, fmt.Errorf("catalog relations: %w", err)
	}
	defer rows.Close()
	views := make(map[uint32]viewRef)
	for rows.Next() {
		var ri cachepolicy.RelInfo
		var kind, key string
		var oid uint32
		var storage, acc string
		if err := rows.Scan(&ri.Name, &ri.Schema, &kind, &ri.Temp, &ri.Unlogged, &ri.System, &ri.RunsCode, &key, &ri.Root, &ri.Base, &ri.WriteFuncs, &ri.CatalogColumn, &ri.CatalogType, &oid, &storage, &acc); err != nil {
			return nil, fmt.Errorf("catalog relations: %w", err)
		}
		// Temporary relations are not watched: only their own session
		// sees them, and it does not use the cache; they come and go.
		if !ri.Temp {
			access.rels[oid] = acc
			access.storage[oid] = storage
			access.relNames[ri.Name] = appendOID(access.relNames[ri.Name], oid)
		}
		readers[oid] = append(readers[oid], ri.Name)
		ri.Kind = kind[0]
		ri.KeyType, ri.Key = primaryKey(key)
		rels[ri.Name] = append(rels[ri.Name], ri)
		if ri.Kind == 'v' {
			views[oid] = viewRef{name: ri.Name, index: len(rels[ri.Name]) - 1}
		}
	}
	return views, rows.Err()
}

// primaryKey splits the catalog's "typeoid name" of a single-column
// primary key; "" gives none.
func primaryKey(s string) (uint32, string) {
	oid, name, ok := strings.Cut(s, " ")
	if !ok {
		return 0, ""
	}
	n, err := strconv.ParseUint(oid, 10, 32)
	if err != nil {
		return 0, ""
	}
	return uint32(n), name
}

type viewRef struct {
	name  string
	index int
}

func hasRel(rs []cachepolicy.RelInfo, schema string) bool {
	for _, r := range rs {
		if r.Schema == schema {
			return true
		}
	}
	return false
}

// lookupFunctions adds the functions each of names stands for to funcs,
// each user-defined one's funcAccessColumn to access by OID, and the OIDs
// of the functions, operators and casts of each name to its watch.
func lookupFunctions(ctx context.Context, conn *pgx.Conn, names []string, funcs map[string][]cachepolicy.FuncInfo, access *access) error {
	rows, err := conn.Query(ctx, functionsSQL, names)
	if err != nil {
		return fmt.Errorf("catalog functions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var fi cachepolicy.FuncInfo
		var name, vol, acc string
		var oid, watched uint32
		var temp bool
		if err := rows.Scan(&name, &fi.Name, &vol, &fi.BuiltIn, &oid, &watched, &acc, &fi.SetsSettings, &temp, &fi.ChangesCatalog); err != nil {
			return fmt.Errorf("catalog functions: %w", err)
		}
		fi.Volatility = vol[0]
		if !temp {
			if !fi.BuiltIn {
				access.funcs[oid] = acc
			}
			access.funcNames[name] = appendOID(access.funcNames[name], watched)
		}
		funcs[name] = append(funcs[name], fi)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// A name no function has is known too (as nothing), so that it is
	// not looked up again for every statement that calls it.
	for _, n := range names {
		if _, ok := funcs[n]; !ok {
			funcs[n] = nil
		}
	}
	return nil
}

// lookupTimeout bounds one planning lookup; a statement whose facts cannot
// be had in time is relayed uncached. After a failure the database's
// lookups fail at once for a delay from catalogRetryMin, doubling with each
// failure in a row up to catalogRetryMax.
const (
	lookupTimeout   = 5 * time.Second
	catalogRetryMin = time.Second
	catalogRetryMax = 10 * time.Second
)

// serviceDSNFor returns the service connection string with its database
// replaced by db ("" keeps it).
func serviceDSNFor(dsn, db string) (string, error) {
	if db == "" {
		return dsn, nil
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("postgres.service_dsn: %w", err)
		}
		u.Path = "/" + db
		// A dbname parameter would win over the path (pgconn reads the
		// query after it).
		if q := u.Query(); q.Has("dbname") {
			q.Del("dbname")
			u.RawQuery = q.Encode()
		}
		return u.String(), nil
	}
	// In key=value form a later key wins.
	quoted := strings.ReplaceAll(strings.ReplaceAll(db, `\`, `\\`), `'`, `\'`)
	return dsn + " dbname='" + quoted + "'", nil
}
