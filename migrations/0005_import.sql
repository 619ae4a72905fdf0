-- Historic mailbox imports (`postern import`, API import jobs): one row per job, with the
-- checkpoint committed in the same transaction as each batch of messages, so a killed
-- import resumes exactly where its last batch ended.
CREATE TABLE import_jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id       INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind             TEXT NOT NULL CHECK (kind IN ('mbox', 'maildir', 'eml', 'imap')),
    -- What a human reads: the file, folder or server (never a password).
    source           TEXT NOT NULL,
    -- Identity of the source and options: the same import run again finds its job.
    source_key       TEXT NOT NULL,
    options          TEXT NOT NULL DEFAULT '{}',   -- JSON: folders, since, until, open_newest
    status           TEXT NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'interrupted', 'cancelled', 'failed', 'completed')),
    -- Source position of the last message of the last committed batch (for people: the
    -- import resumes after the first imported + duplicates + quarantined staged messages).
    checkpoint       TEXT,
    -- Messages in the staging file once the first pass (reading the source) is complete;
    -- NULL while it is not.
    staged           INTEGER,
    seen             INTEGER NOT NULL DEFAULT 0,
    imported         INTEGER NOT NULL DEFAULT 0,
    duplicates       INTEGER NOT NULL DEFAULT 0,
    quarantined      INTEGER NOT NULL DEFAULT 0,
    skipped          INTEGER NOT NULL DEFAULT 0,   -- outside --since/--until
    bytes            INTEGER NOT NULL DEFAULT 0,
    tickets_created  INTEGER,
    tickets_merged   INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    created_by       TEXT,                          -- 'cli' or the API principal
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX import_jobs_account ON import_jobs(account_id, id DESC);
CREATE INDEX import_jobs_source ON import_jobs(account_id, source_key, status);

-- Which import created a ticket or brought a message: the summary counts them, and
-- `--open-newest` reopens only tickets the import created.
ALTER TABLE tickets ADD COLUMN import_job_id INTEGER REFERENCES import_jobs(id);
ALTER TABLE messages ADD COLUMN import_job_id INTEGER REFERENCES import_jobs(id);
CREATE INDEX tickets_import_job ON tickets(import_job_id) WHERE import_job_id IS NOT NULL;
CREATE INDEX messages_import_job ON messages(import_job_id) WHERE import_job_id IS NOT NULL;
