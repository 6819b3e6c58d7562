-- 0008: the full footprint beside the seed's. The seed's columns keep their meaning (CPU only,
-- IT level, national intensity); every fact gains the memory's and the facility's energy, the
-- embodied carbon, the full footprint and the location-based (regional) carbon, and every view
-- analysts read shows them beside the seed's numbers. Rows written before this migration hold
-- NULL in the new columns (unknown until re-derived: carbon-pipeline backfill --from usage,
-- and the sources stage for the memory size), never 0. docs/methodology.md has every formula.

-- ========== CAPTURED SOURCES ==========
ALTER TABLE host_cpu_hourly ADD COLUMN memory_gib DOUBLE PRECISION;
ALTER TABLE host_cpu_rejected ADD COLUMN memory_gib DOUBLE PRECISION;

CREATE TABLE carbon_intensity_regional_hourly (
  timestamp_utc            TIMESTAMPTZ NOT NULL,
  region_id                INTEGER NOT NULL CHECK (region_id BETWEEN 1 AND 17),
  intensity_gco2eq_per_kwh DOUBLE PRECISION NOT NULL,
  intensity_source         TEXT NOT NULL CHECK (intensity_source IN ('actual', 'forecast', 'fallback')),
  forecast_gco2eq_per_kwh  DOUBLE PRECISION,
  period_count             INTEGER NOT NULL,
  PRIMARY KEY (timestamp_utc, region_id)
);

-- ========== FACTS ==========
ALTER TABLE fact_usage_ada
  ADD COLUMN memory_kwh DOUBLE PRECISION,
  ADD COLUMN overhead_kwh DOUBLE PRECISION,
  ADD COLUMN full_kwh DOUBLE PRECISION,
  ADD COLUMN memory_gco2eq DOUBLE PRECISION,
  ADD COLUMN overhead_gco2eq DOUBLE PRECISION,
  ADD COLUMN embodied_gco2eq DOUBLE PRECISION,
  ADD COLUMN full_gco2eq DOUBLE PRECISION,
  ADD COLUMN regional_gco2eq DOUBLE PRECISION;
ALTER TABLE fact_usage_project
  ADD COLUMN memory_kwh DOUBLE PRECISION,
  ADD COLUMN overhead_kwh DOUBLE PRECISION,
  ADD COLUMN full_kwh DOUBLE PRECISION,
  ADD COLUMN memory_gco2eq DOUBLE PRECISION,
  ADD COLUMN overhead_gco2eq DOUBLE PRECISION,
  ADD COLUMN embodied_gco2eq DOUBLE PRECISION,
  ADD COLUMN full_gco2eq DOUBLE PRECISION,
  ADD COLUMN regional_gco2eq DOUBLE PRECISION;
ALTER TABLE fact_usage_machine
  ADD COLUMN memory_kwh DOUBLE PRECISION,
  ADD COLUMN overhead_kwh DOUBLE PRECISION,
  ADD COLUMN full_kwh DOUBLE PRECISION,
  ADD COLUMN memory_gco2eq DOUBLE PRECISION,
  ADD COLUMN overhead_gco2eq DOUBLE PRECISION,
  ADD COLUMN embodied_gco2eq DOUBLE PRECISION,
  ADD COLUMN full_gco2eq DOUBLE PRECISION,
  ADD COLUMN regional_gco2eq DOUBLE PRECISION;
ALTER TABLE fact_usage_group
  ADD COLUMN memory_kwh DOUBLE PRECISION,
  ADD COLUMN overhead_kwh DOUBLE PRECISION,
  ADD COLUMN full_kwh DOUBLE PRECISION,
  ADD COLUMN memory_gco2eq DOUBLE PRECISION,
  ADD COLUMN overhead_gco2eq DOUBLE PRECISION,
  ADD COLUMN embodied_gco2eq DOUBLE PRECISION,
  ADD COLUMN full_gco2eq DOUBLE PRECISION,
  ADD COLUMN regional_gco2eq DOUBLE PRECISION;
ALTER TABLE fact_usage_user
  ADD COLUMN memory_kwh DOUBLE PRECISION,
  ADD COLUMN overhead_kwh DOUBLE PRECISION,
  ADD COLUMN full_kwh DOUBLE PRECISION,
  ADD COLUMN memory_gco2eq DOUBLE PRECISION,
  ADD COLUMN overhead_gco2eq DOUBLE PRECISION,
  ADD COLUMN embodied_gco2eq DOUBLE PRECISION,
  ADD COLUMN full_gco2eq DOUBLE PRECISION,
  ADD COLUMN regional_gco2eq DOUBLE PRECISION;
ALTER TABLE fact_usage_workspace
  ADD COLUMN memory_kwh DOUBLE PRECISION,
  ADD COLUMN overhead_kwh DOUBLE PRECISION,
  ADD COLUMN full_kwh DOUBLE PRECISION,
  ADD COLUMN memory_gco2eq DOUBLE PRECISION,
  ADD COLUMN overhead_gco2eq DOUBLE PRECISION,
  ADD COLUMN embodied_gco2eq DOUBLE PRECISION,
  ADD COLUMN full_gco2eq DOUBLE PRECISION,
  ADD COLUMN regional_gco2eq DOUBLE PRECISION;
ALTER TABLE fact_usage_instance
  ADD COLUMN memory_kwh DOUBLE PRECISION,
  ADD COLUMN overhead_kwh DOUBLE PRECISION,
  ADD COLUMN full_kwh DOUBLE PRECISION,
  ADD COLUMN memory_gco2eq DOUBLE PRECISION,
  ADD COLUMN overhead_gco2eq DOUBLE PRECISION,
  ADD COLUMN embodied_gco2eq DOUBLE PRECISION,
  ADD COLUMN full_gco2eq DOUBLE PRECISION,
  ADD COLUMN regional_gco2eq DOUBLE PRECISION;
ALTER TABLE fact_usage_instance
  ADD COLUMN memory_gib DOUBLE PRECISION,
  ADD COLUMN memory_watts_per_gib DOUBLE PRECISION,
  ADD COLUMN pue DOUBLE PRECISION,
  ADD COLUMN embodied_kgco2e DOUBLE PRECISION,
  ADD COLUMN lifetime_years DOUBLE PRECISION,
  ADD COLUMN server_threads DOUBLE PRECISION,
  ADD COLUMN site TEXT,
  ADD COLUMN region_id INTEGER,
  ADD COLUMN regional_intensity_gco2eq_per_kwh DOUBLE PRECISION;

-- ========== VIEWS: the new columns appended ==========
CREATE OR REPLACE VIEW v_usage_hourly AS
SELECT 'ada'::text AS scope, NULL::bigint AS scope_id, 'ada'::text AS scope_name,
       'Ada (whole platform)'::text AS display_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq
FROM fact_usage_ada f
UNION ALL
SELECT 'project', d.project_id, d.cloud_project_name, d.cloud_project_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq
FROM fact_usage_project f JOIN dim_project d USING (project_id)
UNION ALL
SELECT 'machine', d.machine_id, d.machine_name, d.machine_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq
FROM fact_usage_machine f JOIN dim_machine d USING (machine_id)
UNION ALL
SELECT 'group', d.group_id, d.group_name, d.group_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq
FROM fact_usage_group f JOIN dim_group d USING (group_id)
UNION ALL
SELECT 'user', d.user_id, d.ext_user_id, coalesce(d.display_name, d.ext_user_id),
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq
FROM fact_usage_user f JOIN dim_user d USING (user_id);

-- A period's full-footprint sums add the hours whose footprint is known;
-- footprint_unknown_hours says how many were not (a host's memory size missing).
CREATE OR REPLACE VIEW v_usage_rollup AS
SELECT g.grain, h.scope, h.scope_id, h.scope_name, h.display_name,
       CASE WHEN g.grain = 'lifetime' THEN NULL
            ELSE date_trunc(g.grain, h.timestamp_utc AT TIME ZONE 'UTC')::date END AS period_start,
       count(*)                                                    AS hours,
       count(*) FILTER (WHERE h.intensity_source <> 'actual')      AS estimated_hours,
       sum(h.busy_cpu_seconds_total)                               AS busy_cpu_seconds_total,
       sum(h.idle_cpu_seconds_total)                               AS idle_cpu_seconds_total,
       sum(h.busy_kwh)                                             AS busy_kwh,
       sum(h.idle_kwh)                                             AS idle_kwh,
       sum(h.busy_kwh + h.idle_kwh)                                AS total_kwh,
       sum(h.busy_gco2eq)                                          AS busy_gco2eq,
       sum(h.idle_gco2eq)                                          AS idle_gco2eq,
       sum(h.busy_gco2eq + h.idle_gco2eq)                          AS total_gco2eq,
       avg(h.busy_kwh + h.idle_kwh)                                AS kwh_per_hour_avg,
       avg(h.busy_gco2eq + h.idle_gco2eq)                          AS gco2eq_per_hour_avg,
       sum(h.busy_gco2eq + h.idle_gco2eq) / nullif(sum(h.busy_kwh + h.idle_kwh), 0)
                                                                   AS intensity_gco2eq_per_kwh,
       sum(h.busy_kwh) / nullif(sum(h.busy_kwh + h.idle_kwh), 0)   AS busy_share_kwh,
       sum(h.idle_cpu_seconds_total)
         / nullif(sum(h.busy_cpu_seconds_total + h.idle_cpu_seconds_total), 0) AS idle_share_cpu,
       sum(h.memory_kwh) AS memory_kwh,
       sum(h.overhead_kwh) AS overhead_kwh,
       sum(h.full_kwh) AS full_kwh,
       sum(h.memory_gco2eq) AS memory_gco2eq,
       sum(h.overhead_gco2eq) AS overhead_gco2eq,
       sum(h.embodied_gco2eq) AS embodied_gco2eq,
       sum(h.full_gco2eq) AS full_gco2eq,
       sum(h.regional_gco2eq) AS regional_gco2eq,
       sum(h.regional_gco2eq) / nullif(sum(h.full_kwh), 0)         AS regional_intensity_gco2eq_per_kwh,
       count(*) - count(h.full_gco2eq)                             AS footprint_unknown_hours
FROM v_usage_hourly h
CROSS JOIN (VALUES ('day'), ('month'), ('year'), ('lifetime')) AS g (grain)
GROUP BY g.grain, h.scope, h.scope_id, h.scope_name, h.display_name, 6;
CREATE OR REPLACE VIEW v_usage_daily AS
SELECT scope, scope_id, scope_name, display_name, period_start AS day, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu,
       memory_kwh, overhead_kwh, full_kwh, memory_gco2eq, overhead_gco2eq, embodied_gco2eq, full_gco2eq, regional_gco2eq,
       regional_intensity_gco2eq_per_kwh, footprint_unknown_hours
FROM v_usage_rollup WHERE grain = 'day';
CREATE OR REPLACE VIEW v_usage_monthly AS
SELECT scope, scope_id, scope_name, display_name, period_start AS month, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu,
       memory_kwh, overhead_kwh, full_kwh, memory_gco2eq, overhead_gco2eq, embodied_gco2eq, full_gco2eq, regional_gco2eq,
       regional_intensity_gco2eq_per_kwh, footprint_unknown_hours
FROM v_usage_rollup WHERE grain = 'month';
CREATE OR REPLACE VIEW v_usage_yearly AS
SELECT scope, scope_id, scope_name, display_name, period_start AS year, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu,
       memory_kwh, overhead_kwh, full_kwh, memory_gco2eq, overhead_gco2eq, embodied_gco2eq, full_gco2eq, regional_gco2eq,
       regional_intensity_gco2eq_per_kwh, footprint_unknown_hours
FROM v_usage_rollup WHERE grain = 'year';
CREATE OR REPLACE VIEW v_usage_total AS
SELECT scope, scope_id, scope_name, display_name, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu,
       memory_kwh, overhead_kwh, full_kwh, memory_gco2eq, overhead_gco2eq, embodied_gco2eq, full_gco2eq, regional_gco2eq,
       regional_intensity_gco2eq_per_kwh, footprint_unknown_hours
FROM v_usage_rollup WHERE grain = 'lifetime';

-- usage_between returns the new columns too: dropped and made again (its callers are
-- queries and reporting.usage_between, made again below).
DROP FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ);
DROP FUNCTION usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ);
CREATE FUNCTION usage_between(scope TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS TABLE (
  scope TEXT, scope_id BIGINT, scope_name TEXT, display_name TEXT, hours BIGINT,
  estimated_hours BIGINT, busy_cpu_seconds_total DOUBLE PRECISION,
  idle_cpu_seconds_total DOUBLE PRECISION, busy_kwh DOUBLE PRECISION, idle_kwh DOUBLE PRECISION,
  total_kwh DOUBLE PRECISION, busy_gco2eq DOUBLE PRECISION, idle_gco2eq DOUBLE PRECISION,
  total_gco2eq DOUBLE PRECISION, kwh_per_hour_avg DOUBLE PRECISION,
  gco2eq_per_hour_avg DOUBLE PRECISION, intensity_gco2eq_per_kwh DOUBLE PRECISION,
  busy_share_kwh DOUBLE PRECISION, idle_share_cpu DOUBLE PRECISION,
  memory_kwh DOUBLE PRECISION, overhead_kwh DOUBLE PRECISION, full_kwh DOUBLE PRECISION, memory_gco2eq DOUBLE PRECISION, overhead_gco2eq DOUBLE PRECISION, embodied_gco2eq DOUBLE PRECISION, full_gco2eq DOUBLE PRECISION, regional_gco2eq DOUBLE PRECISION,
  regional_intensity_gco2eq_per_kwh DOUBLE PRECISION, footprint_unknown_hours BIGINT
) LANGUAGE sql STABLE AS $$
  SELECT h.scope, h.scope_id, h.scope_name, h.display_name,
         count(*), count(*) FILTER (WHERE h.intensity_source <> 'actual'),
         sum(h.busy_cpu_seconds_total), sum(h.idle_cpu_seconds_total),
         sum(h.busy_kwh), sum(h.idle_kwh), sum(h.busy_kwh + h.idle_kwh),
         sum(h.busy_gco2eq), sum(h.idle_gco2eq), sum(h.busy_gco2eq + h.idle_gco2eq),
         avg(h.busy_kwh + h.idle_kwh), avg(h.busy_gco2eq + h.idle_gco2eq),
         sum(h.busy_gco2eq + h.idle_gco2eq) / nullif(sum(h.busy_kwh + h.idle_kwh), 0),
         sum(h.busy_kwh) / nullif(sum(h.busy_kwh + h.idle_kwh), 0),
         sum(h.idle_cpu_seconds_total)
           / nullif(sum(h.busy_cpu_seconds_total + h.idle_cpu_seconds_total), 0),
         sum(h.memory_kwh), sum(h.overhead_kwh), sum(h.full_kwh), sum(h.memory_gco2eq), sum(h.overhead_gco2eq), sum(h.embodied_gco2eq), sum(h.full_gco2eq), sum(h.regional_gco2eq),
         sum(h.regional_gco2eq) / nullif(sum(h.full_kwh), 0),
         count(*) - count(h.full_gco2eq)
  FROM public.v_usage_hourly h
  WHERE h.scope = $1 AND h.timestamp_utc >= $2 AND h.timestamp_utc < $3
  GROUP BY h.scope, h.scope_id, h.scope_name, h.display_name
$$;
GRANT EXECUTE ON FUNCTION usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) TO carbon_analyst;

CREATE FUNCTION reporting.usage_between(aggregate_scope TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS TABLE (
  scope TEXT, scope_id BIGINT, scope_name TEXT, display_name TEXT, hours BIGINT,
  estimated_hours BIGINT, busy_cpu_seconds_total DOUBLE PRECISION,
  idle_cpu_seconds_total DOUBLE PRECISION, busy_kwh DOUBLE PRECISION, idle_kwh DOUBLE PRECISION,
  total_kwh DOUBLE PRECISION, busy_gco2eq DOUBLE PRECISION, idle_gco2eq DOUBLE PRECISION,
  total_gco2eq DOUBLE PRECISION, kwh_per_hour_avg DOUBLE PRECISION,
  gco2eq_per_hour_avg DOUBLE PRECISION, intensity_gco2eq_per_kwh DOUBLE PRECISION,
  busy_share_kwh DOUBLE PRECISION, idle_share_cpu DOUBLE PRECISION,
  memory_kwh DOUBLE PRECISION, overhead_kwh DOUBLE PRECISION, full_kwh DOUBLE PRECISION, memory_gco2eq DOUBLE PRECISION, overhead_gco2eq DOUBLE PRECISION, embodied_gco2eq DOUBLE PRECISION, full_gco2eq DOUBLE PRECISION, regional_gco2eq DOUBLE PRECISION,
  regional_intensity_gco2eq_per_kwh DOUBLE PRECISION, footprint_unknown_hours BIGINT
)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
  IF aggregate_scope IS NULL OR aggregate_scope NOT IN ('ada', 'project', 'machine', 'group') THEN
    RAISE EXCEPTION 'scope % is not an aggregate: carbon_reporter reads ada, project, machine and group', aggregate_scope
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN QUERY SELECT * FROM public.usage_between(aggregate_scope, from_ts, to_ts);
END;
$$;
REVOKE EXECUTE ON FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) TO carbon_reporter;
CREATE OR REPLACE VIEW v_project_total AS
SELECT
  p.project_id,
  p.cloud_project_name,
  SUM(f.busy_cpu_seconds_total) AS busy_cpu_seconds_total,
  SUM(f.idle_cpu_seconds_total) AS idle_cpu_seconds_total,
  SUM(f.busy_kwh)               AS busy_kwh,
  SUM(f.idle_kwh)               AS idle_kwh,
  SUM(f.busy_gco2eq)            AS busy_gco2eq,
  SUM(f.idle_gco2eq)            AS idle_gco2eq,
  SUM(f.memory_kwh) AS memory_kwh,
  SUM(f.overhead_kwh) AS overhead_kwh,
  SUM(f.full_kwh) AS full_kwh,
  SUM(f.memory_gco2eq) AS memory_gco2eq,
  SUM(f.overhead_gco2eq) AS overhead_gco2eq,
  SUM(f.embodied_gco2eq) AS embodied_gco2eq,
  SUM(f.full_gco2eq) AS full_gco2eq,
  SUM(f.regional_gco2eq) AS regional_gco2eq
FROM dim_project p
JOIN fact_usage_project f USING (project_id)
GROUP BY p.project_id, p.cloud_project_name;
CREATE OR REPLACE VIEW v_machine_total AS
SELECT
  m.machine_id,
  m.machine_name,
  SUM(f.busy_cpu_seconds_total) AS busy_cpu_seconds_total,
  SUM(f.idle_cpu_seconds_total) AS idle_cpu_seconds_total,
  SUM(f.busy_kwh)               AS busy_kwh,
  SUM(f.idle_kwh)               AS idle_kwh,
  SUM(f.busy_gco2eq)            AS busy_gco2eq,
  SUM(f.idle_gco2eq)            AS idle_gco2eq,
  SUM(f.memory_kwh) AS memory_kwh,
  SUM(f.overhead_kwh) AS overhead_kwh,
  SUM(f.full_kwh) AS full_kwh,
  SUM(f.memory_gco2eq) AS memory_gco2eq,
  SUM(f.overhead_gco2eq) AS overhead_gco2eq,
  SUM(f.embodied_gco2eq) AS embodied_gco2eq,
  SUM(f.full_gco2eq) AS full_gco2eq,
  SUM(f.regional_gco2eq) AS regional_gco2eq
FROM dim_machine m
JOIN fact_usage_machine f USING (machine_id)
GROUP BY m.machine_id, m.machine_name;
CREATE OR REPLACE VIEW v_group_total AS
SELECT
  g.group_id,
  g.group_name,
  SUM(f.busy_cpu_seconds_total) AS busy_cpu_seconds_total,
  SUM(f.idle_cpu_seconds_total) AS idle_cpu_seconds_total,
  SUM(f.busy_kwh)               AS busy_kwh,
  SUM(f.idle_kwh)               AS idle_kwh,
  SUM(f.busy_gco2eq)            AS busy_gco2eq,
  SUM(f.idle_gco2eq)            AS idle_gco2eq,
  SUM(f.memory_kwh) AS memory_kwh,
  SUM(f.overhead_kwh) AS overhead_kwh,
  SUM(f.full_kwh) AS full_kwh,
  SUM(f.memory_gco2eq) AS memory_gco2eq,
  SUM(f.overhead_gco2eq) AS overhead_gco2eq,
  SUM(f.embodied_gco2eq) AS embodied_gco2eq,
  SUM(f.full_gco2eq) AS full_gco2eq,
  SUM(f.regional_gco2eq) AS regional_gco2eq
FROM dim_group g
JOIN fact_usage_group f USING (group_id)
GROUP BY g.group_id, g.group_name;
CREATE OR REPLACE VIEW v_user_total AS
SELECT
  u.user_id,
  COALESCE(u.display_name, u.ext_user_id) AS user_name,
  SUM(f.busy_cpu_seconds_total) AS busy_cpu_seconds_total,
  SUM(f.idle_cpu_seconds_total) AS idle_cpu_seconds_total,
  SUM(f.busy_kwh)               AS busy_kwh,
  SUM(f.idle_kwh)               AS idle_kwh,
  SUM(f.busy_gco2eq)            AS busy_gco2eq,
  SUM(f.idle_gco2eq)            AS idle_gco2eq,
  SUM(f.memory_kwh) AS memory_kwh,
  SUM(f.overhead_kwh) AS overhead_kwh,
  SUM(f.full_kwh) AS full_kwh,
  SUM(f.memory_gco2eq) AS memory_gco2eq,
  SUM(f.overhead_gco2eq) AS overhead_gco2eq,
  SUM(f.embodied_gco2eq) AS embodied_gco2eq,
  SUM(f.full_gco2eq) AS full_gco2eq,
  SUM(f.regional_gco2eq) AS regional_gco2eq
FROM dim_user u
JOIN fact_usage_user f USING (user_id)
GROUP BY u.user_id, COALESCE(u.display_name, u.ext_user_id);

CREATE OR REPLACE VIEW v_ada_total AS
SELECT
  SUM(f.busy_cpu_seconds_total) AS busy_cpu_seconds_total,
  SUM(f.idle_cpu_seconds_total) AS idle_cpu_seconds_total,
  SUM(f.busy_kwh)               AS busy_kwh,
  SUM(f.idle_kwh)               AS idle_kwh,
  SUM(f.busy_gco2eq)            AS busy_gco2eq,
  SUM(f.idle_gco2eq)            AS idle_gco2eq,
  SUM(f.memory_kwh) AS memory_kwh,
  SUM(f.overhead_kwh) AS overhead_kwh,
  SUM(f.full_kwh) AS full_kwh,
  SUM(f.memory_gco2eq) AS memory_gco2eq,
  SUM(f.overhead_gco2eq) AS overhead_gco2eq,
  SUM(f.embodied_gco2eq) AS embodied_gco2eq,
  SUM(f.full_gco2eq) AS full_gco2eq,
  SUM(f.regional_gco2eq) AS regional_gco2eq
FROM fact_usage_ada f;
CREATE OR REPLACE VIEW v_project_averages AS
SELECT
  p.project_id,
  p.cloud_project_name,
  AVG(f.busy_kwh)               AS energy_kwh_busy_avg,
  AVG(f.idle_kwh)               AS energy_kwh_idle_avg,
  AVG(f.busy_gco2eq)            AS carbon_gco2eq_busy_avg,
  AVG(f.idle_gco2eq)            AS carbon_gco2eq_idle_avg,
  AVG(f.intensity_gco2eq_per_kwh) AS intensity_gco2eq_per_kwh_avg,
  AVG(f.full_kwh)                 AS energy_kwh_full_avg,
  AVG(f.full_gco2eq)              AS carbon_gco2eq_full_avg,
  AVG(f.embodied_gco2eq)          AS carbon_gco2eq_embodied_avg,
  AVG(f.regional_gco2eq)          AS carbon_gco2eq_regional_avg
FROM dim_project p
JOIN fact_usage_project f USING (project_id)
GROUP BY p.project_id, p.cloud_project_name;
CREATE OR REPLACE VIEW v_machine_averages AS
SELECT
  m.machine_id,
  m.machine_name,
  AVG(f.busy_kwh)               AS energy_kwh_busy_avg,
  AVG(f.idle_kwh)               AS energy_kwh_idle_avg,
  AVG(f.busy_gco2eq)            AS carbon_gco2eq_busy_avg,
  AVG(f.idle_gco2eq)            AS carbon_gco2eq_idle_avg,
  AVG(f.intensity_gco2eq_per_kwh) AS intensity_gco2eq_per_kwh_avg,
  AVG(f.full_kwh)                 AS energy_kwh_full_avg,
  AVG(f.full_gco2eq)              AS carbon_gco2eq_full_avg,
  AVG(f.embodied_gco2eq)          AS carbon_gco2eq_embodied_avg,
  AVG(f.regional_gco2eq)          AS carbon_gco2eq_regional_avg
FROM dim_machine m
JOIN fact_usage_machine f USING (machine_id)
GROUP BY m.machine_id, m.machine_name;
CREATE OR REPLACE VIEW v_group_averages AS
SELECT
  g.group_id,
  g.group_name,
  AVG(f.busy_kwh)               AS energy_kwh_busy_avg,
  AVG(f.idle_kwh)               AS energy_kwh_idle_avg,
  AVG(f.busy_gco2eq)            AS carbon_gco2eq_busy_avg,
  AVG(f.idle_gco2eq)            AS carbon_gco2eq_idle_avg,
  AVG(f.intensity_gco2eq_per_kwh) AS intensity_gco2eq_per_kwh_avg,
  AVG(f.full_kwh)                 AS energy_kwh_full_avg,
  AVG(f.full_gco2eq)              AS carbon_gco2eq_full_avg,
  AVG(f.embodied_gco2eq)          AS carbon_gco2eq_embodied_avg,
  AVG(f.regional_gco2eq)          AS carbon_gco2eq_regional_avg
FROM dim_group g
JOIN fact_usage_group f USING (group_id)
GROUP BY g.group_id, g.group_name;
CREATE OR REPLACE VIEW v_user_averages AS
SELECT
  u.user_id,
  COALESCE(u.display_name, u.ext_user_id) AS user_name,
  AVG(f.busy_kwh)               AS energy_kwh_busy_avg,
  AVG(f.idle_kwh)               AS energy_kwh_idle_avg,
  AVG(f.busy_gco2eq)            AS carbon_gco2eq_busy_avg,
  AVG(f.idle_gco2eq)            AS carbon_gco2eq_idle_avg,
  AVG(f.intensity_gco2eq_per_kwh) AS intensity_gco2eq_per_kwh_avg,
  AVG(f.full_kwh)                 AS energy_kwh_full_avg,
  AVG(f.full_gco2eq)              AS carbon_gco2eq_full_avg,
  AVG(f.embodied_gco2eq)          AS carbon_gco2eq_embodied_avg,
  AVG(f.regional_gco2eq)          AS carbon_gco2eq_regional_avg
FROM dim_user u
JOIN fact_usage_user f USING (user_id)
GROUP BY u.user_id, COALESCE(u.display_name, u.ext_user_id);
CREATE OR REPLACE VIEW v_ada_averages AS
SELECT
  AVG(f.busy_kwh)               AS energy_kwh_busy_avg,
  AVG(f.idle_kwh)               AS energy_kwh_idle_avg,
  AVG(f.busy_gco2eq)            AS carbon_gco2eq_busy_avg,
  AVG(f.idle_gco2eq)            AS carbon_gco2eq_idle_avg,
  AVG(f.intensity_gco2eq_per_kwh) AS intensity_gco2eq_per_kwh_avg,
  AVG(f.full_kwh)                 AS energy_kwh_full_avg,
  AVG(f.full_gco2eq)              AS carbon_gco2eq_full_avg,
  AVG(f.embodied_gco2eq)          AS carbon_gco2eq_embodied_avg,
  AVG(f.regional_gco2eq)          AS carbon_gco2eq_regional_avg
FROM fact_usage_ada f;
CREATE OR REPLACE VIEW v_usage_heatmap AS
WITH days AS (
  SELECT generate_series((reporting_now() AT TIME ZONE 'UTC')::date - 364,
                         (reporting_now() AT TIME ZONE 'UTC')::date, interval '1 day')::date AS day
),
entities AS (
  SELECT DISTINCT h.scope, h.scope_id, h.scope_name, h.display_name
  FROM v_usage_hourly h
  WHERE h.timestamp_utc >= ((reporting_now() AT TIME ZONE 'UTC')::date - 364) AT TIME ZONE 'UTC'
    AND h.timestamp_utc < ((reporting_now() AT TIME ZONE 'UTC')::date + 1) AT TIME ZONE 'UTC'
)
SELECT e.scope, e.scope_id, e.scope_name, e.display_name, d.day,
       coalesce(u.hours, 0)        AS hours,
       coalesce(u.total_kwh, 0)    AS total_kwh,
       coalesce(u.total_gco2eq, 0) AS total_gco2eq,
       coalesce(u.full_gco2eq, 0)  AS full_gco2eq
FROM entities e
CROSS JOIN days d
LEFT JOIN v_usage_daily u
  ON u.scope = e.scope AND u.scope_name = e.scope_name AND u.day = d.day;

CREATE OR REPLACE VIEW v_host_hourly AS
SELECT f.timestamp_utc, i.instance_id, i.hostname, p.cloud_project_name, m.machine_name,
       g.group_name, f.cpu_count, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total,
       f.busy_kwh, f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh,
       f.intensity_source, f.busy_watts_per_core, f.idle_watts_per_core,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq,
       f.memory_gib, f.memory_watts_per_gib, f.pue, f.embodied_kgco2e, f.lifetime_years,
       f.server_threads, f.site, f.region_id, f.regional_intensity_gco2eq_per_kwh
FROM fact_usage_instance f
JOIN dim_instance i USING (instance_id)
JOIN dim_project p USING (project_id)
JOIN dim_machine m USING (machine_id)
JOIN dim_group g USING (group_id);

-- ========== ACCESS ==========
GRANT SELECT ON carbon_intensity_regional_hourly TO carbon_analyst;
CREATE VIEW reporting.carbon_intensity_regional_hourly AS
  SELECT * FROM public.carbon_intensity_regional_hourly;
CREATE OR REPLACE VIEW reporting.v_usage_hourly AS SELECT * FROM public.v_usage_hourly WHERE scope <> 'user';
CREATE OR REPLACE VIEW reporting.v_usage_daily AS SELECT * FROM public.v_usage_daily WHERE scope <> 'user';
CREATE OR REPLACE VIEW reporting.v_usage_monthly AS SELECT * FROM public.v_usage_monthly WHERE scope <> 'user';
CREATE OR REPLACE VIEW reporting.v_usage_yearly AS SELECT * FROM public.v_usage_yearly WHERE scope <> 'user';
CREATE OR REPLACE VIEW reporting.v_usage_total AS SELECT * FROM public.v_usage_total WHERE scope <> 'user';
CREATE OR REPLACE VIEW reporting.v_usage_heatmap AS SELECT * FROM public.v_usage_heatmap WHERE scope <> 'user';
CREATE OR REPLACE VIEW reporting.v_ada_total AS SELECT * FROM public.v_ada_total;
CREATE OR REPLACE VIEW reporting.v_ada_averages AS SELECT * FROM public.v_ada_averages;
CREATE OR REPLACE VIEW reporting.v_project_total AS SELECT * FROM public.v_project_total;
CREATE OR REPLACE VIEW reporting.v_project_averages AS SELECT * FROM public.v_project_averages;
CREATE OR REPLACE VIEW reporting.v_machine_total AS SELECT * FROM public.v_machine_total;
CREATE OR REPLACE VIEW reporting.v_machine_averages AS SELECT * FROM public.v_machine_averages;
CREATE OR REPLACE VIEW reporting.v_group_total AS SELECT * FROM public.v_group_total;
CREATE OR REPLACE VIEW reporting.v_group_averages AS SELECT * FROM public.v_group_averages;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO carbon_reporter;

-- ========== DOCUMENTATION ==========
INSERT INTO column_glossary (column_name, meaning) VALUES
  ('memory_gib', 'Memory of the host, mean over the hour [GiB] (node_memory_MemTotal_bytes); NULL if Prometheus had none.'),
  ('memory_kwh', 'Electricity drawn by memory [kWh] = GiB x W/GiB x share of the hour the host was up / 1000.'),
  ('overhead_kwh', 'Facility overhead [kWh] = (busy + idle + memory kWh) x (PUE - 1): cooling, power distribution.'),
  ('full_kwh', 'Full electricity [kWh] = busy + idle + memory + overhead kWh.'),
  ('memory_gco2eq', 'Carbon of the memory''s electricity [gCO2eq], national intensity.'),
  ('overhead_gco2eq', 'Carbon of the facility overhead [gCO2eq], national intensity.'),
  ('embodied_gco2eq', 'Manufacturing carbon amortised over the hours the host existed [gCO2eq] = server kgCO2e x 1000 x cpus / server threads x share up / lifetime hours; independent of intensity.'),
  ('full_gco2eq', 'Full footprint [gCO2eq] = busy + idle + memory + overhead + embodied gCO2eq, national grid.'),
  ('regional_gco2eq', 'Location-based operational carbon [gCO2eq] = full_kwh x the regional intensity of the host''s site (GHG Protocol Scope 2); add embodied_gco2eq for the total.'),
  ('regional_intensity_gco2eq_per_kwh', 'Carbon intensity of the site''s GB region [gCO2eq/kWh] (a forecast: the API publishes no regional actuals); energy-weighted over a period.'),
  ('footprint_unknown_hours', 'Hours whose full footprint is unknown (a host''s memory size missing): the full-footprint sums leave them out [h].'),
  ('memory_watts_per_gib', 'Power model: watts per GiB of memory [W/GiB].'),
  ('pue', 'Power usage effectiveness of the host''s site (1.0: overhead not applied).'),
  ('embodied_kgco2e', 'Manufacturing emissions of one whole server [kgCO2e].'),
  ('lifetime_years', 'Years a server is in use, its embodied carbon spread over them.'),
  ('server_threads', 'Hardware threads of one server: a host holds cpu_count / server_threads of it.'),
  ('site', 'The host''s site (a data centre), from its project.'),
  ('region_id', 'GB grid region of the site (Carbon Intensity API region id; 12: South England).'),
  ('energy_kwh_full_avg', 'Mean full electricity per hour [kWh/h].'),
  ('carbon_gco2eq_full_avg', 'Mean full footprint per hour [gCO2eq/h].'),
  ('carbon_gco2eq_embodied_avg', 'Mean embodied carbon per hour [gCO2eq/h].'),
  ('carbon_gco2eq_regional_avg', 'Mean location-based operational carbon per hour [gCO2eq/h].')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;
SELECT carbon_document_columns();
COMMENT ON TABLE carbon_intensity_regional_hourly IS 'Carbon intensity of GB regions per UTC hour (forecasts; the API publishes no regional actuals), with provenance.';
COMMENT ON VIEW reporting.carbon_intensity_regional_hourly IS 'Carbon intensity of GB regions per UTC hour (aggregate scopes only: no users).';
COMMENT ON FUNCTION usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) IS 'Totals and hourly averages of every entity of a scope (ada, project, machine, group, user) over [from_ts, to_ts), the seed''s footprint and the full one.';
COMMENT ON FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) IS 'Totals and hourly averages of every entity of an aggregate scope (ada, project, machine, group) over [from_ts, to_ts).';
