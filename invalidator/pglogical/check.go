package pglogical

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// SetupError is a problem that only an operator can fix: a server setting,
// a privilege, a missing or unsuitable publication or slot. The stream logs
// it at Error level and keeps retrying; Check returns it.
type SetupError struct {
	Problem string // what is wrong: `role "app" lacks REPLICATION`
	Fix     string // what to do: "ALTER ROLE app REPLICATION"
	Err     error  // the server's error, if any
}

var _ error = (*SetupError)(nil)

func (e *SetupError) Error() string { return e.Problem + ": " + e.Fix }
func (e *SetupError) Unwrap() error { return e.Err }

// checkTimeout bounds Check and each setup step but slot creation.
const checkTimeout = 30 * time.Second

// Check verifies once, at startup, that streaming can work: a connection
// with replication=database, wal_level = logical, a role with REPLICATION
// (or superuser), a publication that exists and publishes everything (or
// can be created), a usable slot, and a normal connection for heartbeats.
// The error names the problem and the fix; it is a *SetupError when an
// operator must act. Check changes nothing on the server.
func Check(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if cfg.Slot != "" && !validSlotName.MatchString(cfg.Slot) {
		return badSlotName(cfg.Slot)
	}
	conn, err := connect(ctx, cfg.DSN, true)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	if err := checkWALLevel(ctx, conn); err != nil {
		return err
	}
	role, err := currentRole(ctx, conn)
	if err != nil {
		return err
	}
	if !role.super && !role.replication {
		return lacksReplication(role.name, nil)
	}
	pub, err := inspectPublication(ctx, conn, cfg.Publication)
	if err != nil {
		return err
	}
	if pub.missing {
		if err := canCreatePublication(ctx, conn, cfg, role); err != nil {
			return err
		}
	} else if err := pub.problem(cfg.Publication); err != nil {
		return err
	} else if tables, err := tablesWithoutIdentity(ctx, conn); err != nil {
		return err
	} else if len(tables) > 0 {
		cfg.Logger.Warn("UPDATE and DELETE fail on tables without a replica identity while the publication exists",
			"publication", cfg.Publication, "tables", tables,
			"fix", "add a primary key, or ALTER TABLE ... REPLICA IDENTITY FULL")
	}
	if err := checkSlot(ctx, conn, cfg.Slot); err != nil {
		return err
	}
	hb, err := connect(ctx, cfg.DSN, false)
	if err != nil {
		return fmt.Errorf("heartbeat connection: %w", err)
	}
	defer closeConn(hb)
	if _, _, err := queryRow(ctx, hb, "SELECT pg_catalog.pg_current_wal_insert_lsn()", 1); err != nil {
		return fmt.Errorf("heartbeat connection: %w", err)
	}
	return nil
}

// connect opens a connection from dsn; with replication, a logical
// replication connection to the DSN's database. Errors an operator must fix
// become a *SetupError.
func connect(ctx context.Context, dsn string, replication bool) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, &SetupError{Problem: "bad DSN", Fix: "correct the service DSN", Err: err}
	}
	app := "sqlcache heartbeat"
	if replication {
		cfg.RuntimeParams["replication"] = "database"
		app = "sqlcache stream"
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = app
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connectError(err, cfg.User)
	}
	return conn, nil
}

// connectError explains the refusals of a replication connection that an
// operator must fix.
func connectError(err error, user string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("connect: %w", err)
	}
	msg := pgErr.Message
	switch {
	case pgErr.Code == "42501" && strings.Contains(msg, "replication"):
		// "must be superuser or replication role to start walsender"
		return lacksReplication(user, err)
	case pgErr.Code == "28000" && strings.Contains(msg, "replication connection"):
		return &SetupError{
			Problem: fmt.Sprintf("pg_hba.conf refuses replication connections of role %q", user),
			Fix:     fmt.Sprintf(`add a line "host replication %s <client address> <method>" to pg_hba.conf and reload`, user),
			Err:     err,
		}
	case pgErr.Code == "53300" && strings.Contains(msg, "max_wal_senders"):
		return &SetupError{
			Problem: "no free walsender",
			Fix:     "raise max_wal_senders (needs a restart) or end other replication connections",
			Err:     err,
		}
	}
	return fmt.Errorf("connect: %w", err)
}

func lacksReplication(user string, err error) *SetupError {
	return &SetupError{
		Problem: fmt.Sprintf("role %q lacks REPLICATION", user),
		Fix:     fmt.Sprintf("ALTER ROLE %s REPLICATION", showIdent(user)),
		Err:     err,
	}
}

func badSlotName(name string) *SetupError {
	return &SetupError{
		Problem: fmt.Sprintf("invalid replication slot name %q", name),
		Fix:     "use up to 63 lower-case letters, digits and underscores",
	}
}

// checkWALLevel requires wal_level = logical.
func checkWALLevel(ctx context.Context, conn *pgconn.PgConn) error {
	row, _, err := queryRow(ctx, conn, "SHOW wal_level", 1)
	if err != nil {
		return fmt.Errorf("show wal_level: %w", err)
	}
	if len(row) == 0 || row[0] != "logical" {
		level := ""
		if len(row) > 0 {
			level = row[0]
		}
		return &SetupError{
			Problem: fmt.Sprintf("wal_level is %q, not logical", level),
			Fix:     "ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL",
		}
	}
	return nil
}

// role is what matters about the connected role.
type role struct {
	name               string
	super, replication bool
}

func currentRole(ctx context.Context, conn *pgconn.PgConn) (role, error) {
	row, ok, err := queryRow(ctx, conn,
		"SELECT rolname, rolsuper, rolreplication FROM pg_catalog.pg_roles WHERE rolname = current_user", 3)
	if err != nil || !ok {
		return role{}, fmt.Errorf("reading the role's attributes: %w (rows: %v)", err, ok)
	}
	return role{name: row[0], super: row[1] == "t", replication: row[2] == "t"}, nil
}

// publication is what pg_publication says about one.
type publication struct {
	missing                                   bool
	allTables                                 bool
	insert, update, delete, truncate, viaRoot bool
	// version is the row's xmin: any ALTER PUBLICATION gives it another.
	version string
}

func inspectPublication(ctx context.Context, conn *pgconn.PgConn, name string) (publication, error) {
	row, ok, err := queryRow(ctx, conn, "SELECT "+publicationColumns+
		" FROM pg_catalog.pg_publication p WHERE p.pubname = "+quoteLiteral(name), 7)
	if err != nil {
		return publication{}, fmt.Errorf("reading publication %q: %w", name, err)
	}
	if !ok {
		return publication{missing: true}, nil
	}
	return publicationFrom(row), nil
}

// publicationColumns are what publicationFrom reads, of pg_publication p.
const publicationColumns = "p.puballtables, p.pubinsert, p.pubupdate, p.pubdelete, p.pubtruncate, p.pubviaroot, p.xmin::text"

// publicationFrom reads the publicationColumns of row; all NULL (no such
// publication) is a missing one.
func publicationFrom(row []string) publication {
	if row[0] == "" {
		return publication{missing: true}
	}
	t := func(i int) bool { return row[i] == "t" }
	return publication{allTables: t(0), insert: t(1), update: t(2), delete: t(3), truncate: t(4), viaRoot: t(5), version: row[6]}
}

// createPublicationSQL is what CreatePublication runs, for the publication
// ident (quoted as needed).
func createPublicationSQL(ident string) string {
	return "CREATE PUBLICATION " + ident + " FOR ALL TABLES WITH (publish_via_partition_root = true)"
}

// problem says why an existing publication would let changes go unseen.
func (p publication) problem(name string) error {
	switch {
	case !p.allTables:
		return &SetupError{
			Problem: fmt.Sprintf("publication %q does not publish all tables, so changes to the others would go unseen", name),
			Fix:     "DROP PUBLICATION " + showIdent(name) + "; " + createPublicationSQL(showIdent(name)),
		}
	case !p.insert || !p.update || !p.delete || !p.truncate:
		return &SetupError{
			Problem: fmt.Sprintf("publication %q does not publish all of insert, update, delete and truncate", name),
			Fix:     "ALTER PUBLICATION " + showIdent(name) + " SET (publish = 'insert, update, delete, truncate')",
		}
	case !p.viaRoot:
		return &SetupError{
			Problem: fmt.Sprintf("publication %q sends partitions' changes under the partition's name, so answers reading a partitioned table would not be invalidated", name),
			Fix:     "ALTER PUBLICATION " + showIdent(name) + " SET (publish_via_partition_root = true)",
		}
	}
	return nil
}

// missingPublication is the error for a publication the stream may not
// create.
func missingPublication(name, why string) *SetupError {
	return &SetupError{
		Problem: fmt.Sprintf("publication %q does not exist%s", name, why),
		Fix:     "as a superuser: " + createPublicationSQL(showIdent(name)),
	}
}

// canCreatePublication says why the stream could not create the missing
// publication, or nil if it could.
func canCreatePublication(ctx context.Context, conn *pgconn.PgConn, cfg Config, r role) error {
	if !cfg.CreatePublication {
		return missingPublication(cfg.Publication, "")
	}
	if !r.super {
		return missingPublication(cfg.Publication, fmt.Sprintf(" and role %q, not a superuser, cannot create it FOR ALL TABLES", r.name))
	}
	tables, err := tablesWithoutIdentity(ctx, conn)
	if err != nil {
		return err
	}
	if len(tables) > 0 {
		return &SetupError{
			Problem: fmt.Sprintf("publication %q does not exist, and creating it would make UPDATE and DELETE fail on tables without a replica identity: %s",
				cfg.Publication, strings.Join(tables, ", ")),
			Fix: "give each a primary key or ALTER TABLE ... REPLICA IDENTITY FULL (the stream retries), or create the publication yourself: " + createPublicationSQL(showIdent(cfg.Publication)),
		}
	}
	return nil
}

// tablesWithoutIdentity lists (up to 20) tables that a FOR ALL TABLES
// publication covers but that have no replica identity: UPDATE and DELETE
// on them fail once such a publication exists ("cannot update table ...
// because it does not have a replica identity and publishes updates").
func tablesWithoutIdentity(ctx context.Context, conn *pgconn.PgConn) ([]string, error) {
	rows, err := queryRows(ctx, conn, `SELECT format('%I.%I', n.nspname, c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND c.oid >= 16384
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND (c.relreplident = 'n'
    OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
    OR (c.relreplident = 'i' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)))
ORDER BY 1 LIMIT 20`)
	if err != nil {
		return nil, fmt.Errorf("listing tables without a replica identity: %w", err)
	}
	tables := make([]string, len(rows))
	for i, r := range rows {
		tables[i] = r[0]
	}
	return tables, nil
}

// slotState is what pg_replication_slots says about a named slot.
type slotState struct {
	missing        bool
	plugin, kind   string
	database       string
	temporary      bool
	activePID      string // "" if not in use
	walStatus      string // "lost" if it can no longer be used
	confirmedFlush uint64
}

func inspectSlot(ctx context.Context, conn *pgconn.PgConn, name string) (slotState, error) {
	row, ok, err := queryRow(ctx, conn, "SELECT plugin, slot_type, database, temporary, active_pid, wal_status, confirmed_flush_lsn"+
		" FROM pg_catalog.pg_replication_slots WHERE slot_name = "+quoteLiteral(name), 7)
	if err != nil {
		return slotState{}, fmt.Errorf("reading replication slot %q: %w", name, err)
	}
	if !ok {
		return slotState{missing: true}, nil
	}
	st := slotState{plugin: row[0], kind: row[1], database: row[2], temporary: row[3] == "t", activePID: row[4], walStatus: row[5]}
	if row[6] != "" {
		lsn, err := parseLSN(row[6])
		if err != nil {
			return slotState{}, fmt.Errorf("replication slot %q: %w", name, err)
		}
		st.confirmedFlush = lsn
	}
	return st, nil
}

// problem says why the stream cannot use an existing slot, now or ever.
func (st slotState) problem(name, db string) error {
	if st.plugin != "pgoutput" || st.kind != "logical" || st.database != db || st.temporary {
		return &SetupError{
			Problem: fmt.Sprintf("replication slot %q exists but is not a permanent pgoutput slot of database %q (%s %s of %q, temporary %v)",
				name, db, st.kind, st.plugin, st.database, st.temporary),
			Fix: fmt.Sprintf("choose another slot name, or drop it: SELECT pg_drop_replication_slot('%s')", name),
		}
	}
	if st.activePID != "" {
		// Another sqlcache, or our own connection that the server has not
		// yet noticed is gone (wal_sender_timeout): retried.
		return fmt.Errorf("replication slot %q is in use by the process with PID %s", name, st.activePID)
	}
	return nil
}

// checkSlot checks that the stream can get its slot: a usable permanent
// slot, or a free one to create.
func checkSlot(ctx context.Context, conn *pgconn.PgConn, name string) error {
	if name != "" {
		row, _, err := queryRow(ctx, conn, "SELECT current_database()", 1)
		if err != nil {
			return err
		}
		st, err := inspectSlot(ctx, conn, name)
		if err != nil {
			return err
		}
		if !st.missing {
			return st.problem(name, row[0])
		}
	}
	row, _, err := queryRow(ctx, conn, "SELECT (SELECT count(*) FROM pg_catalog.pg_replication_slots), current_setting('max_replication_slots')", 2)
	if err != nil {
		return fmt.Errorf("counting replication slots: %w", err)
	}
	used, _ := strconv.Atoi(row[0])
	limit, _ := strconv.Atoi(row[1])
	if used >= limit {
		return noFreeSlot(limit, nil)
	}
	return nil
}

func noFreeSlot(limit int, err error) *SetupError {
	what := "all replication slots are in use"
	if limit > 0 {
		what = fmt.Sprintf("all %d replication slots are in use", limit)
	}
	return &SetupError{Problem: what, Fix: "drop unused slots, or raise max_replication_slots (needs a restart)", Err: err}
}
