-- The worker finds subtasks by state every pass (ready to split, running to
-- decide, waiting to release) without scanning them all.
CREATE INDEX subtasks_state ON subtasks(state);
