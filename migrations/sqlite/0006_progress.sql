-- Progress (M1) is units done of units planned, read every second by the
-- console: each job carries the units its plan covers (the events it
-- generates, or the input files it reads) in an index with its subtask and
-- state, so a campaign's units are summed without reading job rows; each
-- subtask carries the events it generates. Keep in step with
-- ../postgres/0006_progress.sql.
ALTER TABLE jobs ADD COLUMN units BIGINT NOT NULL DEFAULT 0;
UPDATE jobs SET units =
    (SELECT COUNT(*) FROM job_inputs i WHERE i.job_id = jobs.id)
    + CASE WHEN json_valid(params_json) THEN COALESCE(json_extract(params_json, '$.events'), 0) ELSE 0 END;
DROP INDEX jobs_subtask_state;
CREATE INDEX jobs_subtask_state_units ON jobs(subtask_id, state, units);

ALTER TABLE subtasks ADD COLUMN gen_events BIGINT;
UPDATE subtasks SET gen_events = json_extract(spec_json, '$.generation.events')
    WHERE json_valid(spec_json);
