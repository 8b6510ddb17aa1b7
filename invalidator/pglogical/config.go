package pglogical

import (
	"log/slog"
	"time"

	"github.com/sqlcache/sqlcache/invalidator"
)

// Config configures a Stream. Zero values mean the defaults given per field.
type Config struct {
	// DSN is a connection string (URL or key=value) for sqlcache's service
	// role in the database to follow. The stream adds replication=database
	// itself for its replication connection, and uses the DSN as-is for its
	// heartbeat connection. The role needs REPLICATION (or superuser).
	DSN string
	// Database names the database in logs and Handler calls.
	Database string
	// Publication to stream. If empty, "sqlcache". It must publish all
	// tables and all of insert, update, delete and truncate, via the
	// partition root, or the stream refuses it: changes to tables outside
	// it would go unseen.
	Publication string
	// CreatePublication: if the publication is missing, try
	//	CREATE PUBLICATION <name> FOR ALL TABLES WITH (publish_via_partition_root = true)
	// which needs a superuser on PostgreSQL 15. If not allowed or false, a
	// missing publication is an error (retried).
	//
	// Such a publication makes UPDATE and DELETE fail on every table
	// without a replica identity (no primary key and no REPLICA IDENTITY
	// FULL or USING INDEX), for every client. So the stream does not create
	// it while such tables exist; the error names them.
	CreatePublication bool
	// Slot: "" means a TEMPORARY slot with a generated name
	// (sqlcache_<8 random hex>), dropped by PostgreSQL when the connection
	// ends: nothing is retained if sqlcache dies. A name means a permanent
	// slot (lower-case letters, digits and underscores): created if
	// missing, reused on reconnect, retaining WAL while sqlcache is down.
	Slot string
	// Heartbeat is how often freshness is re-established. If zero, 100ms.
	Heartbeat time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failure, which
	// doubles from MinBackoff (if zero, 100ms) to MaxBackoff (if zero, 5s).
	MinBackoff, MaxBackoff time.Duration
	// Logger receives the stream's logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Handler receives what the stream learns. If nil, nothing does.
	Handler Handler
}

// Handler receives what the stream learns. For a given Stream, all calls
// are serialized (made from one goroutine), and must not block for long:
// the stream reads nothing while a call runs.
type Handler interface {
	// Reset says that changes before this point may have been missed (a
	// new temporary slot was created, a permanent slot was found lost and
	// recreated, the stream reconnected with a temporary slot): drop every
	// cached answer of database db. It is called after the new slot exists
	// and before the stream reports fresh again.
	Reset(db string)
	// Apply passes the changes of one committed transaction, at its Commit
	// message (deduplicated by table and kind), or a Schema change from a
	// Relation message whose columns or name differ from the last one seen
	// for that table. The stream does not use changes after the call
	// returns.
	Apply(db string, changes []invalidator.Change)
}

// Defaults for Config's zero values.
const (
	defaultPublication = "sqlcache"
	defaultHeartbeat   = 100 * time.Millisecond
	defaultMinBackoff  = 100 * time.Millisecond
	defaultMaxBackoff  = 5 * time.Second
)

// withDefaults returns c with its zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.Publication == "" {
		c.Publication = defaultPublication
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = defaultHeartbeat
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = defaultMinBackoff
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = defaultMaxBackoff
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Handler == nil {
		c.Handler = nopHandler{}
	}
	return c
}

// nopHandler stands in for a nil Config.Handler.
type nopHandler struct{}

func (nopHandler) Reset(string)                       {}
func (nopHandler) Apply(string, []invalidator.Change) {}
