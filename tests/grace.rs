//! The approval grace period (X6, issue 15): an approved campaign makes no
//! job until its experiment's grace period has passed, so the requester can
//! still back out; cancelling inside it leaves no job; `--batch` does not
//! wait it out but says when the campaign starts.

mod common;

use common::{all_dbs, gen_request, local_worker, pass_until, script, world, World};
use prodops::model::ids::CampaignId;
use prodops::model::request_policy::{ExperimentPolicy, Policies};
use prodops::ops::Ops;
use prodops::worker::{Throttles, Worker};
use std::path::Path;
use std::time::Duration;

/// nova's policy: scripts from `root`, `grace` between approval and the first jobs.
fn nova(root: &Path, grace: Duration) -> Policies {
    Policies::new([(
        "nova".to_string(),
        ExperimentPolicy {
            script_roots: vec![std::fs::canonicalize(root).unwrap()],
            grace,
        },
    )])
}

/// Files a two-job request as ed and approves it as ann, both under `policies`.
async fn approved(w: &World, dir: &Path, policies: &Policies) -> CampaignId {
    script(dir, "gen.sh", "exit 0");
    let request = gen_request(dir, "gen.toml", "gen.sh", 2);
    let ed = w.ed.clone().with_policies(policies.clone());
    let ann = w.ann.clone().with_policies(policies.clone());
    let id: CampaignId = ed
        .request_new(&request)
        .await
        .unwrap()
        .summary
        .id
        .parse()
        .unwrap();
    ann.approve(id, "ok").await.unwrap();
    id
}

async fn job_count(ops: &Ops, id: CampaignId) -> usize {
    ops.jobs(id, &[], 100, 0).await.unwrap().len()
}

async fn worker(w: &World, work: &Path) -> Worker {
    local_worker(&w.store, work, 2, Throttles::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_an_approved_campaign_makes_no_job_during_its_grace_period() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let before = prodops::clock::now_ms();
        let id = approved(&w, dir.path(), &nova(dir.path(), Duration::from_secs(300))).await;
        let worker = worker(&w, &dir.path().join("work")).await;
        for _ in 0..3 {
            worker.pass().await.unwrap();
        }
        assert_eq!(job_count(&w.ed, id).await, 0, "{}", db.label);
        let detail = w.ed.campaign(id).await.unwrap();
        assert_eq!(detail.request.state, "approved", "{}", db.label);
        let waits = worker.grace_waits().await.unwrap();
        assert_eq!(waits.len(), 1, "{}", db.label);
        assert_eq!(waits[0].0, id.0);
        let starts = waits[0].1 - before;
        assert!(
            (300_000..310_000).contains(&starts),
            "{}: starts {starts} ms after approval, want 300 s",
            db.label
        );
        worker.release_lease().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_cancelling_inside_the_grace_period_leaves_no_job() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let id = approved(&w, dir.path(), &nova(dir.path(), Duration::from_secs(300))).await;
        let worker = worker(&w, &dir.path().join("work")).await;
        worker.pass().await.unwrap();
        w.ed.cancel(id, "changed my mind").await.unwrap();
        sqlx::query("UPDATE campaigns SET start_after = 0")
            .execute(w.store.pool())
            .await
            .unwrap();
        for _ in 0..3 {
            worker.pass().await.unwrap();
        }
        assert_eq!(job_count(&w.ed, id).await, 0, "{}", db.label);
        assert_eq!(common::rows(&w.store, "jobs").await, 0, "{}", db.label);
        let detail = w.ed.campaign(id).await.unwrap();
        assert_eq!(detail.request.state, "cancelled", "{}", db.label);
        let subtasks: Vec<&str> = detail
            .tasks
            .iter()
            .flat_map(|t| &t.subtasks)
            .map(|s| s.state.as_str())
            .collect();
        assert_eq!(subtasks, ["cancelled"], "{}", db.label);
        worker.release_lease().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_the_worker_splits_a_campaign_once_its_grace_period_has_passed() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let id = approved(&w, dir.path(), &nova(dir.path(), Duration::from_secs(300))).await;
        let worker = worker(&w, &dir.path().join("work")).await;
        worker.pass().await.unwrap();
        assert_eq!(job_count(&w.ed, id).await, 0, "{}", db.label);
        // The grace period ends: what the clock would do in five minutes.
        sqlx::query("UPDATE campaigns SET start_after = 1")
            .execute(w.store.pool())
            .await
            .unwrap();
        let jobs = pass_until(&worker, &w, id, |jobs| !jobs.is_empty()).await;
        assert_eq!(jobs.len(), 2, "{}", db.label);
        assert!(worker.grace_waits().await.unwrap().is_empty());
        worker.release_lease().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_a_grace_period_of_zero_splits_at_approval() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let id = approved(&w, dir.path(), &nova(dir.path(), Duration::ZERO)).await;
        let worker = worker(&w, &dir.path().join("work")).await;
        worker.pass().await.unwrap();
        assert_eq!(job_count(&w.ed, id).await, 2, "{}", db.label);
        worker.release_lease().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_auto_approved_requests_wait_out_the_grace_period_too() {
    for db in all_dbs().await {
        let w = world(&db).await;
        w.root
            .experiment_add("dune", &[prodops::model::spec::TaskKind::Reco])
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        script(dir.path(), "reco.sh", "exit 0");
        let input = dir.path().join("raw.dat");
        std::fs::write(&input, "x").unwrap();
        let request = dir.path().join("reco.toml");
        std::fs::write(
            &request,
            format!(
                "experiment = \"dune\"\nkind = \"reco\"\ntitle = \"r\"\n[defaults]\nrelease = \"v1\"\n[input]\nfiles = [\"{}\"]\n[[stage]]\nname = \"reco\"\nscript = \"reco.sh\"\nfiles_per_job = 1\n",
                input.display()
            ),
        )
        .unwrap();
        let policies = Policies::new([(
            "dune".to_string(),
            ExperimentPolicy {
                script_roots: vec![std::fs::canonicalize(dir.path()).unwrap()],
                grace: Duration::from_secs(120),
            },
        )]);
        let root = w.root.clone().with_policies(policies);
        let filed = root.request_new(&request).await.unwrap();
        assert_eq!(filed.summary.state, "approved", "{}", db.label);
        let id: CampaignId = filed.summary.id.parse().unwrap();
        let worker = worker(&w, &dir.path().join("work")).await;
        worker.pass().await.unwrap();
        assert_eq!(job_count(&w.root, id).await, 0, "{}", db.label);
        worker.release_lease().await.unwrap();
    }
}

/// `--batch` with only a campaign in its grace period left: it stops (it
/// does not wait five minutes) and says when the campaign starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_batch_stops_during_a_grace_period_and_says_when_the_campaign_starts() {
    let db = common::sqlite();
    let w = world(&db).await;
    let dir = tempfile::tempdir().unwrap();
    approved(&w, dir.path(), &nova(dir.path(), Duration::from_secs(300))).await;
    w.store.close().await;
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[worker]\nslots = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_prodops"))
        .args(["--db", &db.url, "--batch", "--config"])
        .arg(&config)
        .arg("--work-dir")
        .arg(dir.path().join("work"))
        .env_remove("PRODOPS_DB")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("worker: C1 starts in 4:") || stderr.contains("worker: C1 starts in 5:00"),
        "{stderr}"
    );
    assert!(stderr.contains("run the worker again then"), "{stderr}");
}
