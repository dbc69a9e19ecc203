//! Splitting: a ready subtask becomes a batch of jobs (T4) with recorded plans
//! (MC seeds, events, input files), and its task and campaign start running.

use super::{Worker, WorkerError, WORKER_USER};
use crate::clock::now_ms;
use crate::model::ids::EntityKind;
use crate::model::jobspec::OutputFile;
use crate::model::spec::{Executable, InputSpec, StageSpec};
use crate::model::split::{plan_jobs, JobPlan};
use crate::model::state::{CampaignState, Lifecycle, SubtaskState, TaskState};
use crate::store::files::{self, Provenance};
use crate::store::jobs::{self, NewJob};
use crate::store::queue::{subtasks_in_state, QueuedSubtask};
use crate::store::scripts::{copy_of, waiting_campaigns};
use crate::store::states::{Moves, Skipped};
use crate::store::{StoreError, Tx};
use std::collections::{HashMap, HashSet};

/// Splits every ready subtask of an active campaign, in the caller's
/// transaction. A subtask (or its task or campaign) that cannot move to
/// `running` is added to `skipped`, and none of its jobs are made.
pub(super) async fn split_ready(
    worker: &Worker,
    tx: &mut Tx<'_>,
    skipped: &mut Skipped,
) -> Result<Split, WorkerError> {
    let ready = subtasks_in_state(tx, SubtaskState::Ready).await?;
    let waiting: HashSet<i64> = if ready.is_empty() {
        HashSet::new()
    } else {
        let waits = waiting_campaigns(tx, now_ms()).await?;
        waits.into_iter().map(|(id, _)| id).collect()
    };
    let startable: Vec<&QueuedSubtask> = ready
        .iter()
        .filter(|s| startable(s) && !waiting.contains(&s.campaign_id))
        .collect();
    if startable.is_empty() {
        return Ok(Split::default());
    }
    let mut parent_outputs = parents_outputs(tx, &startable).await?;
    let mut planned = Vec::new();
    let mut unplanned = Vec::new();
    for sub in &startable {
        let stage: StageSpec = serde_json::from_str(&sub.spec_json)
            .map_err(|e| StoreError::Corrupt(format!("spec of S{}", sub.id), e.to_string()))?;
        let inputs = parent_outputs.remove(&sub.id).unwrap_or_default();
        match plan_subtask(worker, tx, sub, &stage, inputs).await? {
            Ok(plans) => planned.push((*sub, stage, plans)),
            Err(why) => unplanned.push((*sub, why)),
        }
    }
    let stuck = start_subtasks(tx, &planned, &unplanned, skipped).await?;
    planned.retain(|(sub, _, _)| !stuck.contains(&sub.id));
    unplanned.retain(|(sub, _)| !stuck.contains(&sub.id));
    let made = insert_planned(tx, &planned).await?;
    let mut failed = Moves::default();
    for (sub, why) in &unplanned {
        failed.add(sub.id, SubtaskState::Failed, why.clone());
    }
    skipped.add(failed.write(tx, WORKER_USER).await?);
    let started = planned
        .iter()
        .map(|(sub, _, _)| *sub)
        .chain(unplanned.iter().map(|(sub, _)| *sub));
    start_parents(tx, started, skipped).await?;
    Ok(Split {
        jobs: made,
        failed: unplanned.len(),
    })
}

/// Ready subtasks about to be split go to `running` (the planned ones
/// saying into how many jobs); returns those that could not move (added to
/// `skipped`), whose jobs are then not made.
async fn start_subtasks(
    tx: &mut Tx<'_>,
    planned: &[(&QueuedSubtask, StageSpec, Vec<JobPlan>)],
    unplanned: &[(&QueuedSubtask, String)],
    skipped: &mut Skipped,
) -> Result<HashSet<i64>, WorkerError> {
    let mut running = Moves::expecting(&[SubtaskState::Ready]);
    for (sub, _, plans) in planned {
        let why = format!("split into {} jobs", plans.len());
        running.add(sub.id, SubtaskState::Running, why);
    }
    for (sub, _) in unplanned {
        running.add(sub.id, SubtaskState::Running, "split");
    }
    let refused = running.write(tx, WORKER_USER).await?;
    let stuck = refused.ids_of(EntityKind::Subtask);
    skipped.add(refused);
    Ok(stuck)
}

/// What a split did.
#[derive(Debug, Default)]
pub(super) struct Split {
    /// Jobs made.
    pub(super) jobs: usize,
    /// Subtasks that could not be split (and failed).
    pub(super) failed: usize,
}

/// Inserts the batches and jobs of the planned subtasks; returns how many jobs.
async fn insert_planned(
    tx: &mut Tx<'_>,
    planned: &[(&QueuedSubtask, StageSpec, Vec<JobPlan>)],
) -> Result<usize, WorkerError> {
    let ids: Vec<i64> = planned.iter().map(|(sub, _, _)| sub.id).collect();
    let mut batches = jobs::latest_batches(tx, &ids).await?;
    let without: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| !batches.contains_key(id))
        .collect();
    batches.extend(jobs::insert_batches(tx, &without, "split into jobs", WORKER_USER).await?);
    let params: Vec<Vec<String>> = planned
        .iter()
        .map(|(_, _, plans)| {
            plans
                .iter()
                .map(|plan| serde_json::to_string(plan).expect("a plan always serialises"))
                .collect()
        })
        .collect();
    let mut new_jobs = Vec::new();
    for ((sub, stage, plans), params) in planned.iter().zip(&params) {
        for (plan, params_json) in plans.iter().zip(params) {
            new_jobs.push(NewJob {
                batch_id: batches[&sub.id],
                subtask_id: sub.id,
                seq: plan.seq,
                attempt: 1,
                params_json,
                backend: &stage.backend,
                retry_of: None,
                inputs: &plan.inputs,
            });
        }
    }
    jobs::insert_split_jobs(tx, &new_jobs, "split from its subtask", WORKER_USER).await?;
    Ok(new_jobs.len())
}

/// The input files of subtasks with parents: their parents' outputs.
async fn parents_outputs(
    tx: &mut Tx<'_>,
    subs: &[&QueuedSubtask],
) -> Result<HashMap<i64, Vec<i64>>, WorkerError> {
    let mut parents: Vec<i64> = subs
        .iter()
        .flat_map(|s| s.parents.iter().copied())
        .collect();
    parents.sort_unstable();
    parents.dedup();
    let files = files::outputs_by_subtask(tx, &parents).await?;
    Ok(subs
        .iter()
        .filter(|s| !s.parents.is_empty())
        .map(|s| {
            let mut ids: Vec<i64> = s
                .parents
                .iter()
                .flat_map(|p| files.get(p).into_iter().flatten().copied())
                .collect();
            ids.sort_unstable();
            (s.id, ids)
        })
        .collect())
}

fn startable(sub: &QueuedSubtask) -> bool {
    matches!(sub.campaign_state.as_str(), "approved" | "running")
        && matches!(sub.task_state.as_str(), "queued" | "running")
}

/// The jobs of a subtask, or why it cannot run (a reason, not an error: the subtask fails).
async fn plan_subtask(
    worker: &Worker,
    tx: &mut Tx<'_>,
    sub: &QueuedSubtask,
    stage: &StageSpec,
    parent_outputs: Vec<i64>,
) -> Result<Result<Vec<JobPlan>, String>, WorkerError> {
    if worker.backend(&stage.backend).is_none() {
        return Ok(Err(format!(
            "backend `{}` is not configured for this worker",
            stage.backend
        )));
    }
    let launches = worker.backend(&stage.backend).is_some_and(|b| b.launches());
    if matches!(stage.executable, Executable::Launch(_)) && !launches {
        return Ok(Err(format!(
            "experiment launch scripts are not supported by the `{}` backend (use htcondor or jobsub)",
            stage.backend
        )));
    }
    if let Some(why) = missing_script(stage) {
        return Ok(Err(why));
    }
    if let Some(why) = missing_copy(tx, stage).await? {
        return Ok(Err(why));
    }
    let inputs = match input_files(tx, sub, stage, parent_outputs).await? {
        Ok(ids) => ids,
        Err(why) => return Ok(Err(why)),
    };
    Ok(plan_jobs(stage, &inputs).map_err(|e| e.to_string()))
}

/// Why the stage cannot start when a script it names is gone since the
/// request was filed (P4: checked again before its jobs are queued; a job
/// script's jobs then run its approved copy, not this file).
fn missing_script(stage: &StageSpec) -> Option<String> {
    let script = match &stage.executable {
        Executable::Script { path, .. } => Some(path.as_str()),
        Executable::Launch(launch) => Some(launch.command.as_str()).filter(|c| c.contains('/')),
    };
    script
        .into_iter()
        .chain(stage.complete_when.check_script.as_deref())
        .find(|path| !std::path::Path::new(path).is_file())
        .map(|path| format!("script `{path}` no longer exists (it did when the request was filed)"))
}

/// Why the stage cannot start when the approved copy of its script is not
/// in the database (its jobs would have nothing to run).
async fn missing_copy(tx: &mut Tx<'_>, stage: &StageSpec) -> Result<Option<String>, WorkerError> {
    let Executable::Script {
        sha256: Some(sha256),
        path,
        ..
    } = &stage.executable
    else {
        return Ok(None);
    };
    let present = copy_of(tx, sha256).await?.is_some();
    Ok((!present).then(|| {
        format!(
            "the approved copy of script `{path}` (sha256 {sha256}) is missing from the database"
        )
    }))
}

impl Worker {
    /// Approved campaigns still in their grace period (X6): `(campaign id,
    /// when its first jobs may be made, ms)`, soonest first. `--batch`
    /// says when to run again; the worker splits them once it has passed.
    pub async fn grace_waits(&self) -> Result<Vec<(i64, i64)>, WorkerError> {
        let mut conn = self.store.conn().await?;
        Ok(waiting_campaigns(&mut conn, now_ms()).await?)
    }
}

/// Input file ids: the parents' outputs, or the files the request names.
async fn input_files(
    tx: &mut Tx<'_>,
    sub: &QueuedSubtask,
    stage: &StageSpec,
    parent_outputs: Vec<i64>,
) -> Result<Result<Vec<i64>, String>, WorkerError> {
    if !sub.parents.is_empty() {
        return Ok(Ok(parent_outputs));
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
        ids.push(files::insert_file(tx, &file, from).await?);
    }
    Ok(Ok(ids))
}

async fn campaign_input(tx: &mut Tx<'_>, campaign: i64) -> Result<Option<InputSpec>, WorkerError> {
    Ok(crate::store::campaigns::spec_of(tx, campaign).await?.input)
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

/// The task and campaign of each subtask that started begin running too
/// (their states as read with the subtask tell whether they must); one
/// held meanwhile stays held and is added to `skipped`.
async fn start_parents<'a>(
    tx: &mut Tx<'_>,
    started: impl Iterator<Item = &'a QueuedSubtask>,
    skipped: &mut Skipped,
) -> Result<(), WorkerError> {
    let mut tasks = Moves::expecting(&[TaskState::Queued]);
    let mut campaigns = Moves::expecting(&[CampaignState::Approved]);
    let mut seen_tasks = HashSet::new();
    let mut seen_campaigns = HashSet::new();
    for sub in started {
        if sub.task_state == TaskState::Queued.as_str() && seen_tasks.insert(sub.task_id) {
            tasks.add(sub.task_id, TaskState::Running, "a subtask started");
        }
        if sub.campaign_state == CampaignState::Approved.as_str()
            && seen_campaigns.insert(sub.campaign_id)
        {
            let why = "the worker started it";
            campaigns.add(sub.campaign_id, CampaignState::Running, why);
        }
    }
    skipped.add(tasks.write(tx, WORKER_USER).await?);
    skipped.add(campaigns.write(tx, WORKER_USER).await?);
    Ok(())
}
