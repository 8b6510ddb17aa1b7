-- Dashboard page: three reads that aggregate many rows, parameterised over a
-- small range (one of :scale branches) so that a cache sees repeats. Each
-- costs PostgreSQL about 10 ms on a 2-core machine.
-- Branch b owns accounts (b-1)*100000+1 .. b*100000 (pgbench -i); these
-- read its first 20,000.
\set bid random(1, :scale)
\set lo (:bid - 1) * 100000 + 1
\set hi :lo + 19999
-- Top-10 accounts by balance.
SELECT aid, abalance FROM pgbench_accounts WHERE aid BETWEEN :lo AND :hi ORDER BY abalance DESC, aid LIMIT 10;
-- Per-branch sums of abalance.
SELECT bid, count(*) AS accounts, sum(abalance) AS balance, min(abalance), max(abalance) FROM pgbench_accounts WHERE aid BETWEEN :lo AND :hi GROUP BY bid;
-- Accounts, tellers and branches joined, grouped by teller.
SELECT t.tid, b.bbalance, t.tbalance, count(a.aid) AS accounts, avg(a.abalance) AS avg_balance FROM pgbench_branches b JOIN pgbench_tellers t ON t.bid = b.bid JOIN pgbench_accounts a ON a.bid = b.bid WHERE b.bid = :bid AND a.aid BETWEEN :lo AND :lo + 1999 GROUP BY t.tid, b.bbalance, t.tbalance ORDER BY t.tid;
