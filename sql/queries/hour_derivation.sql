-- What the stored hours of [since, until) were derived from (hour_derivation), for the
-- observable sources to compare with today's power model and registry.
SELECT extract(epoch FROM timestamp_utc)::bigint AS timestamp_epoch,
       power_model_version, registry_version
FROM hour_derivation
WHERE timestamp_utc >= %(since)s AND timestamp_utc < %(until)s
ORDER BY timestamp_utc
