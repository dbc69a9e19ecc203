//! `prodops local-executor`: the local batch system's daemon, as `slurmd` is
//! Slurm's. Workers start it; it outlives them (a worker killed with `kill -9`
//! leaves its jobs running and recorded), runs at most `slots` jobs at once,
//! each job's stages in a thread of its own (the same stages `prodops
//! job-run` runs on a batch node, without a process of its own per job), and
//! exits after it has been idle for a while.
//!
//! Crash safety: a job's `started` event is written before anything of it
//! starts, so a job is never started twice; an executor that restarts adopts
//! the scripts still running (found by recorded pid, or by their work
//! directory in `/proc`) and reports as `lost` the jobs whose end it missed.

use super::process::{find_by_work_dir, Proc};
use super::protocol::{
    append_after_fragment, line_of, Command, Event, LogTail, COMMANDS, EVENTS, LOCK, WAKE,
};
use super::valid_name;
use super::view::View;
use crate::failpoint;
use crate::jobrun::stages::StageLog;
use crate::jobrun::{self, JobIo, SharedOut};
use crate::model::jobspec::{files, JobResult, JobRunSpec, StageEvent};
use std::collections::{HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Idle time after which the executor exits (the next submission starts another).
const IDLE_EXIT: Duration = Duration::from_secs(30);
/// Longest sleep between looks at commands, adopted jobs and pending kills.
const TICK: Duration = Duration::from_secs(1);
/// How often adopted jobs (not our children) are checked for liveness.
const ADOPTED_CHECK: Duration = Duration::from_millis(100);
/// Time between SIGTERM and SIGKILL on cancel.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long a new executor waits for an old one to let go of the lock.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// Why a job whose end the executor missed is failed.
const LOST: &str = "the local executor stopped while this job ran; how it ended is unknown";

/// Runs the executor on `root` until it has been idle for a while; returns
/// the process exit status.
pub fn main(root: &Path, slots: usize) -> i32 {
    // SAFETY: setsid has no memory-safety preconditions; leaving the
    // worker's session keeps a terminal's hangup or Ctrl-C from reaching us.
    unsafe {
        libc::setsid();
    }
    match Executor::open(root, slots.max(1)) {
        Ok(Some(mut executor)) => match executor.run() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("local-executor: {e}");
                1
            }
        },
        Ok(None) => 0,
        Err(e) => {
            eprintln!("local-executor: cannot start in {}: {e}", root.display());
            1
        }
    }
}

/// What a job thread tells the main loop.
enum Msg {
    /// The job's script started.
    Pid(String, Proc),
    /// The job's stages are over.
    Done(String, JobResult),
}

/// The event log; job threads append their stage records to it directly.
struct EventLog(Mutex<File>);

impl EventLog {
    fn write(&self, event: &Event) {
        self.write_lines(&line_of(event));
    }

    fn write_lines(&self, lines: &[u8]) {
        let mut file = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = file.write_all(lines) {
            eprintln!("local-executor: cannot append to {EVENTS}: {e}");
        }
    }
}

/// A job's stage records, written a few at a time: the quick stages before
/// the script (`stage-in`, `unpack`) go out with the script's start, the rest
/// as each stage starts and when the job's stages are over (on drop).
struct StageWriter {
    name: String,
    events: Arc<EventLog>,
    pending: Vec<u8>,
}

impl StageWriter {
    fn record(&mut self, stage: &StageEvent) {
        self.pending.extend(line_of(&Event::Stage {
            name: self.name.clone(),
            stage: stage.clone(),
        }));
        let before_script = matches!(stage, StageEvent::Start { stage, .. } if stage == "stage-in" || stage == "unpack");
        if matches!(stage, StageEvent::Start { .. }) && !before_script {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            self.events.write_lines(&self.pending);
            self.pending.clear();
        }
    }
}

impl Drop for StageWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Messages from job threads, with a pipe that wakes the main loop's poll.
#[derive(Clone)]
struct Inbox {
    tx: Sender<Msg>,
    wake: Arc<OwnedFd>,
}

impl Inbox {
    fn send(&self, msg: Msg) {
        let _ = self.tx.send(msg);
        // SAFETY: writing one byte from a valid buffer to our pipe; a full
        // pipe (EAGAIN) already has wakes pending.
        unsafe {
            libc::write(self.wake.as_raw_fd(), b"m".as_ptr().cast(), 1);
        }
    }
}

/// A job occupying a slot.
struct Slot {
    /// Its script, once started.
    proc: Option<Proc>,
    /// Found running after a restart: not our child, watched through `/proc`.
    adopted: bool,
}

struct Executor {
    root: PathBuf,
    slots: usize,
    node: String,
    view: View,
    commands: LogTail,
    events: Arc<EventLog>,
    queue: VecDeque<String>,
    running: HashMap<String, Slot>,
    inbox: Inbox,
    messages: Receiver<Msg>,
    wake_read: OwnedFd,
    /// The wake FIFO, open for reading while we accept work.
    fifo: Option<File>,
    kills: Vec<(Instant, Proc)>,
    idle_since: Instant,
    /// The root was removed and its jobs are being ended.
    orphaned: bool,
    /// Held locked for the executor's life.
    _lock: File,
}

impl Executor {
    /// Takes the lock, replays the logs and recovers; `None` when another
    /// executor keeps running on `root`.
    fn open(root: &Path, slots: usize) -> io::Result<Option<Executor>> {
        let root = fs::canonicalize(root)?;
        let Some(lock) = take_lock(&root.join(LOCK))? else {
            eprintln!(
                "local-executor: another executor runs in {}",
                root.display()
            );
            return Ok(None);
        };
        let fifo = open_fifo(&root.join(WAKE))?;
        let events = OpenOptions::new()
            .read(true)
            .create(true)
            .append(true)
            .open(root.join(EVENTS))?;
        append_after_fragment(&events, b"")?;
        let (tx, messages) = channel();
        let (wake_read, wake_write) = pipe()?;
        let mut commands = LogTail::new(root.join(COMMANDS));
        let mut view = View::for_executor();
        for command in commands.read_new::<Command>()? {
            view.apply_command(command);
        }
        for event in LogTail::new(root.join(EVENTS)).read_new::<Event>()? {
            view.apply_event(event);
        }
        let mut executor = Executor {
            commands,
            root,
            slots,
            node: crate::host::hostname(),
            view,
            events: Arc::new(EventLog(Mutex::new(events))),
            queue: VecDeque::new(),
            running: HashMap::new(),
            inbox: Inbox {
                tx,
                wake: Arc::new(wake_write),
            },
            messages,
            wake_read,
            fifo: Some(fifo),
            kills: Vec::new(),
            idle_since: Instant::now(),
            orphaned: false,
            _lock: lock,
        };
        executor.recover();
        eprintln!(
            "local-executor: pid {} runs {} at once in {}",
            std::process::id(),
            executor.slots,
            executor.root.display()
        );
        Ok(Some(executor))
    }

    /// The main loop: commands in, jobs out, until idle long enough.
    fn run(&mut self) -> io::Result<()> {
        loop {
            self.handle_messages();
            self.read_commands()?;
            self.watch_adopted();
            self.fire_kills();
            self.end_orphaned_jobs();
            self.launch_ready();
            if self.running.is_empty() && self.queue.is_empty() {
                if self.should_exit() && self.close_if_nothing_came()? {
                    eprintln!("local-executor: idle, exiting");
                    return Ok(());
                }
            } else {
                self.idle_since = Instant::now();
            }
            self.wait();
        }
    }

    /// Queues the jobs waiting for a slot and adopts the running ones, as the
    /// replayed logs leave them.
    fn recover(&mut self) {
        let mut adopted = Vec::new();
        let mut lost = Vec::new();
        for (name, job) in self.view.in_order() {
            if !job.unfinished() {
                continue;
            }
            if !job.started() {
                self.queue.push_back(name.to_string());
                continue;
            }
            let recorded = job
                .pid
                .map(|(pid, start)| Proc { pid, start })
                .filter(Proc::alive);
            match recorded.or_else(|| find_by_work_dir(&self.root.join(name))) {
                Some(proc) => adopted.push((name.to_string(), proc)),
                None => lost.push(name.to_string()),
            }
        }
        for (name, proc) in adopted {
            eprintln!("local-executor: adopted {name} (pid {})", proc.pid);
            self.running.insert(
                name,
                Slot {
                    proc: Some(proc),
                    adopted: true,
                },
            );
        }
        for name in lost {
            self.record_lost(&name);
        }
    }

    /// Applies the commands appended since the last look.
    fn read_commands(&mut self) -> io::Result<()> {
        for command in self.commands.read_new::<Command>()? {
            self.apply(command);
        }
        Ok(())
    }

    fn apply(&mut self, command: Command) {
        if let Command::Submit { name, .. } = &command {
            if !valid_name(name) || self.view.get(name).is_some() {
                return;
            }
            self.queue.push_back(name.clone());
        }
        let target = match &command {
            Command::Hold { name } | Command::Release { name } | Command::Cancel { name } => {
                Some(name.clone())
            }
            _ => None,
        };
        self.view.apply_command(command.clone());
        if let Command::Slots { slots } = command {
            self.slots = slots.max(1);
        }
        let Some(name) = target else { return };
        let proc = self.running.get(&name).and_then(|slot| slot.proc);
        match (command, proc) {
            (Command::Hold { .. }, Some(proc)) => proc.signal_group(libc::SIGSTOP),
            (Command::Release { .. }, Some(proc)) => proc.signal_group(libc::SIGCONT),
            (Command::Cancel { .. }, Some(proc)) => self.terminate(proc),
            (Command::Cancel { .. }, None)
                if !self.running.contains_key(&name)
                    && self.view.get(&name).is_some_and(|j| j.unfinished()) =>
            {
                self.record_removed(&name)
            }
            _ => {}
        }
    }

    /// Handles what job threads reported.
    fn handle_messages(&mut self) {
        drain(&self.wake_read);
        while let Ok(msg) = self.messages.try_recv() {
            match msg {
                Msg::Pid(name, proc) => self.on_started(&name, proc),
                Msg::Done(name, result) => {
                    self.running.remove(&name);
                    if self.cancelled(&name) {
                        self.record(Event::Removed {
                            name,
                            ts_ms: crate::clock::now_ms(),
                        });
                    } else {
                        self.record(Event::Ended { name, result });
                    }
                }
            }
        }
    }

    /// A script started: a hold or cancel that came first applies now.
    fn on_started(&mut self, name: &str, proc: Proc) {
        if let Some(slot) = self.running.get_mut(name) {
            slot.proc = Some(proc);
        }
        if self.cancelled(name) {
            self.terminate(proc);
        } else if self.view.get(name).is_some_and(|j| j.held) {
            proc.signal_group(libc::SIGSTOP);
        }
    }

    fn cancelled(&self, name: &str) -> bool {
        self.view.get(name).is_some_and(|j| j.cancelled)
    }

    /// Ends adopted jobs whose process is gone.
    fn watch_adopted(&mut self) {
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(_, slot)| slot.adopted && !slot.proc.is_some_and(|p| p.alive()))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.running.remove(&name);
            if self.cancelled(&name) {
                self.record_removed(&name);
            } else {
                self.record_lost(&name);
            }
        }
    }

    /// When the root was removed (its installation, or a test's directory,
    /// is gone), nobody will ever read what its jobs do: they are ended
    /// (held ones too) and waiting ones dropped, so the executor can exit.
    fn end_orphaned_jobs(&mut self) {
        if self.orphaned || self.root.join(LOCK).exists() {
            return;
        }
        self.orphaned = true;
        eprintln!(
            "local-executor: {} is gone; ending its jobs",
            self.root.display()
        );
        self.queue.clear();
        let procs: Vec<Proc> = self.running.values().filter_map(|s| s.proc).collect();
        for proc in procs {
            self.terminate(proc);
        }
    }

    /// SIGTERM (and SIGCONT, in case it is held) now, SIGKILL after a grace time.
    fn terminate(&mut self, proc: Proc) {
        proc.signal_group(libc::SIGTERM);
        proc.signal_group(libc::SIGCONT);
        self.kills.push((Instant::now() + KILL_GRACE, proc));
    }

    fn fire_kills(&mut self) {
        let now = Instant::now();
        self.kills.retain(|(at, proc)| {
            if *at > now {
                return true;
            }
            if proc.alive() {
                proc.signal_group(libc::SIGKILL);
            }
            false
        });
    }

    /// Starts queued jobs while slots are free; held ones wait, removed ones are dropped.
    fn launch_ready(&mut self) {
        let mut at = 0;
        while self.running.len() < self.slots && at < self.queue.len() {
            let name = &self.queue[at];
            let Some(job) = self.view.get(name) else {
                self.queue.remove(at);
                continue;
            };
            if !job.unfinished() || job.started() {
                self.queue.remove(at);
            } else if job.cancelled {
                let name = name.clone();
                self.record_removed(&name);
            } else if job.held {
                at += 1;
            } else if let Some(name) = self.queue.remove(at) {
                self.launch(name);
            }
        }
    }

    /// Claims `name` in the event log, then runs it in a thread.
    fn launch(&mut self, name: String) {
        let Some(spec) = self.view.get(&name).and_then(|j| j.spec.clone()) else {
            return;
        };
        let dir = self.root.join(&name);
        self.record(Event::Started {
            name: name.clone(),
            ts_ms: crate::clock::now_ms(),
            node: self.node.clone(),
        });
        failpoint::hit("executor:after-claim");
        if let Err(e) = fs::create_dir(&dir).or_else(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(e),
        }) {
            let why = format!("cannot create {}: {e}", dir.display());
            self.record(Event::Lost {
                name,
                why,
                ts_ms: crate::clock::now_ms(),
            });
            return;
        }
        self.running.insert(
            name.clone(),
            Slot {
                proc: None,
                adopted: false,
            },
        );
        let events = self.events.clone();
        let inbox = self.inbox.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("job {name}"))
            .spawn({
                let name = name.clone();
                move || run_job(name, spec, dir, events, inbox)
            });
        if let Err(e) = spawned {
            self.running.remove(&name);
            let why = format!("cannot start a thread for it: {e}");
            self.record(Event::Lost {
                name,
                why,
                ts_ms: crate::clock::now_ms(),
            });
        }
    }

    fn record(&mut self, event: Event) {
        self.events.write(&event);
        self.view.apply_event(event);
    }

    fn record_removed(&mut self, name: &str) {
        self.queue.retain(|n| n != name);
        self.record(Event::Removed {
            name: name.to_string(),
            ts_ms: crate::clock::now_ms(),
        });
    }

    fn record_lost(&mut self, name: &str) {
        self.record(Event::Lost {
            name: name.to_string(),
            why: LOST.to_string(),
            ts_ms: crate::clock::now_ms(),
        });
    }

    /// Idle for [`IDLE_EXIT`], or the root is gone, or our binary was replaced.
    fn should_exit(&self) -> bool {
        self.idle_since.elapsed() >= IDLE_EXIT
            || !self.root.join(LOCK).exists()
            || binary_replaced()
    }

    /// Stops accepting wakes, then looks at the commands once more: true when
    /// none came (the executor may exit); otherwise it goes on. A worker that
    /// appends a command after this finds no reader and starts a new executor,
    /// which replays it.
    fn close_if_nothing_came(&mut self) -> io::Result<bool> {
        self.fifo = None;
        self.read_commands()?;
        if self.queue.is_empty() && self.running.is_empty() {
            return Ok(true);
        }
        self.fifo = Some(open_fifo(&self.root.join(WAKE))?);
        self.idle_since = Instant::now();
        Ok(false)
    }

    /// Sleeps until a wake, a job thread's message, or the next thing to check.
    fn wait(&mut self) {
        let busy = !self.kills.is_empty() || self.running.values().any(|s| s.adopted);
        let timeout = if busy { ADOPTED_CHECK } else { TICK };
        let mut fds = vec![libc::pollfd {
            fd: self.wake_read.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        if let Some(fifo) = &self.fifo {
            fds.push(libc::pollfd {
                fd: fifo.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a valid array of pollfd for its length.
        unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                timeout.as_millis() as i32,
            );
        }
        if let Some(fifo) = &self.fifo {
            drain(fifo);
        }
    }
}

/// One job, start to end, in its own thread.
fn run_job(name: String, spec: JobRunSpec, dir: PathBuf, events: Arc<EventLog>, inbox: Inbox) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        jobrun::run_job(&spec, &dir, job_io(&name, &dir, &events, &inbox)).0
    }));
    let result = outcome.unwrap_or_else(|_| {
        let mut result = JobResult::starting(crate::host::hostname());
        result.failed_stage = Some("setup".into());
        result.end_ms = crate::clock::now_ms();
        result
    });
    inbox.send(Msg::Done(name, result));
}

/// Where a job's records go: stages to the event log, output to files in
/// its directory made on first write, its pid to the event log and the main loop.
fn job_io(name: &str, dir: &Path, events: &Arc<EventLog>, inbox: &Inbox) -> JobIo {
    let mut stages = StageWriter {
        name: name.to_string(),
        events: events.clone(),
        pending: Vec::new(),
    };
    let pid_events = events.clone();
    let pid_name = name.to_string();
    let inbox = inbox.clone();
    let lazy = |file: &str| -> SharedOut { Arc::new(Mutex::new(LazyFile::new(dir.join(file)))) };
    JobIo {
        stages: StageLog::sink(move |stage| stages.record(stage)),
        stdout: lazy(files::STDOUT),
        stderr: Some(lazy(files::STDERR)),
        on_start: Some(Box::new(move |pid| {
            let proc = Proc::of(pid).unwrap_or(Proc { pid, start: 0 });
            pid_events.write(&Event::Pid {
                name: pid_name.clone(),
                pid,
                start: proc.start,
            });
            failpoint::hit("executor:after-spawn");
            inbox.send(Msg::Pid(pid_name, proc));
        })),
    }
}

/// A log file made on its first write, so a job that prints nothing leaves none.
struct LazyFile {
    path: PathBuf,
    file: Option<File>,
}

impl LazyFile {
    fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }
}

impl Write for LazyFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.file.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.file = Some(file);
        }
        self.file.as_mut().map_or(Ok(0), |file| file.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |file| file.flush())
    }
}

/// Locks `path` exclusively, waiting up to [`LOCK_WAIT`] for an exiting
/// executor; `None` when another keeps it. The lock holds our pid.
fn take_lock(path: &Path) -> io::Result<Option<File>> {
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        // SAFETY: flock on a valid open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            return Ok(Some(file));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(e);
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes the wake FIFO if needed and opens it for reading without blocking
/// (read-write, so it never reports end of file).
fn open_fifo(path: &Path) -> io::Result<File> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: a valid C string.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// A pipe whose ends do not block and are closed on exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these descriptors, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads and discards whatever wakes are pending on a non-blocking descriptor.
fn drain(fd: &impl AsRawFd) {
    let mut buf = [0u8; 256];
    // SAFETY: reading into a valid buffer of its length.
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

/// True when the binary we run from was replaced (a new build): an idle
/// executor then exits, and the next worker starts the new one.
fn binary_replaced() -> bool {
    fs::read_link("/proc/self/exe").is_ok_and(|p| p.to_string_lossy().ends_with(" (deleted)"))
}
