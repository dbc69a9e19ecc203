//! The HTCondor and jobsub backends end to end (issue 6, X10): `prodops
//! --batch` drives stand-in `condor_*` and `jobsub_*` executables
//! (tests/standins/: they run jobs as local processes and answer in the
//! documented formats), including a submission that fails and a job that
//! exits non-zero, and a running job held and released.

mod common;

use common::{file_and_approve, script, world, World};
use prodops::model::ids::CampaignId;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The stand-in executables.
fn standins() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins")
}

/// True when the stand-ins can run (they need /usr/bin/python3); in CI they must.
fn standins_usable() -> bool {
    let usable = Path::new("/usr/bin/python3").is_file();
    if !usable {
        common::skipping("/usr/bin/python3 is missing: the HTCondor/jobsub stand-ins need it");
    }
    usable
}

/// A directory with the database, the stand-ins' state and a config using `section`.
struct Site {
    dir: tempfile::TempDir,
    db: common::TestDb,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        Site {
            dir,
            db: common::sqlite(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The next `n` submissions fail the way the real tools do.
    fn fail_next_submits(&self, n: u32) {
        std::fs::write(self.path("state/fail-submits"), n.to_string()).unwrap();
    }

    /// Writes the configuration with this backend section.
    fn configure(&self, section: &str) {
        let text = section
            .replace("WORK", &self.path("pool").display().to_string())
            .replace("BIN", &standins().display().to_string());
        std::fs::write(self.path("config.toml"), text).unwrap();
    }

    /// `prodops --batch` with the stand-ins on PATH and `env` set.
    fn batch(&self, env: &[(&str, &str)]) -> Output {
        let path = format!(
            "{}:{}",
            standins().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(env!("CARGO_BIN_EXE_prodops"))
            .args(["--db", &self.db.url, "--batch", "--config"])
            .arg(self.path("config.toml"))
            .arg("--work-dir")
            .arg(self.path("work"))
            .env("PATH", path)
            .env("PRODOPS_STANDIN_STATE", self.path("state"))
            .env_remove("PRODOPS_FAILPOINT")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// One worker pass (`prodops --batch --once`).
    fn pass(&self) -> Output {
        let path = format!(
            "{}:{}",
            standins().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(env!("CARGO_BIN_EXE_prodops"))
            .args(["--db", &self.db.url, "--batch", "--once", "--config"])
            .arg(self.path("config.toml"))
            .arg("--work-dir")
            .arg(self.path("work"))
            .env("PATH", path)
            .env("PRODOPS_STANDIN_STATE", self.path("state"))
            .env_remove("PRODOPS_FAILPOINT")
            .output()
            .unwrap()
    }

    /// `prodops --batch` until nothing is left to do.
    fn run_batch(&self) -> Output {
        let out = self.batch(&[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// The example MC request (3 stages, 25 jobs), sent to `backend`.
fn mc_on(dir: &Path, backend: &str) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let text = std::fs::read_to_string(examples.join("mc-request.toml"))
        .unwrap()
        .replace(
            "backend   = \"local\"",
            &format!("backend   = \"{backend}\""),
        )
        .replace("scripts/", &format!("{}/scripts/", examples.display()));
    let path = dir.join("mc.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A one-stage request of 3 jobs on `backend` whose seed-2 job exits 3.
fn failing_one(dir: &Path, backend: &str) -> PathBuf {
    script(
        dir,
        "gen.sh",
        "[ \"$PRODOPS_SEED\" = 2 ] && exit 3\necho \"PRODOPS_EVENTS $PRODOPS_EVENTS\"",
    );
    let path = dir.join("one.toml");
    std::fs::write(
        &path,
        format!(
            "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"t\"\n[defaults]\nrelease = \"v1\"\nbackend = \"{backend}\"\nmax_attempts = 2\nresources = {{ memory_mb = 300, wall_hours = 1 }}\nsites = {{ usage_model = [\"OPPORTUNISTIC\"], include = [\"Standin_Site\"], exclude = [\"BadSite\"] }}\n[[stage]]\nname = \"gen\"\nscript = \"gen.sh\"\nevents = 3\nevents_per_job = 1\nseed_base = 1\n"
        ),
    )
    .unwrap();
    path
}

async fn jobs(w: &World, id: CampaignId) -> Vec<prodops::ops::jobs::JobView> {
    w.ed.jobs(id, &[], 1000, 0).await.unwrap()
}

/// Asserts the failing one-stage campaign: seed 2 failed twice with exit 3, the others succeeded.
async fn assert_failed_with_exit_code(w: &World, id: CampaignId, id_shape: fn(&str) -> bool) {
    assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "failed");
    let all = jobs(w, id).await;
    let failed: Vec<_> = all.iter().filter(|j| j.state == "failed").collect();
    assert_eq!(failed.len(), 2, "attempts 1 and 2 of seed 2: {all:#?}");
    assert!(
        failed
            .iter()
            .all(|j| j.exit_code == Some(3) && j.plan["seed"] == 2),
        "{failed:#?}"
    );
    let succeeded = all.iter().filter(|j| j.state == "succeeded").count();
    assert_eq!(succeeded, 2, "{all:#?}");
    assert!(
        all.iter()
            .all(|j| j.batch_job_id.as_deref().is_some_and(id_shape)),
        "{all:#?}"
    );
}

fn condor_id(id: &str) -> bool {
    id.split_once('.')
        .is_some_and(|(c, p)| c.parse::<u64>().is_ok() && p.parse::<u64>().is_ok())
}

fn jobsub_id(id: &str) -> bool {
    id.parse::<prodops::batch::jobsub::parse::JobsubId>()
        .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn x10_the_example_campaign_runs_through_htcondor_clusters_after_a_failed_submit() {
    if !standins_usable() {
        return;
    }
    let site = Site::new();
    let w = world(&site.db).await;
    site.configure("[htcondor]\nwork_dir = \"WORK\"\nbin_dir = \"BIN\"\npoll_seconds = 1\n");
    site.fail_next_submits(1);
    let id = file_and_approve(&w, &mc_on(site.dir.path(), "htcondor")).await;
    let out = site.run_batch();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("condor_submit` failed: ERROR"),
        "the failed submit is reported: {said}"
    );
    let c = w.ed.campaign(id).await.unwrap();
    assert_eq!(c.request.state, "succeeded", "{said}\n{c:#?}");
    let all = jobs(&w, id).await;
    assert_eq!(all.len(), 25);
    assert!(
        all.iter().all(|j| j.site.as_deref() == Some("Standin_Site")
            && j.batch_job_id.as_deref().is_some_and(condor_id)),
        "M9: {all:#?}"
    );
    let clusters: std::collections::BTreeSet<&str> = all
        .iter()
        .filter_map(|j| j.batch_job_id.as_deref()?.split('.').next())
        .collect();
    assert_eq!(clusters.len(), 3, "one cluster per stage: {clusters:?}");
    let measured: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM jobs j WHERE (SELECT COUNT(*) FROM job_stages s WHERE s.job_id = j.id AND s.cpu_ms IS NOT NULL) >= 3",
    )
    .fetch_one(w.store.pool())
    .await
    .unwrap();
    assert_eq!(measured, 25, "M10: stage records came back with the output");
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn x10_d3_a_failing_htcondor_job_is_retried_with_its_exit_code() {
    if !standins_usable() {
        return;
    }
    let site = Site::new();
    let w = world(&site.db).await;
    site.configure("[htcondor]\nwork_dir = \"WORK\"\nbin_dir = \"BIN\"\npoll_seconds = 1\n");
    let id = file_and_approve(&w, &failing_one(site.dir.path(), "htcondor")).await;
    site.run_batch();
    assert_failed_with_exit_code(&w, id, condor_id).await;
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn x10_j11_jobsub_runs_a_campaign_after_a_failed_submit_and_reads_exit_codes_from_logs() {
    if !standins_usable() {
        return;
    }
    let site = Site::new();
    let w = world(&site.db).await;
    site.configure(
        "[jobsub]\nwork_dir = \"WORK\"\nbin_dir = \"BIN\"\ngroup = \"nova\"\nrole = \"Production\"\npoll_seconds = 1\n",
    );
    site.fail_next_submits(1);
    let id = file_and_approve(&w, &failing_one(site.dir.path(), "jobsub")).await;
    let out = site.run_batch();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("jobsub_submit` failed: "), "{said}");
    assert_failed_with_exit_code(&w, id, jobsub_id).await;
    let argv_files: Vec<PathBuf> = std::fs::read_dir(site.path("state/jobsub"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".argv.json"))
        .collect();
    assert!(!argv_files.is_empty());
    let argv: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(&argv_files[0]).unwrap()).unwrap();
    for expected in [
        "--resource-provides=usage_model=OPPORTUNISTIC",
        "Standin_Site",
        "BadSite",
        "300MB",
        "Production",
    ] {
        assert!(
            argv.iter().any(|a| a == expected),
            "J11: {expected} passed through: {argv:?}"
        );
    }
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn j2_j9_an_experiment_launch_script_submits_through_jobsub_and_its_jobs_are_followed() {
    if !standins_usable() {
        return;
    }
    let site = Site::new();
    let w = world(&site.db).await;
    site.configure(
        "[jobsub]\nwork_dir = \"WORK\"\nbin_dir = \"BIN\"\ngroup = \"nova\"\npoll_seconds = 1\n",
    );
    let dir = site.dir.path();
    script(
        dir,
        "job.sh",
        "[ \"$PRODOPS_SEED\" = 2 ] && exit 3\necho simulated",
    );
    let runs = site.path("launches");
    script(
        dir,
        "nova_launch.sh",
        &format!(
            "# the experiment's own launcher: one jobsub job per call\necho \"$PRODOPS_JOB $*\" >> {runs}\nexec jobsub_submit -G nova --role Analysis -e PRODOPS_SEED file://{job}",
            runs = runs.display(),
            job = dir.join("job.sh").display()
        ),
    );
    let path = dir.join("launch.toml");
    std::fs::write(
        &path,
        "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"launched\"\n[defaults]\nrelease = \"v1\"\nbackend = \"jobsub\"\nmax_attempts = 2\n[[stage]]\nname = \"gen\"\nlaunch = { command = \"./nova_launch.sh\", args = [\"--fcl\", \"gen.fcl\"] }\nevents = 3\nevents_per_job = 1\nseed_base = 1\n",
    )
    .unwrap();
    let id = file_and_approve(&w, &path).await;
    site.run_batch();
    assert_failed_with_exit_code(&w, id, jobsub_id).await;
    let calls = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(
        calls.lines().count(),
        4,
        "one run per job attempt, none twice: {calls}"
    );
    assert!(
        calls.lines().all(|l| l.ends_with(" --fcl gen.fcl")),
        "{calls}"
    );
    w.store.close().await;
}

/// `prodops --batch` with a crash point (jobs stay idle a while): it must die by SIGKILL there.
fn crash_at(site: &Site, failpoint: &str) {
    let out = site.batch(&[
        ("PRODOPS_FAILPOINT", failpoint),
        ("PRODOPS_STANDIN_START_DELAY", "3"),
    ]);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{failpoint}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Clusters the stand-ins were asked to make.
fn clusters_made(site: &Site) -> u64 {
    std::fs::read_to_string(site.path("state/counter"))
        .unwrap_or_default()
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_a_worker_killed_right_after_condor_submit_or_jobsub_submit_submits_nothing_twice() {
    if !standins_usable() {
        return;
    }
    for (backend, section, point) in [
        (
            "htcondor",
            "[htcondor]\nwork_dir = \"WORK\"\nbin_dir = \"BIN\"\npoll_seconds = 1\n",
            "htcondor:after-submit@1",
        ),
        (
            "jobsub",
            "[jobsub]\nwork_dir = \"WORK\"\nbin_dir = \"BIN\"\ngroup = \"nova\"\npoll_seconds = 1\n",
            "jobsub:after-submit@1",
        ),
    ] {
        let site = Site::new();
        let w = world(&site.db).await;
        site.configure(section);
        let id = file_and_approve(&w, &failing_one(site.dir.path(), backend)).await;
        crash_at(&site, point);
        assert_eq!(clusters_made(&site), 1, "{backend}");
        site.run_batch();
        assert_failed_with_exit_code(&w, id, if backend == "jobsub" { jobsub_id } else { condor_id }).await;
        assert_eq!(
            clusters_made(&site),
            2,
            "{backend}: the first cluster was adopted; only the retry of seed 2 was submitted"
        );
        w.store.close().await;
    }
}

/// Runs single passes until the only job of `id` is `want` and `starts`
/// counts `launches` runs of its script (panics after 30 s).
async fn pass_until(site: &Site, w: &World, id: CampaignId, want: &str, launches: usize) {
    let starts = site.path("starts");
    for _ in 0..150 {
        let out = site.pass();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let state = jobs(w, id).await[0].state.clone();
        let ran = std::fs::read_to_string(&starts)
            .unwrap_or_default()
            .lines()
            .count();
        if state == want && ran == launches {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!(
        "never {want} after {launches} runs: {:?}",
        jobs(w, id).await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn x6_x10_a_held_running_htcondor_job_is_evicted_and_starts_again_from_the_beginning() {
    if !standins_usable() {
        return;
    }
    let site = Site::new();
    let w = world(&site.db).await;
    site.configure("[htcondor]\nwork_dir = \"WORK\"\nbin_dir = \"BIN\"\npoll_seconds = 1\n");
    let (go, starts) = (site.path("go"), site.path("starts"));
    script(
        site.dir.path(),
        "gen.sh",
        &format!(
            "echo start >> {}\nwhile [ ! -e {} ]; do sleep 0.05; done\necho \"PRODOPS_EVENTS $PRODOPS_EVENTS\"",
            starts.display(),
            go.display()
        ),
    );
    let path = site.path("one.toml");
    std::fs::write(
        &path,
        "experiment = \"nova\"\nkind = \"mc\"\ntitle = \"t\"\n[defaults]\nrelease = \"v1\"\nbackend = \"htcondor\"\n[[stage]]\nname = \"gen\"\nscript = \"gen.sh\"\nevents = 1\nevents_per_job = 1\nseed_base = 1\n",
    )
    .unwrap();
    let id = file_and_approve(&w, &path).await;
    pass_until(&site, &w, id, "running", 1).await;
    let effects = w.root.running_hold_effects(id).await.unwrap();
    assert_eq!(
        effects,
        [(
            "htcondor".to_string(),
            prodops::batch::running_hold_effect("htcondor")
        )]
    );
    w.root
        .hold_with_scope(id, prodops::model::hold::HoldScope::Running, "drain")
        .await
        .unwrap();
    pass_until(&site, &w, id, "held", 1).await;
    w.root.release(id, "").await.unwrap();
    pass_until(&site, &w, id, "running", 2).await;
    std::fs::write(&go, "").unwrap();
    site.run_batch();
    assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "succeeded");
    let job: prodops::model::ids::JobId = jobs(&w, id).await[0].id.parse().unwrap();
    let trail: Vec<String> =
        w.ed.history(job.entity())
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.new)
            .collect();
    assert_eq!(
        trail,
        [
            "created",
            "submitting",
            "queued",
            "running",
            "held",
            "queued",
            "running",
            "succeeded"
        ]
    );
    w.store.close().await;
}

/// The events.log files of the HTCondor backend's groups.
fn event_logs(site: &Site) -> String {
    let groups = site.path("pool/groups");
    std::fs::read_dir(&groups)
        .unwrap_or_else(|e| panic!("{}: {e}", groups.display()))
        .flatten()
        .filter_map(|group| std::fs::read_to_string(group.path().join("events.log")).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn x10_d3_jobs_known_only_from_an_event_log_with_cluster_records_keep_their_own_ends() {
    if !standins_usable() {
        return;
    }
    let site = Site::new();
    let w = world(&site.db).await;
    site.configure(
        "[htcondor]\nwork_dir = \"WORK\"\nbin_dir = \"BIN\"\npoll_seconds = 1\nsubmit_lines = [\"max_materialize = 10\"]\n",
    );
    let id = file_and_approve(&w, &failing_one(site.dir.path(), "htcondor")).await;
    let out = site.batch(&[("PRODOPS_STANDIN_NO_HISTORY", "1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = event_logs(&site);
    assert!(
        logs.contains(".-01.000) ") && logs.contains("Cluster removed"),
        "the clusters wrote their own records (proc -01): {logs}"
    );
    assert_failed_with_exit_code(&w, id, condor_id).await;
    w.store.close().await;
}

/// A one-job request whose job is submitted by the experiment's own launch
/// script: an executable HTCondor cannot run (no `#!`: held with code 6,
/// subcode 8) and `periodic_release` in its submit description. `config`
/// is added to `[htcondor]`.
async fn exec_format_hold(site: &Site, w: &World, config: &str, max_attempts: u32) -> CampaignId {
    site.configure(&format!(
        "[htcondor]\nwork_dir = \"WORK\"\nbin_dir = \"BIN\"\npoll_seconds = 1\n{config}"
    ));
    let dir = site.dir.path();
    std::fs::write(dir.join("job.sh"), "echo \"no interpreter line\"\n").unwrap();
    script(
        dir,
        "condor_launch.sh",
        &format!(
            "# the experiment's own launcher and submit description\nsub={d}/job-$PRODOPS_JOB_ID.sub\nprintf '%s\\n' 'executable = {d}/job.sh' 'output = {d}/job.out' 'log = {d}/job.log' 'periodic_release = (HoldReasonCode == 6) && (NumJobStarts < 3)' 'queue' > \"$sub\"\nout=$(condor_submit \"$sub\") || exit 1\necho \"$out\" | sed -n 's/.* submitted to cluster \\([0-9]*\\)\\./\\1.0/p'",
            d = dir.display()
        ),
    );
    let path = dir.join("launch.toml");
    std::fs::write(
        &path,
        format!("experiment = \"nova\"\nkind = \"mc\"\ntitle = \"launched\"\n[defaults]\nrelease = \"v1\"\nbackend = \"htcondor\"\nmax_attempts = {max_attempts}\n[[stage]]\nname = \"gen\"\nlaunch = {{ command = \"./condor_launch.sh\" }}\nevents = 1\nevents_per_job = 1\nseed_base = 1\n"),
    )
    .unwrap();
    file_and_approve(w, &path).await
}

/// The stand-in's ad of job `id` (`C.P`).
fn standin_ad(site: &Site, id: &str) -> serde_json::Value {
    let path = site.path(&format!("state/jobs/{id}.json"));
    let job: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    job["ad"].clone()
}

/// Runs single passes until the campaign's only job has a batch id whose
/// stand-in ad is held (panics after 30 s); that id.
async fn pass_until_held(site: &Site, w: &World, id: CampaignId) -> String {
    for _ in 0..150 {
        let out = site.pass();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(batch_id) = jobs(w, id).await[0].batch_job_id.clone() {
            if standin_ad(site, &batch_id)["JobStatus"] == 5 {
                return batch_id;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("never held: {:?}", jobs(w, id).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn x10_a_system_hold_with_a_periodic_release_is_left_for_the_schedd_to_release() {
    if !standins_usable() {
        return;
    }
    let site = Site::new();
    let w = world(&site.db).await;
    let id = exec_format_hold(&site, &w, "", 2).await;
    let held = pass_until_held(&site, &w, id).await;
    let ad = standin_ad(&site, &held);
    assert_eq!(
        (&ad["HoldReasonCode"], &ad["HoldReasonSubCode"]),
        (&serde_json::json!(6), &serde_json::json!(8))
    );
    for _ in 0..3 {
        assert!(site.pass().status.success());
    }
    assert_eq!(
        standin_ad(&site, &held)["JobStatus"],
        5,
        "still held within the grace, not condor_rm'd"
    );
    assert_ne!(jobs(&w, id).await[0].state, "failed");

    std::fs::write(site.path("job.sh"), "#!/bin/sh\necho fixed\n").unwrap();
    let released = Command::new(standins().join("condor_release"))
        .arg(&held)
        .env("PRODOPS_STANDIN_STATE", site.path("state"))
        .output()
        .unwrap();
    assert!(released.status.success(), "as periodic_release would");
    site.run_batch();
    assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "succeeded");
    let all = jobs(&w, id).await;
    assert_eq!(
        all.iter().map(|j| j.state.as_str()).collect::<Vec<_>>(),
        ["succeeded"],
        "one attempt, never failed nor retried: {all:#?}"
    );
    w.store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn d1_x10_with_no_grace_a_system_hold_fails_at_once_with_its_code_and_subcode() {
    if !standins_usable() {
        return;
    }
    let site = Site::new();
    let w = world(&site.db).await;
    let id = exec_format_hold(&site, &w, "system_hold_grace_seconds = 0\n", 1).await;
    site.run_batch();
    assert_eq!(w.ed.campaign(id).await.unwrap().request.state, "failed");
    let job = &jobs(&w, id).await[0];
    assert_eq!(job.state, "failed");
    let failure = job.failure.as_deref().unwrap_or_default();
    assert!(
        failure.starts_with("held by HTCondor: ")
            && failure.contains("Exec format error")
            && failure.ends_with("(hold code 6, subcode 8)"),
        "{failure}"
    );
    assert_eq!(
        standin_ad(&site, job.batch_job_id.as_deref().unwrap())["JobStatus"],
        3,
        "removed"
    );
    w.store.close().await;
}

/// Submits `count` idle jobs of accounting group `group` straight to the
/// stand-in schedd (another experiment's, or prodops' own made by hand).
fn submit_foreign(site: &Site, group: &str, count: u32) {
    let description = site.path(&format!("{group}.sub"));
    std::fs::write(
        &description,
        format!("executable = /bin/sleep\narguments = 600\n+AccountingGroup = \"{group}\"\nqueue {count}\n"),
    )
    .unwrap();
    let out = Command::new(standins().join("condor_submit"))
        .arg(&description)
        .env("PRODOPS_STANDIN_STATE", site.path("state"))
        .env("PRODOPS_STANDIN_START_DELAY", "3600")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn p3_a_queue_check_counts_only_its_experiments_and_roles_jobs_on_htcondor() {
    if !standins_usable() {
        return;
    }
    let site = Site::new();
    common::world(&site.db).await;
    submit_foreign(&site, "group_dune.prod.dunepro", 2);
    submit_foreign(&site, "group_nova.prod.novapro", 1);
    submit_foreign(&site, "group_nova.calib.novacal", 1);
    let check = |name: &str, experiment: &str, role: &str| {
        format!("[[check]]\nname = \"{name}\"\nkind = \"queue\"\nbackend = \"htcondor\"\nexperiment = \"{experiment}\"\nmax_depth = 1\n{role}")
    };
    site.configure(&format!(
        "[htcondor]\nwork_dir = \"WORK\"\nbin_dir = \"BIN\"\n{}\n{}\n{}\n",
        check("nova-prod", "nova", "role = \"prod\"\n"),
        check("nova", "nova", ""),
        check("dune", "dune", ""),
    ));
    let out = Command::new(env!("CARGO_BIN_EXE_prodops"))
        .args(["--db", &site.db.url, "--json", "--config"])
        .arg(site.path("config.toml"))
        .arg("--work-dir")
        .arg(site.path("work"))
        .arg("check")
        .env("PRODOPS_STANDIN_STATE", site.path("state"))
        .output()
        .unwrap();
    let verdicts: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    let detail = |name: &str| {
        let v = verdicts
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap();
        (
            v["passing"].as_bool().unwrap(),
            v["detail"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(
        detail("nova-prod"),
        (
            true,
            "1 jobs of group_nova.prod queued or running (limit 1)".into()
        )
    );
    assert_eq!(
        detail("nova"),
        (
            false,
            "2 jobs of group_nova queued or running (limit 1)".into()
        )
    );
    assert_eq!(
        detail("dune"),
        (
            false,
            "2 jobs of group_dune queued or running (limit 1)".into()
        )
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failing check fails `prodops check`"
    );
    let _ = Command::new(standins().join("condor_rm"))
        .args(["-all"])
        .env("PRODOPS_STANDIN_STATE", site.path("state"))
        .output();
}
