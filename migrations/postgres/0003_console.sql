-- The console's triage finds the current attempt of a job (one not retried)
-- and sorts jobs by how long they have been in their state.
CREATE INDEX jobs_retry_of ON jobs(retry_of);
CREATE INDEX jobs_state_since ON jobs(state_since);
