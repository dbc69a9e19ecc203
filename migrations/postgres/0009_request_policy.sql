-- Issue 15. The approved copy of each request script, by the SHA-256 of its
-- content (hex), which the request's locked spec names: jobs run this copy,
-- not the live file. And when an approved campaign may first be split: its
-- approval time plus the experiment's grace period (NULL: at once).
CREATE TABLE script_copies (
    sha256 TEXT PRIMARY KEY,
    content_hex TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    stored_at BIGINT NOT NULL
);
ALTER TABLE campaigns ADD COLUMN start_after BIGINT;
