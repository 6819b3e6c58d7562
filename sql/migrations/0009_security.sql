-- 0009: security, second pass (docs/security.md).
-- 1. No function runs with its owner's rights: the reporter's functions read the reporter's
--    own views with the caller's rights, and every function names its objects
--    schema-qualified with pg_temp last in a pinned search_path.
-- 2. Privileges fail closed: no default privileges; every relation a role reads is granted
--    here, by name, and a relation added later is readable by nobody until a migration
--    grants it.
-- 3. Small groups: carbon_reporter sees a project, machine or group hour only if at least
--    reporting_policy.min_users distinct users held its hosts, or none did; the others are
--    merged into one row per scope and hour (with as many more as make it reach the
--    minimum), and an hour of the platform with fewer users shows no numbers.

-- ========== schema public: nobody else creates there ==========
-- PostgreSQL <= 14 lets every role create in public; REVOKE by a role that does not own the
-- schema only warns, so check that it took.
DO $$
BEGIN
  REVOKE CREATE ON SCHEMA public FROM PUBLIC;
  IF has_schema_privilege('public', 'public', 'CREATE') THEN
    RAISE EXCEPTION 'every role may create objects in schema public, and the migrating role % cannot revoke that: it does not own the schema (owner: %)',
      current_user, (SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'public')
      USING HINT = 'As the owner, run: REVOKE CREATE ON SCHEMA public FROM PUBLIC; (or ALTER SCHEMA public OWNER TO '
                   || current_user || ';), then run the migrations again.';
  END IF;
END
$$;

-- ========== fail closed: no default privileges ==========
-- 0007 made every later table in public readable by carbon_analyst and every later view in
-- reporting by carbon_reporter, for objects made by the role that ran it. Take them back for
-- every role that has them (a role may only alter its own default privileges: stop if one
-- remains).
DO $$
DECLARE
  d RECORD;
BEGIN
  FOR d IN
    SELECT a.defaclrole::regrole AS owner, n.nspname
    FROM pg_default_acl a JOIN pg_namespace n ON n.oid = a.defaclnamespace
    WHERE n.nspname IN ('public', 'reporting')
  LOOP
    BEGIN
      EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %s IN SCHEMA %I REVOKE ALL ON TABLES FROM carbon_analyst, carbon_reporter',
                     d.owner, d.nspname);
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION 'default privileges of role % in schema % grant reading to analysts, and the migrating role % cannot take them back',
        d.owner, d.nspname, current_user
        USING HINT = format('As %s, run: ALTER DEFAULT PRIVILEGES IN SCHEMA %I REVOKE ALL ON TABLES FROM carbon_analyst, carbon_reporter;', d.owner, d.nspname);
    END;
  END LOOP;
END
$$;
-- Functions are executable by PUBLIC by default: not the ones made from here on.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Partitions need no grant of their own (a query through the parent is checked on the
-- parent only), so partitions made later are readable by nobody directly.
CREATE OR REPLACE FUNCTION public.carbon_ensure_month_partitions(parent TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS VOID LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  month_start TIMESTAMPTZ := date_trunc('month', from_ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  month_end   TIMESTAMPTZ;
  part_name   TEXT;
BEGIN
  -- Two runs creating the same partition at once would collide: serialise creation.
  PERFORM 1 FROM public.write_lock WHERE name = 'partitions' FOR UPDATE;
  WHILE month_start < to_ts LOOP
    month_end := ((month_start AT TIME ZONE 'UTC') + INTERVAL '1 month') AT TIME ZONE 'UTC';
    part_name := format('%s_y%sm%s', parent,
                        to_char(month_start AT TIME ZONE 'UTC', 'YYYY'),
                        to_char(month_start AT TIME ZONE 'UTC', 'MM'));
    IF to_regclass(format('public.%I', part_name)) IS NULL THEN
      EXECUTE format('CREATE TABLE public.%I (LIKE public.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                     part_name, parent);
      -- The bound as a constraint spares ATTACH its validating scan.
      EXECUTE format('ALTER TABLE public.%I ADD CONSTRAINT %I CHECK (timestamp_utc >= %L AND timestamp_utc < %L)',
                     part_name, part_name || '_bound', month_start, month_end);
      EXECUTE format('ALTER TABLE public.%I ATTACH PARTITION public.%I FOR VALUES FROM (%L) TO (%L)',
                     parent, part_name, month_start, month_end);
    END IF;
    month_start := month_end;
  END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION carbon_ensure_month_partitions(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;

-- ========== users per scope-hour ==========
-- How many distinct users (unattributed is nobody) held hosts of the scope in the hour.
ALTER TABLE fact_usage_ada ADD COLUMN users INTEGER;
ALTER TABLE fact_usage_project ADD COLUMN users INTEGER;
ALTER TABLE fact_usage_machine ADD COLUMN users INTEGER;
ALTER TABLE fact_usage_group ADD COLUMN users INTEGER;

-- History stored before: from the workspaces' hourly shares and their sessions.
CREATE TEMP TABLE held ON COMMIT DROP AS
SELECT w.timestamp_utc, s.project_id, s.machine_id, s.group_id, s.user_id
FROM public.fact_usage_workspace w
JOIN public.workspace_session s USING (workspace_session_id)
JOIN public.dim_user u ON u.user_id = s.user_id AND u.ext_user_id <> 'unattributed';
UPDATE public.fact_usage_ada f SET users = c.n
FROM (SELECT timestamp_utc, count(DISTINCT user_id) AS n FROM held GROUP BY 1) c
WHERE f.timestamp_utc = c.timestamp_utc;
UPDATE public.fact_usage_project f SET users = c.n
FROM (SELECT timestamp_utc, project_id, count(DISTINCT user_id) AS n FROM held GROUP BY 1, 2) c
WHERE f.timestamp_utc = c.timestamp_utc AND f.project_id = c.project_id;
UPDATE public.fact_usage_machine f SET users = c.n
FROM (SELECT timestamp_utc, machine_id, count(DISTINCT user_id) AS n FROM held GROUP BY 1, 2) c
WHERE f.timestamp_utc = c.timestamp_utc AND f.machine_id = c.machine_id;
UPDATE public.fact_usage_group f SET users = c.n
FROM (SELECT timestamp_utc, group_id, count(DISTINCT user_id) AS n FROM held GROUP BY 1, 2) c
WHERE f.timestamp_utc = c.timestamp_utc AND f.group_id = c.group_id;
UPDATE public.fact_usage_ada SET users = 0 WHERE users IS NULL;
UPDATE public.fact_usage_project SET users = 0 WHERE users IS NULL;
UPDATE public.fact_usage_machine SET users = 0 WHERE users IS NULL;
UPDATE public.fact_usage_group SET users = 0 WHERE users IS NULL;

-- The policy: one row; the pipeline sets it from CARBON_REPORTER_MIN_USERS when it migrates.
-- 5: the threshold rule of statistical disclosure control ("some agencies require at least
-- five respondents in a cell", OECD Glossary of Statistical Terms, threshold rule).
CREATE TABLE public.reporting_policy (
  singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
  min_users INTEGER NOT NULL CHECK (min_users >= 1)
);
INSERT INTO public.reporting_policy (min_users) VALUES (5);

-- ========== the hourly view, with users ==========
CREATE OR REPLACE VIEW public.v_usage_hourly AS
SELECT 'ada'::text AS scope, NULL::bigint AS scope_id, 'ada'::text AS scope_name,
       'Ada (whole platform)'::text AS display_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq,
       f.users
FROM public.fact_usage_ada f
UNION ALL
SELECT 'project', d.project_id, d.cloud_project_name, d.cloud_project_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq,
       f.users
FROM public.fact_usage_project f JOIN public.dim_project d USING (project_id)
UNION ALL
SELECT 'machine', d.machine_id, d.machine_name, d.machine_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq,
       f.users
FROM public.fact_usage_machine f JOIN public.dim_machine d USING (machine_id)
UNION ALL
SELECT 'group', d.group_id, d.group_name, d.group_name,
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq,
       f.users
FROM public.fact_usage_group f JOIN public.dim_group d USING (group_id)
UNION ALL
SELECT 'user', d.user_id, d.ext_user_id, coalesce(d.display_name, d.ext_user_id),
       f.timestamp_utc, f.busy_cpu_seconds_total, f.idle_cpu_seconds_total, f.busy_kwh,
       f.idle_kwh, f.busy_gco2eq, f.idle_gco2eq, f.intensity_gco2eq_per_kwh, f.intensity_source,
       f.memory_kwh, f.overhead_kwh, f.full_kwh, f.memory_gco2eq, f.overhead_gco2eq, f.embodied_gco2eq, f.full_gco2eq, f.regional_gco2eq,
       CASE WHEN d.ext_user_id = 'unattributed' THEN 0 ELSE 1 END
FROM public.fact_usage_user f JOIN public.dim_user d USING (user_id);

-- ========== what carbon_reporter sees ==========
-- Every view and function of `reporting` is made again from the suppressed hourly view.
DROP SCHEMA reporting CASCADE;
CREATE SCHEMA reporting;
REVOKE ALL ON SCHEMA reporting FROM PUBLIC;

CREATE VIEW reporting.policy AS SELECT min_users FROM public.reporting_policy;
CREATE VIEW reporting.v_coverage_hourly AS
  SELECT timestamp_utc, hosts_reported, hosts_rejected, hosts_missing, coverage
  FROM public.v_coverage_hourly;
CREATE VIEW reporting.v_coverage_daily AS SELECT * FROM public.v_coverage_daily;
CREATE VIEW reporting.carbon_intensity_hourly AS SELECT * FROM public.carbon_intensity_hourly;
CREATE VIEW reporting.carbon_intensity_regional_hourly AS
  SELECT * FROM public.carbon_intensity_regional_hourly;
CREATE VIEW reporting.equivalency AS SELECT * FROM public.equivalency;


-- An entity-hour with 1 to min_users - 1 users is merged into its scope-hour's row
-- '(merged: fewer than N users each)', and so are the next smallest entities until the merged
-- row holds at least min_users users (counted per entity: a person in two merged groups
-- counts twice); the merged row, and an ada hour, with fewer users show no numbers.
CREATE VIEW reporting.v_usage_hourly AS
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
         sum(m.full_gco2eq) AS full_gco2eq, sum(m.regional_gco2eq) AS regional_gco2eq
  FROM marked m WHERE m.merged
  GROUP BY m.scope, m.timestamp_utc
)
SELECT m.scope, m.scope_id, m.scope_name, m.display_name, m.timestamp_utc,
       m.busy_cpu_seconds_total, m.idle_cpu_seconds_total, m.busy_kwh, m.idle_kwh,
       m.busy_gco2eq, m.idle_gco2eq, m.intensity_gco2eq_per_kwh, m.intensity_source,
       m.memory_kwh, m.overhead_kwh, m.full_kwh, m.memory_gco2eq, m.overhead_gco2eq,
       m.embodied_gco2eq, m.full_gco2eq, m.regional_gco2eq, m.users
FROM marked m WHERE NOT m.merged
UNION ALL
SELECT g.scope, NULL::bigint, format('(merged: fewer than %s users each)', g.k),
       format('(merged: fewer than %s users each)', g.k), g.timestamp_utc,
       s.busy_cpu_seconds_total, s.idle_cpu_seconds_total, s.busy_kwh, s.idle_kwh,
       s.busy_gco2eq, s.idle_gco2eq, g.intensity_gco2eq_per_kwh, g.intensity_source,
       s.memory_kwh, s.overhead_kwh, s.full_kwh, s.memory_gco2eq, s.overhead_gco2eq,
       s.embodied_gco2eq, s.full_gco2eq, s.regional_gco2eq, g.users::integer
FROM merged g
LEFT JOIN LATERAL (SELECT g.* WHERE g.users >= g.k) s ON TRUE
UNION ALL
SELECT a.scope, a.scope_id, a.scope_name, a.display_name, a.timestamp_utc,
       s.busy_cpu_seconds_total, s.idle_cpu_seconds_total, s.busy_kwh, s.idle_kwh,
       s.busy_gco2eq, s.idle_gco2eq, a.intensity_gco2eq_per_kwh, a.intensity_source,
       s.memory_kwh, s.overhead_kwh, s.full_kwh, s.memory_gco2eq, s.overhead_gco2eq,
       s.embodied_gco2eq, s.full_gco2eq, s.regional_gco2eq, a.users
FROM public.v_usage_hourly a
CROSS JOIN policy p
LEFT JOIN LATERAL (SELECT a.* WHERE NOT coalesce(a.users BETWEEN 1 AND p.k - 1, FALSE)) s ON TRUE
WHERE a.scope = 'ada';

-- The analysts' period views, made again over the suppressed hours: their definitions with
-- every public.v_usage_* they read replaced by its reporting version.
DO $$
DECLARE
  v TEXT;
  body TEXT;
  saved TEXT := current_setting('search_path');
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
END
$$;

-- The seed's lifetime views of each aggregate scope, over the suppressed hours.
DO $$
DECLARE
  s RECORD;
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
BEGIN
  FOR s IN SELECT * FROM (VALUES ('project', 'project_id', 'cloud_project_name'),
                                 ('machine', 'machine_id', 'machine_name'),
                                 ('group', 'group_id', 'group_name')) AS t (scope, id, name)
  LOOP
    EXECUTE format('CREATE VIEW reporting.%I AS SELECT h.scope_id AS %I, h.scope_name AS %I, %s '
                   'FROM reporting.v_usage_hourly h WHERE h.scope = %L GROUP BY h.scope_id, h.scope_name',
                   'v_' || s.scope || '_total', s.id, s.name, sums, s.scope);
    EXECUTE format('CREATE VIEW reporting.%I AS SELECT h.scope_id AS %I, h.scope_name AS %I, %s '
                   'FROM reporting.v_usage_hourly h WHERE h.scope = %L GROUP BY h.scope_id, h.scope_name',
                   'v_' || s.scope || '_averages', s.id, s.name, averages, s.scope);
  END LOOP;
  EXECUTE format('CREATE VIEW reporting.v_ada_total AS SELECT %s FROM reporting.v_usage_hourly h WHERE h.scope = %L',
                 sums, 'ada');
  EXECUTE format('CREATE VIEW reporting.v_ada_averages AS SELECT %s FROM reporting.v_usage_hourly h WHERE h.scope = %L',
                 averages, 'ada');
END
$$;

-- ========== functions: the caller's rights, every name qualified, pg_temp last ==========
CREATE OR REPLACE FUNCTION public.equivalencies(gco2eq DOUBLE PRECISION)
RETURNS TABLE (equivalency TEXT, description TEXT, unit TEXT, amount DOUBLE PRECISION)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT e.equivalency, e.description, e.unit, $1 / e.gco2eq_per_unit FROM public.equivalency e
$$;
CREATE OR REPLACE FUNCTION public.reporting_now() RETURNS TIMESTAMPTZ
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(nullif(current_setting('carbon.now', TRUE), '')::timestamptz, now())
$$;
ALTER FUNCTION public.carbon_document_columns() SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION reporting.equivalencies(gco2eq DOUBLE PRECISION)
RETURNS TABLE (equivalency TEXT, description TEXT, unit TEXT, amount DOUBLE PRECISION)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT e.equivalency, e.description, e.unit, $1 / e.gco2eq_per_unit FROM reporting.equivalency e
$$;
CREATE FUNCTION reporting.reporting_now() RETURNS TIMESTAMPTZ
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$ SELECT public.reporting_now() $$;

-- The windowed totals of an aggregate scope, over the suppressed hours; a user scope is refused.
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
         sum(h.regional_gco2eq) / nullif(sum(h.full_kwh), 0),
         count(*) - count(h.full_gco2eq)
  FROM reporting.v_usage_hourly h
  WHERE h.scope = aggregate_scope AND h.timestamp_utc >= from_ts AND h.timestamp_utc < to_ts
  GROUP BY h.scope, h.scope_id, h.scope_name, h.display_name;
END;
$$;

-- ========== grants, by name ==========
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM carbon_analyst, carbon_reporter, PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA reporting FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO carbon_analyst;
GRANT SELECT ON
  dim_project, dim_machine, dim_group, dim_user, dim_instance,
  bridge_project_group, bridge_project_user, workspace_session,
  fact_usage_ada, fact_usage_project, fact_usage_machine, fact_usage_group, fact_usage_user,
  fact_usage_workspace, fact_usage_instance,
  carbon_intensity_hourly, carbon_intensity_regional_hourly, host_cpu_gaps,
  equivalency, column_glossary, reporting_policy,
  v_usage_hourly, v_usage_rollup, v_usage_daily, v_usage_monthly, v_usage_yearly, v_usage_total,
  v_usage_heatmap, v_usage_equivalencies, v_host_hourly,
  v_ada_total, v_ada_averages, v_project_total, v_project_averages, v_machine_total,
  v_machine_averages, v_group_total, v_group_averages, v_user_total, v_user_averages,
  v_workspace_sessions, v_active_workspaces, v_idle_workspaces,
  v_coverage_hourly, v_coverage_daily
TO carbon_analyst;
GRANT EXECUTE ON FUNCTION usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ),
  equivalencies(DOUBLE PRECISION), reporting_now() TO carbon_analyst;

GRANT USAGE ON SCHEMA reporting TO carbon_reporter;
GRANT SELECT ON
  reporting.policy, reporting.v_usage_hourly, reporting.v_usage_rollup, reporting.v_usage_daily,
  reporting.v_usage_monthly, reporting.v_usage_yearly, reporting.v_usage_total,
  reporting.v_usage_heatmap, reporting.v_usage_equivalencies,
  reporting.v_ada_total, reporting.v_ada_averages, reporting.v_project_total,
  reporting.v_project_averages, reporting.v_machine_total, reporting.v_machine_averages,
  reporting.v_group_total, reporting.v_group_averages,
  reporting.v_coverage_hourly, reporting.v_coverage_daily,
  reporting.carbon_intensity_hourly, reporting.carbon_intensity_regional_hourly,
  reporting.equivalency
TO carbon_reporter;
GRANT EXECUTE ON FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ),
  reporting.equivalencies(DOUBLE PRECISION), reporting.reporting_now() TO carbon_reporter;
-- The heatmap's days end on reporting_now(): a view's functions are called with the reader's
-- rights.
GRANT EXECUTE ON FUNCTION public.reporting_now() TO carbon_reporter;

-- ========== DOCUMENTATION ==========
COMMENT ON TABLE reporting_policy IS 'The reporting role''s disclosure policy: min_users, the fewest distinct users an aggregate hour must have (or none) to be shown on its own to carbon_reporter.';
COMMENT ON SCHEMA reporting IS 'Aggregates only (ada, project, machine, group): what carbon_reporter reads. No user, workspace or host, and no aggregate hour of fewer than reporting_policy.min_users users on its own.';
COMMENT ON VIEW reporting.policy IS 'The disclosure policy the reporting views apply (min_users).';
COMMENT ON VIEW reporting.v_usage_hourly IS 'Every aggregate scope per UTC hour. An entity-hour with fewer than min_users users (but some) is merged into the row ''(merged: fewer than N users each)'' of its scope and hour, with the next smallest entities until that row holds min_users; a merged row or ada hour that still has fewer shows no numbers.';
COMMENT ON FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) IS 'Totals and hourly averages of every entity of an aggregate scope (ada, project, machine, group) over [from_ts, to_ts), over the hours reporting.v_usage_hourly shows.';
COMMENT ON FUNCTION reporting.equivalencies(DOUBLE PRECISION) IS 'What an amount of gCO2eq equals in everyday terms.';
COMMENT ON FUNCTION reporting.reporting_now() IS 'The time relative periods are measured from: now(), or the session setting carbon.now.';
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
INSERT INTO column_glossary (column_name, meaning) VALUES
  ('users', 'Distinct users (unattributed is nobody) whose workspaces held a host of this row in the hour; a user row: 1, unattributed: 0.'),
  ('min_users', 'The fewest distinct users an aggregate hour must have (or none) to be shown on its own to carbon_reporter.'),
  ('singleton', 'Always true: the table holds one row.')
ON CONFLICT (column_name) DO NOTHING;
SELECT carbon_document_columns();
