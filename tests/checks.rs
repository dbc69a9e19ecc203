//! Pre-launch checks end to end (issue 6; P1, P4, J3, J10): a service that
//! goes down holds submission on the pass that sees it and its return
//! releases it; an expired token holds submission, and its text reaches
//! neither the logs nor the database; a script gone since filing stops its
//! stage before any job is queued.

mod common;

use common::{all_dbs, file_and_approve, local_worker, mc_request, sqlite, world};
use prodops::model::check::{CheckSpec, Probe, Scope};
use prodops::worker::{PassReport, Throttles, Worker};
use sqlx::Row;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A local HTTP health endpoint that answers 200 `{"status":"ok"}` while
/// `up`, and 503 otherwise.
struct Endpoint {
    up: Arc<AtomicBool>,
    url: String,
}

fn endpoint() -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let up = Arc::new(AtomicBool::new(true));
    let serving = up.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 2048];
            let _ = stream.read(&mut request);
            let (status, body) = if serving.load(Ordering::SeqCst) {
                ("200 OK", r#"{"status":"ok"}"#)
            } else {
                ("503 Service Unavailable", r#"{"status":"down"}"#)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Endpoint { up, url }
}

fn health_check(url: &str) -> CheckSpec {
    CheckSpec {
        name: "samweb".into(),
        scope: Scope {
            experiment: Some("nova".into()),
            backend: None,
        },
        timeout: Duration::from_secs(5),
        every: Duration::ZERO,
        probe: Probe::Http {
            url: url.into(),
            status: 200,
            json_field: Some("status".into()),
            json_equals: Some("ok".into()),
        },
    }
}

async fn pass(worker: &Worker) -> PassReport {
    tokio::time::timeout(Duration::from_secs(60), worker.pass())
        .await
        .expect("a pass ends within a minute")
        .unwrap()
}

async fn jobs_in(store: &prodops::store::Store, state: &str) -> i64 {
    sqlx::query("SELECT COUNT(*) FROM jobs WHERE state = $1")
        .bind(state)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0)
}

/// Passes until jobs exist and none is in flight or submitting, returning the last report.
async fn pass_until_all_created_or_done(
    worker: &Worker,
    store: &prodops::store::Store,
) -> PassReport {
    for _ in 0..2000 {
        let report = pass(worker).await;
        let created = jobs_in(store, "created").await;
        if report.in_flight == 0 && created > 0 {
            return report;
        }
        worker.pace(&report).await;
    }
    panic!("the campaign never reached a held stage");
}

#[tokio::test(flavor = "multi_thread")]
async fn p1_j10_a_service_going_down_holds_submission_and_its_return_releases_it() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let work = tempfile::tempdir().unwrap();
        let service = endpoint();
        service.up.store(false, Ordering::SeqCst);
        let worker = local_worker(&w.store, work.path(), 2, Throttles::default())
            .await
            .with_checks(vec![health_check(&service.url)]);
        let id = file_and_approve(&w, &mc_request()).await;

        let report = pass_until_all_created_or_done(&worker, &w.store).await;
        assert_eq!(jobs_in(&w.store, "queued").await, 0, "{}", db.label);
        assert!(
            report
                .warnings
                .iter()
                .any(|l| l.contains("check `samweb` failing: HTTP 503 (expected 200)")),
            "{}: {:?}",
            db.label,
            report.warnings
        );
        let shown = w.ed.campaign(id).await.unwrap();
        assert_eq!(
            shown.held_by,
            ["check `samweb` failing: HTTP 503 (expected 200)"],
            "{}",
            db.label
        );

        service.up.store(true, Ordering::SeqCst);
        let report = pass(&worker).await;
        assert!(
            report.submitted > 0,
            "{}: released on the next pass",
            db.label
        );
        assert!(w.ed.campaign(id).await.unwrap().held_by.is_empty());

        service.up.store(false, Ordering::SeqCst);
        pass_until_all_created_or_done(&worker, &w.store).await;
        let held_stage = jobs_in(&w.store, "created").await;
        assert!(held_stage > 0, "{}: the next stage waits", db.label);
        service.up.store(true, Ordering::SeqCst);
        tokio::time::timeout(Duration::from_secs(180), worker.run_until_idle(|_| {}))
            .await
            .unwrap()
            .unwrap();
        let done = w.ed.campaign(id).await.unwrap();
        assert_eq!(done.request.state, "succeeded", "{}", db.label);

        let flips: Vec<String> =
            sqlx::query("SELECT new_state FROM history WHERE entity_kind = 'check' ORDER BY id")
                .fetch_all(w.store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
        assert_eq!(
            flips,
            ["failing", "passing", "failing", "passing"],
            "{}: every change of verdict is recorded",
            db.label
        );
    }
}

/// A JWT whose payload says `claims` (only the payload is read).
fn jwt(claims: &str) -> String {
    fn b64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |acc, b| acc << 8 | *b as u32) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
    format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"RS256","kid":"test"}"#),
        b64url(claims.as_bytes()),
        b64url(b"not-a-real-signature-but-secret-looking")
    )
}

/// Every byte of every regular file under `dir` (not the executor's FIFO), as text.
fn all_text_under(dir: &std::path::Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&all_text_under(&path));
        } else if !path.is_file() {
            continue;
        } else if let Ok(bytes) = std::fs::read(&path) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn j3_an_expired_token_holds_submission_and_never_reaches_logs_or_the_database() {
    let db = sqlite();
    let w = world(&db).await;
    let id = file_and_approve(&w, &mc_request()).await;
    let home = tempfile::tempdir().unwrap();
    let token = jwt(r#"{"sub":"novapro","exp":1700000000,"scope":"compute.create"}"#);
    let token_file = home.path().join("bt_u1000");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config = home.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[check]]\nname = \"token\"\nkind = \"token\"\npath = \"{}\"\nmin_hours = 2\nexperiment = \"nova\"\n",
            token_file.display()
        ),
    )
    .unwrap();
    let prodops = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_prodops"))
            .args(["--db", &db.url, "--config"])
            .arg(&config)
            .arg("--work-dir")
            .arg(home.path().join("work"))
            .args(args)
            .output()
            .unwrap()
    };
    let check = prodops(&["check", "--json"]);
    let batch = prodops(&["--batch"]);
    let shown = prodops(&["campaign", "show", &id.to_string()]);

    assert_eq!(
        check.status.code(),
        Some(1),
        "a failing check fails `prodops check`"
    );
    let verdicts: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(verdicts[0]["passing"], false);
    assert!(verdicts[0]["detail"]
        .as_str()
        .unwrap()
        .starts_with("bearer token expired"));
    let batch_said = String::from_utf8_lossy(&batch.stderr);
    assert_eq!(
        batch.status.code(),
        Some(4),
        "held work exits 4: {batch_said}"
    );
    assert!(
        batch_said.contains(
            "submissions held (experiment nova): check `token` failing: bearer token expired"
        ),
        "{batch_said}"
    );
    assert_eq!(
        jobs_in(&w.store, "queued").await + jobs_in(&w.store, "running").await,
        0
    );
    assert!(jobs_in(&w.store, "created").await > 0);
    let shown_text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown_text.contains("submissions held: check `token` failing: bearer token expired"),
        "{shown_text}"
    );

    w.store.close().await;
    let payload = token.split('.').nth(1).unwrap();
    let signature = token.split('.').nth(2).unwrap();
    let mut seen = all_text_under(std::path::Path::new(&db.url).parent().unwrap());
    seen.push_str(&all_text_under(&home.path().join("work")));
    for out in [&check, &batch, &shown] {
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert!(
        seen.contains("bearer token expired"),
        "the verdict is stored"
    );
    for secret in [token.as_str(), payload, signature] {
        assert!(!seen.contains(secret), "the token leaked");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn p4_a_script_gone_since_filing_fails_its_stage_before_any_job_is_queued() {
    let db = sqlite();
    let w = world(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let gone = common::script(
        dir.path(),
        "gen.sh",
        "echo \"PRODOPS_EVENTS $PRODOPS_EVENTS\"",
    );
    let request = dir.path().join("r.toml");
    std::fs::write(
        &request,
        "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"t\"\n[defaults]\nrelease = \"v1\"\n[[stage]]\nname = \"gen\"\nscript = \"gen.sh\"\nevents = 2\nevents_per_job = 1\nseed_base = 1\n",
    )
    .unwrap();
    let id = file_and_approve(&w, &request).await;
    std::fs::remove_file(&gone).unwrap();
    let worker = local_worker(&w.store, dir.path(), 2, Throttles::default()).await;
    tokio::time::timeout(Duration::from_secs(60), worker.run_until_idle(|_| {}))
        .await
        .unwrap()
        .unwrap();
    let c = w.ed.campaign(id).await.unwrap();
    assert_eq!(c.request.state, "failed");
    assert_eq!(
        jobs_in(&w.store, "queued").await + jobs_in(&w.store, "created").await,
        0
    );
    let history =
        w.ed.history(
            c.tasks[0].subtasks[0]
                .id
                .parse::<prodops::model::ids::SubtaskId>()
                .unwrap()
                .entity(),
        )
        .await
        .unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.new, "failed");
    assert!(
        last.reason.contains("gen.sh` no longer exists"),
        "{}",
        last.reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn p2_missing_software_holds_submission_until_it_appears() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let work = tempfile::tempdir().unwrap();
        let release = work.path().join("cvmfs/nova/v1");
        let software = CheckSpec {
            name: "nova-release".into(),
            scope: Scope {
                experiment: Some("nova".into()),
                backend: None,
            },
            timeout: Duration::from_secs(5),
            every: Duration::ZERO,
            probe: Probe::Software {
                path: Some(release.clone()),
                program: None,
            },
        };
        let worker = local_worker(&w.store, &work.path().join("work"), 2, Throttles::default())
            .await
            .with_checks(vec![software]);
        file_and_approve(&w, &mc_request()).await;

        let held = pass_until_all_created_or_done(&worker, &w.store).await;
        assert_eq!(held.submitted, 0, "{}", db.label);
        assert!(held.held_back > 0, "{}: {held:?}", db.label);
        assert!(
            held.warnings
                .iter()
                .any(|w| w.contains("check `nova-release` failing")
                    && w.contains(&release.display().to_string())),
            "{}: the warning names the missing software: {:?}",
            db.label,
            held.warnings
        );

        std::fs::create_dir_all(&release).unwrap();
        let mut submitted = 0;
        for _ in 0..50 {
            submitted += pass(&worker).await.submitted;
            if submitted > 0 {
                break;
            }
        }
        assert!(
            submitted > 0,
            "{}: its return releases submission",
            db.label
        );
        worker.release_lease().await.unwrap();
    }
}
