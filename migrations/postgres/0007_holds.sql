-- Issue 14. What a campaign's hold stops (`queued`: submissions and queued
-- jobs; `running`: running jobs too; NULL when not held, and for holds made
-- before this column, which read as `queued`). A person's hold or removal of
-- one job (`held` | `removed`; NULL: the job follows its campaign) with the
-- reason the worker records when it carries it out.
ALTER TABLE campaigns ADD COLUMN hold_scope TEXT;
ALTER TABLE jobs ADD COLUMN desired_state TEXT;
ALTER TABLE jobs ADD COLUMN desired_reason TEXT;
