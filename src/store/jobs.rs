//! Batches and jobs (M3, M9); their stages are in [`super::stages`], the
//! files they read and write in [`super::files`].

use super::campaigns::placeholders;
use super::files::inputs_of_job;
use super::sql::{json, Col, Dialect};
use super::stages::{insert_stages, stage_rows, StageRow};
use super::states::{decode, record_creation, record_creations};
use super::{StoreError, Tx};
use crate::clock::now_ms;
use crate::model::jobspec::StageEvent;
use crate::model::split::JobPlan;
use crate::model::state::{BatchState, CampaignState, JobState, Lifecycle, SubtaskState};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

/// A job as stored, with what the batch system and the job side reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRow {
    /// Row id (`J<id>`).
    pub id: i64,
    /// Its batch.
    pub batch_id: i64,
    /// Its subtask.
    pub subtask_id: i64,
    /// Index within the subtask's split.
    pub seq: i64,
    /// Attempt, from 1.
    pub attempt: i64,
    /// Current state.
    pub state: String,
    /// Since when, ms (M3).
    pub state_since: i64,
    /// The split plan (seed, events, inputs) as JSON.
    pub params_json: String,
    /// Batch system name.
    pub backend: String,
    /// Site or facility (M9).
    pub site: Option<String>,
    /// Node it ran on (M9).
    pub node: Option<String>,
    /// Batch system's id (M9).
    pub batch_job_id: Option<String>,
    /// The failed job this attempt retries.
    pub retry_of: Option<i64>,
    /// Ongoing or last stage (M10).
    pub current_stage: Option<String>,
    /// Exit code.
    pub exit_code: Option<i64>,
    /// Killing signal.
    pub signal: Option<i64>,
    /// Killed for memory.
    pub oom: bool,
    /// Why it failed, in words.
    pub failure: Option<String>,
    /// Events produced.
    pub events: Option<i64>,
    /// CPU over all stages, ms.
    pub cpu_ms: Option<i64>,
    /// Wall time, ms.
    pub wall_ms: Option<i64>,
    /// Peak RSS, KiB.
    pub max_rss_kb: Option<i64>,
    /// Start, ms.
    pub started_at: Option<i64>,
    /// End, ms.
    pub ended_at: Option<i64>,
    /// The request stage it runs: its subtask's name (`gen`, `sim`, `reco`).
    pub step: String,
    /// The instance of its batch system that holds it (see [`set_instances`]).
    pub instance: Option<String>,
    /// The kind of node it ran on (M9).
    pub node_kind: Option<String>,
}

/// The columns of a [`JobRow`], read by [`job_from_row`]. The step is a
/// subquery by primary key rather than a join, so a page of a sorted million
/// jobs looks it up only for the rows it returns (and callers that join
/// `subtasks s` keep their alias).
pub(crate) const JOB_COLUMNS: &str = "j.id, j.batch_id, j.subtask_id, j.seq, j.attempt, j.state, j.state_since, j.params_json, \
     j.backend, j.site, j.node, j.batch_job_id, j.retry_of, j.current_stage, j.exit_code, j.signal, j.oom, \
     j.failure, j.events, j.cpu_ms, j.wall_ms, j.max_rss_kb, j.started_at, j.ended_at, \
     (SELECT job_subtask.name FROM subtasks job_subtask WHERE job_subtask.id = j.subtask_id), \
     j.instance, j.node_kind";

pub(crate) fn job_from_row(r: &AnyRow) -> Result<JobRow, StoreError> {
    Ok(JobRow {
        id: r.try_get(0)?,
        batch_id: r.try_get(1)?,
        subtask_id: r.try_get(2)?,
        seq: r.try_get(3)?,
        attempt: r.try_get(4)?,
        state: r.try_get(5)?,
        state_since: r.try_get(6)?,
        params_json: r.try_get(7)?,
        backend: r.try_get(8)?,
        site: r.try_get(9)?,
        node: r.try_get(10)?,
        batch_job_id: r.try_get(11)?,
        retry_of: r.try_get(12)?,
        current_stage: r.try_get(13)?,
        exit_code: r.try_get(14)?,
        signal: r.try_get(15)?,
        oom: r.try_get::<i64, _>(16)? != 0,
        failure: r.try_get(17)?,
        events: r.try_get(18)?,
        cpu_ms: r.try_get(19)?,
        wall_ms: r.try_get(20)?,
        max_rss_kb: r.try_get(21)?,
        started_at: r.try_get(22)?,
        ended_at: r.try_get(23)?,
        step: r.try_get(24)?,
        instance: r.try_get(25)?,
        node_kind: r.try_get(26)?,
    })
}

/// Jobs in any of `states`, oldest first (optionally only of one subtask).
pub async fn jobs_in_states(
    conn: &mut AnyConnection,
    states: &[JobState],
    subtask: Option<i64>,
) -> Result<Vec<JobRow>, StoreError> {
    let mut sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs j WHERE j.state IN ({})",
        placeholders(1, states.len())
    );
    if subtask.is_some() {
        sql += &format!(" AND j.subtask_id = ${}", states.len() + 1);
    }
    sql += " ORDER BY j.id";
    let mut q = sqlx::query(&sql);
    for s in states {
        q = q.bind(s.as_str());
    }
    if let Some(s) = subtask {
        q = q.bind(s);
    }
    let rows = q.fetch_all(conn).await?;
    rows.iter().map(job_from_row).collect()
}

/// One job.
pub async fn get_job(conn: &mut AnyConnection, id: i64) -> Result<JobRow, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id = $1");
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job J{id}")))?;
    job_from_row(&row)
}

/// A job in flight, with just what it takes to ask its batch system about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveJob {
    /// Job id.
    pub id: i64,
    /// Its state.
    pub state: String,
    /// Batch system name.
    pub backend: String,
    /// The batch system's id, once submitted.
    pub batch_job_id: Option<String>,
    /// The instance of its batch system that holds it (None: before issue 15).
    pub instance: Option<String>,
}

/// Jobs queued, running or held, oldest first (four columns each: the
/// worker reads them every pass).
pub async fn active_jobs(conn: &mut AnyConnection) -> Result<Vec<ActiveJob>, StoreError> {
    let rows = sqlx::query(
        "SELECT id, state, backend, batch_job_id, instance FROM jobs
         WHERE state IN ('queued', 'running', 'held') ORDER BY id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ActiveJob {
                id: r.try_get(0)?,
                state: r.try_get(1)?,
                backend: r.try_get(2)?,
                batch_job_id: r.try_get(3)?,
                instance: r.try_get(4)?,
            })
        })
        .collect()
}

/// The jobs whose ids are given, by id.
pub async fn jobs_by_id(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<HashMap<i64, JobRow>, StoreError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs j WHERE j.id IN ({})",
        Dialect::of(conn).ids(1)
    );
    let rows = sqlx::query(&sql)
        .bind(json(&ids))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| job_from_row(row).map(|job| (job.id, job)))
        .collect()
}

/// The current attempts (not retried) of each of `subtasks`, by subtask.
pub async fn current_jobs_of_subtasks(
    conn: &mut AnyConnection,
    subtasks: &[i64],
) -> Result<HashMap<i64, Vec<JobRow>>, StoreError> {
    let mut out: HashMap<i64, Vec<JobRow>> = HashMap::new();
    if subtasks.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs j WHERE j.subtask_id IN ({})
         AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.retry_of = j.id) ORDER BY j.seq, j.id",
        Dialect::of(conn).ids(1)
    );
    let rows = sqlx::query(&sql)
        .bind(json(&subtasks))
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let job = job_from_row(&row)?;
        out.entry(job.subtask_id).or_default().push(job);
    }
    Ok(out)
}

/// The latest attempt of every job of a subtask (attempts that were retried are left out).
pub async fn current_jobs_of_subtask(
    conn: &mut AnyConnection,
    subtask: i64,
) -> Result<Vec<JobRow>, StoreError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs j WHERE j.subtask_id = $1
         AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.retry_of = j.id) ORDER BY j.seq, j.id"
    );
    let rows = sqlx::query(&sql).bind(subtask).fetch_all(conn).await?;
    rows.iter().map(job_from_row).collect()
}

/// Jobs of a campaign, filtered by state, newest first, one page at a time.
pub async fn jobs_of_campaign(
    conn: &mut AnyConnection,
    campaign: i64,
    states: &[String],
    limit: i64,
    offset: i64,
) -> Result<Vec<JobRow>, StoreError> {
    let mut sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs j JOIN subtasks s ON s.id = j.subtask_id JOIN tasks t ON t.id = s.task_id
         WHERE t.campaign_id = $1"
    );
    if !states.is_empty() {
        sql += &format!(" AND j.state IN ({})", placeholders(2, states.len()));
    }
    let n = states.len() + 2;
    sql += &format!(" ORDER BY j.id LIMIT ${n} OFFSET ${}", n + 1);
    let mut q = sqlx::query(&sql).bind(campaign);
    for s in states {
        q = q.bind(s.as_str());
    }
    let rows = q.bind(limit).bind(offset).fetch_all(conn).await?;
    rows.iter().map(job_from_row).collect()
}

/// Inserts one `pending` batch for each of `subtasks` (each named once),
/// with its creation history; returns the batch of each subtask.
pub async fn insert_batches(
    tx: &mut Tx<'_>,
    subtasks: &[i64],
    reason: &str,
    user: &str,
) -> Result<HashMap<i64, i64>, StoreError> {
    if subtasks.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "INSERT INTO batches (subtask_id, seq, state, state_since, created_at)
         SELECT v.value, (SELECT COUNT(*) FROM batches b WHERE b.subtask_id = v.value), $1, $2, $2
         FROM ({}) AS v RETURNING id, subtask_id",
        Dialect::of(tx).ids(3)
    );
    let rows = sqlx::query(&sql)
        .bind(BatchState::Pending.as_str())
        .bind(now_ms())
        .bind(json(&subtasks))
        .fetch_all(&mut **tx)
        .await?;
    let made = rows
        .iter()
        .map(|r| Ok((r.try_get::<i64, _>(1)?, r.try_get::<i64, _>(0)?)))
        .collect::<Result<HashMap<i64, i64>, StoreError>>()?;
    let ids: Vec<i64> = subtasks
        .iter()
        .filter_map(|s| made.get(s).copied())
        .collect();
    record_creations(tx, &ids, BatchState::Pending, reason, user).await?;
    Ok(made)
}

/// The latest batch of each of `subtasks` that has one.
pub async fn latest_batches(
    tx: &mut Tx<'_>,
    subtasks: &[i64],
) -> Result<HashMap<i64, i64>, StoreError> {
    if subtasks.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT subtask_id, MAX(id) FROM batches WHERE subtask_id IN ({}) GROUP BY subtask_id",
        Dialect::of(tx).ids(1)
    );
    let rows = sqlx::query(&sql)
        .bind(json(&subtasks))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// A job to insert.
#[derive(Debug, Clone)]
pub struct NewJob<'a> {
    /// Its batch.
    pub batch_id: i64,
    /// Its subtask.
    pub subtask_id: i64,
    /// Index in the split.
    pub seq: i64,
    /// Attempt number.
    pub attempt: i64,
    /// The split plan as JSON.
    pub params_json: &'a str,
    /// Batch system name.
    pub backend: &'a str,
    /// The attempt it retries.
    pub retry_of: Option<i64>,
    /// Input file ids.
    pub inputs: &'a [i64],
}

impl NewJob<'_> {
    /// The units of work its plan covers, which progress counts (M1): the
    /// input files it reads, or else the events it generates.
    pub fn units(&self) -> i64 {
        if !self.inputs.is_empty() {
            return i64::try_from(self.inputs.len()).unwrap_or(i64::MAX);
        }
        serde_json::from_str::<JobPlan>(self.params_json)
            .ok()
            .and_then(|plan| plan.events)
            .unwrap_or(0)
    }
}

/// Inserts a job in state `created` with its inputs and records why it exists.
pub async fn insert_job(
    tx: &mut Tx<'_>,
    job: &NewJob<'_>,
    reason: &str,
    user: &str,
) -> Result<i64, StoreError> {
    let now = now_ms();
    let id: i64 = sqlx::query(
        "INSERT INTO jobs (batch_id, subtask_id, seq, attempt, state, state_since, created_at, params_json, backend, retry_of, units)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
    )
    .bind(job.batch_id)
    .bind(job.subtask_id)
    .bind(job.seq)
    .bind(job.attempt)
    .bind(JobState::Created.as_str())
    .bind(now)
    .bind(now)
    .bind(job.params_json)
    .bind(job.backend)
    .bind(job.retry_of)
    .bind(job.units())
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    for file in job.inputs {
        sqlx::query("INSERT INTO job_inputs (job_id, file_id) VALUES ($1, $2)")
            .bind(id)
            .bind(*file)
            .execute(&mut **tx)
            .await?;
    }
    record_creation(tx, id, JobState::Created, reason, user).await?;
    Ok(id)
}

/// Inserts the first attempts of a split (each `(subtask, seq)` once) in
/// `created`, with their inputs and creation history; returns their ids in
/// the order given.
pub async fn insert_split_jobs(
    tx: &mut Tx<'_>,
    jobs: &[NewJob<'_>],
    reason: &str,
    user: &str,
) -> Result<Vec<i64>, StoreError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let dialect = Dialect::of(tx);
    let sql = format!(
        "INSERT INTO jobs (batch_id, subtask_id, seq, attempt, params_json, backend, units, state, state_since, created_at)
         SELECT v.c0, v.c1, v.c2, v.c3, v.c4, v.c5, v.c6, $1, $2, $2 FROM ({}) AS v
         RETURNING id, subtask_id, seq",
        dialect.rows(
            3,
            &[Col::Int, Col::Int, Col::Int, Col::Int, Col::Text, Col::Text, Col::Int]
        )
    );
    let rows: Vec<_> = jobs
        .iter()
        .map(|j| {
            (
                j.batch_id,
                j.subtask_id,
                j.seq,
                j.attempt,
                j.params_json,
                j.backend,
                j.units(),
            )
        })
        .collect();
    let inserted = sqlx::query(&sql)
        .bind(JobState::Created.as_str())
        .bind(now_ms())
        .bind(json(&rows))
        .fetch_all(&mut **tx)
        .await?;
    let mut ids: HashMap<(i64, i64), i64> = HashMap::with_capacity(jobs.len());
    for r in inserted {
        ids.insert((r.try_get(1)?, r.try_get(2)?), r.try_get(0)?);
    }
    let ordered = jobs
        .iter()
        .map(|job| {
            ids.get(&(job.subtask_id, job.seq)).copied().ok_or_else(|| {
                StoreError::Conflict(format!(
                    "job {} of S{} was not inserted; look again and retry",
                    job.seq, job.subtask_id
                ))
            })
        })
        .collect::<Result<Vec<i64>, _>>()?;
    let inputs: Vec<(i64, i64)> = jobs
        .iter()
        .zip(&ordered)
        .flat_map(|(job, id)| job.inputs.iter().map(move |file| (*id, *file)))
        .collect();
    if !inputs.is_empty() {
        let sql = format!(
            "INSERT INTO job_inputs (job_id, file_id) SELECT v.c0, v.c1 FROM ({}) AS v",
            dialect.rows(1, &[Col::Int, Col::Int])
        );
        sqlx::query(&sql)
            .bind(json(&inputs))
            .execute(&mut **tx)
            .await?;
    }
    record_creations(tx, &ordered, JobState::Created, reason, user).await?;
    Ok(ordered)
}

/// A job with what a person's hold, release or removal of it needs: its
/// state, what was asked of it before, and its campaign's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTarget {
    /// Job id.
    pub id: i64,
    /// Its state.
    pub state: JobState,
    /// What a person asked of it that stands (`held`, `released`, `removed`).
    pub desired_state: Option<String>,
    /// Its campaign.
    pub campaign_id: i64,
    /// The campaign's state.
    pub campaign_state: CampaignState,
    /// Its subtask's state.
    pub subtask_state: SubtaskState,
    /// The campaign's experiment.
    pub experiment: String,
    /// The campaign's kind.
    pub kind: String,
    /// Who filed the campaign.
    pub creator: String,
}

/// The jobs `ids` that exist, with their campaigns, in id order; locked
/// for the transaction on PostgreSQL (SQLite's write lock covers it).
pub async fn job_targets_for_update(
    tx: &mut Tx<'_>,
    ids: &[i64],
) -> Result<Vec<JobTarget>, StoreError> {
    let dialect = Dialect::of(tx);
    let lock = match dialect {
        Dialect::Postgres => " FOR UPDATE OF j",
        Dialect::Sqlite => "",
    };
    let sql = format!(
        "SELECT j.id, j.state, j.desired_state, c.id, c.state, s.state, e.name, c.kind, c.creator, s.id
         FROM jobs j JOIN subtasks s ON s.id = j.subtask_id JOIN tasks t ON t.id = s.task_id
         JOIN campaigns c ON c.id = t.campaign_id JOIN experiments e ON e.id = c.experiment_id
         WHERE j.id IN ({}) ORDER BY j.id{lock}",
        dialect.ids(1)
    );
    let rows = sqlx::query(&sql)
        .bind(json(&ids))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| {
            let id: i64 = r.try_get(0)?;
            let campaign_id: i64 = r.try_get(3)?;
            Ok(JobTarget {
                id,
                state: decode(r.try_get(1)?, id)?,
                desired_state: r.try_get(2)?,
                campaign_id,
                campaign_state: decode(r.try_get(4)?, campaign_id)?,
                subtask_state: decode(r.try_get(5)?, r.try_get(9)?)?,
                experiment: r.try_get(6)?,
                kind: r.try_get(7)?,
                creator: r.try_get(8)?,
            })
        })
        .collect()
}

/// Records what a person asks of jobs (`desired`: `held`, `released`,
/// `removed`, or `None` for nothing) with the reason the worker writes in
/// their history when it carries it out.
pub async fn set_desired_state(
    tx: &mut Tx<'_>,
    ids: &[i64],
    desired: Option<&str>,
    reason: &str,
) -> Result<(), StoreError> {
    let sql = format!(
        "UPDATE jobs SET desired_state = $1, desired_reason = $2 WHERE id IN ({})",
        Dialect::of(tx).ids(3)
    );
    sqlx::query(&sql)
        .bind(desired)
        .bind(reason)
        .bind(json(&ids))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Forgets the releases a person asked of `ids` once the worker carried them out.
pub async fn forget_releases(tx: &mut Tx<'_>, ids: &[i64]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE jobs SET desired_state = NULL, desired_reason = NULL
         WHERE desired_state = 'released' AND id IN ({})",
        Dialect::of(tx).ids(1)
    );
    sqlx::query(&sql)
        .bind(json(&ids))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records the batch job ids of submitted jobs (`(job, batch job id)`) and
/// their site, in one statement.
pub async fn set_batch_job_ids(
    tx: &mut Tx<'_>,
    ids: &[(i64, String)],
    site: &str,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let dialect = Dialect::of(tx);
    let sql = format!(
        "UPDATE jobs SET site = $1, batch_job_id = v.c1 FROM ({}) AS v WHERE jobs.id = v.c0",
        dialect.rows(2, &[Col::Int, Col::Text])
    );
    sqlx::query(&sql)
        .bind(site)
        .bind(json(&ids))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records which instance of their batch system holds `jobs` (local: host
/// and executor directory; HTCondor: schedd; Slurm: cluster), written with
/// the intent to submit them, so that a worker on another host or directory
/// leaves them to their own instance instead of asking its own about them.
pub async fn set_instances(
    tx: &mut Tx<'_>,
    jobs: &[i64],
    instance: &str,
) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE jobs SET instance = $1 WHERE id IN ({})",
        Dialect::of(tx).ids(2)
    );
    sqlx::query(&sql)
        .bind(instance)
        .bind(json(&jobs))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Where a job runs, as its batch system reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The job.
    pub job: i64,
    /// Its node.
    pub node: Option<String>,
    /// Its site (e.g. a glidein's).
    pub site: Option<String>,
    /// The kind of node (M9).
    pub node_kind: Option<String>,
}

/// Records where jobs run and since when (kept if already set).
pub async fn set_started(tx: &mut Tx<'_>, jobs: &[Placement], at: i64) -> Result<(), StoreError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = jobs
        .iter()
        .map(|p| (p.job, &p.node, &p.site, &p.node_kind))
        .collect();
    let dialect = Dialect::of(tx);
    let sql = format!(
        "UPDATE jobs SET node = COALESCE(v.c1, jobs.node), site = COALESCE(v.c2, jobs.site),
             node_kind = COALESCE(v.c3, jobs.node_kind), started_at = COALESCE(jobs.started_at, $1)
         FROM ({}) AS v WHERE jobs.id = v.c0",
        dialect.rows(2, &[Col::Int, Col::Text, Col::Text, Col::Text])
    );
    sqlx::query(&sql)
        .bind(at)
        .bind(json(&rows))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// How a job ended, as gathered from the batch system and the job's own result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobEnd {
    /// Node it ran on.
    pub node: Option<String>,
    /// Site it ran at, when the batch system says.
    pub site: Option<String>,
    /// The kind of node it ran on, when the batch system says (M9).
    pub node_kind: Option<String>,
    /// Exit code.
    pub exit_code: Option<i64>,
    /// Killing signal.
    pub signal: Option<i64>,
    /// Killed for memory.
    pub oom: bool,
    /// Why it failed, in words; none on success.
    pub failure: Option<String>,
    /// Events produced.
    pub events: Option<i64>,
    /// Start, ms.
    pub started_at: Option<i64>,
    /// End, ms.
    pub ended_at: i64,
    /// The stage events from `stages.jsonl`.
    pub stages: Vec<StageEvent>,
}

/// Writes jobs' ends (`(job, end)`): result columns, their stages (M10) and
/// resource totals, in two statements.
pub async fn record_job_ends(tx: &mut Tx<'_>, ends: &[(i64, JobEnd)]) -> Result<(), StoreError> {
    if ends.is_empty() {
        return Ok(());
    }
    let stages: Vec<(i64, Vec<StageRow>)> = ends
        .iter()
        .map(|(job, end)| (*job, stage_rows(&end.stages)))
        .collect();
    let rows: Vec<serde_json::Value> = ends
        .iter()
        .zip(&stages)
        .map(|((job, end), (_, stages))| {
            let cpu: i64 = stages.iter().filter_map(|s| s.cpu_ms).sum();
            let rss = stages.iter().filter_map(|s| s.max_rss_kb).max();
            let wall = end.started_at.map(|s| (end.ended_at - s).max(0));
            serde_json::json!([
                job,
                end.node,
                end.exit_code,
                end.signal,
                i64::from(end.oom),
                end.failure,
                end.events,
                cpu,
                wall,
                rss,
                end.started_at,
                end.ended_at,
                stages.last().map(|s| s.name.as_str()),
                end.site,
                end.node_kind,
            ])
        })
        .collect();
    use Col::{Int, Text};
    let dialect = Dialect::of(tx);
    let sql = format!(
        "UPDATE jobs SET node = COALESCE(v.c1, jobs.node), exit_code = v.c2, signal = v.c3,
             oom = v.c4, failure = v.c5, events = v.c6, cpu_ms = v.c7, wall_ms = v.c8,
             max_rss_kb = v.c9, started_at = COALESCE(jobs.started_at, v.c10), ended_at = v.c11,
             current_stage = COALESCE(v.c12, jobs.current_stage), site = COALESCE(v.c13, jobs.site),
             node_kind = COALESCE(v.c14, jobs.node_kind)
         FROM ({}) AS v WHERE jobs.id = v.c0",
        dialect.rows(
            1,
            &[Int, Text, Int, Int, Int, Text, Int, Int, Int, Int, Int, Int, Text, Text, Text]
        )
    );
    sqlx::query(&sql)
        .bind(json(&rows))
        .execute(&mut **tx)
        .await?;
    insert_stages(tx, &stages).await
}

/// The task of each of `subtasks`.
pub async fn tasks_of_subtasks(
    tx: &mut Tx<'_>,
    subtasks: &[i64],
) -> Result<HashMap<i64, i64>, StoreError> {
    let sql = format!(
        "SELECT id, task_id FROM subtasks WHERE id IN ({})",
        Dialect::of(tx).ids(1)
    );
    let rows = sqlx::query(&sql)
        .bind(json(&subtasks))
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}

/// Job counts of one subtask's current attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    /// Current jobs.
    pub total: i64,
    /// Succeeded.
    pub succeeded: i64,
    /// Failed or removed.
    pub failed: i64,
    /// Not yet ended (the sum of the next three).
    pub active: i64,
    /// Created, being submitted or queued in the batch system.
    pub queued: i64,
    /// Running.
    pub running: i64,
    /// Held.
    pub held: i64,
    /// Events produced by succeeded jobs.
    pub events: i64,
}

/// Counts of current jobs per subtask of a campaign (M1, M2).
pub async fn job_counts_of_campaign(
    conn: &mut AnyConnection,
    campaign: i64,
) -> Result<std::collections::HashMap<i64, JobCounts>, StoreError> {
    let rows = sqlx::query(
        "SELECT j.subtask_id, j.state, COUNT(*), CAST(COALESCE(SUM(j.events), 0) AS BIGINT)
         FROM jobs j JOIN subtasks s ON s.id = j.subtask_id JOIN tasks t ON t.id = s.task_id
         WHERE t.campaign_id = $1 AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.retry_of = j.id)
         GROUP BY j.subtask_id, j.state",
    )
    .bind(campaign)
    .fetch_all(conn)
    .await?;
    let mut out: std::collections::HashMap<i64, JobCounts> = std::collections::HashMap::new();
    for r in rows {
        let c = out.entry(r.try_get(0)?).or_default();
        let state: String = r.try_get(1)?;
        let n: i64 = r.try_get(2)?;
        c.total += n;
        match JobState::parse(&state) {
            Some(JobState::Succeeded) => {
                c.succeeded += n;
                c.events += r.try_get::<i64, _>(3)?;
            }
            Some(JobState::Failed | JobState::Removed | JobState::Cancelled) => c.failed += n,
            Some(JobState::Running) => {
                c.running += n;
                c.active += n;
            }
            Some(JobState::Held) => {
                c.held += n;
                c.active += n;
            }
            _ => {
                c.queued += n;
                c.active += n;
            }
        }
    }
    Ok(out)
}

/// Creates the next attempt of `job` on behalf of `who` (the worker or a
/// resubmitting person): linked to it, with the same plan and inputs.
pub async fn retry_job(tx: &mut Tx<'_>, job: &JobRow, who: &str) -> Result<i64, StoreError> {
    let inputs = inputs_of_job(tx, job.id).await?;
    let why = format!("attempt {} retries J{}", job.attempt + 1, job.id);
    insert_job(
        tx,
        &NewJob {
            batch_id: job.batch_id,
            subtask_id: job.subtask_id,
            seq: job.seq,
            attempt: job.attempt + 1,
            params_json: &job.params_json,
            backend: &job.backend,
            retry_of: Some(job.id),
            inputs: &inputs,
        },
        &why,
        who,
    )
    .await
}
