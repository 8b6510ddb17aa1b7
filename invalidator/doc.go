// Package invalidator defines what change-data streams report to the proxy:
// which tables changed on a database server, by any road, and when.
//
// It is only the vocabulary. The streams live in subpackages (pglogical
// for PostgreSQL); turning a Change into invalidation is the proxy's job,
// and nothing here knows about the cache, SQL parsing or the proxy.
package invalidator
