//! What the console shows, loaded off the UI thread: the UI sends a [`View`]
//! (what is selected and asked for), a tokio task loads a [`Snapshot`] with
//! `ops` and sends it back. Commands (approve, hold, …) run on another task
//! and answer with a one-line result.

use crate::batch::LogBundle;
use crate::model::hold::HoldScope;
use crate::model::ids::{CampaignId, EntityRef, JobId, SubtaskId};
use crate::ops::jobs::{JobDetail, JobView, JobsRequested};
use crate::ops::views::{CampaignDetail, HistoryView, RequestDetail, RequestSummary};
use crate::ops::Ops;
use crate::store::campaigns::CampaignFilter;
use crate::store::overview::{BatchLine, CampaignLine, FailureGroup, JobQuery};
use crate::worker::Worker;
use std::time::Instant;

/// What the UI wants loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// The campaign whose tasks, DAG and failures are shown.
    pub campaign: Option<CampaignId>,
    /// The entity whose history is shown.
    pub entity: Option<EntityRef>,
    /// The jobs page.
    pub jobs: JobQuery,
    /// The job whose detail and logs are shown.
    pub job: Option<JobId>,
    /// The pending request whose spec and diff are shown.
    pub approval: Option<CampaignId>,
}

/// Everything one frame can draw, as of one load.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The view this snapshot answers.
    pub view: View,
    /// How long the load took, ms.
    pub load_ms: u128,
    /// The user's roles, as `role@experiment`.
    pub grants: Vec<String>,
    /// Every campaign.
    pub campaigns: Vec<CampaignLine>,
    /// The selected campaign's tasks and subtasks.
    pub detail: Option<CampaignDetail>,
    /// The selected campaign's batches.
    pub batches: Vec<BatchLine>,
    /// What holding the selected campaign's running jobs does, per batch system.
    pub hold_effects: Vec<(String, &'static str)>,
    /// A page of jobs.
    pub jobs: Vec<JobView>,
    /// How many jobs match the page's query.
    pub jobs_total: i64,
    /// The selected job.
    pub job: Option<JobDetail>,
    /// Its logs, or why there are none.
    pub logs: Option<Result<LogBundle, String>>,
    /// Current failures of every campaign, grouped by cause and site.
    pub failures: Vec<FailureGroup>,
    /// Requests waiting for approval.
    pub pending: Vec<RequestSummary>,
    /// The selected pending request, with the request it was cloned from.
    pub approval: Option<(RequestDetail, Option<RequestDetail>)>,
    /// History of the selected entity.
    pub history: Vec<HistoryView>,
    /// The pre-launch checks' latest verdicts.
    pub checks: Vec<crate::store::checks::CheckRow>,
    /// What failed while loading (shown, never fatal).
    pub error: Option<String>,
    /// The load failed because the database could not be reached (it is retried).
    pub unreachable: bool,
}

/// Loads everything `view` asks for. Errors become `Snapshot::error`.
pub async fn load(ops: &Ops, worker: Option<&Worker>, view: &View) -> Snapshot {
    load_changes(ops, worker, view, None).await
}

/// Loads what `view` asks for, reusing the parts of `previous` whose inputs
/// did not change (a cursor move reloads the history, not a million jobs).
pub async fn load_changes(
    ops: &Ops,
    worker: Option<&Worker>,
    view: &View,
    previous: Option<&Snapshot>,
) -> Snapshot {
    let started = Instant::now();
    let mut snap = match previous {
        Some(p) => Snapshot {
            view: view.clone(),
            error: None,
            unreachable: false,
            ..p.clone()
        },
        None => Snapshot {
            view: view.clone(),
            ..Snapshot::default()
        },
    };
    let old = previous.map(|p| &p.view);
    if let Err(e) = fill(ops, worker, view, old, &mut snap).await {
        snap.unreachable = matches!(&e, crate::ops::OpsError::Store(s) if s.is_connection());
        snap.error = Some(e.to_string());
    }
    snap.load_ms = started.elapsed().as_millis();
    snap
}

async fn fill(
    ops: &Ops,
    worker: Option<&Worker>,
    view: &View,
    old: Option<&View>,
    snap: &mut Snapshot,
) -> Result<(), crate::ops::OpsError> {
    let changed = |same: fn(&View, &View) -> bool| old.is_none_or(|o| !same(o, view));
    if old.is_none() {
        snap.grants = ops
            .my_grants()
            .await?
            .iter()
            .map(|g| format!("{}@{}", g.role.as_str(), g.experiment))
            .collect();
        snap.campaigns = ops.campaign_lines().await?;
        snap.checks = ops.check_verdicts().await?;
        snap.failures = ops.failure_groups(None).await?;
        snap.pending = ops
            .requests(&CampaignFilter {
                states: vec!["pending_approval".into()],
                ..CampaignFilter::default()
            })
            .await?;
    }
    if changed(|a, b| a.campaign == b.campaign) {
        snap.detail = None;
        snap.batches.clear();
        snap.hold_effects.clear();
        if let Some(id) = view.campaign {
            if snap.campaigns.iter().any(|c| c.id == id.0) {
                snap.detail = Some(ops.campaign(id).await?);
                snap.batches = ops.batches(id).await?;
                snap.hold_effects = ops.running_hold_effects(id).await?;
            }
        }
    }
    if changed(|a, b| a.jobs == b.jobs) {
        let (jobs, total) = ops.jobs_page(&view.jobs).await?;
        snap.jobs = jobs;
        snap.jobs_total = total;
    }
    if changed(|a, b| a.job == b.job) {
        snap.job = None;
        snap.logs = None;
        if let Some(id) = view.job {
            let job = ops.job(id).await?;
            snap.logs = Some(logs_of(worker, &job.job).await);
            snap.job = Some(job);
        }
    }
    if changed(|a, b| a.approval == b.approval) {
        snap.approval = None;
        if let Some(id) = view.approval {
            let request = ops.request(id).await?;
            let original = match request.cloned_from.as_deref().map(str::parse::<CampaignId>) {
                Some(Ok(from)) => Some(ops.request(from).await?),
                _ => None,
            };
            snap.approval = Some((request, original));
        }
    }
    if changed(|a, b| a.entity == b.entity) {
        snap.history = match view.entity {
            Some(entity) => ops.history(entity).await?,
            None => Vec::new(),
        };
    }
    Ok(())
}

async fn logs_of(worker: Option<&Worker>, job: &JobView) -> Result<LogBundle, String> {
    let Some(worker) = worker else {
        return Err("logs are read through the worker; this console runs without one".into());
    };
    let Some(batch_id) = &job.batch_job_id else {
        return Err(format!("{} was not submitted yet", job.id));
    };
    worker
        .logs(&job.backend, batch_id)
        .await
        .map_err(|e| e.to_string())
}

/// Jobs a bulk action acts on: some by id, or every job a query selects
/// (resolved when the action runs, so "all matching" means all, not a page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSet {
    /// These jobs.
    Ids(Vec<JobId>),
    /// Every job matching the query (its page ignored).
    Matching(JobQuery),
}

impl JobSet {
    async fn resolve(self, ops: &Ops) -> Result<Vec<JobId>, String> {
        match self {
            JobSet::Ids(ids) => Ok(ids),
            JobSet::Matching(query) => ops.job_ids(&query).await.map_err(|e| e.to_string()),
        }
    }
}

/// A state-changing action the console asks `ops` to perform. Actions that
/// ask first carry the reason typed in their confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Approve a request.
    Approve(CampaignId, String),
    /// Reject a request.
    Reject(CampaignId, String),
    /// Set a priority.
    Priority(CampaignId, i64),
    /// Hold a campaign (with its running jobs when the flag is set).
    Hold(CampaignId, String, bool),
    /// Release a campaign.
    Release(CampaignId, String),
    /// Abort a campaign.
    Abort(CampaignId, String),
    /// Resubmit the failed parts of an entity.
    Resubmit(EntityRef, String),
    /// Resubmit failed jobs one by one (a triage group, marked jobs).
    ResubmitJobs(JobSet, String),
    /// Hold jobs.
    HoldJobs(JobSet, String),
    /// Release held jobs.
    ReleaseJobs(JobSet, String),
    /// Remove jobs from their batch system.
    RemoveJobs(JobSet, String),
    /// Sign a subtask off.
    SignOff(SubtaskId, String),
    /// Clone a request.
    Clone(CampaignId),
}

impl Command {
    /// True for commands on a set of jobs (the marks they came from are spent).
    pub fn acts_on_jobs(&self) -> bool {
        matches!(
            self,
            Command::ResubmitJobs(..)
                | Command::HoldJobs(..)
                | Command::ReleaseJobs(..)
                | Command::RemoveJobs(..)
        )
    }

    /// The same command with the reason typed in its confirmation (empty
    /// keeps its default) and its option switched on or off.
    pub fn confirmed(self, reason: &str, option: bool) -> Command {
        let typed = reason.trim();
        let why = |default: String| {
            if typed.is_empty() {
                default
            } else {
                typed.to_string()
            }
        };
        match self {
            Command::Approve(c, r) => Command::Approve(c, why(r)),
            Command::Reject(c, r) => Command::Reject(c, why(r)),
            Command::Hold(c, r, _) => Command::Hold(c, why(r), option),
            Command::Release(c, r) => Command::Release(c, why(r)),
            Command::Abort(c, r) => Command::Abort(c, why(r)),
            Command::Resubmit(e, r) => Command::Resubmit(e, why(r)),
            Command::ResubmitJobs(j, r) => Command::ResubmitJobs(j, why(r)),
            Command::HoldJobs(j, r) => Command::HoldJobs(j, why(r)),
            Command::ReleaseJobs(j, r) => Command::ReleaseJobs(j, why(r)),
            Command::RemoveJobs(j, r) => Command::RemoveJobs(j, why(r)),
            Command::SignOff(s, r) => Command::SignOff(s, why(r)),
            other => other,
        }
    }
}

/// Runs `command` and says in one line what happened (`Err` for refusals and errors).
pub async fn execute(ops: &Ops, command: Command) -> Result<String, String> {
    let e = |e: crate::ops::OpsError| e.to_string();
    match command {
        Command::Approve(id, why) => ops
            .approve(id, &why)
            .await
            .map(|r| format!("{} approved", r.summary.id))
            .map_err(e),
        Command::Reject(id, why) => ops
            .reject(id, &why)
            .await
            .map(|r| format!("{} rejected", r.summary.id))
            .map_err(e),
        Command::Priority(id, p) => ops
            .set_priority(id, p)
            .await
            .map(|r| format!("{} priority {}", r.summary.id, r.summary.priority))
            .map_err(e),
        Command::Hold(id, why, running) => {
            let scope = if running {
                HoldScope::Running
            } else {
                HoldScope::Queued
            };
            ops.hold_with_scope(id, scope, &why)
                .await
                .map(|r| format!("{} held", r.summary.id))
                .map_err(e)
        }
        Command::Release(id, why) => ops
            .release(id, &why)
            .await
            .map(|r| format!("{} released", r.summary.id))
            .map_err(e),
        Command::Abort(id, why) => ops
            .cancel(id, &why)
            .await
            .map(|r| format!("{} {}", r.summary.id, r.summary.state))
            .map_err(e),
        Command::Resubmit(scope, why) => ops
            .resubmit(scope, &why)
            .await
            .map(|r| {
                format!(
                    "{scope}: {} new attempts, {} replanned",
                    r.jobs.len(),
                    r.replanned.len()
                )
            })
            .map_err(e),
        Command::ResubmitJobs(jobs, why) => {
            let jobs = jobs.resolve(ops).await?;
            let mut done = 0;
            let mut last_error = None;
            for job in &jobs {
                match ops.resubmit(job.entity(), &why).await {
                    Ok(r) => done += r.jobs.len(),
                    Err(err) => last_error = Some(err.to_string()),
                }
            }
            match (done, last_error) {
                (0, Some(err)) => Err(err),
                (n, _) => Ok(format!("{n} of {} jobs resubmitted", jobs.len())),
            }
        }
        Command::HoldJobs(jobs, why) => {
            let jobs = jobs.resolve(ops).await?;
            ops.hold_jobs(&jobs, &why).await.map(requested).map_err(e)
        }
        Command::ReleaseJobs(jobs, why) => {
            let jobs = jobs.resolve(ops).await?;
            ops.release_jobs(&jobs, &why)
                .await
                .map(requested)
                .map_err(e)
        }
        Command::RemoveJobs(jobs, why) => {
            let jobs = jobs.resolve(ops).await?;
            ops.remove_jobs(&jobs, &why).await.map(requested).map_err(e)
        }
        Command::SignOff(id, why) => ops
            .signoff(id, &why)
            .await
            .map(|()| format!("{id} signed off"))
            .map_err(e),
        Command::Clone(id) => ops
            .request_clone(id, None)
            .await
            .map(|r| format!("{id} cloned as {} (pending approval)", r.summary.id))
            .map_err(e),
    }
}

/// `3 jobs held: the worker carries it out on its next pass`.
fn requested(done: JobsRequested) -> String {
    let what = match done.jobs.as_slice() {
        [one] => one.clone(),
        many => format!("{} jobs", many.len()),
    };
    format!(
        "{what} {}: the worker carries it out on its next pass",
        done.requested
    )
}
