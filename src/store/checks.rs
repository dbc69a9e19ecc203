//! Pre-launch check verdicts (P1–P4, J3, J10): the latest verdict of each
//! configured check, with its scope, so every reader (CLI, console) can say
//! which submissions wait and why. A verdict that changes is a state change
//! recorded in `history` (entity `check`, `passing` / `failing`).

use super::{StoreError, Tx};
use crate::clock::now_ms;
use crate::model::check::{CheckSpec, Verdict};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

/// One check's latest verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    /// Its name.
    pub name: String,
    /// The experiment whose submissions it guards (all when absent).
    pub experiment: Option<String>,
    /// The backend whose submissions it guards (all when absent).
    pub backend: Option<String>,
    /// It passed.
    pub passing: bool,
    /// What it saw.
    pub detail: String,
    /// When it last ran (ms since the epoch).
    pub checked_at: i64,
    /// Since when the verdict has been the same (ms since the epoch).
    pub since: i64,
}

impl CheckRow {
    /// True when a submission of `experiment` to `backend` waits for this failing check.
    pub fn holds(&self, experiment: &str, backend: &str) -> bool {
        !self.passing
            && self.experiment.as_deref().is_none_or(|e| e == experiment)
            && self.backend.as_deref().is_none_or(|b| b == backend)
    }

    /// `check `samweb` failing: HTTP 503 (expected 200)`: why submissions wait.
    pub fn hold_reason(&self) -> String {
        format!("check `{}` failing: {}", self.name, self.detail)
    }
}

fn state_name(passing: bool) -> &'static str {
    if passing {
        "passing"
    } else {
        "failing"
    }
}

/// Stores `verdicts` by `user`; a verdict that differs from the stored one
/// is a state change in `history`. Returns how many changed.
pub async fn record_verdicts(
    tx: &mut Tx<'_>,
    verdicts: &[(&CheckSpec, Verdict)],
    user: &str,
) -> Result<usize, StoreError> {
    let now = now_ms();
    let mut changed = 0;
    for (spec, verdict) in verdicts {
        let stored = sqlx::query("SELECT id, passing FROM checks WHERE name = $1")
            .bind(&spec.name)
            .fetch_optional(&mut **tx)
            .await?;
        let (id, old) = match stored {
            Some(row) => (
                row.try_get::<i64, _>(0)?,
                Some(row.try_get::<i64, _>(1)? != 0),
            ),
            None => {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO checks (name, experiment, backend, passing, detail, checked_at, since) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                )
                .bind(&spec.name)
                .bind(&spec.scope.experiment)
                .bind(&spec.scope.backend)
                .bind(verdict.ok as i64)
                .bind(&verdict.detail)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?;
                (id, None)
            }
        };
        let flipped = old != Some(verdict.ok);
        sqlx::query(
            "UPDATE checks SET experiment = $2, backend = $3, passing = $4, detail = $5, checked_at = $6, since = CASE WHEN $7 = 1 THEN $6 ELSE since END WHERE id = $1",
        )
        .bind(id)
        .bind(&spec.scope.experiment)
        .bind(&spec.scope.backend)
        .bind(verdict.ok as i64)
        .bind(&verdict.detail)
        .bind(now)
        .bind(flipped as i64)
        .execute(&mut **tx)
        .await?;
        if flipped {
            sqlx::query(
                "INSERT INTO history (ts, entity_kind, entity_id, old_state, new_state, reason, user_name) VALUES ($1, 'check', $2, $3, $4, $5, $6)",
            )
            .bind(now)
            .bind(id)
            .bind(old.map(state_name))
            .bind(state_name(verdict.ok))
            .bind(&verdict.detail)
            .bind(user)
            .execute(&mut **tx)
            .await?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Forgets checks no longer configured (their verdicts would hold nothing).
pub async fn forget_unconfigured(tx: &mut Tx<'_>, configured: &[&str]) -> Result<(), StoreError> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM checks")
        .fetch_all(&mut **tx)
        .await?;
    for name in names.iter().filter(|n| !configured.contains(&n.as_str())) {
        sqlx::query("DELETE FROM checks WHERE name = $1")
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Every stored verdict, by name.
pub async fn all_checks(conn: &mut AnyConnection) -> Result<Vec<CheckRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, experiment, backend, passing, detail, checked_at, since FROM checks ORDER BY name",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(CheckRow {
                name: r.try_get(0)?,
                experiment: r.try_get(1)?,
                backend: r.try_get(2)?,
                passing: r.try_get::<i64, _>(3)? != 0,
                detail: r.try_get(4)?,
                checked_at: r.try_get(5)?,
                since: r.try_get(6)?,
            })
        })
        .collect()
}
