-- 0011: the asset graph. Every table the pipeline writes is a Dagster asset whose description
-- and column schema are these COMMENTs (sql/catalog.json, generated from them); the two
-- tables that had none get theirs. And what each hour was derived from: the power model's
-- version its host usage used, and the registry's version its attribution used, so that the
-- sources' observations can tell which hours a correction changes.

COMMENT ON TABLE public.host_cpu_hourly IS 'Busy and idle CPU seconds of every host in every hour, as Prometheus reported them (increase(node_cpu_seconds_total[1h]) at the end of the hour, summed over cpus and modes), with the host''s labels and size. The record: a new answer adds and corrects host-hours but never deletes those Prometheus no longer has.';
COMMENT ON TABLE public.host_cpu_rejected IS 'Host-hours Prometheus reported with impossible numbers (not finite, negative, above the host''s capacity), quarantined: left out of every fact, with the reason.';
COMMENT ON TABLE public.carbon_intensity_hourly IS 'GB national carbon intensity of every UTC hour: the mean of its two half-hour periods from the Carbon Intensity API, each its actual else its forecast, with provenance (actual, forecast or fallback). A stored hour is only ever replaced by one of the same or better provenance.';
COMMENT ON TABLE public.fact_usage_instance IS 'Electricity [kWh] and carbon [gCO2eq] of every host-hour. The seed''s footprint: busy and idle W/core of the host''s machine type x CPU seconds / 3.6e6, times the hour''s national intensity; beside it the full one: memory, the site''s PUE, the server''s embodied carbon, and the site''s regional grid (docs/methodology.md).';
COMMENT ON TABLE public.fact_usage_ada IS 'Hourly electricity and carbon of the whole platform (Ada): the sum of every host-hour, seed and full footprints, with how many host-hours are estimated or unknown.';
COMMENT ON TABLE public.fact_usage_project IS 'Hourly electricity and carbon per cloud project: the host-hours of the hosts labelled with the project in that hour.';
COMMENT ON TABLE public.fact_usage_machine IS 'Hourly electricity and carbon per machine type: the host-hours of the hosts of that type (its power model) in that hour.';
COMMENT ON TABLE public.fact_usage_group IS 'Hourly electricity and carbon per group (a project and machine type pair): the host-hours of its hosts in that hour.';
COMMENT ON TABLE public.fact_usage_user IS 'Hourly electricity and carbon per user: each host-hour goes to the workspaces that held the host, in proportion to how long, and so to their owners; the rest to the user unattributed.';
COMMENT ON TABLE public.fact_usage_workspace IS 'Hourly electricity and carbon per workspace: its share of its host''s hour (how long it held the host), with the host''s project and machine type in that hour.';
COMMENT ON TABLE public.workspace_session IS 'One row per registry workspace: who held which host from when to when (as the registry last showed it, or until last seen once purged), its labels, and its accumulated energy and carbon over every hour stored.';

CREATE TABLE public.hour_derivation (
  timestamp_utc TIMESTAMPTZ PRIMARY KEY,
  power_model_version TEXT,
  registry_version TEXT
);
COMMENT ON TABLE public.hour_derivation IS 'What each hour''s numbers were derived from: the version of the power model and sites its host usage used, and of the registry''s holdings its attribution used (written after each window''s commit). The observable sources power_model and workspace_registry compare them with today''s to find the hours a change affects.';
INSERT INTO public.column_glossary (column_name, meaning) VALUES
  ('power_model_version', 'A digest of the power model and sites (watts, memory, embodied carbon, PUE, regions) the hour''s host usage was computed with; NULL before migration 0011.'),
  ('registry_version', 'A digest of the registry''s holdings (which workspace and user held which host, and for how long) the hour''s attribution used; NULL before migration 0011.')
ON CONFLICT (column_name) DO UPDATE SET meaning = EXCLUDED.meaning;
SELECT public.carbon_document_columns();
GRANT SELECT ON public.hour_derivation TO carbon_analyst;
