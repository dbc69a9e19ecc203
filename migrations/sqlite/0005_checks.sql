-- Pre-launch checks (P1-P4, J3, J10): each configured check's latest
-- verdict. Submissions its scope covers wait while it fails; a change of
-- verdict is a state change (history, entity_kind 'check', passing/failing).
CREATE TABLE checks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    experiment TEXT,
    backend TEXT,
    passing BIGINT NOT NULL,
    detail TEXT NOT NULL,
    checked_at BIGINT NOT NULL,
    since BIGINT NOT NULL
);
