//! Splitting: a ready subtask becomes a batch of jobs (T4) with recorded plans
//! (MC seeds, events, input files), and its task and campaign start running.

use super::{Worker, WorkerError, WORKER_USER};
use crate::model::jobspec::OutputFile;
use crate::model::spec::{Executable, InputSpec, Spec, StageSpec};
use crate::model::split::{plan_jobs, JobPlan};
use crate::model::state::{CampaignState, SubtaskState, TaskState};
use crate::store::jobs::{self, NewJob, Provenance};
use crate::store::queue::{subtasks_in_state, QueuedSubtask};
use crate::store::states::{current_state, set_state, Moves};
use crate::store::{StoreError, Tx};
use std::collections::HashSet;

/// Splits every ready subtask of an active campaign, in one transaction; returns how many jobs were made.
pub(super) async fn split_ready(worker: &Worker) -> Result<usize, WorkerError> {
    let mut conn = worker.store.pool().acquire().await?;
    let ready = subtasks_in_state(&mut conn, SubtaskState::Ready).await?;
    drop(conn);
    let mut made = 0;
    let startable: Vec<&QueuedSubtask> = ready.iter().filter(|s| startable(s)).collect();
    if startable.is_empty() {
        return Ok(0);
    }
    let mut running = Moves::default();
    let mut parents = StartedParents::default();
    let mut tx = worker.store.begin().await?;
    for sub in startable {
        let stage: StageSpec = serde_json::from_str(&sub.spec_json)
            .map_err(|e| StoreError::Corrupt(format!("spec of S{}", sub.id), e.to_string()))?;
        match plan_subtask(worker, &mut tx, sub, &stage).await? {
            Ok(plans) => {
                let batch = batch_of(&mut tx, sub.id).await?;
                for plan in &plans {
                    insert_planned_job(&mut tx, sub, batch, &stage, plan).await?;
                }
                running.add(
                    sub.id,
                    SubtaskState::Running,
                    format!("split into {} jobs", plans.len()),
                );
                parents.start(&mut tx, sub).await?;
                made += plans.len();
            }
            Err(why) => {
                set_state(&mut tx, sub.id, SubtaskState::Running, "split", WORKER_USER).await?;
                set_state(&mut tx, sub.id, SubtaskState::Failed, &why, WORKER_USER).await?;
                parents.start(&mut tx, sub).await?;
            }
        }
    }
    running.write(&mut tx, WORKER_USER).await?;
    tx.commit().await?;
    Ok(made)
}

fn startable(sub: &QueuedSubtask) -> bool {
    matches!(sub.campaign_state.as_str(), "approved" | "running")
        && matches!(sub.task_state.as_str(), "queued" | "running")
}

/// The jobs of a subtask, or why it cannot run (a reason, not an error: the subtask fails).
async fn plan_subtask(
    worker: &Worker,
    tx: &mut Tx,
    sub: &QueuedSubtask,
    stage: &StageSpec,
) -> Result<Result<Vec<JobPlan>, String>, WorkerError> {
    if worker.backend(&stage.backend).is_none() {
        return Ok(Err(format!(
            "backend `{}` is not configured for this worker",
            stage.backend
        )));
    }
    if let Executable::Launch(_) = stage.executable {
        return Ok(Err(format!(
            "experiment launch scripts are not supported by the `{}` backend",
            stage.backend
        )));
    }
    let inputs = match input_files(tx, sub, stage).await? {
        Ok(ids) => ids,
        Err(why) => return Ok(Err(why)),
    };
    Ok(plan_jobs(stage, &inputs).map_err(|e| e.to_string()))
}

/// Input file ids: the parents' outputs, or the files the request names.
async fn input_files(
    tx: &mut Tx,
    sub: &QueuedSubtask,
    stage: &StageSpec,
) -> Result<Result<Vec<i64>, String>, WorkerError> {
    if !sub.parents.is_empty() {
        let files = jobs::outputs_of_subtasks(tx, &sub.parents).await?;
        return Ok(Ok(files.iter().map(|f| f.id).collect()));
    }
    if stage.generation.is_some() {
        return Ok(Ok(Vec::new()));
    }
    let input = match &stage.input {
        Some(input) => Some(input.clone()),
        None => campaign_input(tx, sub.campaign_id).await?,
    };
    let Some(input) = input else {
        return Ok(Err(format!("stage `{}` names no input", stage.name)));
    };
    let paths = match resolve_paths(&input) {
        Ok(paths) => paths,
        Err(why) => return Ok(Err(why)),
    };
    let mut ids = Vec::with_capacity(paths.len());
    for (path, size) in paths {
        let name = std::path::Path::new(&path)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.clone());
        let file = OutputFile { name, path, size };
        let from = Provenance {
            task: Some(sub.task_id),
            ..Provenance::default()
        };
        ids.push(jobs::insert_file(tx, &file, from).await?);
    }
    Ok(Ok(ids))
}

async fn campaign_input(tx: &mut Tx, campaign: i64) -> Result<Option<InputSpec>, WorkerError> {
    let json: String = sqlx::query_scalar("SELECT spec_json FROM campaigns WHERE id = $1")
        .bind(campaign)
        .fetch_one(&mut **tx)
        .await?;
    let spec: Spec = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("spec of C{campaign}"), e.to_string()))?;
    Ok(spec.input)
}

/// Listed files and glob matches with their sizes; every file must exist.
fn resolve_paths(input: &InputSpec) -> Result<Vec<(String, i64)>, String> {
    if let Some(dataset) = &input.dataset {
        if input.files.is_empty() && input.glob.is_none() {
            return Err(format!(
                "dataset `{dataset}` needs a file catalog, which this worker does not have: list `files` or a `glob`"
            ));
        }
    }
    let mut paths: Vec<String> = input.files.clone();
    if let Some(pattern) = &input.glob {
        let matches = glob::glob(pattern).map_err(|e| format!("input glob `{pattern}`: {e}"))?;
        paths.extend(
            matches
                .filter_map(Result::ok)
                .map(|p| p.display().to_string()),
        );
    }
    paths
        .into_iter()
        .map(|p| match std::fs::metadata(&p) {
            Ok(m) if m.is_file() => Ok((p, m.len() as i64)),
            _ => Err(format!("input file `{p}` does not exist")),
        })
        .collect()
}

/// The batch a subtask's new jobs go to: its latest, or a new one.
async fn batch_of(tx: &mut Tx, subtask: i64) -> Result<i64, WorkerError> {
    let latest = sqlx::query_scalar::<_, i64>(
        "SELECT id FROM batches WHERE subtask_id = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(subtask)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match latest {
        Some(b) => b,
        None => jobs::insert_batch(tx, subtask, WORKER_USER).await?,
    })
}

async fn insert_planned_job(
    tx: &mut Tx,
    sub: &QueuedSubtask,
    batch: i64,
    stage: &StageSpec,
    plan: &JobPlan,
) -> Result<i64, WorkerError> {
    let params = serde_json::to_string(plan).expect("a plan always serialises");
    let new = NewJob {
        batch_id: batch,
        subtask_id: sub.id,
        seq: plan.seq,
        attempt: 1,
        params_json: &params,
        backend: &stage.backend,
        retry_of: None,
        inputs: &plan.inputs,
    };
    Ok(jobs::insert_job(tx, &new, "split from its subtask", WORKER_USER).await?)
}

/// Tasks and campaigns already seen running this pass, so each is read once.
#[derive(Default)]
struct StartedParents {
    tasks: HashSet<i64>,
    campaigns: HashSet<i64>,
}

impl StartedParents {
    /// The task and campaign of a subtask that starts begin running too.
    async fn start(&mut self, tx: &mut Tx, sub: &QueuedSubtask) -> Result<(), WorkerError> {
        if self.tasks.insert(sub.task_id)
            && current_state::<TaskState>(tx, sub.task_id).await? == TaskState::Queued
        {
            set_state(
                tx,
                sub.task_id,
                TaskState::Running,
                "a subtask started",
                WORKER_USER,
            )
            .await?;
        }
        if self.campaigns.insert(sub.campaign_id)
            && current_state::<CampaignState>(tx, sub.campaign_id).await? == CampaignState::Approved
        {
            set_state(
                tx,
                sub.campaign_id,
                CampaignState::Running,
                "the worker started it",
                WORKER_USER,
            )
            .await?;
        }
        Ok(())
    }
}
