-- Operations jobs: a record of every run, the leases that keep one node
-- per job at a time, node heartbeats (to tell stale sessions rows), and
-- the encrypted backups devices upload of their local store.

-- One row per run of a job, scheduled or by hand. A scheduled run carries
-- its slot (the planned fire time, Unix ms); the unique index lets exactly
-- one node claim each slot. Runs by hand have no slot.
CREATE TABLE job_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job         TEXT   NOT NULL,
    slot        BIGINT,
    node        TEXT   NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    status      TEXT   NOT NULL,  -- 'running' | 'ok' | 'failed'
    counts      TEXT   NOT NULL DEFAULT '{}',  -- JSON object of counters
    error       TEXT
);
CREATE UNIQUE INDEX job_runs_slot ON job_runs(job, slot);
CREATE INDEX job_runs_job_id ON job_runs(job, id);

-- Who runs a job now, until when. Taken with a conditional update, so
-- across servers sharing a database only one holder per job at a time.
CREATE TABLE job_leases (
    job        TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Each serving node says it is alive; sessions rows of a node that
-- stopped saying so are stale.
CREATE TABLE nodes (
    node         TEXT   PRIMARY KEY,
    heartbeat_at BIGINT NOT NULL
);

-- Opaque (client-encrypted) backups of a device's local store.
CREATE TABLE device_backups (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name  TEXT   NOT NULL,
    data       BLOB  NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX device_backups_user ON device_backups(user_name, id);
