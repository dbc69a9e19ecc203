//! The worker: a reconcile loop that turns desired state into batch-system actions.
//!
//! Each pass is idempotent and may be cut anywhere by a crash:
//! recover orphans → follow holds/cancels → ingest job states and logs →
//! evaluate completion → release DAG successors → split ready subtasks →
//! submit within throttles. It runs in-process as a tokio task or headless
//! (`prodops --batch`), guarded by a lease so only one worker submits.

pub mod checks;
mod enforce;
mod ingest;
mod plan;
mod recover;
mod rollup;
mod submit;

use crate::batch::{BatchError, BatchSystem};
use crate::store::states::Skipped;
use crate::store::{lease, Store, StoreError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

/// The name under which the worker appears in history rows.
pub const WORKER_USER: &str = "worker";

/// Caps on jobs in flight so queues are not overwhelmed (X5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttles {
    /// Per experiment.
    pub per_experiment: Option<usize>,
    /// Per backend.
    pub per_backend: Option<usize>,
    /// Per site.
    pub per_site: Option<usize>,
    /// Submissions per pass.
    pub per_pass: usize,
}

impl Default for Throttles {
    fn default() -> Self {
        Throttles {
            per_experiment: None,
            per_backend: None,
            per_site: None,
            per_pass: 500,
        }
    }
}

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Throttles.
    pub throttles: Throttles,
    /// Where job outputs are collected: `<root>/C<c>/S<s>/J<j>-a<n>/`.
    pub output_root: PathBuf,
    /// How long the lease lasts without renewal.
    pub lease_ttl: Duration,
    /// Shortest time from one pass's start to the next: job ends that arrive
    /// together are then handled by one pass, not one pass each.
    pub min_pass_interval: Duration,
}

/// The default [`WorkerConfig::min_pass_interval`]: successors start within
/// this of their parents' end, and a busy worker passes at most 100 times a second.
pub const MIN_PASS_INTERVAL: Duration = Duration::from_millis(10);

/// What went wrong in a pass. The pass stops; the next one starts over.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A batch system.
    #[error(transparent)]
    Batch(#[from] BatchError),
}

impl WorkerError {
    /// True when the database could not be reached: the pass is tried again
    /// later instead of ending the worker.
    pub fn is_connection(&self) -> bool {
        matches!(self, WorkerError::Store(e) if e.is_connection())
    }
}

/// The longest wait between passes while the database is unreachable.
pub const MAX_RECONNECT_WAIT: Duration = Duration::from_secs(4);

/// A time the database could not be reached: said once when it begins and
/// once when it ends, with passes tried again after growing waits.
struct Outage {
    since: Instant,
    wait: Duration,
}

impl Outage {
    fn began(e: &WorkerError, since: Instant) -> Outage {
        eprintln!("worker: database unreachable ({e}); retrying");
        Outage {
            since,
            wait: Duration::from_millis(250),
        }
    }

    async fn back_off(&mut self) {
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(MAX_RECONNECT_WAIT);
    }

    fn ended(self) {
        eprintln!(
            "worker: database reachable again after {:.1} s",
            self.since.elapsed().as_secs_f64()
        );
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// This worker holds the lease (otherwise it only watched).
    pub leader: bool,
    /// When it only watched: the worker holding the lease (host and pid),
    /// if one does.
    pub lease_holder: Option<lease::LeaseHolder>,
    /// Orphans adopted or returned to the queue.
    pub recovered: usize,
    /// Jobs held, released or removed to follow their campaign.
    pub enforced: usize,
    /// Job state changes seen in batch systems.
    pub observed: usize,
    /// Retries created.
    pub retried: usize,
    /// Subtasks, tasks, campaigns and batches whose state was rolled up.
    pub rolled_up: usize,
    /// Subtasks released by their parents (J1).
    pub released: usize,
    /// Jobs created by splitting.
    pub split: usize,
    /// Jobs submitted.
    pub submitted: usize,
    /// Jobs in flight after the pass.
    pub in_flight: usize,
    /// Jobs in flight on batch-system instances this worker cannot reach
    /// (another host's executor, a backend it lacks), by instance: left as
    /// they are, never declared failed or lost (issue 15).
    pub unreachable: BTreeMap<String, usize>,
    /// Jobs ready to submit that stayed `created` this pass: a failing
    /// pre-launch check covers them, their backend is not configured in
    /// this worker, or the batch system refused them (see `warnings`).
    pub held_back: usize,
    /// Problems that did not stop the pass: a backend refusing a submission
    /// or a hold, an entity whose state could not move (named, with why;
    /// it was skipped and the others moved).
    pub warnings: Vec<String>,
}

impl PassReport {
    /// True when the pass changed something.
    pub fn changed(&self) -> bool {
        self.recovered
            + self.enforced
            + self.observed
            + self.retried
            + self.rolled_up
            + self.released
            + self.split
            + self.submitted
            > 0
    }

    /// True when the pass found nothing to do and nothing this worker can
    /// follow is in flight (jobs on instances it cannot reach do not count).
    pub fn idle(&self) -> bool {
        let unreachable: usize = self.unreachable.values().sum();
        self.leader && !self.changed() && self.in_flight <= unreachable
    }
}

/// A job as recorded: which backend, and which instance of it, holds it.
trait HeldBy {
    fn backend(&self) -> &str;
    fn instance(&self) -> Option<&str>;
}

impl HeldBy for crate::store::jobs::JobRow {
    fn backend(&self) -> &str {
        &self.backend
    }
    fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }
}

impl HeldBy for crate::store::jobs::ActiveJob {
    fn backend(&self) -> &str {
        &self.backend
    }
    fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }
}

impl HeldBy for crate::store::queue::Mismatch {
    fn backend(&self) -> &str {
        &self.backend
    }
    fn instance(&self) -> Option<&str> {
        self.instance.as_deref()
    }
}

/// The worker: a store, the batch systems it may use, and its configuration.
pub struct Worker {
    store: Store,
    backends: BTreeMap<String, Arc<dyn BatchSystem>>,
    /// Each backend's instance, by backend name (asked once: passes
    /// compare it with every job in flight).
    instances: BTreeMap<String, String>,
    config: WorkerConfig,
    /// Pre-launch checks guarding submissions (P1–P4, J3, J10).
    checks: Vec<crate::model::check::CheckSpec>,
    holder: String,
    /// When the last pass began and how long it took (for [`Worker::pace`]).
    last_pass: std::sync::Mutex<(Instant, Duration)>,
    /// What the worker remembers between passes.
    memory: tokio::sync::Mutex<Memory>,
}

/// What the worker remembers between passes to skip work that cannot be there.
#[derive(Debug, Default)]
struct Memory {
    /// When the lease was last taken or renewed by us.
    lease_renewed: Option<Instant>,
    /// The newest audit row seen: every management action writes one.
    last_audit: Option<i64>,
    /// When the last full pass ran.
    last_full: Option<Instant>,
    /// Orphans of a crashed pass or worker may exist.
    recovery_due: bool,
    /// The last pass left something to retry (a refused submission).
    retry_due: bool,
    /// Settled subtasks waiting for their check script (T5).
    awaiting_checks: Vec<i64>,
    /// The pre-launch checks' last runs.
    check_board: checks::CheckBoard,
}

/// Longest time between full passes even when nothing seems to change.
const FULL_PASS_EVERY: Duration = Duration::from_secs(2);

impl Worker {
    /// A worker using `backends`, keyed by their names.
    pub fn new(store: Store, backends: Vec<Arc<dyn BatchSystem>>, config: WorkerConfig) -> Worker {
        let backends: BTreeMap<String, Arc<dyn BatchSystem>> = backends
            .into_iter()
            .map(|b| (b.name().to_string(), b))
            .collect();
        Worker {
            store,
            instances: backends
                .iter()
                .map(|(name, b)| (name.clone(), b.instance()))
                .collect(),
            backends,
            config,
            checks: Vec::new(),
            holder: lease::holder_id(),
            last_pass: std::sync::Mutex::new((Instant::now(), Duration::ZERO)),
            memory: tokio::sync::Mutex::new(Memory {
                recovery_due: true,
                ..Memory::default()
            }),
        }
    }

    /// The same worker, holding submissions while one of `checks` fails.
    pub fn with_checks(mut self, checks: Vec<crate::model::check::CheckSpec>) -> Worker {
        self.checks = checks;
        self
    }

    /// Runs every check now and records the verdicts (`prodops check`).
    pub async fn run_checks_now(
        &self,
    ) -> Result<Vec<(crate::model::check::CheckSpec, crate::model::check::Verdict)>, WorkerError>
    {
        let all: Vec<&crate::model::check::CheckSpec> = self.checks.iter().collect();
        let verdicts = checks::run_all(&all, &self.backends).await;
        let mut tx = self.store.begin().await?;
        crate::store::checks::record_verdicts(&mut tx, &verdicts, WORKER_USER).await?;
        crate::store::commit(tx).await?;
        Ok(verdicts
            .into_iter()
            .map(|(spec, verdict)| (spec.clone(), verdict))
            .collect())
    }

    /// Jobs in flight on batch-system instances this worker cannot reach,
    /// by instance (`prodops check` shows them).
    pub async fn unreachable_jobs(&self) -> Result<BTreeMap<String, usize>, WorkerError> {
        let mut conn = self.store.conn().await?;
        let mut out = BTreeMap::new();
        for job in crate::store::jobs::active_jobs(&mut conn).await? {
            if !self.reaches(&job) {
                *out.entry(ingest::held_by(&job)).or_default() += 1;
            }
        }
        Ok(out)
    }

    /// The store the worker uses.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One reconcile pass. Without the lease it only reports what is in flight.
    ///
    /// A pass that finds no job changed and no management action since the
    /// last one only polls the batch systems (deciding, releasing, splitting
    /// and submitting cannot have work then); every [`FULL_PASS_EVERY`] it
    /// does everything anyway.
    pub async fn pass(&self) -> Result<PassReport, WorkerError> {
        let started = Instant::now();
        let mut memory = self.memory.lock().await;
        let outcome = self.pass_with(&mut memory).await;
        *self
            .last_pass
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (started, started.elapsed());
        if outcome.is_err() {
            memory.recovery_due = true;
            memory.last_full = None;
        }
        outcome
    }

    async fn pass_with(&self, memory: &mut Memory) -> Result<PassReport, WorkerError> {
        let mut report = PassReport {
            leader: self.hold_lease(memory).await?,
            ..PassReport::default()
        };
        if !report.leader {
            report.lease_holder = lease::holder(&self.store).await?;
        }
        let mut conn = self.store.conn().await?;
        let conn = &mut *conn;
        if !report.leader {
            memory.recovery_due = true;
            report.in_flight = crate::store::queue::in_flight(conn).await?.total;
            return Ok(report);
        }
        let mut skipped = Skipped::default();
        if std::mem::take(&mut memory.recovery_due) {
            report.recovered = recover::adopt_or_requeue(self, conn, &mut skipped).await?;
        }
        let full = self.full_pass_due(conn, memory).await?;
        if full {
            report.enforced =
                enforce::follow_desired_state(self, conn, &mut skipped, &mut report.warnings)
                    .await?;
            memory.last_full = Some(Instant::now());
        }
        let observed = ingest::observe(self, conn).await?;
        report.in_flight = observed.still_active();
        report.unreachable = observed.unreachable().clone();
        let checking = std::mem::take(&mut memory.awaiting_checks);
        if !full && !report.changed() && observed.len() == 0 && checking.is_empty() {
            report.warnings.extend(skipped.warnings());
            return Ok(report);
        }
        let checks = rollup::run_checks(conn, &checking).await?;
        let mut tx = self.store.begin_on(conn).await?;
        let ingested = ingest::record(&mut tx, &observed, &mut skipped).await?;
        report.observed = ingested.observed;
        report.retried = ingested.retried;
        let rolled = rollup::roll_up(&mut tx, &checks, &mut skipped).await?;
        report.rolled_up = rolled.changed;
        memory.awaiting_checks = rolled.awaiting_checks;
        let children_of = (!full).then_some(rolled.succeeded.as_slice());
        report.released = rollup::release_successors(&mut tx, children_of, &mut skipped).await?;
        let split = plan::split_ready(self, &mut tx, &mut skipped).await?;
        report.split = split.jobs;
        if split.failed > 0 {
            report.rolled_up += rollup::roll_up(&mut tx, &checks, &mut skipped)
                .await?
                .changed;
        }
        crate::store::commit(tx).await?;
        let board = &mut memory.check_board;
        let submitted = submit::submit(self, conn, board, &mut skipped).await?;
        report.submitted = submitted.jobs;
        report.in_flight = submitted.in_flight;
        report.held_back = submitted.held_back;
        memory.retry_due = !submitted.warnings.is_empty();
        report.warnings.extend(submitted.warnings);
        report.warnings.extend(skipped.warnings());
        Ok(report)
    }

    /// Takes the lease, or renews it when a quarter of its time has passed.
    async fn hold_lease(&self, memory: &mut Memory) -> Result<bool, WorkerError> {
        let ttl = self.config.lease_ttl;
        if memory
            .lease_renewed
            .is_some_and(|at| at.elapsed() < ttl / 4)
        {
            return Ok(true);
        }
        let held = lease::acquire(&self.store, &self.holder, ttl.as_millis() as i64).await?;
        memory.lease_renewed = held.then(Instant::now);
        Ok(held)
    }

    /// True when this pass must do everything: the first, after a refused
    /// submission, after a management action, or when the last full pass is old.
    async fn full_pass_due(
        &self,
        conn: &mut crate::store::Conn,
        memory: &mut Memory,
    ) -> Result<bool, WorkerError> {
        let audit = crate::store::audit::latest_id(conn).await?;
        let acted = memory.last_audit.replace(audit) != Some(audit);
        let stale = memory
            .last_full
            .is_none_or(|at| at.elapsed() >= FULL_PASS_EVERY);
        Ok(acted || stale || memory.retry_due)
    }

    /// Runs passes until nothing is in flight and nothing is left to do (`--batch`).
    /// Without the lease it waits for the holder to finish. `on_pass` sees every report.
    /// While the database is unreachable (a restart) it retries, backing off.
    pub async fn run_until_idle(
        &self,
        mut on_pass: impl FnMut(&PassReport),
    ) -> Result<PassReport, WorkerError> {
        let mut outage: Option<Outage> = None;
        loop {
            let report = match self.pass().await {
                Ok(report) => report,
                Err(e) if e.is_connection() => {
                    outage
                        .get_or_insert_with(|| Outage::began(&e, self.last_pass_start()))
                        .back_off()
                        .await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(outage) = outage.take() {
                outage.ended();
            }
            on_pass(&report);
            if report.idle() {
                self.release_lease().await?;
                return Ok(report);
            }
            self.pace(&report).await;
        }
    }

    /// When the last pass began.
    fn last_pass_start(&self) -> Instant {
        self.last_pass
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    /// Waits before the next pass: for a change when `report` found nothing
    /// to do, and in any case until [`WorkerConfig::min_pass_interval`] after
    /// the last pass began.
    pub async fn pace(&self, report: &PassReport) {
        if !report.changed() {
            self.wait_for_change().await;
        }
        let (began, took) = *self
            .last_pass
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let gap = self.config.min_pass_interval.max(took);
        tokio::time::sleep_until((began + gap).into()).await;
    }

    /// Waits until a batch system reports a change (or its poll interval passes).
    pub async fn wait_for_change(&self) {
        let waits: Vec<_> = self.backends.values().map(|b| b.changed()).collect();
        if waits.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        } else {
            futures::future::select_all(waits).await;
        }
    }

    /// Gives up the lease (on shutdown).
    pub async fn release_lease(&self) -> Result<(), WorkerError> {
        self.memory.lock().await.lease_renewed = None;
        lease::release(&self.store, &self.holder).await?;
        Ok(())
    }

    /// The logs of a batch job, from the backend that ran it (for the console).
    pub async fn logs(
        &self,
        backend: &str,
        batch_id: &str,
    ) -> Result<crate::batch::LogBundle, WorkerError> {
        let system = self.backend(backend).ok_or_else(|| BatchError::Failed {
            system: backend.to_string(),
            message: "not configured in this worker".into(),
        })?;
        Ok(system
            .fetch_logs(&crate::batch::BatchJobId(batch_id.to_string()))
            .await?)
    }

    fn backend(&self, name: &str) -> Option<&Arc<dyn BatchSystem>> {
        self.backends.get(name)
    }

    /// True when this worker can ask about `job` the instance of its batch
    /// system that holds it: the worker has that backend and it is the same
    /// instance (jobs recorded before instances were, read as its own).
    fn reaches(&self, job: &impl HeldBy) -> bool {
        self.instance_of(job.backend())
            .is_some_and(|ours| job.instance().is_none_or(|instance| instance == ours))
    }

    /// The instance of this worker's backend `name`, if it has that backend.
    fn instance_of(&self, name: &str) -> Option<&str> {
        self.instances.get(name).map(String::as_str)
    }
}
