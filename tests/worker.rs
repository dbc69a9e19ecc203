//! The worker end to end on the local backend with real processes (issue 3):
//! the example campaign, injected failures with retries and resubmission,
//! crashes at every submission point, throttles and two competing workers.

mod common;

use common::{
    all_dbs, eventually_stopped, file_and_approve, gen_request, local_worker, mc_request,
    pass_until, pid_of, states, stopped, wait_for_jobs, world, TestDb,
};
use prodops::model::hold::HoldScope;
use prodops::model::ids::{EntityKind, EntityRef, SubtaskId};
use prodops::store::Store;
use prodops::worker::{Throttles, Worker};
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

async fn run_to_idle(worker: &Worker) {
    tokio::time::timeout(Duration::from_secs(180), worker.run_until_idle(|_| {}))
        .await
        .expect("the worker finishes within 3 minutes")
        .unwrap();
}

async fn scalar(store: &Store, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0)
}

/// Every entity's history is a chain: each row starts where the previous ended,
/// and the last ends in the entity's current state (M8).
async fn assert_history_chains(store: &Store, label: &str) {
    for (kind, table) in [
        (EntityKind::Campaign, "campaigns"),
        (EntityKind::Task, "tasks"),
        (EntityKind::Subtask, "subtasks"),
        (EntityKind::Batch, "batches"),
        (EntityKind::Job, "jobs"),
    ] {
        let rows = sqlx::query(&format!("SELECT id, state FROM {table}"))
            .fetch_all(store.pool())
            .await
            .unwrap();
        for r in rows {
            let id: i64 = r.get(0);
            let state: String = r.get(1);
            let h = prodops::store::states::history_of(store.pool(), EntityRef { kind, id })
                .await
                .unwrap();
            assert!(!h.is_empty(), "{label}: {kind:?} {id} has no history");
            assert_eq!(h[0].old, None);
            for pair in h.windows(2) {
                assert_eq!(
                    pair[1].old.as_deref(),
                    Some(pair[0].new.as_str()),
                    "{label}: broken chain for {kind:?} {id}"
                );
            }
            assert_eq!(
                h.last().unwrap().new,
                state,
                "{label}: {kind:?} {id} history ends elsewhere"
            );
            assert!(h.iter().all(|e| !e.reason.is_empty() && !e.user.is_empty()));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m10_the_example_mc_campaign_runs_to_succeeded_with_stages_seeds_and_history() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let work = tempfile::tempdir().unwrap();
        let id = file_and_approve(&w, &mc_request()).await;
        let worker = local_worker(&w.store, work.path(), 4, Throttles::default()).await;
        run_to_idle(&worker).await;
        let c = w.ed.campaign(id).await.unwrap();
        assert_eq!(c.request.state, "succeeded", "{}: {c:#?}", db.label);
        assert_eq!(c.progress.percent(), 100.0);
        assert_eq!(
            (
                c.progress.unit.as_str(),
                c.progress.done,
                c.progress.planned
            ),
            ("events", 3000, 3000),
            "1000 events through gen, sim and reco"
        );
        let jobs = scalar(&w.store, "SELECT COUNT(*) FROM jobs").await;
        assert_eq!(
            jobs,
            10 + 10 + 5,
            "gen 10 jobs, sim 1 file per job, reco 2 files per job"
        );
        let thin = scalar(&w.store, "SELECT COUNT(*) FROM jobs j WHERE (SELECT COUNT(*) FROM job_stages s WHERE s.job_id = j.id AND s.cpu_ms IS NOT NULL AND s.wall_ms IS NOT NULL AND s.max_rss_kb IS NOT NULL) < 3").await;
        assert_eq!(
            thin, 0,
            "{}: every job has at least 3 measured stages",
            db.label
        );
        let gen = w.ed.jobs(id, &[], 100, 0).await.unwrap();
        let mut seeds: Vec<i64> = gen
            .iter()
            .filter_map(|j| j.plan.get("seed").and_then(|s| s.as_i64()))
            .collect();
        seeds.sort();
        assert_eq!(
            seeds,
            (20261122..20261132).collect::<Vec<_>>(),
            "one recorded seed per gen job"
        );
        assert!(
            gen.iter().all(|j| j.site.as_deref() == Some("local")
                && j.batch_job_id.is_some()
                && j.node.is_some()),
            "M9"
        );
        let reco = scalar(&w.store, "SELECT COUNT(*) FROM files f JOIN subtasks s ON s.id = f.subtask_id WHERE s.name = 'reco'").await;
        assert_eq!(
            reco, 10,
            "X11: reco outputs are catalogued with their subtask"
        );
        assert_history_chains(&w.store, db.label).await;
        w.store.close().await;
    }
}

/// A request whose gen jobs fail on chosen seeds until `fixed` exists: exit 3,
/// SIGKILL, and a memory hog; every launch is appended to `launches`.
fn faulty_request(dir: &Path) -> PathBuf {
    let script = dir.join("gen.sh");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
set -eu
echo "$PRODOPS_SEED" >> {dir}/launches
if [ ! -e {dir}/fixed ]; then
  case "$PRODOPS_SEED" in
    101) echo "bad input for seed 101" >&2; exit 3 ;;
    102) kill -9 $$ ;;
    103) python3 -c "b = bytearray(400 * 1024 * 1024); import time; time.sleep(20)" ;;
  esac
fi
echo "seed $PRODOPS_SEED" > "$PRODOPS_OUTPUT_DIR/gen_$PRODOPS_SEED.txt"
echo "PRODOPS_EVENTS $PRODOPS_EVENTS"
"#,
            dir = dir.display()
        ),
    )
    .unwrap();
    let copy = dir.join("copy.sh");
    std::fs::write(&copy, "#!/bin/sh\nset -eu\nfor f in $PRODOPS_INPUT_FILES; do cp \"$f\" \"$PRODOPS_OUTPUT_DIR/\"; done\n").unwrap();
    for p in [&script, &copy] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let request = dir.join("faulty.toml");
    std::fs::write(
        &request,
        r#"experiment = "nova"
kind = "mc"
title = "faulty"
[defaults]
release = "v1"
max_attempts = 2
resources = { memory_mb = 100, wall_hours = 1 }
[[stage]]
name = "gen"
script = "gen.sh"
events = 60
events_per_job = 10
seed_base = 100
[[stage]]
name = "sim"
after = ["gen"]
script = "copy.sh"
files_per_job = 1
"#,
    )
    .unwrap();
    request
}

fn launches(dir: &Path) -> std::collections::BTreeMap<i64, usize> {
    let mut out = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("launches"))
        .unwrap_or_default()
        .lines()
    {
        *out.entry(line.trim().parse::<i64>().unwrap()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3_failures_are_retried_to_the_limit_then_resubmit_reruns_only_them() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let id = file_and_approve(&w, &faulty_request(dir.path())).await;
        let worker = local_worker(&w.store, dir.path(), 4, Throttles::default()).await;
        run_to_idle(&worker).await;

        let c = w.ed.campaign(id).await.unwrap();
        assert_eq!(c.request.state, "failed", "{}", db.label);
        let gen = &c.tasks[0].subtasks[0];
        assert_eq!((gen.name.as_str(), gen.state.as_str()), ("gen", "failed"));
        assert_eq!(c.tasks[0].subtasks[1].state, "waiting", "sim never ran");
        let failed = w.ed.jobs(id, &["failed".into()], 100, 0).await.unwrap();
        assert_eq!(failed.len(), 6, "{}: 3 bad jobs × 2 attempts", db.label);
        let by_seed = |seed: i64| {
            failed
                .iter()
                .filter(|j| j.plan["seed"] == seed)
                .collect::<Vec<_>>()
        };
        assert!(by_seed(101)
            .iter()
            .all(|j| j.exit_code == Some(3) && j.failure.as_deref() == Some("exit code 3")));
        assert!(
            by_seed(102).iter().all(|j| j.signal == Some(9)),
            "{:?}",
            by_seed(102)
        );
        assert!(
            by_seed(103)
                .iter()
                .all(|j| j.oom && j.failure.as_deref() == Some("out of memory")),
            "{:?}",
            by_seed(103)
        );
        assert!(
            by_seed(101)
                .iter()
                .any(|j| j.attempt == 2 && j.retry_of.is_some()),
            "retries link to the original"
        );
        let first = launches(dir.path());
        assert_eq!(
            first.values().copied().collect::<Vec<_>>(),
            vec![1, 2, 2, 2, 1, 1],
            "{first:?}"
        );

        std::fs::write(dir.path().join("fixed"), "").unwrap();
        let gen_id: SubtaskId = gen.id.parse().unwrap();
        assert!(
            w.ed.resubmit(gen_id.entity(), "")
                .await
                .unwrap_err()
                .is_forbidden(),
            "only operators resubmit"
        );
        let again = w
            .root
            .resubmit(gen_id.entity(), "inputs fixed")
            .await
            .unwrap();
        assert_eq!(again.jobs.len(), 3, "only the failed jobs get new attempts");
        run_to_idle(&worker).await;

        let c = w.ed.campaign(id).await.unwrap();
        assert_eq!(c.request.state, "succeeded", "{}: {c:#?}", db.label);
        let after = launches(dir.path());
        assert_eq!(
            after.values().copied().collect::<Vec<_>>(),
            vec![1, 3, 3, 3, 1, 1],
            "the good jobs were not rerun: {after:?}"
        );
        assert_history_chains(&w.store, db.label).await;
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x5_never_more_jobs_in_flight_than_the_cap() {
    let db = common::sqlite();
    let w = world(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sleep.sh");
    std::fs::write(&script, "#!/bin/sh\nsleep 0.3\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let request = dir.path().join("r.toml");
    std::fs::write(&request, "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"t\"\n[defaults]\nrelease = \"v1\"\n[[stage]]\nname = \"gen\"\nscript = \"sleep.sh\"\nevents = 12\nevents_per_job = 1\nseed_base = 1\n").unwrap();
    let id = file_and_approve(&w, &request).await;
    let throttles = Throttles {
        per_experiment: Some(3),
        ..Throttles::default()
    };
    let worker = local_worker(&w.store, dir.path(), 8, throttles).await;
    run_to_idle(&worker).await;
    assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "succeeded");
    let spans: Vec<(i64, i64)> = sqlx::query("SELECT started_at, ended_at FROM jobs")
        .fetch_all(w.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<Option<i64>, _>(0).unwrap(),
                r.get::<Option<i64>, _>(1).unwrap(),
            )
        })
        .collect();
    assert_eq!(spans.len(), 12);
    let most = spans
        .iter()
        .map(|(start, _)| {
            spans
                .iter()
                .filter(|(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 3, "{most} jobs ran at once with a cap of 3");
    assert!(
        most >= 2,
        "the cap, not the scheduler, limited parallelism ({most})"
    );
}

fn batch(db: &TestDb, work: &Path, failpoint: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prodops"));
    cmd.env("PRODOPS_DB", &db.url)
        .args(["--batch", "--slots", "4", "--work-dir"])
        .arg(work);
    match failpoint {
        Some(f) => cmd.env("PRODOPS_FAILPOINT", f),
        None => cmd.env_remove("PRODOPS_FAILPOINT"),
    };
    cmd.output().unwrap()
}

fn launched(work: &Path) -> Vec<String> {
    prodops::batch::local::launches(&work.join("local"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_worker_killed_at_any_submission_point_restarts_without_losing_or_duplicating_jobs() {
    let points = [
        "submit:after-intent",
        "submit:after-backend",
        "submit:after-record",
    ];
    for db in all_dbs().await {
        for point in points {
            for nth in [1, 2, 3] {
                let w = world(&db).await;
                let work = tempfile::tempdir().unwrap();
                let id = file_and_approve(&w, &mc_request()).await;
                let crashed = batch(&db, work.path(), Some(&format!("{point}@{nth}")));
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(
                    crashed.status.signal(),
                    Some(9),
                    "{}: {point}@{nth} did not crash: {}",
                    db.label,
                    String::from_utf8_lossy(&crashed.stderr)
                );
                let resumed = batch(&db, work.path(), None);
                assert!(
                    resumed.status.success(),
                    "{}",
                    String::from_utf8_lossy(&resumed.stderr)
                );
                let c = w.ed.campaign(id).await.unwrap();
                assert_eq!(c.request.state, "succeeded", "{} {point}@{nth}", db.label);
                let jobs = scalar(&w.store, "SELECT COUNT(*) FROM jobs").await;
                let mut started = launched(work.path());
                assert_eq!(
                    started.len() as i64,
                    jobs,
                    "{} {point}@{nth}: batch jobs started = jobs",
                    db.label
                );
                started.sort();
                started.dedup();
                assert_eq!(started.len() as i64, jobs, "no job started twice");
                let unrecorded = scalar(
                    &w.store,
                    "SELECT COUNT(*) FROM jobs WHERE state <> 'succeeded' OR batch_job_id IS NULL",
                )
                .await;
                assert_eq!(unrecorded, 0, "every job ends recorded");
                w.store.close().await;
                drop(w);
                reset(&db).await;
            }
        }
    }
}

/// Empties a test database between iterations (a fresh schema per iteration would do too).
async fn reset(db: &TestDb) {
    let store = Store::open(&db.url).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    for t in [
        "job_inputs",
        "job_stages",
        "files",
        "jobs",
        "batches",
        "subtask_deps",
        "subtasks",
        "tasks",
        "campaigns",
        "grants",
        "users",
        "experiments",
        "history",
        "audit",
        "leases",
    ] {
        sqlx::query(&format!("DELETE FROM {t}"))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_two_batch_workers_started_together_never_submit_a_job_twice() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let work = tempfile::tempdir().unwrap();
        let id = file_and_approve(&w, &mc_request()).await;
        let spawn = || {
            Command::new(env!("CARGO_BIN_EXE_prodops"))
                .env("PRODOPS_DB", &db.url)
                .args(["--batch", "--slots", "4", "--work-dir"])
                .arg(work.path())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(
            a.status.success() && b.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&a.stderr),
            String::from_utf8_lossy(&b.stderr)
        );
        assert_eq!(
            w.ed.campaign(id).await.unwrap().request.state,
            "succeeded",
            "{}",
            db.label
        );
        let jobs = scalar(&w.store, "SELECT COUNT(*) FROM jobs").await;
        let mut started = launched(work.path());
        let total = started.len();
        started.sort();
        started.dedup();
        assert_eq!(
            (total as i64, started.len() as i64),
            (jobs, jobs),
            "{}: each job started exactly once",
            db.label
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_hold_release_and_abort_of_running_work_reach_the_batch_jobs() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        common::script(dir.path(), "slow.sh", "sleep 30");
        let request = dir.path().join("r.toml");
        std::fs::write(&request, "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"t\"\n[defaults]\nrelease = \"v1\"\n[[stage]]\nname = \"gen\"\nscript = \"slow.sh\"\nevents = 2\nevents_per_job = 1\nseed_base = 1\n").unwrap();
        let id = file_and_approve(&w, &request).await;
        let worker = local_worker(&w.store, dir.path(), 4, Throttles::default()).await;
        let running = wait_for_jobs(&worker, &w, id, "running").await;
        w.root
            .hold_with_scope(id, HoldScope::Running, "site downtime")
            .await
            .unwrap();
        wait_for_jobs(&worker, &w, id, "held").await;
        let pid = pid_of(dir.path(), &running[0].batch_job_id.clone().unwrap());
        assert!(
            eventually_stopped(pid).await,
            "{}: a held running job is stopped",
            db.label
        );
        w.root.release(id, "").await.unwrap();
        wait_for_jobs(&worker, &w, id, "running").await;
        w.root.cancel(id, "wrong generator").await.unwrap();
        wait_for_jobs(&worker, &w, id, "removed").await;
        assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "cancelled");
        w.store.close().await;
    }
}

/// Waits until the local executor under `work` reports every one of `jobs`
/// ended, without a worker pass seeing it (a second handle on its logs).
async fn until_ended_in_executor(work: &Path, jobs: &[prodops::ops::jobs::JobView]) {
    use prodops::batch::{BatchJobId, BatchSystem, ObservedState};
    let probe = prodops::batch::local::LocalBatch::open(work.join("local"), 4, common::runner())
        .await
        .unwrap();
    let ids: Vec<BatchJobId> = jobs
        .iter()
        .map(|j| BatchJobId(j.batch_job_id.clone().unwrap()))
        .collect();
    for _ in 0..200 {
        let seen = probe.poll(&ids).await.unwrap();
        if seen.iter().all(|o| o.state == ObservedState::Succeeded) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the jobs never ended in the executor");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t2_s3_a_campaign_held_while_its_jobs_end_records_their_real_ends_and_other_campaigns_run_on(
) {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        common::script(
            dir.path(),
            "wait.sh",
            &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
        );
        common::script(dir.path(), "quick.sh", "exit 0");
        let held = file_and_approve(&w, &gen_request(dir.path(), "r1.toml", "wait.sh", 2)).await;
        let worker = local_worker(&w.store, dir.path(), 4, Throttles::default()).await;
        let running = wait_for_jobs(&worker, &w, held, "running").await;
        std::fs::write(&go, "").unwrap();
        until_ended_in_executor(dir.path(), &running).await;
        w.root
            .hold_with_scope(held, HoldScope::Running, "site downtime")
            .await
            .unwrap();
        let other = file_and_approve(&w, &gen_request(dir.path(), "r2.toml", "quick.sh", 2)).await;
        let mut warnings = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(120),
            worker.run_until_idle(|r| warnings.extend(r.warnings.clone())),
        )
        .await
        .expect("the worker finishes")
        .unwrap_or_else(|e| panic!("{}: a pass failed: {e}", db.label));
        assert!(warnings.is_empty(), "{}: {warnings:?}", db.label);
        assert_eq!(
            w.ed.campaign(other).await.unwrap().request.state,
            "succeeded",
            "{}: the other campaign ran on",
            db.label
        );
        for job in w.ed.jobs(held, &[], 10, 0).await.unwrap() {
            assert_eq!(
                job.state, "succeeded",
                "{}: the real end: {job:?}",
                db.label
            );
            let id: prodops::model::ids::JobId = job.id.parse().unwrap();
            let trail: Vec<String> =
                w.ed.history(id.entity())
                    .await
                    .unwrap()
                    .iter()
                    .map(|h| h.new.clone())
                    .collect();
            assert_eq!(
                trail,
                [
                    "created",
                    "submitting",
                    "queued",
                    "running",
                    "held",
                    "succeeded"
                ],
                "{}",
                db.label
            );
        }
        assert_eq!(w.ed.campaign(held).await.unwrap().request.state, "held");
        w.root.release(held, "downtime over").await.unwrap();
        run_to_idle(&worker).await;
        assert_eq!(
            w.ed.campaign(held).await.unwrap().request.state,
            "succeeded",
            "{}",
            db.label
        );
        assert_history_chains(&w.store, db.label).await;
        w.store.close().await;
    }
}

/// The local backend, with another writer that moves the first job it sees
/// succeed to `removed` just before the worker records the end: a move the
/// table then refuses, for one job among others.
struct Meddler {
    inner: std::sync::Arc<prodops::batch::local::LocalBatch>,
    store: Store,
    victim: std::sync::Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl prodops::batch::BatchSystem for Meddler {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn default_site(&self) -> &str {
        self.inner.default_site()
    }
    async fn submit(
        &self,
        group: &prodops::batch::JobGroup,
    ) -> Result<Vec<prodops::batch::Submitted>, prodops::batch::BatchError> {
        self.inner.submit(group).await
    }
    async fn find(
        &self,
        keys: &[prodops::batch::JobKey],
    ) -> Result<Vec<prodops::batch::Submitted>, prodops::batch::BatchError> {
        self.inner.find(keys).await
    }
    async fn poll(
        &self,
        ids: &[prodops::batch::BatchJobId],
    ) -> Result<Vec<prodops::batch::Observed>, prodops::batch::BatchError> {
        let seen = self.inner.poll(ids).await?;
        let ended = seen
            .iter()
            .find(|o| o.state == prodops::batch::ObservedState::Succeeded);
        let first = ended.is_some() && self.victim.lock().unwrap().is_none();
        if let (true, Some(o)) = (first, ended) {
            *self.victim.lock().unwrap() = Some(o.batch_id.0.clone());
            sqlx::query("UPDATE jobs SET state = 'removed' WHERE batch_job_id = $1")
                .bind(&o.batch_id.0)
                .execute(self.store.pool())
                .await
                .unwrap();
        }
        Ok(seen)
    }
    async fn cancel(
        &self,
        ids: &[prodops::batch::BatchJobId],
    ) -> Result<(), prodops::batch::BatchError> {
        self.inner.cancel(ids).await
    }
    async fn hold(
        &self,
        ids: &[prodops::batch::BatchJobId],
    ) -> Result<(), prodops::batch::BatchError> {
        self.inner.hold(ids).await
    }
    async fn release(
        &self,
        ids: &[prodops::batch::BatchJobId],
    ) -> Result<(), prodops::batch::BatchError> {
        self.inner.release(ids).await
    }
    async fn fetch_logs(
        &self,
        id: &prodops::batch::BatchJobId,
    ) -> Result<prodops::batch::LogBundle, prodops::batch::BatchError> {
        self.inner.fetch_logs(id).await
    }
    async fn fetch_records(
        &self,
        ids: &[prodops::batch::BatchJobId],
    ) -> Result<Vec<prodops::batch::LogBundle>, prodops::batch::BatchError> {
        self.inner.fetch_records(ids).await
    }
    async fn queue_depth(
        &self,
        of: &prodops::model::check::QueueOf,
    ) -> Result<prodops::batch::QueueDepth, prodops::batch::BatchError> {
        self.inner.queue_depth(of).await
    }
    async fn changed(&self) {
        self.inner.changed().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m7_a_job_whose_end_the_table_refuses_is_reported_and_skipped_while_the_others_are_recorded(
) {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        common::script(dir.path(), "quick.sh", "exit 0");
        let id = file_and_approve(&w, &gen_request(dir.path(), "r.toml", "quick.sh", 3)).await;
        let local =
            prodops::batch::local::LocalBatch::open(dir.path().join("local"), 4, common::runner())
                .await
                .unwrap();
        let meddler = std::sync::Arc::new(Meddler {
            inner: local,
            store: w.store.clone(),
            victim: std::sync::Mutex::new(None),
        });
        let config = prodops::worker::WorkerConfig {
            throttles: Throttles::default(),
            output_root: dir.path().join("outputs"),
            lease_ttl: Duration::from_secs(30),
            min_pass_interval: prodops::worker::MIN_PASS_INTERVAL,
        };
        let worker = Worker::new(w.store.clone(), vec![meddler.clone()], config);
        let mut warnings = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(120),
            worker.run_until_idle(|r| warnings.extend(r.warnings.clone())),
        )
        .await
        .expect("the worker finishes")
        .unwrap_or_else(|e| panic!("{}: a pass failed: {e}", db.label));
        let victim = meddler.victim.lock().unwrap().clone().unwrap();
        let jobs = w.ed.jobs(id, &[], 10, 0).await.unwrap();
        let (stuck, others): (Vec<_>, Vec<_>) = jobs
            .iter()
            .partition(|j| j.batch_job_id.as_deref() == Some(victim.as_str()));
        assert_eq!(
            warnings,
            [format!(
                "{} skipped (not moved to `succeeded`): a job cannot go from `removed` to `succeeded` (it is final)",
                stuck[0].id
            )],
            "{}",
            db.label
        );
        assert_eq!(
            (stuck[0].state.as_str(), stuck[0].exit_code, stuck[0].events),
            ("removed", None, None),
            "{}: nothing of the refused end was written",
            db.label
        );
        assert_eq!(others.len(), 2, "{}: no retry of the skipped job", db.label);
        assert!(
            others.iter().all(|j| j.state == "succeeded"),
            "{}: {others:?}",
            db.label
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_a_default_hold_holds_queued_jobs_and_lets_running_ones_end() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let go = dir.path().join("go");
        common::script(
            dir.path(),
            "wait.sh",
            &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
        );
        let id = file_and_approve(&w, &gen_request(dir.path(), "r.toml", "wait.sh", 3)).await;
        let worker = local_worker(&w.store, dir.path(), 1, Throttles::default()).await;
        let jobs = pass_until(&worker, &w, id, |j| {
            states(j) == ["running", "queued", "queued"]
        })
        .await;
        w.root.hold(id, "site downtime").await.unwrap();
        pass_until(&worker, &w, id, |j| {
            states(j) == ["running", "held", "held"]
        })
        .await;
        let pid = pid_of(dir.path(), jobs[0].batch_job_id.as_deref().unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!stopped(pid), "{}: the running job runs on", db.label);
        std::fs::write(&go, "").unwrap();
        pass_until(&worker, &w, id, |j| {
            states(j) == ["succeeded", "held", "held"]
        })
        .await;
        assert_eq!(
            launched(dir.path()).len(),
            1,
            "{}: the held queued jobs never started",
            db.label
        );
        w.root.release(id, "downtime over").await.unwrap();
        run_to_idle(&worker).await;
        assert_eq!(
            w.ed.campaign(id).await.unwrap().request.state,
            "succeeded",
            "{}",
            db.label
        );
        assert_history_chains(&w.store, db.label).await;
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_watching_worker_names_the_lease_holder_by_host_and_pid() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let first = local_worker(&w.store, dir.path(), 1, Throttles::default()).await;
        let second = local_worker(&w.store, dir.path(), 1, Throttles::default()).await;
        let leading = first.pass().await.unwrap();
        assert!(
            leading.leader && leading.lease_holder.is_none(),
            "{}",
            db.label
        );
        let watching = second.pass().await.unwrap();
        assert!(!watching.leader, "{}", db.label);
        let holder = watching.lease_holder.clone().unwrap();
        assert_eq!(
            (holder.host, holder.pid),
            (prodops::host::hostname(), std::process::id()),
            "{}: the holder is this test process",
            db.label
        );
        first.release_lease().await.unwrap();
        let taken = second.pass().await.unwrap();
        assert!(taken.leader && taken.lease_holder.is_none(), "{}", db.label);
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_every_job_names_the_request_stage_it_runs_in_listings_and_pages() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let work = tempfile::tempdir().unwrap();
        let id = file_and_approve(&w, &mc_request()).await;
        let worker = local_worker(&w.store, work.path(), 4, Throttles::default()).await;
        run_to_idle(&worker).await;
        let count = |jobs: &[prodops::ops::jobs::JobView], step: &str| {
            jobs.iter().filter(|j| j.step == step).count()
        };
        let listed = w.ed.jobs(id, &[], 100, 0).await.unwrap();
        assert_eq!(
            (
                count(&listed, "gen"),
                count(&listed, "sim"),
                count(&listed, "reco")
            ),
            (10, 10, 5),
            "{}",
            db.label
        );
        let query = prodops::store::overview::JobQuery {
            campaign: Some(id.0),
            sort: prodops::store::overview::JobSort::Cpu,
            descending: true,
            limit: 100,
            ..Default::default()
        };
        let (page, total) = w.ed.jobs_page(&query).await.unwrap();
        assert_eq!((page.len(), total), (25, 25));
        assert_eq!(
            (
                count(&page, "gen"),
                count(&page, "sim"),
                count(&page, "reco")
            ),
            (10, 10, 5),
            "{}: the console's sorted page names them too",
            db.label
        );
        let one = w.ed.job(listed[24].id.parse().unwrap()).await.unwrap();
        assert_eq!(one.job.step, "reco");
        assert_ne!(
            one.job.stage.as_deref(),
            Some("reco"),
            "step is not the job's own stage"
        );
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_jobs_of_a_backend_this_worker_lacks_wait_with_a_warning_instead_of_stopping_it() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        common::script(dir.path(), "quick.sh", "exit 0");
        let id = file_and_approve(&w, &gen_request(dir.path(), "r.toml", "quick.sh", 2)).await;
        let splitting = Throttles {
            per_pass: 0,
            ..Throttles::default()
        };
        let splitter = local_worker(&w.store, dir.path(), 1, splitting).await;
        splitter.pass().await.unwrap();
        splitter.release_lease().await.unwrap();
        let config = prodops::worker::WorkerConfig {
            throttles: Throttles::default(),
            output_root: dir.path().join("outputs"),
            lease_ttl: Duration::from_secs(30),
            min_pass_interval: prodops::worker::MIN_PASS_INTERVAL,
        };
        let without = Worker::new(w.store.clone(), Vec::new(), config);
        let report = without
            .pass()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", db.label));
        assert_eq!(
            report.warnings,
            ["2 jobs wait: backend `local` is not configured for this worker"],
            "{}",
            db.label
        );
        let jobs = w.ed.jobs(id, &[], 10, 0).await.unwrap();
        assert_eq!(states(&jobs), ["created", "created"], "{}", db.label);
        w.store.close().await;
    }
}
