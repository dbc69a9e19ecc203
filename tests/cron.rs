//! `prodops --batch` under cron habits (S3, issue 15): a run that finds the
//! lease held by a live worker leaves at once with one line (or, with
//! `--wait`, waits quietly), and a run that stops with work it could not
//! submit says so last and exits 4.

mod common;

use common::{all_dbs, file_and_approve, local_worker, mc_request, world, TestDb};
use prodops::worker::Throttles;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `prodops --db DB --work-dir WORK ARGS…`, the built binary.
fn prodops(db: &TestDb, work: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prodops"));
    command
        .args(["--db", &db.url, "--work-dir"])
        .arg(work)
        .args(args)
        .env_remove("PRODOPS_CONFIG")
        .env("HOME", work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` to end, killing it after `limit`.
fn finish(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_a_batch_run_finding_a_live_worker_holding_the_lease_leaves_at_once_with_one_line() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let holder = local_worker(&w.store, &dir.path().join("a"), 1, Throttles::default()).await;
        assert!(holder.pass().await.unwrap().leader, "{}", db.label);

        let started = Instant::now();
        let child = prodops(&db, &dir.path().join("b"), &["--batch"])
            .spawn()
            .unwrap();
        let out = finish(child, Duration::from_secs(30));
        let took = started.elapsed();

        let said = lines(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {said:?}", db.label);
        assert_eq!(
            said.len(),
            1,
            "{}: one line, not a stream: {said:?}",
            db.label
        );
        let pid = format!("pid {}", std::process::id());
        assert!(
            said[0].contains(&prodops::host::hostname())
                && said[0].contains(&pid)
                && said[0].contains("running since")
                && said[0].contains("holds the lease"),
            "{}: the line names the holder: {said:?}",
            db.label
        );
        assert!(
            took < Duration::from_secs(10),
            "{}: left after {took:?}",
            db.label
        );
        holder.release_lease().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_batch_wait_waits_quietly_for_the_lease_then_takes_it() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let holder = local_worker(&w.store, &dir.path().join("a"), 1, Throttles::default()).await;
        assert!(holder.pass().await.unwrap().leader, "{}", db.label);

        let child = prodops(&db, &dir.path().join("b"), &["--batch", "--wait"])
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        holder.release_lease().await.unwrap();
        let out = finish(child, Duration::from_secs(60));

        let said = lines(&out);
        assert_eq!(out.status.code(), Some(0), "{}: {said:?}", db.label);
        assert_eq!(
            said.len(),
            2,
            "{}: one line on waiting, one on taking: {said:?}",
            db.label
        );
        assert!(
            said[0].ends_with("holds the lease; waiting for it"),
            "{said:?}"
        );
        assert_eq!(said[1], "worker: took the lease", "{}", db.label);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn p1_a_batch_run_stopped_by_a_failing_check_says_so_in_its_last_line_and_exits_4() {
    for db in all_dbs().await {
        let w = world(&db).await;
        file_and_approve(&w, &mc_request()).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            "[[check]]\nname = \"dcache\"\nkind = \"command\"\ncommand = [\"false\"]\n",
        )
        .unwrap();

        let child = prodops(&db, &dir.path().join("work"), &["--batch", "--config"])
            .arg(&config)
            .spawn()
            .unwrap();
        let out = finish(child, Duration::from_secs(60));

        let said = lines(&out);
        assert_eq!(out.status.code(), Some(4), "{}: {said:?}", db.label);
        let last = said.last().cloned().unwrap_or_default();
        assert!(
            last.starts_with("worker: stopped with ") && last.contains("ready but not submitted"),
            "{}: the last line says work is waiting: {said:?}",
            db.label
        );
        assert!(
            said.iter().any(|l| l.contains("check `dcache` failing")),
            "{}: a warning says which check: {said:?}",
            db.label
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_run_with_nothing_held_back_exits_0() {
    let db = common::sqlite();
    let w = world(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let out = finish(
        prodops(&db, &dir.path().join("work"), &["--batch"])
            .spawn()
            .unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", lines(&out));
    assert!(lines(&out).is_empty(), "{:?}", lines(&out));
    w.store.close().await;
}
