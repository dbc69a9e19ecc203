//! Bulk seeding and counting for the benchmarks (`prodops bench`): rows
//! made many at a time in one statement, and the counts a scenario checks
//! its work with. Nothing else uses these.

use super::{Store, StoreError, Tx};
use crate::clock::now_ms;
use crate::model::state::{JobState, Lifecycle};
use sqlx::{Connection, Row};

/// The first subtask of the database, with its task: `(task, subtask)`.
pub async fn first_subtask(store: &Store) -> Result<(i64, i64), StoreError> {
    let row = sqlx::query("SELECT task_id, id FROM subtasks ORDER BY id LIMIT 1")
        .fetch_one(store.pool())
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// A submitted batch of `subtask` holding `jobs` jobs in mixed states (a
/// tenth failed with exit codes 3–5, a tenth running, the rest succeeded)
/// over 7 sites and 97 nodes, each with stage and resources: what a
/// console over a big campaign shows.
pub async fn mixed_jobs(store: &Store, subtask: i64, jobs: i64) -> Result<(), StoreError> {
    let now = now_ms();
    let batch: i64 = sqlx::query_scalar(
        "INSERT INTO batches (subtask_id, seq, state, state_since, created_at) VALUES ($1, 0, 'submitted', $2, $2) RETURNING id",
    )
    .bind(subtask)
    .bind(now)
    .fetch_one(store.pool())
    .await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1)
         INSERT INTO jobs (batch_id, subtask_id, seq, attempt, state, state_since, created_at, backend, site, node,
                           batch_job_id, current_stage, exit_code, failure, cpu_ms, wall_ms, max_rss_kb, units)
         SELECT $2, $3, i, 1,
                CASE i % 10 WHEN 0 THEN 'failed' WHEN 1 THEN 'running' ELSE 'succeeded' END,
                $4 - i, $4 - i, 'local', 'site' || (i % 7), 'node' || (i % 97), 'b' || i,
                CASE i % 10 WHEN 1 THEN 'run' ELSE 'copy-out' END,
                CASE i % 10 WHEN 0 THEN 3 + i % 3 ELSE 0 END,
                CASE i % 10 WHEN 0 THEN 'exit code ' || (3 + i % 3) ELSE NULL END,
                i % 5000, i % 9000, 20000 + i % 100000, 1
         FROM n",
    )
    .bind(jobs)
    .bind(batch)
    .bind(subtask)
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// `jobs` running jobs of `batch` and `subtask` on the local backend, each
/// with the batch id its key names (`prodops-j<id>-a1`).
pub async fn running_jobs(
    tx: &mut Tx<'_>,
    batch: i64,
    subtask: i64,
    jobs: i64,
) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1)
         INSERT INTO jobs (batch_id, subtask_id, seq, attempt, state, state_since, created_at,
                           params_json, backend, site, started_at)
         SELECT $2, $3, i, 1, 'running', $4, $4, '{\"seq\":' || i || ',\"events\":1,\"inputs\":[]}',
                'local', 'standin', $4
         FROM n",
    )
    .bind(jobs)
    .bind(batch)
    .bind(subtask)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE jobs SET batch_job_id = 'prodops-j' || id || '-a1'")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Every job's batch id, in job order.
pub async fn batch_job_ids(store: &Store) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT batch_job_id FROM jobs WHERE batch_job_id IS NOT NULL ORDER BY id",
    )
    .fetch_all(store.pool())
    .await?)
}

/// How many jobs are in `state`.
pub async fn jobs_in_state(store: &Store, state: JobState) -> Result<i64, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = $1")
            .bind(state.as_str())
            .fetch_one(store.pool())
            .await?,
    )
}

/// How many stage rows are recorded.
pub async fn stage_rows(store: &Store) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM job_stages")
        .fetch_one(store.pool())
        .await?)
}

/// How many state changes of jobs are recorded, only those into `into`
/// when given.
pub async fn job_transitions(store: &Store, into: &[JobState]) -> Result<i64, StoreError> {
    let rows = sqlx::query(
        "SELECT new_state, COUNT(*) FROM history WHERE entity_kind = 'job' GROUP BY new_state",
    )
    .fetch_all(store.pool())
    .await?;
    let mut n = 0;
    for r in rows {
        let state: String = r.try_get(0)?;
        let wanted = into.is_empty() || into.iter().any(|s| s.as_str() == state);
        if wanted {
            n += r.try_get::<i64, _>(1)?;
        }
    }
    Ok(n)
}

/// How many jobs have fewer than `stages` stages recorded.
pub async fn jobs_with_fewer_stages(store: &Store, stages: i64) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs j WHERE (SELECT COUNT(*) FROM job_stages s WHERE s.job_id = j.id) < $1",
    )
    .bind(stages)
    .fetch_one(store.pool())
    .await?)
}

/// The distinct Slurm arrays the jobs ran as (the part of `123_7` before `_`).
pub async fn slurm_arrays(store: &Store) -> Result<Vec<String>, StoreError> {
    let ids = batch_job_ids(store).await?;
    let mut arrays: Vec<String> = ids
        .iter()
        .map(|id| id.split('_').next().unwrap_or(id).to_string())
        .collect();
    arrays.sort();
    arrays.dedup();
    Ok(arrays)
}

/// Makes schema `schema` on the PostgreSQL server at `admin_url`; returns a
/// URL whose connections work in it.
pub async fn create_schema(admin_url: &str, schema: &str) -> Result<String, StoreError> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("CREATE SCHEMA {}", identifier(schema)?))
        .execute(&mut conn)
        .await?;
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    Ok(format!("{admin_url}{sep}options=-csearch_path%3D{schema}"))
}

/// Drops schema `schema` and everything in it.
pub async fn drop_schema(admin_url: &str, schema: &str) -> Result<(), StoreError> {
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        identifier(schema)?
    ))
    .execute(&mut conn)
    .await?;
    Ok(())
}

/// `schema` when it is a plain identifier (it is written into SQL text).
fn identifier(schema: &str) -> Result<&str, StoreError> {
    let plain = !schema.is_empty()
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        Ok(schema)
    } else {
        Err(StoreError::Location(
            schema.to_string(),
            "a schema name is letters, digits and `_`".into(),
        ))
    }
}
