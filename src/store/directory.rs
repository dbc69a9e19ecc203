//! Experiments, users and their role grants (W1, J13, roles of the spec).

use super::{StoreError, Tx};
use crate::clock::now_ms;
use crate::model::role::{Grant, Role};
use crate::model::spec::TaskKind;
use serde::Serialize;
use sqlx::Row;

/// A registered experiment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Experiment {
    /// Row id.
    pub id: i64,
    /// Short name, e.g. `nova`.
    pub name: String,
    /// Kinds approved without a person (never Monte-Carlo).
    pub auto_approve: Vec<TaskKind>,
}

fn kinds_from_text(text: &str) -> Vec<TaskKind> {
    text.split(',').filter_map(TaskKind::parse).collect()
}

/// Registers an experiment; its name must be new.
pub async fn insert_experiment(
    tx: &mut Tx<'_>,
    name: &str,
    auto_approve: &[TaskKind],
) -> Result<i64, StoreError> {
    if find_experiment(tx, name).await?.is_some() {
        return Err(StoreError::Conflict(format!(
            "experiment `{name}` already exists"
        )));
    }
    let kinds: Vec<&str> = auto_approve.iter().map(|k| k.as_str()).collect();
    let row = sqlx::query(
        "INSERT INTO experiments (name, auto_approve_kinds, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(name)
    .bind(kinds.join(","))
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?;
    Ok(row.try_get(0)?)
}

/// Looks an experiment up by name.
pub async fn find_experiment(
    tx: &mut Tx<'_>,
    name: &str,
) -> Result<Option<Experiment>, StoreError> {
    let row = sqlx::query("SELECT id, name, auto_approve_kinds FROM experiments WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|r| experiment_from_row(&r)).transpose()
}

fn experiment_from_row(r: &sqlx::any::AnyRow) -> Result<Experiment, StoreError> {
    Ok(Experiment {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        auto_approve: kinds_from_text(&r.try_get::<String, _>(2)?),
    })
}

/// Every experiment, by name.
pub async fn list_experiments(pool: &sqlx::AnyPool) -> Result<Vec<Experiment>, StoreError> {
    let rows = sqlx::query("SELECT id, name, auto_approve_kinds FROM experiments ORDER BY name")
        .fetch_all(pool)
        .await?;
    rows.iter().map(experiment_from_row).collect()
}

/// A user and every role they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Login name on the submission node.
    pub name: String,
    /// Grid certificate DN, if mapped.
    pub dn: Option<String>,
    /// Bearer token subject, if mapped.
    pub token_subject: Option<String>,
    /// Roles held.
    pub grants: Vec<Grant>,
}

/// How many users are registered (zero means the first `user add` bootstraps an admin).
pub async fn count_users(tx: &mut Tx<'_>) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT COUNT(*) FROM users")
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get(0)?)
}

/// Creates the user if new and updates their grid identities when given.
pub async fn upsert_user(
    tx: &mut Tx<'_>,
    name: &str,
    dn: Option<&str>,
    token_subject: Option<&str>,
) -> Result<(), StoreError> {
    let exists = sqlx::query("SELECT name FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .is_some();
    if !exists {
        sqlx::query("INSERT INTO users (name, created_at) VALUES ($1, $2)")
            .bind(name)
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
    }
    if let Some(dn) = dn {
        sqlx::query("UPDATE users SET dn = $1 WHERE name = $2")
            .bind(dn)
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(sub) = token_subject {
        sqlx::query("UPDATE users SET token_subject = $1 WHERE name = $2")
            .bind(sub)
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Adds a grant; adding one already held changes nothing.
pub async fn add_grant(tx: &mut Tx<'_>, user: &str, grant: &Grant) -> Result<bool, StoreError> {
    let kind = grant.kind.map(|k| k.as_str()).unwrap_or("");
    let exists = sqlx::query(
        "SELECT id FROM grants WHERE user_name = $1 AND role = $2 AND experiment = $3 AND kind = $4",
    )
    .bind(user)
    .bind(grant.role.as_str())
    .bind(&grant.experiment)
    .bind(kind)
    .fetch_optional(&mut **tx)
    .await?
    .is_some();
    if exists {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO grants (user_name, role, experiment, kind, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(user)
    .bind(grant.role.as_str())
    .bind(&grant.experiment)
    .bind(kind)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// The grants a user holds (none for an unknown user).
pub async fn grants_of(tx: &mut Tx<'_>, user: &str) -> Result<Vec<Grant>, StoreError> {
    let rows =
        sqlx::query("SELECT role, experiment, kind FROM grants WHERE user_name = $1 ORDER BY id")
            .bind(user)
            .fetch_all(&mut **tx)
            .await?;
    rows.iter().map(grant_from_row).collect()
}

fn grant_from_row(r: &sqlx::any::AnyRow) -> Result<Grant, StoreError> {
    let role: String = r.try_get(0)?;
    let kind: String = r.try_get(2)?;
    Ok(Grant {
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt("role".into(), role.clone()))?,
        experiment: r.try_get(1)?,
        kind: TaskKind::parse(&kind),
    })
}

/// Every user with their grants, by name.
pub async fn list_users(pool: &sqlx::AnyPool) -> Result<Vec<User>, StoreError> {
    let users = sqlx::query("SELECT name, dn, token_subject FROM users ORDER BY name")
        .fetch_all(pool)
        .await?;
    let grants = sqlx::query("SELECT role, experiment, kind, user_name FROM grants ORDER BY id")
        .fetch_all(pool)
        .await?;
    let mut out = Vec::with_capacity(users.len());
    for u in &users {
        let name: String = u.try_get(0)?;
        let mut mine = Vec::new();
        for g in &grants {
            if g.try_get::<String, _>(3)? == name {
                mine.push(grant_from_row(g)?);
            }
        }
        out.push(User {
            name,
            dn: u.try_get(1)?,
            token_subject: u.try_get(2)?,
            grants: mine,
        });
    }
    Ok(out)
}
