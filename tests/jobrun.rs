//! `prodops job-run`, the job-side runner (M10): stages measured and recorded,
//! marker lines, limits, and how each kind of failure is reported.

use prodops::model::jobspec::{files, JobResult, JobRunSpec, StageEvent};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A job directory with a spec whose script is `body` (a shell script).
struct Job {
    dir: tempfile::TempDir,
    spec: JobRunSpec,
}

impl Job {
    fn new(body: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("script.sh");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = JobRunSpec {
            job: 42,
            attempt: 2,
            executable: script.display().to_string(),
            args: Vec::new(),
            env: BTreeMap::new(),
            inputs: Vec::new(),
            tarball: None,
            script: None,
            output_dir: dir.path().join("final").display().to_string(),
            memory_mb: 200,
            wall_seconds: 60,
        };
        Self { dir, spec }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes job.json and runs `prodops job-run` on it; returns its exit code.
    fn run(&self) -> i32 {
        std::fs::write(
            self.path(files::SPEC),
            serde_json::to_vec(&self.spec).unwrap(),
        )
        .unwrap();
        run_spec(&self.path(files::SPEC), &self.path(files::STDOUT))
    }

    fn result(&self) -> JobResult {
        serde_json::from_slice(&std::fs::read(self.path(files::RESULT)).unwrap()).unwrap()
    }

    fn stages(&self) -> Vec<StageEvent> {
        std::fs::read_to_string(self.path(files::STAGES))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// (name, ok, cpu_ms, max_rss_kb) of every ended stage, in order.
    fn ended(&self) -> Vec<(String, bool, i64, i64)> {
        self.stages()
            .into_iter()
            .filter_map(|e| match e {
                StageEvent::End {
                    stage,
                    ok,
                    cpu_ms,
                    max_rss_kb,
                    ..
                } => Some((stage, ok, cpu_ms, max_rss_kb)),
                StageEvent::Start { .. } => None,
            })
            .collect()
    }

    fn stage_names(&self) -> Vec<String> {
        self.ended().into_iter().map(|s| s.0).collect()
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self.path(files::STDOUT)).unwrap_or_default()
    }
}

fn run_spec(spec: &Path, stdout: &Path) -> i32 {
    Command::new(env!("CARGO_BIN_EXE_prodops"))
        .args(["job-run", "--spec"])
        .arg(spec)
        .stdout(std::fs::File::create(stdout).unwrap())
        .status()
        .unwrap()
        .code()
        .unwrap_or(-1)
}

#[test]
fn m10_a_job_runs_as_stage_in_unpack_run_copy_out_with_its_inputs_and_outputs() {
    let mut job = Job::new(
        "echo \"$PRODOPS_JOB_ID/$PRODOPS_ATTEMPT seed=$PRODOPS_SEED\"\nfor f in $PRODOPS_INPUT_FILES; do cp \"$f\" \"$PRODOPS_OUTPUT_DIR/copy_$(basename \"$f\")\"; done",
    );
    let inputs = tempfile::tempdir().unwrap();
    for name in ["a.root", "b.root"] {
        std::fs::write(inputs.path().join(name), name).unwrap();
        job.spec
            .inputs
            .push(inputs.path().join(name).display().to_string());
    }
    job.spec
        .env
        .insert("PRODOPS_SEED".into(), "20261122".into());
    assert_eq!(job.run(), 0, "{}", job.stdout());
    assert_eq!(job.stage_names(), ["stage-in", "unpack", "run", "copy-out"]);
    assert!(
        job.ended().iter().all(|s| s.1 && s.3 > 0),
        "every stage ok with a peak RSS: {:?}",
        job.ended()
    );
    assert!(
        job.stdout().contains("42/2 seed=20261122"),
        "{}",
        job.stdout()
    );
    let result = job.result();
    assert!(result.succeeded(), "{result:?}");
    let names: Vec<_> = result.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["copy_a.root", "copy_b.root"]);
    for out in &result.outputs {
        assert_eq!(
            std::fs::read_to_string(&out.path).unwrap().len() as i64,
            out.size
        );
        assert!(out.path.starts_with(&job.spec.output_dir));
    }
    assert!(job.path("in/a.root").is_file(), "inputs staged into in/");
    assert!(
        !job.path("out/copy_a.root").exists(),
        "outputs moved, not copied"
    );
    assert!(result.start_ms <= result.end_ms && !result.node.is_empty());
}

#[test]
fn m10_marker_lines_open_stages_and_count_events() {
    let job = Job::new("echo PRODOPS_EVENTS 40\necho PRODOPS_STAGE merge\necho PRODOPS_EVENTS 2\necho PRODOPS_STAGE two words\necho done");
    assert_eq!(job.run(), 0);
    assert_eq!(
        job.stage_names(),
        ["stage-in", "unpack", "run", "merge", "copy-out"]
    );
    assert_eq!(job.result().events, Some(42));
    assert!(
        job.stdout().contains("PRODOPS_STAGE merge\n"),
        "markers are passed through to the log"
    );
}

#[test]
fn m10_cpu_time_of_the_run_stage_is_measured() {
    let job = Job::new("i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done");
    assert_eq!(job.run(), 0);
    let run = job.ended().into_iter().find(|s| s.0 == "run").unwrap();
    assert!(run.2 >= 50, "a busy loop uses CPU: {run:?}");
}

#[test]
fn d1_a_failing_script_reports_its_exit_code_and_skips_copy_out() {
    let job = Job::new("echo partial > \"$PRODOPS_OUTPUT_DIR/x\"\nexit 3");
    assert_eq!(job.run(), 3);
    let result = job.result();
    assert_eq!(
        (
            result.exit_code,
            result.signal,
            result.failed_stage.as_deref()
        ),
        (Some(3), None, Some("run"))
    );
    assert!(result.outputs.is_empty());
    assert_eq!(job.stage_names(), ["stage-in", "unpack", "run"]);
    assert!(!job.ended()[2].1, "run stage recorded as failed");
}

#[test]
fn d1_a_script_failing_in_its_own_stage_names_that_stage() {
    let job = Job::new("echo PRODOPS_STAGE validate\nexit 5");
    assert_eq!(job.run(), 5);
    assert_eq!(job.result().failed_stage.as_deref(), Some("validate"));
}

#[test]
fn d1_a_script_killed_by_a_signal_reports_the_signal() {
    let job = Job::new("kill -TERM $$");
    assert_eq!(job.run(), 128 + 15);
    let result = job.result();
    assert_eq!((result.exit_code, result.signal), (None, Some(15)));
}

#[test]
fn d1_a_job_over_its_memory_limit_is_killed_and_marked_out_of_memory() {
    let mut job =
        Job::new("exec python3 -c 'b = bytearray(300 * 1024 * 1024); import time; time.sleep(30)'");
    job.spec.memory_mb = 100;
    let started = std::time::Instant::now();
    assert_eq!(job.run(), 137);
    assert!(
        started.elapsed().as_secs() < 20,
        "killed well before the script's own end"
    );
    let result = job.result();
    assert!(result.oom && result.signal == Some(9), "{result:?}");
    let run = job.ended().into_iter().find(|s| s.0 == "run").unwrap();
    assert!(
        run.3 > 100 * 1024,
        "peak RSS above the limit is recorded: {run:?}"
    );
}

#[test]
fn d1_a_job_over_its_wall_time_is_killed_and_marked_timed_out() {
    let mut job = Job::new("sleep 30 & wait");
    job.spec.wall_seconds = 1;
    let started = std::time::Instant::now();
    assert_eq!(job.run(), 137);
    assert!(
        started.elapsed().as_secs() < 10,
        "child and grandchild killed"
    );
    assert!(job.result().timed_out);
}

#[test]
fn d1_a_missing_input_fails_stage_in_before_the_script_runs() {
    let mut job = Job::new("echo ran > \"$PRODOPS_WORK_DIR/ran\"");
    job.spec.inputs.push("/nonexistent/input.root".into());
    assert_eq!(job.run(), 1);
    assert_eq!(job.result().failed_stage.as_deref(), Some("stage-in"));
    assert!(!job.path("ran").exists());
}

#[test]
fn m10_a_tarball_is_unpacked_into_the_working_directory() {
    let mut job = Job::new("cat \"$PRODOPS_WORK_DIR/payload/config.txt\"");
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir(src.path().join("payload")).unwrap();
    std::fs::write(src.path().join("payload/config.txt"), "from-the-tarball").unwrap();
    let tarball = src.path().join("code.tar");
    let ok = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(src.path())
        .arg("payload")
        .status()
        .unwrap();
    assert!(ok.success());
    job.spec.tarball = Some(tarball.display().to_string());
    assert_eq!(job.run(), 0);
    assert!(job.stdout().contains("from-the-tarball"));
}

#[test]
fn m10_a_script_without_execute_permission_runs_through_sh() {
    let job = Job::new("echo via-sh");
    std::fs::set_permissions(&job.spec.executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(job.run(), 0);
    assert!(job.stdout().contains("via-sh"));
}

#[test]
fn p4_an_unreadable_spec_exits_2_and_records_a_setup_failure() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(files::SPEC), "{\"job\": \"not a number\"}").unwrap();
    assert_eq!(
        run_spec(
            &dir.path().join(files::SPEC),
            &dir.path().join(files::STDOUT)
        ),
        2
    );
    let result: JobResult =
        serde_json::from_slice(&std::fs::read(dir.path().join(files::RESULT)).unwrap()).unwrap();
    assert_eq!(result.failed_stage.as_deref(), Some("setup"));
}
