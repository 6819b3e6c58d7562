-- 0016: what carbon_reporter sees is decided once per hour, across every scope, and stored
-- (docs/security.md, "What the reporter sees"). 0009's rule merged small entities per scope at
-- read time, so one scope's rows minus another's gave back a small group, the merged rows
-- counted a person once per group, hidden rows still showed their people, and nothing stopped
-- a reader's function or a failing built-in from seeing the hidden rows.
--
-- The rule, per UTC hour, over the groups (a group is one project's machine type: the finest
-- aggregate, and every other scope is a sum of groups):
-- 1. A group is shown alone when at least k = reporting_policy.min_users distinct people held
--    its hosts in the hour (k = 1: every group). 0 people is not "nobody's, so safe": a group
--    shown when empty and hidden when its one user works would tell when that user works.
-- 2. A project's other groups are shown as one row, '<project> (other groups)', when at
--    least k distinct people held them and none of them dominates: each is at most
--    1 / (1 + protection_margin) of their sum, for busy and idle energy alike, so that
--    the sum bounds each of them no closer than protection_margin (the p% rule).
-- 3. The groups of every project whose other groups are not shown make the rest of the
--    platform, shown as one row when it passes the same test; otherwise with the smallest
--    shown row (a project's other groups, or a group) that makes it pass, which is then no
--    longer shown on its own; otherwise not at all (and then neither is the platform).
-- 4. A project, a machine type or the platform is shown when it is a sum of what 1-3 show:
--    a project when its groups are shown alone or with its other groups, a machine type when
--    every group of it is shown alone, the platform when the rest is shown (or empty). Each
--    scope's rows not shown are one row '(rest of the platform)' when the platform is shown.
-- So everything shown is a sum of disjoint shown parts (groups, other-groups rows, the rest):
-- no subtraction across rows, scopes or periods reaches inside a part, and a hidden group's
-- energy is bounded only by [0, its part's sum].
-- 5. A row that sums parts of more than one group (other groups, the rest, and every row
--    containing one) shows the seed's busy and idle kWh and gCO2eq only: CPU-seconds and the
--    full footprint's parts weight each group by its own machine type's watts, memory and
--    embodied carbon, and two columns weighted differently would separate two groups.
-- 6. People are counted once however many groups they held (distinct users), and never shown
--    below k.
-- Periods are sums of the shown hours only, so they add nothing to what the hours show.

-- ========== policy ==========
ALTER TABLE public.reporting_policy
  ADD COLUMN protection_margin DOUBLE PRECISION NOT NULL DEFAULT 0.1
  CHECK (protection_margin >= 0 AND protection_margin < 1);
COMMENT ON TABLE public.reporting_policy IS 'carbon_reporter''s disclosure policy (docs/security.md): min_users, the fewest distinct people a shown row must have, and protection_margin, how close (as a share of its value) what is shown may bound a group that is not.';
INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('protection_margin', 'The p% rule: a group not shown alone is never bounded by what is shown closer than this share of its value (0.1: within 10 %).'),
  ('all_columns', 'Whether the row shows every column: true when it sums groups each shown alone; false when it sums parts of several groups, when it shows only busy and idle kWh and gCO2eq (other columns could tell the groups apart).'),
  ('all_columns_hours', 'How many of the hours show every column (all_columns): CPU-seconds of a period are shown only when all of its hours show them.')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;
CREATE OR REPLACE VIEW reporting.policy AS
SELECT min_users, protection_margin FROM public.reporting_policy;

-- ========== the release: what carbon_reporter may see, per hour ==========
CREATE TABLE public.reporting_release (
  timestamp_utc            TIMESTAMPTZ NOT NULL,
  scope                    TEXT NOT NULL CHECK (scope IN ('ada', 'project', 'machine', 'group')),
  -- project_id, machine_id or group_id; 0: ada, or a scope's rest of the platform;
  -- -project_id: that project's other groups (scope group).
  entity_id                BIGINT NOT NULL,
  users                    INTEGER,
  all_columns              BOOLEAN NOT NULL,
  busy_cpu_seconds_total   DOUBLE PRECISION,
  idle_cpu_seconds_total   DOUBLE PRECISION,
  busy_kwh                 DOUBLE PRECISION NOT NULL,
  idle_kwh                 DOUBLE PRECISION NOT NULL,
  busy_gco2eq              DOUBLE PRECISION NOT NULL,
  idle_gco2eq              DOUBLE PRECISION NOT NULL,
  intensity_gco2eq_per_kwh DOUBLE PRECISION,
  intensity_source         TEXT,
  memory_kwh               DOUBLE PRECISION,
  overhead_kwh             DOUBLE PRECISION,
  full_kwh                 DOUBLE PRECISION,
  memory_gco2eq            DOUBLE PRECISION,
  overhead_gco2eq          DOUBLE PRECISION,
  embodied_gco2eq          DOUBLE PRECISION,
  full_gco2eq              DOUBLE PRECISION,
  regional_gco2eq          DOUBLE PRECISION,
  footprint_unknown_hosts  INTEGER,
  regional_unknown_hosts   INTEGER,
  PRIMARY KEY (timestamp_utc, scope, entity_id)
) PARTITION BY RANGE (timestamp_utc);
COMMENT ON TABLE public.reporting_release IS 'What carbon_reporter may see, per UTC hour: the rows of ada, projects, machine types and groups that pass the disclosure rule (migration 0016, docs/security.md), each a sum of disjoint shown parts; nothing else is stored here. Written by the pipeline after each window''s facts, rewritten whole when reporting_policy changes. Not readable by carbon_reporter or carbon_analyst: reporting.v_usage_hourly shows it.';

-- Groups stored before their pair was recorded get it from their host-hours.
UPDATE public.dim_group g
SET cloud_project_name = p.cloud_project_name, machine_name = m.machine_name
FROM (SELECT DISTINCT group_id, project_id, machine_id FROM public.fact_usage_instance) i
JOIN public.dim_project p USING (project_id)
JOIN public.dim_machine m USING (machine_id)
WHERE i.group_id = g.group_id AND g.cloud_project_name IS NULL;

-- Replaces [from_ts, to_ts)'s rows of reporting_release from the facts stored; returns how
-- many it wrote. One statement: every part is decided for every hour at once.
-- Without nested loops: the planner cannot estimate the CTEs' rows (it takes each for one),
-- and a nested loop over two of them scans one once per row of the other (36 s for a month
-- of 100 hosts; hash joins: linear).
CREATE FUNCTION public.carbon_release_hours(from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS BIGINT
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET jit = off SET enable_nestloop = off
  SET work_mem = '64MB' AS $$
DECLARE
  k       INTEGER;
  margin  DOUBLE PRECISION;
  nobody  BIGINT;
  written BIGINT;
BEGIN
  SELECT r.min_users, r.protection_margin INTO k, margin FROM public.reporting_policy r;
  SELECT u.user_id INTO nobody FROM public.dim_user u WHERE u.ext_user_id = 'unattributed';
  DELETE FROM public.reporting_release r WHERE r.timestamp_utc >= from_ts AND r.timestamp_utc < to_ts;
  INSERT INTO public.reporting_release
  WITH
  -- Every group-hour with its project and machine type; alone: shown on its own.
  cell AS MATERIALIZED (
    SELECT f.timestamp_utc, f.group_id, p.project_id, m.machine_id,
           (f.users >= k OR k <= 1) AS alone,
           f.busy_kwh, f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq
    FROM public.fact_usage_group f
    JOIN public.dim_group g ON g.group_id = f.group_id
    JOIN public.dim_project p ON p.cloud_project_name = g.cloud_project_name
    JOIN public.dim_machine m ON m.machine_name = g.machine_name
    WHERE f.timestamp_utc >= from_ts AND f.timestamp_utc < to_ts
  ),
  -- Who held each group's hosts in each hour (unattributed is nobody), to count people once
  -- across several groups.
  -- (Each workspace-hour with its host first: OFFSET 0 keeps the planner from joining the
  -- sessions to every host-hour of their hosts.)
  held AS MATERIALIZED (
    SELECT DISTINCT c.timestamp_utc, c.group_id, c.project_id, c.alone, x.user_id
    FROM (
      SELECT w.timestamp_utc, s.instance_id, s.user_id
      FROM public.fact_usage_workspace w
      JOIN public.workspace_session s ON s.workspace_session_id = w.workspace_session_id
      WHERE w.timestamp_utc >= from_ts AND w.timestamp_utc < to_ts
        AND s.user_id IS NOT NULL AND s.user_id IS DISTINCT FROM nobody
      OFFSET 0
    ) x
    JOIN public.fact_usage_instance i ON i.instance_id = x.instance_id AND i.timestamp_utc = x.timestamp_utc
    JOIN cell c ON c.timestamp_utc = i.timestamp_utc AND c.group_id = i.group_id
    WHERE i.timestamp_utc >= from_ts AND i.timestamp_utc < to_ts
  ),
  -- A project's groups not shown alone ("other groups"), and whether they may be shown.
  other AS MATERIALIZED (
    SELECT o.*, coalesce(n.people, 0) AS people,
           coalesce(n.people, 0) >= k AND o.busy_max * (1 + margin) <= o.busy
             AND o.idle_max * (1 + margin) <= o.idle AS passes
    FROM (
      SELECT c.timestamp_utc, c.project_id, sum(c.busy_kwh) AS busy, sum(c.idle_kwh) AS idle,
             max(c.busy_kwh) AS busy_max, max(c.idle_kwh) AS idle_max
      FROM cell c WHERE NOT c.alone GROUP BY 1, 2
    ) o
    LEFT JOIN (
      SELECT h.timestamp_utc, h.project_id, count(DISTINCT h.user_id) AS people
      FROM held h WHERE NOT h.alone GROUP BY 1, 2
    ) n ON n.timestamp_utc = o.timestamp_utc AND n.project_id = o.project_id
  ),
  -- The rest: the groups of the projects whose other groups may not be shown.
  rest AS MATERIALIZED (
    SELECT r.*, coalesce(n.people, 0) AS people,
           coalesce(n.people, 0) >= k AND r.busy_max * (1 + margin) <= r.busy
             AND r.idle_max * (1 + margin) <= r.idle AS passes
    FROM (
      SELECT o.timestamp_utc, sum(o.busy) AS busy, sum(o.idle) AS idle,
             max(o.busy_max) AS busy_max, max(o.idle_max) AS idle_max
      FROM other o WHERE NOT o.passes GROUP BY 1
    ) r
    LEFT JOIN (
      SELECT h.timestamp_utc, count(DISTINCT h.user_id) AS people
      FROM held h JOIN other o ON o.timestamp_utc = h.timestamp_utc AND o.project_id = h.project_id
      WHERE NOT h.alone AND NOT o.passes GROUP BY 1
    ) n ON n.timestamp_utc = r.timestamp_utc
  ),
  -- Where the rest cannot be shown as it is: the smallest shown part (by energy) with which
  -- it passes (any shown part has k people already; a group alone hides nobody).
  absorbed AS MATERIALIZED (
    SELECT DISTINCT ON (r.timestamp_utc) r.timestamp_utc, u.part, u.id
    FROM rest r
    JOIN (
      SELECT o.timestamp_utc, 'other' AS part, o.project_id AS id, o.busy, o.idle, o.busy_max, o.idle_max
      FROM other o WHERE o.passes
      UNION ALL
      SELECT c.timestamp_utc, 'group', c.group_id, c.busy_kwh, c.idle_kwh, 0, 0
      FROM cell c WHERE c.alone
    ) u ON u.timestamp_utc = r.timestamp_utc
    WHERE NOT r.passes
      AND greatest(r.busy_max, u.busy_max) * (1 + margin) <= r.busy + u.busy
      AND greatest(r.idle_max, u.idle_max) * (1 + margin) <= r.idle + u.idle
    ORDER BY r.timestamp_utc, u.busy + u.idle, u.part, u.id
  ),
  -- Each group's fate: shown alone, in its project's other groups, or in the rest.
  fate AS MATERIALIZED (
    SELECT c.timestamp_utc, c.group_id, c.project_id, c.machine_id,
           c.busy_kwh, c.idle_kwh, c.busy_gco2eq, c.idle_gco2eq,
           c.alone AND a.id IS NULL AS shown_alone,
           NOT c.alone AND o.passes AND a.id IS NULL AS in_other,
           (NOT c.alone AND NOT o.passes) OR a.id IS NOT NULL AS in_rest,
           coalesce(r.passes, FALSE) OR x.timestamp_utc IS NOT NULL AS rest_shown
    FROM cell c
    LEFT JOIN other o ON o.timestamp_utc = c.timestamp_utc AND o.project_id = c.project_id
    LEFT JOIN rest r ON r.timestamp_utc = c.timestamp_utc
    LEFT JOIN absorbed x ON x.timestamp_utc = c.timestamp_utc
    LEFT JOIN absorbed a ON a.timestamp_utc = c.timestamp_utc
      AND ((a.part = 'group' AND a.id = c.group_id) OR (a.part = 'other' AND a.id = c.project_id AND NOT c.alone))
  ),
  -- Whether each project, machine type and the platform is a sum of shown parts, and with
  -- every column (every group in it alone).
  project AS MATERIALIZED (
    SELECT f.timestamp_utc, f.project_id,
           bool_and(f.shown_alone OR f.in_other) AS shown, bool_and(f.shown_alone) AS whole
    FROM fate f GROUP BY 1, 2
  ),
  machine AS MATERIALIZED (
    SELECT f.timestamp_utc, f.machine_id, bool_and(f.shown_alone) AS shown
    FROM fate f GROUP BY 1, 2
  ),
  hour AS MATERIALIZED (
    SELECT f.timestamp_utc, bool_and(NOT f.in_rest OR f.rest_shown) AS shown,
           bool_and(f.shown_alone) AS whole
    FROM fate f GROUP BY 1
  ),
  marked AS MATERIALIZED (
    SELECT f.*, p.shown AS project_shown, m.shown AS machine_shown, h.shown AS hour_shown
    FROM fate f
    JOIN project p ON p.timestamp_utc = f.timestamp_utc AND p.project_id = f.project_id
    JOIN machine m ON m.timestamp_utc = f.timestamp_utc AND m.machine_id = f.machine_id
    JOIN hour h ON h.timestamp_utc = f.timestamp_utc
  ),
  -- The rows that sum parts of several groups: a project's other groups (entity
  -- -project_id), and, where the platform is shown, each scope's rest (entity 0).
  membership AS (
    SELECT f.timestamp_utc, f.group_id, 'group' AS scope, -f.project_id AS entity_id
    FROM marked f WHERE f.in_other
    UNION ALL
    SELECT f.timestamp_utc, f.group_id, s.scope, 0
    FROM marked f
    CROSS JOIN (VALUES ('group'), ('project'), ('machine')) AS s (scope)
    WHERE f.hour_shown AND CASE s.scope WHEN 'group' THEN f.in_rest
                                        WHEN 'project' THEN NOT f.project_shown
                                        ELSE NOT f.machine_shown END
  ),
  summed AS (
    SELECT b.timestamp_utc, b.scope, b.entity_id,
           sum(f.busy_kwh) AS busy_kwh, sum(f.idle_kwh) AS idle_kwh,
           sum(f.busy_gco2eq) AS busy_gco2eq, sum(f.idle_gco2eq) AS idle_gco2eq
    FROM membership b JOIN marked f ON f.timestamp_utc = b.timestamp_utc AND f.group_id = b.group_id
    GROUP BY 1, 2, 3
  ),
  counted AS (
    SELECT b.timestamp_utc, b.scope, b.entity_id, count(DISTINCT h.user_id) AS people
    FROM membership b JOIN held h ON h.timestamp_utc = b.timestamp_utc AND h.group_id = b.group_id
    GROUP BY 1, 2, 3
  ),
  -- The rows shown with their facts' own numbers (all of them when all_columns).
  whole_keys AS (
    SELECT f.timestamp_utc, 'group' AS scope, f.group_id AS entity_id, TRUE AS all_columns
    FROM marked f WHERE f.shown_alone
    UNION ALL
    SELECT p.timestamp_utc, 'project', p.project_id, p.whole FROM project p WHERE p.shown
    UNION ALL
    SELECT m.timestamp_utc, 'machine', m.machine_id, TRUE FROM machine m WHERE m.shown
    UNION ALL
    SELECT h.timestamp_utc, 'ada', 0, h.whole FROM hour h WHERE h.shown
  )
  SELECT v.timestamp_utc, w.scope, w.entity_id,
         CASE WHEN v.users >= k THEN v.users END, w.all_columns,
         CASE WHEN w.all_columns THEN v.busy_cpu_seconds_total END,
         CASE WHEN w.all_columns THEN v.idle_cpu_seconds_total END,
         v.busy_kwh, v.idle_kwh, v.busy_gco2eq, v.idle_gco2eq,
         v.intensity_gco2eq_per_kwh, v.intensity_source,
         CASE WHEN w.all_columns THEN v.memory_kwh END,
         CASE WHEN w.all_columns THEN v.overhead_kwh END,
         CASE WHEN w.all_columns THEN v.full_kwh END,
         CASE WHEN w.all_columns THEN v.memory_gco2eq END,
         CASE WHEN w.all_columns THEN v.overhead_gco2eq END,
         CASE WHEN w.all_columns THEN v.embodied_gco2eq END,
         CASE WHEN w.all_columns THEN v.full_gco2eq END,
         CASE WHEN w.all_columns THEN v.regional_gco2eq END,
         CASE WHEN w.all_columns THEN v.footprint_unknown_hosts END,
         CASE WHEN w.all_columns THEN v.regional_unknown_hosts END
  FROM whole_keys w
  JOIN public.v_usage_hourly v
    ON v.scope = w.scope AND v.timestamp_utc = w.timestamp_utc AND coalesce(v.scope_id, 0) = w.entity_id
  WHERE v.timestamp_utc >= from_ts AND v.timestamp_utc < to_ts AND v.scope <> 'user'
  UNION ALL
  SELECT s.timestamp_utc, s.scope, s.entity_id,
         CASE WHEN coalesce(c.people, 0) >= k THEN c.people::integer END, FALSE, NULL, NULL,
         s.busy_kwh, s.idle_kwh, s.busy_gco2eq, s.idle_gco2eq,
         a.intensity_gco2eq_per_kwh, a.intensity_source,
         NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM summed s
  LEFT JOIN counted c ON c.timestamp_utc = s.timestamp_utc AND c.scope = s.scope AND c.entity_id = s.entity_id
  JOIN public.fact_usage_ada a ON a.timestamp_utc = s.timestamp_utc;
  GET DIAGNOSTICS written = ROW_COUNT;
  RETURN written;
END;
$$;
REVOKE EXECUTE ON FUNCTION public.carbon_release_hours(TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;
COMMENT ON FUNCTION public.carbon_release_hours(TIMESTAMPTZ, TIMESTAMPTZ) IS 'Rewrites reporting_release for the hours of [from_ts, to_ts) from the stored facts, under reporting_policy (migration 0016''s rule); returns the rows written. Part of carbon_refresh_rollups.';

-- ========== the reporter's rollups sum the release ==========
ALTER TABLE public.reporting_rollup ADD COLUMN all_columns_hours BIGINT NOT NULL DEFAULT 0;
ALTER TABLE public.reporting_rollup ALTER COLUMN all_columns_hours DROP DEFAULT;
COMMENT ON TABLE public.reporting_rollup IS 'usage_rollup''s sums for carbon_reporter: of reporting_release (ada, project, machine, group; entity_id 0 of a scope other than ada is its rest of the platform, -project_id a project''s other groups), maintained with usage_rollup and rebuilt whole when reporting_policy changes. What the reporting.* period and lifetime views and reporting.usage_between read. Not readable by carbon_reporter or carbon_analyst: the reporting views show it.';

-- carbon_rollup_days: an hourly source with its own entity_id (reporting_release) keeps it,
-- and the hours showing every column are counted.
DO $$
DECLARE
  body TEXT := pg_get_functiondef('public.carbon_rollup_days(regclass, regclass, date, date)'::regprocedure);
  entity CONSTANT TEXT := $q$('entity_id', 'coalesce(h.scope_id, CASE WHEN h.scope = ''ada'' THEN 0 ELSE -1 END)'),$q$;
  shown CONSTANT TEXT := $q$('shown_hours', 'count(h.busy_kwh)'),$q$;
BEGIN
  IF position(entity IN body) = 0 OR position(shown IN body) = 0 THEN
    RAISE EXCEPTION 'carbon_rollup_days is not as 0014 made it';
  END IF;
  body := replace(body, entity,
    $q$('entity_id', CASE WHEN EXISTS (SELECT FROM pg_attribute x WHERE x.attrelid = hourly AND x.attname = 'entity_id' AND NOT x.attisdropped)
                          THEN 'h.entity_id' ELSE 'coalesce(h.scope_id, CASE WHEN h.scope = ''ada'' THEN 0 ELSE -1 END)' END),$q$);
  body := replace(body, shown, shown || $q$
    ('all_columns_hours', 'count(*) FILTER (WHERE h.all_columns)'),$q$);
  EXECUTE body;
END
$$;

-- The pipeline's locks on periods: rows of write_lock, which only the pipeline's role may
-- lock (any login can take any advisory lock key, and a reader holding one stalled every
-- run's refresh). Days, months, years, the lifetimes: each in time order, named so that name
-- order is that order.
CREATE FUNCTION public.carbon_lock_periods(first_day DATE, end_day DATE)
RETURNS VOID
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  names TEXT[];
BEGIN
  SELECT array_agg(name ORDER BY name) INTO names FROM (
    SELECT 'rollup:1-day:' || to_char(d, 'YYYY-MM-DD') AS name
    FROM generate_series(first_day, end_day - 1, interval '1 day') AS d
    UNION
    SELECT 'rollup:2-month:' || to_char(d, 'YYYY-MM')
    FROM generate_series(date_trunc('month', first_day), end_day - 1, interval '1 month') AS d
    UNION
    SELECT 'rollup:3-year:' || to_char(d, 'YYYY')
    FROM generate_series(date_trunc('year', first_day), end_day - 1, interval '1 year') AS d
    UNION
    SELECT 'rollup:4-lifetime'
  ) n;
  INSERT INTO public.write_lock (name) SELECT unnest(names) ORDER BY 1 ON CONFLICT DO NOTHING;
  PERFORM 1 FROM public.write_lock w WHERE w.name = ANY(names) ORDER BY w.name FOR UPDATE;
END;
$$;
REVOKE EXECUTE ON FUNCTION public.carbon_lock_periods(DATE, DATE) FROM PUBLIC;
COMMENT ON FUNCTION public.carbon_lock_periods(DATE, DATE) IS 'Locks, until the transaction ends, the write_lock rows of the days in [first_day, end_day), their months and years, and the lifetimes: what a rollup refresh of those days holds.';

-- Both rollup tables' days touching [from_ts, to_ts), with the release of its hours first,
-- then those days' months, the months' years, and every lifetime; as 0014's, with row locks.
DROP FUNCTION public.carbon_refresh_rollups(TIMESTAMPTZ, TIMESTAMPTZ);
CREATE FUNCTION public.carbon_refresh_rollups(from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS TABLE (rollup_table TEXT, rows_written BIGINT, seconds DOUBLE PRECISION)
LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp SET jit = off AS $$
DECLARE
  first_day   DATE := (from_ts AT TIME ZONE 'UTC')::date;
  end_day     DATE := ((to_ts - interval '1 microsecond') AT TIME ZONE 'UTC')::date + 1;
  first_month DATE := date_trunc('month', first_day)::date;
  end_month   DATE := (date_trunc('month', end_day - 1) + interval '1 month')::date;
  first_year  DATE := date_trunc('year', first_day)::date;
  end_year    DATE := (date_trunc('year', end_day - 1) + interval '1 year')::date;
  pair        RECORD;
  began       TIMESTAMPTZ;
BEGIN
  IF from_ts IS NULL OR to_ts IS NULL OR to_ts <= from_ts THEN
    RETURN;
  END IF;
  -- Partitions before any row lock: creating one may wait for another refresh's creation.
  PERFORM public.carbon_ensure_month_partitions('reporting_release', from_ts, to_ts);
  PERFORM public.carbon_lock_periods(first_day, end_day);
  began := clock_timestamp();
  rollup_table := 'public.reporting_release';
  rows_written := public.carbon_release_hours(from_ts, to_ts);
  seconds := extract(epoch FROM clock_timestamp() - began);
  RETURN NEXT;
  FOR pair IN SELECT * FROM (VALUES ('public.usage_rollup'::regclass, 'public.v_usage_hourly'::regclass),
                                    ('public.reporting_rollup'::regclass, 'public.reporting_release'::regclass)) AS p (rollup, hourly)
  LOOP
    began := clock_timestamp();
    rollup_table := pair.rollup::text;
    rows_written := public.carbon_rollup_days(pair.rollup, pair.hourly, first_day, end_day)
                  + public.carbon_rollup_from(pair.rollup, 'month', 'day', first_month, end_month)
                  + public.carbon_rollup_from(pair.rollup, 'year', 'month', first_year, end_year)
                  + public.carbon_rollup_from(pair.rollup, 'lifetime', 'year', NULL, NULL);
    seconds := extract(epoch FROM clock_timestamp() - began);
    RETURN NEXT;
  END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION public.carbon_refresh_rollups(TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;
COMMENT ON FUNCTION public.carbon_refresh_rollups(TIMESTAMPTZ, TIMESTAMPTZ) IS 'Rewrites reporting_release for the hours of [from_ts, to_ts), then recomputes usage_rollup (from the facts) and reporting_rollup (from reporting_release) for every day touching them, those days'' months, their years, and every lifetime; returns the rows written in each table and the seconds it took. The pipeline calls it after each window''s facts; after a change made outside it, call it over the range changed.';

-- Every stored hour released again, and the reporter's rollups rebuilt: when the policy
-- changes. Tables locked in the order a window's refresh writes them (release, then rollup).
CREATE OR REPLACE FUNCTION public.carbon_rebuild_reporting_rollups()
RETURNS BIGINT LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  first_hour TIMESTAMPTZ;
  end_hour   TIMESTAMPTZ;
  total      BIGINT;
BEGIN
  LOCK TABLE public.reporting_release IN EXCLUSIVE MODE;
  LOCK TABLE public.reporting_rollup IN EXCLUSIVE MODE;
  DELETE FROM public.reporting_rollup;
  SELECT min(timestamp_utc), max(timestamp_utc) + interval '1 hour' INTO first_hour, end_hour
  FROM public.fact_usage_ada;
  IF first_hour IS NULL THEN
    DELETE FROM public.reporting_release;
    RETURN 0;
  END IF;
  PERFORM public.carbon_ensure_month_partitions('reporting_release', first_hour, end_hour);
  total := public.carbon_release_hours(first_hour, end_hour)
         + public.carbon_rollup_days('public.reporting_rollup', 'public.reporting_release',
                                     (first_hour AT TIME ZONE 'UTC')::date,
                                     ((end_hour - interval '1 microsecond') AT TIME ZONE 'UTC')::date + 1)
         + public.carbon_rollup_from('public.reporting_rollup', 'month', 'day', DATE '-infinity', DATE 'infinity')
         + public.carbon_rollup_from('public.reporting_rollup', 'year', 'month', DATE '-infinity', DATE 'infinity')
         + public.carbon_rollup_from('public.reporting_rollup', 'lifetime', 'year', NULL, NULL);
  RETURN total;
END;
$$;
COMMENT ON FUNCTION public.carbon_rebuild_reporting_rollups() IS 'Rewrites reporting_release for every stored hour and rebuilds reporting_rollup from it: run by a trigger when reporting_policy changes.';
DROP TRIGGER reporting_policy_changed ON public.reporting_policy;
CREATE TRIGGER reporting_policy_changed
AFTER UPDATE OF min_users, protection_margin ON public.reporting_policy
FOR EACH ROW WHEN ((OLD.min_users, OLD.protection_margin) IS DISTINCT FROM (NEW.min_users, NEW.protection_margin))
EXECUTE FUNCTION public.carbon_reporting_policy_changed();

-- The forecast error's refresh: a row lock too (was advisory key 13005).
INSERT INTO public.write_lock (name) VALUES ('forecast_error') ON CONFLICT DO NOTHING;
DO $$
DECLARE
  body TEXT := pg_get_functiondef('public.carbon_refresh_forecast_error(timestamptz, timestamptz)'::regprocedure);
  advisory CONSTANT TEXT := 'PERFORM pg_advisory_xact_lock(13005);';
BEGIN
  IF position(advisory IN body) = 0 THEN
    RAISE EXCEPTION 'carbon_refresh_forecast_error is not as 0015 made it';
  END IF;
  EXECUTE replace(body, advisory,
                  'PERFORM 1 FROM public.write_lock w WHERE w.name = ''forecast_error'' FOR UPDATE;');
END
$$;

-- ========== what carbon_reporter reads ==========
-- Entities of the release with the names the reporting views show.
CREATE OR REPLACE VIEW public.v_reporting_entity AS
SELECT e.scope, e.entity_id, e.scope_id, e.scope_name, e.display_name
FROM public.v_scope_entity e
WHERE e.scope IN ('ada', 'project', 'machine', 'group')
UNION ALL
SELECT 'group', -p.project_id, NULL::bigint, p.cloud_project_name || ' (other groups)',
       p.cloud_project_name || ' (other groups)'
FROM public.dim_project p
UNION ALL
SELECT s.scope, 0, NULL::bigint, '(rest of the platform)', '(rest of the platform)'
FROM (VALUES ('project'), ('machine'), ('group')) AS s (scope);
COMMENT ON VIEW public.v_reporting_entity IS 'The entities of reporting_release and reporting_rollup with the names the reporting views show: the aggregate scopes'' entities, each project''s other groups (scope group, entity_id -project_id) and each scope''s rest of the platform (entity_id 0).';

CREATE OR REPLACE VIEW reporting.v_usage_hourly AS
SELECT e.scope, e.scope_id, e.scope_name, e.display_name, r.timestamp_utc,
       r.busy_cpu_seconds_total, r.idle_cpu_seconds_total, r.busy_kwh, r.idle_kwh,
       r.busy_gco2eq, r.idle_gco2eq, r.intensity_gco2eq_per_kwh, r.intensity_source,
       r.memory_kwh, r.overhead_kwh, r.full_kwh, r.memory_gco2eq, r.overhead_gco2eq,
       r.embodied_gco2eq, r.full_gco2eq, r.regional_gco2eq, r.users,
       r.footprint_unknown_hosts, r.regional_unknown_hosts, r.all_columns
FROM public.reporting_release r
JOIN public.v_reporting_entity e ON e.scope = r.scope AND e.entity_id = r.entity_id;
COMMENT ON VIEW reporting.v_usage_hourly IS 'Every aggregate scope per UTC hour, as far as the disclosure rule lets it be shown (docs/security.md): groups of at least reporting.policy''s min_users people, each project''s other groups together, the rest of the platform, and the projects, machine types and platform that are sums of those. A row that sums several groups'' parts (all_columns false) shows busy and idle kWh and gCO2eq only. An hour or entity not shown has no row.';

CREATE OR REPLACE VIEW reporting.usage_rollup AS
SELECT e.scope_id, e.scope_name, e.display_name, r.*
FROM public.reporting_rollup r
JOIN public.v_reporting_entity e ON e.scope = r.scope AND e.entity_id = r.entity_id;
COMMENT ON VIEW reporting.usage_rollup IS 'Daily, monthly, yearly and lifetime sums of reporting.v_usage_hourly''s rows per entity (the hours each was shown): what the reporting period and lifetime views and reporting.usage_between read.';

-- CPU-seconds of a period only where every hour of it showed them.
DO $$
DECLARE
  body TEXT;
  saved TEXT := current_setting('search_path');
  cpu CONSTANT TEXT[] := ARRAY['busy_cpu_seconds_total', 'idle_cpu_seconds_total'];
  c TEXT;
BEGIN
  PERFORM set_config('search_path', 'pg_catalog', TRUE);
  body := pg_get_viewdef('reporting.v_usage_rollup'::regclass);
  FOREACH c IN ARRAY cpu LOOP
    IF position(format('p.%s,', c) IN body) = 0 THEN
      RAISE EXCEPTION 'reporting.v_usage_rollup is not as 0014 made it';
    END IF;
    body := replace(body, format('p.%s,', c),
                    format('CASE WHEN p.all_columns_hours = p.hours THEN p.%1$s END AS %1$s,', c));
  END LOOP;
  body := replace(body, '(p.idle_cpu_seconds_total / ', '(CASE WHEN p.all_columns_hours = p.hours THEN p.idle_cpu_seconds_total END / ');
  EXECUTE format('CREATE OR REPLACE VIEW reporting.v_usage_rollup AS %s', body);
  FOREACH c IN ARRAY ARRAY['v_project_total', 'v_machine_total', 'v_group_total', 'v_ada_total'] LOOP
    body := pg_get_viewdef(format('reporting.%I', c)::regclass);
    IF position('sum(r.busy_cpu_seconds_total) AS busy_cpu_seconds_total' IN body) = 0 THEN
      RAISE EXCEPTION 'reporting.% is not as 0014 made it', c;
    END IF;
    body := replace(body, 'sum(r.busy_cpu_seconds_total) AS busy_cpu_seconds_total',
      'CASE WHEN sum(r.all_columns_hours) = sum(r.hours) THEN sum(r.busy_cpu_seconds_total) END AS busy_cpu_seconds_total');
    body := replace(body, 'sum(r.idle_cpu_seconds_total) AS idle_cpu_seconds_total',
      'CASE WHEN sum(r.all_columns_hours) = sum(r.hours) THEN sum(r.idle_cpu_seconds_total) END AS idle_cpu_seconds_total');
    EXECUTE format('CREATE OR REPLACE VIEW reporting.%I AS %s', c, body);
  END LOOP;
  PERFORM set_config('search_path', saved, TRUE);
END
$$;

-- carbon_reporter's usage_between: 0014's, with CPU-seconds only where every hour of the range
-- showed them.
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
           r.shown_regional_unknown_hours, r.all_columns_hours
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
           count(*) FILTER (WHERE h.busy_kwh IS NOT NULL AND (h.regional_gco2eq IS NULL OR coalesce(h.regional_unknown_hosts, 1) > 0)),
           count(*) FILTER (WHERE h.all_columns)
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
           sum(p.shown_regional_unknown_hours)::bigint AS regional_unknown_hours,
           sum(p.all_columns_hours) = sum(p.hours) AS cpu_shown
    FROM parts p
    GROUP BY p.scope, p.scope_id, p.scope_name, p.display_name
  )
  SELECT s.scope, s.scope_id, s.scope_name, s.display_name, s.hours, s.estimated_hours,
         CASE WHEN s.cpu_shown THEN s.busy_cpu_seconds_total END,
         CASE WHEN s.cpu_shown THEN s.idle_cpu_seconds_total END, s.busy_kwh, s.idle_kwh, s.total_kwh,
         s.busy_gco2eq, s.idle_gco2eq, s.total_gco2eq,
         s.total_kwh / nullif(s.shown_hours, 0), s.total_gco2eq / nullif(s.shown_hours, 0),
         s.total_gco2eq / nullif(s.total_kwh, 0),
         s.busy_kwh / nullif(s.total_kwh, 0),
         CASE WHEN s.cpu_shown THEN s.idle_cpu_seconds_total / nullif(s.busy_cpu_seconds_total + s.idle_cpu_seconds_total, 0) END,
         s.memory_kwh, s.overhead_kwh, s.full_kwh, s.memory_gco2eq, s.overhead_gco2eq,
         s.embodied_gco2eq, s.full_gco2eq, s.regional_gco2eq,
         s.regional_gco2eq / nullif(s.regional_full_kwh, 0),
         s.footprint_unknown_hours, s.footprint_unknown_host_hours, s.regional_unknown_hours
  FROM summed s;
END;
$$;

COMMENT ON FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) IS 'Totals and hourly averages of every entity of an aggregate scope (ada, project, machine, group) over [from_ts, to_ts), over the hours reporting.v_usage_hourly shows of it; CPU-seconds only where every one of those hours shows them.';

-- Every relation carbon_reporter reads is a security barrier: a caller's condition (a function
-- of its own, or a built-in that can fail, like ln() or a division) is evaluated only on the
-- rows the view gives, never on rows of the tables under it that the view would drop.
DO $$
DECLARE
  v RECORD;
BEGIN
  FOR v IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'reporting' AND c.relkind = 'v'
  LOOP
    EXECUTE format('ALTER VIEW reporting.%I SET (security_barrier = true)', v.relname);
  END LOOP;
END
$$;

-- Every stored hour released under the policy, and the reporter's rollups made of it.
SELECT public.carbon_rebuild_reporting_rollups();
ANALYZE public.reporting_release;
SELECT public.carbon_document_columns();
