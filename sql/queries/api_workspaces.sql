-- The API: workspaces with what they have accumulated, all or one user's or one workspace,
-- active ones only if asked (as carbon_analyst; the service filters by the caller's rights).
SELECT w.workspace_ext_id AS workspace_id, w.hostname, w.ext_user_id AS owner,
       w.user_name AS owner_name, w.cloud_project_name, w.machine_name, w.group_name,
       w.started_at, w.ended_at, w.active, w.total_kwh, w.total_gco2eq, w.idle_share_cpu
FROM public.v_workspace_sessions w
WHERE (%(owner)s::text IS NULL OR w.ext_user_id = %(owner)s)
  AND (%(workspace)s::text IS NULL OR w.workspace_ext_id = %(workspace)s)
  AND (NOT %(active_only)s OR w.active)
ORDER BY w.started_at, w.workspace_ext_id
