//! Makes batch jobs follow their campaign and subtask: held work is held in the
//! batch system, released work released, cancelled work removed.

use super::{Worker, WorkerError, WORKER_USER};
use crate::batch::BatchJobId;
use crate::model::state::{JobState, Lifecycle};
use crate::store::queue::{mismatched_jobs, Mismatch};
use crate::store::states::set_state;
use sqlx::AnyConnection;

/// What to do with a job whose campaign or subtask says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Remedy {
    Hold,
    Release,
    Remove,
    Withdraw,
}

fn remedy(m: &Mismatch) -> Option<Remedy> {
    let cancelled = m.campaign_state == "cancelled" || m.subtask_state == "cancelled";
    let held = m.campaign_state == "held" || m.subtask_state == "held";
    match (JobState::parse(&m.job_state)?, cancelled, held) {
        (JobState::Created, true, _) => Some(Remedy::Withdraw),
        (JobState::Queued | JobState::Running | JobState::Held, true, _) => Some(Remedy::Remove),
        (JobState::Queued | JobState::Running, false, true) => Some(Remedy::Hold),
        (JobState::Held, false, false) => Some(Remedy::Release),
        _ => None,
    }
}

/// Applies holds, releases and removals; returns how many jobs changed.
pub(super) async fn follow_desired_state(
    worker: &Worker,
    conn: &mut AnyConnection,
) -> Result<usize, WorkerError> {
    let mismatches = mismatched_jobs(conn).await?;
    let mut changed = 0;
    for m in &mismatches {
        let Some(remedy) = remedy(m) else { continue };
        if let (Some(backend), Some(id)) = (worker.backend(&m.backend), &m.batch_job_id) {
            let ids = [BatchJobId(id.clone())];
            match remedy {
                Remedy::Hold => backend.hold(&ids).await?,
                Remedy::Release => backend.release(&ids).await?,
                Remedy::Remove => backend.cancel(&ids).await?,
                Remedy::Withdraw => {}
            }
        }
        let (to, why) = match remedy {
            Remedy::Hold => (JobState::Held, "held with its campaign"),
            Remedy::Release => (JobState::Queued, "released with its campaign"),
            Remedy::Remove => (JobState::Removed, "removed: its campaign was cancelled"),
            Remedy::Withdraw => (JobState::Cancelled, "withdrawn: its campaign was cancelled"),
        };
        let mut tx = worker.store.begin_on(conn).await?;
        set_state(&mut tx, m.job_id, to, why, WORKER_USER).await?;
        tx.commit().await?;
        changed += 1;
    }
    Ok(changed)
}
