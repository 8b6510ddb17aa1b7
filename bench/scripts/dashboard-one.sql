-- One expensive read (the mixed workload's "few expensive reads"): top-10
-- accounts by balance among the first 20,000 of one of :scale branches.
\set bid random(1, :scale)
\set lo (:bid - 1) * 100000 + 1
\set hi :lo + 19999
SELECT aid, abalance FROM pgbench_accounts WHERE aid BETWEEN :lo AND :hi ORDER BY abalance DESC, aid LIMIT 10;
