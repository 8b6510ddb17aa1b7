-- Memory measurement: each client reads its own slice of sqlbench_mem
-- (:per ids from :client_id * :per + 1), one distinct id per transaction,
-- so that every query is a cache miss that adds one small entry.
-- Run with -D n=0 -D per=<ids per client> -t <ids per client>.
\set n :n + 1
\set id :client_id * :per + :n
SELECT v FROM sqlbench_mem WHERE id = :id;
