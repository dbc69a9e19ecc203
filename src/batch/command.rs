//! Running a batch system's commands: an argument vector (never a shell
//! string), no input, a time limit, and what it printed.

use super::BatchError;
use std::process::Stdio;
use std::time::Duration;

/// What a command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// It exited 0.
    pub success: bool,
}

impl Output {
    /// What the command said first (stderr before stdout), for an error line.
    pub fn first_line(&self) -> String {
        self.stderr
            .lines()
            .chain(self.stdout.lines())
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message")
            .to_string()
    }
}

/// The environment a command runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env<'a> {
    /// Ours, whole.
    Inherited,
    /// Only our variables with these names, or starting with a name that
    /// ends in `*`: for a command that hands its environment on to jobs.
    Only(&'a [&'a str]),
}

impl Env<'_> {
    /// Whether variable `name` passes.
    fn keeps(&self, name: &str) -> bool {
        match self {
            Env::Inherited => true,
            Env::Only(names) => names.iter().any(|kept| match kept.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == *kept,
            }),
        }
    }
}

/// Runs `program` with `args` within `limit`; a command that cannot start or
/// overruns is an error naming it (it is killed on overrun).
pub async fn run(
    system: &str,
    program: &str,
    args: &[String],
    limit: Duration,
) -> Result<Output, BatchError> {
    run_in(Env::Inherited, system, program, args, limit).await
}

/// [`run`] in environment `env`.
pub async fn run_in(
    env: Env<'_>,
    system: &str,
    program: &str,
    args: &[String],
    limit: Duration,
) -> Result<Output, BatchError> {
    let failed = |message: String| BatchError::Failed {
        system: system.to_string(),
        message,
    };
    let mut command = tokio::process::Command::new(program);
    if env != Env::Inherited {
        command
            .env_clear()
            .envs(std::env::vars_os().filter(|(name, _)| env.keeps(&name.to_string_lossy())));
    }
    let child = command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(limit, child)
        .await
        .map_err(|_| {
            failed(format!(
                "`{program}` did not answer within {} s",
                limit.as_secs()
            ))
        })?
        .map_err(|e| failed(format!("cannot run `{program}`: {e}")))?;
    Ok(Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
    })
}

/// Runs a command that must succeed: its standard output, or an error
/// with the first line of what it said.
pub async fn run_ok(
    system: &str,
    program: &str,
    args: &[String],
    limit: Duration,
) -> Result<String, BatchError> {
    run_ok_in(Env::Inherited, system, program, args, limit).await
}

/// [`run_ok`] in environment `env`.
pub async fn run_ok_in(
    env: Env<'_>,
    system: &str,
    program: &str,
    args: &[String],
    limit: Duration,
) -> Result<String, BatchError> {
    let out = run_in(env, system, program, args, limit).await?;
    if out.success {
        return Ok(out.stdout);
    }
    let said = out.first_line();
    Err(BatchError::Failed {
        system: system.to_string(),
        message: format!("`{program}` failed: {said}"),
    })
}

/// `name` in `bin_dir` when one is configured (a site's own install of the
/// batch system's tools, or stand-ins), else `name` looked up on `PATH`.
pub fn program(bin_dir: Option<&std::path::Path>, name: &str) -> String {
    match bin_dir {
        Some(dir) => dir.join(name).display().to_string(),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_keeps_named_variables_and_prefixes() {
        let env = Env::Only(&["PATH", "SBATCH_*"]);
        assert!(env.keeps("PATH"));
        assert!(env.keeps("SBATCH_ACCOUNT"));
        assert!(!env.keeps("PATHS"));
        assert!(!env.keeps("PGPASSWORD"));
        assert!(!env.keeps("SLURM_JOB_ID"));
        assert!(Env::Inherited.keeps("PGPASSWORD"));
    }

    #[tokio::test]
    async fn a_command_run_in_a_narrow_environment_sees_only_those_variables() {
        let printed = run_ok_in(
            Env::Only(&["PATH"]),
            "test",
            "env",
            &[],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let names: Vec<&str> = printed
            .lines()
            .filter_map(|line| line.split_once('=').map(|(name, _)| name))
            .collect();
        assert_eq!(names, ["PATH"], "{printed}");
    }
}
