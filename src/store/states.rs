//! The one function that changes a state (M7, M8): it checks the model's
//! transition table, writes the new state with a compare-and-set, and appends
//! the history row, all inside the caller's transaction.

use super::sql::{json, Col, Dialect};
use super::{StoreError, Tx};
use crate::clock::now_ms;
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

/// A state column read back as its state, or `Corrupt` naming the entity
/// it belongs to (`S::KIND` with id `id`).
pub(crate) fn decode<S: Lifecycle>(text: String, id: i64) -> Result<S, StoreError> {
    let entity = EntityRef { kind: S::KIND, id };
    S::parse(&text).ok_or_else(|| StoreError::Corrupt(format!("state of {entity}"), text))
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
    decode(row.try_get(0)?, id)
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
/// [`set_state`] does one, all or nothing: the first entity that cannot
/// move fails the call (the caller's transaction is then not to be
/// committed). For actions a person takes on a list, which either happen
/// whole or not at all. `changes` holds each id once.
pub async fn set_states<S: Lifecycle>(
    tx: &mut Tx<'_>,
    changes: &[(i64, String)],
    to: S,
    user: &str,
) -> Result<(), StoreError> {
    move_states(tx, changes, to, user).await?.into_result()
}

/// Moves every entity of `changes` that may go to `to`, each with its own
/// reason and history row, and returns the ones it skipped with why (the
/// table refuses the move, the entity is gone, or another writer changed it
/// meanwhile): one entity that cannot move never keeps the others from
/// moving, which the worker needs (a pass serves every campaign).
///
/// Statements of a fixed shape that return no rows when everything moves
/// (sqlx hands each returned row across threads); only a batch with a skip
/// reads the skipped entities' states to say why. `changes` holds each id once.
pub async fn move_states<S: Lifecycle>(
    tx: &mut Tx<'_>,
    changes: &[(i64, String)],
    to: S,
    user: &str,
) -> Result<Skipped, StoreError> {
    move_states_from(tx, changes, S::ALL, to, user).await
}

/// [`move_states`] for entities expected in one of `expected` (the states
/// the caller read them in): one found in another state, even one the table
/// would let move, is skipped as changed meanwhile. The worker starts an
/// `approved` campaign this way, so a hold that came in between stays.
pub async fn move_states_from<S: Lifecycle>(
    tx: &mut Tx<'_>,
    changes: &[(i64, String)],
    expected: &[S],
    to: S,
    user: &str,
) -> Result<Skipped, StoreError> {
    if changes.is_empty() {
        return Ok(Skipped::default());
    }
    let from: Vec<&str> = expected
        .iter()
        .filter(|s| s.next().contains(&to))
        .map(|s| s.as_str())
        .collect();
    let ids: Vec<i64> = changes.iter().map(|(id, _)| *id).collect();
    let why = WhyNot {
        ids: &ids,
        from: &from,
        to,
    };
    if from.is_empty() {
        return why.skipped(tx, false).await;
    }
    let moving = Moving {
        kind: S::KIND,
        changes,
        from: &from,
        to: to.as_str(),
        user,
        now: now_ms(),
    };
    match Dialect::of(tx) {
        Dialect::Sqlite => {
            let recorded = moving.record_sqlite(tx).await?;
            let skipped = if recorded == changes.len() as u64 {
                Skipped::default()
            } else {
                why.skipped(tx, true).await?
            };
            moving.update_sqlite(tx, recorded).await?;
            Ok(skipped)
        }
        Dialect::Postgres => {
            let left_out = moving.postgres(tx).await?;
            if left_out.is_empty() {
                return Ok(Skipped::default());
            }
            WhyNot {
                ids: &left_out,
                ..why
            }
            .skipped(tx, false)
            .await
        }
    }
}

/// The entities [`move_states`] moves and how.
struct Moving<'a> {
    kind: EntityKind,
    changes: &'a [(i64, String)],
    from: &'a [&'a str],
    to: &'a str,
    user: &'a str,
    now: i64,
}

impl Moving<'_> {
    /// SQLite, first statement: the history rows of the entities in a state
    /// that may move (the transaction's write lock keeps other writers out
    /// until the update). Returns how many were recorded.
    async fn record_sqlite(&self, tx: &mut Tx<'_>) -> Result<u64, StoreError> {
        let dialect = Dialect::Sqlite;
        let table = table_of(self.kind);
        let from = super::campaigns::placeholders(6, self.from.len());
        let sql = format!(
            "INSERT INTO history (ts, entity_kind, entity_id, old_state, new_state, reason, user_name)
             SELECT $1, $2, t.id, t.state, $3, v.c1, $4
             FROM ({}) AS v {} {table} t ON t.id = v.c0
             WHERE t.state IN ({from})",
            dialect.rows(5, &[Col::Int, Col::Text]),
            dialect.join_rows_first(),
        );
        Ok(self.bound(&sql).execute(&mut **tx).await?.rows_affected())
    }

    /// SQLite, second statement: the compare-and-set of the same entities
    /// (those in a state that may move), which must be the `recorded` ones.
    async fn update_sqlite(&self, tx: &mut Tx<'_>, recorded: u64) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE {} SET state = $1, state_since = $2 WHERE id IN ({}) AND state IN ({})",
            table_of(self.kind),
            Dialect::Sqlite.ids(3),
            super::campaigns::placeholders(4, self.from.len())
        );
        let ids: Vec<i64> = self.changes.iter().map(|(id, _)| *id).collect();
        let mut q = sqlx::query(&sql)
            .bind(self.to)
            .bind(self.now)
            .bind(json(&ids));
        for state in self.from {
            q = q.bind(*state);
        }
        if q.execute(&mut **tx).await?.rows_affected() != recorded {
            return Err(self.conflict());
        }
        Ok(())
    }

    /// PostgreSQL: one statement moves the entities still in the state read
    /// by the statement (a concurrent change leaves a row out), records the
    /// history of those it moved, and returns the ids it left out (none,
    /// and so no rows, when everything moved).
    async fn postgres(&self, tx: &mut Tx<'_>) -> Result<Vec<i64>, StoreError> {
        let table = table_of(self.kind);
        let sql = format!(
            "WITH v AS ({}),
             moved AS (
               UPDATE {table} t SET state = $3, state_since = $1
               FROM {table} o, v
               WHERE o.id = t.id AND v.c0 = t.id AND t.state = o.state AND o.state IN ({})
               RETURNING t.id, o.state AS old_state, v.c1 AS reason),
             recorded AS (
               INSERT INTO history (ts, entity_kind, entity_id, old_state, new_state, reason, user_name)
               SELECT $1, $2, id, old_state, $3, reason, $4 FROM moved)
             SELECT v.c0 FROM v WHERE NOT EXISTS (SELECT 1 FROM moved m WHERE m.id = v.c0)
             ORDER BY v.c0",
            Dialect::Postgres.rows(5, &[Col::Int, Col::Text]),
            super::campaigns::placeholders(6, self.from.len())
        );
        let q = self.bound(&sql);
        let rows = q.fetch_all(&mut **tx).await?;
        Ok(rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?)
    }

    /// `sql` with the parameters both dialects' statements take: `$1` now,
    /// `$2` kind, `$3` new state, `$4` user, `$5` the changes, `$6…` the
    /// states it may move from.
    fn bound<'q>(
        &'q self,
        sql: &'q str,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        let mut q = sqlx::query(sql)
            .bind(self.now)
            .bind(self.kind.as_str())
            .bind(self.to)
            .bind(self.user)
            .bind(json(&self.changes));
        for state in self.from {
            q = q.bind(*state);
        }
        q
    }

    fn conflict(&self) -> StoreError {
        StoreError::Conflict(format!(
            "{} {} changed while this was being done; look again and retry",
            self.changes.len(),
            table_of(self.kind)
        ))
    }
}

/// Entities of a batch that may not have moved, and the move.
struct WhyNot<'a, S> {
    ids: &'a [i64],
    from: &'a [&'a str],
    to: S,
}

impl<S: Lifecycle> WhyNot<'_, S> {
    /// Why each of `ids` did not move, from its current state. With
    /// `moved_if_from` (SQLite, read before the update under the write lock)
    /// those in a state of `from` are the ones that move and are left out;
    /// without (PostgreSQL, read after the statement) another writer
    /// changed them meanwhile.
    async fn skipped(&self, tx: &mut Tx<'_>, moved_if_from: bool) -> Result<Skipped, StoreError> {
        let states: std::collections::HashMap<i64, S> =
            states_of::<S>(tx, self.ids).await?.into_iter().collect();
        let skips = self
            .ids
            .iter()
            .filter_map(|&id| {
                let why = match states.get(&id) {
                    None => WhySkipped::Missing,
                    Some(now) if self.from.contains(&now.as_str()) => {
                        if moved_if_from {
                            return None;
                        }
                        WhySkipped::Changed
                    }
                    Some(now) => match check_transition(*now, self.to) {
                        Err(illegal) => WhySkipped::Illegal(illegal),
                        Ok(()) => WhySkipped::Changed,
                    },
                };
                Some(SkippedMove {
                    entity: EntityRef { kind: S::KIND, id },
                    to: self.to.as_str(),
                    why,
                })
            })
            .collect();
        Ok(Skipped(skips))
    }
}

/// Why one entity of a batch of moves did not move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhySkipped {
    /// The table refuses the move from its current state.
    Illegal(crate::model::state::IllegalTransition),
    /// It does not exist.
    Missing,
    /// Another writer changed it while the batch was written.
    Changed,
}

/// One entity a batch of moves skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedMove {
    /// The entity, e.g. `J12`.
    pub entity: EntityRef,
    /// The state it was to move to.
    pub to: &'static str,
    /// Why it did not.
    pub why: WhySkipped,
}

impl std::fmt::Display for SkippedMove {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} skipped (not moved to `{}`): ", self.entity, self.to)?;
        match &self.why {
            WhySkipped::Illegal(illegal) => write!(f, "{illegal}"),
            WhySkipped::Missing => f.write_str("it does not exist"),
            WhySkipped::Changed => f.write_str("it changed while this was being done"),
        }
    }
}

impl SkippedMove {
    /// The error [`set_states`] fails with for this entity.
    fn into_error(self) -> StoreError {
        match self.why {
            WhySkipped::Illegal(illegal) => StoreError::Illegal(illegal),
            WhySkipped::Missing => StoreError::NotFound(self.entity.to_string()),
            WhySkipped::Changed => StoreError::Conflict(format!(
                "{} changed while this was being done; look again and retry",
                self.entity
            )),
        }
    }
}

/// The moves of a batch that were skipped (the others were made), in id
/// order within each batch. They must be reported: the worker puts each in
/// its pass's warnings, with the entity and the reason.
#[must_use = "skipped moves must be reported (PassReport::warnings) or turned into an error"]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped(Vec<SkippedMove>);

impl Skipped {
    /// The skipped moves.
    pub fn moves(&self) -> &[SkippedMove] {
        &self.0
    }

    /// The ids of the skipped entities of `kind`.
    pub fn ids_of(&self, kind: EntityKind) -> std::collections::HashSet<i64> {
        self.0
            .iter()
            .filter(|s| s.entity.kind == kind)
            .map(|s| s.entity.id)
            .collect()
    }

    /// Adds the skips of another batch.
    pub fn add(&mut self, other: Skipped) {
        self.0.extend(other.0);
    }

    /// One line per skipped move: the entity, the state and why.
    pub fn warnings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// `Ok` when nothing was skipped, else the first skip as an error.
    pub fn into_result(self) -> Result<(), StoreError> {
        match self.0.into_iter().next() {
            None => Ok(()),
            Some(skip) => Err(skip.into_error()),
        }
    }
}

/// State changes of many entities of one kind, gathered during a phase and
/// written together by [`move_states_from`], one call per target state.
#[derive(Debug)]
pub struct Moves<S: Lifecycle> {
    /// The changes by the state they move to.
    to: std::collections::BTreeMap<&'static str, (S, Vec<Change>)>,
    /// The states the entities were read in (all when not said).
    expected: &'static [S],
}

/// One entity's change in [`move_states`]: its id and the reason.
pub type Change = (i64, String);

impl<S: Lifecycle> Default for Moves<S> {
    fn default() -> Self {
        Moves {
            to: Default::default(),
            expected: S::ALL,
        }
    }
}

impl<S: Lifecycle> Moves<S> {
    /// Moves of entities read in one of `expected`: one found in another
    /// state is skipped (see [`move_states_from`]).
    pub fn expecting(expected: &'static [S]) -> Moves<S> {
        Moves {
            to: Default::default(),
            expected,
        }
    }

    /// Notes that entity `id` moves to `to` because of `why`.
    pub fn add(&mut self, id: i64, to: S, why: impl Into<String>) {
        self.to
            .entry(to.as_str())
            .or_insert_with(|| (to, Vec::new()))
            .1
            .push((id, why.into()));
    }

    /// How many moves are noted.
    pub fn len(&self) -> usize {
        self.to.values().map(|(_, v)| v.len()).sum()
    }

    /// True when nothing is noted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes every noted move that the table allows, with its history row,
    /// as `user`; returns the ones skipped (each entity that cannot move is
    /// skipped alone, the others move).
    pub async fn write(self, tx: &mut Tx<'_>, user: &str) -> Result<Skipped, StoreError> {
        let mut skipped = Skipped::default();
        for (to, changes) in self.to.into_values() {
            skipped.add(move_states_from(tx, &changes, self.expected, to, user).await?);
        }
        Ok(skipped)
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
