-- prodops schema, SQLite dialect. Keep in step with ../postgres/0001_init.sql.
CREATE TABLE experiments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    auto_approve_kinds TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    dn TEXT UNIQUE,
    token_subject TEXT UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE grants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name TEXT NOT NULL REFERENCES users(name),
    role TEXT NOT NULL,
    experiment TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    UNIQUE (user_name, role, experiment, kind)
);

CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id BIGINT NOT NULL REFERENCES experiments(id),
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    priority BIGINT NOT NULL,
    physics_group TEXT,
    description TEXT,
    creator TEXT NOT NULL,
    state TEXT NOT NULL,
    state_since BIGINT NOT NULL,
    spec_json TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    approved_hash TEXT,
    approved_by TEXT,
    approved_at BIGINT,
    cloned_from BIGINT REFERENCES campaigns(id),
    consolidated_into BIGINT REFERENCES campaigns(id),
    created_at BIGINT NOT NULL
);
CREATE INDEX campaigns_queue ON campaigns(state, priority, created_at);

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign_id BIGINT NOT NULL REFERENCES campaigns(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    state_since BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX tasks_campaign ON tasks(campaign_id);

CREATE TABLE subtasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id BIGINT NOT NULL REFERENCES tasks(id),
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    state_since BIGINT NOT NULL,
    spec_json TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (task_id, name)
);

CREATE TABLE subtask_deps (
    subtask_id BIGINT NOT NULL REFERENCES subtasks(id),
    parent_id BIGINT NOT NULL REFERENCES subtasks(id),
    PRIMARY KEY (subtask_id, parent_id)
);

CREATE TABLE batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subtask_id BIGINT NOT NULL REFERENCES subtasks(id),
    seq BIGINT NOT NULL,
    state TEXT NOT NULL,
    state_since BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (subtask_id, seq)
);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    batch_id BIGINT NOT NULL REFERENCES batches(id),
    subtask_id BIGINT NOT NULL REFERENCES subtasks(id),
    seq BIGINT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    state_since BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX jobs_batch ON jobs(batch_id);
CREATE INDEX jobs_subtask_state ON jobs(subtask_id, state);

CREATE TABLE history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts BIGINT NOT NULL,
    entity_kind TEXT NOT NULL,
    entity_id BIGINT NOT NULL,
    old_state TEXT,
    new_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    user_name TEXT NOT NULL
);
CREATE INDEX history_entity ON history(entity_kind, entity_id, id);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    allowed BIGINT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_ts ON audit(ts);
