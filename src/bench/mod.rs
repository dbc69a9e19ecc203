//! `prodops bench`: named scenarios that measure prodops on this machine and
//! check their own result (a benchmark that did not do the work fails loudly).
//!
//! `dag`: N chains of K trivial jobs (`/bin/true`), job k of a chain after job
//! k−1, run `slots` at a time on the local backend with every transition,
//! stage and result recorded in SQLite. The same N×K `/bin/true` processes
//! are also spawned `slots` at a time by a bare launcher (no database, no
//! files, no worker): that is the process-spawn floor, and the difference
//! per job is prodops's overhead. The two alternate for several rounds and
//! the medians are reported, so a slow moment of the machine does not decide
//! the figure.

pub mod console;

use crate::batch::local::LocalBatch;
use crate::batch::BatchSystem;
use crate::jobrun::stages::SelfMeter;
use crate::model::ids::CampaignId;
use crate::ops::{Actor, Ops};
use crate::store::Store;
use crate::worker::{Throttles, Worker, WorkerConfig};
use anyhow::{ensure, Context};
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The shape of a `dag` run.
#[derive(Debug, Clone, Copy)]
pub struct DagShape {
    /// Independent chains.
    pub chains: usize,
    /// Jobs per chain, each after the previous.
    pub length: usize,
    /// Jobs at once.
    pub slots: usize,
    /// Rounds of prodops and floor, alternating; medians are reported.
    pub rounds: usize,
}

/// The figures of a `dag` run (medians over its rounds).
#[derive(Debug, Clone, Serialize)]
pub struct DagFigures {
    /// Jobs run per round.
    pub jobs: usize,
    /// Independent chains.
    pub chains: usize,
    /// Jobs at once.
    pub slots: usize,
    /// Rounds measured.
    pub rounds: usize,
    /// Wall time of prodops from approval to campaign succeeded, seconds.
    pub prodops_seconds: f64,
    /// Wall time of a bare launcher spawning the same `/bin/true` processes, seconds.
    pub spawn_floor_seconds: f64,
    /// (prodops − floor) × slots / jobs per round, milliseconds: what each
    /// job costs beyond its spawn.
    pub overhead_ms_per_job: f64,
    /// CPU time (user + system) of the worker's own process per job,
    /// milliseconds: the part of the overhead that does not depend on how
    /// busy the machine is.
    pub worker_cpu_ms_per_job: f64,
    /// CPU time of the local executor's own threads per job (its scripts
    /// not included), milliseconds.
    pub executor_cpu_ms_per_job: f64,
    /// CPU time of the floor's own process per job, milliseconds: what
    /// spawning and reaping alone cost the launcher.
    pub launcher_cpu_ms_per_job: f64,
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

/// One round of the floor: wall seconds and the launcher's own CPU ms.
struct FloorRound {
    seconds: f64,
    launcher_cpu_ms: f64,
}

/// One round of prodops: wall seconds, worker and executor CPU ms, history and stage rows.
struct ProdopsRound {
    seconds: f64,
    worker_cpu_ms: f64,
    executor_cpu_ms: f64,
    history_rows: i64,
    stage_rows: i64,
}

/// Runs the `dag` scenario in `dir`, `shape.rounds` times alternating with
/// the floor, and checks that every job of every round succeeded.
pub async fn dag(dir: &Path, shape: DagShape, runner: Vec<String>) -> anyhow::Result<DagFigures> {
    let jobs = shape.chains * shape.length;
    let mut prodops = Vec::new();
    let mut floors = Vec::new();
    let mut overheads = Vec::new();
    for round in 0..shape.rounds.max(1) {
        let run = dag_round(&dir.join(format!("round{round}")), shape, &runner).await?;
        let floor = spawn_floor(jobs, shape.slots).await?;
        overheads.push((run.seconds - floor.seconds) * 1000.0 * shape.slots as f64 / jobs as f64);
        floors.push(floor);
        prodops.push(run);
    }
    let last = prodops.last().context("no round ran")?;
    let (history_rows, stage_rows) = (last.history_rows, last.stage_rows);
    Ok(DagFigures {
        jobs,
        chains: shape.chains,
        slots: shape.slots,
        rounds: prodops.len(),
        prodops_seconds: median(prodops.iter().map(|r| r.seconds).collect()),
        spawn_floor_seconds: median(floors.iter().map(|f| f.seconds).collect()),
        launcher_cpu_ms_per_job: median(floors.iter().map(|f| f.launcher_cpu_ms).collect())
            / jobs as f64,
        overhead_ms_per_job: median(overheads),
        worker_cpu_ms_per_job: median(prodops.iter().map(|r| r.worker_cpu_ms).collect())
            / jobs as f64,
        executor_cpu_ms_per_job: median(prodops.iter().map(|r| r.executor_cpu_ms).collect())
            / jobs as f64,
        history_rows,
        stage_rows,
    })
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One prodops round in a fresh `dir`: a new database and backend root.
async fn dag_round(dir: &Path, shape: DagShape, runner: &[String]) -> anyhow::Result<ProdopsRound> {
    std::fs::create_dir_all(dir)?;
    let (chains, length, slots) = (shape.chains, shape.length, shape.slots);
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
    let local_root = dir.join("local");
    let local = LocalBatch::open(local_root.clone(), slots, runner.to_vec()).await?;
    let executor_cpu = executor_cpu_ms(&local_root);
    let backends: Vec<Arc<dyn BatchSystem>> = vec![local];
    let config = WorkerConfig {
        throttles: Throttles::default(),
        output_root: dir.join("outputs"),
        lease_ttl: Duration::from_secs(60),
        min_pass_interval: crate::worker::MIN_PASS_INTERVAL,
    };
    let worker = Worker::new(store.clone(), backends, config);
    ops.approve(id, "bench").await?;
    let cpu = SelfMeter::start();
    let started = Instant::now();
    worker.run_until_idle(|_| {}).await?;
    let seconds = started.elapsed().as_secs_f64();
    let worker_cpu_ms = cpu.usage().cpu_ms as f64;
    let executor_cpu_ms = (executor_cpu_ms(&local_root) - executor_cpu) as f64;

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
    Ok(ProdopsRound {
        seconds,
        worker_cpu_ms,
        executor_cpu_ms,
        history_rows,
        stage_rows,
    })
}

/// Spawns `jobs` `/bin/true` processes, `slots` at a time, with nothing
/// else: no database, no files, no measuring.
async fn spawn_floor(jobs: usize, slots: usize) -> anyhow::Result<FloorRound> {
    let cpu = SelfMeter::start();
    let started = Instant::now();
    let mut queue = 0..jobs;
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < slots && queue.next().is_some() {
            let mut cmd = tokio::process::Command::new("/bin/true");
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
    Ok(FloorRound {
        seconds: started.elapsed().as_secs_f64(),
        launcher_cpu_ms: cpu.usage().cpu_ms as f64,
    })
}

/// CPU time (user + system) of the local executor running in `root` so
/// far, ms; 0 when none runs.
fn executor_cpu_ms(root: &Path) -> i64 {
    let pid = std::fs::read_to_string(root.join(crate::batch::local::protocol::LOCK))
        .ok()
        .and_then(|text| text.trim().parse::<i32>().ok());
    pid.and_then(crate::jobrun::measure::cpu_ms_of_process)
        .unwrap_or(0)
}
