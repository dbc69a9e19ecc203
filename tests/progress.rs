//! Progress (M1) has one definition: units done of units planned, with units
//! failed for good beside them. `campaign show`, `request list`, the console's
//! campaign lines and the campaign detail must say the same of one database,
//! on SQLite and PostgreSQL.

mod common;

use common::{all_dbs, file_and_approve, local_worker, mc_request, world, TestDb};
use prodops::model::ids::{CampaignId, JobId};
use prodops::model::progress::{Progress, Unit};
use prodops::worker::Throttles;
use std::process::Command;

fn cli_json(db: &TestDb, args: &[&str]) -> serde_json::Value {
    let out = cli(db, &[&["--json"], args].concat());
    serde_json::from_str(&out).expect("valid JSON")
}

fn cli(db: &TestDb, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_prodops"))
        .env("PRODOPS_DB", &db.url)
        .args(args)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{}: prodops {args:?}: {}",
        db.label,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn exec(store: &prodops::store::Store, sql: &str) {
    sqlx::query(sql).execute(store.pool()).await.unwrap();
}

/// Splits the example campaign's `gen` into its 10 jobs without submitting
/// any, then sets them to: 6 succeeded, J7 failed and resubmitted (so its
/// retry is the current attempt), J8 failed for good, J9 running, J10 created.
async fn campaign_in_flight(w: &common::World) -> CampaignId {
    let id = file_and_approve(w, &mc_request()).await;
    let work = tempfile::tempdir().unwrap();
    let nothing_in_flight = Throttles {
        per_experiment: Some(0),
        ..Throttles::default()
    };
    let worker = local_worker(&w.store, work.path(), 1, nothing_in_flight).await;
    worker.pass().await.unwrap();
    exec(
        &w.store,
        "UPDATE jobs SET state = 'succeeded' WHERE id <= 6",
    )
    .await;
    exec(
        &w.store,
        "UPDATE jobs SET state = 'failed' WHERE id IN (7, 8)",
    )
    .await;
    exec(&w.store, "UPDATE jobs SET state = 'running' WHERE id = 9").await;
    w.root.resubmit(JobId(7).entity(), "test").await.unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m1_campaign_show_request_list_console_lines_and_detail_agree_on_progress() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let id = campaign_in_flight(&w).await;
        let pending: CampaignId =
            w.ed.request_new(&mc_request())
                .await
                .unwrap()
                .summary
                .id
                .parse()
                .unwrap();
        let expected = Progress {
            unit: Unit::Events,
            done: 600,
            planned: 3000,
            failed: 100,
            estimated: false,
        };

        let detail = w.gus.campaign(id).await.unwrap();
        assert_eq!(detail.progress, expected, "{}: the detail", db.label);
        let lines = w.gus.campaign_lines().await.unwrap();
        let line = |c: CampaignId| lines.iter().find(|l| l.id == c.0).unwrap().progress;
        assert_eq!(line(id), expected, "{}: the console's line", db.label);
        assert_eq!(
            line(pending),
            Progress::nothing(Unit::Events),
            "{}: a pending request plans nothing until it is approved",
            db.label
        );

        let expected_json = serde_json::to_value(expected).unwrap();
        let shown = cli_json(&db, &["campaign", "show", &id.to_string()]);
        assert_eq!(shown["progress"], expected_json, "{}", db.label);
        let listed = cli_json(&db, &["request", "list"]);
        let listed = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == id.to_string().as_str())
            .unwrap();
        assert_eq!(listed["progress"], expected_json, "{}", db.label);
        let human = cli(&db, &["campaign", "show", &id.to_string()]);
        assert!(
            human.contains("progress 20.0% (600/3000 events, 100 failed for good)"),
            "{}: {human}",
            db.label
        );
        let table = cli(&db, &["request", "list"]);
        assert!(
            table.contains("20.0% (600/3000 events, 100 failed for good)"),
            "{table}"
        );
        w.store.close().await;
    }
}

/// Applies the migrations up to `version` only, as an older prodops did;
/// returns the URL the database answers on.
async fn migrate_to(db: &TestDb, version: i64) -> String {
    sqlx::any::install_default_drivers();
    let (url, dir) = match db.label {
        "sqlite" => (format!("sqlite://{}?mode=rwc", db.url), "sqlite"),
        _ => (db.url.clone(), "postgres"),
    };
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
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
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m1_jobs_and_subtasks_from_before_progress_was_stored_get_their_units() {
    for db in common::all_blank_dbs().await {
        let url = migrate_to(&db, 5).await;
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        for sql in [
            "INSERT INTO experiments (name, created_at) VALUES ('nova', 0)",
            "INSERT INTO campaigns (experiment_id, kind, title, priority, creator, state, state_since, spec_json, spec_hash, created_at)
             VALUES (1, 'mc', 't', 50, 'ed', 'running', 0, '{}', 'h', 0)",
            "INSERT INTO tasks (campaign_id, name, kind, state, state_since, created_at) VALUES (1, 'mc', 'mc', 'running', 0, 0)",
            r#"INSERT INTO subtasks (task_id, name, state, state_since, spec_json, created_at)
               VALUES (1, 'gen', 'succeeded', 0, '{"name":"gen","generation":{"events":30,"events_per_job":20,"seed_base":1}}', 0)"#,
            r#"INSERT INTO subtasks (task_id, name, state, state_since, spec_json, created_at)
               VALUES (1, 'sim', 'running', 0, '{"name":"sim","generation":null}', 0)"#,
            "INSERT INTO subtask_deps (subtask_id, parent_id) VALUES (2, 1)",
            "INSERT INTO batches (subtask_id, seq, state, state_since, created_at) VALUES (1, 0, 'completed', 0, 0)",
            "INSERT INTO batches (subtask_id, seq, state, state_since, created_at) VALUES (2, 0, 'submitted', 0, 0)",
            r#"INSERT INTO jobs (batch_id, subtask_id, seq, state, state_since, created_at, params_json)
               VALUES (1, 1, 0, 'succeeded', 0, 0, '{"seq":0,"seed":1,"events":20,"first_event":0}')"#,
            r#"INSERT INTO jobs (batch_id, subtask_id, seq, state, state_since, created_at, params_json)
               VALUES (1, 1, 1, 'succeeded', 0, 0, '{"seq":1,"seed":2,"events":10,"first_event":20}')"#,
            "INSERT INTO files (name, path, size_bytes, created_at) VALUES ('a', '/a', 1, 0)",
            "INSERT INTO files (name, path, size_bytes, created_at) VALUES ('b', '/b', 1, 0)",
            "INSERT INTO files (name, path, size_bytes, created_at) VALUES ('c', '/c', 1, 0)",
            r#"INSERT INTO jobs (batch_id, subtask_id, seq, state, state_since, created_at, params_json)
               VALUES (2, 2, 0, 'succeeded', 0, 0, '{"seq":0,"inputs":[1,2]}')"#,
            r#"INSERT INTO jobs (batch_id, subtask_id, seq, state, state_since, created_at, params_json)
               VALUES (2, 2, 1, 'running', 0, 0, '{"seq":1,"inputs":[3]}')"#,
            "INSERT INTO job_inputs (job_id, file_id) VALUES (3, 1)",
            "INSERT INTO job_inputs (job_id, file_id) VALUES (3, 2)",
            "INSERT INTO job_inputs (job_id, file_id) VALUES (4, 3)",
        ] {
            sqlx::query(sql)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{}: {sql}: {e}", db.label));
        }
        pool.close().await;

        let (store, _) = prodops::store::Store::migrate_to_current(&db.url)
            .await
            .unwrap();
        let ops = prodops::ops::Ops::new(store.clone(), prodops::ops::Actor::named("gus"));
        let lines = ops.campaign_lines().await.unwrap();
        let progress = lines[0].progress;
        assert_eq!(
            (progress.done, progress.planned),
            (30 + 20, 30 + 30),
            "{}: gen's 30 events, and sim's 2 of 3 files done as 20 of its 30 events",
            db.label
        );
        store.close().await;
    }
}
