//! Submission within throttles (X5), crash-safe: a `submitting` intent is
//! committed before the batch system is called, and the batch job id after it
//! answers. A crash in between is resolved by `recover` on the next pass.

use super::checks::CheckBoard;
use super::{Worker, WorkerError, WORKER_USER};
use crate::batch::{BatchSystem, JobGroup, JobKey, JobLaunch, Submitted};
use crate::failpoint;
use crate::model::check::CheckSpec;
use crate::model::ids::JobId;
use crate::model::jobspec::{JobRunSpec, ShippedScript};
use crate::model::spec::{Executable, StageSpec};
use crate::model::split::JobPlan;
use crate::model::state::{BatchState, JobState, Lifecycle};
use crate::store::files::files_by_id;
use crate::store::jobs::{set_batch_job_ids, set_instances};
use crate::store::queue::{
    desired_sites, in_flight, stage_specs, submittable_jobs, InFlight, Submittable,
};
use crate::store::scripts::copy_of;
use crate::store::states::{move_states, move_states_from, states_of, Skipped};
use crate::store::Conn;
use crate::store::StoreError;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a submission phase did.
#[derive(Debug, Default)]
pub(super) struct Submissions {
    /// Jobs the batch systems accepted.
    pub(super) jobs: usize,
    /// Jobs in flight afterwards.
    pub(super) in_flight: usize,
    /// Refusals (the jobs go back to `created` and are tried again).
    pub(super) warnings: Vec<String>,
    /// Jobs ready to go that stayed `created`: a failing pre-launch check
    /// covers them, their backend is not configured here, or it refused them.
    pub(super) held_back: usize,
}

/// Submits created jobs in queue order within throttles. A job that cannot
/// move (to `submitting`, then `queued` or back to `created`) is added to
/// `skipped`; one that could not take its intent is not submitted.
pub(super) async fn submit(
    worker: &Worker,
    conn: &mut Conn,
    board: &mut CheckBoard,
    skipped: &mut Skipped,
) -> Result<Submissions, WorkerError> {
    let mut flight = in_flight(conn).await?;
    let before = flight.total;
    let mut candidates =
        submittable_jobs(conn, worker.config.throttles.per_pass as i64 * 4).await?;
    let offered = candidates.len();
    let mut held = without_backend(worker, &mut candidates);
    if !candidates.is_empty() && !worker.checks.is_empty() {
        let failing = board.failing(worker, conn).await?;
        held.extend(held_by_checks(&failing, &mut candidates));
    }
    let held_back = offered - candidates.len();
    let subtasks: Vec<i64> = candidates.iter().map(|job| job.subtask_id).collect();
    let desired = desired_sites(&stage_specs(conn, &subtasks).await?);
    let mut picked = within_throttles(worker, &mut flight, &desired, candidates);
    if !picked.is_empty() {
        let refused = record_intents(worker, conn, &picked).await?;
        let stuck = refused.ids_of(crate::model::ids::EntityKind::Job);
        skipped.add(refused);
        picked.retain(|job| !stuck.contains(&job.job_id));
    }
    if picked.is_empty() {
        return Ok(Submissions {
            in_flight: before,
            warnings: held,
            held_back,
            ..Submissions::default()
        });
    }
    failpoint::hit("submit:after-intent");
    let mut groups: BTreeMap<(String, i64), Vec<&Submittable>> = BTreeMap::new();
    for job in &picked {
        groups
            .entry((job.backend.clone(), job.subtask_id))
            .or_default()
            .push(job);
    }
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let subtasks: Vec<i64> = groups.keys().map(|(_, subtask)| *subtask).collect();
    let specs = stage_specs(conn, &subtasks).await?;
    for ((backend_name, subtask), jobs) in groups {
        let backend = worker
            .backend(&backend_name)
            .expect("jobs of backends this worker lacks were left out");
        let stage = specs
            .get(&subtask)
            .ok_or_else(|| StoreError::NotFound(format!("S{subtask}")))?;
        let script = match shipped_script(conn, stage).await? {
            Ok(script) => script,
            Err(why) => {
                refused.push((jobs, why));
                continue;
            }
        };
        let group = job_group(worker, conn, stage, &jobs, script.as_ref()).await?;
        let answer = match &stage.executable {
            Executable::Launch(launch) => backend.launch(launch, &group.jobs).await,
            Executable::Script { .. } => backend.submit(&group).await,
        };
        match answer {
            Ok(ids) => {
                failpoint::hit("submit:after-backend");
                accepted.push((backend, ids, jobs));
            }
            Err(e) => refused.push((jobs, e.to_string())),
        }
    }
    let submitted = record_submissions(worker, conn, &accepted, &refused, skipped).await?;
    failpoint::hit("submit:after-record");
    let refused_jobs: usize = refused.iter().map(|(jobs, _)| jobs.len()).sum();
    held.extend(refused.into_iter().map(|(_, e)| e));
    Ok(Submissions {
        jobs: submitted,
        in_flight: before + submitted,
        warnings: held,
        held_back: held_back + refused_jobs,
    })
}

/// Commits the `submitting` intents of `picked` before any batch system is
/// called (S3); returns the jobs that could not take theirs.
async fn record_intents(
    worker: &Worker,
    conn: &mut Conn,
    picked: &[Submittable],
) -> Result<Skipped, WorkerError> {
    let intents: Vec<(i64, String)> = picked
        .iter()
        .map(|job| (job.job_id, format!("submitting to {}", job.backend)))
        .collect();
    let mut tx = worker.store.begin_on(conn).await?;
    let created = &[JobState::Created];
    let refused = move_states_from(
        &mut tx,
        &intents,
        created,
        JobState::Submitting,
        WORKER_USER,
    )
    .await?;
    let stuck = refused.ids_of(crate::model::ids::EntityKind::Job);
    let mut by_instance: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for job in picked.iter().filter(|job| !stuck.contains(&job.job_id)) {
        if let Some(instance) = worker.instance_of(&job.backend) {
            by_instance.entry(instance).or_default().push(job.job_id);
        }
    }
    for (instance, jobs) in by_instance {
        set_instances(&mut tx, &jobs, instance).await?;
    }
    crate::store::commit(tx).await?;
    Ok(refused)
}

/// Removes the candidates whose backend this worker does not have (made
/// by a worker that had it); one line per such backend. They stay
/// `created` for a worker configured for it.
fn without_backend(worker: &Worker, candidates: &mut Vec<Submittable>) -> Vec<String> {
    let mut missing: BTreeMap<String, usize> = BTreeMap::new();
    candidates.retain(|job| {
        let known = worker.backend(&job.backend).is_some();
        if !known {
            *missing.entry(job.backend.clone()).or_default() += 1;
        }
        known
    });
    missing
        .into_iter()
        .map(|(backend, n)| {
            format!("{n} jobs wait: backend `{backend}` is not configured for this worker")
        })
        .collect()
}

/// Removes the candidates a failing check covers (they stay `created`);
/// one line per check that held some, saying why.
fn held_by_checks(
    failing: &[(&CheckSpec, String)],
    candidates: &mut Vec<Submittable>,
) -> Vec<String> {
    let mut held: BTreeMap<&str, (usize, &CheckSpec, &str)> = BTreeMap::new();
    candidates.retain(|job| {
        let blocking = failing
            .iter()
            .find(|(c, _)| c.scope.covers(&job.experiment, &job.backend));
        if let Some((check, detail)) = blocking {
            held.entry(check.name.as_str())
                .or_insert((0, check, detail))
                .0 += 1;
        }
        blocking.is_none()
    });
    held.values()
        .map(|(n, check, detail)| {
            format!(
                "{n} submissions held ({}): check `{}` failing: {detail}",
                check.scope.describe(),
                check.name
            )
        })
        .collect()
}

/// Groups the batch system accepted, with their batch ids.
type Accepted<'a> = (
    &'a Arc<dyn BatchSystem>,
    Vec<Submitted>,
    Vec<&'a Submittable>,
);

/// Records every accepted job's batch id and every refused job's return to
/// `created`, in one transaction; returns how many were accepted. A job
/// that cannot move is added to `skipped` (its batch id is kept, so a
/// restarted worker adopts it).
async fn record_submissions(
    worker: &Worker,
    conn: &mut Conn,
    accepted: &[Accepted<'_>],
    refused: &[(Vec<&Submittable>, String)],
    skipped: &mut Skipped,
) -> Result<usize, WorkerError> {
    let mut tx = worker.store.begin_on(conn).await?;
    let mut queued = Vec::new();
    let mut batches = Vec::new();
    for (backend, ids, jobs) in accepted {
        let recorded: Vec<(i64, String)> = ids
            .iter()
            .map(|s| (s.key.job.0, s.batch_id.0.clone()))
            .collect();
        set_batch_job_ids(&mut tx, &recorded, backend.default_site()).await?;
        queued.extend(
            ids.iter()
                .map(|s| (s.key.job.0, format!("submitted as {}", s.batch_id))),
        );
        batches.extend(jobs.iter().map(|j| j.batch_id));
    }
    let submitting = &[JobState::Submitting];
    let stuck =
        move_states_from(&mut tx, &queued, submitting, JobState::Queued, WORKER_USER).await?;
    let accepted = queued.len() - stuck.moves().len();
    skipped.add(stuck);
    skipped.add(mark_batches_submitted(&mut tx, batches).await?);
    let back: Vec<(i64, String)> = refused
        .iter()
        .flat_map(|(jobs, error)| {
            let why = format!("submission failed, will retry: {error}");
            jobs.iter().map(move |job| (job.job_id, why.clone()))
        })
        .collect();
    skipped
        .add(move_states_from(&mut tx, &back, submitting, JobState::Created, WORKER_USER).await?);
    crate::store::commit(tx).await?;
    Ok(accepted)
}

/// Picks candidates in order while every cap (experiment, backend, site, per pass) has room.
fn within_throttles(
    worker: &Worker,
    flight: &mut InFlight,
    desired: &HashMap<i64, Vec<String>>,
    candidates: Vec<Submittable>,
) -> Vec<Submittable> {
    let t = &worker.config.throttles;
    let room = |map: &HashMap<String, usize>, key: &str, cap: Option<usize>| {
        cap.is_none_or(|cap| map.get(key).copied().unwrap_or(0) < cap)
    };
    let mut picked = Vec::new();
    for job in candidates {
        if picked.len() >= t.per_pass {
            break;
        }
        let sites = match desired.get(&job.subtask_id).filter(|s| !s.is_empty()) {
            Some(asked) => asked.clone(),
            None => vec![worker
                .backend(&job.backend)
                .map(|b| b.default_site().to_string())
                .unwrap_or_else(|| job.backend.clone())],
        };
        if room(&flight.experiment, &job.experiment, t.per_experiment)
            && room(&flight.backend, &job.backend, t.per_backend)
            && sites
                .iter()
                .any(|site| room(&flight.site, site, t.per_site))
        {
            *flight.experiment.entry(job.experiment.clone()).or_default() += 1;
            *flight.backend.entry(job.backend.clone()).or_default() += 1;
            for site in sites {
                *flight.site.entry(site).or_default() += 1;
            }
            picked.push(job);
        }
    }
    picked
}

/// The approved copy of the stage's script, shipped with its jobs (issue
/// 15); `None` for a launch script or a spec filed before copies were
/// kept; an error line when the copy is missing (the jobs wait).
async fn shipped_script(
    conn: &mut Conn,
    stage: &StageSpec,
) -> Result<Result<Option<ShippedScript>, String>, WorkerError> {
    let Executable::Script {
        sha256: Some(sha256),
        path,
        ..
    } = &stage.executable
    else {
        return Ok(Ok(None));
    };
    Ok(match copy_of(conn, sha256).await? {
        Some(content) => Ok(Some(ShippedScript::of(sha256, &content))),
        None => Err(format!(
            "the approved copy of `{path}` (sha256 {sha256}) is missing from the database; its jobs wait"
        )),
    })
}

/// Builds what the batch system needs for each job: the job-side spec, resources, sites.
async fn job_group(
    worker: &Worker,
    conn: &mut Conn,
    stage: &StageSpec,
    jobs: &[&Submittable],
    script: Option<&ShippedScript>,
) -> Result<JobGroup, WorkerError> {
    let mut launches = Vec::with_capacity(jobs.len());
    for job in jobs {
        let plan: JobPlan = serde_json::from_str(&job.params_json)
            .map_err(|e| StoreError::Corrupt(format!("plan of J{}", job.job_id), e.to_string()))?;
        let inputs = files_by_id(conn, &plan.inputs).await?;
        launches.push(JobLaunch {
            key: JobKey {
                job: JobId(job.job_id),
                attempt: job.attempt,
            },
            spec: JobRunSpec {
                script: script.cloned(),
                ..run_spec(
                    worker,
                    job,
                    stage,
                    &plan,
                    inputs.into_iter().map(|f| f.path).collect(),
                )
            },
            resources: stage.resources.clone(),
            sites: stage.sites.clone(),
        });
    }
    Ok(JobGroup {
        experiment: jobs[0].experiment.clone(),
        jobs: launches,
    })
}

fn run_spec(
    worker: &Worker,
    job: &Submittable,
    stage: &StageSpec,
    plan: &JobPlan,
    inputs: Vec<String>,
) -> JobRunSpec {
    let (executable, args) = match &stage.executable {
        Executable::Script { path, args, .. } => (path.clone(), args.clone()),
        Executable::Launch(l) => (l.command.clone(), l.args.clone()),
    };
    let mut env = BTreeMap::new();
    env.insert("PRODOPS_STAGE".to_string(), stage.name.clone());
    env.insert("PRODOPS_SUBTASK_ID".to_string(), job.subtask_id.to_string());
    env.insert("PRODOPS_RELEASE".to_string(), stage.release.clone());
    env.insert(
        "PRODOPS_PARAMS".to_string(),
        serde_json::Value::Object(stage.params.clone()).to_string(),
    );
    for (key, value) in [
        ("PRODOPS_SEED", plan.seed),
        ("PRODOPS_EVENTS", plan.events),
        ("PRODOPS_FIRST_EVENT", plan.first_event),
    ] {
        if let Some(v) = value {
            env.insert(key.to_string(), v.to_string());
        }
    }
    let output_dir = worker
        .config
        .output_root
        .join(format!("C{}", job.campaign_id))
        .join(format!("S{}", job.subtask_id))
        .join(format!("J{}-a{}", job.job_id, job.attempt));
    JobRunSpec {
        job: job.job_id,
        attempt: job.attempt,
        executable,
        args,
        env,
        inputs,
        tarball: None,
        script: None,
        output_dir: output_dir.display().to_string(),
        memory_mb: stage.resources.memory_mb,
        wall_seconds: (stage.resources.wall_hours * 3600.0).ceil() as i64,
    }
}

/// Batches of the submitted jobs that may be `submitted` become so (T6);
/// returns those that could not.
async fn mark_batches_submitted(
    tx: &mut crate::store::Tx<'_>,
    mut batches: Vec<i64>,
) -> Result<Skipped, WorkerError> {
    batches.sort_unstable();
    batches.dedup();
    let changes: Vec<(i64, String)> = states_of::<BatchState>(tx, &batches)
        .await?
        .into_iter()
        .filter(|(_, state)| state.next().contains(&BatchState::Submitted))
        .map(|(id, _)| (id, "jobs submitted".to_string()))
        .collect();
    Ok(move_states(tx, &changes, BatchState::Submitted, WORKER_USER).await?)
}
