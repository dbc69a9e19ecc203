//! A request as its request file (TOML) and `request edit`: in the user's
//! editor until the text is valid, or from a file, including what `request
//! show --json` and `--toml` print (X3: the same text gives the same hash).

mod common;

use common::{all_dbs, TestDb};
use std::path::Path;
use std::process::{Command, Output};

fn prodops(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prodops"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("PRODOPS_DB", &db.url)
        .env_remove("VISUAL")
        .env_remove("EDITOR")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

fn ok(db: &TestDb, args: &[&str]) -> String {
    ok_with(db, args, &[])
}

fn ok_with(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = prodops(db, args, env);
    assert!(
        out.status.success(),
        "{}: prodops {args:?} failed: {}",
        db.label,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn shown(db: &TestDb, id: &str) -> serde_json::Value {
    serde_json::from_str(&ok(db, &["--json", "request", "show", id])).unwrap()
}

/// The caller may file, approve and edit in nova; C1 is the example MC request.
fn filed_example(db: &TestDb) {
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
    ok(db, &["request", "new", "examples/mc-request.toml"]);
}

/// An editor: a shell script in a folder whose name has a space, run as
/// `/bin/sh '<folder>/edit it.sh' FILE`; it counts its runs in `runs`.
fn editor(dir: &Path, body: &str) -> String {
    let folder = dir.join("my editor");
    std::fs::create_dir_all(&folder).unwrap();
    let script = folder.join("edit it.sh");
    let runs = dir.join("runs");
    std::fs::write(
        &script,
        format!(
            "n=$(( $(cat '{runs}' 2>/dev/null || echo 0) + 1 ))\necho $n > '{runs}'\n{body}\n",
            runs = runs.display()
        ),
    )
    .unwrap();
    format!("/bin/sh '{}'", script.display())
}

fn runs(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn x3_request_edit_opens_the_request_in_visual_before_editor_and_saves_the_change() {
    let db = common::sqlite();
    filed_example(&db);
    let before = shown(&db, "C1");
    let dir = tempfile::tempdir().unwrap();
    let visual = editor(
        dir.path(),
        r#"sed -i 's/^events_per_job = 100$/events_per_job = 50/' "$1""#,
    );
    let out = ok_with(
        &db,
        &["--json", "request", "edit", "C1"],
        &[("VISUAL", &visual), ("EDITOR", "/bin/false")],
    );
    let edited: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(runs(dir.path()), "1");
    assert_ne!(edited["spec_hash"], before["spec_hash"]);
    assert_eq!(
        edited["spec"]["stages"][0]["generation"]["events_per_job"],
        50
    );
    assert_eq!(edited["title"], before["title"]);
}

#[test]
fn x3_an_invalid_save_reopens_the_editor_with_the_error_on_top_and_the_next_valid_save_lands() {
    let db = common::sqlite();
    filed_example(&db);
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen");
    let script = editor(
        dir.path(),
        &format!(
            r#"if [ "$n" = 1 ]; then sed -i 's/^events = 1000$/events = -5/' "$1"
else head -n 2 "$1" > '{}'; sed -i 's/^events = -5$/events = 2000/' "$1"; fi"#,
            seen.display()
        ),
    );
    let out = prodops(&db, &["request", "edit", "C1"], &[("EDITOR", &script)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(runs(dir.path()), "2", "opened again after the invalid save");
    let top = std::fs::read_to_string(&seen).unwrap();
    assert!(
        top.starts_with("# prodops: not saved: stage[0].events: must be between 1 and"),
        "the error on top: {top}"
    );
    assert_eq!(
        shown(&db, "C1")["spec"]["stages"][0]["generation"]["events"],
        2000
    );
}

#[test]
fn x3_saving_unchanged_or_quitting_says_edit_cancelled_and_writes_nothing() {
    let db = common::sqlite();
    filed_example(&db);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = rt.block_on(prodops::store::Store::open(&db.url)).unwrap();
    let before = rt.block_on(common::snapshot(&store));
    let dir = tempfile::tempdir().unwrap();
    for body in ["true", r#"echo '# a comment' >> "$1""#] {
        let out = prodops(
            &db,
            &["request", "edit", "C1"],
            &[("EDITOR", &editor(dir.path(), body))],
        );
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            "edit cancelled: nothing changed"
        );
    }
    assert_eq!(rt.block_on(common::snapshot(&store)), before);
    let failed = prodops(&db, &["request", "edit", "C1"], &[("EDITOR", "/bin/false")]);
    assert_eq!(
        failed.status.code(),
        Some(1),
        "an editor that fails saves nothing"
    );
    let unsplittable = prodops(&db, &["request", "edit", "C1"], &[("EDITOR", "vi 'x")]);
    let stderr = String::from_utf8_lossy(&unsplittable.stderr);
    assert!(
        stderr.starts_with("error: EDITOR: `vi 'x` cannot be split"),
        "{stderr}"
    );
    assert_eq!(rt.block_on(common::snapshot(&store)), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x3_request_show_json_and_toml_are_accepted_back_by_request_edit_file() {
    for db in all_dbs().await {
        filed_example(&db);
        let dir = tempfile::tempdir().unwrap();
        let json_file = dir.path().join("c1.json");
        std::fs::write(&json_file, ok(&db, &["--json", "request", "show", "C1"])).unwrap();
        let json_path = json_file.to_str().unwrap();
        let hash = shown(&db, "C1")["spec_hash"].clone();
        let same = ok(
            &db,
            &["--json", "request", "edit", "C1", "--file", json_path],
        );
        let same: serde_json::Value = serde_json::from_str(&same).unwrap();
        assert_eq!(
            same["spec_hash"], hash,
            "{}: the shown JSON is the same request",
            db.label
        );

        let retitled = std::fs::read_to_string(&json_file)
            .unwrap()
            .replace("Cosmic MC, FHC, 1000 events", "Cosmic MC, retitled");
        std::fs::write(&json_file, retitled).unwrap();
        ok(&db, &["request", "edit", "C1", json_path]);
        assert_eq!(shown(&db, "C1")["title"], "Cosmic MC, retitled");

        let toml = ok(&db, &["request", "show", "C1", "--toml"]);
        let toml_file = dir.path().join("c1.toml");
        std::fs::write(&toml_file, &toml).unwrap();
        let refiled = ok(
            &db,
            &["--json", "request", "new", toml_file.to_str().unwrap()],
        );
        let refiled: serde_json::Value = serde_json::from_str(&refiled).unwrap();
        assert_eq!(
            refiled["spec_hash"], hash,
            "{}: the TOML files as the same spec",
            db.label
        );

        let mut stdin_edit = Command::new(env!("CARGO_BIN_EXE_prodops"))
            .env("PRODOPS_DB", &db.url)
            .args(["request", "edit", "C1", "--file", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        stdin_edit
            .stdin
            .take()
            .unwrap()
            .write_all(
                toml.replace("seed_base = 20261122", "seed_base = 7")
                    .as_bytes(),
            )
            .unwrap();
        assert!(stdin_edit.wait().unwrap().success());
        assert_eq!(
            shown(&db, "C1")["spec"]["stages"][0]["generation"]["seed_base"],
            7
        );
    }
}

#[test]
fn x3_request_edit_refuses_a_file_that_changes_the_priority_and_names_the_fix() {
    let db = common::sqlite();
    filed_example(&db);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c1.toml");
    let toml = ok(&db, &["request", "show", "C1", "--toml"]);
    std::fs::write(&file, toml.replace("priority = 50", "priority = 80")).unwrap();
    let out = prodops(
        &db,
        &["request", "edit", "C1", "--file", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: priority: `request edit` keeps C1's priority 50")
            && stderr.contains("prodops priority C1 80"),
        "{stderr}"
    );
}
