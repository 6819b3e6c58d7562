-- 0014: rollups, second pass. (1) Yearly and lifetime rows: 0013's lifetime views summed every
-- entity's monthly rows, so they grew with every month stored; usage_rollup now also keeps each
-- entity's years (from its months) and its lifetime (from its years), and the lifetime views
-- read one row per entity, whatever the history's length. (2) carbon_reporter's views read
-- rollups too: reporting_rollup holds the same sums of reporting.v_usage_hourly (small groups
-- merged per hour under reporting_policy), rebuilt whole when the policy changes.

-- (3) The sums over the hours whose every host-hour has a known full footprint, so that the
-- guide's like-with-like comparison of the full and the CPU-only footprint reads rollups too.
ALTER TABLE public.usage_rollup
  ADD COLUMN known_hours         BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN known_cpu_gco2eq     DOUBLE PRECISION,
  ADD COLUMN known_memory_gco2eq  DOUBLE PRECISION,
  ADD COLUMN known_overhead_gco2eq DOUBLE PRECISION,
  ADD COLUMN known_embodied_gco2eq DOUBLE PRECISION,
  ADD COLUMN known_full_gco2eq    DOUBLE PRECISION;
ALTER TABLE public.usage_rollup ALTER COLUMN known_hours DROP DEFAULT;
ALTER TABLE public.usage_rollup DROP CONSTRAINT usage_rollup_grain_check;
ALTER TABLE public.usage_rollup ADD CONSTRAINT usage_rollup_grain_check
  CHECK (grain IN ('day', 'month', 'year', 'lifetime'));
COMMENT ON TABLE public.usage_rollup IS 'Daily, monthly, yearly and lifetime sums of every scope entity''s hourly facts (fact_usage_ada, _project, _machine, _group, _user), maintained by the pipeline after each window''s facts for exactly the days, months and years it touched, and every entity''s lifetime: what v_usage_daily, _monthly, _yearly, _total, the v_*_total and v_*_averages views, the heatmap and usage_between read instead of every hour. Sums and counts only; averages and ratios are computed from them when read.';

CREATE TABLE public.reporting_rollup (
  LIKE public.usage_rollup INCLUDING CONSTRAINTS,
  shown_hours                         BIGINT NOT NULL,
  shown_footprint_unknown_hours       BIGINT NOT NULL,
  shown_regional_unknown_hours        BIGINT NOT NULL,
  PRIMARY KEY (grain, scope, entity_id, period_start)
);
CREATE INDEX reporting_rollup_period ON public.reporting_rollup (grain, period_start);
COMMENT ON TABLE public.reporting_rollup IS 'usage_rollup''s sums for carbon_reporter: of reporting.v_usage_hourly (ada, project, machine, group; entity_id -1 is a scope''s merged row of small groups), maintained with usage_rollup and rebuilt whole when reporting_policy changes. What the reporting.* period and lifetime views and reporting.usage_between read. Not readable by carbon_reporter or carbon_analyst: the reporting views show it.';
INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('grain', 'The period a rollup row sums: day, month or year (UTC, from period_start), or lifetime (every hour stored; period_start is the first year with hours).'),
  ('known_hours', 'How many of the hours have every host-hour''s full footprint known (footprint_unknown_hosts = 0): the hours the known_* sums cover.'),
  ('known_cpu_gco2eq', 'busy_gco2eq + idle_gco2eq over the known_hours only: the CPU-only footprint of the hours the full one is known for.'),
  ('known_memory_gco2eq', 'memory_gco2eq over the known_hours only.'),
  ('known_overhead_gco2eq', 'overhead_gco2eq over the known_hours only.'),
  ('known_embodied_gco2eq', 'embodied_gco2eq over the known_hours only.'),
  ('known_full_gco2eq', 'full_gco2eq over the known_hours only: compare it with known_cpu_gco2eq (like with like).'),
  ('shown_hours', 'How many of the hours show their numbers (not suppressed for having fewer than reporting_policy.min_users users): the averages'' denominator.'),
  ('shown_footprint_unknown_hours', 'footprint_unknown_hours over the hours that show their numbers only.'),
  ('shown_regional_unknown_hours', 'regional_unknown_hours over the hours that show their numbers only.')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;

-- The one-row policy table was never analysed: the planner took it for thousands of rows, so
-- every read of reporting.v_usage_hourly looked costly enough to be JIT-compiled (a second).
ANALYZE public.reporting_policy;

-- ========== maintenance ==========
-- A rollup table's days in [first_day, end_day) from an hourly view: every column from one
-- list of expressions (each table takes the columns it has), so the two tables sum alike.
CREATE FUNCTION public.carbon_rollup_days(rollup REGCLASS, hourly REGCLASS, first_day DATE, end_day DATE)
RETURNS BIGINT LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  written BIGINT;
  columns TEXT;
  found   INTEGER;
  wanted  INTEGER;
BEGIN
  SELECT string_agg(e.expression, ', ' ORDER BY a.attnum), count(e.expression), count(*)
  INTO columns, found, wanted
  FROM pg_attribute a
  LEFT JOIN (VALUES
    ('grain', '''day'''),
    ('period_start', '(h.timestamp_utc AT TIME ZONE ''UTC'')::date'),
    ('scope', 'h.scope'),
    ('entity_id', 'coalesce(h.scope_id, CASE WHEN h.scope = ''ada'' THEN 0 ELSE -1 END)'),
    ('hours', 'count(*)'),
    ('estimated_hours', 'count(*) FILTER (WHERE h.intensity_source <> ''actual'')'),
    ('busy_cpu_seconds_total', 'sum(h.busy_cpu_seconds_total)'),
    ('idle_cpu_seconds_total', 'sum(h.idle_cpu_seconds_total)'),
    ('busy_kwh', 'sum(h.busy_kwh)'),
    ('idle_kwh', 'sum(h.idle_kwh)'),
    ('total_kwh', 'sum(h.busy_kwh + h.idle_kwh)'),
    ('busy_gco2eq', 'sum(h.busy_gco2eq)'),
    ('idle_gco2eq', 'sum(h.idle_gco2eq)'),
    ('total_gco2eq', 'sum(h.busy_gco2eq + h.idle_gco2eq)'),
    ('intensity_sum', 'sum(h.intensity_gco2eq_per_kwh)'),
    ('intensity_hours', 'count(h.intensity_gco2eq_per_kwh)'),
    ('memory_kwh', 'sum(h.memory_kwh)'),
    ('overhead_kwh', 'sum(h.overhead_kwh)'),
    ('full_kwh', 'sum(h.full_kwh)'),
    ('full_kwh_hours', 'count(h.full_kwh)'),
    ('memory_gco2eq', 'sum(h.memory_gco2eq)'),
    ('overhead_gco2eq', 'sum(h.overhead_gco2eq)'),
    ('embodied_gco2eq', 'sum(h.embodied_gco2eq)'),
    ('embodied_gco2eq_hours', 'count(h.embodied_gco2eq)'),
    ('full_gco2eq', 'sum(h.full_gco2eq)'),
    ('full_gco2eq_hours', 'count(h.full_gco2eq)'),
    ('regional_gco2eq', 'sum(h.regional_gco2eq)'),
    ('regional_gco2eq_hours', 'count(h.regional_gco2eq)'),
    ('regional_full_kwh', 'sum(h.full_kwh) FILTER (WHERE h.regional_gco2eq IS NOT NULL)'),
    ('footprint_unknown_hours', 'count(*) FILTER (WHERE h.full_gco2eq IS NULL OR coalesce(h.footprint_unknown_hosts, 1) > 0)'),
    ('footprint_unknown_host_hours', 'sum(h.footprint_unknown_hosts)'),
    ('regional_unknown_hours', 'count(*) FILTER (WHERE h.regional_gco2eq IS NULL OR coalesce(h.regional_unknown_hosts, 1) > 0)'),
    ('known_hours', 'count(*) FILTER (WHERE h.footprint_unknown_hosts = 0)'),
    ('known_cpu_gco2eq', 'sum(h.busy_gco2eq + h.idle_gco2eq) FILTER (WHERE h.footprint_unknown_hosts = 0)'),
    ('known_memory_gco2eq', 'sum(h.memory_gco2eq) FILTER (WHERE h.footprint_unknown_hosts = 0)'),
    ('known_overhead_gco2eq', 'sum(h.overhead_gco2eq) FILTER (WHERE h.footprint_unknown_hosts = 0)'),
    ('known_embodied_gco2eq', 'sum(h.embodied_gco2eq) FILTER (WHERE h.footprint_unknown_hosts = 0)'),
    ('known_full_gco2eq', 'sum(h.full_gco2eq) FILTER (WHERE h.footprint_unknown_hosts = 0)'),
    ('shown_hours', 'count(h.busy_kwh)'),
    ('shown_footprint_unknown_hours', 'count(*) FILTER (WHERE h.busy_kwh IS NOT NULL AND (h.full_gco2eq IS NULL OR coalesce(h.footprint_unknown_hosts, 1) > 0))'),
    ('shown_regional_unknown_hours', 'count(*) FILTER (WHERE h.busy_kwh IS NOT NULL AND (h.regional_gco2eq IS NULL OR coalesce(h.regional_unknown_hosts, 1) > 0))')
  ) AS e (name, expression) ON e.name = a.attname
  WHERE a.attrelid = rollup AND a.attnum > 0 AND NOT a.attisdropped;
  IF found <> wanted THEN
    RAISE EXCEPTION 'carbon_rollup_days: % has a column without an expression', rollup;
  END IF;
  EXECUTE format('DELETE FROM %s WHERE grain = ''day'' AND period_start >= %L AND period_start < %L',
                 rollup, first_day, end_day);
  EXECUTE format('INSERT INTO %s SELECT %s FROM %s h WHERE h.timestamp_utc >= %L AND h.timestamp_utc < %L '
                 'GROUP BY 2, 3, 4',
                 rollup, columns, hourly, first_day::timestamp AT TIME ZONE 'UTC',
                 end_day::timestamp AT TIME ZONE 'UTC');
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END;
$$;

-- A coarser grain's rows from a finer one's: every period of `grain` (month, year) starting in
-- [first, end), or for lifetime every entity's row (dated by its first year), replaced by the
-- sums of its `finer` rows (every column after the key is a sum or a count).
CREATE FUNCTION public.carbon_rollup_from(rollup REGCLASS, grain TEXT, finer TEXT, first DATE, "end" DATE)
RETURNS BIGINT LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  written BIGINT;
  sums    TEXT;
  within  TEXT := CASE WHEN grain = 'lifetime' THEN ''
                       ELSE format(' AND r.period_start >= %L AND r.period_start < %L', first, "end") END;
  period  TEXT := CASE WHEN grain = 'lifetime' THEN 'min(r.period_start)'
                       ELSE format('date_trunc(%L, r.period_start)::date', grain) END;
BEGIN
  SELECT string_agg(format('sum(r.%I)', a.attname), ', ' ORDER BY a.attnum) INTO sums
  FROM pg_attribute a
  WHERE a.attrelid = rollup AND a.attnum > 0 AND NOT a.attisdropped
    AND a.attname NOT IN ('grain', 'period_start', 'scope', 'entity_id');
  EXECUTE format('DELETE FROM %s r WHERE r.grain = %L%s', rollup, grain, within);
  EXECUTE format('INSERT INTO %s SELECT %L, %s, r.scope, r.entity_id, %s FROM %s r '
                 'WHERE r.grain = %L%s GROUP BY %s r.scope, r.entity_id',
                 rollup, grain, period, sums, rollup, finer, within,
                 CASE WHEN grain = 'lifetime' THEN '' ELSE '2, ' END);
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END;
$$;

-- Both rollup tables' days touching [from_ts, to_ts), then those days' months, the months'
-- years, and every lifetime. Advisory locks, taken in one order (days, months, years, the
-- lifetimes; each in time order): windows sharing a period take turns on it for milliseconds
-- and never deadlock; each statement reads what was committed when it started, so whichever
-- window refreshes a shared period last sees both.
-- Returns how many rows it wrote in each table (was their total). Without JIT: a window's days
-- are a small read that compiling would slow by a second or more.
DROP FUNCTION public.carbon_refresh_rollups(TIMESTAMPTZ, TIMESTAMPTZ);
CREATE FUNCTION public.carbon_refresh_rollups(from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS TABLE (rollup_table TEXT, rows_written BIGINT)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp SET jit = off AS $$
DECLARE
  first_day   DATE := (from_ts AT TIME ZONE 'UTC')::date;
  end_day     DATE := ((to_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date + 1;
  first_month DATE := date_trunc('month', first_day)::date;
  end_month   DATE := (date_trunc('month', end_day - 1) + interval '1 month')::date;
  first_year  DATE := date_trunc('year', first_day)::date;
  end_year    DATE := (date_trunc('year', end_day - 1) + interval '1 year')::date;
  pair        RECORD;
BEGIN
  IF from_ts IS NULL OR to_ts IS NULL OR to_ts <= from_ts THEN
    RETURN;
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
  FOR pair IN SELECT * FROM (VALUES ('public.usage_rollup'::regclass, 'public.v_usage_hourly'::regclass),
                                    ('public.reporting_rollup'::regclass, 'reporting.v_usage_hourly'::regclass)) AS p (rollup, hourly)
  LOOP
    rollup_table := pair.rollup::text;
    rows_written := public.carbon_rollup_days(pair.rollup, pair.hourly, first_day, end_day)
                  + public.carbon_rollup_from(pair.rollup, 'month', 'day', first_month, end_month)
                  + public.carbon_rollup_from(pair.rollup, 'year', 'month', first_year, end_year)
                  + public.carbon_rollup_from(pair.rollup, 'lifetime', 'year', NULL, NULL);
    RETURN NEXT;
  END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION public.carbon_refresh_rollups(TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;
COMMENT ON FUNCTION public.carbon_refresh_rollups(TIMESTAMPTZ, TIMESTAMPTZ) IS 'Recomputes (and returns how many rows it wrote in each) usage_rollup and reporting_rollup for every day touching [from_ts, to_ts) from the hourly views, those days'' months from the days, their years from the months, and every lifetime from the years. The pipeline calls it after each window''s facts; after a change made outside it, call it over the range changed.';

-- The reporting rollups of every stored hour, again: when the disclosure policy changes (every
-- merged row depends on it). The table lock makes a window's refresh wait for the rebuild.
CREATE FUNCTION public.carbon_rebuild_reporting_rollups()
RETURNS BIGINT LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  first_day DATE;
  end_day   DATE;
  total     BIGINT;
BEGIN
  LOCK TABLE public.reporting_rollup IN EXCLUSIVE MODE;
  DELETE FROM public.reporting_rollup;
  SELECT min(period_start), max(period_start) + 1 INTO first_day, end_day
  FROM public.usage_rollup WHERE grain = 'day';
  IF first_day IS NULL THEN
    RETURN 0;
  END IF;
  total := public.carbon_rollup_days('public.reporting_rollup', 'reporting.v_usage_hourly', first_day, end_day)
         + public.carbon_rollup_from('public.reporting_rollup', 'month', 'day', DATE '-infinity', DATE 'infinity')
         + public.carbon_rollup_from('public.reporting_rollup', 'year', 'month', DATE '-infinity', DATE 'infinity')
         + public.carbon_rollup_from('public.reporting_rollup', 'lifetime', 'year', NULL, NULL);
  RETURN total;
END;
$$;
CREATE FUNCTION public.carbon_reporting_policy_changed() RETURNS TRIGGER
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
  PERFORM public.carbon_rebuild_reporting_rollups();
  RETURN NULL;
END;
$$;
CREATE TRIGGER reporting_policy_changed
AFTER UPDATE OF min_users ON public.reporting_policy
FOR EACH ROW WHEN (OLD.min_users IS DISTINCT FROM NEW.min_users)
EXECUTE FUNCTION public.carbon_reporting_policy_changed();
CREATE TRIGGER reporting_policy_set
AFTER INSERT ON public.reporting_policy
FOR EACH ROW EXECUTE FUNCTION public.carbon_reporting_policy_changed();
REVOKE EXECUTE ON FUNCTION public.carbon_rollup_days(REGCLASS, REGCLASS, DATE, DATE),
  public.carbon_rollup_from(REGCLASS, TEXT, TEXT, DATE, DATE),
  public.carbon_rebuild_reporting_rollups(), public.carbon_reporting_policy_changed() FROM PUBLIC;
COMMENT ON FUNCTION public.carbon_rollup_days(REGCLASS, REGCLASS, DATE, DATE) IS 'Part of carbon_refresh_rollups: replaces a rollup table''s days in [first_day, end_day) by the sums of an hourly view.';
COMMENT ON FUNCTION public.carbon_rollup_from(REGCLASS, TEXT, TEXT, DATE, DATE) IS 'Part of carbon_refresh_rollups: replaces a rollup table''s rows of a grain (month, year) starting in [first, end), or every lifetime row, by the sums of the finer grain''s rows.';
COMMENT ON FUNCTION public.carbon_rebuild_reporting_rollups() IS 'Recomputes reporting_rollup for every stored day: run by a trigger when reporting_policy changes.';
COMMENT ON FUNCTION public.carbon_reporting_policy_changed() IS 'Trigger of reporting_policy: a changed min_users rebuilds reporting_rollup.';

-- ========== the analysts' views read the stored grains ==========
-- v_usage_rollup and reporting.v_usage_rollup: one select list over a rollup with its entities'
-- names; one scan of the rollup, so a query of one grain (v_usage_daily is grain = 'day') reads
-- only that grain's rows (the index on grain, period_start).
CREATE VIEW public.v_reporting_entity AS
SELECT e.scope, e.entity_id, e.scope_id, e.scope_name, e.display_name
FROM public.v_scope_entity e
WHERE e.scope IN ('ada', 'project', 'machine', 'group')
UNION ALL
SELECT s.scope, -1, NULL::bigint, format('(merged: fewer than %s users each)', p.min_users),
       format('(merged: fewer than %s users each)', p.min_users)
FROM (VALUES ('project'), ('machine'), ('group')) AS s (scope)
CROSS JOIN public.reporting_policy p;
COMMENT ON VIEW public.v_reporting_entity IS 'The entities of reporting_rollup with the names the reporting views show: the aggregate scopes'' entities, and each scope''s merged row of small groups (entity_id -1).';

CREATE VIEW reporting.usage_rollup AS
SELECT e.scope_id, e.scope_name, e.display_name, r.*
FROM public.reporting_rollup r
JOIN public.v_reporting_entity e ON e.scope = r.scope AND e.entity_id = r.entity_id;
COMMENT ON VIEW reporting.usage_rollup IS 'Daily, monthly, yearly and lifetime sums of reporting.v_usage_hourly per aggregate entity (small groups merged per hour; see reporting.policy): what the reporting period and lifetime views and reporting.usage_between read.';
GRANT SELECT ON reporting.usage_rollup TO carbon_reporter;

DO $$
DECLARE
  columns TEXT := 'p.grain, p.scope, p.scope_id, p.scope_name, p.display_name, '
    'CASE WHEN p.grain <> ''lifetime'' THEN p.period_start END AS period_start, '
    'p.hours, p.estimated_hours, p.busy_cpu_seconds_total, p.idle_cpu_seconds_total, '
    'p.busy_kwh, p.idle_kwh, p.total_kwh, p.busy_gco2eq, p.idle_gco2eq, p.total_gco2eq, '
    'p.total_kwh / %2$s AS kwh_per_hour_avg, p.total_gco2eq / %2$s AS gco2eq_per_hour_avg, '
    'p.total_gco2eq / nullif(p.total_kwh, 0) AS intensity_gco2eq_per_kwh, '
    'p.busy_kwh / nullif(p.total_kwh, 0) AS busy_share_kwh, '
    'p.idle_cpu_seconds_total / nullif(p.busy_cpu_seconds_total + p.idle_cpu_seconds_total, 0) AS idle_share_cpu, '
    'p.memory_kwh, p.overhead_kwh, p.full_kwh, p.memory_gco2eq, p.overhead_gco2eq, '
    'p.embodied_gco2eq, p.full_gco2eq, p.regional_gco2eq, '
    'p.regional_gco2eq / nullif(p.regional_full_kwh, 0) AS regional_intensity_gco2eq_per_kwh, '
    'p.footprint_unknown_hours, p.footprint_unknown_host_hours, p.regional_unknown_hours, '
    'p.known_hours, p.known_cpu_gco2eq, p.known_memory_gco2eq, p.known_overhead_gco2eq, '
    'p.known_embodied_gco2eq, p.known_full_gco2eq';
BEGIN
  -- The hourly averages divide by the hours that show numbers (all of them, for analysts).
  EXECUTE format('CREATE OR REPLACE VIEW public.v_usage_rollup AS SELECT %s FROM ('
                 'SELECT e.scope_id, e.scope_name, e.display_name, r.* FROM public.usage_rollup r '
                 'JOIN public.v_scope_entity e ON e.scope = r.scope AND e.entity_id = r.entity_id) p',
                 format(columns, NULL, 'p.hours'));
  EXECUTE format('CREATE OR REPLACE VIEW reporting.v_usage_rollup AS SELECT %s FROM reporting.usage_rollup p',
                 format(columns, NULL, 'nullif(p.shown_hours, 0)'));
END
$$;

-- The seed's lifetime totals and averages, analysts': 0013's definitions, reading each entity's
-- lifetime row instead of summing its months (the same sums; one row each).
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
  -- carbon_reporter's heatmap: the analysts' (entities from the daily rows), over its own views.
  body := pg_get_viewdef('public.v_usage_heatmap'::regclass);
  body := replace(body, 'public.v_usage_daily', 'reporting.v_usage_daily');
  EXECUTE format('CREATE OR REPLACE VIEW reporting.v_usage_heatmap AS %s', body);
  PERFORM set_config('search_path', saved, TRUE);
END
$$;

-- carbon_reporter's lifetime totals and averages (ada, project, machine, group): as 0010 made
-- them from reporting.v_usage_hourly, from the lifetime rows. An average is over the hours that
-- show their numbers, and the unknown hours count those hours only, as before.
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
  averages TEXT := 'sum(r.busy_kwh) / nullif(sum(r.shown_hours), 0) AS energy_kwh_busy_avg, '
    'sum(r.idle_kwh) / nullif(sum(r.shown_hours), 0) AS energy_kwh_idle_avg, '
    'sum(r.busy_gco2eq) / nullif(sum(r.shown_hours), 0) AS carbon_gco2eq_busy_avg, '
    'sum(r.idle_gco2eq) / nullif(sum(r.shown_hours), 0) AS carbon_gco2eq_idle_avg, '
    'sum(r.intensity_sum) / nullif(sum(r.intensity_hours), 0) AS intensity_gco2eq_per_kwh_avg, '
    'sum(r.full_kwh) / nullif(sum(r.full_kwh_hours), 0) AS energy_kwh_full_avg, '
    'sum(r.full_gco2eq) / nullif(sum(r.full_gco2eq_hours), 0) AS carbon_gco2eq_full_avg, '
    'sum(r.embodied_gco2eq) / nullif(sum(r.embodied_gco2eq_hours), 0) AS carbon_gco2eq_embodied_avg, '
    'sum(r.regional_gco2eq) / nullif(sum(r.regional_gco2eq_hours), 0) AS carbon_gco2eq_regional_avg';
  unknown TEXT := 'coalesce(sum(r.shown_footprint_unknown_hours), 0)::bigint AS footprint_unknown_hours, '
    'coalesce(sum(r.shown_regional_unknown_hours), 0)::bigint AS regional_unknown_hours';
BEGIN
  FOR s IN SELECT * FROM (VALUES ('project', 'project_id', 'cloud_project_name'),
                                 ('machine', 'machine_id', 'machine_name'),
                                 ('group', 'group_id', 'group_name')) AS t (scope, id, name)
  LOOP
    EXECUTE format('CREATE OR REPLACE VIEW reporting.%I AS SELECT r.scope_id AS %I, r.scope_name AS %I, %s, %s '
                   'FROM reporting.usage_rollup r WHERE r.grain = ''lifetime'' AND r.scope = %L '
                   'GROUP BY r.scope_id, r.scope_name',
                   'v_' || s.scope || '_total', s.id, s.name, totals, unknown, s.scope);
    EXECUTE format('CREATE OR REPLACE VIEW reporting.%I AS SELECT r.scope_id AS %I, r.scope_name AS %I, %s, %s '
                   'FROM reporting.usage_rollup r WHERE r.grain = ''lifetime'' AND r.scope = %L '
                   'GROUP BY r.scope_id, r.scope_name',
                   'v_' || s.scope || '_averages', s.id, s.name, averages, unknown, s.scope);
  END LOOP;
  EXECUTE format('CREATE OR REPLACE VIEW reporting.v_ada_total AS SELECT %s, %s FROM reporting.usage_rollup r '
                 'WHERE r.grain = ''lifetime'' AND r.scope = ''ada''', totals, unknown);
  EXECUTE format('CREATE OR REPLACE VIEW reporting.v_ada_averages AS SELECT %s, %s FROM reporting.usage_rollup r '
                 'WHERE r.grain = ''lifetime'' AND r.scope = ''ada''', averages, unknown);
END
$$;

-- carbon_reporter's usage_between: as the analysts' (whole UTC days from the daily rows, the
-- hours at either end from the hourly view), over its own views; averages over the hours that
-- show their numbers and unknown hours among those, as 0010 made it.
CREATE OR REPLACE FUNCTION reporting.usage_between(aggregate_scope TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
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
DECLARE
  whole_from TIMESTAMPTZ := date_trunc('day', from_ts - interval '1 microsecond', 'UTC') + interval '24 hours';
  whole_to   TIMESTAMPTZ := date_trunc('day', to_ts, 'UTC');
BEGIN
  IF aggregate_scope IS NULL OR aggregate_scope NOT IN ('ada', 'project', 'machine', 'group') THEN
    RAISE EXCEPTION 'scope % is not an aggregate: carbon_reporter reads ada, project, machine and group', aggregate_scope
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN QUERY
  WITH parts AS (
    SELECT r.scope, r.scope_id, r.scope_name, r.display_name, r.hours, r.estimated_hours,
           r.shown_hours, r.busy_cpu_seconds_total, r.idle_cpu_seconds_total, r.busy_kwh,
           r.idle_kwh, r.total_kwh, r.busy_gco2eq, r.idle_gco2eq, r.total_gco2eq, r.memory_kwh,
           r.overhead_kwh, r.full_kwh, r.memory_gco2eq, r.overhead_gco2eq, r.embodied_gco2eq,
           r.full_gco2eq, r.regional_gco2eq, r.regional_full_kwh,
           r.shown_footprint_unknown_hours, r.footprint_unknown_host_hours,
           r.shown_regional_unknown_hours
    FROM reporting.usage_rollup r
    WHERE r.grain = 'day' AND r.scope = aggregate_scope
      AND r.period_start >= (whole_from AT TIME ZONE 'UTC')::date
      AND r.period_start < (whole_to AT TIME ZONE 'UTC')::date
    UNION ALL
    SELECT h.scope, h.scope_id, h.scope_name, h.display_name, count(*),
           count(*) FILTER (WHERE h.intensity_source <> 'actual'), count(h.busy_kwh),
           sum(h.busy_cpu_seconds_total), sum(h.idle_cpu_seconds_total),
           sum(h.busy_kwh), sum(h.idle_kwh), sum(h.busy_kwh + h.idle_kwh),
           sum(h.busy_gco2eq), sum(h.idle_gco2eq), sum(h.busy_gco2eq + h.idle_gco2eq),
           sum(h.memory_kwh), sum(h.overhead_kwh), sum(h.full_kwh), sum(h.memory_gco2eq),
           sum(h.overhead_gco2eq), sum(h.embodied_gco2eq), sum(h.full_gco2eq), sum(h.regional_gco2eq),
           sum(h.full_kwh) FILTER (WHERE h.regional_gco2eq IS NOT NULL),
           count(*) FILTER (WHERE h.busy_kwh IS NOT NULL AND (h.full_gco2eq IS NULL OR coalesce(h.footprint_unknown_hosts, 1) > 0)),
           sum(h.footprint_unknown_hosts),
           count(*) FILTER (WHERE h.busy_kwh IS NOT NULL AND (h.regional_gco2eq IS NULL OR coalesce(h.regional_unknown_hosts, 1) > 0))
    FROM (
      SELECT * FROM reporting.v_usage_hourly h
      WHERE h.scope = aggregate_scope AND h.timestamp_utc >= from_ts AND h.timestamp_utc < least(to_ts, whole_from)
      UNION ALL
      SELECT * FROM reporting.v_usage_hourly h
      WHERE h.scope = aggregate_scope AND h.timestamp_utc < to_ts
        AND h.timestamp_utc >= greatest(from_ts, whole_to, whole_from)
    ) h
    GROUP BY h.scope, h.scope_id, h.scope_name, h.display_name
  ),
  summed AS (
    SELECT p.scope, p.scope_id, p.scope_name, p.display_name, sum(p.hours)::bigint AS hours,
           sum(p.estimated_hours)::bigint AS estimated_hours, sum(p.shown_hours) AS shown_hours,
           sum(p.busy_cpu_seconds_total) AS busy_cpu_seconds_total,
           sum(p.idle_cpu_seconds_total) AS idle_cpu_seconds_total, sum(p.busy_kwh) AS busy_kwh,
           sum(p.idle_kwh) AS idle_kwh, sum(p.total_kwh) AS total_kwh,
           sum(p.busy_gco2eq) AS busy_gco2eq, sum(p.idle_gco2eq) AS idle_gco2eq,
           sum(p.total_gco2eq) AS total_gco2eq, sum(p.memory_kwh) AS memory_kwh,
           sum(p.overhead_kwh) AS overhead_kwh, sum(p.full_kwh) AS full_kwh,
           sum(p.memory_gco2eq) AS memory_gco2eq, sum(p.overhead_gco2eq) AS overhead_gco2eq,
           sum(p.embodied_gco2eq) AS embodied_gco2eq, sum(p.full_gco2eq) AS full_gco2eq,
           sum(p.regional_gco2eq) AS regional_gco2eq, sum(p.regional_full_kwh) AS regional_full_kwh,
           sum(p.shown_footprint_unknown_hours)::bigint AS footprint_unknown_hours,
           sum(p.footprint_unknown_host_hours)::bigint AS footprint_unknown_host_hours,
           sum(p.shown_regional_unknown_hours)::bigint AS regional_unknown_hours
    FROM parts p
    GROUP BY p.scope, p.scope_id, p.scope_name, p.display_name
  )
  SELECT s.scope, s.scope_id, s.scope_name, s.display_name, s.hours, s.estimated_hours,
         s.busy_cpu_seconds_total, s.idle_cpu_seconds_total, s.busy_kwh, s.idle_kwh, s.total_kwh,
         s.busy_gco2eq, s.idle_gco2eq, s.total_gco2eq,
         s.total_kwh / nullif(s.shown_hours, 0), s.total_gco2eq / nullif(s.shown_hours, 0),
         s.total_gco2eq / nullif(s.total_kwh, 0),
         s.busy_kwh / nullif(s.total_kwh, 0),
         s.idle_cpu_seconds_total / nullif(s.busy_cpu_seconds_total + s.idle_cpu_seconds_total, 0),
         s.memory_kwh, s.overhead_kwh, s.full_kwh, s.memory_gco2eq, s.overhead_gco2eq,
         s.embodied_gco2eq, s.full_gco2eq, s.regional_gco2eq,
         s.regional_gco2eq / nullif(s.regional_full_kwh, 0),
         s.footprint_unknown_hours, s.footprint_unknown_host_hours, s.regional_unknown_hours
  FROM summed s;
END;
$$;

-- reporting.v_usage_hourly named its per-entity rows (CTEs entity, marked) more than once, so
-- PostgreSQL computed them for every stored hour before any filter: a day's refresh, and the
-- hours at either end of reporting.usage_between, read the whole history. Inlined, a filter on
-- timestamp_utc reaches the facts (it is a partition column of every window), and the same
-- rows come out.
DO $$
DECLARE
  body TEXT;
  saved TEXT := current_setting('search_path');
BEGIN
  PERFORM set_config('search_path', 'pg_catalog', TRUE);
  body := pg_get_viewdef('reporting.v_usage_hourly'::regclass);
  IF body NOT LIKE '%), entity AS (%' OR body NOT LIKE '%), marked AS (%' THEN
    RAISE EXCEPTION 'reporting.v_usage_hourly is not as 0010 made it';
  END IF;
  body := replace(body, '), entity AS (', '), entity AS NOT MATERIALIZED (');
  body := replace(body, '), marked AS (', '), marked AS NOT MATERIALIZED (');
  EXECUTE format('CREATE OR REPLACE VIEW reporting.v_usage_hourly AS %s', body);
  PERFORM set_config('search_path', saved, TRUE);
END
$$;

-- The history stored before this migration, rolled up again (every grain and both tables: the
-- known sums are new).
SELECT * FROM public.carbon_refresh_rollups(
  (SELECT min(timestamp_utc) FROM public.fact_usage_ada),
  (SELECT max(timestamp_utc) + interval '1 hour' FROM public.fact_usage_ada));

-- The new objects' columns, documented from the glossary.
SELECT public.carbon_document_columns();
