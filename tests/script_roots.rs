//! Where a request's scripts may live (issue 15): only under the roots its
//! experiment's configuration lists (after resolving `..` and symlinks),
//! the refusal naming them; the script's content is locked into the spec,
//! so a change withdraws the approval, and jobs run the approved copy
//! shipped with them, not the live file.

mod common;

use common::{all_dbs, local_worker, pass_until, script, snapshot, world, World};
use prodops::model::ids::CampaignId;
use prodops::model::request_policy::{ExperimentPolicy, Policies};
use prodops::ops::{Ops, OpsError};
use prodops::worker::Throttles;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A production scripts directory and a requester's own directory.
struct Dirs {
    _tmp: tempfile::TempDir,
    prod: PathBuf,
    home: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let (prod, home) = (root.join("prod"), root.join("home"));
    std::fs::create_dir_all(&prod).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    Dirs {
        _tmp: tmp,
        prod,
        home,
    }
}

/// nova may run scripts from `prod` only; no grace period.
fn prod_only(d: &Dirs) -> Policies {
    Policies::new([(
        "nova".to_string(),
        ExperimentPolicy {
            script_roots: vec![d.prod.clone()],
            grace: Duration::ZERO,
        },
    )])
}

/// A one-stage, `jobs`-job MC request in `dir` running `script` with `args`.
fn request(dir: &Path, script: &str, args: &[&str], jobs: u32) -> PathBuf {
    let path = dir.join("req.toml");
    let args: Vec<String> = args
        .iter()
        .map(|a| serde_json::to_string(a).unwrap())
        .collect();
    std::fs::write(
        &path,
        format!(
            "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"t\"\n[defaults]\nrelease = \"v1\"\n[[stage]]\nname = \"gen\"\nscript = {}\nargs = [{}]\nevents = {jobs}\nevents_per_job = 1\nseed_base = 1\n",
            serde_json::to_string(script).unwrap(),
            args.join(", ")
        ),
    )
    .unwrap();
    path
}

fn ops(ops: &Ops, policies: &Policies) -> Ops {
    ops.clone().with_policies(policies.clone())
}

fn refusal(e: OpsError) -> (String, String) {
    match e {
        OpsError::RequestFile { error, .. } => (error.field, error.message),
        other => panic!("want a request-file refusal, got {other}"),
    }
}

async fn file(w: &World, policies: &Policies, path: &Path) -> Result<CampaignId, OpsError> {
    let filed = ops(&w.ed, policies).request_new(path).await?;
    Ok(filed.summary.id.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_outside_the_configured_roots_is_refused_naming_them_and_nothing_is_written() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let d = dirs();
        script(&d.home, "mine.sh", "exit 0");
        let before = snapshot(&w.store).await;
        let e = file(&w, &prod_only(&d), &request(&d.home, "mine.sh", &[], 1))
            .await
            .unwrap_err();
        assert_eq!(snapshot(&w.store).await, before, "{}", db.label);
        let (field, message) = refusal(e);
        assert_eq!(field, "stage[0].script");
        assert!(
            message.contains(&format!(
                "{} (script_roots of [experiments.nova])",
                d.prod.display()
            )),
            "{}: {message}",
            db.label
        );
        script(&d.prod, "gen.sh", "exit 0");
        let inside = request(
            &d.home,
            &d.prod.join("gen.sh").display().to_string(),
            &[],
            1,
        );
        file(&w, &prod_only(&d), &inside).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dotdot_escape_and_a_symlink_out_of_the_roots_are_refused_after_resolving() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let d = dirs();
        script(&d.home, "mine.sh", "exit 0");
        std::os::unix::fs::symlink(d.home.join("mine.sh"), d.prod.join("link.sh")).unwrap();
        std::fs::create_dir_all(d.prod.join("sub")).unwrap();
        let escape = request(&d.prod, "sub/../../home/mine.sh", &[], 1);
        let (field, message) = refusal(file(&w, &prod_only(&d), &escape).await.unwrap_err());
        assert_eq!(field, "stage[0].script", "{}", db.label);
        assert!(
            message.contains(&format!("(resolved: {})", d.home.join("mine.sh").display())),
            "{message}"
        );
        let link = request(&d.prod, "link.sh", &[], 1);
        let (_, message) = refusal(file(&w, &prod_only(&d), &link).await.unwrap_err());
        assert!(message.contains("is outside the directories"), "{message}");
        assert_eq!(common::rows(&w.store, "campaigns").await, 0, "{}", db.label);
    }
}

/// Without a section for the experiment, scripts come from the request's
/// directory or the current one (the README's demo and `examples/` keep
/// working), never from elsewhere on the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_section_scripts_come_from_the_request_or_current_directory_only() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let d = dirs();
        script(&d.prod, "gen.sh", "exit 0");
        let none = Policies::default();
        let outside = request(
            &d.home,
            &d.prod.join("gen.sh").display().to_string(),
            &[],
            1,
        );
        let (_, message) = refusal(file(&w, &none, &outside).await.unwrap_err());
        assert!(
            message.contains(&format!(
                "{}, {} (the request's directory and the current one",
                d.home.display(),
                std::env::current_dir().unwrap().display()
            )),
            "{message}"
        );
        w.ed.request_new(&common::mc_request()).await.unwrap();
    }
}

/// The binary reads the roots from the configuration file's `[experiments.nova]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_new_takes_the_script_roots_from_the_configuration_file() {
    let db = common::sqlite();
    let w = world(&db).await;
    let me = whoami::username();
    if me != "root" {
        let admin = prodops::model::role::Grant {
            role: prodops::model::role::Role::Admin,
            experiment: prodops::model::role::ALL_EXPERIMENTS.into(),
            kind: None,
        };
        w.root.user_add(&me, &admin, None, None).await.unwrap();
    }
    w.store.close().await;
    let d = dirs();
    script(&d.home, "mine.sh", "exit 0");
    let config = d.home.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[experiments.nova]\nscript_roots = [\"{}\"]\n",
            d.prod.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prodops"))
        .args(["--db", &db.url, "--as", "ed", "--config"])
        .arg(&config)
        .args(["request", "new"])
        .arg(request(&d.home, "mine.sh", &[], 1))
        .env_remove("PRODOPS_DB")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("stage[0].script: `")
            && stderr.contains("script_roots of [experiments.nova]"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_changed_between_filing_and_approval_is_not_approved() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let d = dirs();
        let gen = script(&d.prod, "gen.sh", "echo v1");
        let id = file(&w, &prod_only(&d), &request(&d.prod, "gen.sh", &[], 1))
            .await
            .unwrap();
        script(&d.prod, "gen.sh", "echo v2");
        let before = snapshot(&w.store).await;
        let e = ops(&w.ann, &prod_only(&d))
            .approve(id, "ok")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(&format!("`{}` changed since it was filed", gen.display())),
            "{}: {e}",
            db.label
        );
        assert_eq!(snapshot(&w.store).await, before, "{}", db.label);
    }
}

/// Approval checks the script again: a link swapped in since filing, or
/// roots narrowed since, refuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_refuses_a_script_that_moved_or_left_the_roots_since_filing() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let d = dirs();
        let both = Policies::new([(
            "nova".to_string(),
            ExperimentPolicy {
                script_roots: vec![d.prod.clone(), d.home.clone()],
                grace: Duration::ZERO,
            },
        )]);
        script(&d.home, "mine.sh", "exit 0");
        let id = file(&w, &both, &request(&d.home, "mine.sh", &[], 1))
            .await
            .unwrap();
        let narrowed = ops(&w.ann, &prod_only(&d))
            .approve(id, "ok")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            narrowed.contains("is outside the directories"),
            "{}: {narrowed}",
            db.label
        );
        std::fs::create_dir_all(d.prod.join("v1")).unwrap();
        script(&d.prod.join("v1"), "gen.sh", "exit 0");
        let id = file(&w, &both, &request(&d.prod, "v1/gen.sh", &[], 1))
            .await
            .unwrap();
        std::fs::rename(d.prod.join("v1"), d.prod.join("v0")).unwrap();
        std::os::unix::fs::symlink(&d.home, d.prod.join("v1")).unwrap();
        script(&d.home, "gen.sh", "exit 0");
        let moved = ops(&w.ann, &both)
            .approve(id, "ok")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            moved.contains(&format!(
                "now resolves to {}",
                d.home.join("gen.sh").display()
            )),
            "{}: {moved}",
            db.label
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x3_filing_a_changed_script_again_withdraws_the_approval() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let d = dirs();
        script(&d.prod, "gen.sh", "echo v1");
        let path = request(&d.prod, "gen.sh", &[], 1);
        let id = file(&w, &prod_only(&d), &path).await.unwrap();
        let approved = ops(&w.ann, &prod_only(&d)).approve(id, "ok").await.unwrap();
        assert_eq!(approved.summary.state, "approved");
        let same = ops(&w.ed, &prod_only(&d))
            .request_edit(id, &path)
            .await
            .unwrap();
        assert_eq!(same.summary.state, "approved", "{}: same content", db.label);
        script(&d.prod, "gen.sh", "echo v2");
        let edited = ops(&w.ed, &prod_only(&d))
            .request_edit(id, &path)
            .await
            .unwrap();
        assert_eq!(edited.summary.state, "pending_approval", "{}", db.label);
        assert_eq!(edited.approved_hash, None, "{}", db.label);
        assert_ne!(edited.spec_hash, approved.spec_hash, "{}", db.label);
    }
}

/// The job runs the content approved, even after the live file changed,
/// and gets its arguments verbatim as an argument vector (no shell).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_the_approved_copy_with_shell_metacharacters_in_arguments_passed_verbatim() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let d = dirs();
        let body = "printf 'approved\\n' > \"$PRODOPS_OUTPUT_DIR/which\"\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$PRODOPS_OUTPUT_DIR/args\"";
        script(&d.prod, "gen.sh", body);
        let args = ["$(touch pwned)", "a b; touch pwned", "`id`", "*", "'\"|&>"];
        let id = file(&w, &prod_only(&d), &request(&d.prod, "gen.sh", &args, 1))
            .await
            .unwrap();
        ops(&w.ann, &prod_only(&d)).approve(id, "ok").await.unwrap();
        script(
            &d.prod,
            "gen.sh",
            "printf 'live\\n' > \"$PRODOPS_OUTPUT_DIR/which\"",
        );
        let work = d.home.join("work");
        let worker = local_worker(&w.store, &work, 1, Throttles::default()).await;
        let jobs = pass_until(&worker, &w, id, |jobs| {
            jobs.len() == 1 && jobs[0].state == "succeeded"
        })
        .await;
        worker.release_lease().await.unwrap();
        let out = work.join("outputs").join(format!("{id}"));
        let job_dir = std::fs::read_dir(&out)
            .unwrap()
            .flat_map(|s| std::fs::read_dir(s.unwrap().path()).unwrap())
            .map(|j| j.unwrap().path())
            .next()
            .unwrap_or_else(|| panic!("{}: no output of {jobs:?}", db.label));
        let which = std::fs::read_to_string(job_dir.join("which")).unwrap();
        assert_eq!(which, "approved\n", "{}", db.label);
        let got = std::fs::read_to_string(job_dir.join("args")).unwrap();
        assert_eq!(got.lines().collect::<Vec<_>>(), args, "{}", db.label);
        let pwned = walk(&work).into_iter().any(|p| p.ends_with("pwned"));
        assert!(!pwned, "{}: an argument ran as a command", db.label);
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
