-- 0004: the analysts' warehouse: one hourly view over every scope and its daily, monthly,
-- yearly and lifetime rollups, windowed totals, a year heatmap, equivalencies, workspace
-- sessions, the host level, the read-only role carbon_analyst, and a comment on every view
-- and column.

-- ========== THE REPORTING CLOCK ==========
-- "Last month", "this year" and "the last 7 days" are measured from reporting_now(): now(),
-- unless a session sets carbon.now to report as of another time (SET carbon.now = '2025-04-01').
CREATE FUNCTION reporting_now() RETURNS TIMESTAMPTZ LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('carbon.now', true), '')::timestamptz, now())
$$;

-- ========== WORKSPACE SESSIONS ==========
ALTER TABLE workspace_session
  ADD COLUMN workspace_ext_id       TEXT UNIQUE,
  ADD COLUMN hostname               TEXT,
  ADD COLUMN instance_id            BIGINT REFERENCES dim_instance(instance_id) ON DELETE SET NULL,
  ADD COLUMN busy_cpu_seconds_total DOUBLE PRECISION DEFAULT 0,
  ADD COLUMN idle_cpu_seconds_total DOUBLE PRECISION DEFAULT 0;

-- A workspace's share of its host's hours (partial hours by overlap). Like
-- fact_usage_instance it has no per-row foreign key: a row per workspace and hour.
CREATE TABLE fact_usage_workspace (
  workspace_session_id     BIGINT NOT NULL,
  timestamp_utc            TIMESTAMPTZ NOT NULL,
  busy_cpu_seconds_total   DOUBLE PRECISION NOT NULL,
  idle_cpu_seconds_total   DOUBLE PRECISION NOT NULL,
  busy_kwh                 DOUBLE PRECISION NOT NULL,
  idle_kwh                 DOUBLE PRECISION NOT NULL,
  busy_gco2eq              DOUBLE PRECISION NOT NULL,
  idle_gco2eq              DOUBLE PRECISION NOT NULL,
  intensity_gco2eq_per_kwh DOUBLE PRECISION NOT NULL,
  intensity_source         TEXT NOT NULL,
  PRIMARY KEY (workspace_session_id, timestamp_utc)
) PARTITION BY RANGE (timestamp_utc);
CREATE INDEX idx_fact_workspace_ts ON fact_usage_workspace (timestamp_utc DESC);

-- ========== EVERY SCOPE, HOURLY ==========
CREATE VIEW v_usage_hourly AS
SELECT 'ada'::text AS scope, NULL::bigint AS scope_id, 'ada'::text AS scope_name,
       'Ada (whole platform)'::text AS display_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source
FROM fact_usage_ada f
UNION ALL
SELECT 'project', d.project_id, d.cloud_project_name, d.cloud_project_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source
FROM fact_usage_project f JOIN dim_project d USING (project_id)
UNION ALL
SELECT 'machine', d.machine_id, d.machine_name, d.machine_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source
FROM fact_usage_machine f JOIN dim_machine d USING (machine_id)
UNION ALL
SELECT 'group', d.group_id, d.group_name, d.group_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source
FROM fact_usage_group f JOIN dim_group d USING (group_id)
UNION ALL
SELECT 'user', d.user_id, d.ext_user_id, coalesce(d.display_name, d.ext_user_id),
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source
FROM fact_usage_user f JOIN dim_user d USING (user_id);

-- ========== ROLLUPS: DAY, MONTH, YEAR, LIFETIME ==========
-- One aggregation for every grain (a filter on `grain` is pushed below it, so each of the
-- views below computes only its own grain). Periods are UTC calendar periods.
CREATE VIEW v_usage_rollup AS
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
         / nullif(sum(h.busy_cpu_seconds_total + h.idle_cpu_seconds_total), 0) AS idle_share_cpu
FROM v_usage_hourly h
CROSS JOIN (VALUES ('day'), ('month'), ('year'), ('lifetime')) AS g (grain)
GROUP BY g.grain, h.scope, h.scope_id, h.scope_name, h.display_name, 6;

CREATE VIEW v_usage_daily AS
SELECT scope, scope_id, scope_name, display_name, period_start AS day, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu
FROM v_usage_rollup WHERE grain = 'day';

CREATE VIEW v_usage_monthly AS
SELECT scope, scope_id, scope_name, display_name, period_start AS month, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu
FROM v_usage_rollup WHERE grain = 'month';

CREATE VIEW v_usage_yearly AS
SELECT scope, scope_id, scope_name, display_name, period_start AS year, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu
FROM v_usage_rollup WHERE grain = 'year';

CREATE VIEW v_usage_total AS
SELECT scope, scope_id, scope_name, display_name, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu
FROM v_usage_rollup WHERE grain = 'lifetime';

-- Totals and hourly averages of every entity of `scope` over [from_ts, to_ts). Inlined by the
-- planner: only the scope's fact table, and only the months of the window, are read.
CREATE FUNCTION usage_between(scope TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS TABLE (
  scope TEXT, scope_id BIGINT, scope_name TEXT, display_name TEXT, hours BIGINT,
  estimated_hours BIGINT, busy_cpu_seconds_total DOUBLE PRECISION,
  idle_cpu_seconds_total DOUBLE PRECISION, busy_kwh DOUBLE PRECISION, idle_kwh DOUBLE PRECISION,
  total_kwh DOUBLE PRECISION, busy_gco2eq DOUBLE PRECISION, idle_gco2eq DOUBLE PRECISION,
  total_gco2eq DOUBLE PRECISION, kwh_per_hour_avg DOUBLE PRECISION,
  gco2eq_per_hour_avg DOUBLE PRECISION, intensity_gco2eq_per_kwh DOUBLE PRECISION,
  busy_share_kwh DOUBLE PRECISION, idle_share_cpu DOUBLE PRECISION
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
           / nullif(sum(h.busy_cpu_seconds_total + h.idle_cpu_seconds_total), 0)
  FROM v_usage_hourly h
  WHERE h.scope = $1 AND h.timestamp_utc >= $2 AND h.timestamp_utc < $3
  GROUP BY h.scope, h.scope_id, h.scope_name, h.display_name
$$;

-- ========== HEATMAP ==========
-- Every entity's daily totals for the 365 days ending on reporting_now()'s day, zeros included.
CREATE VIEW v_usage_heatmap AS
WITH days AS (
  SELECT generate_series((reporting_now() AT TIME ZONE 'UTC')::date - 364,
                         (reporting_now() AT TIME ZONE 'UTC')::date, interval '1 day')::date AS day
)
SELECT e.scope, e.scope_id, e.scope_name, e.display_name, d.day,
       coalesce(u.hours, 0)        AS hours,
       coalesce(u.total_kwh, 0)    AS total_kwh,
       coalesce(u.total_gco2eq, 0) AS total_gco2eq
FROM v_usage_total e
CROSS JOIN days d
LEFT JOIN v_usage_daily u
  ON u.scope = e.scope AND u.scope_name = e.scope_name AND u.day = d.day;

-- ========== EQUIVALENCIES ==========
CREATE TABLE equivalency (
  equivalency     TEXT PRIMARY KEY,
  description     TEXT NOT NULL,
  unit            TEXT NOT NULL,
  gco2eq_per_unit DOUBLE PRECISION NOT NULL CHECK (gco2eq_per_unit > 0),
  source          TEXT NOT NULL
);
INSERT INTO equivalency VALUES
  ('car_miles', 'Miles driven in an average car', 'mile', 400,
   'Ada carbon documentation (ada-carbon-monitoring-api, CarbonEquivalencyCalculator: miles_driven_car)'),
  ('smartphone_charges', 'Full charges of a smartphone', 'charge', 8.22,
   'Ada carbon documentation (ada-carbon-monitoring-api, CarbonEquivalencyCalculator: smartphone_charge)'),
  ('tree_days', 'Days of CO2 absorption by one tree', 'tree-day', 59.6,
   'Ada carbon documentation (ada-carbon-monitoring-api, CarbonEquivalencyCalculator: tree_day)'),
  ('hd_streaming_hours', 'Hours of HD video streaming', 'hour', 55,
   'Ada carbon documentation (ada-carbon-monitoring-api, CarbonEquivalencyCalculator: streaming_hour)'),
  ('litres_boiled', 'Litres of water boiled in a kettle', 'litre', 70,
   'Ada carbon documentation (ada-carbon-monitoring-api, CarbonEquivalencyCalculator: kettle_boil)');

CREATE FUNCTION equivalencies(gco2eq DOUBLE PRECISION)
RETURNS TABLE (equivalency TEXT, description TEXT, unit TEXT, amount DOUBLE PRECISION)
LANGUAGE sql STABLE AS $$
  SELECT e.equivalency, e.description, e.unit, $1 / e.gco2eq_per_unit FROM equivalency e
$$;

CREATE VIEW v_usage_equivalencies AS
SELECT t.scope, t.scope_id, t.scope_name, t.display_name, t.total_gco2eq,
       e.equivalency, e.description, e.unit, t.total_gco2eq / e.gco2eq_per_unit AS amount
FROM v_usage_total t CROSS JOIN equivalency e;

-- ========== WORKSPACES ==========
CREATE VIEW v_workspace_sessions AS
SELECT s.workspace_session_id, s.workspace_ext_id, s.hostname, u.ext_user_id,
       coalesce(u.display_name, u.ext_user_id) AS user_name,
       m.machine_name, p.cloud_project_name, g.group_name,
       s.started_at, s.ended_at, s.ended_at IS NULL AS active,
       s.busy_cpu_seconds_total, s.idle_cpu_seconds_total,
       s.busy_kwh, s.idle_kwh, s.busy_kwh + s.idle_kwh AS total_kwh,
       s.busy_gco2eq, s.idle_gco2eq, s.busy_gco2eq + s.idle_gco2eq AS total_gco2eq,
       s.idle_cpu_seconds_total
         / nullif(s.busy_cpu_seconds_total + s.idle_cpu_seconds_total, 0) AS idle_share_cpu
FROM workspace_session s
LEFT JOIN dim_user u USING (user_id)
LEFT JOIN dim_machine m USING (machine_id)
LEFT JOIN dim_project p USING (project_id)
LEFT JOIN dim_group g USING (group_id);

CREATE VIEW v_active_workspaces AS
SELECT * FROM v_workspace_sessions WHERE ended_at IS NULL;

-- Workspaces holding a host at reporting_now(), with their idle share and idle energy over
-- the last 7 and 30 days: the candidates for "stop idle machines".
CREATE VIEW v_idle_workspaces AS
WITH recent AS (
  SELECT f.workspace_session_id,
         sum(f.idle_cpu_seconds_total) FILTER (WHERE f.timestamp_utc >= reporting_now() - interval '7 days')
           / nullif(sum(f.busy_cpu_seconds_total + f.idle_cpu_seconds_total)
                    FILTER (WHERE f.timestamp_utc >= reporting_now() - interval '7 days'), 0) AS idle_share_cpu_7d,
         coalesce(sum(f.idle_kwh) FILTER (WHERE f.timestamp_utc >= reporting_now() - interval '7 days'), 0) AS idle_kwh_7d,
         sum(f.idle_cpu_seconds_total)
           / nullif(sum(f.busy_cpu_seconds_total + f.idle_cpu_seconds_total), 0) AS idle_share_cpu_30d,
         sum(f.idle_kwh) AS idle_kwh_30d
  FROM fact_usage_workspace f
  WHERE f.timestamp_utc >= reporting_now() - interval '30 days' AND f.timestamp_utc < reporting_now()
  GROUP BY f.workspace_session_id
)
SELECT s.workspace_session_id, s.workspace_ext_id, s.hostname, s.ext_user_id, s.user_name,
       s.machine_name, s.cloud_project_name, s.group_name, s.started_at,
       r.idle_share_cpu_7d, r.idle_kwh_7d, r.idle_share_cpu_30d, r.idle_kwh_30d
FROM v_workspace_sessions s
JOIN recent r USING (workspace_session_id)
WHERE s.started_at <= reporting_now() AND (s.ended_at IS NULL OR s.ended_at > reporting_now());

-- ========== HOST LEVEL ==========
CREATE VIEW v_host_hourly AS
SELECT f.timestamp_utc, i.instance_id, i.hostname, p.cloud_project_name, m.machine_name,
       g.group_name, f.cpu_count, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total,
       f.busy_kwh, f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh,
       f.intensity_source, f.busy_watts_per_core, f.idle_watts_per_core
FROM fact_usage_instance f
JOIN dim_instance i USING (instance_id)
JOIN dim_project p USING (project_id)
JOIN dim_machine m USING (machine_id)
JOIN dim_group g USING (group_id);

-- ========== ACCESS ==========
-- carbon_analyst reads the views, facts and dimensions; nothing else, and writes nothing.
-- Give people access with: CREATE ROLE alice LOGIN PASSWORD '…' IN ROLE carbon_analyst;
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'carbon_analyst') THEN
    CREATE ROLE carbon_analyst NOLOGIN;
  END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO carbon_analyst;
GRANT SELECT ON
  v_usage_hourly, v_usage_rollup, v_usage_daily, v_usage_monthly, v_usage_yearly, v_usage_total,
  v_usage_heatmap, v_usage_equivalencies, v_workspace_sessions, v_active_workspaces,
  v_idle_workspaces, v_host_hourly,
  v_ada_total, v_ada_averages, v_project_total, v_project_averages, v_machine_total,
  v_machine_averages, v_group_total, v_group_averages, v_user_total, v_user_averages,
  fact_usage_ada, fact_usage_project, fact_usage_machine, fact_usage_group, fact_usage_user,
  fact_usage_instance, fact_usage_workspace, workspace_session, carbon_intensity_hourly,
  dim_project, dim_group, dim_user, dim_instance, dim_machine,
  bridge_project_group, bridge_project_user, equivalency
TO carbon_analyst;
REVOKE EXECUTE ON FUNCTION carbon_ensure_month_partitions(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;

-- ========== DOCUMENTATION ==========
COMMENT ON FUNCTION reporting_now() IS 'The time "last month", "this year" and "the last N days" are measured from: now(), or the session setting carbon.now.';
COMMENT ON FUNCTION usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) IS 'Totals and hourly averages of every entity of a scope (ada, project, machine, group, user) over [from_ts, to_ts).';
COMMENT ON FUNCTION equivalencies(DOUBLE PRECISION) IS 'What an amount of gCO2eq equals in everyday terms (one row per equivalency).';

COMMENT ON VIEW v_usage_hourly IS 'Hourly electricity and carbon of every scope (ada, project, machine, group, user) in one shape.';
COMMENT ON VIEW v_usage_rollup IS 'v_usage_hourly summed per UTC day, month, year and lifetime (column grain).';
COMMENT ON VIEW v_usage_daily IS 'Daily (UTC) totals per scope entity.';
COMMENT ON VIEW v_usage_monthly IS 'Monthly (UTC) totals per scope entity.';
COMMENT ON VIEW v_usage_yearly IS 'Yearly (UTC) totals per scope entity.';
COMMENT ON VIEW v_usage_total IS 'Lifetime totals, hourly averages and shares per scope entity.';
COMMENT ON VIEW v_usage_heatmap IS 'Daily totals per scope entity for the 365 days ending on reporting_now(), days without data as zeros.';
COMMENT ON VIEW v_usage_equivalencies IS 'Lifetime carbon of every scope entity in everyday equivalents.';
COMMENT ON VIEW v_workspace_sessions IS 'One row per registry workspace: who, what, where, when, and the energy and carbon it accumulated.';
COMMENT ON VIEW v_active_workspaces IS 'Workspaces not yet deleted.';
COMMENT ON VIEW v_idle_workspaces IS 'Workspaces holding a host at reporting_now(), with idle share and idle energy over the last 7 and 30 days.';
COMMENT ON VIEW v_host_hourly IS 'Electricity and carbon per host and hour, with names.';
COMMENT ON VIEW v_ada_total IS 'Lifetime totals of the whole platform.';
COMMENT ON VIEW v_ada_averages IS 'Lifetime hourly averages of the whole platform.';
COMMENT ON VIEW v_project_total IS 'Lifetime totals per project.';
COMMENT ON VIEW v_project_averages IS 'Lifetime hourly averages per project.';
COMMENT ON VIEW v_machine_total IS 'Lifetime totals per machine type.';
COMMENT ON VIEW v_machine_averages IS 'Lifetime hourly averages per machine type.';
COMMENT ON VIEW v_group_total IS 'Lifetime totals per machine group.';
COMMENT ON VIEW v_group_averages IS 'Lifetime hourly averages per machine group.';
COMMENT ON VIEW v_user_total IS 'Lifetime totals per user (unattributed included).';
COMMENT ON VIEW v_user_averages IS 'Lifetime hourly averages per user.';

COMMENT ON TABLE fact_usage_ada IS 'Hourly electricity and carbon of the whole platform.';
COMMENT ON TABLE fact_usage_project IS 'Hourly electricity and carbon per project.';
COMMENT ON TABLE fact_usage_machine IS 'Hourly electricity and carbon per machine type.';
COMMENT ON TABLE fact_usage_group IS 'Hourly electricity and carbon per machine group.';
COMMENT ON TABLE fact_usage_user IS 'Hourly electricity and carbon per user; hours no workspace held go to unattributed.';
COMMENT ON TABLE fact_usage_instance IS 'Hourly electricity and carbon per host.';
COMMENT ON TABLE fact_usage_workspace IS 'Hourly electricity and carbon per workspace (its share of its host).';
COMMENT ON TABLE workspace_session IS 'One row per registry workspace, with its accumulated energy and carbon.';
COMMENT ON TABLE carbon_intensity_hourly IS 'GB national carbon intensity per UTC hour, with provenance.';
COMMENT ON TABLE dim_project IS 'OpenStack projects (IDAaaS = ISIS, CDAaaS = CLF, DDAaaS = development, TDAaaS = training).';
COMMENT ON TABLE dim_group IS 'Machine groups {cloud_project_name}_{machine_name}, enriched from the registry.';
COMMENT ON TABLE dim_user IS 'Users by platform_name; unattributed is the reserved user of unheld host-hours.';
COMMENT ON TABLE dim_instance IS 'Hosts (VMs), by normalised host name.';
COMMENT ON TABLE dim_machine IS 'Machine types, with the power model used for them.';
COMMENT ON TABLE bridge_project_group IS 'Which machine groups belong to which project.';
COMMENT ON TABLE bridge_project_user IS 'Which users held workspaces in which project.';
COMMENT ON TABLE equivalency IS 'Everyday equivalents of carbon: grams of CO2eq per unit.';

-- Column comments by name: one meaning for a column wherever it appears.
DO $$
DECLARE
  c RECORD;
BEGIN
  FOR c IN
    WITH meaning (column_name, comment) AS (VALUES
      ('scope', 'Which scope the row is about: ada, project, machine, group or user.'),
      ('scope_id', 'Id of the entity in its dimension (project_id, machine_id, group_id, user_id); NULL for ada.'),
      ('scope_name', 'Name of the entity: project, machine type, group name, user platform_name, or ada.'),
      ('display_name', 'Human name of the entity (a user''s name from the registry, else its scope_name).'),
      ('grain', 'Rollup period: day, month, year or lifetime.'),
      ('period_start', 'First day (UTC) of the rollup period; NULL for lifetime.'),
      ('day', 'UTC calendar day.'),
      ('month', 'First day of the UTC calendar month.'),
      ('year', 'First day of the UTC calendar year.'),
      ('timestamp_utc', 'Start of the UTC hour the row covers.'),
      ('hours', 'Number of hourly rows summed [h].'),
      ('estimated_hours', 'Hours whose intensity was a forecast or the fallback, not an actual [h].'),
      ('busy_cpu_seconds_total', 'CPU-seconds spent busy (user, system, nice, irq, softirq, steal) [s].'),
      ('idle_cpu_seconds_total', 'CPU-seconds spent idle (idle, iowait) [s].'),
      ('busy_kwh', 'Electricity drawn by busy cores [kWh] = busy W/core x busy s / 3.6e6.'),
      ('idle_kwh', 'Electricity drawn by idle cores [kWh] = idle W/core x idle s / 3.6e6.'),
      ('total_kwh', 'busy_kwh + idle_kwh [kWh].'),
      ('busy_gco2eq', 'Carbon of the busy electricity [gCO2eq] = busy_kwh x intensity of the hour.'),
      ('idle_gco2eq', 'Carbon of the idle electricity [gCO2eq] = idle_kwh x intensity of the hour.'),
      ('total_gco2eq', 'busy_gco2eq + idle_gco2eq [gCO2eq].'),
      ('kwh_per_hour_avg', 'Mean electricity per hour with data [kWh/h].'),
      ('gco2eq_per_hour_avg', 'Mean carbon per hour with data [gCO2eq/h].'),
      ('intensity_gco2eq_per_kwh', 'Grid carbon intensity [gCO2eq/kWh]: of the hour, or energy-weighted over a period.'),
      ('intensity_source', 'Provenance of the hour''s intensity: actual, forecast (no or rejected actual) or fallback (200, the API had nothing).'),
      ('busy_share_kwh', 'busy_kwh / total_kwh [0-1].'),
      ('idle_share_cpu', 'Idle CPU-seconds / all CPU-seconds [0-1].'),
      ('energy_kwh_busy_avg', 'Mean busy electricity per hour [kWh/h].'),
      ('energy_kwh_idle_avg', 'Mean idle electricity per hour [kWh/h].'),
      ('carbon_gco2eq_busy_avg', 'Mean busy carbon per hour [gCO2eq/h].'),
      ('carbon_gco2eq_idle_avg', 'Mean idle carbon per hour [gCO2eq/h].'),
      ('intensity_gco2eq_per_kwh_avg', 'Mean of the hourly intensities [gCO2eq/kWh].'),
      ('project_id', 'Project id (dim_project).'),
      ('machine_id', 'Machine type id (dim_machine).'),
      ('group_id', 'Machine group id (dim_group).'),
      ('user_id', 'User id (dim_user).'),
      ('instance_id', 'Host id (dim_instance).'),
      ('cloud_project_name', 'OpenStack project name (Prometheus label cloud_project_name).'),
      ('machine_name', 'Machine type inside its project (Prometheus label machine_name), e.g. Artemis (Matlab).'),
      ('group_name', 'Machine group: {cloud_project_name}_{machine_name}.'),
      ('ext_user_id', 'User''s platform_name in the registry; unattributed for unheld host-hours.'),
      ('user_name', 'User''s display name, else platform_name.'),
      ('hostname', 'Host identity, normalised: its IPv4 address where its name encodes one.'),
      ('labels', 'The host''s latest Prometheus labels (project, machine type).'),
      ('attributes', 'Extra facts: for machines the power model used (W per busy/idle core), for groups gid, type and member count from the registry.'),
      ('cpu_count', 'CPUs reporting in the hour.'),
      ('busy_watts_per_core', 'Power model: watts drawn per busy core [W].'),
      ('idle_watts_per_core', 'Power model: watts drawn per idle core [W].'),
      ('workspace_session_id', 'Workspace session id (workspace_session).'),
      ('workspace_ext_id', 'The workspace''s id in the registry.'),
      ('started_at', 'When the workspace began to hold its host: max(created_time, acquired_time).'),
      ('ended_at', 'When the workspace was deleted; NULL while active.'),
      ('active', 'True while the workspace has not been deleted.'),
      ('idle_share_cpu_7d', 'Idle CPU-seconds / all CPU-seconds over the 7 days before reporting_now() [0-1].'),
      ('idle_kwh_7d', 'Idle electricity over the 7 days before reporting_now() [kWh].'),
      ('idle_share_cpu_30d', 'Idle CPU-seconds / all CPU-seconds over the 30 days before reporting_now() [0-1].'),
      ('idle_kwh_30d', 'Idle electricity over the 30 days before reporting_now() [kWh].'),
      ('forecast_gco2eq_per_kwh', 'Mean forecast of the hour''s half-hour periods [gCO2eq/kWh].'),
      ('actual_gco2eq_per_kwh', 'Mean accepted actual of the hour''s periods [gCO2eq/kWh]; NULL if none.'),
      ('period_count', 'Half-hour periods the hour''s intensity is the mean of (0 for fallback).'),
      ('glitch_periods', 'Periods whose actual was 0 while the forecast was far above: rejected, forecast used.'),
      ('equivalency', 'Name of the everyday equivalent.'),
      ('description', 'What one unit of the equivalent is.'),
      ('unit', 'Unit of the equivalent.'),
      ('gco2eq_per_unit', 'Carbon of one unit [gCO2eq/unit].'),
      ('source', 'Where the factor comes from.'),
      ('amount', 'The carbon expressed in units of the equivalent [unit].')
    )
    SELECT cl.relname, cl.relkind, a.attname, m.comment
    FROM pg_class cl
    JOIN pg_namespace n ON n.oid = cl.relnamespace AND n.nspname = 'public'
    JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN meaning m ON m.column_name = a.attname
    WHERE cl.relkind IN ('r', 'p', 'v')
      AND NOT cl.relispartition
  LOOP
    EXECUTE format('COMMENT ON COLUMN %I.%I IS %L', c.relname, c.attname, c.comment);
  END LOOP;
END
$$;
