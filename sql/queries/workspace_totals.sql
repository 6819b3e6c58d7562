-- Recompute what the sessions %(ids)s accumulated, from every hour stored for them (locked
-- first by workspace_totals_lock.sql, in the same transaction).
WITH sessions AS (
  SELECT unnest(%(ids)s::bigint[]) AS id
),
sums AS (
  SELECT s.id,
         coalesce(sum(f.busy_cpu_seconds_total), 0) AS busy_cpu_seconds_total,
         coalesce(sum(f.idle_cpu_seconds_total), 0) AS idle_cpu_seconds_total,
         coalesce(sum(f.busy_kwh), 0) AS busy_kwh,
         coalesce(sum(f.idle_kwh), 0) AS idle_kwh,
         coalesce(sum(f.busy_gco2eq), 0) AS busy_gco2eq,
         coalesce(sum(f.idle_gco2eq), 0) AS idle_gco2eq
  FROM sessions s
  LEFT JOIN fact_usage_workspace f ON f.workspace_session_id = s.id
  GROUP BY s.id
)
UPDATE workspace_session w
SET busy_cpu_seconds_total = sums.busy_cpu_seconds_total,
    idle_cpu_seconds_total = sums.idle_cpu_seconds_total,
    busy_kwh = sums.busy_kwh,
    idle_kwh = sums.idle_kwh,
    busy_gco2eq = sums.busy_gco2eq,
    idle_gco2eq = sums.idle_gco2eq
FROM sums
WHERE w.workspace_session_id = sums.id
