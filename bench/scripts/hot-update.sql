-- A write to the hot set (the mixed workload's 5%). Through sqlcache it
-- invalidates the cached point reads of its row (aid is the primary key)
-- and every answer that read more than one row of pgbench_accounts.
\set aid random(1, 10000)
\set delta random(-5000, 5000)
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
