//! The one function that changes a state (M7, M8): it checks the model's
//! transition table, writes the new state with a compare-and-set, and appends
//! the history row, all inside the caller's transaction.

use super::sql::{json, Col, Dialect};
use super::{now_ms, StoreError, Tx};
use crate::model::ids::{EntityKind, EntityRef};
use crate::model::state::{check_transition, Lifecycle};
use serde::Serialize;
use sqlx::Row;

/// The table that holds entities of a kind.
pub(crate) fn table_of(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Campaign => "campaigns",
        EntityKind::Task => "tasks",
        EntityKind::Subtask => "subtasks",
        EntityKind::Batch => "batches",
        EntityKind::Job => "jobs",
    }
}

/// Reads the current state of an entity.
pub async fn current_state<S: Lifecycle>(tx: &mut Tx<'_>, id: i64) -> Result<S, StoreError> {
    let entity = EntityRef { kind: S::KIND, id };
    let sql = format!("SELECT state FROM {} WHERE id = $1", table_of(S::KIND));
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(entity.to_string()))?;
    let text: String = row.try_get(0)?;
    S::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("state of {entity}"), text))
}

/// The current states of entities of one kind (missing ids are left out).
pub async fn states_of<S: Lifecycle>(
    tx: &mut Tx<'_>,
    ids: &[i64],
) -> Result<Vec<(i64, S)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, state FROM {} WHERE id IN ({}) ORDER BY id",
        table_of(S::KIND),
        Dialect::of(tx).ids(1)
    );
    let rows = sqlx::query(&sql)
        .bind(json(&ids))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get(0)?;
            let text: String = r.try_get(1)?;
            let entity = EntityRef { kind: S::KIND, id };
            let state = S::parse(&text)
                .ok_or_else(|| StoreError::Corrupt(format!("state of {entity}"), text))?;
            Ok((id, state))
        })
        .collect()
}

/// Moves an entity to `to` if the table allows it, recording who and why.
/// Returns the state it left. Nothing is written when the move is refused.
///
/// Two statements: the history row is inserted from the entity's current
/// state only if that state may move to `to` (returning it), then the state
/// is compare-and-set from it. A refused move reads the state once more to
/// say why.
pub async fn set_state<S: Lifecycle>(
    tx: &mut Tx<'_>,
    id: i64,
    to: S,
    reason: &str,
    user: &str,
) -> Result<S, StoreError> {
    let entity = EntityRef { kind: S::KIND, id };
    let from: Vec<&str> = S::ALL
        .iter()
        .filter(|s| s.next().contains(&to))
        .map(|s| s.as_str())
        .collect();
    let now = now_ms();
    let Some(old) = record_if_allowed(tx, entity, &from, to.as_str(), reason, user, now).await?
    else {
        let current: S = current_state(tx, id).await?;
        check_transition(current, to)?;
        return Err(StoreError::Conflict(format!(
            "{entity} changed while this was being done; look again and retry"
        )));
    };
    let old = S::parse(&old)
        .ok_or_else(|| StoreError::Corrupt(format!("state of {entity}"), old.clone()))?;
    let sql = format!(
        "UPDATE {} SET state = $1, state_since = $2 WHERE id = $3 AND state = $4",
        table_of(S::KIND)
    );
    let done = sqlx::query(&sql)
        .bind(to.as_str())
        .bind(now)
        .bind(id)
        .bind(old.as_str())
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Conflict(format!(
            "{entity} changed while this was being done; look again and retry"
        )));
    }
    Ok(old)
}

/// Moves many entities of one kind to `to`, each with its own reason, as
/// [`set_state`] does one: the same checks and history rows, in two
/// statements of a fixed shape (one history insert, one compare-and-set per
/// old state). All move or the call fails (the caller's transaction is then
/// not to be committed). `changes` holds each id once.
pub async fn set_states<S: Lifecycle>(
    tx: &mut Tx<'_>,
    changes: &[(i64, String)],
    to: S,
    user: &str,
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let from: Vec<&str> = S::ALL
        .iter()
        .filter(|s| s.next().contains(&to))
        .map(|s| s.as_str())
        .collect();
    let now = now_ms();
    let moved = record_many_if_allowed(tx, S::KIND, changes, &from, to.as_str(), user, now).await?;
    if moved.len() != changes.len() {
        return Err(first_refusal::<S>(tx, changes, &moved, to).await);
    }
    compare_and_set_many(tx, S::KIND, &moved, to.as_str(), now).await
}

/// Inserts the history rows of the entities in `changes` whose current
/// state is one of `from`; returns `(id, old state)` of each row written.
async fn record_many_if_allowed(
    tx: &mut Tx<'_>,
    kind: EntityKind,
    changes: &[(i64, String)],
    from: &[&str],
    new: &str,
    user: &str,
    now: i64,
) -> Result<Vec<(i64, String)>, StoreError> {
    if from.is_empty() {
        return Ok(Vec::new());
    }
    let dialect = Dialect::of(tx);
    let sql = format!(
        "INSERT INTO history (ts, entity_kind, entity_id, old_state, new_state, reason, user_name)
         SELECT $1, $2, t.id, t.state, $3, v.c1, $4
         FROM {} t JOIN ({}) AS v ON t.id = v.c0
         WHERE t.state IN ({})
         RETURNING entity_id, old_state",
        table_of(kind),
        dialect.rows(5, &[Col::Int, Col::Text]),
        super::campaigns::placeholders(6, from.len())
    );
    let mut q = sqlx::query(&sql)
        .bind(now)
        .bind(kind.as_str())
        .bind(new)
        .bind(user)
        .bind(dialect.rows_json(changes));
    for state in from {
        q = q.bind(*state);
    }
    q.fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Sets `new` on every `(id, old)` of `moved` still in `old`, one statement
/// per distinct old state; any other outcome is a conflict.
async fn compare_and_set_many(
    tx: &mut Tx<'_>,
    kind: EntityKind,
    moved: &[(i64, String)],
    new: &str,
    now: i64,
) -> Result<(), StoreError> {
    let mut by_old: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    for (id, old) in moved {
        by_old.entry(old.as_str()).or_default().push(*id);
    }
    let sql = format!(
        "UPDATE {} SET state = $1, state_since = $2 WHERE state = $3 AND id IN ({})",
        table_of(kind),
        Dialect::of(tx).ids(4)
    );
    for (old, ids) in by_old {
        let done = sqlx::query(&sql)
            .bind(new)
            .bind(now)
            .bind(old)
            .bind(json(&ids))
            .execute(&mut **tx)
            .await?;
        if done.rows_affected() != ids.len() as u64 {
            return Err(StoreError::Conflict(format!(
                "{} {} changed while this was being done; look again and retry",
                ids.len(),
                table_of(kind)
            )));
        }
    }
    Ok(())
}

/// Why the first entity of `chunk` missing from `moved` could not move to `to`.
async fn first_refusal<S: Lifecycle>(
    tx: &mut Tx<'_>,
    chunk: &[(i64, String)],
    moved: &[(i64, String)],
    to: S,
) -> StoreError {
    let Some(&(id, _)) = chunk
        .iter()
        .find(|(id, _)| !moved.iter().any(|(m, _)| m == id))
    else {
        return StoreError::Conflict("the same entity was named twice in one change".into());
    };
    let entity = EntityRef { kind: S::KIND, id };
    match current_state::<S>(tx, id).await {
        Err(e) => e,
        Ok(current) => match check_transition(current, to) {
            Err(e) => e.into(),
            Ok(()) => StoreError::Conflict(format!(
                "{entity} changed while this was being done; look again and retry"
            )),
        },
    }
}

/// State changes of many entities of one kind, gathered during a phase and
/// written together by [`set_states`], one call per target state.
#[derive(Debug)]
pub struct Moves<S: Lifecycle>(std::collections::BTreeMap<&'static str, (S, Vec<Change>)>);

/// One entity's change in [`set_states`]: its id and the reason.
pub type Change = (i64, String);

impl<S: Lifecycle> Default for Moves<S> {
    fn default() -> Self {
        Moves(Default::default())
    }
}

impl<S: Lifecycle> Moves<S> {
    /// Notes that entity `id` moves to `to` because of `why`.
    pub fn add(&mut self, id: i64, to: S, why: impl Into<String>) {
        self.0
            .entry(to.as_str())
            .or_insert_with(|| (to, Vec::new()))
            .1
            .push((id, why.into()));
    }

    /// How many moves are noted.
    pub fn len(&self) -> usize {
        self.0.values().map(|(_, v)| v.len()).sum()
    }

    /// True when nothing is noted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes every noted move with its history row, as `user`.
    pub async fn write(self, tx: &mut Tx<'_>, user: &str) -> Result<(), StoreError> {
        for (to, changes) in self.0.into_values() {
            set_states(tx, &changes, to, user).await?;
        }
        Ok(())
    }
}

/// Inserts the history row of `entity` moving to `new` when its current state
/// is one of `from`; returns that state, or `None` when nothing was written.
async fn record_if_allowed(
    tx: &mut Tx<'_>,
    entity: EntityRef,
    from: &[&str],
    new: &str,
    reason: &str,
    user: &str,
    now: i64,
) -> Result<Option<String>, StoreError> {
    if from.is_empty() {
        return Ok(None);
    }
    let sql = format!(
        "INSERT INTO history (ts, entity_kind, entity_id, old_state, new_state, reason, user_name)
         SELECT $1, $2, id, state, $3, $4, $5 FROM {} WHERE id = $6 AND state IN ({})
         RETURNING old_state",
        table_of(entity.kind),
        super::campaigns::placeholders(7, from.len())
    );
    let mut q = sqlx::query_scalar::<_, String>(&sql)
        .bind(now)
        .bind(entity.kind.as_str())
        .bind(new)
        .bind(reason)
        .bind(user)
        .bind(entity.id);
    for state in from {
        q = q.bind(*state);
    }
    Ok(q.fetch_optional(&mut **tx).await?)
}

/// Records the first state of a newly inserted entity (old state empty).
pub async fn record_creation<S: Lifecycle>(
    tx: &mut Tx<'_>,
    id: i64,
    state: S,
    reason: &str,
    user: &str,
) -> Result<(), StoreError> {
    record(
        tx,
        EntityRef { kind: S::KIND, id },
        None,
        state.as_str(),
        reason,
        user,
        now_ms(),
    )
    .await
}

/// Records the first state of many newly inserted entities of one kind,
/// in one statement.
pub async fn record_creations<S: Lifecycle>(
    tx: &mut Tx<'_>,
    ids: &[i64],
    state: S,
    reason: &str,
    user: &str,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO history (ts, entity_kind, entity_id, old_state, new_state, reason, user_name)
         SELECT $1, $2, v.value, NULL, $3, $4, $5 FROM ({}) AS v",
        Dialect::of(tx).ids(6)
    );
    sqlx::query(&sql)
        .bind(now_ms())
        .bind(S::KIND.as_str())
        .bind(state.as_str())
        .bind(reason)
        .bind(user)
        .bind(json(&ids))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn record(
    tx: &mut Tx<'_>,
    entity: EntityRef,
    old: Option<&str>,
    new: &str,
    reason: &str,
    user: &str,
    ts: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO history (ts, entity_kind, entity_id, old_state, new_state, reason, user_name)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(ts)
    .bind(entity.kind.as_str())
    .bind(entity.id)
    .bind(old)
    .bind(new)
    .bind(reason)
    .bind(user)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// When, in ms since the epoch.
    pub ts: i64,
    /// The entity that changed, e.g. `C12`.
    pub entity: String,
    /// The state it left; empty for its creation.
    pub old: Option<String>,
    /// The state it entered.
    pub new: String,
    /// Why.
    pub reason: String,
    /// Who (or `worker`).
    pub user: String,
}

/// Every transition of one entity, oldest first.
pub async fn history_of(
    pool: &sqlx::AnyPool,
    entity: EntityRef,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let rows = sqlx::query(
        "SELECT ts, old_state, new_state, reason, user_name FROM history
         WHERE entity_kind = $1 AND entity_id = $2 ORDER BY id",
    )
    .bind(entity.kind.as_str())
    .bind(entity.id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(HistoryEntry {
                ts: r.try_get(0)?,
                entity: entity.to_string(),
                old: r.try_get(1)?,
                new: r.try_get(2)?,
                reason: r.try_get(3)?,
                user: r.try_get(4)?,
            })
        })
        .collect()
}

/// The state an entity held just before it last entered `state` (to undo a hold).
pub async fn state_before_last<S: Lifecycle>(
    tx: &mut Tx<'_>,
    id: i64,
    state: S,
) -> Result<Option<S>, StoreError> {
    let row = sqlx::query(
        "SELECT old_state FROM history WHERE entity_kind = $1 AND entity_id = $2 AND new_state = $3
         ORDER BY id DESC LIMIT 1",
    )
    .bind(S::KIND.as_str())
    .bind(id)
    .bind(state.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let old: Option<String> = row.try_get(0)?;
    Ok(old.as_deref().and_then(S::parse))
}

/// Ids of a kind's rows whose fixed `parent_column` equals `parent_id` and are in one of `states`.
pub(crate) async fn ids_in_states<S: Lifecycle>(
    tx: &mut Tx<'_>,
    parent_column: &str,
    parent_id: i64,
    states: &[S],
) -> Result<Vec<i64>, StoreError> {
    let sql = format!(
        "SELECT id, state FROM {} WHERE {parent_column} = $1 ORDER BY id",
        table_of(S::KIND)
    );
    let rows = sqlx::query(&sql)
        .bind(parent_id)
        .fetch_all(&mut **tx)
        .await?;
    let mut ids = Vec::new();
    for r in rows {
        let state: String = r.try_get(1)?;
        if states.iter().any(|s| s.as_str() == state) {
            ids.push(r.try_get(0)?);
        }
    }
    Ok(ids)
}
