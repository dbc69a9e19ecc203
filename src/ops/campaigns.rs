//! A campaign's lifecycle: approve, reject, consolidate, prioritise, hold,
//! release, cancel (J12, J14, W2, W4, X3, X6). Each is one transaction in
//! the same frame ([`Ops::campaign_action`]); filing, cloning and editing a
//! request are in [`super::requests`].

use super::requests::{not_in_state, spec_of, state_of, store_copies};
use super::views::RequestDetail;
use super::{Ops, OpsError};
use crate::model::dag::Dag;
use crate::model::hold::HoldScope;
use crate::model::ids::CampaignId;
use crate::model::request::MAX_PRIORITY;
use crate::model::role::Action;
use crate::model::spec::Spec;
use crate::model::state::{CampaignState, Lifecycle, SubtaskState, TaskState};
use crate::store::campaigns::{self as camp, CampaignRow};
use crate::store::scripts as copies;
use crate::store::states::{self, set_state, state_before_last};
use crate::store::Tx;

/// The frame every campaign action shares: in one transaction the campaign
/// is loaded for update and the actor's role checked, the body (given the
/// transaction and the row) checks its state, writes and yields what the
/// audit row says, and the audit row and the commit follow. A refusal for
/// want of a role is audited too; the campaign is read back. (A macro: an
/// async closure over the transaction could not be proved `Send` for the
/// console's tasks.)
macro_rules! campaign_action {
    ($ops:expr, $id:expr, $action:expr, |$tx:ident, $row:ident| $body:block) => {{
        let (ops, id, action) = ($ops, $id, $action);
        let target = id.to_string();
        let result: Result<(), OpsError> = async {
            let mut tx = ops.store.begin().await?;
            let row = ops.load_authorized(&mut tx, id, action).await?;
            let detail: Result<String, OpsError> = async {
                let ($tx, $row) = (&mut tx, &row);
                $body
            }
            .await;
            ops.audit_ok(&mut tx, action, &target, &detail?).await?;
            Ok(crate::store::commit(tx).await?)
        }
        .await;
        ops.finish(action, &target, result).await?;
        ops.reload(id.0).await
    }};
}

impl Ops {
    /// Approves a pending request, freezing its spec hash and creating its tasks (J12, X3).
    pub async fn approve(&self, id: CampaignId, reason: &str) -> Result<RequestDetail, OpsError> {
        campaign_action!(self, id, Action::Approve, |tx, row| {
            if state_of(row)? != CampaignState::PendingApproval {
                return Err(not_in_state(row, "pending approval: nothing to approve"));
            }
            let who = self.actor.display();
            let why = non_empty(reason, "approved");
            let mut spec = spec_of(row)?;
            let scripts = self.lock_scripts(id, &mut spec)?;
            let hash = spec.hash();
            if hash != row.spec_hash {
                camp::update_spec(tx, id.0, &spec.canonical_json(), &hash).await?;
            }
            store_copies(tx, &scripts).await?;
            let why = format!("{why}{}", self.grace_note(&row.experiment));
            set_state(tx, id.0, CampaignState::Approved, &why, &who).await?;
            camp::set_approval(tx, id.0, Some((&hash, &who))).await?;
            copies::set_start_after(tx, id.0, self.start_after(&row.experiment)).await?;
            materialise(tx, id.0, &spec, &who).await?;
            Ok(format!("{why}; spec {hash}"))
        })
    }

    /// Rejects a pending request; the reason is required and recorded.
    pub async fn reject(&self, id: CampaignId, reason: &str) -> Result<RequestDetail, OpsError> {
        if reason.trim().is_empty() {
            return Err(OpsError::Invalid(
                "--reason: say why the request is rejected".into(),
            ));
        }
        campaign_action!(self, id, Action::Reject, |tx, row| {
            if state_of(row)? != CampaignState::PendingApproval {
                return Err(not_in_state(row, "pending approval: nothing to reject"));
            }
            let who = self.actor.display();
            set_state(tx, id.0, CampaignState::Rejected, reason, &who).await?;
            Ok(reason.to_string())
        })
    }

    /// Folds pending requests into `target` (W2): they end as `consolidated`.
    pub async fn consolidate(
        &self,
        target: CampaignId,
        others: &[CampaignId],
        reason: &str,
    ) -> Result<RequestDetail, OpsError> {
        if others.is_empty() {
            return Err(OpsError::Invalid(
                "name at least one request to fold into the target".into(),
            ));
        }
        campaign_action!(self, target, Action::Consolidate, |tx, main| {
            if !matches!(
                state_of(main)?,
                CampaignState::PendingApproval | CampaignState::Approved
            ) {
                return Err(not_in_state(
                    main,
                    "pending approval or approved: it cannot absorb others",
                ));
            }
            let who = self.actor.display();
            let why = match reason {
                "" => format!("consolidated into {target}"),
                _ => format!("consolidated into {target}: {reason}"),
            };
            for other in others {
                self.fold_into(tx, main, *other, &why, &who).await?;
            }
            let list: Vec<String> = others.iter().map(ToString::to_string).collect();
            Ok(format!("absorbed {}", list.join(", ")))
        })
    }

    /// Moves `other` into `main` for [`Ops::consolidate`], after checking
    /// it is a pending request of the same experiment and kind.
    async fn fold_into(
        &self,
        tx: &mut Tx<'_>,
        main: &CampaignRow,
        other: CampaignId,
        why: &str,
        who: &str,
    ) -> Result<(), OpsError> {
        let target = CampaignId(main.id);
        if other == target {
            return Err(OpsError::Invalid(format!(
                "{other} cannot be consolidated into itself"
            )));
        }
        let row = self.load_authorized(tx, other, Action::Consolidate).await?;
        if row.experiment != main.experiment || row.kind != main.kind {
            return Err(OpsError::Invalid(format!(
                "{other} is {}/{} but {target} is {}/{}: only requests of one experiment and kind consolidate",
                row.experiment, row.kind, main.experiment, main.kind
            )));
        }
        if state_of(&row)? != CampaignState::PendingApproval {
            return Err(not_in_state(
                &row,
                "pending approval: only pending requests are consolidated",
            ));
        }
        set_state(tx, other.0, CampaignState::Consolidated, why, who).await?;
        camp::set_consolidated_into(tx, other.0, target.0).await?;
        Ok(())
    }

    /// Changes the priority of queued or running work (J14, W4).
    pub async fn set_priority(
        &self,
        id: CampaignId,
        priority: i64,
    ) -> Result<RequestDetail, OpsError> {
        if !(0..=MAX_PRIORITY).contains(&priority) {
            return Err(OpsError::Invalid(format!(
                "priority: must be between 0 and {MAX_PRIORITY} (got {priority})"
            )));
        }
        campaign_action!(self, id, Action::SetPriority, |tx, row| {
            if state_of(row)?.is_terminal() {
                return Err(not_in_state(
                    row,
                    "queued or running: finished work has no priority to change",
                ));
            }
            camp::set_priority(tx, id.0, priority).await?;
            Ok(format!("priority {} → {priority}", row.priority))
        })
    }

    /// Holds a request or campaign and its queued tasks (X6) with the
    /// default scope: submissions stop and queued jobs are held, running
    /// jobs run to their end ([`HoldScope::Queued`]).
    pub async fn hold(&self, id: CampaignId, reason: &str) -> Result<RequestDetail, OpsError> {
        self.hold_with_scope(id, HoldScope::default(), reason).await
    }

    /// Holds a request or campaign and its queued tasks (X6); `scope` says
    /// whether its running jobs are held too (the worker then holds them as
    /// their batch system does: [`crate::batch::running_hold_effect`]). A
    /// held campaign held again with another scope keeps its hold and takes
    /// the new scope.
    pub async fn hold_with_scope(
        &self,
        id: CampaignId,
        scope: HoldScope,
        reason: &str,
    ) -> Result<RequestDetail, OpsError> {
        campaign_action!(self, id, Action::Hold, |tx, row| {
            let who = self.actor.display();
            let why = non_empty(reason, "held");
            let detail = if state_of(row)? == CampaignState::Held {
                let before = camp::hold_scope(tx, id.0).await?;
                if before == scope {
                    return Err(OpsError::Invalid(format!(
                        "{id} is already held with this scope: {}",
                        scope.describe()
                    )));
                }
                format!(
                    "hold scope {before} → {scope} ({}): {why}",
                    scope.describe()
                )
            } else {
                hold_children(tx, id, &why, &who).await?;
                format!("{} → held ({}): {why}", row.state, scope.describe())
            };
            camp::set_hold_scope(tx, id.0, Some(scope)).await?;
            Ok(detail)
        })
    }

    /// What holding running jobs does on each batch system a campaign's
    /// stages use, for the confirmation of a hold with
    /// [`HoldScope::Running`]: `(backend, one line)` in stage order.
    pub async fn running_hold_effects(
        &self,
        id: CampaignId,
    ) -> Result<Vec<(String, &'static str)>, OpsError> {
        let mut conn = self.store.conn().await?;
        let row = camp::get_campaign(&mut conn, id.0).await?;
        let mut effects: Vec<(String, &'static str)> = Vec::new();
        for stage in spec_of(&row)?.stages {
            if !effects.iter().any(|(b, _)| *b == stage.backend) {
                let effect = crate::batch::running_hold_effect(&stage.backend);
                effects.push((stage.backend, effect));
            }
        }
        Ok(effects)
    }

    /// Releases a held request to where it was; an edited spec goes to pending approval.
    pub async fn release(&self, id: CampaignId, reason: &str) -> Result<RequestDetail, OpsError> {
        campaign_action!(self, id, Action::Release, |tx, row| {
            if state_of(row)? != CampaignState::Held {
                return Err(not_in_state(row, "held: nothing to release"));
            }
            let mut back = state_before_last(tx, id.0, CampaignState::Held)
                .await?
                .unwrap_or(CampaignState::PendingApproval);
            if back == CampaignState::Approved
                && row.approved_hash.as_deref() != Some(row.spec_hash.as_str())
            {
                back = CampaignState::PendingApproval;
            }
            let who = self.actor.display();
            let why = non_empty(reason, "released");
            set_state(tx, id.0, back, &why, &who).await?;
            camp::set_hold_scope(tx, id.0, None).await?;
            for task in states::ids_in_states(tx, "campaign_id", id.0, &[TaskState::Held]).await? {
                let to = state_before_last(tx, task, TaskState::Held)
                    .await?
                    .unwrap_or(TaskState::Queued);
                set_state(tx, task, to, &why, &who).await?;
            }
            Ok(format!("held → {back}"))
        })
    }

    /// Cancels a request or aborts a campaign with its tasks and subtasks (X6).
    pub async fn cancel(&self, id: CampaignId, reason: &str) -> Result<RequestDetail, OpsError> {
        campaign_action!(self, id, Action::Cancel, |tx, row| {
            let who = self.actor.display();
            let why = non_empty(reason, "cancelled");
            set_state(tx, id.0, CampaignState::Cancelled, &why, &who).await?;
            cancel_children(tx, id.0, &why, &who).await?;
            Ok(format!("{} → cancelled: {why}", row.state))
        })
    }
}

/// Moves a campaign and its queued or running tasks to `held`.
async fn hold_children(
    tx: &mut Tx<'_>,
    id: CampaignId,
    why: &str,
    who: &str,
) -> Result<(), OpsError> {
    set_state(tx, id.0, CampaignState::Held, why, who).await?;
    let live = [TaskState::Queued, TaskState::Running];
    for task in states::ids_in_states(tx, "campaign_id", id.0, &live).await? {
        set_state(tx, task, TaskState::Held, why, who).await?;
    }
    Ok(())
}

/// `reason` trimmed, or `default` when it says nothing.
pub(super) fn non_empty(reason: &str, default: &str) -> String {
    if reason.trim().is_empty() {
        default.to_string()
    } else {
        reason.trim().to_string()
    }
}

/// Creates the campaign's task and its subtasks in DAG order (J8).
pub(super) async fn materialise(
    tx: &mut Tx<'_>,
    campaign_id: i64,
    spec: &Spec,
    who: &str,
) -> Result<(), OpsError> {
    let names: Vec<String> = spec.stages.iter().map(|s| s.name.clone()).collect();
    let edges: Vec<(String, String)> = spec
        .stages
        .iter()
        .flat_map(|s| s.after.iter().map(|p| (p.clone(), s.name.clone())))
        .collect();
    let dag =
        Dag::new(names, &edges).map_err(|e| OpsError::Invalid(format!("stage.after: {e}")))?;
    let task =
        camp::insert_task(tx, campaign_id, spec.kind.as_str(), spec.kind.as_str(), who).await?;
    let mut ids: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for name in dag.topological_order() {
        let stage = spec
            .stages
            .iter()
            .find(|s| &s.name == name)
            .expect("DAG nodes are stage names");
        let parents: Vec<i64> = stage.after.iter().map(|p| ids[p]).collect();
        let id = camp::insert_subtask(tx, task, stage, &parents, who).await?;
        ids.insert(name.clone(), id);
    }
    Ok(())
}

/// Cancels every task and subtask of a campaign that has not ended.
pub(super) async fn cancel_children(
    tx: &mut Tx<'_>,
    campaign_id: i64,
    why: &str,
    who: &str,
) -> Result<(), OpsError> {
    let live_tasks = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Held,
        TaskState::Failed,
    ];
    let live_subtasks = [
        SubtaskState::Waiting,
        SubtaskState::Ready,
        SubtaskState::Running,
        SubtaskState::Held,
        SubtaskState::Failed,
    ];
    let all_tasks = states::ids_in_states(tx, "campaign_id", campaign_id, TaskState::ALL).await?;
    for task in all_tasks {
        for sub in states::ids_in_states(tx, "task_id", task, &live_subtasks).await? {
            set_state(tx, sub, SubtaskState::Cancelled, why, who).await?;
        }
    }
    for task in states::ids_in_states(tx, "campaign_id", campaign_id, &live_tasks).await? {
        set_state(tx, task, TaskState::Cancelled, why, who).await?;
    }
    Ok(())
}
