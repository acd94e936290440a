-- When was each ping target unreachable, and for how long?
--
-- An outage is a run of consecutive measurements of one target (on one host) that got no
-- reply (received = 0: plain loss, an unresolvable name, an unreachable network…).
-- One row per outage:
--   host, target   the partition host and the ping target
--   start_ts       start of the first measurement without a reply
--   end_ts         start of the first measurement that got a reply again (the recovery);
--                  NULL while the outage goes on (no later measurement answered yet)
--   duration       end_ts - start_ts (for an ongoing outage: up to its last measurement,
--                  plus one interval); exact to one measurement interval, since the
--                  target went away somewhere between the last answered measurement and
--                  start_ts
--   duration_s     the same in seconds (DOUBLE), for plots and arithmetic
--   measurements   how many measurements got no reply
--   first_error    the error text of the first of them (NULL for plain loss)
--   ongoing        true when no measurement answered after it
--
-- A daemon stop inside an outage is not seen: the outage then ends at the first answered
-- measurement after the restart.
--
-- A measurement the daemon could not send on time (sent = 0 and an error starting with
-- 'not measured': the daemon was stalled, not the target) is left out, as if the daemon
-- had not run then: it neither starts, extends nor ends an outage.
--
-- The same definition in Rust (`csm_store::outages`: `csm report`, the ping chart) and in
-- Python (`csm_analysis.ping_outages`); the tests hold all three equal.
--
-- Run it with the DuckDB CLI or Python, after putting the data folder in:
--   sed 's|<data-dir>|/var/lib/csm|' analysis/queries/ping_outages.sql | duckdb
--   duckdb.sql(open('analysis/queries/ping_outages.sql').read().replace('<data-dir>', d))
WITH ping AS (
    SELECT host, target, ts, received = 0 AS down, error,
           -- the interval between measurements of this target, for ongoing outages
           ts - lag(ts) OVER (PARTITION BY host, target ORDER BY ts) AS step
    FROM read_parquet('<data-dir>/ping/**/*.parquet', hive_partitioning = true)
    WHERE NOT (sent = 0 AND coalesce(starts_with(error, 'not measured'), false))
),
runs AS (
    SELECT *,
           -- gaps and islands: constant within a run of equal `down` values
           row_number() OVER (PARTITION BY host, target ORDER BY ts)
             - row_number() OVER (PARTITION BY host, target, down ORDER BY ts) AS run,
           lead(ts) OVER (PARTITION BY host, target ORDER BY ts) AS next_ts
    FROM ping
),
outages AS (
    SELECT host, target,
           min(ts) AS start_ts,
           arg_max_null(next_ts, ts) AS end_ts,
           max(ts) AS last_down_ts,
           arg_max_null(step, ts) AS last_step,
           count(*) AS measurements,
           arg_min_null(error, ts) AS first_error
    FROM runs
    WHERE down
    GROUP BY host, target, run
)
SELECT host, target, start_ts, end_ts,
       coalesce(end_ts, last_down_ts + coalesce(last_step, INTERVAL 0 SECOND)) - start_ts
         AS duration,
       epoch(coalesce(end_ts, last_down_ts + coalesce(last_step, INTERVAL 0 SECOND)) - start_ts)
         AS duration_s,
       measurements,
       first_error,
       end_ts IS NULL AS ongoing
FROM outages
ORDER BY host, target, start_ts;
