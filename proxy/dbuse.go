package proxy

import (
	"context"
	"time"

	"github.com/sqlcache/sqlcache/invalidator/pglogical"
)

// dbIdleRelease is how long a database keeps its change stream and
// catalog connection after its last session through sqlcache ends. Both
// hold the database open on the server (DROP DATABASE, even WITH
// (FORCE), fails on a database with an active replication slot; CREATE
// DATABASE cannot copy a template that has connections), and a walsender
// each counts against max_wal_senders. Released, the database's answers
// are dropped: a new stream starts with a Reset anyway.
const dbIdleRelease = 30 * time.Second

// dbJoin counts a session of database db that uses the cache, which keeps
// its stream and catalog connection.
func (p *Proxy) dbJoin(db string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dbSessions[db]++
}

// dbLeave ends what dbJoin counted; the database's last session leaving
// starts its release, dbIdleRelease later.
func (p *Proxy) dbLeave(db string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dbSessions[db]--
	if p.dbSessions[db] > 0 {
		return
	}
	delete(p.dbSessions, db)
	if p.closing {
		return
	}
	// Not counted in p.bg: Close must not wait for it; releaseDB does
	// nothing once the proxy is closing.
	time.AfterFunc(p.dbRelease, func() { p.releaseDB(db) })
}

// releaseDB stops database db's change stream and closes its catalog
// connection, unless a session uses it again or the proxy is closing
// (which stops them all).
func (p *Proxy) releaseDB(db string) {
	p.mu.Lock()
	if p.dbSessions[db] > 0 || p.closing {
		p.mu.Unlock()
		return
	}
	// Under p.mu: a session that joins from now on gets a new stream.
	var st *pglogical.Stream
	if p.streams != nil {
		st = p.streams.remove(db)
	}
	p.mu.Unlock()
	if st != nil {
		st.Close()
	}
	if p.catalog != nil {
		p.catalog.forget(db)
	}
	n := p.store.InvalidateDB(db)
	p.planner.forget(db)
	p.log.Info("database idle: released its change stream and catalog connection", "database", db, "entries", n)
}

// forget closes database db's catalog connection and forgets what was
// looked up in it; the next lookup connects again.
func (c *catalog) forget(db string) {
	c.mu.Lock()
	d := c.dbs[db]
	delete(c.dbs, db)
	c.mu.Unlock()
	if d == nil {
		return
	}
	d.lookupMu.Lock()
	defer d.lookupMu.Unlock()
	if d.conn != nil {
		d.conn.Close(context.Background())
		d.conn = nil
	}
}
