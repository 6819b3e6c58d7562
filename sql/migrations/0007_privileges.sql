-- 0007: privileges and personal data. Nobody but the pipeline creates objects in schema
-- public (so nothing can shadow a function the pipeline calls); the functions that may run with
-- the pipeline's rights pin their search_path; the pipeline's write locks are rows of a table
-- analysts cannot lock (advisory lock keys are hashes of public strings: anyone could take
-- them and stall every write); views and tables added later are readable by carbon_analyst
-- by default; and the role carbon_reporter reads aggregates only (ada, project, machine,
-- group), never a user-level or workspace-level row. Also: v_active_workspaces and the
-- heatmap measured from reporting_now(), the heatmap listing only entities seen in its year.

REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- ========== WRITE LOCKS ==========
-- A writer locks its rows (FOR UPDATE, in name order) for the rest of its transaction.
-- Locking a row needs UPDATE on the table, which no reading role has.
CREATE TABLE write_lock (
  name TEXT PRIMARY KEY
);
INSERT INTO write_lock (name) VALUES ('partitions');
REVOKE ALL ON write_lock FROM PUBLIC;

CREATE OR REPLACE FUNCTION carbon_ensure_month_partitions(parent TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS VOID LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
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
      -- Default privileges grant analysts every new table: a partition only if its parent.
      IF NOT has_table_privilege('carbon_analyst', format('public.%I', parent), 'SELECT') THEN
        EXECUTE format('REVOKE ALL ON public.%I FROM carbon_analyst', part_name);
      END IF;
    END IF;
    month_start := month_end;
  END LOOP;
END;
$$;
REVOKE EXECUTE ON FUNCTION carbon_ensure_month_partitions(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) FROM PUBLIC;

-- Partitions made before default privileges: the analyst reads those of readable parents.
DO $$
DECLARE
  p RECORD;
BEGIN
  FOR p IN
    SELECT c.relname AS part, parent.relname AS parent
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_class parent ON parent.oid = i.inhparent
    JOIN pg_namespace n ON n.oid = parent.relnamespace AND n.nspname = 'public'
  LOOP
    IF has_table_privilege('carbon_analyst', format('public.%I', p.parent), 'SELECT') THEN
      EXECUTE format('GRANT SELECT ON public.%I TO carbon_analyst', p.part);
    END IF;
  END LOOP;
END
$$;

-- ========== FUNCTIONS PIN THEIR search_path ==========
-- usage_between is left unpinned on purpose: a SQL function with a SET clause is never
-- inlined, and inlining is what lets a month of one project read one partition. It runs with
-- its caller's rights only, and its body names schema-qualified relations.
ALTER FUNCTION reporting_now() SET search_path = pg_catalog, public;
ALTER FUNCTION equivalencies(DOUBLE PRECISION) SET search_path = pg_catalog, public;

-- ========== VIEWS MEASURED FROM reporting_now() ==========
CREATE OR REPLACE VIEW v_active_workspaces AS
SELECT * FROM v_workspace_sessions
WHERE started_at <= reporting_now() AND (ended_at IS NULL OR ended_at > reporting_now());

-- Every entity with data in the 365 days ending on reporting_now()'s day, zeros included.
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
       coalesce(u.total_gco2eq, 0) AS total_gco2eq
FROM entities e
CROSS JOIN days d
LEFT JOIN v_usage_daily u
  ON u.scope = e.scope AND u.scope_name = e.scope_name AND u.day = d.day;

COMMENT ON VIEW v_active_workspaces IS 'Workspaces holding their host at reporting_now().';
COMMENT ON VIEW v_usage_heatmap IS 'Daily totals of every entity with data in the 365 days ending on reporting_now(), days without data as zeros.';

-- ========== AGGREGATES ONLY: carbon_reporter ==========
-- Who held which host when, and users' names, are personal data (UK GDPR). carbon_analyst
-- keeps full detail; carbon_reporter sees the schema `reporting` only: the platform, projects,
-- machine types and groups, never a user, a workspace or a host.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'carbon_reporter') THEN
    CREATE ROLE carbon_reporter NOLOGIN;
  END IF;
END
$$;
CREATE SCHEMA reporting;
REVOKE ALL ON SCHEMA reporting FROM PUBLIC;

CREATE VIEW reporting.v_usage_hourly AS SELECT * FROM public.v_usage_hourly WHERE scope <> 'user';
CREATE VIEW reporting.v_usage_daily AS SELECT * FROM public.v_usage_daily WHERE scope <> 'user';
CREATE VIEW reporting.v_usage_monthly AS SELECT * FROM public.v_usage_monthly WHERE scope <> 'user';
CREATE VIEW reporting.v_usage_yearly AS SELECT * FROM public.v_usage_yearly WHERE scope <> 'user';
CREATE VIEW reporting.v_usage_total AS SELECT * FROM public.v_usage_total WHERE scope <> 'user';
CREATE VIEW reporting.v_usage_heatmap AS SELECT * FROM public.v_usage_heatmap WHERE scope <> 'user';
CREATE VIEW reporting.v_usage_equivalencies AS
  SELECT * FROM public.v_usage_equivalencies WHERE scope <> 'user';
CREATE VIEW reporting.v_coverage_hourly AS
  SELECT timestamp_utc, hosts_reported, hosts_rejected, hosts_missing, coverage
  FROM public.v_coverage_hourly;
CREATE VIEW reporting.v_coverage_daily AS SELECT * FROM public.v_coverage_daily;
CREATE VIEW reporting.v_ada_total AS SELECT * FROM public.v_ada_total;
CREATE VIEW reporting.v_ada_averages AS SELECT * FROM public.v_ada_averages;
CREATE VIEW reporting.v_project_total AS SELECT * FROM public.v_project_total;
CREATE VIEW reporting.v_project_averages AS SELECT * FROM public.v_project_averages;
CREATE VIEW reporting.v_machine_total AS SELECT * FROM public.v_machine_total;
CREATE VIEW reporting.v_machine_averages AS SELECT * FROM public.v_machine_averages;
CREATE VIEW reporting.v_group_total AS SELECT * FROM public.v_group_total;
CREATE VIEW reporting.v_group_averages AS SELECT * FROM public.v_group_averages;
CREATE VIEW reporting.carbon_intensity_hourly AS SELECT * FROM public.carbon_intensity_hourly;
CREATE VIEW reporting.equivalency AS SELECT * FROM public.equivalency;

-- The windowed totals of an aggregate scope; a user scope is refused.
CREATE FUNCTION reporting.usage_between(aggregate_scope TEXT, from_ts TIMESTAMPTZ, to_ts TIMESTAMPTZ)
RETURNS TABLE (
  scope TEXT, scope_id BIGINT, scope_name TEXT, display_name TEXT, hours BIGINT,
  estimated_hours BIGINT, busy_cpu_seconds_total DOUBLE PRECISION,
  idle_cpu_seconds_total DOUBLE PRECISION, busy_kwh DOUBLE PRECISION, idle_kwh DOUBLE PRECISION,
  total_kwh DOUBLE PRECISION, busy_gco2eq DOUBLE PRECISION, idle_gco2eq DOUBLE PRECISION,
  total_gco2eq DOUBLE PRECISION, kwh_per_hour_avg DOUBLE PRECISION,
  gco2eq_per_hour_avg DOUBLE PRECISION, intensity_gco2eq_per_kwh DOUBLE PRECISION,
  busy_share_kwh DOUBLE PRECISION, idle_share_cpu DOUBLE PRECISION
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
CREATE FUNCTION reporting.equivalencies(gco2eq DOUBLE PRECISION)
RETURNS TABLE (equivalency TEXT, description TEXT, unit TEXT, amount DOUBLE PRECISION)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
  SELECT * FROM public.equivalencies(gco2eq)
$$;
CREATE FUNCTION reporting.reporting_now() RETURNS TIMESTAMPTZ
LANGUAGE sql STABLE SET search_path = pg_catalog, public AS $$ SELECT public.reporting_now() $$;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA reporting FROM PUBLIC;

GRANT USAGE ON SCHEMA reporting TO carbon_reporter;
GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO carbon_reporter;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA reporting TO carbon_reporter;
ALTER DEFAULT PRIVILEGES IN SCHEMA reporting GRANT SELECT ON TABLES TO carbon_reporter;

-- ========== DEFAULT PRIVILEGES ==========
-- Whatever the pipeline creates later in public (a view, a partition) is readable by
-- carbon_analyst; an internal table made later must REVOKE it (partitions: see above).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO carbon_analyst;

-- ========== DOCUMENTATION ==========
COMMENT ON TABLE write_lock IS 'The pipeline''s write locks: a writer locks its rows for its transaction. Internal.';
COMMENT ON SCHEMA reporting IS 'Aggregates only (ada, project, machine, group): what carbon_reporter reads. No user, workspace or host.';
COMMENT ON FUNCTION reporting.usage_between(TEXT, TIMESTAMPTZ, TIMESTAMPTZ) IS 'Totals and hourly averages of every entity of an aggregate scope (ada, project, machine, group) over [from_ts, to_ts).';
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
    WHERE c.relkind = 'v'
  LOOP
    EXECUTE format('COMMENT ON VIEW reporting.%I IS %L', v.relname,
                   coalesce(v.comment, '') || ' (aggregate scopes only: no users)');
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION carbon_document_columns() RETURNS VOID
LANGUAGE plpgsql SET search_path = pg_catalog, public AS $$
DECLARE
  c RECORD;
BEGIN
  FOR c IN
    SELECT n.nspname, cl.relname, a.attname, g.meaning
    FROM pg_class cl
    JOIN pg_namespace n ON n.oid = cl.relnamespace AND n.nspname IN ('public', 'reporting')
    JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN public.column_glossary g ON g.column_name = a.attname
    WHERE cl.relkind IN ('r', 'p', 'v') AND NOT cl.relispartition
      AND col_description(cl.oid, a.attnum) IS NULL
  LOOP
    EXECUTE format('COMMENT ON COLUMN %I.%I.%I IS %L', c.nspname, c.relname, c.attname, c.meaning);
  END LOOP;
END;
$$;
INSERT INTO column_glossary (column_name, meaning) VALUES
  ('name', 'The name of a write lock.')
ON CONFLICT (column_name) DO NOTHING;
SELECT carbon_document_columns();
