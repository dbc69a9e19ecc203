//! `dag-1000`: 1000 jobs running `/bin/true` as 100 independent chains of
//! 10 (job k of a chain after job k−1), 2 at a time. Prodops runs them as
//! `prodops --batch` on the local backend with every transition, stage and
//! result recorded in SQLite; the floor spawns the same 1000 processes with
//! nothing else; make, Snakemake and Luigi run the same chains (see
//! [`super::peers`]). `--quick`: 10 chains, no peers.

use super::peers::{self, run_measured, PeerRun};
use super::{
    bench_ops, check_campaign_succeeded, file_and_approve, status_mb, Figure, Options, Round,
    Target,
};
use crate::batch::local::protocol::LOCK;
use crate::store::Store;
use anyhow::{ensure, Context};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Jobs at once, for prodops and every peer.
const SLOTS: usize = 2;

/// One round: prodops, the floor and (unless quick) the peers.
pub(super) async fn round(dir: &Path, options: &Options) -> anyhow::Result<Round> {
    let (chains, length) = if options.quick { (10, 10) } else { (100, 10) };
    let jobs = chains * length;
    let prodops = prodops_run(dir, chains, length).await?;
    let floor = spawn_floor(jobs).await?;
    let per_job = |ms: f64| ms / jobs as f64;
    let mut round = Round {
        figures: vec![
            Figure::new(
                &format!("prodops, {jobs} jobs, all recorded"),
                prodops.run.seconds,
                "s",
            ),
            Figure::new(
                "prodops peak RSS (worker + executor)",
                prodops.run.peak_mb,
                "MB",
            ),
            Figure::new("bare spawns of /bin/true (floor)", floor, "s"),
            Figure::new(
                "prodops overhead per job beyond the spawn",
                (prodops.run.seconds - floor) * 1000.0 * SLOTS as f64 / jobs as f64,
                "ms",
            )
            .target(Target::AtMost(2.0)),
            Figure::new("worker CPU per job", per_job(prodops.worker_cpu_ms), "ms"),
            Figure::new(
                "executor CPU per job",
                per_job(prodops.executor_cpu_ms),
                "ms",
            ),
        ],
        notes: Vec::new(),
    };
    if !options.quick {
        add_peers(
            &mut round,
            dir,
            options,
            chains,
            length,
            prodops.run.seconds,
        )
        .await?;
    }
    Ok(round)
}

/// Runs the peers and adds their figures and their ratios to prodops.
async fn add_peers(
    round: &mut Round,
    dir: &Path,
    options: &Options,
    chains: usize,
    length: usize,
    prodops: f64,
) -> anyhow::Result<()> {
    let dir = dir.to_path_buf();
    let venv = options.peers.clone();
    let (make, snakemake, luigi) = tokio::task::spawn_blocking(move || {
        let make = peers::make(&dir, chains, length)?;
        let (snakemake, luigi) = match &venv {
            Some(venv) => (
                peers::snakemake(&dir, venv, chains, length)?,
                peers::luigi(&dir, venv, chains, length)?,
            ),
            None => (None, None),
        };
        anyhow::Ok((make, snakemake, luigi))
    })
    .await??;
    let mut add = |name: &str, run: Option<PeerRun>, ratio: Option<(String, f64, Target)>| {
        let Some(run) = run else {
            round.notes.push(match &options.peers {
                Some(venv) => format!("{name} skipped: not found (in {})", venv.display()),
                None if name.starts_with("make") => format!("{name} skipped: make is not on PATH"),
                None => format!(
                    "{name} skipped: no --peers venv (scripts/bench.sh installs Snakemake and Luigi)"
                ),
            });
            return;
        };
        round
            .figures
            .push(Figure::new(&format!("{name} wall"), run.seconds, "s"));
        round
            .figures
            .push(Figure::new(&format!("{name} peak RSS"), run.peak_mb, "MB"));
        if let Some((label, value, target)) = ratio {
            round
                .figures
                .push(Figure::new(&label, value, "×").target(target));
        }
    };
    let ratio_to = |run: Option<PeerRun>, label: &str, prodops_first: bool, target| {
        run.map(|run| {
            let value = if prodops_first {
                prodops / run.seconds
            } else {
                run.seconds / prodops
            };
            (label.to_string(), value, target)
        })
    };
    add(
        "make -j2",
        make,
        ratio_to(make, "prodops ÷ make -j2 (wall)", true, Target::AtMost(2.0)),
    );
    add(
        "snakemake --cores 2",
        snakemake,
        ratio_to(
            snakemake,
            "snakemake ÷ prodops (wall)",
            false,
            Target::AtLeast(20.0),
        ),
    );
    add(
        "luigi, 2 workers",
        luigi,
        ratio_to(
            luigi,
            "luigi ÷ prodops (wall)",
            false,
            Target::AtLeast(10.0),
        ),
    );
    Ok(())
}

/// What a prodops run measured.
struct ProdopsRun {
    run: PeerRun,
    worker_cpu_ms: f64,
    executor_cpu_ms: f64,
}

/// Files and approves the chains, runs `prodops --batch` on them to the
/// end, and checks that every job succeeded with its stages and history.
async fn prodops_run(dir: &Path, chains: usize, length: usize) -> anyhow::Result<ProdopsRun> {
    let db = dir.join("dag.db").display().to_string();
    let store = Store::create(&db).await?;
    let ops = bench_ops(&store).await?;
    let id = file_and_approve(&ops, dir, &dag_request(chains, length)).await?;
    store.close().await;
    let work = dir.join("work");
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args([
        "--db",
        &db,
        "--batch",
        "--slots",
        &SLOTS.to_string(),
        "--work-dir",
    ])
    .arg(&work)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let (run, worker_cpu_s) = tokio::task::spawn_blocking(move || run_measured(&mut cmd)).await??;
    let executor = std::fs::read_to_string(work.join("local").join(LOCK))
        .context("the local executor left no lock file")?;
    let executor = executor.trim();
    let executor_cpu_ms = executor
        .parse()
        .ok()
        .and_then(crate::jobrun::measure::cpu_ms_of_process)
        .unwrap_or(0) as f64;
    let executor_peak = status_mb(executor, "VmHWM").unwrap_or(0.0);
    check_dag(&db, id, chains * length).await?;
    Ok(ProdopsRun {
        run: PeerRun {
            seconds: run.seconds,
            peak_mb: run.peak_mb + executor_peak,
        },
        worker_cpu_ms: worker_cpu_s * 1000.0,
        executor_cpu_ms,
    })
}

/// Fails unless the campaign succeeded with every job, its stages and history.
async fn check_dag(db: &str, id: crate::model::ids::CampaignId, jobs: usize) -> anyhow::Result<()> {
    let store = Store::open(db).await?;
    let ops = crate::ops::Ops::new(store.clone(), crate::ops::Actor::named("bench"));
    check_campaign_succeeded(&store, &ops, id, jobs).await?;
    let stages = crate::store::seed::stage_rows(&store).await?;
    ensure!(
        stages as usize >= jobs * 3,
        "only {stages} stage rows for {jobs} jobs"
    );
    // created, submitting, queued, (running, unless it ended before it was seen,) succeeded
    let history = crate::store::seed::job_transitions(&store, &[]).await?;
    ensure!(
        history as usize >= jobs * 4,
        "only {history} job transitions recorded for {jobs} jobs"
    );
    store.close().await;
    Ok(())
}

/// The request file of `chains` chains of `length` trivial jobs.
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

/// Spawns `jobs` `/bin/true` processes, [`SLOTS`] at a time, with nothing
/// else: no database, no files, no measuring. Returns wall seconds.
async fn spawn_floor(jobs: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut queue = 0..jobs;
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < SLOTS && queue.next().is_some() {
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
    Ok(started.elapsed().as_secs_f64())
}
