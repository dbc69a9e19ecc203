//! Requests/campaigns and the tasks and subtasks materialised from them.

use super::states::record_creation;
use super::{StoreError, Tx};
use crate::clock::now_ms;
use crate::model::hold::HoldScope;
use crate::model::ids::EntityKind;
use crate::model::spec::StageSpec;
use crate::model::state::{CampaignState, Lifecycle, SubtaskState, TaskState};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// `$start, $start+1, …` for `n` bound values.
pub(crate) fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A request/campaign row as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignRow {
    /// Row id (`C<id>`).
    pub id: i64,
    /// Experiment name.
    pub experiment: String,
    /// Request kind.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Queue priority, higher first.
    pub priority: i64,
    /// Physics group.
    pub physics_group: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Who filed it.
    pub creator: String,
    /// Current state.
    pub state: String,
    /// Since when, ms.
    pub state_since: i64,
    /// The spec as canonical JSON.
    pub spec_json: String,
    /// Hash of the spec.
    pub spec_hash: String,
    /// Hash frozen at approval; differs from `spec_hash` after an edit.
    pub approved_hash: Option<String>,
    /// Approver.
    pub approved_by: Option<String>,
    /// Approval time, ms.
    pub approved_at: Option<i64>,
    /// The request this one was cloned from (W6).
    pub cloned_from: Option<i64>,
    /// The request this one was folded into (W2).
    pub consolidated_into: Option<i64>,
    /// Filing time, ms.
    pub created_at: i64,
    /// When it may first be split (approval plus the grace period), ms.
    pub start_after: Option<i64>,
}

const CAMPAIGN_COLUMNS: &str =
    "c.id, e.name, c.kind, c.title, c.priority, c.physics_group, c.description, \
     c.creator, c.state, c.state_since, c.spec_json, c.spec_hash, c.approved_hash, c.approved_by, \
     c.approved_at, c.cloned_from, c.consolidated_into, c.created_at, c.start_after";

fn campaign_from_row(r: &AnyRow) -> Result<CampaignRow, StoreError> {
    Ok(CampaignRow {
        id: r.try_get(0)?,
        experiment: r.try_get(1)?,
        kind: r.try_get(2)?,
        title: r.try_get(3)?,
        priority: r.try_get(4)?,
        physics_group: r.try_get(5)?,
        description: r.try_get(6)?,
        creator: r.try_get(7)?,
        state: r.try_get(8)?,
        state_since: r.try_get(9)?,
        spec_json: r.try_get(10)?,
        spec_hash: r.try_get(11)?,
        approved_hash: r.try_get(12)?,
        approved_by: r.try_get(13)?,
        approved_at: r.try_get(14)?,
        cloned_from: r.try_get(15)?,
        consolidated_into: r.try_get(16)?,
        created_at: r.try_get(17)?,
        start_after: r.try_get(18)?,
    })
}

/// Reads one campaign.
pub async fn get_campaign(conn: &mut AnyConnection, id: i64) -> Result<CampaignRow, StoreError> {
    read_campaign(conn, id, "").await
}

/// Reads one campaign inside a write transaction, locking its row on PostgreSQL so
/// concurrent changes queue (SQLite's `BEGIN IMMEDIATE` already serialises writers).
pub async fn get_campaign_for_update(tx: &mut Tx<'_>, id: i64) -> Result<CampaignRow, StoreError> {
    let lock = if tx.backend_name() == "PostgreSQL" {
        " FOR UPDATE OF c"
    } else {
        ""
    };
    read_campaign(tx, id, lock).await
}

async fn read_campaign(
    conn: &mut AnyConnection,
    id: i64,
    lock: &str,
) -> Result<CampaignRow, StoreError> {
    let sql = format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns c JOIN experiments e ON e.id = c.experiment_id WHERE c.id = $1{lock}"
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("request C{id}")))?;
    campaign_from_row(&row)
}

/// Which campaigns to list.
#[derive(Debug, Clone, Default)]
pub struct CampaignFilter {
    /// Only these states (any when empty).
    pub states: Vec<String>,
    /// Only this experiment.
    pub experiment: Option<String>,
    /// At most this many rows.
    pub limit: Option<i64>,
}

/// Campaigns matching a filter, highest priority first, then oldest (the queue order, J16).
pub async fn list_campaigns(
    conn: &mut AnyConnection,
    filter: &CampaignFilter,
) -> Result<Vec<CampaignRow>, StoreError> {
    let mut sql = format!(
        "SELECT {CAMPAIGN_COLUMNS} FROM campaigns c JOIN experiments e ON e.id = c.experiment_id WHERE 1 = 1"
    );
    let mut n = 1;
    if !filter.states.is_empty() {
        sql += &format!(" AND c.state IN ({})", placeholders(n, filter.states.len()));
        n += filter.states.len();
    }
    if filter.experiment.is_some() {
        sql += &format!(" AND e.name = ${n}");
        n += 1;
    }
    sql += " ORDER BY c.priority DESC, c.created_at, c.id";
    if filter.limit.is_some() {
        sql += &format!(" LIMIT ${n}");
    }
    let mut q = sqlx::query(&sql);
    for s in &filter.states {
        q = q.bind(s.as_str());
    }
    if let Some(e) = &filter.experiment {
        q = q.bind(e.as_str());
    }
    if let Some(l) = filter.limit {
        q = q.bind(l);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter().map(campaign_from_row).collect()
}

/// The fields of a request being filed.
#[derive(Debug, Clone)]
pub struct NewCampaign<'a> {
    /// Experiment row id.
    pub experiment_id: i64,
    /// Kind name.
    pub kind: &'a str,
    /// Title.
    pub title: &'a str,
    /// Priority.
    pub priority: i64,
    /// Physics group.
    pub physics_group: Option<&'a str>,
    /// Free text.
    pub description: Option<&'a str>,
    /// Who files it.
    pub creator: &'a str,
    /// Canonical spec JSON.
    pub spec_json: &'a str,
    /// Its hash.
    pub spec_hash: &'a str,
    /// Source of a clone.
    pub cloned_from: Option<i64>,
}

/// Inserts a request in state `new` and records its creation.
pub async fn insert_campaign(
    tx: &mut Tx<'_>,
    c: &NewCampaign<'_>,
    reason: &str,
) -> Result<i64, StoreError> {
    let now = now_ms();
    let row = sqlx::query(
        "INSERT INTO campaigns (experiment_id, kind, title, priority, physics_group, description, creator,
             state, state_since, spec_json, spec_hash, cloned_from, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(c.experiment_id)
    .bind(c.kind)
    .bind(c.title)
    .bind(c.priority)
    .bind(c.physics_group)
    .bind(c.description)
    .bind(c.creator)
    .bind(Lifecycle::as_str(CampaignState::New))
    .bind(now)
    .bind(c.spec_json)
    .bind(c.spec_hash)
    .bind(c.cloned_from)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let id: i64 = row.try_get(0)?;
    record_creation(tx, id, CampaignState::New, reason, c.creator).await?;
    Ok(id)
}

/// Replaces a request's title, physics group and description (its words,
/// which never touch its approval).
pub async fn update_words(
    tx: &mut Tx<'_>,
    id: i64,
    title: &str,
    physics_group: Option<&str>,
    description: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE campaigns SET title = $1, physics_group = $2, description = $3 WHERE id = $4",
    )
    .bind(title)
    .bind(physics_group)
    .bind(description)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The request's spec as filed (`Corrupt` when it does not decode).
pub async fn spec_of(tx: &mut Tx<'_>, id: i64) -> Result<crate::model::spec::Spec, StoreError> {
    let json: String = sqlx::query_scalar("SELECT spec_json FROM campaigns WHERE id = $1")
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("spec of C{id}"), e.to_string()))
}

/// Replaces a request's spec (the caller decides what that does to its approval).
pub async fn update_spec(
    tx: &mut Tx<'_>,
    id: i64,
    spec_json: &str,
    spec_hash: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE campaigns SET spec_json = $1, spec_hash = $2 WHERE id = $3")
        .bind(spec_json)
        .bind(spec_hash)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Freezes (or, with `None`, withdraws) the approved hash.
pub async fn set_approval(
    tx: &mut Tx<'_>,
    id: i64,
    approval: Option<(&str, &str)>,
) -> Result<(), StoreError> {
    let (hash, by, at) = match approval {
        Some((hash, by)) => (Some(hash), Some(by), Some(now_ms())),
        None => (None, None, None),
    };
    sqlx::query(
        "UPDATE campaigns SET approved_hash = $1, approved_by = $2, approved_at = $3 WHERE id = $4",
    )
    .bind(hash)
    .bind(by)
    .bind(at)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Changes the queue priority.
pub async fn set_priority(tx: &mut Tx<'_>, id: i64, priority: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE campaigns SET priority = $1 WHERE id = $2")
        .bind(priority)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records what a campaign's hold stops; `None` clears it (on release).
pub async fn set_hold_scope(
    tx: &mut Tx<'_>,
    id: i64,
    scope: Option<HoldScope>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE campaigns SET hold_scope = $1 WHERE id = $2")
        .bind(scope.map(HoldScope::as_str))
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What a campaign's hold stops (a hold stored without a scope, made before
/// scopes existed, holds queued jobs only).
pub async fn hold_scope(conn: &mut AnyConnection, id: i64) -> Result<HoldScope, StoreError> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT hold_scope FROM campaigns WHERE id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("request C{id}")))?;
    match stored {
        None => Ok(HoldScope::default()),
        Some(text) => HoldScope::parse(&text)
            .ok_or_else(|| StoreError::Corrupt(format!("hold scope of C{id}"), text)),
    }
}

/// Links a consolidated request to the one that absorbed it.
pub async fn set_consolidated_into(
    tx: &mut Tx<'_>,
    id: i64,
    target: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE campaigns SET consolidated_into = $1 WHERE id = $2")
        .bind(target)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskRow {
    /// Row id (`T<id>`).
    pub id: i64,
    /// Owning campaign.
    pub campaign_id: i64,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Current state.
    pub state: String,
    /// Since when, ms.
    pub state_since: i64,
}

/// A subtask as stored, with its DAG parents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubtaskRow {
    /// Row id (`S<id>`).
    pub id: i64,
    /// Owning task.
    pub task_id: i64,
    /// Stage name.
    pub name: String,
    /// Current state.
    pub state: String,
    /// Since when, ms.
    pub state_since: i64,
    /// Subtask ids that must succeed first.
    pub parents: Vec<i64>,
    /// The stage spec as JSON.
    pub spec_json: String,
}

/// Inserts a task and records its creation.
pub async fn insert_task(
    tx: &mut Tx<'_>,
    campaign_id: i64,
    name: &str,
    kind: &str,
    user: &str,
) -> Result<i64, StoreError> {
    let now = now_ms();
    let state = TaskState::Queued;
    let row = sqlx::query(
        "INSERT INTO tasks (campaign_id, name, kind, state, state_since, created_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(campaign_id)
    .bind(name)
    .bind(kind)
    .bind(Lifecycle::as_str(state))
    .bind(now)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?;
    let id: i64 = row.try_get(0)?;
    record_creation(tx, id, state, "created at approval", user).await?;
    Ok(id)
}

/// Inserts the subtask of a stage with its parents and records its creation.
pub async fn insert_subtask(
    tx: &mut Tx<'_>,
    task_id: i64,
    stage: &StageSpec,
    parents: &[i64],
    user: &str,
) -> Result<i64, StoreError> {
    let now = now_ms();
    let state = if parents.is_empty() {
        SubtaskState::Ready
    } else {
        SubtaskState::Waiting
    };
    let spec_json = serde_json::to_string(stage).expect("a stage always serialises");
    let row = sqlx::query(
        "INSERT INTO subtasks (task_id, name, state, state_since, spec_json, created_at, gen_events)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(task_id)
    .bind(&stage.name)
    .bind(Lifecycle::as_str(state))
    .bind(now)
    .bind(&spec_json)
    .bind(now)
    .bind(stage.generation.as_ref().map(|g| g.events))
    .fetch_one(&mut **tx)
    .await?;
    let id: i64 = row.try_get(0)?;
    for parent in parents {
        sqlx::query("INSERT INTO subtask_deps (subtask_id, parent_id) VALUES ($1, $2)")
            .bind(id)
            .bind(*parent)
            .execute(&mut **tx)
            .await?;
    }
    record_creation(tx, id, state, "created at approval", user).await?;
    Ok(id)
}

/// The tasks of a campaign, in creation order.
pub async fn tasks_of(
    conn: &mut AnyConnection,
    campaign_id: i64,
) -> Result<Vec<TaskRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, campaign_id, name, kind, state, state_since FROM tasks WHERE campaign_id = $1 ORDER BY id",
    )
    .bind(campaign_id)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TaskRow {
                id: r.try_get(0)?,
                campaign_id: r.try_get(1)?,
                name: r.try_get(2)?,
                kind: r.try_get(3)?,
                state: r.try_get(4)?,
                state_since: r.try_get(5)?,
            })
        })
        .collect()
}

/// The subtasks of every task of a campaign, with their parents.
pub async fn subtasks_of_campaign(
    conn: &mut AnyConnection,
    campaign_id: i64,
) -> Result<Vec<SubtaskRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT s.id, s.task_id, s.name, s.state, s.state_since, s.spec_json FROM subtasks s
         JOIN tasks t ON t.id = s.task_id WHERE t.campaign_id = $1 ORDER BY s.id",
    )
    .bind(campaign_id)
    .fetch_all(&mut *conn)
    .await?;
    let deps = sqlx::query(
        "SELECT d.subtask_id, d.parent_id FROM subtask_deps d JOIN subtasks s ON s.id = d.subtask_id
         JOIN tasks t ON t.id = s.task_id WHERE t.campaign_id = $1 ORDER BY d.parent_id",
    )
    .bind(campaign_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let id: i64 = r.try_get(0)?;
        let mut parents = Vec::new();
        for d in &deps {
            if d.try_get::<i64, _>(0)? == id {
                parents.push(d.try_get(1)?);
            }
        }
        out.push(SubtaskRow {
            id,
            task_id: r.try_get(1)?,
            name: r.try_get(2)?,
            state: r.try_get(3)?,
            state_since: r.try_get(4)?,
            parents,
            spec_json: r.try_get(5)?,
        });
    }
    Ok(out)
}

/// How many rows of a kind exist (for tests and `db info`).
pub async fn count(conn: &mut AnyConnection, kind: EntityKind) -> Result<i64, StoreError> {
    let sql = format!("SELECT COUNT(*) FROM {}", super::states::table_of(kind));
    let row = sqlx::query(&sql).fetch_one(conn).await?;
    Ok(row.try_get(0)?)
}
