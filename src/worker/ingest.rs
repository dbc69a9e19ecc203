//! Ingest: asks each batch system about the jobs in flight, fetches the logs of
//! those that ended, records their stages, results and outputs, and creates the
//! automatic retries of failed jobs (all in one transaction per pass).

use super::{Worker, WorkerError, WORKER_USER};
use crate::batch::{BatchJobId, LogBundle, Observed, ObservedState};
use crate::model::jobspec::{JobResult, StageEvent};
use crate::model::spec::StageSpec;
use crate::model::split::JobPlan;
use crate::model::state::{JobState, Lifecycle};
use crate::store::jobs::{self, JobEnd, JobRow, NewJob, Provenance};
use crate::store::states::Moves;
use crate::store::{now_ms, Tx};
use std::collections::{BTreeMap, HashMap};

/// What ingest did.
#[derive(Debug, Default)]
pub(super) struct Ingested {
    pub(super) observed: usize,
    pub(super) retried: usize,
}

/// Polls every backend for its jobs in flight and records what changed.
pub(super) async fn ingest(worker: &Worker) -> Result<Ingested, WorkerError> {
    let mut conn = worker.store.pool().acquire().await?;
    let active = jobs::jobs_in_states(
        &mut conn,
        &[JobState::Queued, JobState::Running, JobState::Held],
        None,
    )
    .await?;
    drop(conn);
    let mut by_backend: BTreeMap<&str, Vec<&JobRow>> = BTreeMap::new();
    for job in active.iter().filter(|j| j.batch_job_id.is_some()) {
        by_backend
            .entry(job.backend.as_str())
            .or_default()
            .push(job);
    }
    let mut changes: Vec<(&JobRow, Observed, Option<LogBundle>)> = Vec::new();
    for (name, jobs) in by_backend {
        let Some(backend) = worker.backend(name) else {
            continue;
        };
        let ids: Vec<BatchJobId> = jobs
            .iter()
            .map(|j| BatchJobId(j.batch_job_id.clone().unwrap_or_default()))
            .collect();
        let observed: HashMap<BatchJobId, Observed> = backend
            .poll(&ids)
            .await?
            .into_iter()
            .map(|o| (o.batch_id.clone(), o))
            .collect();
        for (job, id) in jobs.into_iter().zip(ids) {
            let Some(obs) = observed.get(&id).cloned() else {
                continue;
            };
            if !differs(job, obs.state) {
                continue;
            }
            let logs = if obs.state.is_final() && obs.state != ObservedState::Unknown {
                Some(backend.fetch_logs(&id).await?)
            } else {
                None
            };
            changes.push((job, obs, logs));
        }
    }
    if changes.is_empty() {
        return Ok(Ingested::default());
    }
    let mut specs = StageCache::default();
    let mut done = Ingested::default();
    let mut moves = Moves::<JobState>::default();
    let mut failed = Vec::new();
    let mut tx = worker.store.begin().await?;
    for (job, obs, logs) in &changes {
        done.observed += 1;
        if record(&mut tx, job, obs, logs.as_ref(), &mut moves).await? == Some(JobState::Failed) {
            failed.push(*job);
        }
    }
    moves.write(&mut tx, WORKER_USER).await?;
    for job in failed {
        let stage = specs.get(&mut tx, job.subtask_id).await?;
        if job.attempt < stage.max_attempts {
            retry(&mut tx, job).await?;
            done.retried += 1;
        }
    }
    tx.commit().await?;
    Ok(done)
}

/// True when the observation means a state change for the job.
fn differs(job: &JobRow, observed: ObservedState) -> bool {
    let now = JobState::parse(&job.state);
    !matches!(
        (now, observed),
        (Some(JobState::Queued), ObservedState::Queued)
            | (Some(JobState::Running), ObservedState::Running)
            | (Some(JobState::Held), ObservedState::Held)
            | (Some(JobState::Held), ObservedState::Queued)
            | (Some(JobState::Held), ObservedState::Running)
    )
}

/// Writes one observation; returns the final state when the job ended.
async fn record(
    tx: &mut Tx,
    job: &JobRow,
    obs: &Observed,
    logs: Option<&LogBundle>,
    moves: &mut Moves<JobState>,
) -> Result<Option<JobState>, WorkerError> {
    let now = now_ms();
    match obs.state {
        ObservedState::Queued => {}
        ObservedState::Running => {
            jobs::set_started(tx, job.id, obs.node.as_deref(), now).await?;
            moves.add(job.id, JobState::Running, "running");
        }
        ObservedState::Held => {
            let why = obs
                .reason
                .clone()
                .unwrap_or_else(|| "held by the batch system".into());
            moves.add(job.id, JobState::Held, why);
        }
        ObservedState::Succeeded
        | ObservedState::Failed
        | ObservedState::Removed
        | ObservedState::Unknown => {
            let end = job_end(job, obs, logs, now);
            jobs::record_job_end(tx, job.id, &end).await?;
            let result = logs
                .and_then(|l| l.result.as_deref())
                .and_then(|r| serde_json::from_str::<JobResult>(r).ok());
            let (to, why) = final_state(obs, &end);
            if to == JobState::Succeeded {
                register_outputs(tx, job, result.as_ref()).await?;
            }
            moves.add(job.id, to, why);
            return Ok(Some(to));
        }
    }
    Ok(None)
}

fn final_state(obs: &Observed, end: &JobEnd) -> (JobState, String) {
    match obs.state {
        ObservedState::Succeeded => (JobState::Succeeded, "succeeded".to_string()),
        ObservedState::Removed => (
            JobState::Removed,
            obs.reason.clone().unwrap_or_else(|| "removed".into()),
        ),
        ObservedState::Unknown => (
            JobState::Failed,
            "the batch system no longer knows this job".to_string(),
        ),
        _ => (
            JobState::Failed,
            end.failure.clone().unwrap_or_else(|| "failed".into()),
        ),
    }
}

/// Combines the batch system's view with the job's own result and stage records.
fn job_end(job: &JobRow, obs: &Observed, logs: Option<&LogBundle>, now: i64) -> JobEnd {
    let stages: Vec<StageEvent> = logs
        .map(|l| {
            l.stages
                .lines()
                .filter_map(|line| serde_json::from_str(line).ok())
                .collect()
        })
        .unwrap_or_default();
    let result: Option<JobResult> = logs
        .and_then(|l| l.result.as_deref())
        .and_then(|r| serde_json::from_str(r).ok());
    let planned: Option<JobPlan> = serde_json::from_str(&job.params_json).ok();
    let succeeded = obs.state == ObservedState::Succeeded;
    let events = result
        .as_ref()
        .and_then(|r| r.events)
        .or_else(|| planned.and_then(|p| p.events).filter(|_| succeeded));
    let failure = (!succeeded).then(|| {
        obs.reason
            .clone()
            .unwrap_or_else(|| failure_text(obs.exit_code, obs.signal, obs.oom))
    });
    JobEnd {
        node: obs
            .node
            .clone()
            .or_else(|| result.as_ref().map(|r| r.node.clone())),
        exit_code: obs
            .exit_code
            .or_else(|| result.as_ref().and_then(|r| r.exit_code)),
        signal: obs
            .signal
            .or_else(|| result.as_ref().and_then(|r| r.signal)),
        oom: obs.oom || result.as_ref().is_some_and(|r| r.oom),
        failure,
        events,
        started_at: result.as_ref().map(|r| r.start_ms).or(job.started_at),
        ended_at: result.as_ref().map(|r| r.end_ms).unwrap_or(now),
        stages,
    }
}

/// Words for how a job failed (D1).
pub(crate) fn failure_text(exit_code: Option<i64>, signal: Option<i64>, oom: bool) -> String {
    match (exit_code, signal, oom) {
        (_, _, true) => "out of memory".to_string(),
        (_, Some(s), _) => format!("killed by signal {s}"),
        (Some(c), _, _) => format!("exit code {c}"),
        _ => "failed".to_string(),
    }
}

/// Adds a succeeded job's outputs to the local catalog with their provenance (X11).
async fn register_outputs(
    tx: &mut Tx,
    job: &JobRow,
    result: Option<&JobResult>,
) -> Result<(), WorkerError> {
    let Some(result) = result.filter(|r| !r.outputs.is_empty()) else {
        return Ok(());
    };
    let task: i64 = sqlx::query_scalar("SELECT task_id FROM subtasks WHERE id = $1")
        .bind(job.subtask_id)
        .fetch_one(&mut **tx)
        .await?;
    for file in &result.outputs {
        let from = Provenance {
            task: Some(task),
            subtask: Some(job.subtask_id),
            job: Some(job.id),
        };
        jobs::insert_file(tx, file, from).await?;
    }
    Ok(())
}

/// Creates the next attempt of a failed job, linked to it, with the same plan.
pub(super) async fn retry(tx: &mut Tx, job: &JobRow) -> Result<i64, WorkerError> {
    retry_job(tx, job, WORKER_USER)
        .await
        .map_err(WorkerError::from)
}

/// Creates the next attempt of `job` on behalf of `who` (the worker or a resubmitting person).
pub async fn retry_job(
    tx: &mut Tx,
    job: &JobRow,
    who: &str,
) -> Result<i64, crate::store::StoreError> {
    let inputs = jobs::inputs_of_job(tx, job.id).await?;
    let why = format!("attempt {} retries J{}", job.attempt + 1, job.id);
    let id = jobs::insert_job(
        tx,
        &NewJob {
            batch_id: job.batch_id,
            subtask_id: job.subtask_id,
            seq: job.seq,
            attempt: job.attempt + 1,
            params_json: &job.params_json,
            backend: &job.backend,
            retry_of: Some(job.id),
            inputs: &inputs,
        },
        &why,
        who,
    )
    .await?;
    Ok(id)
}

/// Stage specs of subtasks, read once per pass.
#[derive(Default)]
pub(super) struct StageCache(HashMap<i64, StageSpec>);

impl StageCache {
    pub(super) async fn get(
        &mut self,
        tx: &mut Tx,
        subtask: i64,
    ) -> Result<&StageSpec, WorkerError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.0.entry(subtask) {
            let json: String = sqlx::query_scalar("SELECT spec_json FROM subtasks WHERE id = $1")
                .bind(subtask)
                .fetch_one(&mut **tx)
                .await?;
            let spec: StageSpec = serde_json::from_str(&json).map_err(|e| {
                crate::store::StoreError::Corrupt(format!("spec of S{subtask}"), e.to_string())
            })?;
            slot.insert(spec);
        }
        Ok(&self.0[&subtask])
    }
}
