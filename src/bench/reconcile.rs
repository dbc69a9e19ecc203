//! `reconcile-100k`: one worker pass over 100,000 active jobs reported by a
//! stand-in batch system (in memory, answering as `local`), of which 1 %
//! ended since the last look: the pass's time, and the process's peak
//! memory during it. The jobs are seeded straight into the database (a
//! running campaign whose subtask has them all running, with batch ids), so
//! the pass is what a worker that just started does first. `--quick`:
//! 10,000 jobs.

use super::{bench_ops, file_and_approve, Figure, Options, Round, Target};
use crate::batch::{
    BatchError, BatchJobId, BatchSystem, JobGroup, JobKey, LogBundle, Observed, ObservedState,
    Submitted,
};
use crate::model::state::{BatchState, CampaignState, JobState, SubtaskState, TaskState};
use crate::store::states::set_state;
use crate::store::Store;
use crate::worker::{Throttles, Worker, WorkerConfig};
use anyhow::ensure;
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One round: seed, then time one pass.
pub(super) async fn round(dir: &Path, options: &Options) -> anyhow::Result<Round> {
    let jobs = if options.quick { 10_000 } else { 100_000 };
    let store = Store::create(&dir.join("reconcile.db").display().to_string()).await?;
    let batch_ids = seed(&store, dir, jobs).await?;
    let standin = Arc::new(StandIn::running(&batch_ids));
    let ended = standin.end_every(100);
    let worker = Worker::new(
        store.clone(),
        vec![standin.clone()],
        WorkerConfig {
            throttles: Throttles::default(),
            output_root: dir.join("outputs"),
            lease_ttl: Duration::from_secs(600),
            min_pass_interval: crate::worker::MIN_PASS_INTERVAL,
        },
    );
    super::reset_peak_memory();
    let started = Instant::now();
    let report = worker.pass().await?;
    let pass = started.elapsed().as_secs_f64();
    let peak = super::status_mb("self", "VmHWM").unwrap_or(f64::NAN);
    ensure!(
        report.observed == ended,
        "the pass saw {} of {ended} job ends",
        report.observed
    );
    let succeeded = crate::store::seed::jobs_in_state(&store, JobState::Succeeded).await?;
    ensure!(
        succeeded as usize == ended && report.in_flight == jobs - ended,
        "{succeeded} jobs recorded succeeded and {} in flight, of {ended} ended",
        report.in_flight
    );
    store.close().await;
    Ok(Round {
        figures: vec![
            Figure::new(
                &format!("pass over {jobs} active jobs, 1 % ended"),
                pass,
                "s",
            )
            .target(Target::AtMost(1.0)),
            Figure::new("peak resident memory during that pass", peak, "MB")
                .target(Target::AtMost(200.0)),
        ],
        notes: Vec::new(),
    })
}

/// A running campaign whose one subtask has `jobs` running jobs with batch
/// ids; returns the batch ids.
async fn seed(store: &Store, dir: &Path, jobs: usize) -> anyhow::Result<Vec<String>> {
    let ops = bench_ops(store).await?;
    let request = format!(
        "experiment = \"bench\"\nkind = \"mc\"\ntitle = \"reconcile\"\n[defaults]\nrelease = \"bench\"\n[[stage]]\nname = \"gen\"\nscript = \"/bin/true\"\nevents = {jobs}\nevents_per_job = 1\nseed_base = 1\n"
    );
    let campaign = file_and_approve(&ops, dir, &request).await?;
    let (task, subtask) = crate::store::seed::first_subtask(store).await?;
    let mut tx = store.begin().await?;
    let user = "bench";
    set_state(&mut tx, campaign.0, CampaignState::Running, "bench", user).await?;
    set_state(&mut tx, task, TaskState::Running, "bench", user).await?;
    set_state(&mut tx, subtask, SubtaskState::Running, "bench", user).await?;
    let batch =
        crate::store::jobs::insert_batches(&mut tx, &[subtask], "bench", user).await?[&subtask];
    set_state(&mut tx, batch, BatchState::Submitted, "bench", user).await?;
    crate::store::seed::running_jobs(&mut tx, batch, subtask, jobs as i64).await?;
    crate::store::commit(tx).await?;
    let ids = crate::store::seed::batch_job_ids(store).await?;
    ensure!(ids.len() == jobs, "{} of {jobs} jobs seeded", ids.len());
    Ok(ids)
}

/// A batch system in memory: it accepts every submission and reports the
/// states the scenario sets.
#[derive(Default)]
struct StandIn {
    jobs: Mutex<HashMap<String, ObservedState>>,
}

impl StandIn {
    /// A stand-in where the jobs `ids` are running.
    fn running(ids: &[String]) -> StandIn {
        StandIn {
            jobs: Mutex::new(
                ids.iter()
                    .map(|id| (id.clone(), ObservedState::Running))
                    .collect(),
            ),
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, ObservedState>> {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends every `n`-th running job (in name order) successfully; returns how many.
    fn end_every(&self, n: usize) -> usize {
        let mut jobs = self.jobs();
        let mut names: Vec<String> = jobs
            .iter()
            .filter(|(_, s)| **s == ObservedState::Running)
            .map(|(name, _)| name.clone())
            .collect();
        names.sort();
        let ended: Vec<String> = names.into_iter().step_by(n).collect();
        for name in &ended {
            jobs.insert(name.clone(), ObservedState::Succeeded);
        }
        ended.len()
    }
}

#[async_trait]
impl BatchSystem for StandIn {
    fn name(&self) -> &str {
        "local"
    }

    fn default_site(&self) -> &str {
        "standin"
    }

    async fn submit(&self, group: &JobGroup) -> Result<Vec<Submitted>, BatchError> {
        let mut jobs = self.jobs();
        Ok(group
            .jobs
            .iter()
            .map(|job| {
                let name = job.key.name();
                jobs.entry(name.clone()).or_insert(ObservedState::Queued);
                Submitted {
                    key: job.key,
                    batch_id: BatchJobId(name),
                }
            })
            .collect())
    }

    async fn find(&self, keys: &[JobKey]) -> Result<Vec<Submitted>, BatchError> {
        let jobs = self.jobs();
        Ok(keys
            .iter()
            .filter(|key| jobs.contains_key(&key.name()))
            .map(|key| Submitted {
                key: *key,
                batch_id: BatchJobId(key.name()),
            })
            .collect())
    }

    async fn poll(&self, ids: &[BatchJobId]) -> Result<Vec<Observed>, BatchError> {
        let jobs = self.jobs();
        Ok(ids
            .iter()
            .map(|id| {
                let state = jobs.get(&id.0).copied().unwrap_or(ObservedState::Unknown);
                Observed::state(id.clone(), state)
            })
            .collect())
    }

    async fn cancel(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        let mut jobs = self.jobs();
        for id in ids {
            jobs.insert(id.0.clone(), ObservedState::Removed);
        }
        Ok(())
    }

    async fn hold(&self, _ids: &[BatchJobId]) -> Result<(), BatchError> {
        Ok(())
    }

    async fn release(&self, _ids: &[BatchJobId]) -> Result<(), BatchError> {
        Ok(())
    }

    async fn fetch_logs(&self, _id: &BatchJobId) -> Result<LogBundle, BatchError> {
        Ok(LogBundle::default())
    }

    async fn queue_depth(
        &self,
        _of: &crate::model::check::QueueOf,
    ) -> Result<crate::batch::QueueDepth, BatchError> {
        Ok(crate::batch::QueueDepth {
            jobs: self.jobs().len() as u64,
            whose: "jobs".into(),
        })
    }

    async fn changed(&self) {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
