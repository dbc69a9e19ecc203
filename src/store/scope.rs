//! What an entity belongs to and contains: the campaign, experiment and
//! kind that own it, the subtasks within it, a campaign's tasks in a
//! state, and a subtask's sign-off (for the actions of `ops`).

use super::{StoreError, Tx};
use crate::model::ids::{EntityKind, EntityRef};
use crate::model::state::{Lifecycle, TaskState};
use sqlx::Row;

/// The campaign id, experiment name and kind that own `scope`.
pub async fn owner_of(
    tx: &mut Tx<'_>,
    scope: EntityRef,
) -> Result<(i64, String, String), StoreError> {
    let sql = match scope.kind {
        EntityKind::Campaign => "SELECT c.id, e.name, c.kind FROM campaigns c JOIN experiments e ON e.id = c.experiment_id WHERE c.id = $1",
        EntityKind::Task => "SELECT c.id, e.name, c.kind FROM tasks t JOIN campaigns c ON c.id = t.campaign_id JOIN experiments e ON e.id = c.experiment_id WHERE t.id = $1",
        EntityKind::Subtask => "SELECT c.id, e.name, c.kind FROM subtasks s JOIN tasks t ON t.id = s.task_id JOIN campaigns c ON c.id = t.campaign_id JOIN experiments e ON e.id = c.experiment_id WHERE s.id = $1",
        EntityKind::Batch => "SELECT c.id, e.name, c.kind FROM batches b JOIN subtasks s ON s.id = b.subtask_id JOIN tasks t ON t.id = s.task_id JOIN campaigns c ON c.id = t.campaign_id JOIN experiments e ON e.id = c.experiment_id WHERE b.id = $1",
        EntityKind::Job => "SELECT c.id, e.name, c.kind FROM jobs j JOIN subtasks s ON s.id = j.subtask_id JOIN tasks t ON t.id = s.task_id JOIN campaigns c ON c.id = t.campaign_id JOIN experiments e ON e.id = c.experiment_id WHERE j.id = $1",
    };
    let row = sqlx::query(sql)
        .bind(scope.id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(scope.to_string()))?;
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// The subtasks within `scope` (the one a batch or job belongs to).
pub async fn subtasks_in_scope(tx: &mut Tx<'_>, scope: EntityRef) -> Result<Vec<i64>, StoreError> {
    let sql = match scope.kind {
        EntityKind::Campaign => "SELECT s.id FROM subtasks s JOIN tasks t ON t.id = s.task_id WHERE t.campaign_id = $1 ORDER BY s.id",
        EntityKind::Task => "SELECT id FROM subtasks WHERE task_id = $1 ORDER BY id",
        EntityKind::Subtask => "SELECT id FROM subtasks WHERE id = $1",
        EntityKind::Batch => "SELECT subtask_id FROM batches WHERE id = $1",
        EntityKind::Job => "SELECT subtask_id FROM jobs WHERE id = $1",
    };
    let rows = sqlx::query(sql).bind(scope.id).fetch_all(&mut **tx).await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// The tasks of `campaign` in `state`.
pub async fn tasks_in_state(
    tx: &mut Tx<'_>,
    campaign: i64,
    state: TaskState,
) -> Result<Vec<i64>, StoreError> {
    let rows =
        sqlx::query("SELECT id FROM tasks WHERE campaign_id = $1 AND state = $2 ORDER BY id")
            .bind(campaign)
            .bind(state.as_str())
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// Records that `who` signed subtask `subtask` off at `at` (T5).
pub async fn sign_off(tx: &mut Tx<'_>, subtask: i64, who: &str, at: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE subtasks SET signed_off_by = $1, signed_off_at = $2 WHERE id = $3")
        .bind(who)
        .bind(at)
        .bind(subtask)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
