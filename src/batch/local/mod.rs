//! The embedded default batch system: jobs run on this machine by the local
//! executor, a daemon of ours (`prodops local-executor`) that plays the part
//! `slurmd` plays for Slurm.
//!
//! Workers talk to it through files in its root ([`protocol`]): they append
//! commands (submit, hold, release, cancel) and wake it; it appends what
//! happens to each job (started, its stages, ended) to an event log, which
//! workers read back ([`view`]). The executor outlives any worker, so a
//! worker killed at any point leaves its jobs running and their ends
//! recorded; a restarted worker reads where they are. A submission is
//! idempotent per job name ([`JobKey::name`]), and the executor starts a job
//! at most once.
//!
//! Each job works in `root/<name>/` (its script's working directory, with
//! `out/` for its outputs and `stdout.log` / `stderr.log` once it prints
//! something).

pub mod executor;
mod process;
pub mod protocol;
pub mod view;

use super::logs::read_tail;
use super::{
    BatchError, BatchJobId, BatchSystem, JobGroup, JobKey, LogBundle, Observed, ObservedState,
    Submitted,
};
use crate::batch::QueueDepth;
use crate::model::check::QueueOf;
use crate::model::jobspec::{files, JobResult};
use async_trait::async_trait;
use protocol::{append_locked, line_of, wake, Command, CommandHead, Event, LogTail};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::unix::AsyncFd;
use view::{End, JobStatus, View};

/// The batch system's name and default site.
const SYSTEM: &str = "local";
/// Longest wait in [`BatchSystem::changed`].
const CHANGED_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a started executor may take to accept work.
const EXECUTOR_START: Duration = Duration::from_secs(10);

/// A worker's handle on the local executor of one root directory.
pub struct LocalBatch {
    root: PathBuf,
    runner: Vec<String>,
    slots: usize,
    logs: Mutex<Logs>,
    /// Readable when the event log grew.
    inotify: AsyncFd<OwnedFd>,
}

/// The two logs as read so far.
struct Logs {
    view: View,
    commands: LogTail,
    events: LogTail,
    /// [`View::changes`] as of the last poll.
    seen: u64,
}

impl Logs {
    /// Reads what was appended to both logs since the last look.
    fn refresh(&mut self) -> Result<(), BatchError> {
        for command in self.commands.read_new::<CommandHead>().map_err(log_error)? {
            self.view.apply_command(command);
        }
        for event in self.events.read_new::<Event>().map_err(log_error)? {
            self.view.apply_event(event);
        }
        Ok(())
    }
}

impl LocalBatch {
    /// Opens the executor's root `root` (creating it if needed), reads what
    /// happened there so far and makes sure an executor runs. `runner` is the
    /// command that starts one (see [`default_runner`]; `--root` and
    /// `--slots` are added); `slots` is how many jobs run at once.
    pub async fn open(
        root: PathBuf,
        slots: usize,
        runner: Vec<String>,
    ) -> Result<Arc<LocalBatch>, BatchError> {
        if slots == 0 || runner.is_empty() {
            return Err(failed("needs at least one slot and a runner command"));
        }
        fs::create_dir_all(&root).map_err(|e| io_error(&root, e))?;
        let root = fs::canonicalize(&root).map_err(|e| io_error(&root, e))?;
        let events = root.join(protocol::EVENTS);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&events)
            .map_err(|e| io_error(&events, e))?;
        let inotify = watch(&events).map_err(|e| io_error(&events, e))?;
        let batch = LocalBatch {
            logs: Mutex::new(Logs {
                view: View::for_worker(),
                commands: LogTail::new(root.join(protocol::COMMANDS)),
                events: LogTail::new(events),
                seen: 0,
            }),
            root,
            runner,
            slots,
            inotify,
        };
        batch.command(&[Command::Slots { slots }]).await?;
        Ok(Arc::new(batch))
    }

    /// The root directory (each job works in `root/<batch id>/`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn logs(&self) -> MutexGuard<'_, Logs> {
        self.logs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `commands`, reads them back and wakes the executor.
    async fn command(&self, commands: &[Command]) -> Result<(), BatchError> {
        if !commands.is_empty() {
            let lines: Vec<u8> = commands.iter().flat_map(line_of).collect();
            let path = self.root.join(protocol::COMMANDS);
            append_locked(&path, &lines).map_err(|e| io_error(&path, e))?;
            self.logs().refresh()?;
        }
        self.wake_executor().await
    }

    /// Wakes the executor, starting one when none runs.
    async fn wake_executor(&self) -> Result<(), BatchError> {
        let fifo = self.root.join(protocol::WAKE);
        if wake(&fifo).map_err(|e| io_error(&fifo, e))? {
            return Ok(());
        }
        self.start_executor()?;
        let deadline = Instant::now() + EXECUTOR_START;
        while !wake(&fifo).map_err(|e| io_error(&fifo, e))? {
            if Instant::now() > deadline {
                return Err(failed(&format!(
                    "the local executor did not start within {} s; see {}",
                    EXECUTOR_START.as_secs(),
                    self.root.join(protocol::EXECUTOR_LOG).display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Starts an executor on our root, its output going to `executor.log`.
    fn start_executor(&self) -> Result<(), BatchError> {
        let log_path = self.root.join(protocol::EXECUTOR_LOG);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| io_error(&log_path, e))?;
        let err = log.try_clone().map_err(|e| io_error(&log_path, e))?;
        let mut child = tokio::process::Command::new(&self.runner[0])
            .args(&self.runner[1..])
            .arg("--root")
            .arg(&self.root)
            .arg("--slots")
            .arg(self.slots.to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| {
                failed(&format!(
                    "cannot start the local executor `{}`: {e}",
                    self.runner.join(" ")
                ))
            })?;
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        Ok(())
    }

    /// True while an executor holds the lock of our root.
    fn executor_running(&self) -> bool {
        let Ok(lock) = File::open(self.root.join(protocol::LOCK)) else {
            return false;
        };
        // SAFETY: flock on a valid open descriptor; a lock we get is
        // released when `lock` closes.
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) != 0 }
    }

    /// Our names among `ids`, with their statuses.
    fn commands_for(
        &self,
        ids: &[BatchJobId],
        make: impl Fn(String) -> Command,
    ) -> Result<Vec<Command>, BatchError> {
        let mut logs = self.logs();
        logs.refresh()?;
        Ok(ids
            .iter()
            .filter(|id| logs.view.get(&id.0).is_some())
            .map(|id| make(id.0.clone()))
            .collect())
    }
}

/// The real executor command: `[<this prodops binary>, "local-executor"]`.
pub fn default_runner() -> Vec<String> {
    let exe = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "prodops".into());
    vec![exe, "local-executor".into()]
}

#[async_trait]
impl BatchSystem for LocalBatch {
    fn name(&self) -> &str {
        SYSTEM
    }

    fn default_site(&self) -> &str {
        SYSTEM
    }

    /// `local@HOST:ROOT`: the executor of this host and directory holds the
    /// jobs; a worker elsewhere cannot read its event log.
    fn instance(&self) -> String {
        format!(
            "{SYSTEM}@{}:{}",
            crate::host::hostname(),
            self.root.display()
        )
    }

    async fn submit(&self, group: &JobGroup) -> Result<Vec<Submitted>, BatchError> {
        let new: Vec<Command> = {
            let mut logs = self.logs();
            logs.refresh()?;
            group
                .jobs
                .iter()
                .filter(|job| logs.view.get(&job.key.name()).is_none())
                .map(|job| Command::Submit {
                    name: job.key.name(),
                    spec: job.spec.clone(),
                })
                .collect()
        };
        self.command(&new).await?;
        Ok(group
            .jobs
            .iter()
            .map(|job| Submitted {
                key: job.key,
                batch_id: BatchJobId(job.key.name()),
            })
            .collect())
    }

    async fn find(&self, keys: &[JobKey]) -> Result<Vec<Submitted>, BatchError> {
        let mut logs = self.logs();
        logs.refresh()?;
        Ok(keys
            .iter()
            .filter(|key| logs.view.get(&key.name()).is_some())
            .map(|key| Submitted {
                key: *key,
                batch_id: BatchJobId(key.name()),
            })
            .collect())
    }

    async fn poll(&self, ids: &[BatchJobId]) -> Result<Vec<Observed>, BatchError> {
        let unfinished = {
            let mut logs = self.logs();
            logs.refresh()?;
            logs.seen = logs.view.changes();
            logs.view.unfinished()
        };
        if unfinished > 0 && !self.executor_running() {
            self.wake_executor().await?;
        }
        let logs = self.logs();
        Ok(ids
            .iter()
            .map(|id| match logs.view.get(&id.0) {
                Some(job) => observe(id, job),
                None => Observed::state(id.clone(), ObservedState::Unknown),
            })
            .collect())
    }

    async fn cancel(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        let commands = self.commands_for(ids, |name| Command::Cancel { name })?;
        self.command(&commands).await
    }

    async fn hold(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        let commands = self.commands_for(ids, |name| Command::Hold { name })?;
        self.command(&commands).await
    }

    async fn release(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        let commands = self.commands_for(ids, |name| Command::Release { name })?;
        self.command(&commands).await
    }

    async fn fetch_logs(&self, id: &BatchJobId) -> Result<LogBundle, BatchError> {
        let (stages, result) = {
            let mut logs = self.logs();
            logs.refresh()?;
            let job = logs
                .view
                .get(&id.0)
                .ok_or_else(|| failed(&format!("unknown job {id}")))?;
            (job.stages.clone(), result_json(job))
        };
        let dir = self.root.join(&id.0);
        tokio::task::spawn_blocking(move || {
            Ok(LogBundle {
                stdout: read_tail(SYSTEM, &dir.join(files::STDOUT))?,
                stderr: read_tail(SYSTEM, &dir.join(files::STDERR))?,
                stages,
                result,
            })
        })
        .await
        .map_err(|e| failed(&format!("reading the logs of {id}: {e}")))?
    }

    async fn fetch_records(&self, ids: &[BatchJobId]) -> Result<Vec<LogBundle>, BatchError> {
        let mut logs = self.logs();
        logs.refresh()?;
        Ok(ids
            .iter()
            .map(|id| match logs.view.get(&id.0) {
                Some(job) => LogBundle {
                    stages: job.stages.clone(),
                    result: result_json(job),
                    ..LogBundle::default()
                },
                None => LogBundle::default(),
            })
            .collect())
    }

    /// Every unfinished job of this executor: it runs one production
    /// account's jobs and knows no accounting groups (a decision, issue 15).
    async fn queue_depth(&self, _of: &QueueOf) -> Result<QueueDepth, BatchError> {
        let mut logs = self.logs();
        logs.refresh()?;
        Ok(QueueDepth {
            jobs: logs.view.unfinished() as u64,
            whose: "jobs of this executor".into(),
        })
    }

    async fn changed(&self) {
        let deadline = tokio::time::Instant::now() + CHANGED_TIMEOUT;
        loop {
            {
                let mut logs = self.logs();
                if logs.refresh().is_err() || logs.view.changes() != logs.seen {
                    return;
                }
            }
            match tokio::time::timeout_at(deadline, self.inotify.readable()).await {
                Ok(Ok(mut ready)) => {
                    drain_inotify(ready.get_inner());
                    ready.clear_ready();
                }
                _ => return,
            }
        }
    }
}

/// What the logs say about one job, as the worker sees it.
fn observe(id: &BatchJobId, job: &JobStatus) -> Observed {
    let seen = |state| Observed {
        site: Some(SYSTEM.to_string()),
        node: job.node.clone(),
        node_kind: Some(SYSTEM.to_string()),
        ..Observed::state(id.clone(), state)
    };
    match &job.end {
        Some(End::Result(result)) => from_result(seen, result),
        Some(End::Removed) => Observed {
            reason: Some("removed".into()),
            ..seen(ObservedState::Removed)
        },
        Some(End::Lost(why)) => Observed {
            reason: Some(why.clone()),
            ..seen(ObservedState::Failed)
        },
        None if job.held => Observed {
            reason: Some("held".into()),
            ..seen(ObservedState::Held)
        },
        None if job.started() => seen(ObservedState::Running),
        None => seen(ObservedState::Queued),
    }
}

/// The observation for a job that ended by itself.
fn from_result(seen: impl Fn(ObservedState) -> Observed, result: &JobResult) -> Observed {
    let state = if result.succeeded() {
        ObservedState::Succeeded
    } else {
        ObservedState::Failed
    };
    Observed {
        exit_code: result.exit_code,
        signal: result.signal,
        oom: result.oom,
        node: Some(result.node.clone()),
        reason: failure_reason(result),
        ..seen(state)
    }
}

/// Why a result is a failure, `None` when it is not.
fn failure_reason(result: &JobResult) -> Option<String> {
    if result.succeeded() {
        return None;
    }
    Some(if result.oom {
        "out of memory".into()
    } else if result.timed_out {
        "timed out".into()
    } else if let Some(signal) = result.signal {
        format!("killed by signal {signal}")
    } else if let Some(code) = result.exit_code.filter(|code| *code != 0) {
        format!("exit code {code}")
    } else if let Some(stage) = &result.failed_stage {
        format!("stage {stage} failed")
    } else {
        "no exit code".into()
    })
}

/// `result.json` as other backends fetch it, once the job ended by itself.
fn result_json(job: &JobStatus) -> Option<String> {
    match &job.end {
        Some(End::Result(result)) => serde_json::to_string(result).ok(),
        _ => None,
    }
}

/// True for names workers give jobs (`prodops-j<job>-a<attempt>`), which
/// are safe as directory names.
fn valid_name(name: &str) -> bool {
    JobKey::parse_name(name).is_some_and(|key| key.name() == name)
}

/// The jobs the executor of `root` started, in order, by name: the record
/// that proves how often each job was launched (S3).
pub fn launches(root: &Path) -> Vec<String> {
    LogTail::new(root.join(protocol::EVENTS))
        .read_new::<Event>()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|event| match event {
            Event::Started { name, .. } => Some(name),
            _ => None,
        })
        .collect()
}

/// The process id of job `name`'s script, once it started.
pub fn script_pid(root: &Path, name: &str) -> Option<i32> {
    LogTail::new(root.join(protocol::EVENTS))
        .read_new::<Event>()
        .unwrap_or_default()
        .into_iter()
        .find_map(|event| match event {
            Event::Pid { name: n, pid, .. } if n == name => Some(pid),
            _ => None,
        })
}

/// An inotify descriptor that becomes readable when `path` is written.
fn watch(path: &Path) -> io::Result<AsyncFd<OwnedFd>> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: inotify_init1 has no memory-safety preconditions.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: inotify_init1 just returned this descriptor, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: a valid descriptor and C string.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c_path.as_ptr(), libc::IN_MODIFY) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is open and owned by the AsyncFd for its whole life.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(|e| io::Error::other(e.to_string()))
}

/// Discards the pending inotify events (we only need to know that some came).
fn drain_inotify(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    // SAFETY: reading into a valid buffer of its length from a non-blocking descriptor.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// A refusal from this batch system.
fn failed(message: &str) -> BatchError {
    BatchError::Failed {
        system: SYSTEM.into(),
        message: message.into(),
    }
}

/// An I/O error on `path`.
fn io_error(path: &Path, source: io::Error) -> BatchError {
    super::logs::io_error(SYSTEM, path, source)
}

/// A log that cannot be read.
fn log_error(source: io::Error) -> BatchError {
    BatchError::Io {
        system: SYSTEM.into(),
        path: "executor logs".into(),
        source,
    }
}
