//! Experiment launch scripts (J2, J9): a stage may name the experiment's
//! own submission script instead of our generated submission. It is run
//! once per job (argument vector, no shell) with the job's parameters in
//! its environment, and submits that job itself; the job's batch id is
//! read from what it prints with a pattern (the backend's default, or the
//! stage's `job_id_pattern`).
//!
//! What a script printed is kept in `<journal>/<job name>.out` before it is
//! read, so a worker that dies after the script answered finds the id there
//! instead of submitting the job a second time.

use super::{BatchError, BatchJobId, JobLaunch, Submitted};
use crate::model::spec::Launch;
use regex::Regex;
use std::path::Path;
use std::time::Duration;

/// Longest run of one launch script.
const LAUNCH_LIMIT: Duration = Duration::from_secs(600);

/// Why a launch script's output gave no job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LaunchError {
    /// The pattern is not a regular expression.
    #[error("job_id_pattern `{pattern}` is not a regular expression: {message}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// What the regex parser said.
        message: String,
    },
    /// Nothing in the output matched.
    #[error("the launch script printed no job id matching `{pattern}`; it said: {said}")]
    NoJobId {
        /// The pattern.
        pattern: String,
        /// The first line of its output (or `nothing`).
        said: String,
    },
}

/// The job id in `output`: the first match's first group (or the whole
/// match when the pattern has no group).
pub fn job_id(output: &str, pattern: &str) -> Result<String, LaunchError> {
    let re = Regex::new(pattern).map_err(|e| LaunchError::BadPattern {
        pattern: pattern.to_string(),
        message: e
            .to_string()
            .lines()
            .last()
            .unwrap_or("")
            .trim()
            .to_string(),
    })?;
    let found = re
        .captures_iter(output)
        .filter_map(|c| c.get(1).or_else(|| c.get(0)))
        .map(|m| m.as_str().trim().to_string())
        .find(|id| !id.is_empty());
    found.ok_or_else(|| LaunchError::NoJobId {
        pattern: pattern.to_string(),
        said: output
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("nothing")
            .chars()
            .take(200)
            .collect(),
    })
}

/// Runs `launch` for each of `jobs` not launched before (per the journal
/// in `journal`), and returns every job's batch id.
pub async fn submit(
    system: &str,
    journal: &Path,
    launch: &Launch,
    default_pattern: &str,
    jobs: &[JobLaunch],
) -> Result<Vec<Submitted>, BatchError> {
    let failed = |message: String| BatchError::Failed {
        system: system.to_string(),
        message,
    };
    let pattern = launch.job_id_pattern.as_deref().unwrap_or(default_pattern);
    std::fs::create_dir_all(journal).map_err(|e| super::logs::io_error(system, journal, e))?;
    let mut submitted = Vec::with_capacity(jobs.len());
    for job in jobs {
        let kept = journal.join(format!("{}.out", job.key.name()));
        let output = match std::fs::read_to_string(&kept) {
            Ok(text) => text,
            Err(_) => {
                let text = run_script(system, launch, job).await?;
                write_whole(&kept, &text).map_err(|e| super::logs::io_error(system, &kept, e))?;
                text
            }
        };
        let id = job_id(&output, pattern).map_err(|e| failed(e.to_string()))?;
        submitted.push(Submitted {
            key: job.key,
            batch_id: BatchJobId(id),
        });
    }
    Ok(submitted)
}

/// Runs the script for one job; its standard output, or an error with what it said.
async fn run_script(system: &str, launch: &Launch, job: &JobLaunch) -> Result<String, BatchError> {
    let mut command = tokio::process::Command::new(&launch.command);
    command
        .args(&launch.args)
        .envs(&job.spec.env)
        .env("PRODOPS_JOB", job.key.name())
        .env("PRODOPS_JOB_ID", job.spec.job.to_string())
        .env("PRODOPS_ATTEMPT", job.spec.attempt.to_string())
        .env("PRODOPS_OUTPUT_DIR", &job.spec.output_dir)
        .env("PRODOPS_INPUTS", job.spec.inputs.join("\n"))
        .env("PRODOPS_MEMORY_MB", job.resources.memory_mb.to_string())
        .env("PRODOPS_WALL_SECONDS", job.spec.wall_seconds.to_string())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let failed = |message: String| BatchError::Failed {
        system: system.to_string(),
        message,
    };
    let out = tokio::time::timeout(LAUNCH_LIMIT, command.output())
        .await
        .map_err(|_| {
            failed(format!(
                "launch script `{}` ran over {} s",
                launch.command,
                LAUNCH_LIMIT.as_secs()
            ))
        })?
        .map_err(|e| {
            failed(format!(
                "cannot run launch script `{}`: {e}",
                launch.command
            ))
        })?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let said = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message");
    Err(failed(format!(
        "launch script `{}` failed ({}): {said}",
        launch.command, out.status
    )))
}

/// Writes a file whole (through a temporary and a rename).
fn write_whole(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn j9_the_first_match_of_the_pattern_is_the_job_id() {
        let jobsub = "Attempting to get token ... succeeded\n1 job(s) submitted to cluster 812.\n\nUse job id 812.0@jobsub01.fnal.gov to retrieve output\n";
        assert_eq!(
            job_id(jobsub, r"Use job id (\S+) to retrieve output").unwrap(),
            "812.0@jobsub01.fnal.gov"
        );
        assert_eq!(
            job_id("Submitted batch job 4242\n", r"\d+").unwrap(),
            "4242"
        );
        assert_eq!(
            job_id("Submitted batch job 4242\n", r"Submitted batch job (\d+)").unwrap(),
            "4242"
        );
    }

    #[tokio::test]
    async fn j9_a_job_launched_once_is_not_launched_again_after_a_restart() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let script = dir.path().join("launch.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho x >> {}\necho \"Submitted batch job $((1000 + PRODOPS_JOB_ID))\"\n",
                count.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let launch = Launch {
            command: script.display().to_string(),
            args: Vec::new(),
            job_id_pattern: Some(r"Submitted batch job (\d+)".into()),
        };
        let jobs: Vec<JobLaunch> = (1..=2)
            .map(|j| crate::batch::test_launch(j, Default::default(), Default::default()))
            .collect();
        let journal = dir.path().join("journal");
        let first = submit("t", &journal, &launch, "unused", &jobs)
            .await
            .unwrap();
        let again = submit("t", &journal, &launch, "unused", &jobs)
            .await
            .unwrap();
        assert_eq!(first, again);
        let ids: Vec<&str> = first.iter().map(|s| s.batch_id.0.as_str()).collect();
        assert_eq!(ids, ["1001", "1002"]);
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 2);
    }

    #[test]
    fn j9_no_match_and_bad_patterns_are_clear_errors() {
        assert_eq!(
            job_id("ERROR: proxy expired\nmore\n", r"job id (\S+)")
                .unwrap_err()
                .to_string(),
            "the launch script printed no job id matching `job id (\\S+)`; it said: ERROR: proxy expired"
        );
        assert_eq!(
            job_id("", r"(\d+)").unwrap_err().to_string(),
            "the launch script printed no job id matching `(\\d+)`; it said: nothing"
        );
        let bad = job_id("x", r"(unclosed").unwrap_err().to_string();
        assert!(
            bad.starts_with("job_id_pattern `(unclosed` is not a regular expression"),
            "{bad}"
        );
    }
}
