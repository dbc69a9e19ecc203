//! The stages of jobs (stage-in, run, copy-out, …) with CPU, wall and
//! memory each (M10), as the job side reports them.

use super::sql::{json, Col, Dialect};
use super::{StoreError, Tx};
use crate::model::jobspec::StageEvent;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

/// Writes jobs' stage rows in one statement.
pub(super) async fn insert_stages(
    tx: &mut Tx<'_>,
    jobs: &[(i64, Vec<StageRow>)],
) -> Result<(), StoreError> {
    let rows: Vec<_> = jobs
        .iter()
        .flat_map(|(job, stages)| {
            stages.iter().enumerate().map(move |(seq, s)| {
                (
                    *job,
                    seq,
                    &s.name,
                    s.started_at,
                    s.ended_at,
                    s.wall_ms,
                    s.cpu_ms,
                    s.max_rss_kb,
                    s.ok.map(i64::from),
                )
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    use Col::{Int, Text};
    let dialect = Dialect::of(tx);
    let sql = format!(
        "INSERT INTO job_stages (job_id, seq, name, started_at, ended_at, wall_ms, cpu_ms, max_rss_kb, ok)
         SELECT v.c0, v.c1, v.c2, v.c3, v.c4, v.c5, v.c6, v.c7, v.c8 FROM ({}) AS v",
        dialect.rows(1, &[Int, Int, Text, Int, Int, Int, Int, Int, Int])
    );
    sqlx::query(&sql)
        .bind(json(&rows))
        .execute(&mut **tx)
        .await?;
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
