//! The audit trail of management actions, allowed or refused (CP1).

use super::{StoreError, Tx};
use crate::clock::now_ms;
use serde::Serialize;
use sqlx::Row;

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When, in ms since the epoch.
    pub ts: i64,
    /// Who acted (as `admin as alice` when impersonating).
    pub user: String,
    /// What they did.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// Whether it was allowed.
    pub allowed: bool,
    /// Details: old and new values, reasons.
    pub detail: String,
}

/// Appends an audit row inside the action's own transaction.
pub async fn record(
    tx: &mut Tx<'_>,
    user: &str,
    action: &str,
    target: &str,
    allowed: bool,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit (ts, user_name, action, target, allowed, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(now_ms())
    .bind(user)
    .bind(action)
    .bind(target)
    .bind(i64::from(allowed))
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The id of the newest audit row (0 when none): every management action
/// writes one, so the worker knows when a person acted.
pub async fn latest_id(conn: &mut sqlx::AnyConnection) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM audit")
        .fetch_one(conn)
        .await?)
}

/// The most recent audit rows, newest first.
pub async fn recent(pool: &sqlx::AnyPool, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT ts, user_name, action, target, allowed, detail FROM audit ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AuditEntry {
                ts: r.try_get(0)?,
                user: r.try_get(1)?,
                action: r.try_get(2)?,
                target: r.try_get(3)?,
                allowed: r.try_get::<i64, _>(4)? != 0,
                detail: r.try_get(5)?,
            })
        })
        .collect()
}
