-- A stopped import job whose kept files (upload, staging copy, CA certificate) were
-- deleted on request (POST /api/v1/imports/{id}/discard): it can no longer be resumed, and
-- running the same import again starts a new job. The row stays as history.
ALTER TABLE import_jobs ADD COLUMN discarded_at INTEGER;
