-- Worker: job details (M9, M10, D1), stages, produced files (X11), the worker lease.
-- Keep in step with ../postgres/0002_worker.sql.
ALTER TABLE jobs ADD COLUMN params_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN backend TEXT NOT NULL DEFAULT 'local';
ALTER TABLE jobs ADD COLUMN site TEXT;
ALTER TABLE jobs ADD COLUMN node TEXT;
ALTER TABLE jobs ADD COLUMN batch_job_id TEXT;
ALTER TABLE jobs ADD COLUMN retry_of BIGINT REFERENCES jobs(id);
ALTER TABLE jobs ADD COLUMN current_stage TEXT;
ALTER TABLE jobs ADD COLUMN exit_code BIGINT;
ALTER TABLE jobs ADD COLUMN signal BIGINT;
ALTER TABLE jobs ADD COLUMN oom BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN failure TEXT;
ALTER TABLE jobs ADD COLUMN events BIGINT;
ALTER TABLE jobs ADD COLUMN cpu_ms BIGINT;
ALTER TABLE jobs ADD COLUMN wall_ms BIGINT;
ALTER TABLE jobs ADD COLUMN max_rss_kb BIGINT;
ALTER TABLE jobs ADD COLUMN started_at BIGINT;
ALTER TABLE jobs ADD COLUMN ended_at BIGINT;
CREATE INDEX jobs_state ON jobs(state);
CREATE INDEX jobs_batch_job_id ON jobs(batch_job_id);

ALTER TABLE subtasks ADD COLUMN signed_off_by TEXT;
ALTER TABLE subtasks ADD COLUMN signed_off_at BIGINT;

CREATE TABLE job_stages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    seq BIGINT NOT NULL,
    name TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    wall_ms BIGINT,
    cpu_ms BIGINT,
    max_rss_kb BIGINT,
    ok BIGINT,
    UNIQUE (job_id, seq)
);

CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    task_id BIGINT REFERENCES tasks(id),
    subtask_id BIGINT REFERENCES subtasks(id),
    job_id BIGINT REFERENCES jobs(id),
    created_at BIGINT NOT NULL
);
CREATE INDEX files_subtask ON files(subtask_id);
CREATE INDEX files_task ON files(task_id);

CREATE TABLE job_inputs (
    job_id BIGINT NOT NULL REFERENCES jobs(id),
    file_id BIGINT NOT NULL REFERENCES files(id),
    PRIMARY KEY (job_id, file_id)
);
CREATE INDEX job_inputs_file ON job_inputs(file_id);

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
