//! Malformed request files (P4, J15): `prodops request new FILE` refuses every
//! one of them with exactly one line on stderr that names the file and the
//! field to fix, exits 1, and writes nothing, on SQLite and on PostgreSQL.
//!
//! The cases live in `tests/fixtures/bad_requests/`: each file is a valid
//! Monte-Carlo request broken in one way, and `expected.tsv` lists one line per
//! file: `file<TAB>field<TAB>substring`. The substring may be empty; ` || `
//! separates alternatives of which one must appear (a cycle may be reported
//! from any of its stages).

mod common;

use common::{all_dbs, snapshot, world};
use prodops::model::role::{Grant, Role, ALL_EXPERIMENTS};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Fewest cases the manifest may hold.
const MIN_CASES: usize = 20;

/// One line of `expected.tsv`.
#[derive(Debug)]
struct Case {
    file: String,
    field: String,
    /// One of these must appear in the message; empty means no requirement.
    substrings: Vec<String>,
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad_requests")
}

/// Reads `expected.tsv`, refusing malformed or duplicate lines.
fn manifest() -> Vec<Case> {
    let path = fixture_dir().join("expected.tsv");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: cannot be read: {e}", path.display()));
    let mut seen = BTreeSet::new();
    let mut cases = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let columns: Vec<&str> = line.split('\t').collect();
        let [file, field, substring] = columns[..] else {
            panic!(
                "expected.tsv line {}: want 3 tab-separated columns, got {}: {line:?}",
                n + 1,
                columns.len()
            );
        };
        assert!(
            !file.is_empty() && !field.is_empty(),
            "expected.tsv line {}: file and field must not be empty: {line:?}",
            n + 1
        );
        assert!(
            seen.insert(file.to_string()),
            "expected.tsv line {}: {file} is listed twice",
            n + 1
        );
        cases.push(Case {
            file: file.to_string(),
            field: field.to_string(),
            substrings: substring
                .split(" || ")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        });
    }
    cases
}

/// Every fixture file: everything in the directory but the manifest and `scripts/`.
fn fixture_files() -> BTreeSet<String> {
    std::fs::read_dir(fixture_dir())
        .expect("the fixture directory exists")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "expected.tsv" && name != "scripts")
        .collect()
}

/// Runs `prodops --db URL --as ed request new FILE`.
///
/// Blocking is fine here: the test awaits nothing while the binary runs.
fn request_new(url: &str, file: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_prodops"))
        .arg("--db")
        .arg(url)
        .args(["--as", "ed", "request", "new"])
        .arg(file)
        .env_remove("PRODOPS_DB")
        .output()
        .expect("the prodops binary runs")
}

/// `--as` needs an admin; `world` makes `root` one, so also the OS user if it differs.
async fn make_os_user_admin(w: &common::World) {
    let me = whoami::username();
    if me != "root" {
        let admin = Grant {
            role: Role::Admin,
            experiment: ALL_EXPERIMENTS.into(),
            kind: None,
        };
        w.root.user_add(&me, &admin, None, None).await.unwrap();
    }
}

/// What is wrong with the binary's answer to one fixture, if anything.
fn problems(case: &Case, path: &Path, out: &std::process::Output) -> Vec<String> {
    let mut wrong = Vec::new();
    let shown = path.display().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(1) {
        wrong.push(format!("exit code is {:?}, want 1", out.status.code()));
    }
    if !stdout.is_empty() {
        wrong.push(format!("stdout is not empty: {stdout:?}"));
    }
    let lines: Vec<&str> = stderr.lines().collect();
    if lines.len() != 1 || !stderr.ends_with('\n') || lines[0].trim().is_empty() {
        wrong.push(format!(
            "stderr is not exactly one non-empty line: {stderr:?}"
        ));
        return wrong;
    }
    let line = lines[0];
    if !line.starts_with("error: ") {
        wrong.push("stderr does not start with `error: `".into());
    }
    if !line.contains(&shown) {
        wrong.push(format!("stderr does not name the file {shown}"));
    }
    let field = format!("{}: ", case.field);
    if !line.contains(&field) {
        wrong.push(format!("stderr does not name the field `{}`", case.field));
    }
    let prefix = format!("error: {shown}: {field}");
    match line.strip_prefix(&prefix) {
        None => wrong.push(format!("stderr does not start with `{prefix}`")),
        Some(message) => {
            if message.trim().is_empty() {
                wrong.push("the message after the field is empty".into());
            }
            if !case.substrings.is_empty() && !case.substrings.iter().any(|s| message.contains(s)) {
                wrong.push(format!(
                    "the message does not contain {}",
                    case.substrings
                        .iter()
                        .map(|s| format!("{s:?}"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
            }
        }
    }
    if !wrong.is_empty() {
        wrong.push(format!("stderr was: {line}"));
    }
    wrong
}

#[test]
fn p4_manifest_lists_every_bad_request_fixture_and_at_least_20() {
    let cases = manifest();
    assert!(
        cases.len() >= MIN_CASES,
        "expected.tsv lists {} cases, want at least {MIN_CASES}",
        cases.len()
    );
    let listed: BTreeSet<String> = cases.iter().map(|c| c.file.clone()).collect();
    let present = fixture_files();
    let unlisted: Vec<&String> = present.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "fixtures missing from expected.tsv (they would be skipped): {unlisted:?}"
    );
    let missing: Vec<&String> = listed.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "expected.tsv lists files that do not exist: {missing:?}"
    );
    let script = fixture_dir().join("scripts/ok.sh");
    assert!(
        script.is_file(),
        "{} must exist: the fixtures refer to it",
        script.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p4_j15_every_malformed_request_is_refused_with_its_field_and_nothing_written() {
    let cases = manifest();
    assert!(cases.len() >= MIN_CASES, "too few cases in expected.tsv");
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for db in all_dbs().await {
        let w = world(&db).await;
        make_os_user_admin(&w).await;
        for case in &cases {
            let path = fixture_dir().join(&case.file);
            let before = snapshot(&w.store).await;
            let out = request_new(&db.url, &path);
            let after = snapshot(&w.store).await;
            let mut wrong = problems(case, &path, &out);
            if before != after {
                wrong.push(format!(
                    "the database changed: before {before:?}, after {after:?}"
                ));
            }
            if !wrong.is_empty() {
                failures.push(format!(
                    "{} [{}]:\n    {}",
                    case.file,
                    db.label,
                    wrong.join("\n    ")
                ));
            }
        }
        w.store.close().await;
        checked.push(db.label);
    }
    assert!(
        failures.is_empty(),
        "{} of {} checks ({} fixtures on {checked:?}) did not refuse as expected:\n{}",
        failures.len(),
        cases.len() * checked.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Control for the test above: the same command with a valid file does write,
/// so an unchanged snapshot there means the refusal, not a harness that cannot write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p4_j15_control_the_same_command_files_the_valid_example_request() {
    for db in all_dbs().await {
        let w = world(&db).await;
        make_os_user_admin(&w).await;
        let before = snapshot(&w.store).await;
        let out = request_new(&db.url, &common::mc_request());
        let after = snapshot(&w.store).await;
        w.store.close().await;
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: the valid example was refused: {}",
            db.label,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{}: stderr: {}",
            db.label,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(
            before, after,
            "{}: filing the valid example wrote nothing",
            db.label
        );
    }
}
