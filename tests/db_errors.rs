//! Database errors as a user meets them (issue 15): a wrong `--db` fails
//! within 2 s in one line that names its cause; a typo never starts a new
//! installation; a schema of another version is refused naming both
//! versions; `db init|migrate|check|backup`; and a worker and console that
//! outlive a PostgreSQL restart without losing or repeating a job.

mod common;

use common::TestDb;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Every database error must end the command within this.
const LIMIT: Duration = Duration::from_secs(2);

/// This binary's schema version (its last migration).
fn binary_version() -> i64 {
    prodops::store::Store::binary_schema_version(prodops::store::Backend::Sqlite)
}

fn prodops_cmd(db: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prodops"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("PRODOPS_DB")
        .args(["--db", db])
        .args(args);
    cmd
}

/// Runs `prodops --db DB ARGS`, timed.
fn run(db: &str, args: &[&str]) -> (Output, Duration) {
    timed(prodops_cmd(db, args))
}

fn timed(mut cmd: Command) -> (Output, Duration) {
    let started = Instant::now();
    let out = cmd.output().expect("the binary runs");
    (out, started.elapsed())
}

fn ok(db: &str, args: &[&str]) -> String {
    let (out, _) = run(db, args);
    assert!(
        out.status.success(),
        "prodops {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The one-line error of a command that must fail with exit 1 within [`LIMIT`].
fn fails_fast(cmd: Command) -> String {
    let (out, took) = timed(cmd);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(took < LIMIT, "took {took:?} to say: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

fn fails_fast_on(db: &str, args: &[&str]) -> String {
    fails_fast(prodops_cmd(db, args))
}

/// A temporary directory and a database path inside it.
fn scratch(name: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name).display().to_string();
    (dir, path)
}

/// A database made by `db init` holding the README's first steps and one request.
fn filled(path: &str) {
    ok(path, &["db", "init"]);
    ok(
        path,
        &["user", "add", &whoami::username(), "--role", "operator"],
    );
    ok(path, &["experiment", "add", "nova"]);
    ok(path, &["request", "new", "examples/mc-request.toml"]);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_within_2s_saying_what_it_looks_like() {
    let (_dir, path) = scratch("notes.txt");
    std::fs::write(&path, "[worker]\nslots = 4\n").unwrap();
    let err = fails_fast_on(&path, &["request", "list"]);
    assert_eq!(
        err.trim(),
        format!("error: {path} is not a prodops database: it is a text file (starting `[worker]`)")
    );
    let before = std::fs::read(&path).unwrap();
    assert_eq!(before, b"[worker]\nslots = 4\n", "the file is untouched");
}

#[test]
fn an_sqlite_database_of_another_program_is_refused_naming_its_tables() {
    let (_dir, path) = scratch("other.db");
    let url = format!("sqlite://{path}?mode=rwc");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        sqlx::query("CREATE TABLE photos (id INTEGER)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let err = fails_fast_on(&path, &["db", "init"]);
    assert!(
        err.contains(
            "is not a prodops database: an SQLite database of another program (tables photos)"
        ),
        "{err}"
    );
}

#[test]
fn a_truncated_database_is_called_damaged_and_points_to_db_check() {
    let (_dir, path) = scratch("cut.db");
    filled(&path);
    // As a copy cut short in transfer would be: the file alone, no -wal beside it.
    for side in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{side}"));
    }
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len / 2).unwrap();
    let err = fails_fast_on(&path, &["request", "list"]);
    assert!(
        err.starts_with(&format!("error: database {path} is damaged (truncated: {} of {len} bytes): see `prodops db check`", len / 2)),
        "{err}"
    );
    let checked = fails_fast_on(&path, &["db", "check"]);
    assert!(
        checked.contains("is damaged (truncated") && checked.contains("restore it from a backup"),
        "{checked}"
    );
}

#[test]
fn a_damaged_page_in_the_middle_is_reported_once_and_db_check_finds_it() {
    let (_dir, path) = scratch("bad.db");
    filled(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    let page = u16::from_be_bytes([bytes[16], bytes[17]]) as usize;
    let pages = bytes.len() / page;
    assert!(pages > 4, "the database has pages to damage ({pages})");
    for b in &mut bytes[page..(pages - 1) * page] {
        *b = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = fails_fast_on(&path, &["request", "list"]);
    assert!(err.contains("damaged"), "{err}");
    assert_eq!(err.matches("malformed").count(), 1, "said once: {err}");
    assert!(err.contains("prodops db check"), "{err}");
    let checked = fails_fast_on(&path, &["db", "check"]);
    assert!(checked.contains("is damaged"), "{checked}");
}

#[test]
fn a_read_only_database_in_a_read_only_directory_is_called_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path) = scratch("ro.db");
    filled(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let mut cmd = prodops_cmd(&path, &["request", "list"]);
    if as_root() {
        // Root writes anywhere: the test runs the binary as nobody.
        cmd.uid(65534).gid(65534);
    }
    let err = fails_fast(cmd);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(
        err.starts_with(&format!("error: database {path} is read-only: ")),
        "{err}"
    );
}

fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A local port where nothing listens (bound, then let go).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn postgres_where_nothing_listens_is_connection_refused_at_host_port_within_2s() {
    let port = free_port();
    let url = format!("postgres://prodops:secret@127.0.0.1:{port}/ops");
    let err = fails_fast_on(&url, &["request", "list"]);
    assert_eq!(
        err.trim(),
        format!("error: cannot reach PostgreSQL at 127.0.0.1:{port}: connection refused (is the server running?)")
    );
    assert!(!err.contains("secret"), "CP1: no password shown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_database_that_does_not_exist_is_named() {
    let Ok(admin) = std::env::var("PRODOPS_TEST_PG") else {
        common::skipping("PRODOPS_TEST_PG is not set");
        return;
    };
    let missing = format!("prodops_missing_{}", std::process::id());
    let url = swap_database(&admin, &missing);
    let err = fails_fast_on(&url, &["request", "list"]);
    assert!(
        err.contains(&format!(
            "database `{missing}` does not exist (create it with `createdb {missing}`"
        )),
        "{err}"
    );
}

/// `url` with its database replaced by `database`.
fn swap_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    format!("{server}/{database}{query}")
}

#[test]
fn a_missing_directory_is_not_created_and_the_error_says_db_init() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("prdops").join("prodops.db");
    let shown = typo.display().to_string();
    let err = fails_fast_on(&shown, &["request", "list"]);
    assert_eq!(
        err.trim(),
        format!(
            "error: no prodops database at {shown} (directory {} does not exist): `prodops db init {shown}` creates one",
            dir.path().join("prdops").display()
        )
    );
    assert!(!dir.path().join("prdops").exists(), "no directory was made");
}

#[test]
fn a_missing_file_is_not_created_by_reading_commands_or_the_worker() {
    let (dir, path) = scratch("typo.db");
    for args in [
        &["request", "list"][..],
        &["--batch", "--once"],
        &["db", "info"],
    ] {
        let err = fails_fast_on(&path, args);
        assert!(err.contains("no prodops database at"), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing made"
    );
}

#[test]
fn an_empty_file_is_refused_and_left_empty() {
    let (_dir, path) = scratch("empty.db");
    std::fs::write(&path, b"").unwrap();
    let err = fails_fast_on(&path, &["request", "list"]);
    assert_eq!(
        err.trim(),
        format!("error: {path} is an empty file, not a prodops database: `prodops db init {path}` makes one")
    );
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    ok(&path, &["db", "init"]);
    ok(&path, &["request", "list"]);
}

#[test]
fn db_init_makes_a_database_and_its_folder_says_so_and_a_second_init_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new").join("ops.db").display().to_string();
    let said = ok("ignored.db", &["db", "init", &path]);
    assert_eq!(
        said.trim(),
        format!(
            "created a new prodops database at {path} (schema version {})",
            binary_version()
        )
    );
    ok(&path, &["request", "list"]);
    let again = ok(&path, &["db", "init"]);
    assert!(again.contains("is already a prodops database"), "{again}");
    assert!(!Path::new("ignored.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_user_add_makes_the_database_and_says_so_on_stderr() {
    for db in common::all_blank_dbs().await {
        let err = fails_fast_on(&db.url, &["user", "list"]);
        assert!(err.contains("prodops db init"), "{}: {err}", db.label);
        let said = ok(
            &db.url,
            &["user", "add", &whoami::username(), "--role", "operator"],
        );
        let shown = prodops::store::redact(&db.url);
        assert!(
            said.contains(&format!("created a new prodops database at {shown}")),
            "{}: {said}",
            db.label
        );
        let second = ok(&db.url, &["user", "add", "ed", "--role", "guest"]);
        assert!(!second.contains("created"), "{}: {second}", db.label);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_init_fills_an_empty_postgres_schema_once() {
    let Some(db) = common::postgres_blank().await else {
        return;
    };
    let said = ok(&db.url, &["db", "init"]);
    assert!(said.contains("created a new prodops database at"), "{said}");
    ok(&db.url, &["request", "list"]);
    let again = ok(&db.url, &["db", "init"]);
    assert!(again.contains("is already a prodops database"), "{again}");
}

#[test]
fn the_default_database_in_the_data_directory_is_made_on_first_use_saying_so() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prodops"));
    cmd.env_remove("PRODOPS_DB")
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .args(["request", "list"]);
    let (out, _) = timed(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("created a new prodops database at"), "{err}");
}

/// Applies this binary's migrations up to `version` only, as an older prodops did.
async fn migrate_up_to(db: &TestDb, version: i64) {
    sqlx::any::install_default_drivers();
    let (url, dir) = match db.label {
        "sqlite" => (format!("sqlite://{}?mode=rwc", db.url), "sqlite"),
        _ => (db.url.clone(), "postgres"),
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dir);
    let mut migrator = sqlx::migrate::Migrator::new(path).await.unwrap();
    let older: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect();
    migrator.migrations = older.into();
    migrator.run(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_is_refused_naming_both_versions_until_db_migrate_upgrades_it() {
    let now = binary_version();
    for db in common::all_blank_dbs().await {
        migrate_up_to(&db, now - 2).await;
        let err = fails_fast_on(&db.url, &["request", "list"]);
        assert_eq!(
            err.trim(),
            format!("error: the database's schema is version {}, older than this prodops's {now}: run `prodops db migrate` once every node that uses it runs this prodops", now - 2),
            "{}", db.label
        );
        let said = ok(&db.url, &["db", "migrate"]);
        assert!(
            said.contains(&format!("from schema version {} to {now}", now - 2)),
            "{}: {said}",
            db.label
        );
        ok(&db.url, &["request", "list"]);
        let again = ok(&db.url, &["db", "migrate"]);
        assert!(again.contains("nothing to do"), "{again}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_schema_is_refused_by_every_command_and_left_untouched() {
    let now = binary_version();
    for db in common::all_dbs().await {
        let store = prodops::store::Store::open(&db.url).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (999, 'from the future', TRUE, $1, 0)",
        )
        .bind(vec![0u8])
        .execute(store.pool())
        .await
        .unwrap();
        store.close().await;
        for args in [&["request", "list"][..], &["db", "migrate"]] {
            let err = fails_fast_on(&db.url, args);
            assert_eq!(
                err.trim(),
                format!("error: the database's schema is version 999, newer than this prodops's {now}: upgrade prodops on this node"),
                "{} {args:?}", db.label
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_check_reports_the_schema_and_integrity_of_a_sound_database() {
    let now = binary_version();
    for db in common::all_dbs().await {
        let (out, _) = run(&db.url, &["--json", "db", "check"]);
        assert!(
            out.status.success(),
            "{}: {}",
            db.label,
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["schema_version"], now, "{}", db.label);
        assert_eq!(report["binary_schema_version"], now);
        assert_eq!(report["integrity"], "ok");
        assert_eq!(report["backend"], db.label);
    }
}

#[test]
fn db_backup_copies_an_sqlite_database_in_use_and_never_overwrites() {
    let (dir, path) = scratch("live.db");
    filled(&path);
    let backup = dir.path().join("copy.db").display().to_string();
    let said = ok(&path, &["db", "backup", &backup]);
    assert!(
        said.contains(&format!("backed up {path} to {backup}")),
        "{said}"
    );
    let listed = |db: &str| {
        let (out, _) = run(db, &["--json", "request", "list"]);
        assert!(out.status.success());
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(listed(&backup), listed(&path));
    assert_eq!(listed(&backup).as_array().unwrap().len(), 1);
    let err = fails_fast_on(&path, &["db", "backup", &backup]);
    assert!(err.contains("exists already"), "{err}");
}

/// A PostgreSQL server of this test's own, on a free port in a temporary
/// directory, with password authentication: restarting it disturbs nobody.
struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

const PG_PASSWORD: &str = "s3cret-test";

impl PrivatePg {
    /// Starts one, or says why it cannot (no PostgreSQL installed).
    fn start() -> Result<PrivatePg, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| format!("no /usr/lib/postgresql: {e}"))?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .ok_or("no initdb under /usr/lib/postgresql")?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let pg = PrivatePg {
            dir,
            bin,
            port: free_port(),
        };
        std::fs::write(pg.dir.path().join("pw"), PG_PASSWORD).map_err(|e| e.to_string())?;
        if as_root() {
            chown_tree(pg.dir.path())?;
        }
        pg.tool(
            "initdb",
            &[
                "-D",
                "data",
                "-U",
                "prodops",
                "--pwfile=pw",
                "--auth=scram-sha-256",
            ],
        )?;
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n",
            pg.port,
            pg.dir.path().display()
        );
        let conf_path = pg.dir.path().join("data/postgresql.conf");
        let mut text = std::fs::read_to_string(&conf_path).map_err(|e| e.to_string())?;
        text.push_str(&conf);
        std::fs::write(&conf_path, text).map_err(|e| e.to_string())?;
        pg.ctl("start")?;
        Ok(pg)
    }

    /// The URL of database `database` as user prodops with `password`.
    fn url(&self, password: &str, database: &str) -> String {
        format!(
            "postgres://prodops:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    fn ctl(&self, action: &str) -> Result<(), String> {
        self.tool(
            "pg_ctl",
            &["-D", "data", "-l", "log", "-m", "fast", "-w", action],
        )
    }

    /// Runs a PostgreSQL tool in the directory, as nobody when this is root
    /// (PostgreSQL refuses to run as root).
    fn tool(&self, name: &str, args: &[&str]) -> Result<(), String> {
        let mut cmd = Command::new(self.bin.join(name));
        cmd.args(args).current_dir(self.dir.path());
        if as_root() {
            cmd.uid(65534).gid(65534);
        }
        let out = cmd.output().map_err(|e| format!("{name}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{name} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = self.tool("pg_ctl", &["-D", "data", "-m", "immediate", "-w", "stop"]);
    }
}

fn chown_tree(dir: &Path) -> Result<(), String> {
    for entry in walk(dir) {
        std::os::unix::fs::chown(&entry, Some(65534), Some(65534)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            all.extend(walk(&e.path()));
        } else {
            all.push(e.path());
        }
    }
    all
}

fn private_pg() -> Option<PrivatePg> {
    match PrivatePg::start() {
        Ok(pg) => Some(pg),
        Err(why) => {
            common::skipping(&format!("cannot start a private PostgreSQL: {why}"));
            None
        }
    }
}

#[test]
fn postgres_wrong_password_is_authentication_failed_and_a_missing_database_is_named() {
    let Some(pg) = private_pg() else {
        return;
    };
    let err = fails_fast_on(&pg.url("wrong", "postgres"), &["request", "list"]);
    assert_eq!(
        err.trim(),
        format!("error: PostgreSQL at 127.0.0.1:{}: authentication failed for user `prodops` (check the password in the URL, PGPASSWORD or ~/.pgpass)", pg.port)
    );
    assert!(!err.contains("wrong"), "CP1: no password shown");
    let err = fails_fast_on(&pg.url(PG_PASSWORD, "nope"), &["request", "list"]);
    assert!(
        err.contains(&format!(
            "PostgreSQL at 127.0.0.1:{}: database `nope` does not exist",
            pg.port
        )),
        "{err}"
    );
    let err = fails_fast_on(&pg.url(PG_PASSWORD, "postgres"), &["request", "list"]);
    assert!(
        err.contains("holds no prodops schema yet: `prodops db init` makes one"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_worker_and_console_outlive_a_postgres_restart_losing_and_repeating_no_job() {
    use prodops::tui::app::App;
    use prodops::tui::data::{self, View};
    let Some(pg) = private_pg() else {
        return;
    };
    let url = pg.url(PG_PASSWORD, "postgres");
    let store = prodops::store::Store::create(&url).await.unwrap();
    let w = common::register(&store).await;
    let work = tempfile::tempdir().unwrap();
    let slow = common::script(work.path(), "slow.sh", "sleep 3");
    let request = common::gen_request(work.path(), "r.toml", &slow.display().to_string(), 4);
    let id = common::file_and_approve(&w, &request).await;
    let log = work.path().join("worker.log");
    let mut worker = prodops_cmd(&url, &["--batch", "--slots", "4", "--work-dir"])
        .arg(work.path())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let local = work.path().join("local");
    let deadline = Instant::now() + Duration::from_secs(60);
    while prodops::batch::local::launches(&local).len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        prodops::batch::local::launches(&local).len(),
        4,
        "all submitted"
    );

    pg.ctl("stop").unwrap();
    let mut app = App::new(
        prodops::tui::keymap::Keymap::default_map(),
        prodops::tui::theme::Theme::default_theme(),
        "root",
        "pg",
        true,
    );
    let down = data::load(&w.root, None, &View::default()).await;
    assert!(down.unreachable, "{:?}", down.error);
    app.on_snapshot(down);
    let header = app.staleness().unwrap_or_default();
    assert!(
        header.starts_with("database unreachable since ") && header.ends_with(", retrying"),
        "{header}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("worker: database unreachable")
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pg.ctl("start").unwrap();

    let status = tokio::task::spawn_blocking(move || worker.wait())
        .await
        .unwrap()
        .unwrap();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{said}");
    assert_eq!(
        said.matches("worker: database unreachable").count(),
        1,
        "{said}"
    );
    assert_eq!(
        said.matches("worker: database reachable again").count(),
        1,
        "{said}"
    );

    let up = data::load(&w.root, None, &View::default()).await;
    app.on_snapshot(up);
    assert_eq!(app.unreachable_since, None, "the header no longer says so");
    let c = w.ed.campaign(id).await.unwrap();
    assert_eq!(c.request.state, "succeeded");
    let jobs = w.ed.jobs(id, &[], 100, 0).await.unwrap();
    assert_eq!(common::states(&jobs), ["succeeded"; 4]);
    let mut started = prodops::batch::local::launches(&local);
    started.sort();
    started.dedup();
    assert_eq!(started.len(), 4, "no job started twice");
    store.close().await;
}
