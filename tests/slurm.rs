//! The worker on a real Slurm cluster (X10, issue 6): `.ci/run` starts a
//! single-node cluster (`scripts/start-slurm.sh`). Without one these tests
//! are skipped with a note, except in CI (`CI=true`), where they fail.

mod common;

use common::{file_and_approve, script, wait_for_jobs, world, TestDb, World};
use prodops::batch::slurm::{SlurmBatch, SlurmConfig};
use prodops::batch::{BatchJobId, BatchSystem, JobKey};
use prodops::model::ids::{CampaignId, JobId, SubtaskId};
use prodops::store::Store;
use prodops::worker::{Throttles, Worker, WorkerConfig};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// The ordinary account the Slurm tests run as when started as root
/// (`scripts/start-slurm.sh` creates it, issue 15): root is a Slurm
/// administrator, so a test run as root passes where a production account
/// is refused.
const CI_USER: &str = "prodops-ci";

/// True when this test is to run here, on a Slurm cluster that answers, as
/// an ordinary user. As root the test is run again, whole, as [`CI_USER`],
/// and fails unless it passed there. Without a cluster, or as root without
/// that user, it is skipped (a failure in CI).
fn slurm_here() -> bool {
    slurm_here_with(&[])
}

/// [`slurm_here`] for a test that needs `env` in its process's environment
/// (`sbatch` reads `SBATCH_*` there): such a test always runs again in a
/// process of its own, so no other test sees it.
fn slurm_here_with(env: &[(&str, &str)]) -> bool {
    let up = Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"));
    if !up {
        common::skipping(
            "no Slurm cluster answers `scontrol ping` (.ci/run starts one: scripts/start-slurm.sh)",
        );
        return false;
    }
    let env_set = env
        .iter()
        .all(|(name, value)| std::env::var(name).as_deref() == Ok(*value));
    if !running_as_root() && env_set {
        return true;
    }
    if !running_as_root() {
        run_again(None, env);
        return false;
    }
    match ordinary_account() {
        Some(account) => run_again(Some(&account), env),
        None => common::skipping(&format!(
            "running as root, and there is no user {CI_USER} to run the Slurm tests as (scripts/start-slurm.sh creates it)"
        )),
    }
    false
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A user's ids and home directory.
struct Account {
    uid: u32,
    gid: u32,
    home: String,
}

/// [`CI_USER`]'s account, if there is one.
fn ordinary_account() -> Option<Account> {
    let out = Command::new("getent")
        .args(["passwd", CI_USER])
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<&str> = line.trim().split(':').collect();
    Some(Account {
        uid: fields.get(2)?.parse().ok()?,
        gid: fields.get(3)?.parse().ok()?,
        home: fields.get(5)?.to_string(),
    })
}

/// Runs the current test again, alone in a process of `account` (else of
/// this user) with `env` added, and fails unless it ran and passed there.
fn run_again(account: Option<&Account>, env: &[(&str, &str)]) {
    use std::os::unix::process::CommandExt;
    let test = std::thread::current()
        .name()
        .expect("the harness names a test's thread after the test")
        .to_string();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied());
    let who = match account {
        Some(account) => {
            command
                .uid(account.uid)
                .gid(account.gid)
                .env("HOME", &account.home)
                .env("USER", CI_USER)
                .env("LOGNAME", CI_USER);
            CI_USER
        }
        None => "this user",
    };
    let out = command.output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("1 passed"),
        "{test} run as {who} with {env:?}:\n{said}"
    );
}

/// A world on SQLite and a scratch directory, when a Slurm cluster answers.
async fn slurm_world() -> Option<(TestDb, World, tempfile::TempDir)> {
    slurm_world_with(&[]).await
}

/// [`slurm_world`] in a process whose environment has `env` ([`slurm_here_with`]).
async fn slurm_world_with(env: &[(&str, &str)]) -> Option<(TestDb, World, tempfile::TempDir)> {
    if !slurm_here_with(env) {
        return None;
    }
    let db = common::sqlite();
    let w = world(&db).await;
    Some((db, w, tempfile::tempdir().unwrap()))
}

/// A Slurm backend in `work` running this build's `job-run`, polled every second.
fn slurm(work: &Path) -> Arc<SlurmBatch> {
    slurm_with(work, |_| {})
}

/// [`slurm`] with its configuration changed by `adjust`.
fn slurm_with(work: &Path, adjust: impl FnOnce(&mut SlurmConfig)) -> Arc<SlurmBatch> {
    let mut config = SlurmConfig::new(work.join("slurm"));
    config.job_run = vec![env!("CARGO_BIN_EXE_prodops").into(), "job-run".into()];
    config.poll_interval = Duration::from_secs(1);
    adjust(&mut config);
    Arc::new(SlurmBatch::open(config).unwrap())
}

/// A worker with only the Slurm backend.
fn worker(store: &Store, work: &Path) -> Worker {
    worker_on(store, work, slurm(work))
}

/// A worker with only the Slurm backend `batch`.
fn worker_on(store: &Store, work: &Path, batch: Arc<SlurmBatch>) -> Worker {
    Worker::new(
        store.clone(),
        vec![batch],
        WorkerConfig {
            throttles: Throttles::default(),
            output_root: work.join("outputs"),
            lease_ttl: Duration::from_secs(60),
            min_pass_interval: prodops::worker::MIN_PASS_INTERVAL,
        },
    )
}

async fn run_to_idle(worker: &Worker) {
    tokio::time::timeout(Duration::from_secs(300), worker.run_until_idle(|_| {}))
        .await
        .expect("the worker finishes within 5 minutes")
        .unwrap();
}

/// `text` as a request file in `dir` (scripts resolved from the examples).
fn request(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A one-stage MC request on Slurm: `events` jobs of `script`, with more
/// `[defaults]` lines.
fn one_stage(dir: &Path, script: &str, events: u32, defaults: &str) -> PathBuf {
    request(
        dir,
        "r.toml",
        &format!(
            "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"t\"\n[defaults]\nrelease = \"v1\"\nbackend = \"slurm\"\n{defaults}resources = {{ memory_mb = 100, wall_hours = 1 }}\n[[stage]]\nname = \"gen\"\nscript = \"{script}\"\nevents = {events}\nevents_per_job = 1\nseed_base = 1\n"
        ),
    )
}

/// The example MC request, sent to Slurm.
fn mc_on_slurm(dir: &Path) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let text = std::fs::read_to_string(examples.join("mc-request.toml"))
        .unwrap()
        .replace("backend   = \"local\"", "backend   = \"slurm\"")
        .replace("scripts/", &format!("{}/scripts/", examples.display()));
    assert!(text.contains("\"slurm\""));
    request(dir, "mc.toml", &text)
}

async fn jobs(w: &World, id: CampaignId) -> Vec<prodops::ops::jobs::JobView> {
    w.ed.jobs(id, &[], 1000, 0).await.unwrap()
}

/// Array ids Slurm accounted for the given batch ids.
fn arrays(jobs: &[prodops::ops::jobs::JobView]) -> std::collections::BTreeSet<String> {
    jobs.iter()
        .filter_map(|j| j.batch_job_id.as_deref())
        .map(|id| id.split('_').next().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x10_the_example_mc_campaign_runs_to_succeeded_through_slurm_arrays() {
    let Some((_db, w, dir)) = slurm_world().await else {
        return;
    };
    let id = file_and_approve(&w, &mc_on_slurm(dir.path())).await;
    run_to_idle(&worker(&w.store, dir.path())).await;
    let c = w.ed.campaign(id).await.unwrap();
    assert_eq!(c.request.state, "succeeded", "{c:#?}");
    let all = jobs(&w, id).await;
    assert_eq!(all.len(), 25);
    assert!(
        all.iter().all(|j| j.site.as_deref() == Some("slurm")
            && j.node.is_some()
            && j.batch_job_id.as_deref().is_some_and(|b| b.contains('_'))),
        "M9: {all:#?}"
    );
    assert_eq!(arrays(&all).len(), 3, "one sbatch array per stage");
    let thin: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs j WHERE (SELECT COUNT(*) FROM job_stages s WHERE s.job_id = j.id AND s.cpu_ms IS NOT NULL) < 3",
    )
    .fetch_one(w.store.pool())
    .await
    .unwrap();
    assert_eq!(thin, 0, "M10: every job has at least 3 measured stages");
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d3_a_failing_slurm_task_is_retried_with_its_exit_code_then_resubmitted() {
    let Some((_db, w, dir)) = slurm_world().await else {
        return;
    };
    script(
        dir.path(),
        "gen.sh",
        &format!(
            "[ \"$PRODOPS_SEED\" = 2 ] && [ ! -e {}/fixed ] && exit 3\necho \"PRODOPS_EVENTS $PRODOPS_EVENTS\"",
            dir.path().display()
        ),
    );
    let path = one_stage(dir.path(), "gen.sh", 3, "max_attempts = 2\n");
    let id = file_and_approve(&w, &path).await;
    let worker = worker(&w.store, dir.path());
    run_to_idle(&worker).await;
    assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "failed");
    let failed: Vec<_> = jobs(&w, id)
        .await
        .into_iter()
        .filter(|j| j.state == "failed")
        .collect();
    assert_eq!(failed.len(), 2, "attempts 1 and 2 of seed 2: {failed:#?}");
    assert!(failed
        .iter()
        .all(|j| j.exit_code == Some(3) && j.plan["seed"] == 2));

    std::fs::write(dir.path().join("fixed"), "").unwrap();
    let gen: SubtaskId = w.ed.campaign(id).await.unwrap().tasks[0].subtasks[0]
        .id
        .parse()
        .unwrap();
    let again = w.root.resubmit(gen.entity(), "fixed").await.unwrap();
    assert_eq!(
        again.jobs.len(),
        1,
        "only the failed job gets a new attempt"
    );
    run_to_idle(&worker).await;
    assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "succeeded");
    let all = jobs(&w, id).await;
    let attempts = |seed: i64| all.iter().filter(|j| j.plan["seed"] == seed).count();
    assert_eq!(
        (attempts(1), attempts(2), attempts(3)),
        (1, 3, 1),
        "the good jobs were not rerun: {all:#?}"
    );
    w.store.close().await;
}

/// The task's squeue state once Slurm is done requeueing it (COMPLETING
/// lasts while its processes are being ended), waiting up to 20 s.
fn settled_state(id: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = squeue_state(id);
        if !state.contains("COMPLETING") || std::time::Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_hold_release_and_cancel_act_on_the_real_slurm_jobs() {
    let Some((_db, w, dir)) = slurm_world().await else {
        return;
    };
    script(dir.path(), "slow.sh", "sleep 60");
    let path = one_stage(dir.path(), "slow.sh", 2, "");
    let id = file_and_approve(&w, &path).await;
    let worker = worker(&w.store, dir.path());
    let running = wait_for_jobs(&worker, &w, id, "running").await;
    let ids: Vec<String> = running
        .iter()
        .filter_map(|j| j.batch_job_id.clone())
        .collect();
    w.root
        .hold_with_scope(
            id,
            prodops::model::hold::HoldScope::Running,
            "site downtime",
        )
        .await
        .unwrap();
    wait_for_jobs(&worker, &w, id, "held").await;
    for id in &ids {
        let state = settled_state(id);
        assert!(
            state.contains("PENDING") || state.contains("REQUEUE_HOLD"),
            "a held running job is requeued held in Slurm: {id} {state}"
        );
    }
    w.root.release(id, "").await.unwrap();
    wait_for_jobs(&worker, &w, id, "running").await;
    for id in &ids {
        let state = squeue_state(id);
        assert!(
            state.contains("RUNNING") || state.contains("CONFIGURING"),
            "{id} runs again: {state}"
        );
    }
    w.root.cancel(id, "wrong generator").await.unwrap();
    wait_for_jobs(&worker, &w, id, "removed").await;
    for _ in 0..50 {
        if ids.iter().all(|id| !squeue_state(id).contains("RUNNING")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &ids {
        let state = squeue_state(id);
        assert!(
            !state.contains("RUNNING"),
            "{id} was cancelled in Slurm: {state}"
        );
    }
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_restarted_worker_adopts_running_slurm_jobs_without_resubmitting() {
    let Some((_db, w, dir)) = slurm_world().await else {
        return;
    };
    script(
        dir.path(),
        "work.sh",
        "sleep 3\necho \"PRODOPS_EVENTS $PRODOPS_EVENTS\"",
    );
    let path = one_stage(dir.path(), "work.sh", 2, "");
    let id = file_and_approve(&w, &path).await;
    {
        let first = worker(&w.store, dir.path());
        wait_for_jobs(&first, &w, id, "running").await;
        first.release_lease().await.unwrap();
    }
    let before = jobs(&w, id).await;
    let second = worker(&w.store, dir.path());
    run_to_idle(&second).await;
    assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "succeeded");
    let after = jobs(&w, id).await;
    assert_eq!(after.len(), 2, "no job was made again");
    assert_eq!(
        arrays(&after),
        arrays(&before),
        "the same Slurm array ran the jobs: nothing was resubmitted"
    );
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_submission_whose_ids_were_never_recorded_is_found_again_by_its_group_name() {
    if !slurm_here() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let batch = slurm(dir.path());
    let key = JobKey {
        job: JobId(1),
        attempt: 1,
    };
    let group = prodops::batch::JobGroup {
        experiment: "nova".into(),
        jobs: vec![prodops::batch::JobLaunch {
            key,
            spec: prodops::model::jobspec::JobRunSpec {
                job: 1,
                attempt: 1,
                executable: "/bin/true".into(),
                args: Vec::new(),
                env: Default::default(),
                inputs: Vec::new(),
                tarball: None,
                script: None,
                output_dir: dir.path().join("out").display().to_string(),
                memory_mb: 100,
                wall_seconds: 600,
            },
            resources: prodops::model::spec::Resources {
                memory_mb: 100,
                wall_hours: 0.2,
                cpus: 1,
                disk_mb: 0,
            },
            sites: Default::default(),
        }],
    };
    let submitted = batch.submit(&group).await.unwrap();
    let job_dir = dir.path().join("slurm").join(key.name());
    let group_name = std::fs::read_to_string(job_dir.join("group")).unwrap();
    // As if the worker died right after sbatch: no ids were written.
    std::fs::remove_file(job_dir.join("batch_id")).unwrap();
    std::fs::remove_file(
        dir.path()
            .join("slurm/groups")
            .join(group_name.trim())
            .join("group_id"),
    )
    .unwrap();
    let restarted = slurm(dir.path());
    let found = restarted.find(&[key]).await.unwrap();
    assert_eq!(
        found, submitted,
        "adopted by the group name Slurm knows it by"
    );
    let again = restarted.submit(&group).await.unwrap();
    assert_eq!(again, submitted, "submitting it again starts nothing new");
    let id: &BatchJobId = &submitted[0].batch_id;
    let seen = loop {
        let seen = restarted.poll(std::slice::from_ref(id)).await.unwrap();
        if seen[0].state.is_final() {
            break seen;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        seen[0].state,
        prodops::batch::ObservedState::Succeeded,
        "{seen:?}"
    );
}

/// The state and reason of Slurm job `id` (`<array>_<index>`) in squeue, if listed.
fn squeue_state(id: &str) -> String {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%T %r", "-j", id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A config file in `dir` for Slurm groups under `dir/slurm`, running this
/// build's `job-run`.
fn slurm_config(dir: &Path) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[slurm]\nwork_dir = \"{}\"\npoll_seconds = 1\njob_run = [\"{}\", \"job-run\"]\n",
            dir.join("slurm").display(),
            env!("CARGO_BIN_EXE_prodops")
        ),
    )
    .unwrap();
    config
}

/// `prodops --batch` on database `db` with `config`, its work under
/// `dir/work`, with `env` added to its environment.
fn batch_pass(db: &str, config: &Path, dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prodops"));
    cmd.env("PRODOPS_DB", db)
        .env("PRODOPS_CONFIG", config)
        .env_remove("PRODOPS_FAILPOINT")
        .envs(env.iter().copied())
        .args(["--batch", "--work-dir"])
        .arg(dir.join("work"));
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp1_the_workers_environment_and_secrets_stay_out_of_slurm_jobs() {
    let Some((db, w, dir)) = slurm_world().await else {
        return;
    };
    script(
        dir.path(),
        "gen.sh",
        &format!("env > {}/seen-$PRODOPS_SEED.env", dir.path().display()),
    );
    let id = file_and_approve(&w, &one_stage(dir.path(), "gen.sh", 1, "")).await;
    let secret = "pg-password-5f0c1e";
    let config = slurm_config(dir.path());
    let out = batch_pass(&db.url, &config, dir.path(), &[("PGPASSWORD", secret)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "succeeded");
    let seen = std::fs::read_to_string(dir.path().join("seen-1.env")).unwrap();
    assert!(seen.contains("SLURM_ARRAY_TASK_ID="), "{seen}");
    assert!(seen.lines().any(|l| l.starts_with("PATH=")), "{seen}");
    assert!(
        !seen.contains(secret)
            && !seen.contains("PRODOPS_DB=")
            && !seen.contains("PRODOPS_CONFIG="),
        "the job saw the worker's environment: {seen}"
    );
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_batch_worker_killed_right_after_sbatch_submits_nothing_twice() {
    let Some((db, w, dir)) = slurm_world().await else {
        return;
    };
    let id = file_and_approve(&w, &mc_on_slurm(dir.path())).await;
    let config = slurm_config(dir.path());
    let batch = |env: &[(&str, &str)]| batch_pass(&db.url, &config, dir.path(), env);
    use std::os::unix::process::ExitStatusExt;
    let crashed = batch(&[("PRODOPS_FAILPOINT", "slurm:after-sbatch@2")]);
    assert_eq!(
        crashed.status.signal(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&crashed.stderr)
    );
    let resumed = batch(&[]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "succeeded");
    let all = jobs(&w, id).await;
    assert_eq!(all.len(), 25, "no job was made twice");
    let groups = std::fs::read_dir(dir.path().join("slurm/groups"))
        .unwrap()
        .count();
    assert_eq!(
        (arrays(&all).len(), groups),
        (3, 3),
        "the array submitted before the crash was adopted, not submitted again"
    );
    w.store.close().await;
}

/// A Slurm test skipped for want of a cluster says so in a plain `cargo test`
/// (the harness's capture does not swallow the note), and under `CI=true`
/// the skip is a failure. Runs this test binary again with no `scontrol` on PATH.
#[test]
fn a_skipped_slurm_test_says_so_without_nocapture_and_fails_under_ci() {
    let no_tools = tempfile::tempdir().unwrap();
    let run = |ci: bool| {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "x10_the_example_mc_campaign_runs_to_succeeded_through_slurm_arrays",
            ])
            .env("PATH", no_tools.path())
            .env_remove("CI");
        if ci {
            command.env("CI", "true");
        }
        command.output().unwrap()
    };
    let skipped = run(false);
    let said = String::from_utf8_lossy(&skipped.stderr);
    assert!(skipped.status.success(), "{said}");
    assert!(
        said.contains("SKIPPED x10_the_example_mc_campaign_runs_to_succeeded_through_slurm_arrays: no Slurm cluster answers"),
        "the skip is not visible: {said}"
    );
    let in_ci = run(true);
    assert!(!in_ci.status.success(), "a skip under CI=true passed");
}

/// What each array index does in [`d1_the_ends_of_slurm_jobs_gone_from_squeue_are_recorded_from_accounting`]:
/// run in place of `job-run`, so no job result tells the worker how a job
/// ended, only Slurm's accounting.
const ENDS: &str = "case $SLURM_ARRAY_TASK_ID in\n0) exit 3;;\n1) kill -SEGV $$;;\n2|3) sleep 600;;\n7) exit 7;;\nesac";

/// Passes `worker` until campaign `id` has `count` jobs submitted to Slurm; their array id.
async fn submitted_array(worker: &Worker, w: &World, id: CampaignId, count: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        worker.pass().await.unwrap();
        let all = jobs(w, id).await;
        if all.len() == count && all.iter().all(|j| j.batch_job_id.is_some()) {
            let arrays = arrays(&all);
            assert_eq!(arrays.len(), 1, "one array: {all:#?}");
            return arrays.into_iter().next().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never submitted: {all:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until `squeue` shows task `id` (`<array>_<index>`) in a state
/// containing `want`, up to `limit`.
async fn until_squeue_shows(id: &str, want: &str, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let state = squeue_state(id);
        if state.contains(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "squeue still shows {id} as `{state}`, not `{want}`, after {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The tasks of array `array` that `squeue` lists (one line each, `-r`).
fn squeue_tasks_of(array: &str) -> Vec<String> {
    let out = Command::new("squeue")
        .args(["-h", "-r", "-o", "%i %T"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.starts_with(&format!("{array}_")))
        .map(str::to_string)
        .collect()
}

/// Waits until Slurm has purged every task of array `array` from `squeue`
/// (on a timer, `MinJobAge` after each ended), up to `limit`.
async fn until_gone_from_squeue(array: &str, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = squeue_tasks_of(array);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "squeue still lists {left:?} after {} s",
            limit.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `(exit code, signal, state, failure)` of the job run by array index `index`.
fn end_of(
    all: &[prodops::ops::jobs::JobView],
    index: usize,
) -> (Option<i64>, Option<i64>, String, String) {
    let suffix = format!("_{index}");
    let job = all
        .iter()
        .find(|j| {
            j.batch_job_id
                .as_deref()
                .is_some_and(|b| b.ends_with(&suffix))
        })
        .unwrap_or_else(|| panic!("no job ran as index {index}: {all:#?}"));
    (
        job.exit_code,
        job.signal,
        job.state.clone(),
        job.failure.clone().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_the_ends_of_slurm_jobs_gone_from_squeue_are_recorded_from_accounting() {
    let Some((_db, w, dir)) = slurm_world().await else {
        return;
    };
    let ends = script(dir.path(), "ends.sh", ENDS);
    let path = request(
        dir.path(),
        "r.toml",
        "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"t\"\n[defaults]\nrelease = \"v1\"\nbackend = \"slurm\"\nmax_attempts = 1\nresources = { memory_mb = 100, wall_hours = 0.016 }\n[[stage]]\nname = \"gen\"\nscript = \"ends.sh\"\nevents = 8\nevents_per_job = 1\nseed_base = 1\n",
    );
    let id = file_and_approve(&w, &path).await;
    let batch = slurm_with(dir.path(), |c| c.job_run = vec![ends.display().to_string()]);
    let worker = worker_on(&w.store, dir.path(), batch);
    let array = submitted_array(&worker, &w, id, 8).await;
    let minutes = Duration::from_secs(60);
    until_squeue_shows(&format!("{array}_3"), "RUNNING", 2 * minutes).await;
    let cancel = Command::new("scancel")
        .arg(format!("{array}_3"))
        .output()
        .unwrap();
    assert!(cancel.status.success(), "{cancel:?}");
    // Index 2 runs into its one-minute limit; Slurm purges ended jobs from
    // squeue on a timer, MinJobAge (2 s in the test cluster) after their end.
    until_gone_from_squeue(&array, 4 * minutes).await;
    run_to_idle(&worker).await;
    let all = jobs(&w, id).await;
    let failed = |code: Option<i64>, signal: Option<i64>, why: &str| {
        (code, signal, "failed".to_string(), why.to_string())
    };
    assert_eq!(
        end_of(&all, 0),
        failed(Some(3), None, "exit code 3"),
        "D1: an exit code: {all:#?}"
    );
    assert_eq!(
        end_of(&all, 7),
        failed(Some(7), None, "exit code 7"),
        "D1: an array task's exit code"
    );
    assert_eq!(
        end_of(&all, 1),
        failed(None, Some(11), "killed by signal 11"),
        "D1: the signal that killed it"
    );
    let (code, signal, state, why) = end_of(&all, 2);
    assert_eq!((state.as_str(), why.as_str()), ("failed", "timed out"));
    assert!(
        signal.is_some() || code.is_some_and(|c| c != 0),
        "D1: a timeout has no clean exit code, but its batch step's code or signal: {code:?} {signal:?}"
    );
    let cancelled = end_of(&all, 3);
    assert_eq!(
        (cancelled.0, cancelled.1, cancelled.2.as_str()),
        (None, Some(15), "removed"),
        "a job cancelled in Slurm: {cancelled:?}"
    );
    for index in 4..7 {
        let (code, signal, state, _) = end_of(&all, index);
        assert_eq!(
            (code, signal, state.as_str()),
            (Some(0), None, "succeeded"),
            "{index}"
        );
    }
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_an_ordinary_user_holds_and_releases_pending_and_running_slurm_jobs() {
    let Some((_db, w, dir)) = slurm_world().await else {
        return;
    };
    assert!(
        !running_as_root(),
        "a Slurm administrator may do what a production account may not"
    );
    script(dir.path(), "slow.sh", "sleep 120");
    let path = one_stage(dir.path(), "slow.sh", 2, "");
    let id = file_and_approve(&w, &path).await;
    let one_at_a_time = slurm_with(dir.path(), |c| c.array_limit = Some(1));
    let worker = worker_on(&w.store, dir.path(), one_at_a_time);
    let array = submitted_array(&worker, &w, id, 2).await;
    let (first, second) = (format!("{array}_0"), format!("{array}_1"));
    let limit = Duration::from_secs(60);
    until_squeue_shows(&first, "RUNNING", limit).await;
    assert!(
        squeue_state(&second).contains("PENDING"),
        "{}",
        squeue_state(&second)
    );
    w.root
        .hold_with_scope(
            id,
            prodops::model::hold::HoldScope::Running,
            "site downtime",
        )
        .await
        .unwrap();
    wait_for_jobs(&worker, &w, id, "held").await;
    for task in [&first, &second] {
        let state = settled_state(task);
        assert!(
            state.starts_with("PENDING")
                && state.to_lowercase().contains("held")
                && !state.contains("Admin"),
            "held in Slurm, as its owner may hold it: {task} {state}"
        );
    }
    w.root.release(id, "").await.unwrap();
    let deadline = std::time::Instant::now() + limit;
    let states = loop {
        worker.pass().await.unwrap();
        let mut states: Vec<String> = jobs(&w, id).await.into_iter().map(|j| j.state).collect();
        states.sort();
        if states == ["queued", "running"] || std::time::Instant::now() > deadline {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        states,
        ["queued", "running"],
        "released: one runs, one waits its turn; squeue: {:?}; jobs: {:?}",
        squeue_tasks_of(&array),
        jobs(&w, id)
            .await
            .iter()
            .map(|j| (&j.batch_job_id, &j.state, &j.failure, j.exit_code, j.signal))
            .collect::<Vec<_>>()
    );
    let running = squeue_state(&first) + &squeue_state(&second);
    assert!(
        running.contains("RUNNING") || running.contains("CONFIGURING"),
        "{running}: {:?} {:?}",
        squeue_tasks_of(&array),
        jobs(&w, id).await
    );
    assert!(
        !running.contains("Held"),
        "nothing is held in Slurm: {running}"
    );
    w.root.cancel(id, "done").await.unwrap();
    wait_for_jobs(&worker, &w, id, "removed").await;
    until_gone_from_squeue(&array, limit).await;
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_running_slurm_jobs_slurm_will_not_requeue_are_not_recorded_held_and_say_why() {
    // Jobs submitted from this process cannot be requeued (sbatch --no-requeue).
    let Some((_db, w, dir)) = slurm_world_with(&[("SBATCH_NO_REQUEUE", "1")]).await else {
        return;
    };
    script(dir.path(), "slow.sh", "sleep 120");
    let id = file_and_approve(&w, &one_stage(dir.path(), "slow.sh", 2, "")).await;
    let worker = worker(&w.store, dir.path());
    let running = wait_for_jobs(&worker, &w, id, "running").await;
    w.root
        .hold_with_scope(
            id,
            prodops::model::hold::HoldScope::Running,
            "site downtime",
        )
        .await
        .unwrap();
    let report = worker.pass().await.unwrap();
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("requeuehold") && w.contains("presently disabled")),
        "Slurm's refusal is a warning: {:?}",
        report.warnings
    );
    let states: Vec<String> = jobs(&w, id).await.into_iter().map(|j| j.state).collect();
    assert_eq!(
        states,
        ["running", "running"],
        "not recorded held while Slurm runs them"
    );
    for job in &running {
        let task = job.batch_job_id.as_deref().unwrap();
        assert!(squeue_state(task).contains("RUNNING"), "{task}");
    }
    w.root.cancel(id, "done").await.unwrap();
    wait_for_jobs(&worker, &w, id, "removed").await;
    w.store.close().await;
}
