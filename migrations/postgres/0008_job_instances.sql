-- Issue 15. Which instance of its batch system holds a job (local: host and
-- executor directory; HTCondor: its schedd; Slurm: its cluster), written
-- when a worker commits to submitting it: a worker asks only its own
-- instances about jobs and leaves another's as they are (NULL, for jobs
-- submitted before this column, reads as the worker's own). The kind of
-- node a job ran on (M9: the partition or node features the batch system
-- reports; `local` for the local backend).
ALTER TABLE jobs ADD COLUMN instance TEXT;
ALTER TABLE jobs ADD COLUMN node_kind TEXT;
