-- The API: totals of a scope's entities (one, or all when name is NULL) over [start, end), as
-- the role's usage_between gives them ({schema}: reporting for callers without rights), with
-- the total's equivalencies.
SELECT u.*,
       (SELECT jsonb_object_agg(e.equivalency, u.total_gco2eq / e.gco2eq_per_unit)
        FROM {schema}.equivalency e) AS equivalencies
FROM {schema}.usage_between(%(scope)s, %(start)s, %(end)s) u
WHERE %(name)s::text IS NULL OR u.scope_name = %(name)s
