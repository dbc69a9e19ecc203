//! A running job that its batch system puts back in the queue (HTCondor
//! after a failed reconnect, `024`, or an eviction) is shown queued, with
//! the batch system's words, until it runs again (issue 15, M3).
//!
//! The local executor never requeues a job and HTCondor cannot run here, so
//! the worker is given a batch system that reports what HTCondor's backend
//! reports for such a job, in turn: running, queued with its reason, running.

mod common;

use async_trait::async_trait;
use common::{all_dbs, file_and_approve, gen_request, world};
use prodops::batch::{
    BatchError, BatchJobId, BatchSystem, JobGroup, JobKey, LogBundle, Observed, ObservedState,
    Submitted,
};
use prodops::model::ids::JobId;
use prodops::worker::{Throttles, Worker, WorkerConfig};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const REQUEUED: &str = "disconnected, reconnect failed (Job disconnected too long): requeued";

/// Reports every job it was given as running, then (from the `requeue_at`th
/// poll) queued with [`REQUEUED`], then (from the `run_again_at`th) running.
struct Requeuing {
    polls: AtomicUsize,
    requeue_at: usize,
    run_again_at: usize,
}

#[async_trait]
impl BatchSystem for Requeuing {
    fn name(&self) -> &str {
        "local"
    }
    fn default_site(&self) -> &str {
        "local"
    }
    async fn submit(&self, group: &JobGroup) -> Result<Vec<Submitted>, BatchError> {
        Ok(group
            .jobs
            .iter()
            .map(|j| Submitted {
                key: j.key,
                batch_id: BatchJobId(format!("7.{}", j.key.job.0)),
            })
            .collect())
    }
    async fn find(&self, _: &[JobKey]) -> Result<Vec<Submitted>, BatchError> {
        Ok(Vec::new())
    }
    async fn poll(&self, ids: &[BatchJobId]) -> Result<Vec<Observed>, BatchError> {
        let n = self.polls.fetch_add(1, Ordering::SeqCst);
        Ok(ids
            .iter()
            .map(|id| {
                let mut seen = Observed::state(id.clone(), ObservedState::Running);
                if (self.requeue_at..self.run_again_at).contains(&n) {
                    seen.state = ObservedState::Queued;
                    seen.reason = Some(REQUEUED.into());
                }
                seen
            })
            .collect())
    }
    async fn cancel(&self, _: &[BatchJobId]) -> Result<(), BatchError> {
        Ok(())
    }
    async fn hold(&self, _: &[BatchJobId]) -> Result<(), BatchError> {
        Ok(())
    }
    async fn release(&self, _: &[BatchJobId]) -> Result<(), BatchError> {
        Ok(())
    }
    async fn fetch_logs(&self, _: &BatchJobId) -> Result<LogBundle, BatchError> {
        Ok(LogBundle::default())
    }
    async fn queue_depth(
        &self,
        _of: &prodops::model::check::QueueOf,
    ) -> Result<prodops::batch::QueueDepth, BatchError> {
        Ok(prodops::batch::QueueDepth {
            jobs: 0,
            whose: "jobs".into(),
        })
    }
    async fn changed(&self) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn m3_a_running_job_put_back_in_the_queue_shows_queued_with_the_reason_until_it_runs_again() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let ok = common::script(dir.path(), "ok.sh", "exit 0")
            .display()
            .to_string();
        let request = gen_request(dir.path(), "requeue.toml", &ok, 1);
        let id = file_and_approve(&w, &request).await;
        let backend = Arc::new(Requeuing {
            polls: AtomicUsize::new(0),
            requeue_at: 3,
            run_again_at: 6,
        });
        let worker = Worker::new(
            w.store.clone(),
            vec![backend.clone()],
            WorkerConfig {
                throttles: Throttles::default(),
                output_root: dir.path().join("outputs"),
                lease_ttl: Duration::from_secs(30),
                min_pass_interval: prodops::worker::MIN_PASS_INTERVAL,
            },
        );

        let mut seen = Vec::new();
        while backend.polls.load(Ordering::SeqCst) < 8 {
            worker.pass().await.unwrap();
            let state = w.ed.jobs(id, &[], 10, 0).await.unwrap()[0].state.clone();
            if seen.last() != Some(&state) {
                seen.push(state);
            }
        }
        assert_eq!(
            seen.iter()
                .skip_while(|s| *s != "running")
                .map(String::as_str)
                .collect::<Vec<_>>(),
            ["running", "queued", "running"],
            "{}: {seen:?}",
            db.label
        );
        let job: JobId = w.ed.jobs(id, &[], 10, 0).await.unwrap()[0]
            .id
            .parse()
            .unwrap();
        let history = common::job_history(&w, job).await;
        assert!(
            history.iter().any(|h| h.old.as_deref() == Some("running")
                && h.new == "queued"
                && h.reason == REQUEUED),
            "{}: {history:?}",
            db.label
        );
        worker.release_lease().await.unwrap();
    }
}
