-- 0014: yearly and lifetime rollups. 0013's lifetime views summed every entity's monthly rows,
-- so they grew with every month stored (five years, five times the rows). usage_rollup now also
-- keeps each entity's years (from its months) and its lifetime (from its years), refreshed by
-- carbon_refresh_rollups after the days and months: the lifetime views read one row per
-- entity, whatever the history's length, and v_usage_rollup reads each grain's stored rows.

ALTER TABLE public.usage_rollup DROP CONSTRAINT usage_rollup_grain_check;
ALTER TABLE public.usage_rollup ADD CONSTRAINT usage_rollup_grain_check
  CHECK (grain IN ('day', 'month', 'year', 'lifetime'));
COMMENT ON TABLE public.usage_rollup IS 'Daily, monthly, yearly and lifetime sums of every scope entity''s hourly facts (fact_usage_ada, _project, _machine, _group, _user), maintained by the pipeline after each window''s facts for exactly the days, months and years it touched, and every entity''s lifetime: what v_usage_daily, _monthly, _yearly, _total, the v_*_total and v_*_averages views, the heatmap and usage_between read instead of every hour. Sums and counts only; averages and ratios are computed from them when read.';
INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('grain', 'The period a rollup row sums: day, month or year (UTC, from period_start), or lifetime (every hour stored; period_start is the first year with hours).')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;

-- ========== maintenance ==========
-- As 0013 (days from the facts, their months from the days), then the years of those months
-- from the months, then every entity's lifetime from its years. The advisory locks are taken
-- in one order (days, months, years, lifetime; each in time order), so windows sharing a
-- period take turns on it for milliseconds and never deadlock; each statement reads what was
-- committed when it started, so whichever window refreshes a shared period last sees both.
CREATE OR REPLACE FUNCTION public.carbon_refresh_rollups(from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS BIGINT LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  written     BIGINT;
  total       BIGINT := 0;
  first_day   DATE := (from_ts AT TIME ZONE 'UTC')::date;
  end_day     DATE := ((to_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date + 1;
  first_month DATE := date_trunc('month', first_day)::date;
  end_month   DATE := (date_trunc('month', end_day - 1) + interval '1 month')::date;
  first_year  DATE := date_trunc('year', first_day)::date;
  end_year    DATE := (date_trunc('year', end_day - 1) + interval '1 year')::date;
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
  PERFORM pg_advisory_xact_lock(13003, (y - DATE '2000-01-01'))
  FROM generate_series(first_year, end_year - 1, interval '1 year') AS g (t), LATERAL (SELECT t::date AS y) x
  ORDER BY y;
  PERFORM pg_advisory_xact_lock(13004, 0);

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
  GET DIAGNOSTICS written = ROW_COUNT;
  total := total + written;

  total := total + public.carbon_rollup_from('month', 'day', first_month, end_month);
  total := total + public.carbon_rollup_from('year', 'month', first_year, end_year);
  total := total + public.carbon_rollup_from('lifetime', 'year', NULL, NULL);
  RETURN total;
END;
$$;

-- A coarser grain's rows from a finer one's: every period of `grain` starting in [first, end)
-- replaced by the sums of its `finer` rows; for lifetime, every entity's row (dated by its
-- first year). Called by carbon_refresh_rollups, which holds the periods' locks. Dynamic SQL:
-- each call is planned for its own grain and range (the index on grain, period_start).
CREATE FUNCTION public.carbon_rollup_from(grain TEXT, finer TEXT, first DATE, "end" DATE)
RETURNS BIGINT LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  written BIGINT;
  within  TEXT := CASE WHEN grain = 'lifetime' THEN ''
                       ELSE format(' AND r.period_start >= %L AND r.period_start < %L', first, "end") END;
  period  TEXT := CASE WHEN grain = 'lifetime' THEN 'min(r.period_start)'
                       ELSE format('date_trunc(%L, r.period_start)::date', grain) END;
BEGIN
  EXECUTE format('DELETE FROM public.usage_rollup r WHERE r.grain = %L%s', grain, within);
  EXECUTE format($sql$
    INSERT INTO public.usage_rollup
    SELECT %L, %s, r.scope, r.entity_id,
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
    WHERE r.grain = %L%s
    GROUP BY %s r.scope, r.entity_id$sql$,
    grain, period, finer, within, CASE WHEN grain = 'lifetime' THEN '' ELSE '2, ' END);
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END;
$$;
REVOKE EXECUTE ON FUNCTION public.carbon_rollup_from(TEXT, TEXT, DATE, DATE) FROM PUBLIC;
COMMENT ON FUNCTION public.carbon_rollup_from(TEXT, TEXT, DATE, DATE) IS 'Part of carbon_refresh_rollups: replaces usage_rollup''s rows of a grain (month, year) starting in [first, end), or every lifetime row, by the sums of the finer grain''s rows.';
COMMENT ON FUNCTION public.carbon_refresh_rollups(TIMESTAMPTZ, TIMESTAMPTZ) IS 'Recomputes (and returns how many rows it wrote) usage_rollup for every day touching [from_ts, to_ts) from the facts, those days'' months from the days, their years from the months, and every entity''s lifetime from its years. The pipeline calls it after each window''s facts; after a change made outside it, call it over the range changed.';

-- ========== the views read the stored grains ==========
-- One scan of usage_rollup: a query of one grain (v_usage_daily is grain = 'day') reads only
-- that grain's rows (the index on grain, period_start).
CREATE OR REPLACE VIEW public.v_usage_rollup AS
SELECT p.grain, e.scope, e.scope_id, e.scope_name, e.display_name,
       CASE WHEN p.grain <> 'lifetime' THEN p.period_start END AS period_start,
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
FROM public.usage_rollup p
JOIN public.v_scope_entity e ON e.scope = p.scope AND e.entity_id = p.entity_id;

-- The seed's lifetime totals and averages: 0013's definitions, reading each entity's lifetime
-- row instead of summing its months (the same sums; one row each).
DO $$
DECLARE
  v TEXT;
  body TEXT;
  saved TEXT := current_setting('search_path');
BEGIN
  PERFORM set_config('search_path', 'pg_catalog', TRUE);  -- pg_get_viewdef qualifies all names
  FOREACH v IN ARRAY ARRAY['v_ada_total', 'v_ada_averages', 'v_project_total', 'v_project_averages',
                           'v_machine_total', 'v_machine_averages', 'v_group_total',
                           'v_group_averages', 'v_user_total', 'v_user_averages']
  LOOP
    body := pg_get_viewdef(format('public.%I', v)::regclass);
    IF body NOT LIKE '%r.grain = ''month''::text%' THEN
      RAISE EXCEPTION 'view % does not read the monthly rows as 0013 made it', v;
    END IF;
    body := replace(body, 'r.grain = ''month''::text', 'r.grain = ''lifetime''::text');
    EXECUTE format('CREATE OR REPLACE VIEW public.%I AS %s', v, body);
  END LOOP;
  PERFORM set_config('search_path', saved, TRUE);
END
$$;

-- The years and lifetimes of the history stored before this migration, from its months.
SELECT public.carbon_rollup_from('year', 'month', DATE '-infinity', DATE 'infinity');
SELECT public.carbon_rollup_from('lifetime', 'year', NULL, NULL);
