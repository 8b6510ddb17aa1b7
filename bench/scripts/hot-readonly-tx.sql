-- Three hot-set point reads in a read-only transaction, as a framework's
-- read-only service method sends them (Spring's @Transactional(readOnly =
-- true) through pgjdbc: BEGIN READ ONLY, the reads, COMMIT).
\set a1 random(1, 10000)
\set a2 random(1, 10000)
\set a3 random(1, 10000)
BEGIN READ ONLY;
SELECT abalance FROM pgbench_accounts WHERE aid = :a1;
SELECT abalance FROM pgbench_accounts WHERE aid = :a2;
SELECT abalance FROM pgbench_accounts WHERE aid = :a3;
COMMIT;
