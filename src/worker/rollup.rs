//! Evaluate and release: completion criteria decide subtasks (T5); batches,
//! tasks and campaigns follow their children; subtasks whose parents all
//! succeeded are released at once (J1).

use super::{WorkerError, WORKER_USER};
use crate::model::criteria::{evaluate, Progress, Verdict};
use crate::model::ids::{EntityKind, SubtaskId};
use crate::model::spec::StageSpec;
use crate::model::state::{
    BatchState, CampaignState, JobState, Lifecycle, SubtaskState, TaskState,
};
use crate::store::files::{file_counts, output_paths};
use crate::store::jobs::{current_jobs_of_subtasks, JobRow};
use crate::store::queue::{
    child_states_of_running, releasable_subtasks, settled_subtasks, ParentTable, QueuedSubtask,
};
use crate::store::states::{Moves, Skipped};
use crate::store::Conn;
use crate::store::{StoreError, Tx};
use std::collections::HashMap;
use std::time::Duration;

/// What a roll-up did.
#[derive(Debug, Default)]
pub(super) struct RolledUp {
    /// Subtasks, batches, tasks and campaigns whose state changed.
    pub(super) changed: usize,
    /// Subtasks that succeeded (their children may be released).
    pub(super) succeeded: Vec<i64>,
    /// Settled subtasks whose check script must run before they are decided.
    pub(super) awaiting_checks: Vec<i64>,
}

/// Results of the check scripts (T5) of settled subtasks, by subtask.
pub(super) type CheckResults = HashMap<i64, bool>;

/// Decides running subtasks and rolls states up, in the caller's
/// transaction; an entity that cannot move is added to `skipped`.
pub(super) async fn roll_up(
    tx: &mut Tx<'_>,
    checks: &CheckResults,
    skipped: &mut Skipped,
) -> Result<RolledUp, WorkerError> {
    let mut rolled = decide_subtasks(tx, checks, skipped).await?;
    rolled.changed += roll_up_parents(tx, ParentTable::Tasks, skipped).await?;
    rolled.changed += roll_up_parents(tx, ParentTable::Campaigns, skipped).await?;
    Ok(rolled)
}

/// Runs the check scripts of settled subtasks that wait for one (those the
/// last roll-up named), outside any transaction: a script may take minutes
/// and the database stays free meanwhile.
pub(super) async fn run_checks(
    conn: &mut Conn,
    awaiting: &[i64],
) -> Result<CheckResults, WorkerError> {
    let mut results = CheckResults::new();
    if awaiting.is_empty() {
        return Ok(results);
    }
    for sub in settled_subtasks(conn).await? {
        if !awaiting.contains(&sub.id) {
            continue;
        }
        if let Some(script) = stage_of(&sub)?.complete_when.check_script {
            results.insert(sub.id, run_check(&script, sub.id, conn).await?);
        }
    }
    Ok(results)
}

fn stage_of(s: &QueuedSubtask) -> Result<StageSpec, WorkerError> {
    serde_json::from_str(&s.spec_json)
        .map_err(|e| StoreError::Corrupt(format!("spec of S{}", s.id), e.to_string()).into())
}

/// Decides every running subtask whose jobs have all ended, and closes
/// the batches of those that moved.
async fn decide_subtasks(
    tx: &mut Tx<'_>,
    checks: &CheckResults,
    skipped: &mut Skipped,
) -> Result<RolledUp, WorkerError> {
    let settled = settled_subtasks(tx).await?;
    let ids: Vec<i64> = settled.iter().map(|s| s.id).collect();
    let mut jobs = current_jobs_of_subtasks(tx, &ids).await?;
    let mut decisions = Vec::new();
    let mut awaiting_checks = Vec::new();
    for sub in &settled {
        let current = jobs.remove(&sub.id).unwrap_or_default();
        match decide(tx, sub, &current, checks).await? {
            Decision::To(to, why) => decisions.push((sub.id, to, why)),
            Decision::AwaitingCheck => awaiting_checks.push(sub.id),
            Decision::Undecided => {}
        }
    }
    let mut subtasks = Moves::default();
    for (id, to, why) in &decisions {
        subtasks.add(*id, *to, why.clone());
    }
    let refused = subtasks.write(tx, WORKER_USER).await?;
    let stuck = refused.ids_of(EntityKind::Subtask);
    skipped.add(refused);
    decisions.retain(|(id, _, _)| !stuck.contains(id));
    let closed = close_batches(tx, &decisions, skipped).await?;
    Ok(RolledUp {
        changed: decisions.len() + closed,
        succeeded: decisions
            .iter()
            .filter(|(_, to, _)| *to == SubtaskState::Succeeded)
            .map(|(id, _, _)| *id)
            .collect(),
        awaiting_checks,
    })
}

/// The submitted batches of decided subtasks go to `jobs_completed`, then
/// to the outcome of their subtask (T6); returns how many batches moved.
async fn close_batches(
    tx: &mut Tx<'_>,
    decided: &[(i64, SubtaskState, String)],
    skipped: &mut Skipped,
) -> Result<usize, WorkerError> {
    if decided.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = decided.iter().map(|(id, _, _)| *id).collect();
    let open_batches =
        crate::store::queue::batches_in_state(tx, &ids, BatchState::Submitted).await?;
    let mut completed = Moves::default();
    for (batch, _) in &open_batches {
        completed.add(*batch, BatchState::JobsCompleted, "every job ended");
    }
    let refused = completed.write(tx, WORKER_USER).await?;
    let stuck = refused.ids_of(EntityKind::Batch);
    skipped.add(refused);
    let mut closed = Moves::default();
    for (batch, sub) in open_batches.iter().filter(|(b, _)| !stuck.contains(b)) {
        let ok = decided
            .iter()
            .any(|(id, to, _)| id == sub && *to == SubtaskState::Succeeded);
        let (outcome, why) = batch_outcome(ok);
        closed.add(*batch, outcome, why);
    }
    skipped.add(closed.write(tx, WORKER_USER).await?);
    Ok(open_batches.len() - stuck.len())
}

/// What the completion criteria say of a settled subtask.
enum Decision {
    /// It moves to this state, for this reason.
    To(SubtaskState, String),
    /// Its check script has not run yet.
    AwaitingCheck,
    /// Not yet.
    Undecided,
}

/// The state a settled subtask goes to by its completion criteria (T5), if
/// decided; one whose check script has not run yet waits for it.
async fn decide(
    tx: &mut Tx<'_>,
    sub: &QueuedSubtask,
    jobs: &[JobRow],
    checks: &CheckResults,
) -> Result<Decision, WorkerError> {
    let stage = stage_of(sub)?;
    let mut progress = progress_of(tx, sub, jobs, stage.complete_when.counts_files()).await?;
    if progress.active > 0 {
        return Ok(Decision::Undecided);
    }
    if stage.complete_when.check_script.is_some() {
        let Some(passed) = checks.get(&sub.id) else {
            return Ok(Decision::AwaitingCheck);
        };
        progress.check_passed = Some(*passed);
    }
    if let Some(location) = &stage.complete_when.outputs_at {
        let paths = output_paths(tx, sub.id).await?;
        progress.outputs_at_reached = Some(paths.iter().all(|p| p.starts_with(location.as_str())));
    }
    let verdict = if progress.jobs == 0 {
        Verdict::Failed("it has no jobs".to_string())
    } else {
        evaluate(&stage.complete_when, &progress)
    };
    Ok(match verdict {
        Verdict::Met => Decision::To(
            SubtaskState::Succeeded,
            "completion criteria met".to_string(),
        ),
        Verdict::Failed(why) => Decision::To(
            SubtaskState::Failed,
            format!(
                "{why}; resubmit with `prodops resubmit {}`",
                SubtaskId(sub.id)
            ),
        ),
        Verdict::Running | Verdict::Waiting(_) => Decision::Undecided,
    })
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
    conn: &mut Conn,
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
async fn run_check(script: &str, subtask: i64, conn: &mut Conn) -> Result<bool, WorkerError> {
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

/// Tasks follow subtasks, campaigns follow tasks; returns how many moved.
async fn roll_up_parents(
    tx: &mut Tx<'_>,
    table: ParentTable,
    skipped: &mut Skipped,
) -> Result<usize, WorkerError> {
    let running = child_states_of_running(tx, table).await?;
    let outcomes: Vec<(i64, Outcome)> = running
        .into_iter()
        .filter_map(|(id, states)| Some((id, outcome_of(states.iter().map(String::as_str))?)))
        .collect();
    let refused = match table {
        ParentTable::Tasks => {
            let succeeded = (TaskState::Succeeded, "every subtask succeeded");
            let failed = (TaskState::Failed, "a subtask failed");
            let moves = parent_moves(&outcomes, succeeded, failed);
            moves.write(tx, WORKER_USER).await?
        }
        ParentTable::Campaigns => {
            let succeeded = (CampaignState::Succeeded, "every task succeeded");
            let failed = (CampaignState::Failed, "a task failed");
            let moves = parent_moves(&outcomes, succeeded, failed);
            moves.write(tx, WORKER_USER).await?
        }
    };
    let moved = outcomes.len() - refused.moves().len();
    skipped.add(refused);
    Ok(moved)
}

/// The moves of parents that ended: to `succeeded` or `failed`, with their reasons.
fn parent_moves<S: Lifecycle>(
    outcomes: &[(i64, Outcome)],
    succeeded: (S, &str),
    failed: (S, &str),
) -> Moves<S> {
    let mut moves = Moves::default();
    for (id, outcome) in outcomes {
        let (to, why) = match outcome {
            Outcome::Succeeded => succeeded,
            Outcome::Failed => failed,
        };
        moves.add(*id, to, why);
    }
    moves
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

/// Releases waiting subtasks whose parents all succeeded (J1); returns how
/// many. With `children_of`, only children of those (just succeeded)
/// subtasks are looked at. One that cannot move is added to `skipped`.
pub(super) async fn release_successors(
    tx: &mut Tx<'_>,
    children_of: Option<&[i64]>,
    skipped: &mut Skipped,
) -> Result<usize, WorkerError> {
    if children_of.is_some_and(|parents| parents.is_empty()) {
        return Ok(0);
    }
    let releasable = releasable_subtasks(tx, children_of).await?;
    let mut ready = Moves::default();
    for id in &releasable {
        ready.add(*id, SubtaskState::Ready, "every parent succeeded");
    }
    let refused = ready.write(tx, WORKER_USER).await?;
    let moved = releasable.len() - refused.moves().len();
    skipped.add(refused);
    Ok(moved)
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
