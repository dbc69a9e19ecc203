//! Pre-launch checks (P1–P4, J3, J10) run by the worker before it submits:
//! each within its timeout, again once its verdict is older than its
//! interval. Submissions a failing check covers stay `created` (held, with
//! the check's verdict as the reason readers show) and go out by themselves
//! on the first pass after it passes again.

use super::{Worker, WorkerError, WORKER_USER};
use crate::batch::BatchSystem;
use crate::model::check::{judge_http, judge_lifetime, CheckSpec, Probe, Verdict};
use crate::store::checks::{forget_unconfigured, record_verdicts};
use crate::store::Conn;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// What the worker remembers of its checks between passes.
#[derive(Debug, Default)]
pub(super) struct CheckBoard {
    /// When each check last ran and its verdict.
    last: HashMap<String, (Instant, Verdict)>,
    /// Verdicts of checks no longer configured were dropped.
    tidied: bool,
}

impl CheckBoard {
    /// The checks failing now with what they saw, running (and recording)
    /// those that are due.
    pub(super) async fn failing<'w>(
        &mut self,
        worker: &'w Worker,
        conn: &mut Conn,
    ) -> Result<Vec<(&'w CheckSpec, String)>, WorkerError> {
        let due: Vec<&CheckSpec> = worker
            .checks
            .iter()
            .filter(|c| {
                self.last
                    .get(&c.name)
                    .is_none_or(|(at, _)| at.elapsed() >= c.every)
            })
            .collect();
        if !due.is_empty() || !self.tidied {
            let verdicts = run_all(&due, &worker.backends).await;
            let mut tx = worker.store.begin_on(conn).await?;
            if !self.tidied {
                let names: Vec<&str> = worker.checks.iter().map(|c| c.name.as_str()).collect();
                forget_unconfigured(&mut tx, &names).await?;
            }
            record_verdicts(&mut tx, &verdicts, WORKER_USER).await?;
            crate::store::commit(tx).await?;
            self.tidied = true;
            for (spec, verdict) in verdicts {
                self.last
                    .insert(spec.name.clone(), (Instant::now(), verdict));
            }
        }
        Ok(worker
            .checks
            .iter()
            .filter_map(|c| match self.last.get(&c.name) {
                Some((_, verdict)) if !verdict.ok => Some((c, verdict.detail.clone())),
                _ => None,
            })
            .collect())
    }
}

/// Runs `checks` at once, each within its timeout.
pub async fn run_all<'c>(
    checks: &[&'c CheckSpec],
    backends: &BTreeMap<String, Arc<dyn BatchSystem>>,
) -> Vec<(&'c CheckSpec, Verdict)> {
    let runs = checks.iter().map(|c| run_check(c, backends));
    let verdicts = futures::future::join_all(runs).await;
    checks.iter().copied().zip(verdicts).collect()
}

/// Runs one check within its timeout; a check that overruns fails.
pub async fn run_check(
    spec: &CheckSpec,
    backends: &BTreeMap<String, Arc<dyn BatchSystem>>,
) -> Verdict {
    match tokio::time::timeout(spec.timeout, probe(&spec.probe, backends)).await {
        Ok(verdict) => verdict,
        Err(_) => Verdict::fail(format!("no answer within {} s", spec.timeout.as_secs_f64())),
    }
}

async fn probe(probe: &Probe, backends: &BTreeMap<String, Arc<dyn BatchSystem>>) -> Verdict {
    match probe {
        Probe::Http {
            url,
            status,
            json_field,
            json_equals,
        } => http(url, *status, json_field.as_deref(), json_equals.as_deref()).await,
        Probe::Command { argv } => command(argv).await,
        Probe::QueueDepth { backend, max, of } => match backends.get(backend) {
            None => Verdict::fail(format!("backend `{backend}` is not configured")),
            Some(system) => match system.queue_depth(of).await {
                Ok(depth) => {
                    let said = format!(
                        "{} {} queued or running (limit {max})",
                        depth.jobs, depth.whose
                    );
                    if depth.jobs > *max {
                        Verdict::fail(said)
                    } else {
                        Verdict::pass(said)
                    }
                }
                Err(e) => Verdict::fail(e.to_string()),
            },
        },
        Probe::Software { path, program } => software(path.as_deref(), program.as_deref()),
        Probe::Credential {
            kind,
            file,
            min_hours,
        } => match tokio::fs::read_to_string(file).await {
            Err(e) => Verdict::fail(format!("cannot read {}: {e}", file.display())),
            Ok(text) => match kind.expiry(&text) {
                Err(e) => Verdict::fail(format!("{}: {e}", file.display())),
                Ok(expires) => {
                    judge_lifetime(*kind, expires, chrono::Utc::now().timestamp(), *min_hours)
                }
            },
        },
    }
}

/// GETs `url`; errors leave the URL out (it may carry a key).
async fn http(url: &str, status: u16, field: Option<&str>, equals: Option<&str>) -> Verdict {
    let answer = async {
        let response = reqwest::Client::new().get(url).send().await?;
        let code = response.status().as_u16();
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((code, body))
    };
    match answer.await {
        Ok((code, body)) => judge_http(code, &body, status, field, equals),
        Err(e) => Verdict::fail(format!("no answer: {}", causes(&e.without_url()))),
    }
}

/// An error and its causes on one line (`error sending request: … : Connection refused`).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `argv` (no shell); passes on exit 0.
async fn command(argv: &[String]) -> Verdict {
    let out = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Err(e) => Verdict::fail(format!("cannot run `{}`: {e}", argv[0])),
        Ok(out) if out.status.success() => Verdict::pass("exit 0"),
        Ok(out) => {
            let said = String::from_utf8_lossy(&out.stderr);
            let first = said.lines().map(str::trim).find(|l| !l.is_empty());
            let code = out
                .status
                .code()
                .map_or("killed".to_string(), |c| format!("exit {c}"));
            Verdict::fail(match first {
                Some(line) => format!("{code}: {line}"),
                None => code,
            })
        }
    }
}

/// Passes when `path` exists and `program` is an executable on `PATH`.
fn software(path: Option<&Path>, program: Option<&str>) -> Verdict {
    if let Some(path) = path.filter(|p| !p.exists()) {
        return Verdict::fail(format!("{} is missing", path.display()));
    }
    if let Some(program) = program {
        return match on_path(program) {
            Some(found) => Verdict::pass(format!("{program} is {}", found.display())),
            None => Verdict::fail(format!("`{program}` is not on PATH")),
        };
    }
    Verdict::pass(format!(
        "{} is present",
        path.map(|p| p.display().to_string()).unwrap_or_default()
    ))
}

/// `program` as found on `PATH` (or the path itself when it names one).
fn on_path(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = Path::new(program);
        return executable(p).then(|| p.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}
