-- The sessions whose totals a run recomputes, locked in id order before they are corrected and
-- summed: the sessions %(ids)s written now, those of the workspaces %(ext_ids)s (whose times
-- the registry may have corrected), and every session whose time overlaps the window
-- [%(start)s, %(end)s) (a workspace gone from the registry, or moved, lost its hours of the
-- window). A run that waits here for another's recomputation sums after that one committed,
-- so whichever runs last sees every run's hours.
SELECT workspace_session_id FROM workspace_session
WHERE workspace_session_id = ANY(%(ids)s::bigint[])
   OR workspace_ext_id = ANY(%(ext_ids)s::text[])
   OR (started_at < %(end)s AND (ended_at IS NULL OR ended_at > %(start)s))
ORDER BY workspace_session_id
FOR UPDATE
