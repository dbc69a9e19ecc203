//! What read actions return: stable, documented shapes for `--json` and the console.

use crate::model::ids::{CampaignId, SubtaskId, TaskId};
use crate::model::progress::Progress;
use crate::model::spec::{RequestMeta, Spec};
use crate::ops::OpsError;
use crate::store::campaigns::{CampaignRow, SubtaskRow, TaskRow};
use crate::store::jobs::JobCounts;
use crate::store::states::HistoryEntry;
use crate::store::StoreError;
use serde::Serialize;
use std::collections::HashMap;

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-11-23T09:00:00.000Z`).
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// One line of a request listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestSummary {
    /// `C<n>`.
    pub id: String,
    /// Experiment.
    pub experiment: String,
    /// Kind.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Priority, higher first.
    pub priority: i64,
    /// State.
    pub state: String,
    /// Since when.
    pub state_since: String,
    /// Who filed it.
    pub creator: String,
    /// When it was filed.
    pub created_at: String,
}

impl From<&CampaignRow> for RequestSummary {
    fn from(c: &CampaignRow) -> Self {
        RequestSummary {
            id: CampaignId(c.id).to_string(),
            experiment: c.experiment.clone(),
            kind: c.kind.clone(),
            title: c.title.clone(),
            priority: c.priority,
            state: c.state.clone(),
            state_since: iso(c.state_since),
            creator: c.creator.clone(),
            created_at: iso(c.created_at),
        }
    }
}

/// A line of `request list` and `campaign list`: the summary and its progress (M1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestLine {
    /// The listing fields.
    #[serde(flatten)]
    pub summary: RequestSummary,
    /// Units done of units planned.
    pub progress: Progress,
}

/// A request in full, with its spec.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestDetail {
    /// The listing fields.
    #[serde(flatten)]
    pub summary: RequestSummary,
    /// Physics group.
    pub physics_group: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Hash of the current spec.
    pub spec_hash: String,
    /// Hash frozen at approval.
    pub approved_hash: Option<String>,
    /// Approver.
    pub approved_by: Option<String>,
    /// When approved.
    pub approved_at: Option<String>,
    /// Source of a clone.
    pub cloned_from: Option<String>,
    /// Request this was folded into.
    pub consolidated_into: Option<String>,
    /// The spec.
    pub spec: serde_json::Value,
}

impl From<&CampaignRow> for RequestDetail {
    fn from(c: &CampaignRow) -> Self {
        RequestDetail {
            summary: c.into(),
            physics_group: c.physics_group.clone(),
            description: c.description.clone(),
            spec_hash: c.spec_hash.clone(),
            approved_hash: c.approved_hash.clone(),
            approved_by: c.approved_by.clone(),
            approved_at: c.approved_at.map(iso),
            cloned_from: c.cloned_from.map(|i| CampaignId(i).to_string()),
            consolidated_into: c.consolidated_into.map(|i| CampaignId(i).to_string()),
            spec: serde_json::from_str(&c.spec_json).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A stored request written back as its request file (TOML, the format of
/// `examples/mc-request.toml`): filing or `request edit`ing the text gives the
/// same spec hash. One key per line in a fixed order, so two of them diff line
/// by line (the console's Approvals pane).
pub fn request_toml(detail: &RequestDetail) -> Result<String, OpsError> {
    let id = &detail.summary.id;
    let spec: Spec = serde_json::from_value(detail.spec.clone()).map_err(|e| {
        OpsError::Store(StoreError::Corrupt(format!("spec of {id}"), e.to_string()))
    })?;
    let meta = RequestMeta {
        title: detail.summary.title.clone(),
        priority: detail.summary.priority,
        physics_group: detail.physics_group.clone(),
        description: detail.description.clone(),
    };
    crate::model::request_file::request_toml(&meta, &spec)
        .map_err(|error| OpsError::Invalid(format!("{id} cannot be written as TOML: {error}")))
}

/// A subtask inside a campaign view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubtaskView {
    /// `S<n>`.
    pub id: String,
    /// Stage name.
    pub name: String,
    /// State.
    pub state: String,
    /// Since when.
    pub state_since: String,
    /// Names of the subtasks it waits for.
    pub after: Vec<String>,
    /// Its current jobs.
    pub jobs: JobCounts,
}

/// A task inside a campaign view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    /// `T<n>`.
    pub id: String,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// State.
    pub state: String,
    /// Since when.
    pub state_since: String,
    /// Its subtasks in DAG order of creation.
    pub subtasks: Vec<SubtaskView>,
}

/// A campaign with its tasks and subtasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignDetail {
    /// The request fields.
    #[serde(flatten)]
    pub request: RequestSummary,
    /// Units done of units planned (M1), as the campaign's line in the console shows it.
    pub progress: Progress,
    /// Tasks with their subtasks.
    pub tasks: Vec<TaskView>,
    /// Why its submissions wait: failing pre-launch checks that cover it (J10).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub held_by: Vec<String>,
}

/// Builds the task tree of a campaign from its rows.
pub fn task_views(
    tasks: &[TaskRow],
    subtasks: &[SubtaskRow],
    counts: &HashMap<i64, JobCounts>,
) -> Vec<TaskView> {
    tasks
        .iter()
        .map(|t| TaskView {
            id: TaskId(t.id).to_string(),
            name: t.name.clone(),
            kind: t.kind.clone(),
            state: t.state.clone(),
            state_since: iso(t.state_since),
            subtasks: subtasks
                .iter()
                .filter(|s| s.task_id == t.id)
                .map(|s| SubtaskView {
                    id: SubtaskId(s.id).to_string(),
                    name: s.name.clone(),
                    state: s.state.clone(),
                    state_since: iso(s.state_since),
                    after: s
                        .parents
                        .iter()
                        .filter_map(|p| subtasks.iter().find(|x| x.id == *p))
                        .map(|x| x.name.clone())
                        .collect(),
                    jobs: counts.get(&s.id).copied().unwrap_or_default(),
                })
                .collect(),
        })
        .collect()
}

/// One transition as shown to people and scripts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryView {
    /// When.
    pub ts: String,
    /// Which entity.
    pub entity: String,
    /// State left (null at creation).
    pub old: Option<String>,
    /// State entered.
    pub new: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub user: String,
}

impl From<HistoryEntry> for HistoryView {
    fn from(h: HistoryEntry) -> Self {
        HistoryView {
            ts: iso(h.ts),
            entity: h.entity,
            old: h.old,
            new: h.new,
            reason: h.reason,
            user: h.user,
        }
    }
}
