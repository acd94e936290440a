-- How lossy and how slow was each ping target? One row per host and target:
--   host, target   the partition host and the ping target
--   sent           echoes sent; received: replies
--   loss_pct       100 * (sent - received) / sent, a reply beyond the echoes sent counting
--                  for none; NULL when nothing was sent (an unresolved name is no loss
--                  figure, not 100 %)
--   rtt_p50_ms, rtt_p90_ms, rtt_p99_ms
--                  nearest-rank percentiles over every reply (`rtts_ms`): the ceil(n*q)-th
--                  smallest of the n RTTs (NOT quantile_cont, which interpolates, nor
--                  quantile_disc); NULL without replies
--   rtt_max_ms     the largest RTT
--
-- The same definitions in Rust (`csm_store::stats::loss_pct` and `quantile_sorted`: the
-- roll-ups, `csm report`, `csm top`, the charts) and in Python
-- (`csm_analysis.ping_summary`); `analysis/tests/test_definitions.py` holds all three equal
-- on the same files.
--
-- Run it with the DuckDB CLI or Python, after putting the data folder in:
--   sed 's|<data-dir>|/var/lib/csm|' analysis/queries/ping_summary.sql | duckdb
WITH ping AS (
    SELECT host, target, sent, received, rtts_ms
    FROM read_parquet('<data-dir>/ping/**/*.parquet', hive_partitioning = true)
),
targets AS (
    SELECT host, target,
           sum(sent) AS sent,
           sum(received) AS received,
           list_sort(flatten(list(rtts_ms))) AS rtts
    FROM ping
    GROUP BY host, target
)
SELECT host, target, sent, received,
       CASE WHEN sent > 0
            THEN 100.0 * (sent - least(greatest(received, 0), sent))::DOUBLE / sent::DOUBLE
       END AS loss_pct,
       -- lists are 1-based: rank ceil(n*q), at least 1; q as DOUBLE, as Rust computes it
       CASE WHEN len(rtts) > 0 THEN rtts[greatest(1, ceil(len(rtts) * 0.5::DOUBLE))::BIGINT] END
         AS rtt_p50_ms,
       CASE WHEN len(rtts) > 0 THEN rtts[greatest(1, ceil(len(rtts) * 0.9::DOUBLE))::BIGINT] END
         AS rtt_p90_ms,
       CASE WHEN len(rtts) > 0 THEN rtts[greatest(1, ceil(len(rtts) * 0.99::DOUBLE))::BIGINT] END
         AS rtt_p99_ms,
       CASE WHEN len(rtts) > 0 THEN rtts[len(rtts)] END AS rtt_max_ms
FROM targets
ORDER BY host, target;
