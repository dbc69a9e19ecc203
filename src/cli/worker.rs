//! Running the worker from the command line: `prodops --batch` for cron, and
//! the demo, which runs its campaign to the end while printing progress.

use crate::batch::local::{default_runner, LocalBatch};
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
    /// At most this many submissions per pass (X5).
    #[arg(long, value_name = "N", default_value_t = 500)]
    max_per_pass: usize,
}

impl WorkerArgs {
    fn work_dir(&self, db_location: &str) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.work_dir {
            return Ok(dir.clone());
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

    /// Builds a worker on `ops`'s store with the local backend.
    pub(super) async fn worker(&self, ops: &Ops) -> anyhow::Result<Worker> {
        let store = ops.store().clone();
        let work = self.work_dir(store.location())?;
        let slots = self.slots.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        });
        let local = LocalBatch::open(work.join("local"), slots, default_runner())
            .await
            .with_context(|| format!("cannot start the local backend in {}", work.display()))?;
        let backends: Vec<Arc<dyn BatchSystem>> = vec![local];
        let config = WorkerConfig {
            throttles: Throttles {
                per_experiment: self.max_in_flight,
                per_backend: None,
                per_site: self.max_per_site,
                per_pass: self.max_per_pass.max(1),
            },
            output_root: work.join("outputs"),
            lease_ttl: Duration::from_secs(30),
            min_pass_interval: crate::worker::MIN_PASS_INTERVAL,
        };
        Ok(Worker::new(store, backends, config))
    }
}

/// `prodops --batch`: passes until idle (or one pass), a line per pass that did something.
pub(super) async fn run_batch(worker: &Worker, once: bool) -> anyhow::Result<()> {
    if once {
        let report = worker.pass().await?;
        print_report(&report);
        worker.release_lease().await?;
        return Ok(());
    }
    worker.run_until_idle(print_report).await?;
    Ok(())
}

fn print_report(r: &PassReport) {
    for w in &r.warnings {
        eprintln!("worker: warning: {w}");
    }
    if !r.leader {
        eprintln!("worker: another worker holds the lease; waiting");
    } else if r.changed() {
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
        c.progress.percent,
        stages.join(" · ")
    )
}
