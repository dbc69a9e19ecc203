//! After a crash: jobs left `submitting` are adopted if their batch system has
//! them, or returned to `created` if it never got them (S3). Nothing is
//! submitted twice and nothing is forgotten. Only jobs meant for this
//! worker's own instances are looked at: another instance (another host's
//! executor) may have them, and only it can say.

use super::{Worker, WorkerError, WORKER_USER};
use crate::batch::JobKey;
use crate::model::ids::JobId;
use crate::model::state::JobState;
use crate::store::jobs::{jobs_in_states, set_batch_job_ids};
use crate::store::states::{Moves, Skipped};
use crate::store::Conn;
use std::collections::BTreeMap;

/// Adopts or requeues every job caught mid-submission; returns how many.
/// One that cannot move is added to `skipped`.
pub(super) async fn adopt_or_requeue(
    worker: &Worker,
    conn: &mut Conn,
    skipped: &mut Skipped,
) -> Result<usize, WorkerError> {
    let orphans = jobs_in_states(conn, &[JobState::Submitting], None).await?;
    if orphans.is_empty() {
        return Ok(0);
    }
    let mut by_backend: BTreeMap<&str, Vec<JobKey>> = BTreeMap::new();
    for job in orphans.iter().filter(|job| worker.reaches(*job)) {
        by_backend
            .entry(job.backend.as_str())
            .or_default()
            .push(JobKey {
                job: JobId(job.id),
                attempt: job.attempt,
            });
    }
    let mut tx = worker.store.begin_on(conn).await?;
    let mut moves = Moves::expecting(&[JobState::Submitting]);
    for (name, keys) in by_backend {
        let Some(backend) = worker.backend(name) else {
            continue;
        };
        let found = backend.find(&keys).await?;
        for key in &keys {
            match found.iter().find(|s| s.key == *key) {
                Some(s) => {
                    let id = [(key.job.0, s.batch_id.0.clone())];
                    set_batch_job_ids(&mut tx, &id, backend.default_site()).await?;
                    let why = format!("adopted {} after a worker restart", s.batch_id);
                    moves.add(key.job.0, JobState::Queued, why);
                }
                None => {
                    let why = "not submitted before a worker restart; will submit again";
                    moves.add(key.job.0, JobState::Created, why);
                }
            }
        }
    }
    let moved = moves.len();
    let refused = moves.write(&mut tx, WORKER_USER).await?;
    crate::store::commit(tx).await?;
    let moved = moved - refused.moves().len();
    skipped.add(refused);
    Ok(moved)
}
