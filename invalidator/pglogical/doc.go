// Package pglogical follows one PostgreSQL database's logical replication
// stream (the pgoutput plugin) and tells a Handler which tables changed,
// whoever changed them, and up to when it has seen everything (FreshAsOf).
//
// It is not a replication client: it reads no row values, keeps no copy of
// any data, and confirms positions only so that a permanent slot does not
// retain WAL. It does not decide what to invalidate; the proxy does.
//
// How freshness is known. A heartbeat takes t0 := time.Now(), then reads
// the server's WAL insert position over a normal connection, then asks the
// walsender for a keepalive. Every transaction that committed (became
// visible) before t0 has its commit record at or before that position. The
// walsender decodes WAL in order and sends each transaction at its commit
// record; a keepalive received between transactions carries the position
// up to which it has decoded. Once that position (or the end of the last
// Commit applied) reaches the heartbeat's target, every transaction that
// committed before t0 has been passed to Handler.Apply, so FreshAsOf = t0.
//
// What the stream cannot see, because pgoutput does not send it: DDL
// (CREATE, DROP, ALTER — only a changed column list or name shows, at the
// table's next row change), UNLOGGED and temporary tables, materialized
// views (REFRESH), sequences, large objects, and, with
// publish_via_partition_root, a TRUNCATE of a single partition. Nor does
// it say when the publication is altered to publish less: every heartbeat
// reads the publication, and a problem ends the session.
package pglogical
