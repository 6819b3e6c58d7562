-- 0010: the record, second pass.
-- Sessions remember when the registry last showed them: a workspace whose document
-- disappears (purged) while its session is open ends at that time, instead of holding its
-- host forever.

-- ========== workspace_session.last_seen_at ==========
ALTER TABLE public.workspace_session ADD COLUMN last_seen_at TIMESTAMPTZ;
-- Sessions stored before: the registry showed them at least until the end of the last hour
-- stored for them (the run that stored it asked the registry after that hour closed).
UPDATE public.workspace_session s
SET last_seen_at = coalesce(s.ended_at, f.last_hour + interval '1 hour', s.started_at)
FROM (
  SELECT w.workspace_session_id, max(f.timestamp_utc) AS last_hour
  FROM public.workspace_session w
  LEFT JOIN public.fact_usage_workspace f USING (workspace_session_id)
  GROUP BY w.workspace_session_id
) f
WHERE f.workspace_session_id = s.workspace_session_id;

INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('last_seen_at', 'When the registry last showed the workspace (the time of the run that asked). A workspace purged from the registry while open is taken to have ended then.')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;
SELECT public.carbon_document_columns();

-- ========== unknown is NULL and counted ==========
-- A scope-hour's full footprint sums the host-hours that know it; beside it, how many did
-- not. Rows stored before: 0 where the row's footprint is known, else NULL (not counted:
-- re-derive with `carbon-pipeline backfill --from facts` to sum the known host-hours).
DO $$
DECLARE
  t TEXT;
BEGIN
  FOREACH t IN ARRAY ARRAY['fact_usage_ada', 'fact_usage_project', 'fact_usage_machine',
                           'fact_usage_group', 'fact_usage_user', 'fact_usage_workspace']
  LOOP
    EXECUTE format('ALTER TABLE public.%I ADD COLUMN footprint_unknown_hosts INTEGER, '
                   'ADD COLUMN regional_unknown_hosts INTEGER', t);
    EXECUTE format('UPDATE public.%I SET '
                   'footprint_unknown_hosts = CASE WHEN full_gco2eq IS NOT NULL THEN 0 END, '
                   'regional_unknown_hosts = CASE WHEN regional_gco2eq IS NOT NULL THEN 0 END', t);
  END LOOP;
END
$$;

-- The views that read the facts, with the counts appended (a view's definition is its
-- stored text: each top-level FROM gets the new columns before it).
DO $$
DECLARE
  v TEXT;
  body TEXT;
  saved TEXT := current_setting('search_path');
  unknown_hours TEXT := 'count(*) FILTER (WHERE f.full_gco2eq IS NULL OR COALESCE(f.footprint_unknown_hosts, 1) > 0) AS footprint_unknown_hours, '
    'count(*) FILTER (WHERE f.regional_gco2eq IS NULL OR COALESCE(f.regional_unknown_hosts, 1) > 0) AS regional_unknown_hours';
BEGIN
  PERFORM set_config('search_path', 'pg_catalog', TRUE);  -- pg_get_viewdef qualifies all names
  body := pg_get_viewdef('public.v_usage_hourly'::regclass);
  body := replace(body, E'\n   FROM ', E',\n    f.footprint_unknown_hosts,\n    f.regional_unknown_hosts\n   FROM ');
  EXECUTE 'CREATE OR REPLACE VIEW public.v_usage_hourly AS ' || body;
  FOREACH v IN ARRAY ARRAY['v_ada_total', 'v_ada_averages', 'v_project_total', 'v_project_averages',
                           'v_machine_total', 'v_machine_averages', 'v_group_total',
                           'v_group_averages', 'v_user_total', 'v_user_averages']
  LOOP
    body := pg_get_viewdef(format('public.%I', v)::regclass);
    IF (length(body) - length(replace(body, E'\n   FROM ', ''))) <> length(E'\n   FROM ') THEN
      RAISE EXCEPTION 'view % does not have one top-level FROM: %', v, body;
    END IF;
    body := replace(body, E'\n   FROM ', E',\n    ' || unknown_hours || E'\n   FROM ');
    EXECUTE format('CREATE OR REPLACE VIEW public.%I AS %s', v, body);
  END LOOP;
  PERFORM set_config('search_path', saved, TRUE);
END
$$;

-- Rollups: footprint_unknown_hours counts the hours with any host-hour unknown (before: only
-- hours whose whole footprint was NULL); the host-hours and the regional ones beside it.
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
       sum(h.regional_gco2eq) / nullif(sum(h.full_kwh) FILTER (WHERE h.regional_gco2eq IS NOT NULL), 0)
                                                                   AS regional_intensity_gco2eq_per_kwh,
       count(*) FILTER (WHERE h.full_gco2eq IS NULL OR coalesce(h.footprint_unknown_hosts, 1) > 0)
                                                                   AS footprint_unknown_hours,
       sum(h.footprint_unknown_hosts)                              AS footprint_unknown_host_hours,
       count(*) FILTER (WHERE h.regional_gco2eq IS NULL OR coalesce(h.regional_unknown_hosts, 1) > 0)
                                                                   AS regional_unknown_hours
FROM v_usage_hourly h
CROSS JOIN (VALUES ('day'), ('month'), ('year'), ('lifetime')) AS g (grain)
GROUP BY g.grain, h.scope, h.scope_id, h.scope_name, h.display_name, 6;
CREATE OR REPLACE VIEW v_usage_daily AS
SELECT scope, scope_id, scope_name, display_name, period_start AS day, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu,
       memory_kwh, overhead_kwh, full_kwh, memory_gco2eq, overhead_gco2eq, embodied_gco2eq, full_gco2eq, regional_gco2eq,
       regional_intensity_gco2eq_per_kwh, footprint_unknown_hours,
       footprint_unknown_host_hours, regional_unknown_hours
FROM v_usage_rollup WHERE grain = 'day';
CREATE OR REPLACE VIEW v_usage_monthly AS
SELECT scope, scope_id, scope_name, display_name, period_start AS month, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu,
       memory_kwh, overhead_kwh, full_kwh, memory_gco2eq, overhead_gco2eq, embodied_gco2eq, full_gco2eq, regional_gco2eq,
       regional_intensity_gco2eq_per_kwh, footprint_unknown_hours,
       footprint_unknown_host_hours, regional_unknown_hours
FROM v_usage_rollup WHERE grain = 'month';
CREATE OR REPLACE VIEW v_usage_yearly AS
SELECT scope, scope_id, scope_name, display_name, period_start AS year, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu,
       memory_kwh, overhead_kwh, full_kwh, memory_gco2eq, overhead_gco2eq, embodied_gco2eq, full_gco2eq, regional_gco2eq,
       regional_intensity_gco2eq_per_kwh, footprint_unknown_hours,
       footprint_unknown_host_hours, regional_unknown_hours
FROM v_usage_rollup WHERE grain = 'year';
CREATE OR REPLACE VIEW v_usage_total AS
SELECT scope, scope_id, scope_name, display_name, hours, estimated_hours,
       busy_cpu_seconds_total, idle_cpu_seconds_total, busy_kwh, idle_kwh, total_kwh,
       busy_gco2eq, idle_gco2eq, total_gco2eq, kwh_per_hour_avg, gco2eq_per_hour_avg,
       intensity_gco2eq_per_kwh, busy_share_kwh, idle_share_cpu,
       memory_kwh, overhead_kwh, full_kwh, memory_gco2eq, overhead_gco2eq, embodied_gco2eq, full_gco2eq, regional_gco2eq,
       regional_intensity_gco2eq_per_kwh, footprint_unknown_hours,
       footprint_unknown_host_hours, regional_unknown_hours
FROM v_usage_rollup WHERE grain = 'lifetime';

-- The heatmap: a day without hours is no usage (0); a day whose full footprint is unknown
-- shows NULL, never 0, and how many of its hours were unknown.
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
       CASE WHEN u.hours IS NULL THEN 0 ELSE u.full_gco2eq END AS full_gco2eq,
       coalesce(u.footprint_unknown_hours, 0) AS footprint_unknown_hours
FROM entities e
CROSS JOIN days d
LEFT JOIN v_usage_daily u
  ON u.scope = e.scope AND u.scope_name = e.scope_name AND u.day = d.day;

-- usage_between returns the counts too: dropped and made again with reporting's.
DROP FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ);
DROP FUNCTION public.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ);
CREATE FUNCTION public.usage_between(scope TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS TABLE (
  scope TEXT, scope_id BIGINT, scope_name TEXT, display_name TEXT, hours BIGINT,
  estimated_hours BIGINT, busy_cpu_seconds_total DOUBLE PRECISION,
  idle_cpu_seconds_total DOUBLE PRECISION, busy_kwh DOUBLE PRECISION, idle_kwh DOUBLE PRECISION,
  total_kwh DOUBLE PRECISION, busy_gco2eq DOUBLE PRECISION, idle_gco2eq DOUBLE PRECISION,
  total_gco2eq DOUBLE PRECISION, kwh_per_hour_avg DOUBLE PRECISION,
  gco2eq_per_hour_avg DOUBLE PRECISION, intensity_gco2eq_per_kwh DOUBLE PRECISION,
  busy_share_kwh DOUBLE PRECISION, idle_share_cpu DOUBLE PRECISION,
  memory_kwh DOUBLE PRECISION, overhead_kwh DOUBLE PRECISION, full_kwh DOUBLE PRECISION, memory_gco2eq DOUBLE PRECISION, overhead_gco2eq DOUBLE PRECISION, embodied_gco2eq DOUBLE PRECISION, full_gco2eq DOUBLE PRECISION, regional_gco2eq DOUBLE PRECISION,
  regional_intensity_gco2eq_per_kwh DOUBLE PRECISION, footprint_unknown_hours BIGINT,
  footprint_unknown_host_hours BIGINT, regional_unknown_hours BIGINT
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
         sum(h.regional_gco2eq) / nullif(sum(h.full_kwh) FILTER (WHERE h.regional_gco2eq IS NOT NULL), 0),
         count(*) FILTER (WHERE h.full_gco2eq IS NULL OR coalesce(h.footprint_unknown_hosts, 1) > 0),
         sum(h.footprint_unknown_hosts),
         count(*) FILTER (WHERE h.regional_gco2eq IS NULL OR coalesce(h.regional_unknown_hosts, 1) > 0)
  FROM public.v_usage_hourly h
  WHERE h.scope = $1 AND h.timestamp_utc >= $2 AND h.timestamp_utc < $3
  GROUP BY h.scope, h.scope_id, h.scope_name, h.display_name
$$;
GRANT EXECUTE ON FUNCTION public.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) TO carbon_analyst;
COMMENT ON FUNCTION public.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) IS 'Totals and hourly averages of every entity of a scope (ada, project, machine, group, user) over [from_ts, to_ts), the seed''s footprint and the full one, with how many hours and host-hours had the full footprint unknown.';

-- ========== what carbon_reporter sees, with the counts ==========
-- The views made from the hourly view are dropped, the hourly view given the counts, and
-- they are made again as 0009 made them.
DROP VIEW reporting.v_usage_equivalencies, reporting.v_usage_heatmap, reporting.v_usage_total,
  reporting.v_usage_yearly, reporting.v_usage_monthly, reporting.v_usage_daily,
  reporting.v_usage_rollup, reporting.v_ada_total, reporting.v_ada_averages,
  reporting.v_project_total, reporting.v_project_averages, reporting.v_machine_total,
  reporting.v_machine_averages, reporting.v_group_total, reporting.v_group_averages;
CREATE OR REPLACE VIEW reporting.v_usage_hourly AS
WITH policy AS (
  SELECT min_users AS k FROM public.reporting_policy
),
entity AS (
  SELECT h.*, p.k,
         coalesce(sum(h.users) OVER (PARTITION BY h.scope, h.timestamp_utc ORDER BY h.users, h.scope_id
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS users_before,
         bool_or(h.users BETWEEN 1 AND p.k - 1) OVER (PARTITION BY h.scope, h.timestamp_utc) AS any_small
  FROM public.v_usage_hourly h CROSS JOIN policy p
  WHERE h.scope IN ('project', 'machine', 'group')
),
marked AS (
  SELECT e.*, (e.users >= 1 AND e.any_small AND (e.users < e.k OR e.users_before < e.k)) AS merged
  FROM entity e
),
merged AS (
  SELECT m.scope, m.timestamp_utc, min(m.k) AS k, sum(m.users) AS users,
         sum(m.busy_cpu_seconds_total) AS busy_cpu_seconds_total,
         sum(m.idle_cpu_seconds_total) AS idle_cpu_seconds_total,
         sum(m.busy_kwh) AS busy_kwh, sum(m.idle_kwh) AS idle_kwh,
         sum(m.busy_gco2eq) AS busy_gco2eq, sum(m.idle_gco2eq) AS idle_gco2eq,
         max(m.intensity_gco2eq_per_kwh) AS intensity_gco2eq_per_kwh,
         max(m.intensity_source) AS intensity_source,
         sum(m.memory_kwh) AS memory_kwh, sum(m.overhead_kwh) AS overhead_kwh,
         sum(m.full_kwh) AS full_kwh, sum(m.memory_gco2eq) AS memory_gco2eq,
         sum(m.overhead_gco2eq) AS overhead_gco2eq, sum(m.embodied_gco2eq) AS embodied_gco2eq,
         sum(m.full_gco2eq) AS full_gco2eq, sum(m.regional_gco2eq) AS regional_gco2eq,
         CASE WHEN bool_and(m.footprint_unknown_hosts IS NOT NULL) THEN sum(m.footprint_unknown_hosts) END
           AS footprint_unknown_hosts,
         CASE WHEN bool_and(m.regional_unknown_hosts IS NOT NULL) THEN sum(m.regional_unknown_hosts) END
           AS regional_unknown_hosts
  FROM marked m WHERE m.merged
  GROUP BY m.scope, m.timestamp_utc
)
SELECT m.scope, m.scope_id, m.scope_name, m.display_name, m.timestamp_utc,
       m.busy_cpu_seconds_total, m.idle_cpu_seconds_total, m.busy_kwh, m.idle_kwh,
       m.busy_gco2eq, m.idle_gco2eq, m.intensity_gco2eq_per_kwh, m.intensity_source,
       m.memory_kwh, m.overhead_kwh, m.full_kwh, m.memory_gco2eq, m.overhead_gco2eq,
       m.embodied_gco2eq, m.full_gco2eq, m.regional_gco2eq, m.users,
       m.footprint_unknown_hosts, m.regional_unknown_hosts
FROM marked m WHERE NOT m.merged
UNION ALL
SELECT g.scope, NULL::bigint, format('(merged: fewer than %s users each)', g.k),
       format('(merged: fewer than %s users each)', g.k), g.timestamp_utc,
       s.busy_cpu_seconds_total, s.idle_cpu_seconds_total, s.busy_kwh, s.idle_kwh,
       s.busy_gco2eq, s.idle_gco2eq, g.intensity_gco2eq_per_kwh, g.intensity_source,
       s.memory_kwh, s.overhead_kwh, s.full_kwh, s.memory_gco2eq, s.overhead_gco2eq,
       s.embodied_gco2eq, s.full_gco2eq, s.regional_gco2eq, g.users::integer,
       s.footprint_unknown_hosts::integer, s.regional_unknown_hosts::integer
FROM merged g
LEFT JOIN LATERAL (SELECT g.* WHERE g.users >= g.k) s ON TRUE
UNION ALL
SELECT a.scope, a.scope_id, a.scope_name, a.display_name, a.timestamp_utc,
       s.busy_cpu_seconds_total, s.idle_cpu_seconds_total, s.busy_kwh, s.idle_kwh,
       s.busy_gco2eq, s.idle_gco2eq, a.intensity_gco2eq_per_kwh, a.intensity_source,
       s.memory_kwh, s.overhead_kwh, s.full_kwh, s.memory_gco2eq, s.overhead_gco2eq,
       s.embodied_gco2eq, s.full_gco2eq, s.regional_gco2eq, a.users,
       s.footprint_unknown_hosts, s.regional_unknown_hosts
FROM public.v_usage_hourly a
CROSS JOIN policy p
LEFT JOIN LATERAL (SELECT a.* WHERE NOT coalesce(a.users BETWEEN 1 AND p.k - 1, FALSE)) s ON TRUE
WHERE a.scope = 'ada';

DO $$
DECLARE
  v TEXT;
  body TEXT;
  s RECORD;
  saved TEXT := current_setting('search_path');
  sums TEXT := 'SUM(h.busy_cpu_seconds_total) AS busy_cpu_seconds_total, SUM(h.idle_cpu_seconds_total) AS idle_cpu_seconds_total, '
    'SUM(h.busy_kwh) AS busy_kwh, SUM(h.idle_kwh) AS idle_kwh, SUM(h.busy_gco2eq) AS busy_gco2eq, SUM(h.idle_gco2eq) AS idle_gco2eq, '
    'SUM(h.memory_kwh) AS memory_kwh, SUM(h.overhead_kwh) AS overhead_kwh, SUM(h.full_kwh) AS full_kwh, '
    'SUM(h.memory_gco2eq) AS memory_gco2eq, SUM(h.overhead_gco2eq) AS overhead_gco2eq, SUM(h.embodied_gco2eq) AS embodied_gco2eq, '
    'SUM(h.full_gco2eq) AS full_gco2eq, SUM(h.regional_gco2eq) AS regional_gco2eq';
  averages TEXT := 'AVG(h.busy_kwh) AS energy_kwh_busy_avg, AVG(h.idle_kwh) AS energy_kwh_idle_avg, '
    'AVG(h.busy_gco2eq) AS carbon_gco2eq_busy_avg, AVG(h.idle_gco2eq) AS carbon_gco2eq_idle_avg, '
    'AVG(h.intensity_gco2eq_per_kwh) AS intensity_gco2eq_per_kwh_avg, AVG(h.full_kwh) AS energy_kwh_full_avg, '
    'AVG(h.full_gco2eq) AS carbon_gco2eq_full_avg, AVG(h.embodied_gco2eq) AS carbon_gco2eq_embodied_avg, '
    'AVG(h.regional_gco2eq) AS carbon_gco2eq_regional_avg';
  -- Hours whose numbers are shown (busy_kwh not suppressed) with a host-hour unknown.
  unknown_hours TEXT := 'count(*) FILTER (WHERE h.busy_kwh IS NOT NULL AND (h.full_gco2eq IS NULL OR COALESCE(h.footprint_unknown_hosts, 1) > 0)) AS footprint_unknown_hours, '
    'count(*) FILTER (WHERE h.busy_kwh IS NOT NULL AND (h.regional_gco2eq IS NULL OR COALESCE(h.regional_unknown_hosts, 1) > 0)) AS regional_unknown_hours';
BEGIN
  PERFORM set_config('search_path', 'pg_catalog', TRUE);  -- pg_get_viewdef qualifies all names
  FOREACH v IN ARRAY ARRAY['v_usage_rollup', 'v_usage_daily', 'v_usage_monthly', 'v_usage_yearly',
                           'v_usage_total', 'v_usage_heatmap', 'v_usage_equivalencies']
  LOOP
    body := pg_get_viewdef(format('public.%I', v)::regclass);
    body := regexp_replace(body, 'public\.(v_usage_[a-z]+)', 'reporting.\1', 'g');
    body := replace(body, 'public.equivalency', 'reporting.equivalency');
    EXECUTE format('CREATE VIEW reporting.%I AS %s', v, body);
  END LOOP;
  PERFORM set_config('search_path', saved, TRUE);
  FOR s IN SELECT * FROM (VALUES ('project', 'project_id', 'cloud_project_name'),
                                 ('machine', 'machine_id', 'machine_name'),
                                 ('group', 'group_id', 'group_name')) AS t (scope, id, name)
  LOOP
    EXECUTE format('CREATE VIEW reporting.%I AS SELECT h.scope_id AS %I, h.scope_name AS %I, %s, %s '
                   'FROM reporting.v_usage_hourly h WHERE h.scope = %L GROUP BY h.scope_id, h.scope_name',
                   'v_' || s.scope || '_total', s.id, s.name, sums, unknown_hours, s.scope);
    EXECUTE format('CREATE VIEW reporting.%I AS SELECT h.scope_id AS %I, h.scope_name AS %I, %s, %s '
                   'FROM reporting.v_usage_hourly h WHERE h.scope = %L GROUP BY h.scope_id, h.scope_name',
                   'v_' || s.scope || '_averages', s.id, s.name, averages, unknown_hours, s.scope);
  END LOOP;
  EXECUTE format('CREATE VIEW reporting.v_ada_total AS SELECT %s, %s FROM reporting.v_usage_hourly h WHERE h.scope = %L',
                 sums, unknown_hours, 'ada');
  EXECUTE format('CREATE VIEW reporting.v_ada_averages AS SELECT %s, %s FROM reporting.v_usage_hourly h WHERE h.scope = %L',
                 averages, unknown_hours, 'ada');
END
$$;

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
  regional_intensity_gco2eq_per_kwh DOUBLE PRECISION, footprint_unknown_hours BIGINT,
  footprint_unknown_host_hours BIGINT, regional_unknown_hours BIGINT
)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF aggregate_scope IS NULL OR aggregate_scope NOT IN ('ada', 'project', 'machine', 'group') THEN
    RAISE EXCEPTION 'scope % is not an aggregate: carbon_reporter reads ada, project, machine and group', aggregate_scope
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN QUERY
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
         sum(h.regional_gco2eq) / nullif(sum(h.full_kwh) FILTER (WHERE h.regional_gco2eq IS NOT NULL), 0),
         count(*) FILTER (WHERE h.busy_kwh IS NOT NULL AND (h.full_gco2eq IS NULL OR coalesce(h.footprint_unknown_hosts, 1) > 0)),
         sum(h.footprint_unknown_hosts)::bigint,
         count(*) FILTER (WHERE h.busy_kwh IS NOT NULL AND (h.regional_gco2eq IS NULL OR coalesce(h.regional_unknown_hosts, 1) > 0))
  FROM reporting.v_usage_hourly h
  WHERE h.scope = aggregate_scope AND h.timestamp_utc >= from_ts AND h.timestamp_utc < to_ts
  GROUP BY h.scope, h.scope_id, h.scope_name, h.display_name;
END;
$$;
REVOKE ALL ON FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) TO carbon_reporter;
COMMENT ON FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) IS 'Totals and hourly averages of every entity of an aggregate scope (ada, project, machine, group) over [from_ts, to_ts), over the hours reporting.v_usage_hourly shows.';
GRANT SELECT ON
  reporting.v_usage_rollup, reporting.v_usage_daily, reporting.v_usage_monthly,
  reporting.v_usage_yearly, reporting.v_usage_total, reporting.v_usage_heatmap,
  reporting.v_usage_equivalencies, reporting.v_ada_total, reporting.v_ada_averages,
  reporting.v_project_total, reporting.v_project_averages, reporting.v_machine_total,
  reporting.v_machine_averages, reporting.v_group_total, reporting.v_group_averages
TO carbon_reporter;
DO $$
DECLARE
  v RECORD;
BEGIN
  FOR v IN
    SELECT c.relname, obj_description(source.oid, 'pg_class') AS comment
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'reporting'
    JOIN pg_class source ON source.relname = c.relname
    JOIN pg_namespace sn ON sn.oid = source.relnamespace AND sn.nspname = 'public'
    WHERE c.relkind = 'v' AND obj_description(c.oid, 'pg_class') IS NULL
  LOOP
    EXECUTE format('COMMENT ON VIEW reporting.%I IS %L', v.relname,
                   coalesce(v.comment, '') || ' (aggregate scopes only, small groups merged: see reporting.policy)');
  END LOOP;
END
$$;

INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('footprint_unknown_hosts', 'Host-hours of the row whose full footprint is unknown (no memory size): full_kwh, full_gco2eq and their parts sum the others; NULL: not counted (stored before migration 0010).'),
  ('regional_unknown_hosts', 'Host-hours of the row whose regional_gco2eq is unknown (no memory size, or no regional intensity stored): regional_gco2eq sums the others; NULL: not counted (stored before migration 0010).'),
  ('footprint_unknown_hours', 'Hours with at least one host-hour whose full footprint is unknown: the full-footprint sums leave those host-hours out; compare like with like (docs/analyst-guide.md) [h].'),
  ('footprint_unknown_host_hours', 'Host-hours whose full footprint is unknown, summed over the period [host-h].'),
  ('regional_unknown_hours', 'Hours with at least one host-hour whose regional_gco2eq is unknown [h].')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;
SELECT public.carbon_document_columns();
-- footprint_unknown_hours changed meaning (any host-hour unknown, not the whole hour).
DO $$
DECLARE
  c RECORD;
BEGIN
  FOR c IN
    SELECT n.nspname, cl.relname, g.meaning, a.attname
    FROM pg_catalog.pg_class cl
    JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace AND n.nspname IN ('public', 'reporting')
    JOIN pg_catalog.pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN public.column_glossary g ON g.column_name = a.attname
    WHERE cl.relkind IN ('r', 'p', 'v') AND NOT cl.relispartition
      AND a.attname = 'footprint_unknown_hours'
  LOOP
    EXECUTE format('COMMENT ON COLUMN %I.%I.%I IS %L', c.nspname, c.relname, c.attname, c.meaning);
  END LOOP;
END
$$;

-- ========== gaps the same however a range was run ==========
-- "Reported before and after" now means: the hour lies in a silence of at most 3 hours
-- between two reports under the same project and machine (carbon_pipeline/coverage.py).
-- Such gaps depend on hours that other runs may store later or at the same time, so they are
-- no longer stored: v_host_cpu_gaps computes them from the record when read, beside the
-- stored ones (held by a workspace, whole hours), and the coverage views read it.
DELETE FROM public.host_cpu_gaps WHERE reason = 'not reported, though it reported before and after';
CREATE VIEW public.v_host_cpu_gaps AS
WITH presence AS (
  -- UNION ALL: a repeated row makes a silence of 0 hours, which is no gap (and saves a sort).
  SELECT timestamp_utc, hostname, cloud_project_name, machine_name FROM public.host_cpu_hourly
  UNION ALL
  SELECT timestamp_utc, hostname, cloud_project_name, machine_name FROM public.host_cpu_rejected
),
silences AS (
  SELECT p.hostname, p.cloud_project_name, p.machine_name, p.timestamp_utc AS last_report,
         lead(p.timestamp_utc) OVER (PARTITION BY p.hostname, p.cloud_project_name, p.machine_name
                                     ORDER BY p.timestamp_utc) AS next_report
  FROM presence p
  WHERE p.hostname <> '(no host label)'
),
between_reports AS (
  SELECT DISTINCT ON (h.hour, s.hostname)
         h.hour AS timestamp_utc, s.hostname, s.cloud_project_name, s.machine_name
  FROM silences s
  CROSS JOIN LATERAL generate_series(s.last_report + interval '1 hour',
                                     s.next_report - interval '1 hour', interval '1 hour') AS h (hour)
  WHERE s.next_report - s.last_report BETWEEN interval '2 hours' AND interval '4 hours'
  ORDER BY h.hour, s.hostname, s.cloud_project_name, s.machine_name
)
SELECT g.timestamp_utc, g.hostname, g.cloud_project_name, g.machine_name, g.reason
FROM public.host_cpu_gaps g
UNION ALL
SELECT b.timestamp_utc, b.hostname, b.cloud_project_name, b.machine_name,
       'not reported, though it reported before and after'
FROM between_reports b
WHERE NOT EXISTS (SELECT 1 FROM presence p WHERE p.timestamp_utc = b.timestamp_utc AND p.hostname = b.hostname)
  AND NOT EXISTS (SELECT 1 FROM public.host_cpu_gaps g WHERE g.timestamp_utc = b.timestamp_utc AND g.hostname = b.hostname);
GRANT SELECT ON public.v_host_cpu_gaps TO carbon_analyst;
COMMENT ON VIEW public.v_host_cpu_gaps IS 'Host-hours with no data although the host was up, with the reason: those stored in host_cpu_gaps (held by a workspace; whole hours, hostname *) and those computed from the record when read (a silence of at most 3 hours between two reports under the same project and machine), so the same however a range was run.';
COMMENT ON TABLE public.host_cpu_gaps IS 'Stored gaps: host-hours held by a workspace but not reported, and whole hours without data or with partial answers (hostname *). v_host_cpu_gaps adds the gaps between reports.';

-- ========== every hour accounted for ==========
-- The pipeline's calendar (CARBON_PIPELINE_START, recorded by every run of host_cpu_seconds)
-- and the windows whose runs failed: the coverage views list every hour from the start to
-- the last closed hour, those never materialised as `not run`, those whose last run failed
-- as `failed` with the run.
CREATE TABLE public.pipeline_calendar (
  singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
  start_utc TIMESTAMPTZ NOT NULL
);
CREATE TABLE public.window_failures (
  run_id    TEXT NOT NULL,
  asset     TEXT NOT NULL,
  start_utc TIMESTAMPTZ NOT NULL,
  end_utc   TIMESTAMPTZ NOT NULL,
  failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  error     TEXT NOT NULL,
  PRIMARY KEY (run_id, asset, start_utc),
  CHECK (end_utc > start_utc)
);
CREATE INDEX window_failures_window ON public.window_failures (start_utc, end_utc);

CREATE OR REPLACE VIEW v_coverage_hourly AS
WITH recorded AS (
  SELECT r.timestamp_utc,
         count(DISTINCT r.hostname) FILTER (WHERE r.kind = 'reported') AS hosts_reported,
         count(DISTINCT r.hostname) FILTER (WHERE r.kind = 'rejected') AS hosts_rejected,
         count(*) FILTER (WHERE r.kind = 'missing')                    AS hosts_missing,
         string_agg(DISTINCT r.reason, '; ')                           AS gap_reasons,
         CASE WHEN count(*) FILTER (WHERE r.kind = 'reported') = 0 THEN 'no data'
              WHEN count(*) FILTER (WHERE r.kind <> 'reported') > 0 THEN 'partial'
              ELSE 'complete' END                                      AS coverage
  FROM (
    SELECT timestamp_utc, hostname, 'reported'::text AS kind, NULL::text AS reason, TRUE AS stored
    FROM public.host_cpu_hourly
    UNION ALL
    SELECT timestamp_utc, hostname, 'rejected', 'quarantined: ' || reason, TRUE
    FROM public.host_cpu_rejected
    UNION ALL
    SELECT timestamp_utc, hostname, CASE WHEN hostname = '*' THEN 'hour' ELSE 'missing' END, reason,
           reason <> 'not reported, though it reported before and after'
    FROM public.v_host_cpu_gaps
  ) r
  GROUP BY r.timestamp_utc
  -- An hour a run stored something for (a run whose hour had no host stores that gap): run.
  HAVING bool_or(r.stored)
),
bounds AS (
  SELECT least((SELECT start_utc FROM public.pipeline_calendar), min(timestamp_utc)) AS first_hour,
         greatest(date_trunc('hour', public.reporting_now()) - interval '1 hour', max(timestamp_utc)) AS last_hour
  FROM recorded
),
calendar AS (
  SELECT generate_series(b.first_hour, b.last_hour, interval '1 hour') AS timestamp_utc FROM bounds b
)
SELECT c.timestamp_utc,
       coalesce(r.hosts_reported, 0) AS hosts_reported,
       coalesce(r.hosts_rejected, 0) AS hosts_rejected,
       coalesce(r.hosts_missing, 0)  AS hosts_missing,
       coalesce(r.gap_reasons, f.error) AS gap_reasons,
       coalesce(r.coverage, CASE WHEN f.run_id IS NULL THEN 'not run' ELSE 'failed' END) AS coverage,
       f.run_id AS failed_run_id
FROM calendar c
LEFT JOIN recorded r USING (timestamp_utc)
LEFT JOIN LATERAL (
  SELECT w.run_id, w.asset || ' failed: ' || w.error AS error
  FROM public.window_failures w
  WHERE r.timestamp_utc IS NULL AND w.start_utc <= c.timestamp_utc AND w.end_utc > c.timestamp_utc
  ORDER BY w.failed_at DESC
  LIMIT 1
) f ON TRUE;

CREATE OR REPLACE VIEW v_coverage_daily AS
SELECT (timestamp_utc AT TIME ZONE 'UTC')::date              AS day,
       count(*)                                             AS hours,
       count(*) FILTER (WHERE coverage = 'complete')        AS hours_complete,
       count(*) FILTER (WHERE coverage = 'partial')         AS hours_partial,
       count(*) FILTER (WHERE coverage = 'no data')         AS hours_without_data,
       sum(hosts_reported)                                  AS host_hours_reported,
       sum(hosts_rejected)                                  AS host_hours_rejected,
       sum(hosts_missing)                                   AS host_hours_missing,
       count(*) FILTER (WHERE coverage = 'not run')         AS hours_not_run,
       count(*) FILTER (WHERE coverage = 'failed')          AS hours_failed
FROM v_coverage_hourly
GROUP BY 1;

GRANT SELECT ON public.pipeline_calendar, public.window_failures TO carbon_analyst;
COMMENT ON TABLE public.pipeline_calendar IS 'The hour the pipeline''s calendar starts (CARBON_PIPELINE_START), recorded by every run: the coverage views account for every hour from it.';
COMMENT ON TABLE public.window_failures IS 'Windows whose run failed (after its retries), per asset, with the error: shown as failed in v_coverage_hourly until a run materialises them.';
COMMENT ON VIEW v_coverage_hourly IS 'Every hour of the pipeline''s calendar, from CARBON_PIPELINE_START to the last closed hour: hosts reported, quarantined and missing, and whether the hour''s data is complete, partial, absent (no data), not run, or failed (with the run). Tells "no usage" from "no data".';
COMMENT ON VIEW v_coverage_daily IS 'Per UTC day of the calendar: hours complete, partial, without data, not run and failed, and host-hours reported, quarantined and missing.';
COMMENT ON COLUMN v_coverage_daily.hours IS 'Hours of the day in the pipeline''s calendar (24 for a whole day) [h].';
INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('coverage', 'complete (every host known to be up reported), partial (some missing, quarantined or warned about), no data (run, no host reported), not run (never materialised) or failed (its last run failed: failed_run_id).'),
  ('failed_run_id', 'The Dagster run whose failure left the hour without data (NULL unless coverage is failed).'),
  ('hours_not_run', 'Hours of the day never materialised [h].'),
  ('hours_failed', 'Hours of the day whose last run failed and that hold no data [h].'),
  ('start_utc', 'Start of the window or calendar [UTC].'),
  ('end_utc', 'End of the window, exclusive [UTC].'),
  ('run_id', 'The Dagster run.'),
  ('asset', 'The asset (stage) that failed.'),
  ('failed_at', 'When the failure was recorded.'),
  ('error', 'The error, as the run reported it (secrets masked).')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;
DO $$
DECLARE
  c RECORD;
BEGIN
  FOR c IN
    SELECT n.nspname, cl.relname, g.meaning, a.attname
    FROM pg_catalog.pg_class cl
    JOIN pg_catalog.pg_namespace n ON n.oid = cl.relnamespace AND n.nspname IN ('public', 'reporting')
    JOIN pg_catalog.pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN public.column_glossary g ON g.column_name = a.attname
    WHERE cl.relkind IN ('r', 'p', 'v') AND NOT cl.relispartition AND a.attname = 'coverage'
  LOOP
    EXECUTE format('COMMENT ON COLUMN %I.%I.%I IS %L', c.nspname, c.relname, c.attname, c.meaning);
  END LOOP;
END
$$;
SELECT public.carbon_document_columns();
