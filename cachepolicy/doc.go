// Package cachepolicy makes the cache's decisions about SQL text: whether a
// query may be served from the cache, which relations it depends on, which
// relations a statement may change, how it changes the session, and how long
// a result may live. It reads SQL only through PostgreSQL's own parser
// (pg_query), and Decide combines that with catalog facts and operator rules.
//
// It is not a proxy, a cache or a catalog client: it does no I/O, reads no
// clock, starts no goroutine and imports nothing else from this module. The
// caller looks up the facts (pg_class, pg_proc) that Decide needs, keys and
// stores results, and applies invalidations. Hidden writes (triggers,
// volatile functions, foreign-key cascades) are the change stream's job.
package cachepolicy
