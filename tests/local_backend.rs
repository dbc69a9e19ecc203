//! The `local` batch system (X10): jobs run by the local executor, at most
//! `slots` at once (X5), idempotently and crash-safely (S3): the executor
//! outlives workers, restarts after its own crash, and never starts a job twice.

mod common;

use prodops::batch::local::{default_runner, launches, script_pid, LocalBatch};
use prodops::batch::{
    BatchJobId, BatchSystem, JobGroup, JobKey, JobLaunch, Observed, ObservedState,
};
use prodops::model::ids::JobId;
use prodops::model::jobspec::JobRunSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Attempt 1 of job `job`.
fn key(job: i64) -> JobKey {
    JobKey {
        job: JobId(job),
        attempt: 1,
    }
}

/// A launch of job `job` running `script` with `sh -c` in its directory.
fn launch(job: i64, script: &str) -> JobLaunch {
    JobLaunch {
        key: key(job),
        spec: JobRunSpec {
            job,
            attempt: 1,
            executable: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: BTreeMap::new(),
            inputs: Vec::new(),
            tarball: None,
            script: None,
            output_dir: "/nonexistent".into(),
            memory_mb: 100,
            wall_seconds: 60,
        },
        resources: Default::default(),
        sites: Default::default(),
    }
}

/// A group of jobs numbered from 1, each running its script.
fn group(scripts: &[&str]) -> JobGroup {
    JobGroup {
        experiment: "test".into(),
        jobs: (1..)
            .zip(scripts)
            .map(|(job, script)| launch(job, script))
            .collect(),
    }
}

/// The batch id of job `job`.
fn id(job: i64) -> BatchJobId {
    BatchJobId(key(job).name())
}

/// Opens a backend on `root` with the built binary's executor.
async fn open(root: &Path, slots: usize) -> Arc<LocalBatch> {
    LocalBatch::open(root.to_path_buf(), slots, common::runner())
        .await
        .expect("open")
}

/// Polls `ids` (waking on `changed()`) until `done` holds for all, or panics after 20 s.
async fn wait_for(
    batch: &LocalBatch,
    ids: &[BatchJobId],
    done: impl Fn(&Observed) -> bool,
) -> Vec<Observed> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = batch.poll(ids).await.expect("poll");
        if seen.iter().all(&done) {
            return seen;
        }
        assert!(Instant::now() < deadline, "timed out waiting: {seen:?}");
        tokio::time::timeout(Duration::from_millis(200), batch.changed())
            .await
            .ok();
    }
}

/// Waits until all `ids` ended.
async fn wait_ended(batch: &LocalBatch, ids: &[BatchJobId]) -> Vec<Observed> {
    wait_for(batch, ids, |o| o.state.is_final()).await
}

/// Waits until `id` is in `state`.
async fn wait_state(batch: &LocalBatch, id: &BatchJobId, state: ObservedState) {
    wait_for(batch, std::slice::from_ref(id), |o| o.state == state).await;
}

/// Waits until `queue_depth()` is `depth`, or panics after 5 s.
async fn wait_depth(batch: &LocalBatch, depth: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while batch.queue_depth(&Default::default()).await.unwrap().jobs != depth {
        assert!(Instant::now() < deadline, "queue depth stays above {depth}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The job directory of `id`.
fn job_dir(root: &Path, id: &BatchJobId) -> PathBuf {
    root.join(&id.0)
}

/// The pid of the job's script, waiting until it is recorded.
async fn pid_of(root: &Path, id: &BatchJobId) -> i32 {
    for _ in 0..200 {
        if let Some(pid) = script_pid(root, &id.0) {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} never started a script")
}

/// The state letter of a process, `None` once it is gone.
fn process_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits until process `pid` is gone (or a zombie), or panics after 5 s.
async fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(process_state(pid), Some(state) if state != 'Z') {
        assert!(Instant::now() < deadline, "process {pid} still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pid of the executor running in `root`.
fn executor_pid(root: &Path) -> i32 {
    std::fs::read_to_string(root.join("executor.lock"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Lines in `file` of a job directory (0 when absent).
fn line_count(root: &Path, id: &BatchJobId, file: &str) -> usize {
    std::fs::read_to_string(job_dir(root, id).join(file))
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x10_submitted_jobs_run_and_report_success_failure_and_logs() {
    let root = tempfile::tempdir().unwrap();
    let batch = open(root.path(), 2).await;
    assert_eq!(batch.name(), "local");
    assert_eq!(batch.default_site(), "local");
    let submitted = batch
        .submit(&group(&["echo hello; echo oops >&2", "exit 3", "true"]))
        .await
        .unwrap();
    assert_eq!(submitted[0].batch_id, BatchJobId("prodops-j1-a1".into()));
    let ids: Vec<_> = submitted.iter().map(|s| s.batch_id.clone()).collect();

    let seen = wait_ended(&batch, &ids).await;
    assert_eq!(seen[0].state, ObservedState::Succeeded, "{:?}", seen[0]);
    assert_eq!(seen[0].exit_code, Some(0));
    assert_eq!(seen[0].site.as_deref(), Some("local"));
    assert!(seen[0].node.is_some());
    assert_eq!(seen[0].reason, None);
    assert_eq!(seen[1].state, ObservedState::Failed, "{:?}", seen[1]);
    assert_eq!(seen[1].exit_code, Some(3));
    assert_eq!(seen[1].reason.as_deref(), Some("exit code 3"));

    let logs = batch.fetch_logs(&ids[0]).await.unwrap();
    assert_eq!(logs.stdout, "hello\n");
    assert_eq!(logs.stderr, "oops\n");
    let stages: Vec<&str> = logs
        .stages
        .lines()
        .filter(|l| l.contains(r#""event":"end""#))
        .collect();
    assert_eq!(
        stages.len(),
        4,
        "stage-in, unpack, run, copy-out: {stages:?}"
    );
    assert!(logs.result.unwrap().contains(r#""exit_code":0"#));
    assert!(
        !job_dir(root.path(), &ids[2]).join("stdout.log").exists(),
        "a job that prints nothing leaves no log files"
    );
    wait_depth(&batch, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_logs_keeps_only_the_last_256_kib() {
    let root = tempfile::tempdir().unwrap();
    let batch = open(root.path(), 1).await;
    let ids = [id(1)];
    batch
        .submit(&group(&["head -c 400000 /dev/zero | tr '\\0' a; echo END"]))
        .await
        .unwrap();
    wait_ended(&batch, &ids).await;
    let logs = batch.fetch_logs(&ids[0]).await.unwrap();
    assert_eq!(logs.stdout.len(), 256 * 1024);
    assert!(logs.stdout.ends_with("aaaEND\n"));
    assert!(batch.fetch_logs(&id(99)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_a_script_that_cannot_start_fails_with_exit_127_and_says_why() {
    let root = tempfile::tempdir().unwrap();
    let batch = open(root.path(), 1).await;
    let mut jobs = group(&["true"]);
    jobs.jobs[0].spec.executable = "/nonexistent/script".into();
    batch.submit(&jobs).await.unwrap();
    let seen = wait_ended(&batch, &[id(1)]).await;
    assert_eq!(seen[0].state, ObservedState::Failed);
    assert_eq!(seen[0].exit_code, Some(127));
    let logs = batch.fetch_logs(&id(1)).await.unwrap();
    assert!(
        logs.stderr.contains("cannot start /nonexistent/script"),
        "{}",
        logs.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_that_cannot_start_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let runner = vec!["/nonexistent/prodops".into(), "local-executor".into()];
    let error = match LocalBatch::open(root.path().to_path_buf(), 1, runner).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened without an executor"),
    };
    assert!(
        error.contains("cannot start the local executor `/nonexistent/prodops local-executor`"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_submitting_the_same_key_twice_starts_one_job() {
    let root = tempfile::tempdir().unwrap();
    let batch = open(root.path(), 2).await;
    let jobs = group(&["sleep 0.2"]);
    let first = batch.submit(&jobs).await.unwrap();
    let second = batch.submit(&jobs).await.unwrap();
    assert_eq!(first, second);
    wait_ended(&batch, &[id(1)]).await;
    let third = batch.submit(&jobs).await.unwrap();
    assert_eq!(first, third);
    let found = batch.find(&[key(1), key(2)]).await.unwrap();
    assert_eq!(found, first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(launches(root.path()), ["prodops-j1-a1"]);
    assert_eq!(
        batch.poll(&[id(1)]).await.unwrap()[0].state,
        ObservedState::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x5_never_more_than_slots_jobs_run_at_once() {
    let root = tempfile::tempdir().unwrap();
    let batch = open(root.path(), 2).await;
    let script = "date +%s%N > started; sleep 0.3; date +%s%N > finished";
    let submitted = batch.submit(&group(&[script; 8])).await.unwrap();
    let ids: Vec<_> = submitted.into_iter().map(|s| s.batch_id).collect();
    assert!(batch.queue_depth(&Default::default()).await.unwrap().jobs <= 8);
    let seen = wait_ended(&batch, &ids).await;
    assert!(seen.iter().all(|o| o.state == ObservedState::Succeeded));

    let read = |id: &BatchJobId, file: &str| -> i128 {
        let text = std::fs::read_to_string(job_dir(root.path(), id).join(file)).unwrap();
        text.trim().parse().unwrap()
    };
    let mut edges: Vec<(i128, i32)> = ids
        .iter()
        .flat_map(|id| [(read(id, "started"), 1), (read(id, "finished"), -1)])
        .collect();
    // Ends sort before starts at the same instant.
    edges.sort();
    let mut running = 0;
    let mut most = 0;
    for (_, change) in edges {
        running += change;
        most = most.max(running);
    }
    assert!(most <= 2, "{most} jobs ran at once");
    assert_eq!(launches(root.path()).len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_a_running_job_and_a_queued_one_never_starts() {
    let root = tempfile::tempdir().unwrap();
    let batch = open(root.path(), 1).await;
    batch
        .submit(&group(&["sleep 30", "touch ran"]))
        .await
        .unwrap();
    wait_state(&batch, &id(1), ObservedState::Running).await;
    let pid = pid_of(root.path(), &id(1)).await;
    batch.cancel(&[id(1), id(2)]).await.unwrap();

    let seen = wait_ended(&batch, &[id(1), id(2)]).await;
    assert!(
        seen.iter().all(|o| o.state == ObservedState::Removed),
        "{seen:?}"
    );
    wait_gone(pid).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(launches(root.path()).len(), 1);
    assert!(!job_dir(root.path(), &id(2)).join("ran").exists());
    wait_depth(&batch, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_keeps_a_queued_job_from_starting_and_release_lets_it_run() {
    let root = tempfile::tempdir().unwrap();
    let batch = open(root.path(), 1).await;
    batch.submit(&group(&["sleep 0.5", "true"])).await.unwrap();
    batch.hold(&[id(2)]).await.unwrap();
    assert_eq!(
        batch.poll(&[id(2)]).await.unwrap()[0].state,
        ObservedState::Held
    );
    wait_state(&batch, &id(1), ObservedState::Succeeded).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        batch.poll(&[id(2)]).await.unwrap()[0].state,
        ObservedState::Held
    );
    assert_eq!(launches(root.path()).len(), 1);

    batch.release(&[id(2)]).await.unwrap();
    wait_state(&batch, &id(2), ObservedState::Succeeded).await;
    assert_eq!(launches(root.path()).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_suspends_a_running_job_and_release_resumes_it() {
    let root = tempfile::tempdir().unwrap();
    let batch = open(root.path(), 1).await;
    let script = "i=0; while [ $i -lt 15 ]; do echo $i >> ticks; i=$((i+1)); sleep 0.1; done";
    batch.submit(&group(&[script])).await.unwrap();
    let job = id(1);
    wait_for(&batch, std::slice::from_ref(&job), |_| {
        line_count(root.path(), &job, "ticks") >= 2
    })
    .await;

    batch.hold(std::slice::from_ref(&job)).await.unwrap();
    assert_eq!(
        batch.poll(std::slice::from_ref(&job)).await.unwrap()[0].state,
        ObservedState::Held
    );
    let pid = pid_of(root.path(), &job).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_state(pid) != Some('T') {
        assert!(Instant::now() < deadline, "the script is stopped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ticks = line_count(root.path(), &job, "ticks");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        line_count(root.path(), &job, "ticks"),
        ticks,
        "no progress while held"
    );

    batch.release(std::slice::from_ref(&job)).await.unwrap();
    assert_eq!(
        batch.poll(std::slice::from_ref(&job)).await.unwrap()[0].state,
        ObservedState::Running
    );
    wait_state(&batch, &job, ObservedState::Succeeded).await;
    assert_eq!(line_count(root.path(), &job, "ticks"), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_jobs_run_on_when_their_worker_goes_and_a_new_one_finds_them() {
    let root = tempfile::tempdir().unwrap();
    let ids = [id(1), id(2), id(3)];
    let first = open(root.path(), 1).await;
    first.submit(&group(&["sleep 0.5"; 3])).await.unwrap();
    wait_state(&first, &ids[0], ObservedState::Running).await;
    // The worker goes; the executor keeps the jobs going.
    drop(first);

    let second = open(root.path(), 1).await;
    let found = second.find(&[key(1), key(2), key(3)]).await.unwrap();
    assert_eq!(found.len(), 3, "every submission is found again");
    let seen = wait_ended(&second, &ids).await;
    assert!(
        seen.iter().all(|o| o.state == ObservedState::Succeeded),
        "{seen:?}"
    );
    assert_eq!(
        launches(root.path()),
        ["prodops-j1-a1", "prodops-j2-a1", "prodops-j3-a1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_killed_executor_is_restarted_runs_the_queue_and_never_starts_a_job_twice() {
    let root = tempfile::tempdir().unwrap();
    let batch = open(root.path(), 1).await;
    let ids = [id(1), id(2), id(3)];
    batch
        .submit(&group(&["sleep 0.6", "true", "true"]))
        .await
        .unwrap();
    let script = pid_of(root.path(), &ids[0]).await;
    let executor = executor_pid(root.path());
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(executor, libc::SIGKILL) };
    wait_gone(executor).await;

    let seen = wait_ended(&batch, &ids).await;
    assert_ne!(executor_pid(root.path()), executor, "a new executor runs");
    assert_eq!(seen[0].state, ObservedState::Failed, "{:?}", seen[0]);
    assert!(
        seen[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("how it ended is unknown"),
        "{:?}",
        seen[0]
    );
    assert!(
        process_state(script).is_none_or(|s| s == 'Z'),
        "the adopted script was followed to its end"
    );
    assert!(seen[1..]
        .iter()
        .all(|o| o.state == ObservedState::Succeeded));
    assert_eq!(
        launches(root.path()),
        ["prodops-j1-a1", "prodops-j2-a1", "prodops-j3-a1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_an_executor_killed_between_claim_and_start_reports_the_job_lost_not_run_twice() {
    let root = tempfile::tempdir().unwrap();
    let mut runner = vec![
        "env".to_string(),
        "PRODOPS_FAILPOINT=executor:after-claim@2".to_string(),
    ];
    runner.extend(common::runner());
    let batch = LocalBatch::open(root.path().to_path_buf(), 1, runner)
        .await
        .unwrap();
    let ids = [id(1), id(2), id(3)];
    batch.submit(&group(&["true"; 3])).await.unwrap();
    // Each executor dies at its second claim; the backend starts another.
    let seen = wait_ended(&batch, &ids).await;
    assert_eq!(seen[0].state, ObservedState::Succeeded, "{:?}", seen[0]);
    assert_eq!(
        seen[1].state,
        ObservedState::Failed,
        "claimed, never started"
    );
    assert!(seen[1].reason.as_deref().unwrap().contains("unknown"));
    assert_eq!(seen[2].state, ObservedState::Succeeded, "{:?}", seen[2]);
    assert_eq!(
        launches(root.path()),
        ["prodops-j1-a1", "prodops-j2-a1", "prodops-j3-a1"]
    );
    assert!(!job_dir(root.path(), &ids[1]).join("out").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_in_the_logs_is_skipped_and_unknown_ids_are_unknown() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("commands.jsonl"),
        "not json\n{\"op\":\"submit\",\"name\":\"../../etc\",\"spec\":{}}\n{\"op\":\"hold\"",
    )
    .unwrap();
    std::fs::write(root.path().join("events.jsonl"), "\u{0}\u{1}\n{\"ev\":").unwrap();
    let batch = open(root.path(), 1).await;
    let ids = [id(4), BatchJobId("../../etc".into()), BatchJobId("".into())];
    let seen = batch.poll(&ids).await.unwrap();
    assert!(seen.iter().all(|o| o.state == ObservedState::Unknown));
    assert_eq!(
        batch.queue_depth(&Default::default()).await.unwrap().jobs,
        0
    );
    batch.cancel(&ids).await.unwrap();
    batch.hold(&ids).await.unwrap();
    batch.release(&ids).await.unwrap();
    batch.submit(&group(&["true"])).await.unwrap();
    let seen = wait_ended(&batch, &[id(1)]).await;
    assert_eq!(
        seen[0].state,
        ObservedState::Succeeded,
        "the backend works past the garbage"
    );
    assert_eq!(launches(root.path()), ["prodops-j1-a1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_executor_exits_when_its_directory_is_removed() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("local");
    let batch = open(&dir, 1).await;
    let executor = executor_pid(&dir);
    drop(batch);
    std::fs::remove_dir_all(&dir).unwrap();
    wait_gone(executor).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_whose_directory_is_removed_ends_its_jobs_held_ones_too_and_exits() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("local");
    let batch = open(&dir, 2).await;
    let endless = "while true; do sleep 0.05; done";
    let submitted = batch.submit(&group(&[endless, endless])).await.unwrap();
    let ids: Vec<BatchJobId> = submitted.iter().map(|s| s.batch_id.clone()).collect();
    let running = [pid_of(&dir, &ids[0]).await, pid_of(&dir, &ids[1]).await];
    batch.hold(&ids[..1]).await.unwrap();
    let executor = executor_pid(&dir);
    drop(batch);
    std::fs::remove_dir_all(&dir).unwrap();
    wait_gone(running[0]).await;
    wait_gone(running[1]).await;
    wait_gone(executor).await;
}

#[test]
fn the_default_runner_is_this_binary_local_executor() {
    let runner = default_runner();
    assert_eq!(runner.len(), 2);
    assert_eq!(runner[1], "local-executor");
    assert_eq!(
        Path::new(&runner[0]),
        std::env::current_exe().unwrap().as_path()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_refuses_zero_slots_or_an_empty_runner() {
    let root = tempfile::tempdir().unwrap();
    let path = root.path().to_path_buf();
    assert!(LocalBatch::open(path.clone(), 0, common::runner())
        .await
        .is_err());
    assert!(LocalBatch::open(path, 1, Vec::new()).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_wakes_on_a_job_end_and_loses_none_that_happened_before_the_call() {
    let root = tempfile::tempdir().unwrap();
    let batch = open(root.path(), 2).await;
    batch
        .submit(&group(&["sleep 0.2", "sleep 0.8"]))
        .await
        .unwrap();
    batch.poll(&[id(1), id(2)]).await.unwrap();
    // Job 1 ends after that poll while nobody waits: changed() returns at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(root.path().join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains("\"ended\"") && l.contains("prodops-j1-a1"))
    {
        assert!(Instant::now() < deadline, "job 1 never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    batch.changed().await;
    assert!(started.elapsed() < Duration::from_millis(100));
    let seen = batch.poll(&[id(1), id(2)]).await.unwrap();
    assert_eq!(seen[0].state, ObservedState::Succeeded);
    assert_eq!(seen[1].state, ObservedState::Running);
    // Nothing new since: changed() waits for job 2's end, not the full second.
    let started = Instant::now();
    batch.changed().await;
    let waited = started.elapsed();
    let job2 = batch.poll(&[id(2)]).await.unwrap();
    assert!(waited < Duration::from_millis(900), "{waited:?}");
    assert_eq!(job2[0].state, ObservedState::Succeeded);
}
