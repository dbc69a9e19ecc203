//! The embedded default batch system: local child processes.
//!
//! Every job attempt gets a directory `root/<JobKey::name()>` (also its
//! [`BatchJobId`]). The directory is the job's whole state, so a restarted
//! worker picks up where a crashed one stopped:
//!
//! | file           | written by  | meaning                                          |
//! |----------------|-------------|--------------------------------------------------|
//! | `job.json`     | submit      | the [`JobRunSpec`]; present = submitted |
//! | `stdout.log`   | launcher    | created exclusively before the spawn: the launch claim; then the runner's output |
//! | `pid`          | launcher    | `<pid> <start time>` of the runner (its process group) |
//! | `stderr.log`   | runner      | its error output                                  |
//! | `stages.jsonl`, `result.json` | runner | see [`crate::model::jobspec`]          |
//! | `exit_status`  | reaper      | how the runner ended when it wrote no result      |
//! | `held`, `removed` | hold, cancel | markers                                     |
//!
//! `root/launched.log` gets one line `<name> <unix ms>` per launch. Creating
//! `stdout.log` with `O_EXCL` claims the launch, so two launchers (even in two
//! processes) never start one job twice. A worker killed between the claim
//! and `pid` is repaired by the next `open`: the
//! runner is found by its spec path in `/proc` and adopted, or the job is
//! started again if it never ran.

use super::{
    BatchError, BatchJobId, BatchSystem, JobGroup, JobKey, LogBundle, Observed, ObservedState,
    Submitted,
};
use crate::model::jobspec::{files, JobResult, JobRunSpec};
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// The batch system's name and default site.
const SYSTEM: &str = "local";
/// `<pid> <start time>` of the runner.
const PID: &str = "pid";
/// How a runner that wrote no result ended.
const EXIT_STATUS: &str = "exit_status";
/// Marker: held.
const HELD: &str = "held";
/// Marker: removed.
const REMOVED: &str = "removed";
/// One line per launch, in the root.
const LAUNCHED_LOG: &str = "launched.log";
/// How much of each output log [`BatchSystem::fetch_logs`] returns.
const LOG_TAIL_BYTES: u64 = 256 * 1024;
/// How often an adopted (not our child) job is checked for liveness.
const ADOPTED_CHECK: Duration = Duration::from_millis(100);
/// Time between SIGTERM and SIGKILL on cancel.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Longest wait in [`BatchSystem::changed`].
const CHANGED_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs jobs as local child processes, at most `slots` at once.
pub struct LocalBatch {
    inner: Arc<Inner>,
}

/// State shared with the launcher, reaper and watcher tasks.
struct Inner {
    root: PathBuf,
    runner: Vec<String>,
    slots: usize,
    node: Option<String>,
    state: Mutex<State>,
    /// Wakes the launcher (permit-storing `notify_one`).
    launch: Notify,
    /// Wakes [`BatchSystem::changed`] waiters on every job end.
    ended: Notify,
    /// Job ends so far.
    ends: AtomicU64,
    /// `ends` as of the last poll or `changed()` return.
    seen: AtomicU64,
}

/// What the launcher tracks in memory.
#[derive(Default)]
struct State {
    /// Jobs waiting for a slot, in submission order (held ones stay here).
    queue: VecDeque<String>,
    /// Jobs occupying a slot: our children and adopted ones.
    running: HashMap<String, Proc>,
    /// Launcher, reaper and watcher tasks; aborted when the `LocalBatch` drops.
    tasks: JoinSet<()>,
    /// Set when the `LocalBatch` dropped: nothing starts any more.
    closed: bool,
}

/// A runner process, identified against pid reuse by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    pid: i32,
    start: u64,
}

/// `exit_status`: how a runner ended without writing `result.json`.
#[derive(Debug, Serialize, Deserialize)]
struct ExitStatus {
    code: Option<i64>,
    signal: Option<i64>,
    error: Option<String>,
}

/// What `open` finds in a job directory.
enum Found {
    Queued,
    Running(Proc),
}

impl LocalBatch {
    /// Opens (creating if needed) `root`, requeues jobs submitted but not yet
    /// started, adopts jobs still running from a previous worker, and starts
    /// the launcher. `runner` is the command prefix that runs one job (see
    /// [`default_runner`]); `slots` is how many jobs run at once.
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
        let found = scan(&root)?;
        let inner = Arc::new(Inner {
            node: hostname(),
            root,
            runner,
            slots,
            state: Mutex::new(State::default()),
            launch: Notify::new(),
            ended: Notify::new(),
            ends: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        });
        inner.restore(found);
        Ok(Arc::new(LocalBatch { inner }))
    }
}

impl Drop for LocalBatch {
    /// Stops launching and aborts the tasks; running jobs keep running
    /// (`kill_on_drop(false)`) and are adopted by the next `open`.
    fn drop(&mut self) {
        let mut state = self.inner.state();
        state.closed = true;
        state.tasks.abort_all();
    }
}

/// The real runner prefix: `[<this prodops binary>, "job-run", "--spec"]`.
pub fn default_runner() -> Vec<String> {
    let exe = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "prodops".into());
    vec![exe, "job-run".into(), "--spec".into()]
}

#[async_trait]
impl BatchSystem for LocalBatch {
    fn name(&self) -> &str {
        SYSTEM
    }

    fn default_site(&self) -> &str {
        SYSTEM
    }

    async fn submit(&self, group: &JobGroup) -> Result<Vec<Submitted>, BatchError> {
        let mut submitted = Vec::with_capacity(group.jobs.len());
        for job in &group.jobs {
            let name = job.key.name();
            self.inner.create_job(&name, &job.spec)?;
            submitted.push(Submitted {
                key: job.key,
                batch_id: BatchJobId(name),
            });
        }
        self.inner.launch.notify_one();
        Ok(submitted)
    }

    async fn find(&self, keys: &[JobKey]) -> Result<Vec<Submitted>, BatchError> {
        let found = keys
            .iter()
            .filter(|key| self.inner.root.join(key.name()).join(files::SPEC).is_file())
            .map(|key| Submitted {
                key: *key,
                batch_id: BatchJobId(key.name()),
            })
            .collect();
        Ok(found)
    }

    async fn poll(&self, ids: &[BatchJobId]) -> Result<Vec<Observed>, BatchError> {
        let inner = &self.inner;
        inner
            .seen
            .store(inner.ends.load(Ordering::SeqCst), Ordering::SeqCst);
        Ok(ids.iter().map(|id| inner.observe(id)).collect())
    }

    async fn cancel(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        self.inner.cancel(ids)
    }

    async fn hold(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        for id in ids {
            self.inner.hold(id)?;
        }
        Ok(())
    }

    async fn release(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        for id in ids {
            self.inner.release(id)?;
        }
        self.inner.launch.notify_one();
        Ok(())
    }

    async fn fetch_logs(&self, id: &BatchJobId) -> Result<LogBundle, BatchError> {
        let dir = self
            .inner
            .job_dir(id)
            .filter(|dir| dir.is_dir())
            .ok_or_else(|| failed(&format!("unknown job {id}")))?;
        tokio::task::spawn_blocking(move || read_bundle(&dir))
            .await
            .map_err(|e| failed(&format!("reading the logs of {id}: {e}")))?
    }

    async fn queue_depth(&self) -> Result<u64, BatchError> {
        let state = self.inner.state();
        Ok((state.queue.len() + state.running.len()) as u64)
    }

    async fn changed(&self) {
        let inner = &self.inner;
        let ended = inner.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        let now = inner.ends.load(Ordering::SeqCst);
        if inner.seen.swap(now, Ordering::SeqCst) == now {
            // Nothing ended since the caller last looked: wait (bounded).
            let _ = tokio::time::timeout(CHANGED_TIMEOUT, ended).await;
        }
    }
}

impl Inner {
    /// Locks the in-memory state (a poisoned lock is still usable: every
    /// update leaves it consistent).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The directory of `id`, if `id` is one of our names.
    fn job_dir(&self, id: &BatchJobId) -> Option<PathBuf> {
        JobKey::parse_name(&id.0)
            .filter(|key| key.name() == id.0)
            .map(|_| self.root.join(&id.0))
    }

    /// True when job `name` has file `file`.
    fn has(&self, name: &str, file: &str) -> bool {
        self.root.join(name).join(file).exists()
    }

    /// Queues and adopts what `open` found, then starts the launcher.
    fn restore(self: &Arc<Self>, found: Vec<(String, Found)>) {
        let mut state = self.state();
        for (name, found) in found {
            match found {
                Found::Queued => state.queue.push_back(name),
                Found::Running(proc) => {
                    state.running.insert(name.clone(), proc);
                    spawn_task(&mut state, watch_adopted(self.clone(), name, proc));
                }
            }
        }
        spawn_task(&mut state, launcher(self.clone()));
    }

    /// Creates job `name` once: an existing complete directory is left alone;
    /// one without a spec (a submit that crashed) is completed.
    fn create_job(&self, name: &str, spec: &JobRunSpec) -> Result<(), BatchError> {
        let dir = self.root.join(name);
        let spec_path = dir.join(files::SPEC);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && spec_path.is_file() => {
                return Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error(&dir, e)),
        }
        let json = serde_json::to_vec(spec).map_err(|e| failed(&e.to_string()))?;
        write_atomic(&spec_path, &json)?;
        self.enqueue(name);
        Ok(())
    }

    /// Queues `name` unless it is already queued, running or launched.
    fn enqueue(&self, name: &str) {
        let mut state = self.state();
        let known = state.queue.iter().any(|n| n == name) || state.running.contains_key(name);
        if !known && !self.has(name, files::STDOUT) {
            state.queue.push_back(name.to_string());
        }
    }

    /// Starts queued jobs while slots are free.
    fn launch_ready(self: &Arc<Self>) {
        let mut state = self.state();
        while !state.closed && state.running.len() < self.slots {
            let Some(name) = self.next_launchable(&mut state) else {
                break;
            };
            self.launch(&mut state, name);
        }
    }

    /// Takes the first queued job that is not held, dropping removed or
    /// already launched ones it passes (only the jobs up to it are looked at).
    fn next_launchable(&self, state: &mut State) -> Option<String> {
        let mut at = 0;
        while at < state.queue.len() {
            let name = &state.queue[at];
            if self.has(name, REMOVED) || self.has(name, files::STDOUT) {
                state.queue.remove(at);
            } else if self.has(name, HELD) {
                at += 1;
            } else {
                return state.queue.remove(at);
            }
        }
        None
    }

    /// Starts job `name` and a task reaping it, unless another launcher
    /// claimed it first; a runner that cannot start ends the job at once
    /// with an `exit_status` naming the error.
    fn launch(self: &Arc<Self>, state: &mut State, name: String) {
        let started = match claim_launch(&self.root.join(&name)) {
            Ok(Some(stdout)) => self.spawn_runner(&name, stdout),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        match started {
            Ok((child, proc)) => {
                state.running.insert(name.clone(), proc);
                spawn_task(state, reap(self.clone(), name, child));
            }
            Err(e) => {
                let status = ExitStatus {
                    code: None,
                    signal: None,
                    error: Some(format!("runner failed to start: {e}")),
                };
                self.write_exit_status(&name, &status);
                self.note_end();
            }
        }
    }

    /// Spawns the runner for `name` in its own process group, its output
    /// going to the claimed `stdout`, and records `pid` and the launch; the
    /// child survives our drop.
    fn spawn_runner(&self, name: &str, stdout: fs::File) -> io::Result<(Child, Proc)> {
        let dir = self.root.join(name);
        let child = Command::new(&self.runner[0])
            .args(&self.runner[1..])
            .arg(dir.join(files::SPEC))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(fs::File::create(dir.join(files::STDERR))?)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        let pid = child.id().and_then(|pid| i32::try_from(pid).ok());
        let proc = pid
            .and_then(|pid| {
                Some(Proc {
                    pid,
                    start: proc_stat(pid)?.1,
                })
            })
            .ok_or_else(|| io::Error::other("runner vanished right after spawn"))?;
        crate::worker::failpoint::hit("launch:after-spawn");
        if let Err(e) = record_launch(&self.root, name, proc) {
            signal_group(proc.pid, libc::SIGKILL);
            return Err(e);
        }
        Ok((child, proc))
    }

    /// After a child exits: records how, unless it wrote its result.
    fn record_exit(&self, name: &str, status: io::Result<std::process::ExitStatus>) {
        if self.has(name, files::RESULT) {
            return;
        }
        let status = match status {
            Ok(status) => ExitStatus {
                code: status.code().map(i64::from),
                signal: status.signal().map(i64::from),
                error: None,
            },
            Err(e) => ExitStatus {
                code: None,
                signal: None,
                error: Some(format!("waiting for the runner failed: {e}")),
            },
        };
        self.write_exit_status(name, &status);
    }

    /// Writes `exit_status` (best effort: poll reports a dead runner anyway).
    fn write_exit_status(&self, name: &str, status: &ExitStatus) {
        if let Ok(json) = serde_json::to_vec(status) {
            let _ = write_atomic(&self.root.join(name).join(EXIT_STATUS), &json);
        }
    }

    /// Frees the slot of `name` and reports the end.
    fn job_ended(&self, name: &str) {
        self.state().running.remove(name);
        self.note_end();
    }

    /// Wakes `changed()` waiters and the launcher.
    fn note_end(&self) {
        self.ends.fetch_add(1, Ordering::SeqCst);
        self.ended.notify_waiters();
        self.launch.notify_one();
    }

    /// Marks `ids` removed, then kills the running ones; ended jobs are left
    /// alone. All are marked first so no queued one starts in a slot freed by
    /// another's death.
    fn cancel(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        let mut state = self.state();
        let mut running = Vec::new();
        for id in ids {
            let Some((dir, proc)) = self.active(&state, id) else {
                continue;
            };
            touch(&dir.join(REMOVED))?;
            state.queue.retain(|name| *name != id.0);
            running.extend(proc);
        }
        drop(state);
        running.into_iter().for_each(terminate);
        Ok(())
    }

    /// Marks `id` held and suspends it if running.
    fn hold(&self, id: &BatchJobId) -> Result<(), BatchError> {
        let state = self.state();
        let Some((dir, running)) = self.active(&state, id) else {
            return Ok(());
        };
        touch(&dir.join(HELD))?;
        if let Some(proc) = running.filter(|proc| proc.alive()) {
            signal_group(proc.pid, libc::SIGSTOP);
        }
        Ok(())
    }

    /// Removes the hold of `id`, resuming it if running; a queued one
    /// becomes launchable.
    fn release(&self, id: &BatchJobId) -> Result<(), BatchError> {
        let state = self.state();
        let Some(dir) = self.job_dir(id) else {
            return Ok(());
        };
        let held = dir.join(HELD);
        match fs::remove_file(&held) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(&held, e)),
        }
        if let Some(proc) = state.running.get(&id.0).filter(|proc| proc.alive()) {
            signal_group(proc.pid, libc::SIGCONT);
        }
        Ok(())
    }

    /// The directory of `id` and its process if it is queued or running.
    fn active(&self, state: &State, id: &BatchJobId) -> Option<(PathBuf, Option<Proc>)> {
        let dir = self.job_dir(id)?;
        let running = state.running.get(&id.0).copied();
        let queued = state.queue.iter().any(|name| *name == id.0);
        (queued || running.is_some()).then_some((dir, running))
    }

    /// What the directory of `id` says about it.
    fn observe(&self, id: &BatchJobId) -> Observed {
        let Some(dir) = self
            .job_dir(id)
            .filter(|dir| dir.join(files::SPEC).is_file())
        else {
            return Observed::state(id.clone(), ObservedState::Unknown);
        };
        let seen = |state| Observed {
            site: Some(SYSTEM.to_string()),
            ..Observed::state(id.clone(), state)
        };
        let failed = |reason: String| Observed {
            reason: Some(reason),
            ..seen(ObservedState::Failed)
        };
        let held = || Observed {
            reason: Some("held".into()),
            ..seen(ObservedState::Held)
        };
        let alive = || Observed {
            node: self.node.clone(),
            ..if dir.join(HELD).exists() {
                held()
            } else {
                seen(ObservedState::Running)
            }
        };
        if dir.join(REMOVED).exists() {
            return Observed {
                reason: Some("removed".into()),
                ..seen(ObservedState::Removed)
            };
        }
        let running = self.state().running.contains_key(&id.0);
        match read_json::<JobResult>(&dir, files::RESULT) {
            Some(Ok(result)) => return from_result(seen, &result),
            // A runner still going may be writing it right now.
            Some(Err(why)) if !running => return failed(why),
            _ => {}
        }
        if running {
            return alive();
        }
        if let Some(status) = read_json::<ExitStatus>(&dir, EXIT_STATUS) {
            return match status {
                Ok(status) => from_exit_status(failed, &status),
                Err(why) => failed(why),
            };
        }
        match read_pid(&dir) {
            Some(Ok(proc)) if proc.alive() => alive(),
            Some(Ok(_)) => failed("runner ended without a result".into()),
            Some(Err(why)) => failed(why),
            None if dir.join(HELD).exists() => held(),
            None => seen(ObservedState::Queued),
        }
    }
}

/// Starts queued jobs whenever woken (submit, release, a job end).
async fn launcher(inner: Arc<Inner>) {
    loop {
        inner.launch_ready();
        inner.launch.notified().await;
    }
}

/// Waits for our child `name` to exit, then ends the job.
async fn reap(inner: Arc<Inner>, name: String, mut child: Child) {
    let status = child.wait().await;
    inner.record_exit(&name, status);
    inner.job_ended(&name);
}

/// Checks an adopted job (not our child, so not waitable) until it ends.
async fn watch_adopted(inner: Arc<Inner>, name: String, proc: Proc) {
    while proc.alive() {
        tokio::time::sleep(ADOPTED_CHECK).await;
    }
    inner.job_ended(&name);
}

/// Spawns `task` unless the `LocalBatch` is gone, forgetting finished tasks.
fn spawn_task(state: &mut State, task: impl std::future::Future<Output = ()> + Send + 'static) {
    if state.closed {
        return;
    }
    while state.tasks.try_join_next().is_some() {}
    state.tasks.spawn(task);
}

/// The job directories under `root` in key order, with what to do with each.
fn scan(root: &Path) -> Result<Vec<(String, Found)>, BatchError> {
    let entries = fs::read_dir(root).map_err(|e| io_error(root, e))?;
    let mut jobs: Vec<(JobKey, String)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|name| Some((JobKey::parse_name(&name)?, name)))
        .filter(|(key, name)| key.name() == *name)
        .collect();
    jobs.sort();
    let mut recovery = LaunchRecovery::new(root);
    Ok(jobs
        .into_iter()
        .filter_map(|(_, name)| {
            recovery.complete(&name);
            Some((name.clone(), classify(&root.join(name))?))
        })
        .collect())
}

/// Whether a job directory found by `open` is waiting, running, or neither
/// (ended, removed, or a submit that crashed before its spec: the worker
/// submits that one again).
fn classify(dir: &Path) -> Option<Found> {
    if !dir.join(files::SPEC).is_file() {
        return None;
    }
    if dir.join(PID).exists() {
        return read_pid(dir)?
            .ok()
            .filter(|proc| proc.alive())
            .map(Found::Running);
    }
    let ended = [REMOVED, files::RESULT, EXIT_STATUS]
        .iter()
        .any(|file| dir.join(file).exists());
    (!ended).then_some(Found::Queued)
}

/// Finishes launches a killed worker left half-recorded (S3): a runner that
/// started gets its `pid` and its `launched.log` line; one that never started
/// loses its claim (`stdout.log`) and is started again.
struct LaunchRecovery<'a> {
    root: &'a Path,
    logged: HashSet<String>,
    runners: Option<HashMap<PathBuf, Proc>>,
}

impl<'a> LaunchRecovery<'a> {
    fn new(root: &'a Path) -> Self {
        let logged = fs::read_to_string(root.join(LAUNCHED_LOG))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_whitespace().next().map(str::to_string))
            .collect();
        Self {
            root,
            logged,
            runners: None,
        }
    }

    fn complete(&mut self, name: &str) {
        let dir = self.root.join(name);
        let has = |file: &str| dir.join(file).exists();
        if !has(files::STDOUT) || (has(PID) && self.logged.contains(name)) {
            return;
        }
        if !has(PID) {
            let runner = self
                .runners
                .get_or_insert_with(live_runners)
                .get(&dir.join(files::SPEC))
                .copied();
            match runner {
                Some(proc) => {
                    let _ = write_atomic(
                        &dir.join(PID),
                        format!("{} {}\n", proc.pid, proc.start).as_bytes(),
                    );
                }
                None if has(files::RESULT) || has(EXIT_STATUS) => {}
                None => {
                    let _ = fs::remove_file(dir.join(files::STDOUT));
                    return;
                }
            }
        }
        if self.logged.insert(name.to_string()) {
            let _ = append_launch_line(self.root, name);
        }
    }
}

/// Live processes whose arguments name a job spec, by that spec's path.
fn live_runners() -> HashMap<PathBuf, Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let spec = cmdline
                .split(|b| *b == 0)
                .filter_map(|arg| std::str::from_utf8(arg).ok())
                .find(|arg| arg.ends_with(&format!("/{}", files::SPEC)))?;
            let (state, start) = proc_stat(pid)?;
            (!matches!(state, 'Z' | 'X' | 'x')).then(|| (PathBuf::from(spec), Proc { pid, start }))
        })
        .collect()
}

impl Proc {
    /// True while the process runs (not a zombie) and is the one we started.
    fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((state, start))
            if start == self.start && !matches!(state, 'Z' | 'X' | 'x'))
    }
}

/// State letter and start time (field 22) from `/proc/<pid>/stat`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(19)?.parse().ok()?))
}

/// Sends `signal` to the process group led by `pid`.
fn signal_group(pid: i32, signal: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(-pid, signal);
    }
}

/// SIGTERM (and SIGCONT, in case it is held) now, SIGKILL after a grace time.
fn terminate(proc: Proc) {
    if !proc.alive() {
        return;
    }
    signal_group(proc.pid, libc::SIGTERM);
    signal_group(proc.pid, libc::SIGCONT);
    tokio::spawn(async move {
        tokio::time::sleep(KILL_GRACE).await;
        if proc.alive() {
            signal_group(proc.pid, libc::SIGKILL);
        }
    });
}

/// Claims the launch of the job in `dir` by creating its `stdout.log`
/// exclusively: `None` when it exists (launched, or being launched, already).
fn claim_launch(dir: &Path) -> io::Result<Option<fs::File>> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dir.join(files::STDOUT))
    {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes `pid` and appends the launch to `launched.log`.
fn record_launch(root: &Path, name: &str, proc: Proc) -> io::Result<()> {
    let pid_line = format!("{} {}\n", proc.pid, proc.start);
    write_atomic(&root.join(name).join(PID), pid_line.as_bytes()).map_err(io::Error::other)?;
    append_launch_line(root, name)
}

/// Appends `<name> <ms>` to `launched.log`.
fn append_launch_line(root: &Path, name: &str) -> io::Result<()> {
    let line = format!("{name} {}\n", chrono::Utc::now().timestamp_millis());
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join(LAUNCHED_LOG))?
        .write_all(line.as_bytes())
}

/// Reads `pid`: `None` when absent, `Err` naming the file when unreadable.
fn read_pid(dir: &Path) -> Option<Result<Proc, String>> {
    let text = match fs::read_to_string(dir.join(PID)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(format!("{PID}: {e}"))),
        Ok(text) => text,
    };
    let mut fields = text.split_whitespace();
    let pid = fields.next().and_then(|pid| pid.parse().ok());
    let start = fields.next().and_then(|start| start.parse().ok());
    Some(match (pid, start) {
        (Some(pid), Some(start)) => Ok(Proc { pid, start }),
        _ => Err(format!("{PID}: invalid contents")),
    })
}

/// Reads `dir/file` as JSON: `None` when absent, `Err` naming the file when
/// unreadable or invalid.
fn read_json<T: DeserializeOwned>(dir: &Path, file: &str) -> Option<Result<T, String>> {
    match fs::read(dir.join(file)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(format!("{file}: {e}"))),
        Ok(bytes) => {
            Some(serde_json::from_slice(&bytes).map_err(|e| format!("{file}: invalid: {e}")))
        }
    }
}

/// The observation for a job that wrote its result.
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

/// The observation for a runner that ended without a result.
fn from_exit_status(failed: impl Fn(String) -> Observed, status: &ExitStatus) -> Observed {
    let reason = status
        .error
        .clone()
        .unwrap_or_else(|| "runner ended without a result".into());
    Observed {
        exit_code: status.code,
        signal: status.signal,
        ..failed(reason)
    }
}

/// Writes `path` through a temporary file and a rename, so readers and
/// crashes never see it half-written.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BatchError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
    fs::write(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

/// Creates an empty marker file.
fn touch(path: &Path) -> Result<(), BatchError> {
    fs::File::create(path)
        .map(drop)
        .map_err(|e| io_error(path, e))
}

/// A job's logs, stage records and result, read in one go (one blocking task).
fn read_bundle(dir: &Path) -> Result<LogBundle, BatchError> {
    Ok(LogBundle {
        stdout: read_tail(&dir.join(files::STDOUT))?,
        stderr: read_tail(&dir.join(files::STDERR))?,
        stages: read_optional(&dir.join(files::STAGES))?.unwrap_or_default(),
        result: read_optional(&dir.join(files::RESULT))?,
    })
}

/// The last [`LOG_TAIL_BYTES`] of a log; empty when it does not exist.
fn read_tail(path: &Path) -> Result<String, BatchError> {
    let mut file = match fs::File::open(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        other => other.map_err(|e| io_error(path, e))?,
    };
    let len = file.metadata().map_err(|e| io_error(path, e))?.len();
    file.seek(io::SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))
        .map_err(|e| io_error(path, e))?;
    let mut bytes = Vec::new();
    file.take(LOG_TAIL_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A whole file, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, BatchError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path, e)),
    }
}

fn hostname() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|name| !name.is_empty())
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
    BatchError::Io {
        system: SYSTEM.into(),
        path: path.display().to_string(),
        source,
    }
}
