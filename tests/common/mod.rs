//! Test databases: every store and ops test runs on SQLite and, when
//! `PRODOPS_TEST_PG` names a server, on PostgreSQL too (each test in its own schema).
//! Each is made as `prodops db init` makes one (opening never makes a
//! database); the `blank` variants are not, for tests of making and migrating.
//! In CI (`CI=true`) a missing PostgreSQL fails the run instead of skipping.
#![allow(dead_code)]

use prodops::model::role::{Grant, Role, ALL_EXPERIMENTS};
use prodops::ops::{Actor, Ops};
use prodops::store::Store;
use sqlx::Connection;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// One database a test runs against.
pub struct TestDb {
    /// What `--db` / `Store::open` takes.
    pub url: String,
    /// `sqlite` or `postgres`, for assertion messages.
    pub label: &'static str,
    _dir: Option<tempfile::TempDir>,
    schema: Option<(String, String)>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, schema)) = self.schema.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                        let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute(&mut c)
                            .await;
                    }
                });
            })
            .join();
        }
    }
}

/// A new prodops database in an SQLite file in a temporary directory.
pub fn sqlite() -> TestDb {
    let db = sqlite_blank();
    let url = db.url.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { Store::create(&url).await.unwrap().close().await })
    })
    .join()
    .expect("the test database is made");
    db
}

/// A path in a temporary directory where no database is yet.
pub fn sqlite_blank() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = dir.path().join("prodops.db").display().to_string();
    TestDb {
        url,
        label: "sqlite",
        _dir: Some(dir),
        schema: None,
    }
}

/// An SQLite file that exists already (the demo's), left in place afterwards.
pub fn sqlite_at(path: &str) -> TestDb {
    TestDb {
        url: path.to_string(),
        label: "sqlite",
        _dir: None,
        schema: None,
    }
}

static SKIP_NOTICE: std::sync::Once = std::sync::Once::new();

/// Says that the running test is skipped and why, written past the test
/// harness's capture (which swallows `eprintln!` of passing tests) so a plain
/// `cargo test` shows it. In CI (`CI=true`) a skip is a failure instead.
pub fn skipping(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but {test} would be skipped: {reason}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// A new prodops database in a fresh schema on the PostgreSQL server named
/// by `PRODOPS_TEST_PG`, if any.
pub async fn postgres() -> Option<TestDb> {
    let db = postgres_blank().await?;
    Store::create(&db.url)
        .await
        .unwrap_or_else(|e| panic!("postgres: {e}"))
        .close()
        .await;
    Some(db)
}

/// A fresh, empty schema on the PostgreSQL server named by `PRODOPS_TEST_PG`, if any.
pub async fn postgres_blank() -> Option<TestDb> {
    let Ok(admin_url) = std::env::var("PRODOPS_TEST_PG") else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but PRODOPS_TEST_PG is not set: the PostgreSQL tests must run in CI");
        }
        SKIP_NOTICE.call_once(|| {
            // Written past the test harness's capture so a developer sees it.
            let _ = writeln!(
                std::io::stderr(),
                "NOTE: PRODOPS_TEST_PG is not set: PostgreSQL variants of the store tests are skipped"
            );
        });
        return None;
    };
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!(
        "t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos
    );
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PRODOPS_TEST_PG={admin_url} is not reachable: {e}"));
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if admin_url.contains('?') { '&' } else { '?' };
    Some(TestDb {
        url: format!("{admin_url}{sep}options=-csearch_path%3D{schema}"),
        label: "postgres",
        _dir: None,
        schema: Some((admin_url, schema)),
    })
}

/// SQLite, plus PostgreSQL when configured.
pub async fn all_dbs() -> Vec<TestDb> {
    let mut dbs = vec![sqlite()];
    dbs.extend(postgres().await);
    dbs
}

/// [`all_dbs`] with no prodops schema yet.
pub async fn all_blank_dbs() -> Vec<TestDb> {
    let mut dbs = vec![sqlite_blank()];
    dbs.extend(postgres_blank().await);
    dbs
}

/// A database with experiment `nova` and users: `root` (admin, operator),
/// `ann` (approver of nova), `ed` (experimenter of nova), `gus` (guest).
pub struct World {
    /// The store.
    pub store: Store,
    /// Admin and operator.
    pub root: Ops,
    /// Approver of nova.
    pub ann: Ops,
    /// Experimenter of nova.
    pub ed: Ops,
    /// Guest of nova.
    pub gus: Ops,
}

/// Opens `db` and registers the experiment and users of [`World`].
pub async fn world(db: &TestDb) -> World {
    let store = Store::open(&db.url)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", db.label));
    register(&store).await
}

/// Registers the experiment and users of [`World`] on `store`.
pub async fn register(store: &Store) -> World {
    let w = users_of(store);
    let all = |role| Grant {
        role,
        experiment: ALL_EXPERIMENTS.into(),
        kind: None,
    };
    let nova = |role| Grant {
        role,
        experiment: "nova".into(),
        kind: None,
    };
    w.root
        .user_add("root", &all(Role::Operator), None, None)
        .await
        .unwrap();
    w.root.experiment_add("nova", &[]).await.unwrap();
    for (name, role) in [
        ("ann", Role::Approver),
        ("ed", Role::Experimenter),
        ("gus", Role::Guest),
    ] {
        w.root
            .user_add(name, &nova(role), None, None)
            .await
            .unwrap();
    }
    w
}

/// The users of [`World`] acting on `store` (registered earlier).
pub fn users_of(store: &Store) -> World {
    World {
        root: Ops::new(store.clone(), Actor::named("root")),
        ann: Ops::new(store.clone(), Actor::named("ann")),
        ed: Ops::new(store.clone(), Actor::named("ed")),
        gus: Ops::new(store.clone(), Actor::named("gus")),
        store: store.clone(),
    }
}

/// The example Monte-Carlo request shipped in `examples/`.
pub fn mc_request() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mc-request.toml")
}

/// The number of rows in a table.
pub async fn rows(store: &Store, table: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0)
}

/// Row counts of every table plus every state, hash and priority, to prove nothing was written.
pub async fn snapshot(store: &Store) -> Vec<String> {
    use sqlx::Row;
    let mut out = Vec::new();
    for t in [
        "campaigns",
        "tasks",
        "subtasks",
        "subtask_deps",
        "batches",
        "jobs",
        "history",
        "audit",
        "users",
        "grants",
        "experiments",
    ] {
        out.push(format!("{t}: {}", rows(store, t).await));
    }
    for t in ["campaigns", "tasks", "subtasks", "batches", "jobs"] {
        let extra = if t == "campaigns" {
            ", spec_hash, priority, approved_hash"
        } else {
            ""
        };
        let sql = format!("SELECT id, state{extra} FROM {t} ORDER BY id");
        for r in sqlx::query(&sql).fetch_all(store.pool()).await.unwrap() {
            let mut line = format!("{t} {} {}", r.get::<i64, _>(0), r.get::<String, _>(1));
            if t == "campaigns" {
                line += &format!(
                    " {} {} {:?}",
                    r.get::<String, _>(2),
                    r.get::<i64, _>(3),
                    r.get::<Option<String>, _>(4)
                );
            }
            out.push(line);
        }
    }
    out
}

/// The command that starts the built binary's local executor.
pub fn runner() -> Vec<String> {
    vec![
        env!("CARGO_BIN_EXE_prodops").to_string(),
        "local-executor".into(),
    ]
}

/// A worker on `store` with the local backend under `work`.
pub async fn local_worker(
    store: &Store,
    work: &std::path::Path,
    slots: usize,
    throttles: prodops::worker::Throttles,
) -> prodops::worker::Worker {
    let local = prodops::batch::local::LocalBatch::open(work.join("local"), slots, runner())
        .await
        .unwrap();
    let backends: Vec<std::sync::Arc<dyn prodops::batch::BatchSystem>> = vec![local];
    let config = prodops::worker::WorkerConfig {
        throttles,
        output_root: work.join("outputs"),
        lease_ttl: std::time::Duration::from_secs(30),
        min_pass_interval: prodops::worker::MIN_PASS_INTERVAL,
    };
    prodops::worker::Worker::new(store.clone(), backends, config)
}

/// Files `path` as ed and approves it as ann.
pub async fn file_and_approve(
    w: &World,
    path: &std::path::Path,
) -> prodops::model::ids::CampaignId {
    let id: prodops::model::ids::CampaignId =
        w.ed.request_new(path)
            .await
            .unwrap()
            .summary
            .id
            .parse()
            .unwrap();
    w.ann.approve(id, "test").await.unwrap();
    id
}

/// Runs passes of `worker` until both jobs of campaign `id` are in `want`
/// (panics after a minute).
pub async fn wait_for_jobs(
    worker: &prodops::worker::Worker,
    w: &World,
    id: prodops::model::ids::CampaignId,
    want: &str,
) -> Vec<prodops::ops::jobs::JobView> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        worker.pass().await.unwrap();
        let jobs = w.ed.jobs(id, &[], 10, 0).await.unwrap();
        if jobs.len() == 2 && jobs.iter().all(|j| j.state == want) {
            return jobs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "jobs never became {want}: {:?}",
        w.ed.jobs(id, &[], 10, 0).await.unwrap()
    );
}

/// Writes an executable script `name` with `body` (after `#!/bin/sh`) in `dir`.
pub fn script(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A one-stage Monte-Carlo request `name` in `dir` whose `jobs` jobs run `script`.
pub fn gen_request(
    dir: &std::path::Path,
    name: &str,
    script: &str,
    jobs: u32,
) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"{name}\"\n[defaults]\nrelease = \"v1\"\n[[stage]]\nname = \"gen\"\nscript = \"{script}\"\nevents = {jobs}\nevents_per_job = 1\nseed_base = 1\n"
        ),
    )
    .unwrap();
    path
}

/// Runs passes of `worker` until the jobs of campaign `id` satisfy `done`
/// (panics after a minute); returns them.
pub async fn pass_until(
    worker: &prodops::worker::Worker,
    w: &World,
    id: prodops::model::ids::CampaignId,
    done: impl Fn(&[prodops::ops::jobs::JobView]) -> bool,
) -> Vec<prodops::ops::jobs::JobView> {
    for _ in 0..600 {
        worker.pass().await.unwrap();
        let jobs = w.ed.jobs(id, &[], 100, 0).await.unwrap();
        if done(&jobs) {
            return jobs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{:?}", w.ed.jobs(id, &[], 100, 0).await.unwrap());
}

/// The jobs' states, in their order.
pub fn states(jobs: &[prodops::ops::jobs::JobView]) -> Vec<&str> {
    jobs.iter().map(|j| j.state.as_str()).collect()
}

/// True once process `pid` is stopped (the executor applies a hold as soon
/// as it reads it, as a batch system would), within 5 s.
pub async fn eventually_stopped(pid: i32) -> bool {
    for _ in 0..100 {
        if stopped(pid) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

/// True when process `pid` is stopped now.
pub fn stopped(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        == Some("T")
}

/// The process id of the script of local batch job `batch_id` under `work`.
pub fn pid_of(work: &std::path::Path, batch_id: &str) -> i32 {
    prodops::batch::local::script_pid(&work.join("local"), batch_id)
        .expect("the job's script started")
}

/// The history of job `job`, oldest first.
pub async fn job_history(
    w: &World,
    job: prodops::model::ids::JobId,
) -> Vec<prodops::ops::views::HistoryView> {
    w.ed.history(prodops::model::ids::EntityRef {
        kind: prodops::model::ids::EntityKind::Job,
        id: job.0,
    })
    .await
    .unwrap()
}
