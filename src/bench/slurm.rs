//! `slurm-1000`: 1000 trivial jobs (`#!/bin/sh` then `true`) through the
//! Slurm cluster on this machine, twice: as one bare `sbatch --array`, and
//! as one stage of a campaign that a prodops worker runs on the Slurm
//! backend (one job group, one array, each task under `prodops job-run`),
//! with every job, transition and stage recorded in SQLite. The bare clock
//! runs from `sbatch` until `squeue` shows no task of the array active; the
//! prodops clock from the worker's first pass until it is idle with every
//! job `succeeded`. Both ask Slurm every [`POLL`]. `--quick`: 100 jobs.
//! Needs a running cluster: `bash scripts/start-slurm.sh`.

use super::{
    bench_ops, check_campaign_succeeded, file_and_approve, Figure, Options, Round, Target,
};
use crate::batch::slurm::{SlurmBatch, SlurmConfig};
use crate::model::ids::CampaignId;
use crate::store::Store;
use crate::worker::{Throttles, Worker, WorkerConfig};
use anyhow::{bail, ensure, Context};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the bare poller and prodops's Slurm backend ask Slurm for states.
const POLL: Duration = Duration::from_millis(250);

/// Slurm's task states that are not yet an end.
const ACTIVE_STATES: &str =
    "PENDING,CONFIGURING,RUNNING,COMPLETING,SUSPENDED,REQUEUED,RESIZING,SIGNALING,STAGE_OUT";

/// The memory every job asks for, in both runs (with an hour of wall time).
const MEMORY_MB: u32 = 100;

/// One round: the bare array, then prodops on the same jobs.
pub(super) async fn round(dir: &Path, options: &Options) -> anyhow::Result<Round> {
    check_slurm_up()?;
    let jobs = if options.quick { 100 } else { 1000 };
    let script = trivial_script(dir)?;
    let since = sacct_time_now();
    let (bare, bare_array_id) = bare_array(dir, &script, jobs).await?;
    let (prodops, prodops_array_id) = prodops_run(dir, &script, jobs).await?;
    let notes = others_note(&since, &[bare_array_id, prodops_array_id])
        .await?
        .into_iter()
        .collect();
    Ok(Round {
        figures: vec![
            Figure::new(&format!("bare sbatch --array, {jobs} jobs"), bare, "s"),
            Figure::new(&format!("prodops, {jobs} jobs, all recorded"), prodops, "s"),
            Figure::new("ratio prodops ÷ bare sbatch --array", prodops / bare, "×")
                .target(Target::AtMost(1.2)),
            Figure::new(
                "prodops overhead per job",
                (prodops - bare) * 1000.0 / jobs as f64,
                "ms",
            ),
        ],
        notes,
    })
}

/// Fails, saying how to start one, unless a Slurm node can take jobs.
pub(super) fn check_slurm_up() -> anyhow::Result<()> {
    let start = "start it with `bash scripts/start-slurm.sh` (as root)";
    let nodes = match std::process::Command::new("sinfo")
        .args(["--noheader", "--format=%T"])
        .output()
    {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => bail!(
            "no Slurm cluster answers (sinfo: {}): {start}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => bail!("no Slurm cluster answers (cannot run sinfo: {e}): {start}"),
    };
    let ready = nodes
        .lines()
        .any(|state| matches!(state.trim(), "idle" | "mixed" | "allocated" | "completing"));
    ensure!(
        ready,
        "no Slurm node takes jobs (sinfo: {}): {start}",
        nodes.trim()
    );
    Ok(())
}

/// Writes the job both runs submit: a shell script that does nothing.
fn trivial_script(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("job.sh");
    std::fs::write(&path, "#!/bin/sh\ntrue\n")?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// The longest either run may take: Slurm starts about one task per CPU
/// per second here, so this is a hung cluster, not a slow one.
fn deadline(jobs: usize) -> Duration {
    Duration::from_secs(120 + 3 * jobs as u64)
}

/// Submits `jobs` tasks of `script` as one bare `sbatch --array`, waits
/// until none is active, and checks that sacct has them all `COMPLETED`.
/// Returns the wall seconds from the submission to the last end seen, and
/// the array's id.
async fn bare_array(dir: &Path, script: &Path, jobs: usize) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let array = submit_bare_array(dir, script, jobs).await?;
    wait_until_ended(&array, deadline(jobs)).await?;
    let seconds = started.elapsed().as_secs_f64();
    check_completed(&array, jobs).await?;
    Ok((seconds, array))
}

/// `sbatch --parsable --array=0-(jobs−1)` of `script` with prodops's
/// resources and no output files, as a user would type it (with Slurm's
/// default environment handling); returns the array's id.
async fn submit_bare_array(dir: &Path, script: &Path, jobs: usize) -> anyhow::Result<String> {
    let args = [
        "--parsable".to_string(),
        format!("--array=0-{}", jobs - 1),
        "--job-name=prodops-bench-bare".into(),
        "--output=/dev/null".into(),
        format!("--mem={MEMORY_MB}M"),
        "--time=60".into(),
        "--cpus-per-task=1".into(),
        format!("--chdir={}", dir.display()),
        script.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = output_of("sbatch", &args).await?;
    let id = out.trim().split(';').next().unwrap_or_default();
    ensure!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "sbatch printed no array id: `{}`",
        out.trim()
    );
    Ok(id.to_string())
}

/// Polls `squeue` every [`POLL`] until no task of `array` is active;
/// cancels the array and fails after `limit`.
async fn wait_until_ended(array: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let jobs = format!("--jobs={array}");
        let states = format!("--states={ACTIVE_STATES}");
        let active = output_of("squeue", &["--noheader", &jobs, &states, "--format=%i"]).await?;
        if active.trim().is_empty() {
            return Ok(());
        }
        if started.elapsed() > limit {
            let _ = output_of("scancel", &[array]).await;
            bail!("the bare array {array} was still running after {limit:?}: cancelled");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Fails unless sacct records all `jobs` tasks of `array` as `COMPLETED`
/// (waiting up to a minute for the accounting daemon to catch up).
async fn check_completed(array: &str, jobs: usize) -> anyhow::Result<()> {
    let mut completed = 0;
    for _ in 0..120 {
        let states = output_of(
            "sacct",
            &[
                "--noheader",
                "--parsable2",
                "--allocations",
                "--jobs",
                array,
                "--format=State",
            ],
        )
        .await?;
        completed = states.lines().filter(|s| *s == "COMPLETED").count();
        if completed == jobs {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("sacct records {completed} of the bare array's {jobs} tasks COMPLETED")
}

/// Files and approves `jobs` jobs of `script` on Slurm, runs a worker on
/// them until it is idle, and checks what it recorded. Returns the wall
/// seconds from the first pass to the last, and the id of the jobs' array.
async fn prodops_run(dir: &Path, script: &Path, jobs: usize) -> anyhow::Result<(f64, String)> {
    let store = Store::create(&dir.join("slurm.db").display().to_string()).await?;
    let ops = bench_ops(&store).await?;
    let id = file_and_approve(&ops, dir, &slurm_request(script, jobs)).await?;
    let worker = slurm_worker(&store, dir, jobs)?;
    let started = Instant::now();
    tokio::time::timeout(deadline(jobs), worker.run_until_idle(|_| {}))
        .await
        .with_context(|| format!("the worker was not done after {:?}", deadline(jobs)))??;
    let seconds = started.elapsed().as_secs_f64();
    let array = check_recorded(&store, &ops, id, jobs).await?;
    store.close().await;
    Ok((seconds, array))
}

/// A worker whose only backend is Slurm, polled every [`POLL`], that
/// submits all `jobs` in one pass (so as one group: one array).
fn slurm_worker(store: &Store, dir: &Path, jobs: usize) -> anyhow::Result<Worker> {
    let mut config = SlurmConfig::new(dir.join("slurm"));
    config.poll_interval = POLL;
    config.job_run = pinned_job_run(dir)?;
    let backend = Arc::new(SlurmBatch::open(config)?);
    Ok(Worker::new(
        store.clone(),
        vec![backend],
        WorkerConfig {
            throttles: Throttles {
                per_pass: jobs,
                ..Throttles::default()
            },
            output_root: dir.join("outputs"),
            lease_ttl: Duration::from_secs(600),
            min_pass_interval: crate::worker::MIN_PASS_INTERVAL,
        },
    ))
}

/// This binary's `job-run`, from a copy in `dir`: a build that replaces the
/// binary during the round (minutes long) must not take the jobs' command away.
fn pinned_job_run(dir: &Path) -> anyhow::Result<Vec<String>> {
    let copy = dir.join("prodops");
    std::fs::copy("/proc/self/exe", &copy).context("cannot copy this binary for the jobs")?;
    Ok(vec![copy.display().to_string(), "job-run".into()])
}

/// The request: one stage of `jobs` jobs of `script` on Slurm.
fn slurm_request(script: &Path, jobs: usize) -> String {
    format!(
        "experiment = \"bench\"\nkind = \"mc\"\ntitle = \"slurm bench\"\n[defaults]\nrelease = \"bench\"\nbackend = \"slurm\"\nresources = {{ memory_mb = {MEMORY_MB}, wall_hours = 1 }}\n[[stage]]\nname = \"trivial\"\nscript = \"{}\"\nevents = {jobs}\nevents_per_job = 1\nseed_base = 1\n",
        script.display()
    )
}

/// Fails unless the campaign succeeded with all `jobs` jobs, each with its
/// stages recorded, run as one Slurm array; returns the array's id.
async fn check_recorded(
    store: &Store,
    ops: &crate::ops::Ops,
    id: CampaignId,
    jobs: usize,
) -> anyhow::Result<String> {
    check_campaign_succeeded(store, ops, id, jobs).await?;
    let thin = crate::store::seed::jobs_with_fewer_stages(store, 3).await?;
    ensure!(thin == 0, "{thin} jobs have fewer than 3 stages recorded");
    let arrays = crate::store::seed::slurm_arrays(store).await?;
    match <[String; 1]>::try_from(arrays) {
        Ok([array]) => Ok(array),
        Err(arrays) => bail!("the jobs ran as Slurm arrays {arrays:?}, not one"),
    }
}

/// Now, as sacct's `--starttime` takes it (local time).
fn sacct_time_now() -> String {
    chrono::Local::now().format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A note naming the Slurm jobs, other than the arrays `own`, that were
/// queued or ran since `since`: the cluster is shared, and their tasks took
/// the slots the measured ones wait for.
async fn others_note(since: &str, own: &[String]) -> anyhow::Result<Option<String>> {
    let since = format!("--starttime={since}");
    let ids = output_of(
        "sacct",
        &[
            "--noheader",
            "--parsable2",
            "--allocations",
            &since,
            "--endtime=now",
            "--format=JobID",
        ],
    )
    .await?;
    let others: std::collections::BTreeSet<&str> = ids
        .lines()
        .filter_map(|id| id.split('_').next())
        .filter(|array| !array.is_empty() && !own.iter().any(|o| o == array))
        .collect();
    Ok((!others.is_empty()).then(|| {
        let first: Vec<&str> = others.iter().copied().take(5).collect();
        format!(
            "{} other Slurm jobs or arrays shared the cluster during the round (ids {}{}): the times include theirs",
            others.len(),
            first.join(", "),
            if others.len() > first.len() { ", …" } else { "" }
        )
    }))
}

/// The standard output of `program args`, or an error with its standard error.
async fn output_of(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("cannot run `{program}`"))?;
    ensure!(
        out.status.success(),
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
