-- Workspace sessions stored for holdings that overlap [%(start)s, %(end)s): who held which host when.
SELECT
  s.workspace_ext_id AS workspace_id,
  s.hostname,
  u.ext_user_id,
  extract(epoch FROM s.started_at) AS held_from_epoch,
  extract(epoch FROM s.ended_at) AS held_until_epoch,
  extract(epoch FROM s.last_seen_at) AS last_seen_epoch
FROM workspace_session s
LEFT JOIN dim_user u USING (user_id)
WHERE s.workspace_ext_id IS NOT NULL AND s.hostname IS NOT NULL
  AND s.started_at < %(end)s AND (s.ended_at IS NULL OR s.ended_at > %(start)s)
