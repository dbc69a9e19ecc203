//! Files jobs read and write, with where each came from (X11): the
//! catalog's home in the database.

use super::campaigns::placeholders;
use super::sql::{json, Col, Dialect};
use super::{StoreError, Tx};
use crate::clock::now_ms;
use crate::model::jobspec::OutputFile;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

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
    tx: &mut Tx<'_>,
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

/// Registers many files in the local catalog in one statement.
pub async fn insert_files(
    tx: &mut Tx<'_>,
    files: &[(OutputFile, Provenance)],
) -> Result<(), StoreError> {
    if files.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = files
        .iter()
        .map(|(f, from)| (&f.name, &f.path, f.size, from.task, from.subtask, from.job))
        .collect();
    use Col::{Int, Text};
    let dialect = Dialect::of(tx);
    let sql = format!(
        "INSERT INTO files (name, path, size_bytes, task_id, subtask_id, job_id, created_at)
         SELECT v.c0, v.c1, v.c2, v.c3, v.c4, v.c5, $1 FROM ({}) AS v",
        dialect.rows(2, &[Text, Text, Int, Int, Int, Int])
    );
    sqlx::query(&sql)
        .bind(now_ms())
        .bind(json(&rows))
        .execute(&mut **tx)
        .await?;
    Ok(())
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

/// Ids of the files made by succeeded, current jobs of `subtasks`, by subtask (a child's inputs).
pub async fn outputs_by_subtask(
    tx: &mut Tx<'_>,
    subtasks: &[i64],
) -> Result<HashMap<i64, Vec<i64>>, StoreError> {
    let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
    if subtasks.is_empty() {
        return Ok(out);
    }
    let sql = format!(
        "SELECT f.subtask_id, f.id FROM files f JOIN jobs j ON j.id = f.job_id
         WHERE f.subtask_id IN ({}) AND j.state = 'succeeded' ORDER BY f.id",
        Dialect::of(tx).ids(1)
    );
    let rows = sqlx::query(&sql)
        .bind(json(&subtasks))
        .fetch_all(&mut **tx)
        .await?;
    for r in rows {
        out.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
    }
    Ok(out)
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
