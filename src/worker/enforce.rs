//! Makes batch jobs follow their campaign and subtask, and what a person
//! asked of a job: held work's queued jobs (and running ones, when its hold
//! says so) are held in the batch system, released work released,
//! cancelled work removed; a job a person holds or removes is held or
//! removed (with that person's words in its history), and stays held when
//! its campaign is released.
//!
//! Jobs are handled per backend and remedy (one batch-system call for all of
//! them) and their states written in one transaction. A batch system that
//! refuses a call is asked again job by job; a job it still refuses, or one
//! whose state cannot move, is reported and left for the next pass, and the
//! others go ahead.

use super::{Worker, WorkerError, WORKER_USER};
use crate::batch::{BatchJobId, BatchSystem};
use crate::model::hold::JobAction;
use crate::model::ids::{EntityKind, JobId};
use crate::model::state::{CampaignState, JobState, SubtaskState};
use crate::store::jobs::forget_releases;
use crate::store::queue::{mismatched_jobs, Mismatch};
use crate::store::states::{Moves, Skipped};
use crate::store::Conn;
use std::collections::BTreeMap;

/// What to do with a job whose campaign or subtask says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Remedy {
    Hold,
    Release,
    Remove,
    Withdraw,
}

impl Remedy {
    /// The job's new state and, unless a person asked for it (whose words
    /// are then recorded), the reason.
    fn outcome(self) -> (JobState, &'static str) {
        match self {
            Remedy::Hold => (JobState::Held, "held with its campaign"),
            Remedy::Release => (JobState::Queued, "released with its campaign"),
            Remedy::Remove => (JobState::Removed, "removed: its campaign was cancelled"),
            Remedy::Withdraw => (JobState::Cancelled, "withdrawn: its campaign was cancelled"),
        }
    }

    /// The verb of a warning when the batch system refuses.
    fn verb(self) -> &'static str {
        match self {
            Remedy::Hold => "hold",
            Remedy::Release => "release",
            Remedy::Remove | Remedy::Withdraw => "remove",
        }
    }

    /// What a person asks of a job that this remedy carries out.
    fn asked(self) -> JobAction {
        match self {
            Remedy::Hold => JobAction::Hold,
            Remedy::Release => JobAction::Release,
            Remedy::Remove | Remedy::Withdraw => JobAction::Remove,
        }
    }
}

fn remedy(m: &Mismatch) -> Option<Remedy> {
    let job = m.job_state;
    let asked = m.desired_state.as_deref().and_then(JobAction::from_desired);
    let campaign_held = m.campaign_state == CampaignState::Held;
    let subtask_held = m.subtask_state == SubtaskState::Held;
    let removal = m.campaign_state == CampaignState::Cancelled
        || m.subtask_state == SubtaskState::Cancelled
        || asked == Some(JobAction::Remove);
    let held = campaign_held || subtask_held;
    let to_hold = (campaign_held && m.hold_scope.holds(job))
        || (subtask_held && matches!(job, JobState::Queued | JobState::Running))
        || asked == Some(JobAction::Hold);
    match (job, removal) {
        (JobState::Created, true) => Some(Remedy::Withdraw),
        (JobState::Queued | JobState::Running | JobState::Held, true) => Some(Remedy::Remove),
        (JobState::Queued | JobState::Running, false) if to_hold => Some(Remedy::Hold),
        (JobState::Held, false) if !held && asked != Some(JobAction::Hold) => Some(Remedy::Release),
        _ => None,
    }
}

/// True when this worker reaches the instance holding `m` (or `m` was never
/// submitted): only then may it carry out a remedy there.
fn reachable(worker: &Worker, m: &Mismatch) -> bool {
    m.batch_job_id.is_none() || worker.backend(&m.backend).is_none() || worker.reaches(m)
}

/// True when a person removed the job itself: for a job on an instance out
/// of reach, that is the operator's decision, recorded as it is.
fn removal_asked(m: &Mismatch) -> bool {
    m.desired_state.as_deref().and_then(JobAction::from_desired) == Some(JobAction::Remove)
}

/// The reason recorded for `remedy` on `m`: the person's, when they asked for it.
fn reason(remedy: Remedy, m: &Mismatch) -> String {
    let asked = m.desired_state.as_deref().and_then(JobAction::from_desired);
    match &m.desired_reason {
        Some(why) if asked == Some(remedy.asked()) => why.clone(),
        _ => remedy.outcome().1.to_string(),
    }
}

/// Applies holds, releases and removals; returns how many jobs changed.
/// Batch-system refusals go to `warnings`, state moves that cannot be made
/// to `skipped`.
pub(super) async fn follow_desired_state(
    worker: &Worker,
    conn: &mut Conn,
    skipped: &mut Skipped,
    warnings: &mut Vec<String>,
) -> Result<usize, WorkerError> {
    let mismatches = mismatched_jobs(conn).await?;
    let mut todo: BTreeMap<(&str, Remedy), Vec<&Mismatch>> = BTreeMap::new();
    let mut decided = Vec::new();
    for m in &mismatches {
        match remedy(m) {
            Some(remedy) if reachable(worker, m) => todo
                .entry((m.backend.as_str(), remedy))
                .or_default()
                .push(m),
            Some(Remedy::Remove) if removal_asked(m) => decided.push(m),
            _ => {}
        }
    }
    if todo.is_empty() && decided.is_empty() {
        return Ok(0);
    }
    let mut moves = Moves::default();
    for m in decided {
        let why = format!(
            "{} (its batch system instance {} was out of reach and was not told)",
            reason(Remedy::Remove, m),
            m.instance.as_deref().unwrap_or(&m.backend)
        );
        moves.add(m.job_id, JobState::Removed, why);
    }
    let mut released = Vec::new();
    for ((backend, remedy), jobs) in todo {
        for m in carry_out(worker.backend(backend), remedy, jobs, warnings).await {
            moves.add(m.job_id, remedy.outcome().0, reason(remedy, m));
            if remedy == Remedy::Release {
                released.push(m.job_id);
            }
        }
    }
    let noted = moves.len();
    let mut tx = worker.store.begin_on(conn).await?;
    let refused = moves.write(&mut tx, WORKER_USER).await?;
    let stuck = refused.ids_of(EntityKind::Job);
    released.retain(|id| !stuck.contains(id));
    forget_releases(&mut tx, &released).await?;
    crate::store::commit(tx).await?;
    let changed = noted - stuck.len();
    skipped.add(refused);
    Ok(changed)
}

/// Applies `remedy` to `jobs` (all of one backend) in the batch system;
/// returns the jobs done (those without a batch job, or on a backend this
/// worker does not have, need nothing there). When the batch system refuses
/// the whole list it is asked job by job, and each job it still refuses is
/// a warning and stays as it is until the next pass.
async fn carry_out<'a>(
    system: Option<&std::sync::Arc<dyn BatchSystem>>,
    remedy: Remedy,
    jobs: Vec<&'a Mismatch>,
    warnings: &mut Vec<String>,
) -> Vec<&'a Mismatch> {
    let Some(system) = system.filter(|_| remedy != Remedy::Withdraw) else {
        return jobs;
    };
    let (submitted, unsubmitted): (Vec<&Mismatch>, Vec<&Mismatch>) =
        jobs.into_iter().partition(|m| m.batch_job_id.is_some());
    let ids: Vec<BatchJobId> = submitted.iter().map(|m| batch_id(m)).collect();
    let mut done = unsubmitted;
    if ids.is_empty() || apply(system.as_ref(), remedy, &ids).await.is_ok() {
        done.extend(submitted);
        return done;
    }
    for m in submitted {
        match apply(system.as_ref(), remedy, &[batch_id(m)]).await {
            Ok(()) => done.push(m),
            Err(e) => warnings.push(format!(
                "{}: {} could not {} it ({e}); tried again next pass",
                JobId(m.job_id),
                system.name(),
                remedy.verb()
            )),
        }
    }
    done
}

fn batch_id(m: &Mismatch) -> BatchJobId {
    BatchJobId(m.batch_job_id.clone().unwrap_or_default())
}

/// One batch-system call carrying out `remedy` on `ids`.
async fn apply(
    system: &dyn BatchSystem,
    remedy: Remedy,
    ids: &[BatchJobId],
) -> Result<(), crate::batch::BatchError> {
    match remedy {
        Remedy::Hold => system.hold(ids).await,
        Remedy::Release => system.release(ids).await,
        Remedy::Remove => system.cancel(ids).await,
        Remedy::Withdraw => Ok(()),
    }
}
