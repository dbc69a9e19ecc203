//! Jobs that another worker's batch-system instance holds (S3, issue 15):
//! two workers on one database with separate work directories, as on two
//! submission nodes. A worker never declares failed, lost or to-be-run-again
//! a job it cannot ask about; the worker of its instance picks its end up,
//! or an operator decides.

mod common;

use common::{all_dbs, file_and_approve, gen_request, local_worker, pass_until, script, world};
use prodops::batch::BatchSystem;
use prodops::model::ids::JobId;
use prodops::worker::Throttles;
use std::time::{Duration, Instant};

fn ids(jobs: &[prodops::ops::jobs::JobView]) -> Vec<(String, i64, Option<String>)> {
    jobs.iter()
        .map(|j| (j.id.clone(), j.attempt, j.batch_job_id.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_a_worker_leaves_another_instances_jobs_as_they_are_and_their_own_worker_records_their_ends(
) {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let slow = script(dir.path(), "slow.sh", "sleep 4\nexit 0");
        let request = gen_request(dir.path(), "two-nodes.toml", &slow.display().to_string(), 3);
        let id = file_and_approve(&w, &request).await;
        let node_a = dir.path().join("node-a");
        let node_b = dir.path().join("node-b");

        let a = local_worker(&w.store, &node_a, 3, Throttles::default()).await;
        let submitted = pass_until(&a, &w, id, |jobs| {
            jobs.len() == 3 && jobs.iter().all(|j| j.state == "running")
        })
        .await;
        let instance = submitted[0]
            .instance
            .clone()
            .expect("the instance is recorded");
        assert!(
            instance.starts_with("local@") && instance.contains("node-a"),
            "{}: {instance}",
            db.label
        );
        a.release_lease().await.unwrap();
        drop(a);

        let b = local_worker(&w.store, &node_b, 3, Throttles::default()).await;
        let until = Instant::now() + Duration::from_secs(7);
        while Instant::now() < until {
            let report = b.pass().await.unwrap();
            assert!(report.leader, "{}", db.label);
            assert_eq!(
                report.unreachable.get(&instance),
                Some(&3),
                "{}: the jobs are reported out of reach",
                db.label
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let meanwhile = w.ed.jobs(id, &[], 10, 0).await.unwrap();
        assert_eq!(
            common::states(&meanwhile),
            ["running"; 3],
            "{}: never failed nor run again",
            db.label
        );
        assert_eq!(ids(&meanwhile), ids(&submitted), "{}", db.label);
        assert!(
            !node_b.join("local").read_dir().unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("prodops-")),
            "{}: node b ran none of them",
            db.label
        );
        let check = std::process::Command::new(env!("CARGO_BIN_EXE_prodops"))
            .args(["--db", &db.url, "--work-dir"])
            .arg(&node_b)
            .args(["check"])
            .env_remove("PRODOPS_CONFIG")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&check.stdout);
        assert_eq!(check.status.code(), Some(1), "{}: {shown}", db.label);
        assert!(
            shown.contains(&format!("reach {instance}"))
                && shown.contains("3 job(s) in flight there"),
            "{}: prodops check shows the instance out of reach: {shown}",
            db.label
        );
        b.release_lease().await.unwrap();
        drop(b);

        let a_again = local_worker(&w.store, &node_a, 3, Throttles::default()).await;
        let ended = pass_until(&a_again, &w, id, |jobs| {
            jobs.len() == 3 && jobs.iter().all(|j| j.state == "succeeded")
        })
        .await;
        assert_eq!(
            ids(&ended),
            ids(&submitted),
            "{}: the same attempts ended, none twice",
            db.label
        );
        a_again.release_lease().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_an_operator_removing_a_job_on_an_unreachable_instance_is_recorded_as_their_decision() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let slow = script(dir.path(), "slow.sh", "sleep 30\nexit 0");
        let request = gen_request(dir.path(), "gone.toml", &slow.display().to_string(), 1);
        let id = file_and_approve(&w, &request).await;

        let a = local_worker(
            &w.store,
            &dir.path().join("node-a"),
            1,
            Throttles::default(),
        )
        .await;
        let jobs = pass_until(&a, &w, id, |jobs| {
            jobs.len() == 1 && jobs[0].state == "running"
        })
        .await;
        a.release_lease().await.unwrap();
        drop(a);
        let job: JobId = jobs[0].id.parse().unwrap();

        let b = local_worker(
            &w.store,
            &dir.path().join("node-b"),
            1,
            Throttles::default(),
        )
        .await;
        b.pass().await.unwrap();
        w.root
            .remove_jobs(&[job], "node a was decommissioned")
            .await
            .unwrap();
        let removed = pass_until(&b, &w, id, |jobs| jobs[0].state == "removed").await;
        assert_eq!(removed[0].attempt, 1, "{}", db.label);
        let history = common::job_history(&w, job).await;
        let last = history.last().unwrap();
        assert!(
            last.reason.contains("node a was decommissioned")
                && last.reason.contains("out of reach and was not told"),
            "{}: {last:?}",
            db.label
        );
        let local_a = dir.path().join("node-a").join("local");
        prodops::batch::local::LocalBatch::open(local_a, 1, common::runner())
            .await
            .unwrap()
            .cancel(&[prodops::batch::BatchJobId(
                removed[0].batch_job_id.clone().unwrap(),
            )])
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn m9_each_job_records_its_site_node_kind_of_node_and_instance() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let ok = common::script(dir.path(), "ok.sh", "exit 0")
            .display()
            .to_string();
        let request = gen_request(dir.path(), "where.toml", &ok, 1);
        let id = file_and_approve(&w, &request).await;
        let worker =
            local_worker(&w.store, &dir.path().join("work"), 1, Throttles::default()).await;
        let ended = pass_until(&worker, &w, id, |jobs| {
            jobs.len() == 1 && jobs[0].state == "succeeded"
        })
        .await;
        let job = &ended[0];
        assert_eq!(job.site.as_deref(), Some("local"), "{}", db.label);
        assert_eq!(job.node_kind.as_deref(), Some("local"), "{}", db.label);
        assert_eq!(
            job.node.as_deref(),
            Some(prodops::host::hostname().as_str()),
            "{}",
            db.label
        );
        assert!(
            job.instance
                .as_deref()
                .is_some_and(|i| i.starts_with("local@") && i.ends_with("/work/local")),
            "{}: {:?}",
            db.label,
            job.instance
        );
        worker.release_lease().await.unwrap();
    }
}
