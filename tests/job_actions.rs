//! A person's hold, release and removal of single jobs (issue 14, items 10
//! and 17): recorded by `ops` in one transaction for the whole list (all or
//! nothing, role-checked, audited), carried out by the worker through the
//! batch system, on SQLite and PostgreSQL.

mod common;

use common::{
    all_dbs, eventually_stopped, file_and_approve, gen_request, local_worker, pass_until, pid_of,
    snapshot, states, stopped, world, TestDb, World,
};
use prodops::model::ids::{CampaignId, JobId};
use prodops::ops::jobs::JobView;
use prodops::worker::{Throttles, Worker};
use sqlx::Row;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A campaign of three jobs that run until `dir/go` exists, running on a
/// local worker; returns it with its running jobs.
async fn three_running(w: &World, dir: &Path) -> (CampaignId, Worker, Vec<JobView>) {
    let go = dir.join("go");
    common::script(
        dir,
        "wait.sh",
        &format!("while [ ! -e {} ]; do sleep 0.05; done", go.display()),
    );
    let id = file_and_approve(w, &gen_request(dir, "r.toml", "wait.sh", 3)).await;
    let worker = local_worker(&w.store, dir, 4, Throttles::default()).await;
    let jobs = pass_until(&worker, w, id, |j| states(j) == ["running"; 3]).await;
    (id, worker, jobs)
}

fn job_id(job: &JobView) -> JobId {
    job.id.parse().unwrap()
}

/// The last transition of `job`: new state, reason and user.
async fn last_move(w: &World, job: JobId) -> (String, String, String) {
    let h = w.ed.history(job.entity()).await.unwrap().pop().unwrap();
    (h.new, h.reason, h.user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_d2_a_person_holds_releases_and_removes_running_local_jobs_one_by_one() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let (id, worker, jobs) = three_running(&w, dir.path()).await;
        let (a, b) = (job_id(&jobs[0]), job_id(&jobs[1]));
        let pid_a = pid_of(dir.path(), jobs[0].batch_job_id.as_deref().unwrap());
        let pid_b = pid_of(dir.path(), jobs[1].batch_job_id.as_deref().unwrap());

        let held = w.root.hold_jobs(&[a], "node looks bad").await.unwrap();
        assert_eq!(
            (held.requested.as_str(), held.jobs.clone()),
            ("held", vec![a.to_string()])
        );
        pass_until(&worker, &w, id, |j| {
            states(j) == ["held", "running", "running"]
        })
        .await;
        assert!(
            eventually_stopped(pid_a).await,
            "{}: the script is stopped",
            db.label
        );
        assert_eq!(
            last_move(&w, a).await,
            (
                "held".into(),
                "held by root: node looks bad".into(),
                "worker".into()
            ),
            "{}",
            db.label
        );

        w.root.hold(id, "downtime").await.unwrap();
        pass_until(&worker, &w, id, |_| true).await;
        w.root.release(id, "downtime over").await.unwrap();
        pass_until(&worker, &w, id, |_| true).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = pass_until(&worker, &w, id, |_| true).await;
        assert_eq!(
            states(&after),
            ["held", "running", "running"],
            "{}: a job a person held stays held when its campaign is released",
            db.label
        );

        w.root.release_jobs(&[a], "node fixed").await.unwrap();
        pass_until(&worker, &w, id, |j| states(j) == ["running"; 3]).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!stopped(pid_a), "{}: the script continues", db.label);
        let trail: Vec<String> =
            w.ed.history(a.entity())
                .await
                .unwrap()
                .iter()
                .map(|h| format!("{} {}", h.new, h.reason))
                .collect();
        assert!(
            trail.contains(&"queued released by root: node fixed".to_string()),
            "{}: {trail:?}",
            db.label
        );

        w.root.remove_jobs(&[b], "stuck").await.unwrap();
        pass_until(&worker, &w, id, |j| {
            states(j) == ["running", "removed", "running"]
        })
        .await;
        assert_eq!(
            last_move(&w, b).await,
            (
                "removed".into(),
                "removed by root: stuck".into(),
                "worker".into()
            )
        );
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid_b}")).exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            !Path::new(&format!("/proc/{pid_b}")).exists(),
            "{}: the removed job's script is gone",
            db.label
        );

        std::fs::write(dir.path().join("go"), "").unwrap();
        tokio::time::timeout(Duration::from_secs(120), worker.run_until_idle(|_| {}))
            .await
            .unwrap()
            .unwrap();
        let end = w.ed.jobs(id, &[], 10, 0).await.unwrap();
        assert_eq!(
            states(&end),
            ["succeeded", "removed", "succeeded"],
            "{}: the removed job was not retried",
            db.label
        );
        assert_eq!(
            w.ed.campaign(id).await.unwrap().request.state,
            "failed",
            "{}: a removed job is not done; resubmit runs it again",
            db.label
        );
        let again = w
            .root
            .resubmit(b.entity(), "wanted after all")
            .await
            .unwrap();
        assert_eq!(again.jobs.len(), 1, "{}", db.label);
        w.store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_cp1_job_actions_are_all_or_nothing_role_checked_and_audited() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let (_, worker, jobs) = three_running(&w, dir.path()).await;
        let ids: Vec<JobId> = jobs.iter().map(job_id).collect();
        let before = snapshot(&w.store).await;

        let refused = w.gus.hold_jobs(&ids, "").await.unwrap_err();
        assert!(refused.is_forbidden(), "{}: {refused}", db.label);
        let audited: (String, String, i64) = {
            let r =
                sqlx::query("SELECT action, target, allowed FROM audit ORDER BY id DESC LIMIT 1")
                    .fetch_one(w.store.pool())
                    .await
                    .unwrap();
            (r.get(0), r.get(1), r.get(2))
        };
        let names = ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            audited,
            ("hold".to_string(), names.clone(), 0),
            "{}",
            db.label
        );

        w.root.hold_jobs(&ids[..1], "").await.unwrap();
        let err = w.root.hold_jobs(&ids, "again").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is already held", ids[0]),
            "{}: the first job that cannot be held is named",
            db.label
        );
        let err = w.root.release_jobs(&ids, "").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{} is `running`: it is not held", ids[1])
        );
        let err = w
            .root
            .remove_jobs(&[ids[2], JobId(9999)], "")
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "job J9999 does not exist");
        let err = w.root.remove_jobs(&[], "").await.unwrap_err();
        assert_eq!(err.to_string(), "name at least one job to remove");

        w.root
            .release_jobs(&ids[..1], "changed my mind")
            .await
            .unwrap();
        let detail: String =
            sqlx::query("SELECT detail FROM audit WHERE allowed = 1 ORDER BY id DESC LIMIT 1")
                .fetch_one(w.store.pool())
                .await
                .unwrap()
                .get(0);
        assert_eq!(
            detail,
            format!("release {}: released by root: changed my mind", ids[0])
        );
        worker.pass().await.unwrap();
        let now: Vec<String> = snapshot(&w.store)
            .await
            .into_iter()
            .filter(|l| !l.starts_with("audit"))
            .collect();
        let was: Vec<String> = before
            .into_iter()
            .filter(|l| !l.starts_with("audit"))
            .collect();
        assert_eq!(
            now, was,
            "{}: a hold released before the worker acted changes no state",
            db.label
        );
        std::fs::write(dir.path().join("go"), "").unwrap();
        w.store.close().await;
    }
}

fn prodops(db: &TestDb, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_prodops"))
        .env("PRODOPS_DB", &db.url)
        .args(args)
        .output()
        .expect("the binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_hold_release_and_remove_take_job_ids_and_print_json() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let me = whoami::username();
        let grant = prodops::model::role::Grant {
            role: prodops::model::role::Role::Operator,
            experiment: "nova".into(),
            kind: None,
        };
        w.root.user_add(&me, &grant, None, None).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (id, _worker, jobs) = three_running(&w, dir.path()).await;
        let (a, b) = (jobs[0].id.as_str(), jobs[1].id.as_str());
        let out = prodops(&db, &["--json", "hold", a, b, "--reason", "bad node"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            printed,
            serde_json::json!({ "requested": "held", "jobs": [a, b] })
        );
        let out = prodops(&db, &["--json", "release", a]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = prodops(&db, &["--json", "remove", b]);
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed["requested"], "removed", "{}", db.label);
        let mixed = prodops(&db, &["hold", &id.to_string(), a]);
        assert_eq!(mixed.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&mixed.stderr).contains("not both"));
        let out = prodops(&db, &["hold", &id.to_string(), "--running"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("queued and running jobs are held")
                && said.contains("local: the local executor stops them"),
            "{said}"
        );
        std::fs::write(dir.path().join("go"), "").unwrap();
        w.store.close().await;
    }
}
