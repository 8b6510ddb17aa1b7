-- Point read on a hot set: the first 10,000 of pgbench_accounts' rows.
\set aid random(1, 10000)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
