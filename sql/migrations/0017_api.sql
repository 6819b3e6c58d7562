-- 0017: the API's role and what it names (docs/api.md; issue 36).
-- carbon_api: the role of the API service's login. It reads nothing of its own: it is a member
-- of carbon_reporter and carbon_analyst, and each request runs under one of them (SET LOCAL
-- ROLE): the reporter's for anything a caller without rights asks, the analyst's only for a
-- signed-in person's own usage or an analyst's question. It writes nothing.
-- Give the service a login with: CREATE ROLE carbon_api_service LOGIN PASSWORD '…' IN ROLE carbon_api;
-- Roles belong to the whole server: a DBA may have made it already (the pipeline's role then
-- needs no CREATEROLE), and two databases migrating at once may both try.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'carbon_api') THEN
    CREATE ROLE carbon_api NOLOGIN;
  END IF;
  IF NOT pg_has_role('carbon_api', 'carbon_reporter', 'MEMBER')
     OR NOT pg_has_role('carbon_api', 'carbon_analyst', 'MEMBER') THEN
    GRANT carbon_reporter, carbon_analyst TO carbon_api;
  END IF;
EXCEPTION
  WHEN duplicate_object OR unique_violation THEN
    NULL;
  WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'the role carbon_api (the API''s) is missing, and the migrating role % may not make it', current_user
      USING HINT = 'As a DBA, run: CREATE ROLE carbon_api NOLOGIN; GRANT carbon_reporter, carbon_analyst TO carbon_api; then run the migrations again.';
END
$$;

-- The groups with their project and machine type: every one for analysts, those ever shown
-- to carbon_reporter for it (a group it has seen a row of, alone).
CREATE VIEW public.v_groups AS
SELECT g.group_id, g.group_name, g.cloud_project_name, g.machine_name
FROM public.dim_group g;
COMMENT ON VIEW public.v_groups IS 'Every group (a project''s machine type: {cloud_project_name}_{machine_name}) with its project and machine type.';
GRANT SELECT ON public.v_groups TO carbon_analyst;

CREATE VIEW reporting.v_groups WITH (security_barrier = true) AS
SELECT g.group_id, g.group_name, g.cloud_project_name, g.machine_name
FROM public.dim_group g
WHERE EXISTS (SELECT FROM public.reporting_rollup r
              WHERE r.grain = 'lifetime' AND r.scope = 'group' AND r.entity_id = g.group_id);
COMMENT ON VIEW reporting.v_groups IS 'The groups carbon_reporter has been shown a row of (alone, in some hour), with their project and machine type.';
GRANT SELECT ON reporting.v_groups TO carbon_reporter;

INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('group_id', 'Id of the group in dim_group.'),
  ('group_name', 'The group: {cloud_project_name}_{machine_name}.'),
  ('cloud_project_name', 'The OpenStack project (IDAaaS = ISIS, CDAaaS = CLF, ...).'),
  ('machine_name', 'The machine type inside a project (Muon, SANS, ...).')
ON CONFLICT (column_name) DO NOTHING;
-- The latest vintage of each area by a backward scan of the forecast's key per region (the
-- newest issued_at at or before now), not by aggregating the last 48 hours' periods: the
-- intensity routes read it on every request (bench (h)'s 90 days of vintages: 52 ms -> ~1 ms).
CREATE OR REPLACE VIEW public.v_forecast_latest AS
WITH area AS (
  SELECT 'national'::text AS area, NULL::text AS site, 0 AS region_id
  UNION ALL
  SELECT 'regional'::text, s.site, s.region_id FROM public.forecast_site s
),
vintage AS (
  SELECT r.region_id,
         (SELECT f.issued_at FROM public.intensity_forecast f
          WHERE f.region_id = r.region_id AND f.issued_at <= public.reporting_now()
            AND f.issued_at > public.reporting_now() - interval '48 hours'
          ORDER BY f.issued_at DESC LIMIT 1) AS issued_at
  FROM (SELECT DISTINCT a.region_id FROM area a) r
)
SELECT a.area, a.site, a.region_id, f.issued_at, f.period_from,
       f.period_from + interval '30 minutes' AS period_to, f.forecast_gco2eq_per_kwh,
       f.intensity_index
FROM area a
JOIN vintage v ON v.region_id = a.region_id
JOIN public.intensity_forecast f ON f.region_id = v.region_id AND f.issued_at = v.issued_at
WHERE f.period_from + interval '30 minutes' > public.reporting_now()
  AND f.period_from < public.reporting_now() + interval '48 hours';

SELECT public.carbon_document_columns();
