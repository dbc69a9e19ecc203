//! The worker's view of the queue: what is ready, what may be submitted, what is
//! in flight where, and which jobs must follow a held or cancelled campaign.

use super::campaigns::placeholders;
use super::sql::{json, Dialect};
use super::states::decode;
use super::StoreError;
use crate::model::hold::HoldScope;
use crate::model::spec::StageSpec;
use crate::model::state::{CampaignState, JobState, Lifecycle, SubtaskState};
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeMap, HashMap};

/// A subtask with what the worker needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedSubtask {
    /// Subtask id.
    pub id: i64,
    /// Its task.
    pub task_id: i64,
    /// Its campaign.
    pub campaign_id: i64,
    /// Experiment name.
    pub experiment: String,
    /// Stage spec JSON.
    pub spec_json: String,
    /// Parent subtask ids.
    pub parents: Vec<i64>,
    /// Campaign state.
    pub campaign_state: String,
    /// Task state.
    pub task_state: String,
    /// Signed off by someone.
    pub signed_off: bool,
}

/// Subtasks in `state`, in queue order: campaign priority (high first), then age (J16, J14).
pub async fn subtasks_in_state(
    conn: &mut AnyConnection,
    state: SubtaskState,
) -> Result<Vec<QueuedSubtask>, StoreError> {
    queued_subtasks(conn, state, "", true).await
}

/// Waiting subtasks whose every parent succeeded: the ones to release now
/// (J1). With `children_of`, only children of those subtasks are looked at
/// (the worker passes the ones that just succeeded); without, all waiting ones.
pub async fn releasable_subtasks(
    conn: &mut AnyConnection,
    children_of: Option<&[i64]>,
) -> Result<Vec<i64>, StoreError> {
    const ALL_PARENTS_SUCCEEDED: &str = "s.state = 'waiting' AND NOT EXISTS (
        SELECT 1 FROM subtask_deps d JOIN subtasks p ON p.id = d.parent_id
        WHERE d.subtask_id = s.id AND p.state <> 'succeeded')";
    let Some(parents) = children_of else {
        let sql =
            format!("SELECT s.id FROM subtasks s WHERE {ALL_PARENTS_SUCCEEDED} ORDER BY s.id");
        return ids(sqlx::query(&sql).fetch_all(&mut *conn).await?);
    };
    let sql = format!(
        "SELECT DISTINCT s.id FROM subtask_deps c JOIN subtasks s ON s.id = c.subtask_id
         WHERE c.parent_id IN ({}) AND {ALL_PARENTS_SUCCEEDED} ORDER BY s.id",
        Dialect::of(conn).ids(1)
    );
    ids(sqlx::query(&sql)
        .bind(json(&parents))
        .fetch_all(&mut *conn)
        .await?)
}

/// The first column of `rows`, as ids.
fn ids(rows: Vec<sqlx::any::AnyRow>) -> Result<Vec<i64>, StoreError> {
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Running subtasks none of whose jobs can still change: the ones to decide
/// now (T5); their parents are not read (deciding does not need them).
pub async fn settled_subtasks(conn: &mut AnyConnection) -> Result<Vec<QueuedSubtask>, StoreError> {
    let active: Vec<String> = JobState::ALL
        .iter()
        .filter(|s| !s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let no_active_job = format!(
        " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.subtask_id = s.id AND j.state IN ({}))",
        active.join(", ")
    );
    queued_subtasks(conn, SubtaskState::Running, &no_active_job, false).await
}

/// Subtasks in `state` matching the extra SQL condition `and_where`, with
/// their parents when `with_parents`.
async fn queued_subtasks(
    conn: &mut AnyConnection,
    state: SubtaskState,
    and_where: &str,
    with_parents: bool,
) -> Result<Vec<QueuedSubtask>, StoreError> {
    let sql = format!(
        "SELECT s.id, s.task_id, c.id, e.name, s.spec_json, c.state, t.state, s.signed_off_by
         FROM subtasks s JOIN tasks t ON t.id = s.task_id JOIN campaigns c ON c.id = t.campaign_id
         JOIN experiments e ON e.id = c.experiment_id
         WHERE s.state = $1{and_where} ORDER BY c.priority DESC, c.created_at, c.id, s.id"
    );
    let rows = sqlx::query(&sql)
        .bind(state.as_str())
        .fetch_all(&mut *conn)
        .await?;
    let ids = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<Vec<i64>, _>>()?;
    let mut parents = if with_parents {
        parents_of(conn, &ids).await?
    } else {
        HashMap::new()
    };
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get(0)?;
            Ok(QueuedSubtask {
                id,
                task_id: r.try_get(1)?,
                campaign_id: r.try_get(2)?,
                experiment: r.try_get(3)?,
                spec_json: r.try_get(4)?,
                parents: parents.remove(&id).unwrap_or_default(),
                campaign_state: r.try_get(5)?,
                task_state: r.try_get(6)?,
                signed_off: r.try_get::<Option<String>, _>(7)?.is_some(),
            })
        })
        .collect()
}

/// The parents of each of `subtasks` (only those with parents appear).
async fn parents_of(
    conn: &mut AnyConnection,
    subtasks: &[i64],
) -> Result<HashMap<i64, Vec<i64>>, StoreError> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    if subtasks.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT subtask_id, parent_id FROM subtask_deps WHERE subtask_id IN ({})
         ORDER BY subtask_id, parent_id",
        Dialect::of(conn).ids(1)
    );
    let rows = sqlx::query(&sql)
        .bind(json(&subtasks))
        .fetch_all(&mut *conn)
        .await?;
    for r in &rows {
        out.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
    }
    Ok(out)
}

/// A created job the worker may submit, with where it would count against throttles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submittable {
    /// Job id.
    pub job_id: i64,
    /// Attempt.
    pub attempt: i64,
    /// Its batch.
    pub batch_id: i64,
    /// Its subtask.
    pub subtask_id: i64,
    /// Its campaign.
    pub campaign_id: i64,
    /// Experiment name.
    pub experiment: String,
    /// Backend name.
    pub backend: String,
    /// Split plan JSON.
    pub params_json: String,
}

/// Created jobs of running, unheld campaigns in queue order, at most
/// `limit`; not those a person removes (the worker withdraws them).
pub async fn submittable_jobs(
    conn: &mut AnyConnection,
    limit: i64,
) -> Result<Vec<Submittable>, StoreError> {
    let rows = sqlx::query(
        "SELECT j.id, j.attempt, j.batch_id, j.subtask_id, c.id, e.name, j.backend, j.params_json
         FROM jobs j JOIN subtasks s ON s.id = j.subtask_id JOIN tasks t ON t.id = s.task_id
         JOIN campaigns c ON c.id = t.campaign_id JOIN experiments e ON e.id = c.experiment_id
         WHERE j.state = 'created' AND c.state = 'running' AND t.state = 'running' AND s.state = 'running'
           AND (j.desired_state IS NULL OR j.desired_state <> 'removed')
         ORDER BY c.priority DESC, c.created_at, c.id, j.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Submittable {
                job_id: r.try_get(0)?,
                attempt: r.try_get(1)?,
                batch_id: r.try_get(2)?,
                subtask_id: r.try_get(3)?,
                campaign_id: r.try_get(4)?,
                experiment: r.try_get(5)?,
                backend: r.try_get(6)?,
                params_json: r.try_get(7)?,
            })
        })
        .collect()
}

/// Jobs in flight (submitting, queued, running, held) per experiment, backend and site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlight {
    /// Per experiment name.
    pub experiment: HashMap<String, usize>,
    /// Per backend name.
    pub backend: HashMap<String, usize>,
    /// Per site: a running job counts at the site it runs at (as the batch
    /// system reports it); one not yet running counts at each site it asked
    /// for (`DESIRED_Sites`), or at its backend's default site when it asked
    /// for none.
    pub site: HashMap<String, usize>,
    /// In all.
    pub total: usize,
}

/// Counts jobs in flight (X5).
pub async fn in_flight(conn: &mut AnyConnection) -> Result<InFlight, StoreError> {
    let active = [
        JobState::Submitting,
        JobState::Queued,
        JobState::Running,
        JobState::Held,
    ];
    let sql = format!(
        "SELECT e.name, j.backend, COALESCE(j.site, j.backend),
                CAST(CASE WHEN j.state = 'running' THEN 1 ELSE 0 END AS BIGINT), j.subtask_id, COUNT(*)
         FROM jobs j JOIN subtasks s ON s.id = j.subtask_id JOIN tasks t ON t.id = s.task_id
         JOIN campaigns c ON c.id = t.campaign_id JOIN experiments e ON e.id = c.experiment_id
         WHERE j.state IN ({})
         GROUP BY e.name, j.backend, COALESCE(j.site, j.backend),
                  CASE WHEN j.state = 'running' THEN 1 ELSE 0 END, j.subtask_id",
        placeholders(1, active.len())
    );
    let mut q = sqlx::query(&sql);
    for s in active {
        q = q.bind(s.as_str());
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let waiting: Vec<i64> = rows
        .iter()
        .filter(|r| r.try_get::<i64, _>(3).is_ok_and(|running| running == 0))
        .map(|r| r.try_get(4))
        .collect::<Result<_, _>>()?;
    let desired = desired_sites(&stage_specs(conn, &waiting).await?);
    let mut out = InFlight::default();
    for r in rows {
        let n = r.try_get::<i64, _>(5)? as usize;
        let site: String = r.try_get(2)?;
        let running = r.try_get::<i64, _>(3)? == 1;
        let subtask: i64 = r.try_get(4)?;
        *out.experiment.entry(r.try_get(0)?).or_default() += n;
        *out.backend.entry(r.try_get(1)?).or_default() += n;
        match desired
            .get(&subtask)
            .filter(|sites| !running && !sites.is_empty())
        {
            Some(sites) => {
                for asked in sites {
                    *out.site.entry(asked.clone()).or_default() += n;
                }
            }
            None => *out.site.entry(site).or_default() += n,
        }
        out.total += n;
    }
    Ok(out)
}

/// The stage specs of `subtasks`, read in one statement.
pub async fn stage_specs(
    conn: &mut AnyConnection,
    subtasks: &[i64],
) -> Result<HashMap<i64, StageSpec>, StoreError> {
    let mut unique = subtasks.to_vec();
    unique.sort_unstable();
    unique.dedup();
    if unique.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT id, spec_json FROM subtasks WHERE id IN ({})",
        Dialect::of(conn).ids(1)
    );
    let rows = sqlx::query(&sql)
        .bind(json(&unique))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get(0)?;
            let text: String = r.try_get(1)?;
            let spec: StageSpec = serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("spec of S{id}"), e.to_string()))?;
            Ok((id, spec))
        })
        .collect()
}

/// The sites the jobs of each subtask asked for (its stage's
/// `sites.include`; empty when any site will do).
pub fn desired_sites(specs: &HashMap<i64, StageSpec>) -> HashMap<i64, Vec<String>> {
    specs
        .iter()
        .map(|(id, spec)| (*id, spec.sites.include.clone()))
        .collect()
}

/// A job whose campaign's desired state differs from what the job is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Job id.
    pub job_id: i64,
    /// Job state.
    pub job_state: JobState,
    /// Batch system id, if submitted.
    pub batch_job_id: Option<String>,
    /// Backend.
    pub backend: String,
    /// Campaign state.
    pub campaign_state: CampaignState,
    /// What the campaign's hold stops (`queued` when not said).
    pub hold_scope: HoldScope,
    /// Subtask state.
    pub subtask_state: SubtaskState,
    /// What a person asked of the job itself (`held`, `released`, `removed`).
    pub desired_state: Option<String>,
    /// The reason to record when that is carried out.
    pub desired_reason: Option<String>,
    /// The instance of its batch system that holds it.
    pub instance: Option<String>,
}

/// Jobs that must be held, released or removed to follow their campaign or
/// subtask, or what a person asked of them: queued jobs of held work,
/// running ones too when the campaign's hold says so ([`HoldScope`]), every
/// live job of cancelled work or that a person removes, queued or running
/// jobs a person holds, held jobs of running work that no person holds.
pub async fn mismatched_jobs(conn: &mut AnyConnection) -> Result<Vec<Mismatch>, StoreError> {
    let rows = sqlx::query(
        "SELECT j.id, j.state, j.batch_job_id, j.backend, c.state, c.hold_scope, s.state,
                j.desired_state, j.desired_reason, j.instance, c.id, s.id
         FROM jobs j JOIN subtasks s ON s.id = j.subtask_id JOIN tasks t ON t.id = s.task_id
         JOIN campaigns c ON c.id = t.campaign_id
         WHERE (j.state IN ('created', 'queued', 'running', 'held')
                AND (c.state = 'cancelled' OR s.state = 'cancelled' OR j.desired_state = 'removed'))
            OR (j.state IN ('queued', 'running') AND j.desired_state = 'held')
            OR (j.state = 'queued' AND (c.state = 'held' OR s.state = 'held'))
            OR (j.state = 'running' AND ((c.state = 'held' AND c.hold_scope = 'running') OR s.state = 'held'))
            OR (j.state = 'held' AND c.state = 'running' AND s.state = 'running'
                AND (j.desired_state IS NULL OR j.desired_state <> 'held'))
         ORDER BY j.id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let scope: Option<String> = r.try_get(5)?;
            let job_id: i64 = r.try_get(0)?;
            Ok(Mismatch {
                job_id,
                job_state: decode(r.try_get(1)?, job_id)?,
                batch_job_id: r.try_get(2)?,
                backend: r.try_get(3)?,
                campaign_state: decode(r.try_get(4)?, r.try_get(10)?)?,
                hold_scope: match scope {
                    None => HoldScope::default(),
                    Some(text) => HoldScope::parse(&text).ok_or_else(|| {
                        StoreError::Corrupt(
                            format!("hold scope of the campaign of J{job_id}"),
                            text,
                        )
                    })?,
                },
                subtask_state: decode(r.try_get(6)?, r.try_get(11)?)?,
                desired_state: r.try_get(7)?,
                desired_reason: r.try_get(8)?,
                instance: r.try_get(9)?,
            })
        })
        .collect()
}

/// The distinct states of the children of every running row of `table`
/// (tasks: their subtasks; campaigns: their tasks), by parent: what a
/// roll-up needs, in one statement.
pub async fn child_states_of_running(
    conn: &mut AnyConnection,
    table: ParentTable,
) -> Result<BTreeMap<i64, Vec<String>>, StoreError> {
    let sql = match table {
        ParentTable::Tasks => {
            "SELECT t.id, s.state FROM tasks t JOIN subtasks s ON s.task_id = t.id
             WHERE t.state = 'running' GROUP BY t.id, s.state"
        }
        ParentTable::Campaigns => {
            "SELECT c.id, t.state FROM campaigns c JOIN tasks t ON t.campaign_id = c.id
             WHERE c.state = 'running' GROUP BY c.id, t.state"
        }
    };
    let mut out: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for r in sqlx::query(sql).fetch_all(conn).await? {
        out.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
    }
    Ok(out)
}

/// Tables whose state follows their children's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentTable {
    /// Campaigns (from tasks).
    Campaigns,
    /// Tasks (from subtasks).
    Tasks,
}

/// `(batch, subtask)` of the batches of `subtasks` in `state`.
pub async fn batches_in_state(
    tx: &mut super::Tx<'_>,
    subtasks: &[i64],
    state: crate::model::state::BatchState,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let sql = format!(
        "SELECT id, subtask_id FROM batches WHERE state = $1 AND subtask_id IN ({}) ORDER BY id",
        Dialect::of(tx).ids(2)
    );
    let rows = sqlx::query(&sql)
        .bind(state.as_str())
        .bind(json(&subtasks))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
