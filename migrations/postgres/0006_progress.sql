-- Progress (M1) is units done of units planned, read every second by the
-- console: each job carries the units its plan covers (the events it
-- generates, or the input files it reads) in an index with its subtask and
-- state, so a campaign's units are summed without reading job rows; each
-- subtask carries the events it generates. Keep in step with
-- ../sqlite/0006_progress.sql.
ALTER TABLE jobs ADD COLUMN units BIGINT NOT NULL DEFAULT 0;
UPDATE jobs SET units =
    (SELECT COUNT(*) FROM job_inputs i WHERE i.job_id = jobs.id)
    + COALESCE((params_json::jsonb ->> 'events')::bigint, 0);
DROP INDEX jobs_subtask_state;
CREATE INDEX jobs_subtask_state_units ON jobs(subtask_id, state, units);

ALTER TABLE subtasks ADD COLUMN gen_events BIGINT;
UPDATE subtasks SET gen_events = (spec_json::jsonb #>> '{generation,events}')::bigint;
