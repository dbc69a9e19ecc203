//! What Slurm's commands print, read by pure functions (tested on real
//! samples in `tests/fixtures/slurm/`).
//!
//! `squeue --json` and `sacct --json` changed shape between versions: 22.05
//! has plain integers, 23.02 wraps numbers as `{"set", "infinite",
//! "number"}`, 23.11 makes states lists of flags. [`parse_jobs`] reads all
//! three, from either command. `sacct --json` of 22.05 and 23.02 reports
//! every normal exit as success (return code 0): the state is the truth,
//! and [`parse_accounting`] reads the exit codes and signals of
//! `sacct --parsable2` (job rows, their `.batch` steps and
//! `DerivedExitCode`), which [`with_accounted_end`] puts in their place.

use serde_json::Value;

/// Why Slurm's output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlurmParseError {
    /// `sbatch --parsable` printed no job id.
    #[error("sbatch printed no job id: `{0}`")]
    NoJobId(String),
    /// The JSON is not JSON, or not the shape of a job list.
    #[error("unreadable Slurm JSON: {0}")]
    Json(String),
    /// Slurm answered with errors.
    #[error("Slurm reported: {0}")]
    Reported(String),
    /// `sacct --parsable2` printed something other than its table.
    #[error("unreadable sacct table: {0}")]
    Accounting(String),
}

/// One array task (or job) as `squeue`/`sacct` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmTask {
    /// The array's job id (the job's own id when not an array).
    pub array_id: u64,
    /// The task's index in the array (0 when not an array).
    pub task: u64,
    /// The job name.
    pub name: String,
    /// The state (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, …).
    pub state: String,
    /// Slurm's reason (`JobHeldUser`, `NonZeroExitCode`, …), if any.
    pub reason: Option<String>,
    /// Exit code, when Slurm gives a trustworthy one.
    pub exit_code: Option<i64>,
    /// Signal that ended it, if any.
    pub signal: Option<i64>,
    /// Node(s) it ran on.
    pub node: Option<String>,
    /// The partition it was given: the kind of node it runs on (M9).
    pub partition: Option<String>,
}

/// Reads the job id `sbatch --parsable` printed (`JOBID` or `JOBID;CLUSTER`).
pub fn parse_sbatch(out: &str) -> Result<u64, SlurmParseError> {
    out.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .and_then(|l| l.split(';').next())
        .and_then(|id| id.trim().parse().ok())
        .ok_or_else(|| SlurmParseError::NoJobId(out.trim().chars().take(200).collect()))
}

/// Reads the tasks of `squeue --json` or `sacct --json` (22.05, 23.02 or
/// 23.11 shapes). Pending tasks that Slurm lists as one record with a range
/// (`"array_task_string": "1-4,6-9%1"`) come out one task each. Records
/// that are not jobs of an array or batch (job steps) are skipped.
pub fn parse_jobs(text: &str) -> Result<Vec<SlurmTask>, SlurmParseError> {
    let doc: Value =
        serde_json::from_str(text).map_err(|e| SlurmParseError::Json(e.to_string()))?;
    let errors: Vec<String> = doc
        .get("errors")
        .and_then(Value::as_array)
        .map(|errs| errs.iter().map(error_text).collect())
        .unwrap_or_default();
    if !errors.is_empty() {
        return Err(SlurmParseError::Reported(errors.join("; ")));
    }
    let jobs = doc
        .get("jobs")
        .and_then(Value::as_array)
        .ok_or_else(|| SlurmParseError::Json("no `jobs` list".into()))?;
    let mut tasks = Vec::new();
    for job in jobs {
        tasks.extend(tasks_of(job)?);
    }
    Ok(tasks)
}

/// The task(s) one JSON job record stands for.
fn tasks_of(job: &Value) -> Result<Vec<SlurmTask>, SlurmParseError> {
    let bad = |what: &str| SlurmParseError::Json(format!("a job without a readable {what}"));
    let job_id = number(job.get("job_id")).ok_or_else(|| bad("job_id"))?;
    let array = job.get("array");
    let array_id = number(
        array
            .and_then(|a| a.get("job_id"))
            .or(job.get("array_job_id")),
    )
    .filter(|id| *id != 0)
    .unwrap_or(job_id);
    let task = number(
        array
            .and_then(|a| a.get("task_id"))
            .or(job.get("array_task_id")),
    );
    let range = text(
        array
            .and_then(|a| a.get("task"))
            .or(job.get("array_task_string")),
    )
    .filter(|r| !r.is_empty());
    let state_value = job
        .get("state")
        .and_then(|s| s.get("current"))
        .or(job.get("job_state"));
    let state = first_flag(state_value).ok_or_else(|| bad("state"))?;
    let reason = text(
        job.get("state")
            .and_then(|s| s.get("reason"))
            .or(job.get("state_reason")),
    )
    .filter(|r| r != "None");
    let (exit_code, signal) = exit_of(job.get("exit_code"), &state);
    let template = SlurmTask {
        array_id,
        task: task.unwrap_or(0),
        name: text(job.get("name")).unwrap_or_default(),
        state,
        reason,
        exit_code,
        signal,
        node: text(job.get("nodes")).filter(|n| !n.is_empty() && n != "None assigned"),
        partition: text(job.get("partition")).filter(|p| !p.is_empty()),
    };
    Ok(match (task, range) {
        (None, Some(range)) => expand_range(&range)?
            .into_iter()
            .map(|task| SlurmTask {
                task,
                ..template.clone()
            })
            .collect(),
        _ => vec![template],
    })
}

/// A number as 22.05 (`7`) or 23.02+ (`{"set": true, "number": 7}`) print it;
/// `None` for null, unset or infinite.
fn number(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::Object(o) => {
            let set = o.get("set").and_then(Value::as_bool).unwrap_or(true);
            let infinite = o.get("infinite").and_then(Value::as_bool).unwrap_or(false);
            if set && !infinite {
                o.get("number").and_then(Value::as_u64)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A signed number in the same shapes as [`number`].
fn signed(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::Object(o) if o.get("set").and_then(Value::as_bool).unwrap_or(true) => {
            o.get("number").and_then(Value::as_i64)
        }
        _ => None,
    }
}

/// A string, or the first of a list of strings (23.11's flag lists).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => items.iter().find_map(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The base state among a state value's flags (23.11 lists flags such as
/// `["PENDING", "REQUEUED"]`; the first is the base state).
fn first_flag(v: Option<&Value>) -> Option<String> {
    text(v).map(|s| s.split_whitespace().next().unwrap_or("").to_string())
}

/// Exit code and signal: a raw wait status (22.05 `squeue`) or an object
/// with `return_code` and `signal` (22.05 names the number `signal_id`,
/// 23.02 `id`). A job that did not complete but whose code reads 0 is
/// `sacct`'s known bug: the code is then unknown.
fn exit_of(v: Option<&Value>, state: &str) -> (Option<i64>, Option<i64>) {
    let (code, signal) = match v {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(raw) => {
                let signal = raw & 0x7f;
                if signal != 0 {
                    (None, Some(signal))
                } else {
                    (Some((raw >> 8) & 0xff), None)
                }
            }
            None => (None, None),
        },
        Some(Value::Object(o)) => {
            let signal = o
                .get("signal")
                .and_then(|s| {
                    signed(s.get("signal_id"))
                        .or_else(|| signed(s.get("id")))
                        .or_else(|| signed(Some(s)))
                })
                .filter(|s| *s != 0);
            (signed(o.get("return_code")), signal)
        }
        _ => (None, None),
    };
    clean_only_if_completed(state, code, signal)
}

/// States in which a job has ended but did not complete: its exit code is
/// never a clean 0.
const ENDED_UNCLEAN: &[&str] = &[
    "FAILED",
    "TIMEOUT",
    "CANCELLED",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "DEADLINE",
    "BOOT_FAIL",
    "PREEMPTED",
];

/// Whether a task in `state` ended without completing.
fn ended_unclean(state: &str) -> bool {
    ENDED_UNCLEAN.contains(&state)
}

/// `(code, signal)`, except that a clean code 0 of a job that ended without
/// completing is unknown instead (it is a reporting bug, not the job's code).
fn clean_only_if_completed(
    state: &str,
    code: Option<i64>,
    signal: Option<i64>,
) -> (Option<i64>, Option<i64>) {
    let clean = code == Some(0) && signal.is_none();
    (code.filter(|_| !(clean && ended_unclean(state))), signal)
}

/// Whether `task` ended without completing yet carries neither a non-zero
/// exit code nor a signal: its end should be read from `sacct --parsable2`.
pub fn end_is_doubtful(task: &SlurmTask) -> bool {
    ended_unclean(&task.state) && task.signal.is_none() && task.exit_code.unwrap_or(0) == 0
}

/// The `--format` of `sacct --parsable2` that [`parse_accounting`] reads.
pub const ACCOUNTING_FORMAT: &str = "JobID,State,ExitCode,DerivedExitCode";

/// How one task ended by `sacct --parsable2`'s account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountedEnd {
    /// The array's job id (the job's own id when not an array).
    pub array_id: u64,
    /// The task's index in the array (0 when not an array).
    pub task: u64,
    /// The job row's state (`CANCELLED by 999` reads `CANCELLED`).
    pub state: String,
    /// The first non-zero exit code, or 0 for a completed job; `None` when
    /// no row gives one.
    pub exit_code: Option<i64>,
    /// The first signal of the job row, its `.batch` step or `DerivedExitCode`.
    pub signal: Option<i64>,
}

/// The rows of one task: its job row's state and codes, its `.batch` step's code.
#[derive(Default)]
struct TaskRows {
    state: Option<String>,
    job: Option<(i64, i64)>,
    batch: Option<(i64, i64)>,
    derived: Option<(i64, i64)>,
}

/// Reads `sacct --parsable2 --format=JobID,State,ExitCode,DerivedExitCode`
/// (with its header line; columns are found by name, so more may be
/// asked for): one end per task with a job row. The exit code and signal
/// come from the first of the job row's `ExitCode`, the `.batch` step's and
/// the job row's `DerivedExitCode` that is not `0:0` (a timed-out or
/// cancelled job's own row often reads `0:0` while its batch step has the
/// signal); `.extern` and numbered steps are not the job script and are
/// skipped, as are pending ranges (`123_[4-7]`).
pub fn parse_accounting(text: &str) -> Result<Vec<AccountedEnd>, SlurmParseError> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or("").split('|').collect();
    let column = |name: &str| {
        header.iter().position(|h| *h == name).ok_or_else(|| {
            SlurmParseError::Accounting(format!("no {name} column in sacct's header"))
        })
    };
    let (id_at, state_at) = (column("JobID")?, column("State")?);
    let (exit_at, derived_at) = (column("ExitCode")?, column("DerivedExitCode")?);
    let mut rows: std::collections::BTreeMap<(u64, u64), TaskRows> = Default::default();
    for line in lines {
        let fields: Vec<&str> = line.split('|').collect();
        let field = |at: usize| fields.get(at).copied().unwrap_or("");
        let Some((key, step)) = task_and_step(field(id_at)) else {
            continue;
        };
        let entry = rows.entry(key).or_default();
        let exit = exit_pair(field(exit_at))?;
        match step {
            None => {
                entry.state = field(state_at)
                    .split_whitespace()
                    .next()
                    .map(str::to_string);
                entry.job = exit;
                entry.derived = exit_pair(field(derived_at))?;
            }
            Some("batch") => entry.batch = exit,
            Some(_) => {}
        }
    }
    Ok(rows
        .into_iter()
        .filter_map(|((array_id, task), rows)| {
            let state = rows.state?;
            let first = [rows.job, rows.batch, rows.derived]
                .into_iter()
                .flatten()
                .find(|&(code, signal)| code != 0 || signal != 0);
            let (exit_code, signal) = match first {
                Some((code, signal)) if signal != 0 => {
                    (Some(code).filter(|c| *c != 0), Some(signal))
                }
                Some((code, _)) => (Some(code), None),
                None if state == "COMPLETED" => (Some(0), None),
                None => (None, None),
            };
            Some(AccountedEnd {
                array_id,
                task,
                state,
                exit_code,
                signal,
            })
        })
        .collect())
}

/// `((array, task), step)` of a `JobID` (`123_7`, `123_7.batch`, `124`,
/// `124.extern`); `None` for pending ranges (`123_[4-7]`) and other ids.
fn task_and_step(id: &str) -> Option<((u64, u64), Option<&str>)> {
    let (job, step) = match id.split_once('.') {
        Some((job, step)) => (job, Some(step)),
        None => (id, None),
    };
    let key = match job.split_once('_') {
        Some((array, task)) => (array.parse().ok()?, task.parse().ok()?),
        None => (job.parse().ok()?, 0),
    };
    Some((key, step))
}

/// `code:signal` of an `ExitCode` field; `None` when empty.
fn exit_pair(field: &str) -> Result<Option<(i64, i64)>, SlurmParseError> {
    let field = field.trim();
    if field.is_empty() {
        return Ok(None);
    }
    let bad = || {
        SlurmParseError::Accounting(format!("unreadable exit code `{field}` (want code:signal)"))
    };
    let (code, signal) = field.split_once(':').ok_or_else(bad)?;
    Ok(Some((
        code.parse().map_err(|_| bad())?,
        signal.parse().map_err(|_| bad())?,
    )))
}

/// `task` with its exit code and signal from `accounted` when its own are
/// doubtful ([`end_is_doubtful`]) and the accounting gives a non-zero code
/// or a signal (never a clean 0 for a job that did not complete).
pub fn with_accounted_end(task: SlurmTask, accounted: Option<&AccountedEnd>) -> SlurmTask {
    let unclean =
        |end: &&AccountedEnd| end.signal.is_some() || end.exit_code.is_some_and(|c| c != 0);
    match accounted.filter(unclean) {
        Some(end) if end_is_doubtful(&task) => SlurmTask {
            exit_code: end.exit_code,
            signal: end.signal,
            ..task
        },
        _ => task,
    }
}

/// Expands an array task range (`3`, `1-4,6-9`, `0-99%5`, `1-9:2`).
pub fn expand_range(range: &str) -> Result<Vec<u64>, SlurmParseError> {
    let bad = || SlurmParseError::Json(format!("unreadable array range `{range}`"));
    let spec = range.split('%').next().unwrap_or("");
    let spec = spec.trim_start_matches('[').trim_end_matches(']');
    let mut tasks = Vec::new();
    for part in spec.split(',').filter(|p| !p.is_empty()) {
        let (span, step) = match part.split_once(':') {
            Some((span, step)) => (span, step.parse::<u64>().map_err(|_| bad())?),
            None => (part, 1),
        };
        let (first, last) = match span.split_once('-') {
            Some((a, b)) => (
                a.parse::<u64>().map_err(|_| bad())?,
                b.parse::<u64>().map_err(|_| bad())?,
            ),
            None => {
                let n = span.parse::<u64>().map_err(|_| bad())?;
                (n, n)
            }
        };
        if step == 0 || last < first || last - first > 1_000_000 {
            return Err(bad());
        }
        tasks.extend((first..=last).step_by(step as usize));
    }
    if tasks.is_empty() {
        return Err(bad());
    }
    Ok(tasks)
}

/// The words of one of Slurm's error records.
fn error_text(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("description")
            .or(o.get("error"))
            .and_then(Value::as_str)
            .unwrap_or("an error")
            .to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sbatch_parsable_prints_the_id_with_or_without_a_cluster() {
        assert_eq!(parse_sbatch("1234\n"), Ok(1234));
        assert_eq!(parse_sbatch("77;localcluster\n"), Ok(77));
        assert!(matches!(
            parse_sbatch("sbatch: error: Batch job submission failed"),
            Err(SlurmParseError::NoJobId(_))
        ));
        assert!(parse_sbatch("").is_err());
    }

    #[test]
    fn array_ranges_expand_with_limits_and_steps() {
        assert_eq!(expand_range("1-4,6-9%1").unwrap(), [1, 2, 3, 4, 6, 7, 8, 9]);
        assert_eq!(expand_range("[0-6:3]").unwrap(), [0, 3, 6]);
        assert_eq!(expand_range("5").unwrap(), [5]);
        for bad in ["", "a-b", "4-1", "1-3:0", "%2", "0-99999999999"] {
            assert!(expand_range(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exit_codes_come_from_wait_status_or_objects_and_the_sacct_bug_is_ignored_for_every_unclean_end(
    ) {
        let n = |v: i64| Value::from(v);
        assert_eq!(exit_of(Some(&n(768)), "FAILED"), (Some(3), None));
        assert_eq!(exit_of(Some(&n(9)), "FAILED"), (None, Some(9)));
        let buggy = serde_json::json!({"status": "SUCCESS", "return_code": 0});
        assert_eq!(exit_of(Some(&buggy), "FAILED"), (None, None));
        assert_eq!(exit_of(Some(&buggy), "COMPLETED"), (Some(0), None));
        assert_eq!(exit_of(Some(&buggy), "TIMEOUT"), (None, None));
        let segv = serde_json::json!({"status": "SIGNALED", "return_code": null, "signal": {"signal_id": 11, "name": "Segmentation fault"}});
        assert_eq!(exit_of(Some(&segv), "FAILED"), (None, Some(11)));
        let wrapped = serde_json::json!({"status": ["ERROR"], "return_code": {"set": true, "infinite": false, "number": 2}, "signal": {"id": {"set": false, "number": 0}}});
        assert_eq!(exit_of(Some(&wrapped), "FAILED"), (Some(2), None));
    }
}
