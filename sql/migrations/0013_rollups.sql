-- 0013: rollups. The analysts' daily, monthly, yearly and lifetime views read usage_rollup,
-- daily and monthly sums per scope entity that the pipeline maintains after each window's
-- facts (carbon_refresh_rollups), instead of every fact row: their cost grows with entities x
-- days or months, not with every hour stored. The views keep their names, columns and
-- meaning: the rollup holds sums and counts only (every average and ratio is computed from
-- them when read), so sums of sums are the sums.

CREATE TABLE public.usage_rollup (
  grain                         TEXT   NOT NULL CHECK (grain IN ('day', 'month')),
  period_start                  DATE   NOT NULL,
  scope                         TEXT   NOT NULL CHECK (scope IN ('ada', 'project', 'machine', 'group', 'user')),
  entity_id                     BIGINT NOT NULL,
  hours                         BIGINT NOT NULL,
  estimated_hours               BIGINT NOT NULL,
  busy_cpu_seconds_total        DOUBLE PRECISION,
  idle_cpu_seconds_total        DOUBLE PRECISION,
  busy_kwh                      DOUBLE PRECISION,
  idle_kwh                      DOUBLE PRECISION,
  total_kwh                     DOUBLE PRECISION,
  busy_gco2eq                   DOUBLE PRECISION,
  idle_gco2eq                   DOUBLE PRECISION,
  total_gco2eq                  DOUBLE PRECISION,
  intensity_sum                 DOUBLE PRECISION,
  intensity_hours               BIGINT NOT NULL,
  memory_kwh                    DOUBLE PRECISION,
  overhead_kwh                  DOUBLE PRECISION,
  full_kwh                      DOUBLE PRECISION,
  full_kwh_hours                BIGINT NOT NULL,
  memory_gco2eq                 DOUBLE PRECISION,
  overhead_gco2eq               DOUBLE PRECISION,
  embodied_gco2eq               DOUBLE PRECISION,
  embodied_gco2eq_hours         BIGINT NOT NULL,
  full_gco2eq                   DOUBLE PRECISION,
  full_gco2eq_hours             BIGINT NOT NULL,
  regional_gco2eq               DOUBLE PRECISION,
  regional_gco2eq_hours         BIGINT NOT NULL,
  regional_full_kwh             DOUBLE PRECISION,
  footprint_unknown_hours       BIGINT NOT NULL,
  footprint_unknown_host_hours  BIGINT,
  regional_unknown_hours        BIGINT NOT NULL,
  PRIMARY KEY (grain, scope, entity_id, period_start)
);
CREATE INDEX usage_rollup_period ON public.usage_rollup (grain, period_start);
COMMENT ON TABLE public.usage_rollup IS 'Daily and monthly sums of every scope entity''s hourly facts (fact_usage_ada, _project, _machine, _group, _user), maintained by the pipeline after each window''s facts for exactly the days and months it touched: what v_usage_daily, _monthly, _yearly, _total, the v_*_total and v_*_averages views, the heatmap and usage_between read instead of every hour. Sums and counts only; averages and ratios are computed from them when read.';
INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('grain', 'The period a rollup row sums: day or month (UTC).'),
  ('entity_id', 'The scope''s dimension id (project_id, machine_id, group_id, user_id); 0 for ada.'),
  ('intensity_sum', 'The sum of the hours'' intensity_gco2eq_per_kwh (over the intensity_hours that have one): their mean is intensity_sum / intensity_hours.'),
  ('intensity_hours', 'How many of the hours have an intensity.'),
  ('full_kwh_hours', 'How many of the hours have a full_kwh (their mean divides by this).'),
  ('embodied_gco2eq_hours', 'How many of the hours have an embodied_gco2eq.'),
  ('full_gco2eq_hours', 'How many of the hours have a full_gco2eq.'),
  ('regional_gco2eq_hours', 'How many of the hours have a regional_gco2eq.'),
  ('regional_full_kwh', 'full_kwh of the hours whose regional_gco2eq is known: the denominator of the regional intensity.')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;
SELECT public.carbon_document_columns();
GRANT SELECT ON public.usage_rollup TO carbon_analyst;

-- ========== maintenance ==========
-- The days touching [from_ts, to_ts) from the facts, then the months of those days from the
-- days. Two windows sharing a day (or a month) take turns on that day only: transaction
-- advisory locks per day, then per month, each in time order (no deadlock), held for the
-- milliseconds the day's rows take. A later window's rollup reads the facts committed
-- before it started, so whichever of two windows sharing a day rolls up last sees both.
CREATE FUNCTION public.carbon_refresh_rollups(from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS BIGINT LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  day_rows    BIGINT;
  month_rows  BIGINT;
  first_day   DATE := (from_ts AT TIME ZONE 'UTC')::date;
  end_day     DATE := ((to_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date + 1;
  first_month DATE := date_trunc('month', first_day)::date;
  end_month   DATE := (date_trunc('month', end_day - 1) + interval '1 month')::date;
BEGIN
  IF to_ts <= from_ts THEN
    RETURN 0;
  END IF;
  PERFORM pg_advisory_xact_lock(13001, (d - DATE '2000-01-01'))
  FROM generate_series(first_day, end_day - 1, interval '1 day') AS g (t), LATERAL (SELECT t::date AS d) x
  ORDER BY d;
  PERFORM pg_advisory_xact_lock(13002, (m - DATE '2000-01-01'))
  FROM generate_series(first_month, end_month - 1, interval '1 month') AS g (t), LATERAL (SELECT t::date AS m) x
  ORDER BY m;

  DELETE FROM public.usage_rollup
  WHERE grain = 'day' AND period_start >= first_day AND period_start < end_day;
  INSERT INTO public.usage_rollup
  SELECT 'day', (h.timestamp_utc AT TIME ZONE 'UTC')::date, h.scope, coalesce(h.scope_id, 0),
         count(*),
         count(*) FILTER (WHERE h.intensity_source <> 'actual'),
         sum(h.busy_cpu_seconds_total), sum(h.idle_cpu_seconds_total),
         sum(h.busy_kwh), sum(h.idle_kwh), sum(h.busy_kwh + h.idle_kwh),
         sum(h.busy_gco2eq), sum(h.idle_gco2eq), sum(h.busy_gco2eq + h.idle_gco2eq),
         sum(h.intensity_gco2eq_per_kwh), count(h.intensity_gco2eq_per_kwh),
         sum(h.memory_kwh), sum(h.overhead_kwh), sum(h.full_kwh), count(h.full_kwh),
         sum(h.memory_gco2eq), sum(h.overhead_gco2eq),
         sum(h.embodied_gco2eq), count(h.embodied_gco2eq),
         sum(h.full_gco2eq), count(h.full_gco2eq),
         sum(h.regional_gco2eq), count(h.regional_gco2eq),
         sum(h.full_kwh) FILTER (WHERE h.regional_gco2eq IS NOT NULL),
         count(*) FILTER (WHERE h.full_gco2eq IS NULL OR coalesce(h.footprint_unknown_hosts, 1) > 0),
         sum(h.footprint_unknown_hosts),
         count(*) FILTER (WHERE h.regional_gco2eq IS NULL OR coalesce(h.regional_unknown_hosts, 1) > 0)
  FROM public.v_usage_hourly h
  WHERE h.timestamp_utc >= first_day::timestamp AT TIME ZONE 'UTC'
    AND h.timestamp_utc < end_day::timestamp AT TIME ZONE 'UTC'
  GROUP BY 2, 3, 4;
  GET DIAGNOSTICS day_rows = ROW_COUNT;

  DELETE FROM public.usage_rollup
  WHERE grain = 'month' AND period_start >= first_month AND period_start < end_month;
  INSERT INTO public.usage_rollup
  SELECT 'month', date_trunc('month', r.period_start)::date, r.scope, r.entity_id,
         sum(r.hours), sum(r.estimated_hours),
         sum(r.busy_cpu_seconds_total), sum(r.idle_cpu_seconds_total),
         sum(r.busy_kwh), sum(r.idle_kwh), sum(r.total_kwh),
         sum(r.busy_gco2eq), sum(r.idle_gco2eq), sum(r.total_gco2eq),
         sum(r.intensity_sum), sum(r.intensity_hours),
         sum(r.memory_kwh), sum(r.overhead_kwh), sum(r.full_kwh), sum(r.full_kwh_hours),
         sum(r.memory_gco2eq), sum(r.overhead_gco2eq),
         sum(r.embodied_gco2eq), sum(r.embodied_gco2eq_hours),
         sum(r.full_gco2eq), sum(r.full_gco2eq_hours),
         sum(r.regional_gco2eq), sum(r.regional_gco2eq_hours), sum(r.regional_full_kwh),
         sum(r.footprint_unknown_hours), sum(r.footprint_unknown_host_hours),
         sum(r.regional_unknown_hours)
  FROM public.usage_rollup r
  WHERE r.grain = 'day' AND r.period_start >= first_month AND r.period_start < end_month
  GROUP BY 2, 3, 4;
  GET DIAGNOSTICS month_rows = ROW_COUNT;
  RETURN day_rows + month_rows;
END;
$$;
REVOKE EXECUTE ON FUNCTION public.carbon_refresh_rollups(TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;
COMMENT ON FUNCTION public.carbon_refresh_rollups(TIMESTAMPTZ, TIMESTAMPTZ) IS 'Recomputes (and returns how many rows it wrote) usage_rollup for every day touching [from_ts, to_ts) from the facts, and for those days'' months from the days. The pipeline calls it after each window''s facts; after a change made outside it, call it over the range changed.';

-- ========== the entities, named as the facts' views name them ==========
CREATE VIEW public.v_scope_entity AS
SELECT 'ada'::text AS scope, 0::bigint AS entity_id, NULL::bigint AS scope_id,
       'ada'::text AS scope_name, 'Ada (whole platform)'::text AS display_name
UNION ALL
SELECT 'project', project_id, project_id, cloud_project_name, cloud_project_name FROM public.dim_project
UNION ALL
SELECT 'machine', machine_id, machine_id, machine_name, machine_name FROM public.dim_machine
UNION ALL
SELECT 'group', group_id, group_id, group_name, group_name FROM public.dim_group
UNION ALL
SELECT 'user', user_id, user_id, ext_user_id, coalesce(display_name, ext_user_id) FROM public.dim_user;
COMMENT ON VIEW public.v_scope_entity IS 'Every scope entity (ada, each project, machine type, group and user) with the id and names the analysts'' views show.';
GRANT SELECT ON public.v_scope_entity TO carbon_analyst;

-- ========== the rollups' views, from usage_rollup ==========
-- Each grain is its own branch, so a query of one grain (v_usage_daily is grain = 'day')
-- reads only its rows.
CREATE OR REPLACE VIEW public.v_usage_rollup AS
WITH periods AS (
  SELECT 'day'::text AS grain, r.period_start, r.scope, r.entity_id, r.hours, r.estimated_hours,
         r.busy_cpu_seconds_total, r.idle_cpu_seconds_total, r.busy_kwh, r.idle_kwh, r.total_kwh,
         r.busy_gco2eq, r.idle_gco2eq, r.total_gco2eq, r.memory_kwh, r.overhead_kwh, r.full_kwh,
         r.memory_gco2eq, r.overhead_gco2eq, r.embodied_gco2eq, r.full_gco2eq, r.regional_gco2eq,
         r.regional_full_kwh, r.footprint_unknown_hours, r.footprint_unknown_host_hours,
         r.regional_unknown_hours
  FROM public.usage_rollup r WHERE r.grain = 'day'
  UNION ALL
  SELECT 'month', r.period_start, r.scope, r.entity_id, r.hours, r.estimated_hours,
         r.busy_cpu_seconds_total, r.idle_cpu_seconds_total, r.busy_kwh, r.idle_kwh, r.total_kwh,
         r.busy_gco2eq, r.idle_gco2eq, r.total_gco2eq, r.memory_kwh, r.overhead_kwh, r.full_kwh,
         r.memory_gco2eq, r.overhead_gco2eq, r.embodied_gco2eq, r.full_gco2eq, r.regional_gco2eq,
         r.regional_full_kwh, r.footprint_unknown_hours, r.footprint_unknown_host_hours,
         r.regional_unknown_hours
  FROM public.usage_rollup r WHERE r.grain = 'month'
  UNION ALL
  SELECT g.grain, CASE WHEN g.grain = 'year' THEN date_trunc('year', r.period_start)::date END,
         r.scope, r.entity_id, sum(r.hours)::bigint, sum(r.estimated_hours)::bigint,
         sum(r.busy_cpu_seconds_total), sum(r.idle_cpu_seconds_total), sum(r.busy_kwh),
         sum(r.idle_kwh), sum(r.total_kwh), sum(r.busy_gco2eq), sum(r.idle_gco2eq),
         sum(r.total_gco2eq), sum(r.memory_kwh), sum(r.overhead_kwh), sum(r.full_kwh),
         sum(r.memory_gco2eq), sum(r.overhead_gco2eq), sum(r.embodied_gco2eq), sum(r.full_gco2eq),
         sum(r.regional_gco2eq), sum(r.regional_full_kwh), sum(r.footprint_unknown_hours)::bigint,
         sum(r.footprint_unknown_host_hours)::bigint, sum(r.regional_unknown_hours)::bigint
  FROM public.usage_rollup r
  CROSS JOIN (VALUES ('year'), ('lifetime')) AS g (grain)
  WHERE r.grain = 'month'
  GROUP BY g.grain, 2, r.scope, r.entity_id
)
SELECT p.grain, e.scope, e.scope_id, e.scope_name, e.display_name, p.period_start,
       p.hours, p.estimated_hours, p.busy_cpu_seconds_total, p.idle_cpu_seconds_total,
       p.busy_kwh, p.idle_kwh, p.total_kwh, p.busy_gco2eq, p.idle_gco2eq, p.total_gco2eq,
       p.total_kwh / p.hours AS kwh_per_hour_avg,
       p.total_gco2eq / p.hours AS gco2eq_per_hour_avg,
       p.total_gco2eq / nullif(p.total_kwh, 0) AS intensity_gco2eq_per_kwh,
       p.busy_kwh / nullif(p.total_kwh, 0) AS busy_share_kwh,
       p.idle_cpu_seconds_total
         / nullif(p.busy_cpu_seconds_total + p.idle_cpu_seconds_total, 0) AS idle_share_cpu,
       p.memory_kwh, p.overhead_kwh, p.full_kwh, p.memory_gco2eq, p.overhead_gco2eq,
       p.embodied_gco2eq, p.full_gco2eq, p.regional_gco2eq,
       p.regional_gco2eq / nullif(p.regional_full_kwh, 0) AS regional_intensity_gco2eq_per_kwh,
       p.footprint_unknown_hours, p.footprint_unknown_host_hours, p.regional_unknown_hours
FROM periods p
JOIN public.v_scope_entity e ON e.scope = p.scope AND e.entity_id = p.entity_id;

-- The seed's per-scope lifetime totals and hourly averages (and ada's), from the monthly rows.
DO $$
DECLARE
  s RECORD;
  totals TEXT := 'sum(r.busy_cpu_seconds_total) AS busy_cpu_seconds_total, '
    'sum(r.idle_cpu_seconds_total) AS idle_cpu_seconds_total, sum(r.busy_kwh) AS busy_kwh, '
    'sum(r.idle_kwh) AS idle_kwh, sum(r.busy_gco2eq) AS busy_gco2eq, '
    'sum(r.idle_gco2eq) AS idle_gco2eq, sum(r.memory_kwh) AS memory_kwh, '
    'sum(r.overhead_kwh) AS overhead_kwh, sum(r.full_kwh) AS full_kwh, '
    'sum(r.memory_gco2eq) AS memory_gco2eq, sum(r.overhead_gco2eq) AS overhead_gco2eq, '
    'sum(r.embodied_gco2eq) AS embodied_gco2eq, sum(r.full_gco2eq) AS full_gco2eq, '
    'sum(r.regional_gco2eq) AS regional_gco2eq';
  averages TEXT := 'sum(r.busy_kwh) / sum(r.hours) AS energy_kwh_busy_avg, '
    'sum(r.idle_kwh) / sum(r.hours) AS energy_kwh_idle_avg, '
    'sum(r.busy_gco2eq) / sum(r.hours) AS carbon_gco2eq_busy_avg, '
    'sum(r.idle_gco2eq) / sum(r.hours) AS carbon_gco2eq_idle_avg, '
    'sum(r.intensity_sum) / nullif(sum(r.intensity_hours), 0) AS intensity_gco2eq_per_kwh_avg, '
    'sum(r.full_kwh) / nullif(sum(r.full_kwh_hours), 0) AS energy_kwh_full_avg, '
    'sum(r.full_gco2eq) / nullif(sum(r.full_gco2eq_hours), 0) AS carbon_gco2eq_full_avg, '
    'sum(r.embodied_gco2eq) / nullif(sum(r.embodied_gco2eq_hours), 0) AS carbon_gco2eq_embodied_avg, '
    'sum(r.regional_gco2eq) / nullif(sum(r.regional_gco2eq_hours), 0) AS carbon_gco2eq_regional_avg';
  unknown TEXT := 'coalesce(sum(r.footprint_unknown_hours), 0)::bigint AS footprint_unknown_hours, '
    'coalesce(sum(r.regional_unknown_hours), 0)::bigint AS regional_unknown_hours';
BEGIN
  FOR s IN SELECT * FROM (VALUES
      ('project', 'dim_project', 'project_id', 'd.project_id, d.cloud_project_name'),
      ('machine', 'dim_machine', 'machine_id', 'd.machine_id, d.machine_name'),
      ('group', 'dim_group', 'group_id', 'd.group_id, d.group_name'),
      ('user', 'dim_user', 'user_id', 'd.user_id, coalesce(d.display_name, d.ext_user_id)')
    ) AS v (scope, dim, id, names)
  LOOP
    EXECUTE format('CREATE OR REPLACE VIEW public.%I AS SELECT %s%s, %s, %s FROM public.%I d '
                   'JOIN public.usage_rollup r ON r.grain = ''month'' AND r.scope = %L AND r.entity_id = d.%I '
                   'GROUP BY %s',
                   'v_' || s.scope || '_total', s.names,
                   CASE WHEN s.scope = 'user' THEN ' AS user_name' ELSE '' END,
                   totals, unknown, s.dim, s.scope, s.id, s.names);
    EXECUTE format('CREATE OR REPLACE VIEW public.%I AS SELECT %s%s, %s, %s FROM public.%I d '
                   'JOIN public.usage_rollup r ON r.grain = ''month'' AND r.scope = %L AND r.entity_id = d.%I '
                   'GROUP BY %s',
                   'v_' || s.scope || '_averages', s.names,
                   CASE WHEN s.scope = 'user' THEN ' AS user_name' ELSE '' END,
                   averages, unknown, s.dim, s.scope, s.id, s.names);
  END LOOP;
  EXECUTE format('CREATE OR REPLACE VIEW public.v_ada_total AS SELECT %s, %s FROM public.usage_rollup r '
                 'WHERE r.grain = ''month'' AND r.scope = ''ada''', totals, unknown);
  EXECUTE format('CREATE OR REPLACE VIEW public.v_ada_averages AS SELECT %s, %s FROM public.usage_rollup r '
                 'WHERE r.grain = ''month'' AND r.scope = ''ada''', averages, unknown);
END
$$;

-- The heatmap's entities: those with a day in its year (the daily rows, not every hour).
CREATE OR REPLACE VIEW public.v_usage_heatmap AS
WITH days AS (
  SELECT generate_series((reporting_now() AT TIME ZONE 'UTC')::date - 364,
                         (reporting_now() AT TIME ZONE 'UTC')::date, interval '1 day')::date AS day
),
entities AS (
  SELECT DISTINCT u.scope, u.scope_id, u.scope_name, u.display_name
  FROM public.v_usage_daily u
  WHERE u.day >= (reporting_now() AT TIME ZONE 'UTC')::date - 364
    AND u.day <= (reporting_now() AT TIME ZONE 'UTC')::date
)
SELECT e.scope, e.scope_id, e.scope_name, e.display_name, d.day,
       coalesce(u.hours, 0)        AS hours,
       coalesce(u.total_kwh, 0)    AS total_kwh,
       coalesce(u.total_gco2eq, 0) AS total_gco2eq,
       CASE WHEN u.hours IS NULL THEN 0 ELSE u.full_gco2eq END AS full_gco2eq,
       coalesce(u.footprint_unknown_hours, 0) AS footprint_unknown_hours
FROM entities e
CROSS JOIN days d
LEFT JOIN public.v_usage_daily u
  ON u.scope = e.scope AND u.scope_name = e.scope_name AND u.day = d.day;

-- usage_between: the whole UTC days inside [from_ts, to_ts) from the daily rows, the hours
-- before the first and after the last whole day from the facts. With whole_from the first
-- midnight at or after from_ts and whole_to the last at or before to_ts: whole days are
-- [whole_from, whole_to), the hours [from_ts, min(to_ts, whole_from)) and
-- [max(from_ts, whole_to, whole_from), to_ts); simple ranges, so that each reads only its
-- partitions and index range.
CREATE OR REPLACE FUNCTION public.usage_between(scope TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
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
  WITH parts AS (
    SELECT r.scope, r.entity_id, r.hours, r.estimated_hours, r.busy_cpu_seconds_total,
           r.idle_cpu_seconds_total, r.busy_kwh, r.idle_kwh, r.total_kwh, r.busy_gco2eq,
           r.idle_gco2eq, r.total_gco2eq, r.memory_kwh, r.overhead_kwh, r.full_kwh,
           r.memory_gco2eq, r.overhead_gco2eq, r.embodied_gco2eq, r.full_gco2eq,
           r.regional_gco2eq, r.regional_full_kwh, r.footprint_unknown_hours,
           r.footprint_unknown_host_hours, r.regional_unknown_hours
    FROM public.usage_rollup r
    WHERE r.grain = 'day' AND r.scope = $1
      AND r.period_start >= ((date_trunc('day', $2 - interval '1 microsecond', 'UTC') + interval '24 hours') AT TIME ZONE 'UTC')::date
      AND r.period_start < (date_trunc('day', $3, 'UTC') AT TIME ZONE 'UTC')::date
    UNION ALL
    SELECT h.scope, coalesce(h.scope_id, 0), count(*),
           count(*) FILTER (WHERE h.intensity_source <> 'actual'),
           sum(h.busy_cpu_seconds_total), sum(h.idle_cpu_seconds_total),
           sum(h.busy_kwh), sum(h.idle_kwh), sum(h.busy_kwh + h.idle_kwh),
           sum(h.busy_gco2eq), sum(h.idle_gco2eq), sum(h.busy_gco2eq + h.idle_gco2eq),
           sum(h.memory_kwh), sum(h.overhead_kwh), sum(h.full_kwh), sum(h.memory_gco2eq),
           sum(h.overhead_gco2eq), sum(h.embodied_gco2eq), sum(h.full_gco2eq), sum(h.regional_gco2eq),
           sum(h.full_kwh) FILTER (WHERE h.regional_gco2eq IS NOT NULL),
           count(*) FILTER (WHERE h.full_gco2eq IS NULL OR coalesce(h.footprint_unknown_hosts, 1) > 0),
           sum(h.footprint_unknown_hosts),
           count(*) FILTER (WHERE h.regional_gco2eq IS NULL OR coalesce(h.regional_unknown_hosts, 1) > 0)
    FROM (
      SELECT * FROM public.v_usage_hourly h
      WHERE h.scope = $1 AND h.timestamp_utc >= $2
        AND h.timestamp_utc < least($3, date_trunc('day', $2 - interval '1 microsecond', 'UTC') + interval '24 hours')
      UNION ALL
      SELECT * FROM public.v_usage_hourly h
      WHERE h.scope = $1 AND h.timestamp_utc < $3
        AND h.timestamp_utc >= greatest($2, date_trunc('day', $3, 'UTC'),
                                        date_trunc('day', $2 - interval '1 microsecond', 'UTC') + interval '24 hours')
    ) h
    GROUP BY h.scope, coalesce(h.scope_id, 0)
  ),
  summed AS (
    SELECT p.scope, p.entity_id, sum(p.hours)::bigint AS hours,
           sum(p.estimated_hours)::bigint AS estimated_hours,
           sum(p.busy_cpu_seconds_total) AS busy_cpu_seconds_total,
           sum(p.idle_cpu_seconds_total) AS idle_cpu_seconds_total, sum(p.busy_kwh) AS busy_kwh,
           sum(p.idle_kwh) AS idle_kwh, sum(p.total_kwh) AS total_kwh,
           sum(p.busy_gco2eq) AS busy_gco2eq, sum(p.idle_gco2eq) AS idle_gco2eq,
           sum(p.total_gco2eq) AS total_gco2eq, sum(p.memory_kwh) AS memory_kwh,
           sum(p.overhead_kwh) AS overhead_kwh, sum(p.full_kwh) AS full_kwh,
           sum(p.memory_gco2eq) AS memory_gco2eq, sum(p.overhead_gco2eq) AS overhead_gco2eq,
           sum(p.embodied_gco2eq) AS embodied_gco2eq, sum(p.full_gco2eq) AS full_gco2eq,
           sum(p.regional_gco2eq) AS regional_gco2eq, sum(p.regional_full_kwh) AS regional_full_kwh,
           sum(p.footprint_unknown_hours)::bigint AS footprint_unknown_hours,
           sum(p.footprint_unknown_host_hours)::bigint AS footprint_unknown_host_hours,
           sum(p.regional_unknown_hours)::bigint AS regional_unknown_hours
    FROM parts p
    GROUP BY p.scope, p.entity_id
  )
  SELECT e.scope, e.scope_id, e.scope_name, e.display_name, s.hours, s.estimated_hours,
         s.busy_cpu_seconds_total, s.idle_cpu_seconds_total, s.busy_kwh, s.idle_kwh, s.total_kwh,
         s.busy_gco2eq, s.idle_gco2eq, s.total_gco2eq,
         s.total_kwh / s.hours, s.total_gco2eq / s.hours,
         s.total_gco2eq / nullif(s.total_kwh, 0),
         s.busy_kwh / nullif(s.total_kwh, 0),
         s.idle_cpu_seconds_total / nullif(s.busy_cpu_seconds_total + s.idle_cpu_seconds_total, 0),
         s.memory_kwh, s.overhead_kwh, s.full_kwh, s.memory_gco2eq, s.overhead_gco2eq,
         s.embodied_gco2eq, s.full_gco2eq, s.regional_gco2eq,
         s.regional_gco2eq / nullif(s.regional_full_kwh, 0),
         s.footprint_unknown_hours, s.footprint_unknown_host_hours, s.regional_unknown_hours
  FROM summed s
  JOIN public.v_scope_entity e ON e.scope = s.scope AND e.entity_id = s.entity_id
$$;

-- History stored before this migration gets its rollups now.
SELECT public.carbon_refresh_rollups(min(timestamp_utc), max(timestamp_utc) + interval '1 hour')
FROM public.fact_usage_ada
HAVING count(*) > 0;

-- The new view's columns, documented from the glossary.
SELECT public.carbon_document_columns();
