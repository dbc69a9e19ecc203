//! Actions on running work: resubmit what failed (D3), sign off (T5), and the
//! job views (M2, M3, M9, M10).

use super::views::iso;
use super::{Ops, OpsError};
use crate::clock::now_ms;
use crate::model::hold::JobAction;
use crate::model::ids::{CampaignId, EntityKind, EntityRef, JobId, SubtaskId};
use crate::model::role::{Action, Target};
use crate::model::spec::TaskKind;
use crate::model::state::{
    BatchState, CampaignState, JobState, Lifecycle, SubtaskState, TaskState,
};
use crate::store::jobs::{self, JobRow};
use crate::store::scope;
use crate::store::stages::{self, StageRow};
use crate::store::states::{current_state, set_state};
use crate::store::{StoreError, Tx};
use serde::Serialize;

/// A job as shown in listings, with how long it has been in its state (M3).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    /// `J<n>`.
    pub id: String,
    /// `S<n>`.
    pub subtask: String,
    /// The request stage it runs: its subtask's name (`gen`, `sim`,
    /// `reco`); not [`JobView::stage`], the job's own stage (stage-in, run…).
    pub step: String,
    /// Index within the subtask.
    pub seq: i64,
    /// Attempt.
    pub attempt: i64,
    /// State.
    pub state: String,
    /// Since when.
    pub state_since: String,
    /// Seconds in the current state.
    pub seconds_in_state: i64,
    /// Backend.
    pub backend: String,
    /// Site.
    pub site: Option<String>,
    /// Node.
    pub node: Option<String>,
    /// The kind of node it ran on: partition or node features (M9).
    pub node_kind: Option<String>,
    /// Batch system id.
    pub batch_job_id: Option<String>,
    /// The instance of its batch system that holds it (local: host and
    /// directory; HTCondor: schedd; Slurm: cluster).
    pub instance: Option<String>,
    /// Ongoing or last stage.
    pub stage: Option<String>,
    /// Exit code.
    pub exit_code: Option<i64>,
    /// Signal.
    pub signal: Option<i64>,
    /// Out of memory.
    pub oom: bool,
    /// Why it failed.
    pub failure: Option<String>,
    /// Events produced.
    pub events: Option<i64>,
    /// CPU, ms.
    pub cpu_ms: Option<i64>,
    /// Wall, ms.
    pub wall_ms: Option<i64>,
    /// Peak RSS, KiB.
    pub max_rss_kb: Option<i64>,
    /// The split plan (seed, events, inputs).
    pub plan: serde_json::Value,
    /// The attempt this one retries.
    pub retry_of: Option<String>,
}

impl From<&JobRow> for JobView {
    fn from(j: &JobRow) -> Self {
        JobView {
            id: JobId(j.id).to_string(),
            subtask: SubtaskId(j.subtask_id).to_string(),
            step: j.step.clone(),
            seq: j.seq,
            attempt: j.attempt,
            state: j.state.clone(),
            state_since: iso(j.state_since),
            seconds_in_state: ((now_ms() - j.state_since) / 1000).max(0),
            backend: j.backend.clone(),
            site: j.site.clone(),
            node: j.node.clone(),
            node_kind: j.node_kind.clone(),
            batch_job_id: j.batch_job_id.clone(),
            instance: j.instance.clone(),
            stage: j.current_stage.clone(),
            exit_code: j.exit_code,
            signal: j.signal,
            oom: j.oom,
            failure: j.failure.clone(),
            events: j.events,
            cpu_ms: j.cpu_ms,
            wall_ms: j.wall_ms,
            max_rss_kb: j.max_rss_kb,
            plan: serde_json::from_str(&j.params_json).unwrap_or(serde_json::Value::Null),
            retry_of: j.retry_of.map(|r| JobId(r).to_string()),
        }
    }
}

/// A job with its stages (M10).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    /// The job.
    #[serde(flatten)]
    pub job: JobView,
    /// Its stages with resources.
    pub stages: Vec<StageRow>,
}

/// What a person asked of jobs; the worker carries it out through their
/// batch systems on its next pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobsRequested {
    /// What was asked: `held`, `released` or `removed`.
    pub requested: String,
    /// The jobs, `J<n>`, in id order.
    pub jobs: Vec<String>,
}

/// What a resubmission did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resubmitted {
    /// The new attempts, `J<n>`.
    pub jobs: Vec<String>,
    /// Subtasks split again because they failed before any job ran.
    pub replanned: Vec<String>,
}

impl Ops {
    /// Jobs of a campaign, a page at a time, optionally only in some states.
    pub async fn jobs(
        &self,
        campaign: CampaignId,
        states: &[String],
        limit: i64,
        offset: i64,
    ) -> Result<Vec<JobView>, OpsError> {
        for s in states {
            if JobState::parse(s).is_none() {
                let all: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                return Err(OpsError::Invalid(format!(
                    "--state: unknown job state `{s}`; use one of {}",
                    all.join(", ")
                )));
            }
        }
        let mut conn = self.store.conn().await?;
        crate::store::campaigns::get_campaign(&mut conn, campaign.0).await?;
        let rows = jobs::jobs_of_campaign(&mut conn, campaign.0, states, limit, offset).await?;
        Ok(rows.iter().map(JobView::from).collect())
    }

    /// One job with its stages.
    pub async fn job(&self, id: JobId) -> Result<JobDetail, OpsError> {
        let mut conn = self.store.conn().await?;
        let row = jobs::get_job(&mut conn, id.0).await?;
        let stages = stages::stages_of(&mut conn, id.0).await?;
        Ok(JobDetail {
            job: JobView::from(&row),
            stages,
        })
    }

    /// Resubmits only the failed or removed jobs under a campaign, task, subtask,
    /// batch or job as new attempts linked to the originals (D3); nothing else reruns.
    pub async fn resubmit(&self, scope: EntityRef, reason: &str) -> Result<Resubmitted, OpsError> {
        let result = self.resubmit_inner(scope, reason).await;
        self.finish(Action::Resubmit, &scope.to_string(), result)
            .await
    }

    async fn resubmit_inner(
        &self,
        scope: EntityRef,
        reason: &str,
    ) -> Result<Resubmitted, OpsError> {
        let mut tx = self.store.begin().await?;
        let (campaign, experiment, kind) = scope::owner_of(&mut tx, scope).await?;
        let target = Target {
            experiment: Some(&experiment),
            kind: TaskKind::parse(&kind),
            actor_is_creator: false,
        };
        self.authorize(&mut tx, Action::Resubmit, target, &scope.to_string())
            .await?;
        let who = self.actor.display();
        let why = if reason.trim().is_empty() {
            format!("resubmitted by {who}")
        } else {
            reason.trim().to_string()
        };
        let mut done = Resubmitted {
            jobs: Vec::new(),
            replanned: Vec::new(),
        };
        for sub in scope::subtasks_in_scope(&mut tx, scope).await? {
            let failed: Vec<JobRow> = jobs::current_jobs_of_subtask(&mut tx, sub)
                .await?
                .into_iter()
                .filter(|j| {
                    matches!(
                        JobState::parse(&j.state),
                        Some(JobState::Failed | JobState::Removed)
                    )
                })
                .filter(|j| scope.kind != EntityKind::Batch || j.batch_id == scope.id)
                .filter(|j| scope.kind != EntityKind::Job || j.id == scope.id)
                .collect();
            let state: SubtaskState = current_state(&mut tx, sub).await?;
            let has_jobs = !jobs::current_jobs_of_subtask(&mut tx, sub)
                .await?
                .is_empty();
            if state == SubtaskState::Failed && !has_jobs && scope.kind != EntityKind::Job {
                set_state(&mut tx, sub, SubtaskState::Ready, &why, &who).await?;
                done.replanned.push(SubtaskId(sub).to_string());
                continue;
            }
            for job in &failed {
                let id = jobs::retry_job(&mut tx, job, &who).await?;
                done.jobs.push(JobId(id).to_string());
                reopen_batch(&mut tx, job.batch_id, &why, &who).await?;
            }
            if !failed.is_empty() && state == SubtaskState::Failed {
                set_state(&mut tx, sub, SubtaskState::Running, &why, &who).await?;
            }
        }
        if done.jobs.is_empty() && done.replanned.is_empty() {
            return Err(OpsError::Invalid(format!(
                "{scope} has no failed or removed jobs to resubmit"
            )));
        }
        reopen_parents(&mut tx, campaign, &why, &who).await?;
        let detail = format!(
            "{} new attempts, {} subtasks replanned",
            done.jobs.len(),
            done.replanned.len()
        );
        self.audit_ok(&mut tx, Action::Resubmit, &scope.to_string(), &detail)
            .await?;
        crate::store::commit(tx).await?;
        Ok(done)
    }

    /// Holds jobs in their batch systems (a running one as its system can:
    /// [`crate::batch::running_hold_effect`]); a job a person held stays
    /// held when its campaign is released. All the jobs or none: the first
    /// that cannot be held is named in the error.
    pub async fn hold_jobs(&self, jobs: &[JobId], reason: &str) -> Result<JobsRequested, OpsError> {
        self.job_action(JobAction::Hold, jobs, reason).await
    }

    /// Releases held jobs (those a person held, or held by their batch
    /// system), all or none; a job held with its campaign is released with it.
    pub async fn release_jobs(
        &self,
        jobs: &[JobId],
        reason: &str,
    ) -> Result<JobsRequested, OpsError> {
        self.job_action(JobAction::Release, jobs, reason).await
    }

    /// Removes jobs from their batch systems for good (`condor_rm`,
    /// `scancel`), all or none. A removed job ends `removed`: the worker never
    /// retries it; its subtask counts it as not done, and only a person's
    /// `resubmit` runs it again.
    pub async fn remove_jobs(
        &self,
        jobs: &[JobId],
        reason: &str,
    ) -> Result<JobsRequested, OpsError> {
        self.job_action(JobAction::Remove, jobs, reason).await
    }

    async fn job_action(
        &self,
        action: JobAction,
        jobs: &[JobId],
        reason: &str,
    ) -> Result<JobsRequested, OpsError> {
        let audit = match action {
            JobAction::Hold => Action::Hold,
            JobAction::Release => Action::Release,
            JobAction::Remove => Action::Remove,
        };
        let names: Vec<String> = jobs.iter().map(ToString::to_string).collect();
        let result = self.job_action_inner(action, audit, jobs, reason).await;
        self.finish(audit, &names.join(", "), result).await
    }

    async fn job_action_inner(
        &self,
        action: JobAction,
        audit: Action,
        jobs: &[JobId],
        reason: &str,
    ) -> Result<JobsRequested, OpsError> {
        let mut ids: Vec<i64> = jobs.iter().map(|j| j.0).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Err(OpsError::Invalid(format!(
                "name at least one job to {}",
                action.verb()
            )));
        }
        let mut tx = self.store.begin().await?;
        let targets = jobs::job_targets_for_update(&mut tx, &ids).await?;
        if let Some(missing) = ids.iter().find(|id| !targets.iter().any(|t| t.id == **id)) {
            return Err(StoreError::NotFound(format!("job {}", JobId(*missing))).into());
        }
        let mut campaigns = std::collections::HashSet::new();
        for target in targets.iter().filter(|t| campaigns.insert(t.campaign_id)) {
            self.authorize_job(&mut tx, audit, target).await?;
        }
        for target in &targets {
            if let Some(why) = job_refusal(action, target)? {
                return Err(OpsError::Invalid(why));
            }
        }
        let who = self.actor.display();
        let why = match reason.trim() {
            "" => format!("{} by {who}", action.desired()),
            given => format!("{} by {who}: {given}", action.desired()),
        };
        let desired = job_desire(action, &targets);
        for (wanted, group) in desired {
            jobs::set_desired_state(&mut tx, &group, wanted, &why).await?;
        }
        let names: Vec<String> = ids.iter().map(|id| JobId(*id).to_string()).collect();
        let detail = format!("{} {}: {why}", action.verb(), names.join(", "));
        self.audit_ok(&mut tx, audit, &names.join(", "), &detail)
            .await?;
        crate::store::commit(tx).await?;
        Ok(JobsRequested {
            requested: action.desired().to_string(),
            jobs: names,
        })
    }

    /// Refuses inside `tx` unless the actor may take `action` on the job's
    /// campaign (as on the campaign itself: its creator may too).
    async fn authorize_job(
        &self,
        tx: &mut Tx<'_>,
        action: Action,
        target: &jobs::JobTarget,
    ) -> Result<(), OpsError> {
        let on = Target {
            experiment: Some(&target.experiment),
            kind: TaskKind::parse(&target.kind),
            actor_is_creator: target.creator == self.actor.name,
        };
        self.authorize(tx, action, on, &JobId(target.id).to_string())
            .await
    }

    /// Signs a subtask off so a `signoff` criterion can be met (T5).
    pub async fn signoff(&self, subtask: SubtaskId, reason: &str) -> Result<(), OpsError> {
        let result = self.signoff_inner(subtask, reason).await;
        self.finish(Action::SignOff, &subtask.to_string(), result)
            .await
    }

    async fn signoff_inner(&self, subtask: SubtaskId, reason: &str) -> Result<(), OpsError> {
        let scope = subtask.entity();
        let mut tx = self.store.begin().await?;
        let (_, experiment, kind) = scope::owner_of(&mut tx, scope).await?;
        let target = Target {
            experiment: Some(&experiment),
            kind: TaskKind::parse(&kind),
            actor_is_creator: false,
        };
        self.authorize(&mut tx, Action::SignOff, target, &scope.to_string())
            .await?;
        let state: SubtaskState = current_state(&mut tx, subtask.0).await?;
        if state.is_terminal() {
            return Err(OpsError::Invalid(format!(
                "{subtask} is `{state}`: there is nothing to sign off"
            )));
        }
        scope::sign_off(&mut tx, subtask.0, &self.actor.display(), now_ms()).await?;
        self.audit_ok(&mut tx, Action::SignOff, &scope.to_string(), reason)
            .await?;
        crate::store::commit(tx).await?;
        Ok(())
    }
}

/// Why a person cannot take `action` on `target` now, if so.
fn job_refusal(action: JobAction, target: &jobs::JobTarget) -> Result<Option<String>, OpsError> {
    let job = JobId(target.id).to_string();
    let state = target.state;
    let asked = target
        .desired_state
        .as_deref()
        .and_then(JobAction::from_desired);
    let campaign = CampaignId(target.campaign_id).to_string();
    let held_with = (target.campaign_state == CampaignState::Held
        || target.subtask_state == SubtaskState::Held)
        .then_some(campaign.as_str());
    Ok(action.refusal(&job, state, asked, held_with))
}

/// What to store on each job for `action`: a release of a hold the worker
/// has not carried out yet only forgets the hold; every other job gets
/// the action's desired state. Grouped by what is stored.
fn job_desire(
    action: JobAction,
    targets: &[jobs::JobTarget],
) -> Vec<(Option<&'static str>, Vec<i64>)> {
    let (forget, ask): (Vec<&jobs::JobTarget>, Vec<&jobs::JobTarget>) = targets
        .iter()
        .partition(|t| action == JobAction::Release && t.state != JobState::Held);
    [(None, forget), (Some(action.desired()), ask)]
        .into_iter()
        .filter(|(_, group)| !group.is_empty())
        .map(|(wanted, group)| (wanted, group.iter().map(|t| t.id).collect()))
        .collect()
}

async fn reopen_batch(tx: &mut Tx<'_>, batch: i64, why: &str, who: &str) -> Result<(), OpsError> {
    let state: BatchState = current_state(tx, batch).await?;
    if state == BatchState::Failed {
        set_state(tx, batch, BatchState::Submitted, why, who).await?;
    }
    Ok(())
}

/// A failed task and campaign run again when some of their work is resubmitted.
async fn reopen_parents(
    tx: &mut Tx<'_>,
    campaign: i64,
    why: &str,
    who: &str,
) -> Result<(), OpsError> {
    for task in scope::tasks_in_state(tx, campaign, TaskState::Failed).await? {
        set_state(tx, task, TaskState::Running, why, who).await?;
    }
    let state: CampaignState = current_state(tx, campaign).await?;
    if state == CampaignState::Failed {
        set_state(tx, campaign, CampaignState::Running, why, who).await?;
    }
    Ok(())
}
