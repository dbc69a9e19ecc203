//! Batches, jobs, their stages and the files they read and write (M3, M9, M10, X11).

use super::campaigns::placeholders;
use super::states::record_creation;
use super::{now_ms, StoreError, Tx};
use crate::model::jobspec::{OutputFile, StageEvent};
use crate::model::state::{BatchState, JobState, Lifecycle};
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
}

pub(crate) const JOB_COLUMNS: &str = "j.id, j.batch_id, j.subtask_id, j.seq, j.attempt, j.state, j.state_since, j.params_json, \
     j.backend, j.site, j.node, j.batch_job_id, j.retry_of, j.current_stage, j.exit_code, j.signal, j.oom, \
     j.failure, j.events, j.cpu_ms, j.wall_ms, j.max_rss_kb, j.started_at, j.ended_at";

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

/// The current attempts (not retried) of each of `subtasks`, by subtask.
pub async fn current_jobs_of_subtasks(
    conn: &mut AnyConnection,
    subtasks: &[i64],
) -> Result<HashMap<i64, Vec<JobRow>>, StoreError> {
    let mut out: HashMap<i64, Vec<JobRow>> = HashMap::new();
    for chunk in subtasks.chunks(500) {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs j WHERE j.subtask_id IN ({})
             AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.retry_of = j.id) ORDER BY j.seq, j.id",
            placeholders(1, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            let job = job_from_row(&row)?;
            out.entry(job.subtask_id).or_default().push(job);
        }
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

/// Inserts a batch of a subtask in state `pending`.
pub async fn insert_batch(tx: &mut Tx, subtask: i64, user: &str) -> Result<i64, StoreError> {
    let now = now_ms();
    let id: i64 = sqlx::query(
        "INSERT INTO batches (subtask_id, seq, state, state_since, created_at)
         VALUES ($1, (SELECT COUNT(*) FROM batches WHERE subtask_id = $1), $2, $3, $4) RETURNING id",
    )
    .bind(subtask)
    .bind(BatchState::Pending.as_str())
    .bind(now)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?;
    record_creation(tx, id, BatchState::Pending, "split into jobs", user).await?;
    Ok(id)
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

/// Inserts a job in state `created` with its inputs and records why it exists.
pub async fn insert_job(
    tx: &mut Tx,
    job: &NewJob<'_>,
    reason: &str,
    user: &str,
) -> Result<i64, StoreError> {
    let now = now_ms();
    let id: i64 = sqlx::query(
        "INSERT INTO jobs (batch_id, subtask_id, seq, attempt, state, state_since, created_at, params_json, backend, retry_of)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
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

/// Records the batch job ids of submitted jobs (`(job, batch job id)`) and
/// their site: one statement for up to 200 jobs.
pub async fn set_batch_job_ids(
    tx: &mut Tx,
    ids: &[(i64, String)],
    site: &str,
) -> Result<(), StoreError> {
    for chunk in ids.chunks(200) {
        let cases: Vec<String> = (0..chunk.len())
            .map(|i| format!("WHEN ${} THEN ${}", 2 + 2 * i, 3 + 2 * i))
            .collect();
        let sql = format!(
            "UPDATE jobs SET site = $1, batch_job_id = CASE id {} END WHERE id IN ({})",
            cases.join(" "),
            placeholders(2 + 2 * chunk.len(), chunk.len())
        );
        let mut q = sqlx::query(&sql).bind(site);
        for (job, batch_job_id) in chunk {
            q = q.bind(*job).bind(batch_job_id.as_str());
        }
        for (job, _) in chunk {
            q = q.bind(*job);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Records where a job runs and since when.
pub async fn set_started(
    tx: &mut Tx,
    job: i64,
    node: Option<&str>,
    at: i64,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE jobs SET node = COALESCE($1, node), started_at = COALESCE(started_at, $2) WHERE id = $3")
        .bind(node)
        .bind(at)
        .bind(job)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// How a job ended, as gathered from the batch system and the job's own result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobEnd {
    /// Node it ran on.
    pub node: Option<String>,
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

/// Writes a job's end: result columns, its stages (M10) and resource totals.
pub async fn record_job_end(tx: &mut Tx, job: i64, end: &JobEnd) -> Result<(), StoreError> {
    let stages = stage_rows(&end.stages);
    let cpu: i64 = stages.iter().filter_map(|s| s.cpu_ms).sum();
    let rss = stages.iter().filter_map(|s| s.max_rss_kb).max();
    let wall = end.started_at.map(|s| (end.ended_at - s).max(0));
    let last = stages.last().map(|s| s.name.clone());
    sqlx::query(
        "UPDATE jobs SET node = COALESCE($1, node), exit_code = $2, signal = $3, oom = $4, failure = $5, events = $6,
             cpu_ms = $7, wall_ms = $8, max_rss_kb = $9, started_at = COALESCE(started_at, $10), ended_at = $11,
             current_stage = COALESCE($12, current_stage)
         WHERE id = $13",
    )
    .bind(end.node.as_deref())
    .bind(end.exit_code)
    .bind(end.signal)
    .bind(i64::from(end.oom))
    .bind(end.failure.as_deref())
    .bind(end.events)
    .bind(cpu)
    .bind(wall)
    .bind(rss)
    .bind(end.started_at)
    .bind(end.ended_at)
    .bind(last)
    .bind(job)
    .execute(&mut **tx)
    .await?;
    insert_stages(tx, job, &stages).await
}

/// Writes a job's stage rows, a few hundred per statement (within every
/// database's bound-parameter limit).
async fn insert_stages(tx: &mut Tx, job: i64, stages: &[StageRow]) -> Result<(), StoreError> {
    const COLUMNS: usize = 9;
    const ROWS_PER_STATEMENT: usize = 500;
    for (chunk_no, chunk) in stages.chunks(ROWS_PER_STATEMENT).enumerate() {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                format!(
                    "({})",
                    super::campaigns::placeholders(1 + i * COLUMNS, COLUMNS)
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO job_stages (job_id, seq, name, started_at, ended_at, wall_ms, cpu_ms, max_rss_kb, ok) VALUES {}",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (i, s) in chunk.iter().enumerate() {
            q = q
                .bind(job)
                .bind((chunk_no * ROWS_PER_STATEMENT + i) as i64)
                .bind(&s.name)
                .bind(s.started_at)
                .bind(s.ended_at)
                .bind(s.wall_ms)
                .bind(s.cpu_ms)
                .bind(s.max_rss_kb)
                .bind(s.ok.map(i64::from));
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// One stage of a job with its resources (M10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageRow {
    /// Stage name.
    pub name: String,
    /// Start, ms.
    pub started_at: i64,
    /// End, ms; none while running.
    pub ended_at: Option<i64>,
    /// Wall time, ms.
    pub wall_ms: Option<i64>,
    /// CPU time, ms.
    pub cpu_ms: Option<i64>,
    /// Peak RSS, KiB.
    pub max_rss_kb: Option<i64>,
    /// Whether it succeeded.
    pub ok: Option<bool>,
}

/// Pairs start and end events into stages, in order.
pub fn stage_rows(events: &[StageEvent]) -> Vec<StageRow> {
    let mut rows: Vec<StageRow> = Vec::new();
    for e in events {
        match e {
            StageEvent::Start { stage, ts_ms } => rows.push(StageRow {
                name: stage.clone(),
                started_at: *ts_ms,
                ended_at: None,
                wall_ms: None,
                cpu_ms: None,
                max_rss_kb: None,
                ok: None,
            }),
            StageEvent::End {
                stage,
                ts_ms,
                wall_ms,
                cpu_ms,
                max_rss_kb,
                ok,
            } => {
                if let Some(open) = rows
                    .iter_mut()
                    .rev()
                    .find(|r| &r.name == stage && r.ended_at.is_none())
                {
                    open.ended_at = Some(*ts_ms);
                    open.wall_ms = Some(*wall_ms);
                    open.cpu_ms = Some(*cpu_ms);
                    open.max_rss_kb = Some(*max_rss_kb);
                    open.ok = Some(*ok);
                }
            }
        }
    }
    rows
}

/// The recorded stages of a job.
pub async fn stages_of(conn: &mut AnyConnection, job: i64) -> Result<Vec<StageRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, started_at, ended_at, wall_ms, cpu_ms, max_rss_kb, ok FROM job_stages WHERE job_id = $1 ORDER BY seq",
    )
    .bind(job)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StageRow {
                name: r.try_get(0)?,
                started_at: r.try_get(1)?,
                ended_at: r.try_get(2)?,
                wall_ms: r.try_get(3)?,
                cpu_ms: r.try_get(4)?,
                max_rss_kb: r.try_get(5)?,
                ok: r.try_get::<Option<i64>, _>(6)?.map(|v| v != 0),
            })
        })
        .collect()
}

/// Where a file came from: the task, subtask and job that made it (X11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Provenance {
    /// Producing task.
    pub task: Option<i64>,
    /// Producing subtask.
    pub subtask: Option<i64>,
    /// Producing job.
    pub job: Option<i64>,
}

/// Registers a file in the local catalog and returns its id.
pub async fn insert_file(
    tx: &mut Tx,
    file: &OutputFile,
    from: Provenance,
) -> Result<i64, StoreError> {
    Ok(sqlx::query(
        "INSERT INTO files (name, path, size_bytes, task_id, subtask_id, job_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(&file.name)
    .bind(&file.path)
    .bind(file.size)
    .bind(from.task)
    .bind(from.subtask)
    .bind(from.job)
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?
    .try_get(0)?)
}

/// A file in the local catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRow {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Full path.
    pub path: String,
    /// Size, bytes.
    pub size: i64,
    /// Producing job.
    pub job_id: Option<i64>,
}

/// Files whose ids are given, in id order.
pub async fn files_by_id(
    conn: &mut AnyConnection,
    ids: &[i64],
) -> Result<Vec<FileRow>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, name, path, size_bytes, job_id FROM files WHERE id IN ({}) ORDER BY id",
        placeholders(1, ids.len())
    );
    let mut q = sqlx::query(&sql);
    for id in ids {
        q = q.bind(*id);
    }
    file_rows(q.fetch_all(conn).await?)
}

fn file_rows(rows: Vec<AnyRow>) -> Result<Vec<FileRow>, StoreError> {
    rows.iter()
        .map(|r| {
            Ok(FileRow {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                path: r.try_get(2)?,
                size: r.try_get(3)?,
                job_id: r.try_get(4)?,
            })
        })
        .collect()
}

/// Files produced by succeeded, current jobs of the given subtasks (a child's inputs).
pub async fn outputs_of_subtasks(
    conn: &mut AnyConnection,
    subtasks: &[i64],
) -> Result<Vec<FileRow>, StoreError> {
    if subtasks.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT f.id, f.name, f.path, f.size_bytes, f.job_id FROM files f JOIN jobs j ON j.id = f.job_id
         WHERE f.subtask_id IN ({}) AND j.state = 'succeeded' ORDER BY f.id",
        placeholders(1, subtasks.len())
    );
    let mut q = sqlx::query(&sql);
    for id in subtasks {
        q = q.bind(*id);
    }
    file_rows(q.fetch_all(conn).await?)
}

/// Input file ids of a job.
pub async fn inputs_of_job(conn: &mut AnyConnection, job: i64) -> Result<Vec<i64>, StoreError> {
    let rows = sqlx::query("SELECT file_id FROM job_inputs WHERE job_id = $1 ORDER BY file_id")
        .bind(job)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

/// Counts for judging a subtask: inputs assigned, inputs read by succeeded jobs, outputs.
pub async fn file_counts(
    conn: &mut AnyConnection,
    subtask: i64,
) -> Result<(i64, i64, i64), StoreError> {
    let row = sqlx::query(
        "SELECT
           (SELECT COUNT(DISTINCT i.file_id) FROM job_inputs i JOIN jobs j ON j.id = i.job_id WHERE j.subtask_id = $1),
           (SELECT COUNT(DISTINCT i.file_id) FROM job_inputs i JOIN jobs j ON j.id = i.job_id
              WHERE j.subtask_id = $1 AND j.state = 'succeeded'),
           (SELECT COUNT(*) FROM files f JOIN jobs j ON j.id = f.job_id WHERE f.subtask_id = $1 AND j.state = 'succeeded')",
    )
    .bind(subtask)
    .fetch_one(conn)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// Output paths of a subtask's succeeded jobs.
pub async fn output_paths(
    conn: &mut AnyConnection,
    subtask: i64,
) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "SELECT f.path FROM files f JOIN jobs j ON j.id = f.job_id WHERE f.subtask_id = $1 AND j.state = 'succeeded'",
    )
    .bind(subtask)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
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
    /// Not yet ended.
    pub active: i64,
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
            _ => c.active += n,
        }
    }
    Ok(out)
}
