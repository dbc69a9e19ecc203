//! `prodops bench`: named scenarios that measure prodops on this machine and
//! check their own result (a benchmark that did not do the work fails loudly).
//!
//! `dag`: N chains of K trivial jobs (`/bin/true`), job k of a chain after job
//! k−1, run `slots` at a time on the local backend with every transition,
//! stage and result recorded in SQLite. The same N×K job-run processes are
//! also run `slots` at a time by a bare scheduler (no database, no worker):
//! that is the process-spawn floor, and the difference per job is prodops's
//! overhead.

use crate::batch::local::LocalBatch;
use crate::batch::BatchSystem;
use crate::model::ids::CampaignId;
use crate::model::jobspec::{files, JobRunSpec};
use crate::ops::{Actor, Ops};
use crate::store::Store;
use crate::worker::{Throttles, Worker, WorkerConfig};
use anyhow::{ensure, Context};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The figures of one `dag` run.
#[derive(Debug, Clone, Serialize)]
pub struct DagFigures {
    /// Jobs run.
    pub jobs: usize,
    /// Jobs at once.
    pub slots: usize,
    /// Wall time of prodops from approval to campaign succeeded, seconds.
    pub prodops_seconds: f64,
    /// Wall time of the bare scheduler running the same job-run processes, seconds.
    pub spawn_floor_seconds: f64,
    /// (prodops − floor) × slots / jobs, milliseconds: what each job costs beyond its spawn.
    pub overhead_ms_per_job: f64,
    /// History rows written.
    pub history_rows: i64,
    /// Stage rows written.
    pub stage_rows: i64,
}

/// Builds the request file of `chains` chains of `length` trivial jobs.
fn dag_request(chains: usize, length: usize) -> String {
    let mut out = String::from(
        "experiment = \"bench\"\nkind = \"mc\"\ntitle = \"dag bench\"\n[defaults]\nrelease = \"bench\"\nresources = { memory_mb = 100, wall_hours = 1 }\n",
    );
    for c in 0..chains {
        for k in 0..length {
            out += &format!(
                "[[stage]]\nname = \"c{c}_{k}\"\nscript = \"/bin/true\"\nevents = 1\nevents_per_job = 1\nseed_base = {k}\n"
            );
            if k > 0 {
                out += &format!("after = [\"c{c}_{}\"]\n", k - 1);
            }
        }
    }
    out
}

/// Runs the `dag` scenario in `dir` and checks that every job succeeded.
pub async fn dag(
    dir: &Path,
    chains: usize,
    length: usize,
    slots: usize,
    runner: Vec<String>,
) -> anyhow::Result<DagFigures> {
    let jobs = chains * length;
    let store = Store::open(&dir.join("bench.db").display().to_string()).await?;
    let ops = Ops::new(store.clone(), Actor::named("bench"));
    let admin = crate::model::role::Grant {
        role: crate::model::role::Role::Approver,
        experiment: "bench".into(),
        kind: None,
    };
    ops.user_add(
        "bench",
        &crate::model::role::Grant {
            role: crate::model::role::Role::Operator,
            experiment: "*".into(),
            kind: None,
        },
        None,
        None,
    )
    .await?;
    ops.experiment_add("bench", &[]).await?;
    ops.user_add("bench", &admin, None, None).await?;
    let request = dir.join("dag.toml");
    std::fs::write(&request, dag_request(chains, length))?;
    let id: CampaignId = ops.request_new(&request).await?.summary.id.parse()?;
    let local = LocalBatch::open(dir.join("local"), slots, runner.clone()).await?;
    let backends: Vec<Arc<dyn BatchSystem>> = vec![local];
    let config = WorkerConfig {
        throttles: Throttles::default(),
        output_root: dir.join("outputs"),
        lease_ttl: Duration::from_secs(60),
    };
    let worker = Worker::new(store.clone(), backends, config);
    ops.approve(id, "bench").await?;
    let started = Instant::now();
    worker.run_until_idle(|_| {}).await?;
    let prodops_seconds = started.elapsed().as_secs_f64();

    let c = ops.campaign(id).await?;
    ensure!(
        c.request.state == "succeeded",
        "the dag campaign ended `{}`, not succeeded",
        c.request.state
    );
    let succeeded: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'")
        .fetch_one(store.pool())
        .await?;
    ensure!(
        succeeded as usize == jobs,
        "{succeeded} of {jobs} jobs succeeded"
    );
    let history_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM history")
        .fetch_one(store.pool())
        .await?;
    let stage_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM job_stages")
        .fetch_one(store.pool())
        .await?;
    ensure!(
        stage_rows as usize >= jobs * 3,
        "only {stage_rows} stage rows for {jobs} jobs"
    );
    store.close().await;

    let spawn_floor_seconds = spawn_floor(&dir.join("floor"), jobs, slots, &runner).await?;
    Ok(DagFigures {
        jobs,
        slots,
        prodops_seconds,
        spawn_floor_seconds,
        overhead_ms_per_job: (prodops_seconds - spawn_floor_seconds) * 1000.0 * slots as f64
            / jobs as f64,
        history_rows,
        stage_rows,
    })
}

/// Runs `jobs` job-run processes of `/bin/true`, `slots` at a time, with no database.
async fn spawn_floor(
    dir: &Path,
    jobs: usize,
    slots: usize,
    runner: &[String],
) -> anyhow::Result<f64> {
    let mut dirs = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let job_dir = dir.join(format!("j{i}"));
        std::fs::create_dir_all(&job_dir)?;
        let spec = JobRunSpec {
            job: i as i64,
            attempt: 1,
            executable: "/bin/true".into(),
            args: Vec::new(),
            env: Default::default(),
            inputs: Vec::new(),
            tarball: None,
            output_dir: job_dir.join("outputs").display().to_string(),
            memory_mb: 100,
            wall_seconds: 3600,
        };
        std::fs::write(job_dir.join(files::SPEC), serde_json::to_vec(&spec)?)?;
        dirs.push(job_dir);
    }
    let started = Instant::now();
    let mut queue = dirs.into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < slots {
            let Some(job_dir) = queue.next() else { break };
            let mut cmd = tokio::process::Command::new(&runner[0]);
            cmd.args(&runner[1..])
                .arg(files::SPEC)
                .current_dir(&job_dir);
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            running.spawn(async move { cmd.status().await });
        }
        match running.join_next().await {
            Some(done) => ensure!(
                done.context("join")?.context("spawn")?.success(),
                "a floor job failed"
            ),
            None => break,
        }
    }
    Ok(started.elapsed().as_secs_f64())
}
