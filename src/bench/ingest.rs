//! `ingest`: job status changes and stage events written per second through
//! the store's batched writes, the path the worker's ingest takes: jobs start
//! (state and node) and end (state, result columns and four measured stages
//! each, i.e. eight stage events), 500 jobs per transaction as a worker pass
//! writes them. On SQLite and, with `--pg URL`, on PostgreSQL in a schema of
//! its own (dropped after).

use super::{bench_ops, file_and_approve, Figure, Options, Round, Target};
use crate::model::jobspec::StageEvent;
use crate::model::state::JobState;
use crate::store::jobs::{self, JobEnd, NewJob};
use crate::store::seed;
use crate::store::states::set_states;
use crate::store::Store;
use anyhow::ensure;
use std::path::Path;
use std::time::Instant;

/// Jobs per transaction.
const BATCH: usize = 500;
/// Status changes (running, succeeded) and stage events (4 stages × start, end) per job.
const EVENTS_PER_JOB: usize = 2 + 8;

/// One round on SQLite and, when given, PostgreSQL.
pub(super) async fn round(dir: &Path, options: &Options) -> anyhow::Result<Round> {
    let jobs = if options.quick { 2_000 } else { 20_000 };
    let sqlite = dir.join("ingest.db").display().to_string();
    let mut round = Round {
        figures: vec![Figure::new(
            "SQLite: events written per second",
            events_per_second(&sqlite, dir, jobs).await?,
            "events/s",
        )
        .target(Target::AtLeast(200_000.0))],
        notes: Vec::new(),
    };
    match &options.pg {
        Some(admin_url) => {
            let schema = format!("bench_ingest_{}", std::process::id());
            let url = seed::create_schema(admin_url, &schema).await?;
            let rate = events_per_second(&url, dir, jobs).await;
            seed::drop_schema(admin_url, &schema).await?;
            round.figures.push(Figure::new(
                "PostgreSQL: events written per second",
                rate?,
                "events/s",
            ));
        }
        None => round.notes.push(
            "PostgreSQL skipped: pass --pg postgres://… (scripts/bench.sh passes $PRODOPS_TEST_PG)"
                .into(),
        ),
    }
    Ok(round)
}

/// Prepares `jobs` queued jobs in the database at `url`, then times their
/// starts and ends; checks every event was written.
async fn events_per_second(url: &str, dir: &Path, jobs: usize) -> anyhow::Result<f64> {
    let store = Store::create(url).await?;
    let ids = queued_jobs(&store, dir, jobs).await?;
    let mut conn = store.pool().acquire().await?;
    let started = Instant::now();
    for chunk in ids.chunks(BATCH) {
        let mut tx = store.begin_on(&mut conn).await?;
        let nodes: Vec<jobs::Placement> = chunk
            .iter()
            .map(|id| jobs::Placement {
                job: *id,
                node: Some(format!("node{}", id % 50)),
                site: None,
                node_kind: None,
            })
            .collect();
        jobs::set_started(&mut tx, &nodes, crate::clock::now_ms()).await?;
        set_states(
            &mut tx,
            &reasons(chunk, "running"),
            JobState::Running,
            "bench",
        )
        .await?;
        let ends: Vec<(i64, JobEnd)> = chunk.iter().map(|id| (*id, job_end())).collect();
        jobs::record_job_ends(&mut tx, &ends).await?;
        set_states(
            &mut tx,
            &reasons(chunk, "succeeded"),
            JobState::Succeeded,
            "bench",
        )
        .await?;
        tx.commit().await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(conn);
    check_written(&store, jobs).await?;
    store.close().await;
    Ok((jobs * EVENTS_PER_JOB) as f64 / seconds)
}

/// An approved campaign whose one subtask has `jobs` jobs, queued with batch
/// ids as a submission leaves them; returns their ids.
async fn queued_jobs(store: &Store, dir: &Path, jobs: usize) -> anyhow::Result<Vec<i64>> {
    let ops = bench_ops(store).await?;
    let request = format!(
        "experiment = \"bench\"\nkind = \"mc\"\ntitle = \"ingest\"\n[defaults]\nrelease = \"bench\"\n[[stage]]\nname = \"gen\"\nscript = \"/bin/true\"\nevents = {jobs}\nevents_per_job = 1\nseed_base = 1\n"
    );
    file_and_approve(&ops, dir, &request).await?;
    let (_, subtask) = crate::store::seed::first_subtask(store).await?;
    let mut tx = store.begin().await?;
    let batch = jobs::insert_batches(&mut tx, &[subtask], "bench", "bench").await?[&subtask];
    let new: Vec<NewJob> = (0..jobs as i64)
        .map(|seq| NewJob {
            batch_id: batch,
            subtask_id: subtask,
            seq,
            attempt: 1,
            params_json: "{}",
            backend: "local",
            retry_of: None,
            inputs: &[],
        })
        .collect();
    let ids = jobs::insert_split_jobs(&mut tx, &new, "bench", "bench").await?;
    set_states(
        &mut tx,
        &reasons(&ids, "submitting"),
        JobState::Submitting,
        "bench",
    )
    .await?;
    let batch_ids: Vec<(i64, String)> = ids.iter().map(|id| (*id, format!("b{id}"))).collect();
    jobs::set_batch_job_ids(&mut tx, &batch_ids, "local").await?;
    set_states(
        &mut tx,
        &reasons(&ids, "submitted"),
        JobState::Queued,
        "bench",
    )
    .await?;
    tx.commit().await?;
    Ok(ids)
}

/// The same reason for each of `ids`.
fn reasons(ids: &[i64], why: &str) -> Vec<(i64, String)> {
    ids.iter().map(|id| (*id, why.to_string())).collect()
}

/// A job's end with four measured stages.
fn job_end() -> JobEnd {
    let now = crate::clock::now_ms();
    let stages = ["stage-in", "unpack", "run", "copy-out"]
        .iter()
        .flat_map(|stage| {
            [
                StageEvent::Start {
                    stage: stage.to_string(),
                    ts_ms: now,
                },
                StageEvent::End {
                    stage: stage.to_string(),
                    ts_ms: now + 5,
                    wall_ms: 5,
                    cpu_ms: 3,
                    max_rss_kb: 20_000,
                    ok: true,
                },
            ]
        })
        .collect();
    JobEnd {
        node: Some("node1".into()),
        exit_code: Some(0),
        events: Some(1),
        started_at: Some(now - 20),
        ended_at: now,
        stages,
        ..JobEnd::default()
    }
}

/// Fails unless every job ended succeeded with its stages and both transitions.
async fn check_written(store: &Store, jobs: usize) -> anyhow::Result<()> {
    let succeeded = seed::jobs_in_state(store, JobState::Succeeded).await?;
    let stages = seed::stage_rows(store).await?;
    let transitions =
        seed::job_transitions(store, &[JobState::Running, JobState::Succeeded]).await?;
    ensure!(
        (succeeded, stages, transitions) == (jobs as i64, 4 * jobs as i64, 2 * jobs as i64),
        "ingest wrote {succeeded} ends, {stages} stages, {transitions} transitions for {jobs} jobs"
    );
    Ok(())
}
