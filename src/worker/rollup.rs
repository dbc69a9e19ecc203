//! Evaluate and release: completion criteria decide subtasks (T5); batches,
//! tasks and campaigns follow their children; subtasks whose parents all
//! succeeded are released at once (J1).

use super::{Worker, WorkerError, WORKER_USER};
use crate::model::criteria::{evaluate, Progress, Verdict};
use crate::model::ids::SubtaskId;
use crate::model::spec::StageSpec;
use crate::model::state::{
    BatchState, CampaignState, JobState, Lifecycle, SubtaskState, TaskState,
};
use crate::store::jobs::{current_jobs_of_subtasks, file_counts, output_paths, JobRow};
use crate::store::queue::{
    distinct_child_states, ids_in_state, releasable_subtasks, settled_subtasks, ChildTable,
    ParentTable, QueuedSubtask,
};
use crate::store::states::{set_state, Moves};
use crate::store::StoreError;
use sqlx::AnyConnection;
use sqlx::Row;
use std::time::Duration;

/// Decides running subtasks and rolls states up; returns how many entities changed.
pub(super) async fn roll_up(worker: &Worker) -> Result<usize, WorkerError> {
    let mut changed = decide_subtasks(worker).await?;
    changed += roll_up_parents(worker, ParentTable::Tasks).await?;
    changed += roll_up_parents(worker, ParentTable::Campaigns).await?;
    Ok(changed)
}

fn stage_of(s: &QueuedSubtask) -> Result<StageSpec, WorkerError> {
    serde_json::from_str(&s.spec_json)
        .map_err(|e| StoreError::Corrupt(format!("spec of S{}", s.id), e.to_string()).into())
}

/// Decides every running subtask whose jobs have all ended, in one transaction.
async fn decide_subtasks(worker: &Worker) -> Result<usize, WorkerError> {
    let mut conn = worker.store.pool().acquire().await?;
    let settled = settled_subtasks(&mut conn).await?;
    let ids: Vec<i64> = settled.iter().map(|s| s.id).collect();
    let mut jobs = current_jobs_of_subtasks(&mut conn, &ids).await?;
    let mut decisions = Vec::new();
    for sub in &settled {
        let current = jobs.remove(&sub.id).unwrap_or_default();
        if let Some(decision) = decide(&mut conn, sub, &current).await? {
            decisions.push((sub.id, decision));
        }
    }
    drop(conn);
    if decisions.is_empty() {
        return Ok(0);
    }
    let mut subtasks = Moves::default();
    let mut batches = Moves::default();
    let mut closed = Moves::default();
    let mut tx = worker.store.begin().await?;
    let decided: Vec<i64> = decisions.iter().map(|(id, _)| *id).collect();
    let open_batches = submitted_batches_of(&mut tx, &decided).await?;
    for (id, (to, why)) in decisions {
        for (batch, _) in open_batches.iter().filter(|(_, sub)| *sub == id) {
            batches.add(*batch, BatchState::JobsCompleted, "every job ended");
            let (outcome, why) = batch_outcome(to == SubtaskState::Succeeded);
            closed.add(*batch, outcome, why);
        }
        subtasks.add(id, to, why);
    }
    let changed = subtasks.len() + batches.len();
    subtasks.write(&mut tx, WORKER_USER).await?;
    batches.write(&mut tx, WORKER_USER).await?;
    closed.write(&mut tx, WORKER_USER).await?;
    tx.commit().await?;
    Ok(changed)
}

/// The state a settled subtask goes to by its completion criteria (T5), if decided.
async fn decide(
    conn: &mut AnyConnection,
    sub: &QueuedSubtask,
    jobs: &[JobRow],
) -> Result<Option<(SubtaskState, String)>, WorkerError> {
    let stage = stage_of(sub)?;
    let mut progress = progress_of(conn, sub, jobs, stage.complete_when.counts_files()).await?;
    if progress.active > 0 {
        return Ok(None);
    }
    if let Some(script) = &stage.complete_when.check_script {
        progress.check_passed = Some(run_check(script, sub.id, conn).await?);
    }
    if let Some(location) = &stage.complete_when.outputs_at {
        let paths = output_paths(conn, sub.id).await?;
        progress.outputs_at_reached = Some(paths.iter().all(|p| p.starts_with(location.as_str())));
    }
    let verdict = if progress.jobs == 0 {
        Verdict::Failed("it has no jobs".to_string())
    } else {
        evaluate(&stage.complete_when, &progress)
    };
    Ok(match verdict {
        Verdict::Met => Some((
            SubtaskState::Succeeded,
            "completion criteria met".to_string(),
        )),
        Verdict::Failed(why) => Some((
            SubtaskState::Failed,
            format!(
                "{why}; resubmit with `prodops resubmit {}`",
                SubtaskId(sub.id)
            ),
        )),
        Verdict::Running | Verdict::Waiting(_) => None,
    })
}

/// `(batch, subtask)` of the submitted batches of `subtasks`.
async fn submitted_batches_of(
    tx: &mut crate::store::Tx,
    subtasks: &[i64],
) -> Result<Vec<(i64, i64)>, WorkerError> {
    let mut out = Vec::new();
    for chunk in subtasks.chunks(500) {
        let sql = format!(
            "SELECT id, subtask_id FROM batches WHERE state = $1 AND subtask_id IN ({}) ORDER BY id",
            crate::store::campaigns::placeholders(2, chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(BatchState::Submitted.as_str());
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(&mut **tx).await? {
            out.push((r.try_get(0)?, r.try_get(1)?));
        }
    }
    Ok(out)
}

/// Where a batch whose jobs all ended goes after `jobs_completed` (T6).
fn batch_outcome(ok: bool) -> (BatchState, &'static str) {
    if ok {
        (BatchState::Completed, "completion criteria met")
    } else {
        (BatchState::Failed, "completion criteria not met")
    }
}

/// Gathers what a subtask's current jobs achieved (file counts only when asked).
async fn progress_of(
    conn: &mut AnyConnection,
    sub: &QueuedSubtask,
    jobs: &[JobRow],
    count_files: bool,
) -> Result<Progress, WorkerError> {
    let mut p = Progress {
        jobs: jobs.len() as i64,
        signed_off: sub.signed_off,
        ..Progress::default()
    };
    for j in jobs {
        match JobState::parse(&j.state) {
            Some(JobState::Succeeded) => {
                p.succeeded += 1;
                p.events += j.events.unwrap_or(0);
            }
            Some(JobState::Failed | JobState::Removed | JobState::Cancelled) => p.failed += 1,
            _ => p.active += 1,
        }
    }
    if count_files {
        let (inputs, consumed, outputs) = file_counts(conn, sub.id).await?;
        p.inputs = inputs;
        p.inputs_consumed = consumed;
        p.outputs = outputs;
    }
    Ok(p)
}

/// Runs a check script with the subtask's outputs; true when it exits 0 within 10 minutes.
async fn run_check(
    script: &str,
    subtask: i64,
    conn: &mut AnyConnection,
) -> Result<bool, WorkerError> {
    let outputs = output_paths(conn, subtask).await?;
    let child = tokio::process::Command::new(script)
        .env("PRODOPS_SUBTASK_ID", subtask.to_string())
        .env("PRODOPS_OUTPUT_FILES", outputs.join(" "))
        .kill_on_drop(true)
        .status();
    Ok(matches!(
        tokio::time::timeout(Duration::from_secs(600), child).await,
        Ok(Ok(status)) if status.success()
    ))
}

/// Tasks follow subtasks, campaigns follow tasks.
async fn roll_up_parents(worker: &Worker, table: ParentTable) -> Result<usize, WorkerError> {
    let mut conn = worker.store.pool().acquire().await?;
    let running = ids_in_state(&mut conn, table, "running").await?;
    let mut changed = 0;
    for id in running {
        let children = match table {
            ParentTable::Tasks => ChildTable::SubtasksOfTask,
            ParentTable::Campaigns => ChildTable::TasksOfCampaign,
        };
        let states = distinct_child_states(&mut conn, children, id).await?;
        let Some(outcome) = outcome_of(states.iter().map(String::as_str)) else {
            continue;
        };
        let mut tx = worker.store.begin().await?;
        match (table, outcome) {
            (ParentTable::Tasks, Outcome::Succeeded) => {
                set_state(
                    &mut tx,
                    id,
                    TaskState::Succeeded,
                    "every subtask succeeded",
                    WORKER_USER,
                )
                .await?;
            }
            (ParentTable::Tasks, Outcome::Failed) => {
                set_state(
                    &mut tx,
                    id,
                    TaskState::Failed,
                    "a subtask failed",
                    WORKER_USER,
                )
                .await?;
            }
            (ParentTable::Campaigns, Outcome::Succeeded) => {
                set_state(
                    &mut tx,
                    id,
                    CampaignState::Succeeded,
                    "every task succeeded",
                    WORKER_USER,
                )
                .await?;
            }
            (ParentTable::Campaigns, Outcome::Failed) => {
                set_state(
                    &mut tx,
                    id,
                    CampaignState::Failed,
                    "a task failed",
                    WORKER_USER,
                )
                .await?;
            }
        }
        tx.commit().await?;
        changed += 1;
    }
    Ok(changed)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
}

/// A parent ends when no child can move any more: all succeeded, or some failed.
fn outcome_of<'a>(children: impl Iterator<Item = &'a str>) -> Option<Outcome> {
    let states: Vec<&str> = children.filter(|s| *s != "cancelled").collect();
    if states
        .iter()
        .any(|s| matches!(*s, "running" | "ready" | "queued" | "held"))
    {
        return None;
    }
    if states.iter().all(|s| *s == "succeeded") {
        return Some(Outcome::Succeeded);
    }
    states.contains(&"failed").then_some(Outcome::Failed)
}

/// Releases waiting subtasks whose parents all succeeded (J1), in one transaction; returns how many.
pub(super) async fn release_successors(worker: &Worker) -> Result<usize, WorkerError> {
    let mut conn = worker.store.pool().acquire().await?;
    let releasable = releasable_subtasks(&mut conn).await?;
    drop(conn);
    if releasable.is_empty() {
        return Ok(0);
    }
    let mut ready = Moves::default();
    for sub in &releasable {
        ready.add(sub.id, SubtaskState::Ready, "every parent succeeded");
    }
    let mut tx = worker.store.begin().await?;
    ready.write(&mut tx, WORKER_USER).await?;
    tx.commit().await?;
    Ok(releasable.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t2_parents_end_only_when_no_child_can_move() {
        assert_eq!(
            outcome_of(["succeeded", "succeeded"].into_iter()),
            Some(Outcome::Succeeded)
        );
        assert_eq!(outcome_of(["succeeded", "running"].into_iter()), None);
        assert_eq!(
            outcome_of(["failed", "waiting"].into_iter()),
            Some(Outcome::Failed)
        );
        assert_eq!(outcome_of(["failed", "ready"].into_iter()), None);
        assert_eq!(
            outcome_of(["succeeded", "cancelled"].into_iter()),
            Some(Outcome::Succeeded)
        );
    }
}
