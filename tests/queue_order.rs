//! The queue (J16): incoming work waits in the queue and the worker takes
//! the highest priority first, whatever order it was filed in; and the time
//! a job has spent in its state (M3) is the figure readers see.

mod common;

use common::{all_dbs, file_and_approve, gen_request, local_worker, script, world};
use prodops::model::ids::JobId;
use prodops::worker::Throttles;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn j16_the_worker_submits_the_highest_priority_work_first_not_the_oldest() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let ok = script(dir.path(), "ok.sh", "exit 0").display().to_string();
        let low = file_and_approve(&w, &gen_request(dir.path(), "low.toml", &ok, 3)).await;
        let high = file_and_approve(&w, &gen_request(dir.path(), "high.toml", &ok, 3)).await;
        w.ann.set_priority(low, 10).await.unwrap();
        w.ann.set_priority(high, 900).await.unwrap();
        let throttles = Throttles {
            per_pass: 1,
            ..Throttles::default()
        };
        let worker = local_worker(&w.store, &dir.path().join("work"), 1, throttles).await;

        let mut order: Vec<String> = Vec::new();
        for _ in 0..400 {
            worker.pass().await.unwrap();
            for (campaign, label) in [(high, "high"), (low, "low")] {
                for job in w.ed.jobs(campaign, &[], 10, 0).await.unwrap() {
                    let tag = format!("{label} {}", job.id);
                    if job.batch_job_id.is_some() && !order.contains(&tag) {
                        order.push(tag);
                    }
                }
            }
            if order.len() == 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let campaigns: Vec<&str> = order.iter().map(|t| &t[..t.find(' ').unwrap()]).collect();
        assert_eq!(
            campaigns,
            ["high", "high", "high", "low", "low", "low"],
            "{}: submission order {order:?}",
            db.label
        );
        worker.release_lease().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn m3_time_in_state_counts_from_the_jobs_last_transition() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let slow = script(dir.path(), "slow.sh", "sleep 20")
            .display()
            .to_string();
        let id = file_and_approve(&w, &gen_request(dir.path(), "slow.toml", &slow, 1)).await;
        let worker =
            local_worker(&w.store, &dir.path().join("work"), 1, Throttles::default()).await;
        let running = common::pass_until(&worker, &w, id, |jobs| {
            jobs.len() == 1 && jobs[0].state == "running"
        })
        .await;
        let job: JobId = running[0].id.parse().unwrap();
        let history = common::job_history(&w, job).await;
        let entered = history.last().unwrap();
        assert_eq!(entered.new, "running", "{}", db.label);
        assert_eq!(
            running[0].state_since, entered.ts,
            "{}: the state's start is its last transition",
            db.label
        );

        tokio::time::sleep(Duration::from_millis(3200)).await;
        let later = &w.ed.jobs(id, &[], 10, 0).await.unwrap()[0];
        let since = chrono::DateTime::parse_from_rfc3339(&later.state_since).unwrap();
        let expected = (chrono::Utc::now() - since.with_timezone(&chrono::Utc)).num_seconds();
        assert!(
            later.seconds_in_state >= 3 && (later.seconds_in_state - expected).abs() <= 1,
            "{}: {} s in state, {expected} s since {}",
            db.label,
            later.seconds_in_state,
            later.state_since
        );
        worker.release_lease().await.unwrap();
    }
}

/// A one-stage request `name` whose `jobs` jobs run `script` and, when
/// `sites` is not empty, ask for those sites.
fn request_at_sites(
    dir: &std::path::Path,
    name: &str,
    script: &str,
    jobs: u32,
    sites: &str,
) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"{name}\"\n[defaults]\nrelease = \"v1\"\n{sites}\n[[stage]]\nname = \"gen\"\nscript = \"{script}\"\nevents = {jobs}\nevents_per_job = 1\nseed_base = 1\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn x5_the_site_throttle_counts_waiting_jobs_at_the_sites_they_asked_for() {
    for db in all_dbs().await {
        let w = world(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let slow = script(dir.path(), "slow.sh", "sleep 20")
            .display()
            .to_string();
        let fnal = file_and_approve(
            &w,
            &request_at_sites(
                dir.path(),
                "fnal.toml",
                &slow,
                3,
                "sites = { include = [\"FNAL_GPGrid\"] }",
            ),
        )
        .await;
        let anywhere =
            file_and_approve(&w, &request_at_sites(dir.path(), "any.toml", &slow, 3, "")).await;
        let throttles = Throttles {
            per_site: Some(1),
            ..Throttles::default()
        };
        let worker = local_worker(&w.store, &dir.path().join("work"), 1, throttles).await;
        let mut submitted = 0;
        for _ in 0..20 {
            submitted += worker.pass().await.unwrap().submitted;
            if submitted >= 2 {
                break;
            }
        }
        let sent = |jobs: Vec<prodops::ops::jobs::JobView>| {
            jobs.iter().filter(|j| j.batch_job_id.is_some()).count()
        };
        assert_eq!(
            (
                sent(w.ed.jobs(fnal, &[], 10, 0).await.unwrap()),
                sent(w.ed.jobs(anywhere, &[], 10, 0).await.unwrap())
            ),
            (1, 1),
            "{}: one job in flight per site: FNAL_GPGrid (asked for) and local (the default)",
            db.label
        );
        worker.release_lease().await.unwrap();
    }
}
