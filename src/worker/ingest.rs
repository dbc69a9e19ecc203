//! Ingest: asks each batch system about the jobs in flight, fetches the logs of
//! those that ended, records their stages, results and outputs, and creates the
//! automatic retries of failed jobs (all in one transaction per pass).

use super::{Worker, WorkerError, WORKER_USER};
use crate::batch::{BatchJobId, LogBundle, Observed, ObservedState};
use crate::clock::now_ms;
use crate::model::ids::EntityKind;
use crate::model::jobspec::{JobResult, OutputFile, StageEvent};
use crate::model::spec::StageSpec;
use crate::model::split::JobPlan;
use crate::model::state::{JobState, Lifecycle};
use crate::store::files::{self, Provenance};
use crate::store::jobs::{self, ActiveJob, JobEnd, JobRow, Placement};
use crate::store::states::{Moves, Skipped};
use crate::store::Conn;
use crate::store::Tx;
use std::collections::{BTreeMap, HashMap};

/// What ingest did.
#[derive(Debug, Default)]
pub(super) struct Ingested {
    /// Job state changes seen.
    pub(super) observed: usize,
    /// Retries created.
    pub(super) retried: usize,
}

/// What the batch systems said in one pass, gathered before any
/// transaction (a batch system may take seconds to answer).
pub(super) struct Observations {
    /// Jobs whose state changed, with what was seen and their records.
    changes: Vec<(JobRow, Observed, Option<LogBundle>)>,
    /// Jobs still queued, running or held afterwards.
    still_active: usize,
    /// Jobs in flight on instances this worker cannot reach, by instance:
    /// left as they are (never declared failed or lost) until a worker that
    /// reaches their instance, or an operator, decides.
    unreachable: BTreeMap<String, usize>,
}

impl Observations {
    /// How many jobs changed state.
    pub(super) fn len(&self) -> usize {
        self.changes.len()
    }

    /// Jobs still queued, running or held after these changes.
    pub(super) fn still_active(&self) -> usize {
        self.still_active
    }

    /// Jobs in flight on instances this worker cannot reach, by instance.
    pub(super) fn unreachable(&self) -> &BTreeMap<String, usize> {
        &self.unreachable
    }
}

/// Polls every backend for its jobs in flight.
pub(super) async fn observe(worker: &Worker, conn: &mut Conn) -> Result<Observations, WorkerError> {
    let (active, elsewhere): (Vec<ActiveJob>, Vec<ActiveJob>) = jobs::active_jobs(conn)
        .await?
        .into_iter()
        .partition(|job| worker.reaches(job));
    let mut unreachable = BTreeMap::new();
    for job in &elsewhere {
        *unreachable.entry(held_by(job)).or_default() += 1;
    }
    let observed = observe_changes(worker, &active).await?;
    let ended = observed
        .iter()
        .filter(|(_, obs, _)| obs.state.is_final())
        .count();
    let ids: Vec<i64> = observed.iter().map(|(id, _, _)| *id).collect();
    let mut rows = jobs::jobs_by_id(conn, &ids).await?;
    let changes = observed
        .into_iter()
        .filter_map(|(id, obs, logs)| Some((rows.remove(&id)?, obs, logs)))
        .collect();
    Ok(Observations {
        changes,
        still_active: active.len() + elsewhere.len() - ended,
        unreachable,
    })
}

/// Records what was observed (job states, stages, results, outputs) and
/// creates the automatic retries of failed jobs, in the caller's
/// transaction. A job whose state cannot move is added to `skipped` and
/// nothing else of its observation is written (it is seen again next pass).
pub(super) async fn record(
    tx: &mut Tx<'_>,
    observed: &Observations,
    skipped: &mut Skipped,
) -> Result<Ingested, WorkerError> {
    let mut done = Ingested::default();
    if observed.changes.is_empty() {
        return Ok(done);
    }
    let mut changes = Changes::default();
    for (job, obs, logs) in &observed.changes {
        changes.add(job, obs, logs.as_ref());
    }
    let mut specs = StageCache::default();
    let (moved, failed) = changes.write(tx, skipped).await?;
    done.observed = moved;
    for job in failed {
        let stage = specs.get(tx, job.subtask_id).await?;
        if job.attempt < stage.max_attempts {
            retry(tx, job).await?;
            done.retried += 1;
        }
    }
    Ok(done)
}

/// The instance holding `job`, or its backend when none is recorded.
pub(super) fn held_by(job: &ActiveJob) -> String {
    job.instance.clone().unwrap_or_else(|| job.backend.clone())
}

/// Asks each backend about its jobs in flight: those whose state changed,
/// with the records of those that ended.
async fn observe_changes(
    worker: &Worker,
    active: &[ActiveJob],
) -> Result<Vec<(i64, Observed, Option<LogBundle>)>, WorkerError> {
    let mut by_backend: BTreeMap<&str, Vec<&ActiveJob>> = BTreeMap::new();
    for job in active.iter().filter(|j| j.batch_job_id.is_some()) {
        by_backend
            .entry(job.backend.as_str())
            .or_default()
            .push(job);
    }
    let mut changes = Vec::new();
    for (name, jobs) in by_backend {
        let Some(backend) = worker.backend(name) else {
            continue;
        };
        let ids: Vec<BatchJobId> = jobs
            .iter()
            .map(|j| BatchJobId(j.batch_job_id.clone().unwrap_or_default()))
            .collect();
        let mut observed: HashMap<BatchJobId, Observed> = backend
            .poll(&ids)
            .await?
            .into_iter()
            .map(|o| (o.batch_id.clone(), o))
            .collect();
        let changed: Vec<(i64, Observed)> = jobs
            .iter()
            .zip(&ids)
            .filter_map(|(job, id)| Some((job, observed.remove(id)?)))
            .filter(|(job, obs)| differs(&job.state, obs.state))
            .map(|(job, obs)| (job.id, obs))
            .collect();
        let ended: Vec<BatchJobId> = changed
            .iter()
            .filter(|(_, obs)| has_records(obs.state))
            .map(|(_, obs)| obs.batch_id.clone())
            .collect();
        let mut records = backend.fetch_records(&ended).await?.into_iter();
        for (job, obs) in changed {
            let logs = if has_records(obs.state) {
                records.next()
            } else {
                None
            };
            changes.push((job, obs, logs));
        }
    }
    Ok(changes)
}

/// True for final states whose stage records and result can be fetched.
fn has_records(state: ObservedState) -> bool {
    state.is_final() && state != ObservedState::Unknown
}

/// What one ingest writes, gathered first and written together.
#[derive(Default)]
struct Changes<'a> {
    started: Vec<Placement>,
    ends: Vec<(i64, JobEnd)>,
    outputs: Vec<(&'a JobRow, Vec<OutputFile>)>,
    moves: Moves<JobState>,
    failed: Vec<&'a JobRow>,
}

impl<'a> Changes<'a> {
    /// Notes one observation of `job`.
    fn add(&mut self, job: &'a JobRow, obs: &Observed, logs: Option<&LogBundle>) {
        let now = now_ms();
        match obs.state {
            ObservedState::Queued => {
                if JobState::parse(&job.state) == Some(JobState::Running) {
                    let why = obs
                        .reason
                        .clone()
                        .unwrap_or_else(|| "back in the batch system's queue".into());
                    self.moves.add(job.id, JobState::Queued, why);
                }
            }
            ObservedState::Running => {
                self.started.push(Placement {
                    job: job.id,
                    node: obs.node.clone(),
                    site: obs.site.clone(),
                    node_kind: obs.node_kind.clone(),
                });
                self.moves.add(job.id, JobState::Running, "running");
            }
            ObservedState::Held => {
                let why = obs
                    .reason
                    .clone()
                    .unwrap_or_else(|| "held by the batch system".into());
                self.moves.add(job.id, JobState::Held, why);
            }
            ObservedState::Succeeded
            | ObservedState::Failed
            | ObservedState::Removed
            | ObservedState::Unknown => {
                let end = job_end(job, obs, logs, now);
                let (to, why) = final_state(obs, &end);
                if to == JobState::Succeeded {
                    let result = logs
                        .and_then(|l| l.result.as_deref())
                        .and_then(|r| serde_json::from_str::<JobResult>(r).ok());
                    if let Some(result) = result.filter(|r| !r.outputs.is_empty()) {
                        self.outputs.push((job, result.outputs));
                    }
                }
                if to == JobState::Failed {
                    self.failed.push(job);
                }
                self.ends.push((job.id, end));
                self.moves.add(job.id, to, why);
            }
        }
    }

    /// Writes the state moves, then everything else noted of the jobs that
    /// moved (a skipped job's end, outputs and retry wait for the pass that
    /// can record it); returns how many moved and the jobs that failed.
    async fn write(
        mut self,
        tx: &mut Tx<'_>,
        skipped: &mut Skipped,
    ) -> Result<(usize, Vec<&'a JobRow>), WorkerError> {
        let noted = self.moves.len();
        let refused = std::mem::take(&mut self.moves)
            .write(tx, WORKER_USER)
            .await?;
        let stuck = refused.ids_of(EntityKind::Job);
        skipped.add(refused);
        if !stuck.is_empty() {
            self.started.retain(|p| !stuck.contains(&p.job));
            self.ends.retain(|(id, _)| !stuck.contains(id));
            self.outputs.retain(|(job, _)| !stuck.contains(&job.id));
            self.failed.retain(|job| !stuck.contains(&job.id));
        }
        jobs::set_started(tx, &self.started, now_ms()).await?;
        jobs::record_job_ends(tx, &self.ends).await?;
        register_outputs(tx, &self.outputs).await?;
        Ok((noted - stuck.len(), self.failed))
    }
}

/// True when the observation means a state change for a job in `state`.
fn differs(state: &str, observed: ObservedState) -> bool {
    let now = JobState::parse(state);
    !matches!(
        (now, observed),
        (Some(JobState::Queued), ObservedState::Queued)
            | (Some(JobState::Running), ObservedState::Running)
            | (Some(JobState::Held), ObservedState::Held)
            | (Some(JobState::Held), ObservedState::Queued)
            | (Some(JobState::Held), ObservedState::Running)
    )
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
        site: obs.site.clone(),
        node_kind: obs.node_kind.clone(),
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

/// Adds succeeded jobs' outputs to the local catalog with their provenance (X11).
async fn register_outputs(
    tx: &mut Tx<'_>,
    outputs: &[(&JobRow, Vec<OutputFile>)],
) -> Result<(), WorkerError> {
    if outputs.is_empty() {
        return Ok(());
    }
    let mut subtasks: Vec<i64> = outputs.iter().map(|(job, _)| job.subtask_id).collect();
    subtasks.sort_unstable();
    subtasks.dedup();
    let tasks = jobs::tasks_of_subtasks(tx, &subtasks).await?;
    let files: Vec<(OutputFile, Provenance)> = outputs
        .iter()
        .flat_map(|(job, files)| {
            let from = Provenance {
                task: tasks.get(&job.subtask_id).copied(),
                subtask: Some(job.subtask_id),
                job: Some(job.id),
            };
            files.iter().map(move |file| (file.clone(), from))
        })
        .collect();
    files::insert_files(tx, &files).await?;
    Ok(())
}

/// Creates the next attempt of a failed job, linked to it, with the same plan.
pub(super) async fn retry(tx: &mut Tx<'_>, job: &JobRow) -> Result<i64, WorkerError> {
    jobs::retry_job(tx, job, WORKER_USER)
        .await
        .map_err(WorkerError::from)
}

/// Stage specs of subtasks, read once per pass.
#[derive(Default)]
pub(super) struct StageCache(HashMap<i64, StageSpec>);

impl StageCache {
    pub(super) async fn get(
        &mut self,
        tx: &mut Tx<'_>,
        subtask: i64,
    ) -> Result<&StageSpec, WorkerError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.0.entry(subtask) {
            let mut specs = crate::store::queue::stage_specs(tx, &[subtask]).await?;
            let spec = specs
                .remove(&subtask)
                .ok_or_else(|| crate::store::StoreError::NotFound(format!("S{subtask}")))?;
            slot.insert(spec);
        }
        Ok(&self.0[&subtask])
    }
}
