//! The command line as a script or a person uses it: the README flow, `--json`
//! shapes, and exit codes (0 ok, 1 error, 2 usage, 3 forbidden).

mod common;

use common::{all_dbs, TestDb};
use std::process::{Command, Output};

fn prodops(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prodops"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PRODOPS_DB", &db.url)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(db: &TestDb, args: &[&str]) -> String {
    let out = prodops(db, args);
    assert!(
        out.status.success(),
        "{}: prodops {args:?} failed: {}",
        db.label,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(db: &TestDb, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(db, &all)).expect("valid JSON")
}

/// Sets up what README's first steps set up: the caller becomes admin, nova exists.
fn readme_setup(db: &TestDb) {
    let me = whoami::username();
    ok(db, &["user", "add", &me, "--role", "operator"]);
    ok(db, &["experiment", "add", "nova"]);
    ok(
        db,
        &[
            "user",
            "add",
            &me,
            "--role",
            "approver",
            "--experiment",
            "nova",
        ],
    );
    ok(
        db,
        &[
            "user",
            "add",
            "ed",
            "--role",
            "experimenter",
            "--experiment",
            "nova",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_flow_files_approves_and_shows_a_campaign_as_json() {
    for db in all_dbs().await {
        readme_setup(&db);
        let filed = json(&db, &["request", "new", "examples/mc-request.toml"]);
        assert_eq!(filed["state"], "pending_approval", "{}", db.label);
        let id = filed["id"].as_str().unwrap().to_string();
        let pending = json(&db, &["request", "list", "--pending"]);
        assert_eq!(pending[0]["id"], id.as_str());
        json(&db, &["approve", &id, "--reason", "physics ok"]);
        let c = json(&db, &["campaign", "show", &id]);
        assert_eq!(c["state"], "approved");
        assert_eq!(c["progress"]["unit"], "events");
        assert_eq!(
            c["progress"]["planned"], 3000,
            "M1: 1000 events through gen, sim and reco"
        );
        assert_eq!(c["progress"]["percent"], 0.0);
        let subtasks: Vec<(&str, &str)> = c["tasks"][0]["subtasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["name"].as_str().unwrap(), s["state"].as_str().unwrap()))
            .collect();
        assert_eq!(
            subtasks,
            [("gen", "ready"), ("sim", "waiting"), ("reco", "waiting")]
        );
        let history = json(&db, &["history", &id]);
        assert_eq!(history.as_array().unwrap().len(), 3);
        assert_eq!(history[2]["reason"], "physics ok");
        let human = ok(&db, &["campaign", "show", &id]);
        assert!(human.contains("S2 sim  waiting  after gen"), "{human}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_json_shape_is_stable() {
    let db = common::sqlite();
    readme_setup(&db);
    let r = json(&db, &["request", "new", "examples/mc-request.toml"]);
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "approved_at",
            "approved_by",
            "approved_hash",
            "cloned_from",
            "consolidated_into",
            "created_at",
            "creator",
            "description",
            "experiment",
            "id",
            "kind",
            "physics_group",
            "priority",
            "spec",
            "spec_hash",
            "state",
            "state_since",
            "title"
        ]
    );
    assert_eq!(r["spec"]["stages"][0]["generation"]["seed_base"], 20261122);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_are_0_ok_1_error_2_usage_3_forbidden() {
    let db = common::sqlite();
    readme_setup(&db);
    let filed = json(&db, &["request", "new", "examples/mc-request.toml"]);
    let id = filed["id"].as_str().unwrap();

    let usage = prodops(&db, &["approve"]);
    assert_eq!(
        usage.status.code(),
        Some(2),
        "missing argument is a usage error"
    );
    let usage = prodops(&db, &["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2));

    let forbidden = prodops(&db, &["--as", "ed", "approve", id]);
    assert_eq!(forbidden.status.code(), Some(3));
    let err = String::from_utf8(forbidden.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: forbidden: root as ed may not approve C1"),
        "{err}"
    );

    let error = prodops(&db, &["reject", id, "--reason", ""]);
    assert_eq!(error.status.code(), Some(1));
    let missing = prodops(&db, &["request", "show", "C99"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(missing.stderr).unwrap().trim(),
        "error: request C99 does not exist"
    );
    let bad_id = prodops(&db, &["history", "X1"]);
    assert_eq!(
        bad_id.status.code(),
        Some(2),
        "an unparsable id is a usage error"
    );

    assert_eq!(prodops(&db, &["approve", id]).status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp1_only_admins_may_act_as_another_user_and_both_names_are_audited() {
    use prodops::model::role::{Grant, Role};
    use prodops::ops::{Actor, Ops};
    for db in all_dbs().await {
        let store = prodops::store::Store::open(&db.url).await.unwrap();
        let boss = Ops::new(store.clone(), Actor::named("boss"));
        let op = Grant {
            role: Role::Operator,
            experiment: "*".into(),
            kind: None,
        };
        boss.user_add("boss", &op, None, None).await.unwrap();
        boss.user_add("ed", &op, None, None).await.unwrap();

        let refused = prodops(&db, &["--as", "ed", "request", "list"]);
        assert_eq!(
            refused.status.code(),
            Some(3),
            "{}: a non-admin cannot act as another user",
            db.label
        );
        let me = whoami::username();
        let admin = Grant {
            role: Role::Admin,
            experiment: "*".into(),
            kind: None,
        };
        boss.user_add(&me, &admin, None, None).await.unwrap();
        ok(&db, &["--as", "ed", "experiment", "list"]);
        let err = prodops(&db, &["--as", "ed", "experiment", "add", "dune"]);
        assert_eq!(
            err.status.code(),
            Some(3),
            "acting as ed gives ed's roles, not the admin's"
        );

        let rows = prodops::store::audit::recent(store.pool(), 50)
            .await
            .unwrap();
        let seen: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {} {} {}", r.user, r.action, r.target, r.allowed))
            .collect();
        assert!(
            seen.contains(&format!("{me} manage_users ed false")),
            "{seen:?}"
        );
        assert!(
            seen.contains(&format!("{me} as ed manage_experiments dune false")),
            "{seen:?}"
        );
        store.close().await;
    }
}

/// `prodops demo` with a home of its own; `path` is the PATH it sees.
fn demo(home: &std::path::Path, path: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prodops"))
        .env_remove("PRODOPS_DB")
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("PATH", path)
        .args(args)
        .output()
        .unwrap()
}

fn demo_db(home: &std::path::Path) -> String {
    home.join("data/prodops/demo/demo.db").display().to_string()
}

#[test]
fn readme_first_command_demo_runs_the_example_campaign_to_succeeded_with_paced_visible_stages() {
    let home = tempfile::tempdir().unwrap();
    let out = demo(
        home.path(),
        "/usr/bin:/bin",
        &["--json", "demo", "--batch", "--pace", "0.2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["state"], "succeeded");
    assert_eq!(c["progress"]["percent"], 100.0);
    let subtasks = c["tasks"][0]["subtasks"].as_array().unwrap();
    assert_eq!(subtasks.len(), 3);
    assert!(
        subtasks.iter().all(|s| s["state"] == "succeeded"),
        "{subtasks:?}"
    );
    let db = demo_db(home.path());
    assert!(std::path::Path::new(&db).exists());
    let db = common::sqlite_at(&db);
    let shown = json(&db, &["request", "show", "C1"]);
    for stage in shown["spec"]["stages"].as_array().unwrap() {
        assert_eq!(
            stage["executable"]["script"]["args"],
            serde_json::json!(["--pace", "0.2"]),
            "the demo's request paces every stage: {stage}"
        );
    }
    let job = json(&db, &["job", "J1"]);
    let paced: Vec<(&str, i64)> = job["stages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| ["generate", "write"].contains(&s["name"].as_str().unwrap()))
        .map(|s| (s["name"].as_str().unwrap(), s["wall_ms"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        paced.len(),
        2,
        "the generator's steps are job stages: {job}"
    );
    assert!(
        paced.iter().all(|(_, ms)| *ms >= 150),
        "each lasts about the pace (0.2 s, read from the script's output): {paced:?}"
    );
}

#[test]
fn a_second_demo_says_it_adds_another_campaign_and_only_setup_goes_unpaced() {
    let home = tempfile::tempdir().unwrap();
    let first = demo(home.path(), "/usr/bin:/bin", &["demo", "--setup-only"]);
    assert!(first.status.success());
    assert!(!String::from_utf8_lossy(&first.stderr).contains("another campaign"));
    let again = demo(
        home.path(),
        "/usr/bin:/bin",
        &["--json", "demo", "--batch", "--pace", "0"],
    );
    assert!(again.status.success(), "the demo can be run twice");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("demo: the demo database already holds C1; this adds another campaign, C2"),
        "{stderr}"
    );
    let c: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        (c["id"].as_str(), c["state"].as_str()),
        (Some("C2"), Some("succeeded"))
    );
    let third = demo(
        home.path(),
        "/usr/bin:/bin",
        &["demo", "--setup-only", "--pace", "1.5"],
    );
    assert!(String::from_utf8_lossy(&third.stderr)
        .contains("already holds C1, C2; this adds another campaign, C3"));
    let db = common::sqlite_at(&demo_db(home.path()));
    let args = |id: &str| {
        json(&db, &["request", "show", id])["spec"]["stages"][0]["executable"]["script"]["args"]
            .clone()
    };
    assert_eq!(
        args("C1"),
        serde_json::json!([]),
        "--setup-only alone runs flat out (tests use it)"
    );
    assert_eq!(args("C3"), serde_json::json!(["--pace", "1.5"]));
}

#[test]
fn demo_hints_name_the_running_binary_unless_prodops_on_path_is_it() {
    let home = tempfile::tempdir().unwrap();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_prodops")).unwrap();
    let hint = |path: &str| {
        let out = demo(home.path(), path, &["demo", "--setup-only"]);
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let without = hint("/usr/bin:/bin");
    assert!(
        without.contains(&format!("look around with `{} --db ", exe.display())),
        "{without}"
    );
    assert!(
        without.contains("`cargo install --locked --path .`"),
        "{without}"
    );
    let dir = exe.parent().unwrap().display().to_string();
    let with = hint(&format!("{dir}:/usr/bin:/bin"));
    assert!(with.contains("look around with `prodops --db "), "{with}");
    assert!(!with.contains("cargo install"), "{with}");
}

#[test]
fn output_piped_into_a_reader_that_goes_away_ends_quietly() {
    let db = common::sqlite();
    readme_setup(&db);
    for _ in 0..3 {
        ok(&db, &["request", "new", "examples/mc-request.toml"]);
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_prodops"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PRODOPS_DB", &db.url)
        .args(["request", "list"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "nothing but silence: {stderr}");
}

#[test]
fn bench_runs_named_scenarios_in_rounds_and_reports_medians_as_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_prodops"))
        .args([
            "--json",
            "bench",
            "dag-schedule",
            "ingest",
            "--quick",
            "--rounds",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["cores"].as_u64().unwrap() >= 1);
    let names: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dag-schedule", "ingest"]);
    for scenario in report["scenarios"].as_array().unwrap() {
        assert_eq!(scenario["rounds"], 2);
        for figure in scenario["figures"].as_array().unwrap() {
            assert!(figure["value"].as_f64().unwrap() > 0.0, "{figure}");
            assert!(figure["target"].is_null(), "a quick run judges no target");
        }
    }
    let ingest = &report["scenarios"][1];
    assert!(ingest["notes"][0]
        .as_str()
        .unwrap()
        .starts_with("PostgreSQL skipped"));
}

#[test]
fn bench_refuses_an_unknown_scenario_naming_the_choices() {
    let out = Command::new(env!("CARGO_BIN_EXE_prodops"))
        .args(["bench", "dag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dag-1000") && stderr.contains("console-1m"),
        "{stderr}"
    );
}

#[test]
fn config_validate_names_the_file_line_and_key_of_a_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[worker]\nslots = 2\n[slurm]\nwork_dir = \"/shared/slurm\"\n",
    )
    .unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[worker]\nslots = 2\n\n[slurm]\nwork_dir = \"/s\"\npoll_secs = 3\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_prodops"))
            .args(args)
            .env_remove("PRODOPS_CONFIG")
            .output()
            .unwrap()
    };
    let ok = run(&["config", "validate", good.to_str().unwrap()]);
    assert!(ok.status.success());
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout).trim(),
        format!("ok: {}", good.display())
    );
    let refused = run(&["config", "validate", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: {}:6: slurm.poll_secs: unknown field `poll_secs`",
            bad.display()
        )),
        "{stderr}"
    );
    let shown = run(&[
        "--json",
        "--config",
        good.to_str().unwrap(),
        "config",
        "show",
    ]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["config"]["slurm"]["work_dir"], "/shared/slurm");
    assert_eq!(shown["config"]["worker"]["slots"], 2);
}

fn run_plain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prodops"))
        .env_remove("PRODOPS_DB")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn completions_for_bash_zsh_and_fish_come_from_the_real_commands_and_a_bad_shell_is_a_usage_error()
{
    let bash = run_plain(&["completions", "bash"]);
    assert!(bash.status.success());
    let bash = String::from_utf8(bash.stdout).unwrap();
    for word in ["request", "approve", "campaign", "--pace", "--toml"] {
        assert!(bash.contains(word), "bash completions name `{word}`");
    }
    for shell in ["zsh", "fish"] {
        let out = run_plain(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("approve"), "{shell}: {text}");
    }
    let bad = run_plain(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("invalid value 'tcsh'") && stderr.contains("bash"),
        "{stderr}"
    );
}

#[test]
fn man_prints_a_roff_page_that_opens_with_th_and_names_the_commands() {
    let out = run_plain(&["man"]);
    assert!(out.status.success());
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(
        page.starts_with(".TH prodops 1 "),
        "{}",
        &page[..80.min(page.len())]
    );
    for command in [
        "prodops\\-request(1)",
        "prodops\\-approve(1)",
        "prodops\\-demo(1)",
        "prodops\\-completions(1)",
    ] {
        assert!(page.contains(command), "the page names {command}");
    }
    let dir = tempfile::tempdir().unwrap();
    let pages = run_plain(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(pages.status.success());
    let edit = std::fs::read_to_string(dir.path().join("prodops-request-edit.1")).unwrap();
    assert!(
        edit.starts_with(".TH prodops-request-edit 1 ") && edit.contains("VISUAL"),
        "{edit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_flags_without_batch_and_a_typo_in_db_are_refused_in_one_line() {
    let db = common::sqlite();
    readme_setup(&db);
    for flags in [&["--wait"][..], &["--once"]] {
        let out = prodops(&db, flags);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {said}");
        assert!(
            said.contains("--batch"),
            "{flags:?} names what it needs: {said}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("prodps.db");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prodops"))
        .arg("--db")
        .arg(&typo)
        .arg("--batch")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.contains("db init"),
        "the line says how to make one: {said}"
    );
    assert!(!typo.exists(), "a typo starts no new installation");
}
