//! Running the worker from the command line: `prodops --batch` for cron, and
//! the demo, which runs its campaign to the end while printing progress.

use crate::batch::htcondor::{HtcondorBatch, HtcondorConfig};
use crate::batch::jobsub::{JobsubBatch, JobsubConfig};
use crate::batch::local::{default_runner, LocalBatch};
use crate::batch::slurm::{SlurmBatch, SlurmConfig};
use crate::batch::BatchSystem;
use crate::model::ids::CampaignId;
use crate::ops::Ops;
use crate::worker::{PassReport, Throttles, Worker, WorkerConfig};
use anyhow::Context;
use clap::Args;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How the worker runs (for `--batch` and `demo`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Worker")]
pub(super) struct WorkerArgs {
    /// The configuration file (default: config.toml in the config dir; see `prodops config show`).
    #[arg(long, env = "PRODOPS_CONFIG", value_name = "FILE")]
    pub(super) config: Option<PathBuf>,
    /// Where job directories and outputs live (default: beside the SQLite file, or the data dir).
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// Jobs the local backend runs at once (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    slots: Option<usize>,
    /// At most this many jobs in flight per experiment (X5).
    #[arg(long, value_name = "N")]
    max_in_flight: Option<usize>,
    /// At most this many jobs in flight per site (X5).
    #[arg(long, value_name = "N")]
    max_per_site: Option<usize>,
    /// At most this many submissions per pass (X5) [default: 500].
    #[arg(long, value_name = "N")]
    max_per_pass: Option<usize>,
}

impl WorkerArgs {
    /// These arguments with `slots` local slots unless `--slots` was given.
    pub(super) fn or_slots(mut self, slots: usize) -> WorkerArgs {
        self.slots = self.slots.or(Some(slots));
        self
    }

    fn work_dir(&self, configured: Option<&Path>, db_location: &str) -> anyhow::Result<PathBuf> {
        if let Some(dir) = self.work_dir.as_deref().or(configured) {
            return Ok(dir.to_path_buf());
        }
        let path = Path::new(db_location);
        if !db_location.contains("://") {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "prodops".into());
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            return Ok(parent.join(format!("{stem}-work")));
        }
        crate::store::default_sqlite_path()
            .and_then(|p| p.parent().map(|d| d.join("work")))
            .context("no home directory for job files: pass --work-dir DIR")
    }

    /// Builds a worker on `ops`'s store with the local backend and the batch
    /// systems of the configuration file; flags override the file.
    pub(super) async fn worker(&self, ops: &Ops) -> anyhow::Result<Worker> {
        let (file, _) = crate::config::load(self.config.as_deref())?;
        let defaults = &file.worker;
        let store = ops.store().clone();
        let work = self.work_dir(defaults.work_dir.as_deref(), store.location())?;
        let slots = self.slots.or(defaults.slots).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
        let local = LocalBatch::open(work.join("local"), slots, default_runner())
            .await
            .with_context(|| format!("cannot start the local backend in {}", work.display()))?;
        let mut backends: Vec<Arc<dyn BatchSystem>> = vec![local];
        if let Some(slurm) = &file.slurm {
            backends.push(Arc::new(SlurmBatch::open(slurm_config(slurm))?));
        }
        if let Some(htcondor) = &file.htcondor {
            backends.push(Arc::new(HtcondorBatch::open(htcondor_config(htcondor))?));
        }
        if let Some(jobsub) = &file.jobsub {
            backends.push(Arc::new(JobsubBatch::open(jobsub_config(jobsub))?));
        }
        let config = WorkerConfig {
            throttles: Throttles {
                per_experiment: self.max_in_flight.or(defaults.max_in_flight),
                per_backend: defaults.max_per_backend,
                per_site: self.max_per_site.or(defaults.max_per_site),
                per_pass: self
                    .max_per_pass
                    .or(defaults.max_per_pass)
                    .unwrap_or(500)
                    .max(1),
            },
            output_root: work.join("outputs"),
            lease_ttl: Duration::from_secs(30),
            min_pass_interval: crate::worker::MIN_PASS_INTERVAL,
        };
        Ok(Worker::new(store, backends, config).with_checks(file.check_specs()))
    }
}

/// The Slurm backend's settings from the configuration file's `[slurm]`.
fn slurm_config(section: &crate::config::SlurmSection) -> SlurmConfig {
    let mut config = SlurmConfig::new(section.work_dir.clone());
    config.partition = section.partition.clone();
    config.array_limit = section.array_limit;
    if let Some(seconds) = section.poll_seconds {
        config.poll_interval = Duration::from_secs(seconds);
    }
    if let Some(job_run) = &section.job_run {
        config.job_run = job_run.clone();
    }
    if let Some(site) = &section.site {
        config.site = site.clone();
    }
    config
}

/// The HTCondor backend's settings from the configuration file's `[htcondor]`.
fn htcondor_config(section: &crate::config::HtcondorSection) -> HtcondorConfig {
    let mut config = HtcondorConfig::new(section.work_dir.clone());
    config.bin_dir = section.bin_dir.clone();
    if let Some(seconds) = section.poll_seconds {
        config.poll_interval = Duration::from_secs(seconds);
    }
    if let Some(job_run) = &section.job_run {
        config.job_run = job_run.clone();
    }
    if let Some(site) = &section.site {
        config.site = site.clone();
    }
    config.extra_lines = section.submit_lines.clone().unwrap_or_default();
    if let Some(seconds) = section.system_hold_grace_seconds {
        config.system_hold_grace = Duration::from_secs(seconds);
    }
    config
}

/// The jobsub backend's settings from the configuration file's `[jobsub]`.
fn jobsub_config(section: &crate::config::JobsubSection) -> JobsubConfig {
    let mut config = JobsubConfig::new(section.work_dir.clone(), section.group.clone());
    config.bin_dir = section.bin_dir.clone();
    if let Some(role) = &section.role {
        config.role = role.clone();
    }
    if let Some(seconds) = section.poll_seconds {
        config.poll_interval = Duration::from_secs(seconds);
    }
    if let Some(job_run) = &section.job_run {
        config.job_run = job_run.clone();
    }
    if let Some(site) = &section.site {
        config.site = site.clone();
    }
    config.extra_args = section.submit_args.clone().unwrap_or_default();
    config
}

/// How `prodops --batch` runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchMode {
    /// A single pass.
    pub(super) once: bool,
    /// Wait quietly for a lease another live worker holds, instead of leaving.
    pub(super) wait: bool,
}

/// Why `prodops --batch` stopped with work left that it could not do: a
/// distinct exit code ([`super::EXIT_WAITING`]) so cron mail tells the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct WorkWaiting(String);

/// `prodops --batch`: passes until idle (or one pass), a line per pass that
/// did something; then a line per campaign still in its grace period, which
/// it does not wait out (X6). When another live worker holds the lease it
/// leaves at once with one line naming it (or, with `--wait`, waits quietly
/// for it).
pub(super) async fn run_batch(worker: &Worker, mode: BatchMode) -> anyhow::Result<()> {
    let first = worker.pass().await?;
    let first = if first.leader {
        first
    } else if mode.wait {
        wait_for_lease(worker, &first).await?
    } else {
        eprintln!("worker: {}; nothing to do here", holder_line(&first));
        return Ok(());
    };
    print_report(&first);
    let last = if mode.once || first.idle() {
        first
    } else {
        worker.pace(&first).await;
        worker.run_until_idle(print_report).await?
    };
    worker.release_lease().await?;
    for (campaign, at) in worker.grace_waits().await? {
        eprintln!("{}", grace_line(campaign, at, crate::clock::now_ms()));
    }
    match waiting_line(&last) {
        Some(line) => Err(WorkWaiting(line).into()),
        None => Ok(()),
    }
}

/// Says once that the lease is held, passes quietly until this worker takes
/// it, says so, and returns that first pass as leader.
async fn wait_for_lease(worker: &Worker, watching: &PassReport) -> anyhow::Result<PassReport> {
    eprintln!("worker: {}; waiting for it", holder_line(watching));
    loop {
        tokio::time::sleep(LEASE_WAIT).await;
        let report = worker.pass().await?;
        if report.leader {
            eprintln!("worker: took the lease");
            return Ok(report);
        }
    }
}

/// How often a waiting `--batch --wait` tries the lease again.
const LEASE_WAIT: Duration = Duration::from_secs(2);

/// `the worker on HOST pid N (since HH:MM:SS) holds the lease`, from a
/// pass that only watched.
fn holder_line(r: &PassReport) -> String {
    match &r.lease_holder {
        Some(holder) => {
            let since = chrono::DateTime::from_timestamp_millis(holder.since_ms)
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string()
                })
                .unwrap_or_else(|| "?".into());
            format!("the worker on {holder} (running since {since}) holds the lease")
        }
        None => "another worker holds the lease".into(),
    }
}

/// The last line of a `--batch` run that stopped with work it could not
/// do: jobs ready but held back, or jobs on instances out of its reach.
fn waiting_line(last: &PassReport) -> Option<String> {
    let mut parts = Vec::new();
    if last.held_back > 0 {
        parts.push(format!(
            "{} job(s) ready but not submitted (a failing pre-launch check, a backend not configured here, or a refused submission: see the warnings above)",
            last.held_back
        ));
    }
    if !last.unreachable.is_empty() {
        parts.push(format!(
            "{}, left as they are for a worker that reaches them",
            unreachable_jobs(&last.unreachable)
        ));
    }
    (!parts.is_empty()).then(|| format!("stopped with {}", parts.join("; and ")))
}

/// `8 job(s) on local@node1:/data/work/local, 2 job(s) on htcondor@node2`.
pub(super) fn unreachable_jobs(by_instance: &std::collections::BTreeMap<String, usize>) -> String {
    by_instance
        .iter()
        .map(|(instance, n)| format!("{n} job(s) on unreachable {instance}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What `--batch` says of a campaign in its grace period when it stops.
fn grace_line(campaign: i64, start_after: i64, now: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(start_after)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default();
    format!(
        "worker: C{campaign} starts in {} (at {at}, after its approval grace period): run the worker again then",
        crate::model::request_policy::countdown(start_after - now)
    )
}

fn print_report(r: &PassReport) {
    for w in &r.warnings {
        eprintln!("worker: warning: {w}");
    }
    if r.leader && r.changed() {
        eprintln!(
            "worker: submitted {} · observed {} · retried {} · released {} · split {} · in flight {}",
            r.submitted, r.observed, r.retried, r.released, r.split, r.in_flight
        );
    }
}

/// Runs the worker until the campaign ends, printing its progress; true when it succeeded.
pub(super) async fn run_campaign(
    worker: &Worker,
    ops: &Ops,
    id: CampaignId,
) -> anyhow::Result<bool> {
    let mut last = String::new();
    loop {
        let report = worker.pass().await?;
        for w in &report.warnings {
            eprintln!("worker: warning: {w}");
        }
        let c = ops.campaign(id).await?;
        let line = progress_line(&c);
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if matches!(
            c.request.state.as_str(),
            "succeeded" | "failed" | "cancelled"
        ) && report.in_flight == 0
        {
            worker.release_lease().await?;
            return Ok(c.request.state == "succeeded");
        }
        worker.pace(&report).await;
    }
}

fn progress_line(c: &crate::ops::views::CampaignDetail) -> String {
    let stages: Vec<String> = c
        .tasks
        .iter()
        .flat_map(|t| &t.subtasks)
        .map(|s| {
            format!(
                "{} {} {}/{}",
                s.name, s.state, s.jobs.succeeded, s.jobs.total
            )
        })
        .collect();
    format!(
        "{} {} {:>5.1}% · {}",
        c.request.id,
        c.request.state,
        c.progress.percent(),
        stages.join(" · ")
    )
}
