//! The `run` stage: the job's script as a child process, its stdout passed
//! through line by line with marker lines obeyed, its process tree sampled
//! every tick for memory and CPU and killed when it exceeds its limits. One
//! thread follows it all with `poll` (its output pipes and a pidfd for its
//! exit), so a job costs no threads of its own.

use super::measure::{pids_of_tree, sample_tree, Sample};
use super::stages::{cpu_ms_of, OpenStage, StageLog, Usage};
use super::{JobIo, SharedOut};
use crate::model::jobspec::{JobRunSpec, EVENTS_MARKER, STAGE_MARKER};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

/// How often the process tree is sampled.
const TICK: Duration = Duration::from_millis(100);
/// How long to wait for stdout to close after the script exits (background children may hold it).
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Longest stage name a marker may give.
const MAX_STAGE_NAME: usize = 64;

/// How the script ended.
#[derive(Debug, Default)]
pub struct ScriptOutcome {
    /// Exit code, if it exited.
    pub exit_code: Option<i64>,
    /// Signal that killed it, if any.
    pub signal: Option<i64>,
    /// Killed for exceeding the memory limit.
    pub oom: bool,
    /// Killed for exceeding the wall-time limit.
    pub timed_out: bool,
    /// Sum of `PRODOPS_EVENTS` markers, if any were printed.
    pub events: Option<i64>,
    /// The stage that was open when it failed.
    pub failed_stage: Option<String>,
}

impl ScriptOutcome {
    /// True when the script exited 0 within its limits.
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && self.signal.is_none() && !self.oom && !self.timed_out
    }
}

/// Paths the script is told about.
pub struct Places<'a> {
    /// The job's working directory.
    pub work: &'a Path,
    /// Staged input files.
    pub inputs: &'a [PathBuf],
    /// Where the script leaves its outputs.
    pub out: &'a Path,
}

/// A marker line the script printed.
#[derive(Debug, PartialEq, Eq)]
enum Marker {
    Stage(String),
    Events(i64),
}

/// Reads a marker from a stdout line; other lines (and malformed markers) are `None`.
fn parse_marker(line: &str) -> Option<Marker> {
    let (word, value) = line.trim_end().split_once(' ')?;
    let value = value.trim();
    match word {
        STAGE_MARKER if valid_stage_name(value) => Some(Marker::Stage(value.to_string())),
        EVENTS_MARKER => value
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(Marker::Events),
        _ => None,
    }
}

fn valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STAGE_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// The command that runs the script: directly if executable, else through `/bin/sh`.
fn command_for(spec: &JobRunSpec, work: &Path) -> Command {
    let script = work.join(&spec.executable);
    let runnable_by_sh = script
        .metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 == 0)
        .unwrap_or(false);
    let mut cmd = if runnable_by_sh {
        let mut sh = Command::new("/bin/sh");
        sh.arg(&script);
        sh
    } else {
        Command::new(&spec.executable)
    };
    cmd.args(&spec.args);
    cmd
}

/// Starts `cmd`, trying again for a moment while the kernel says the
/// program is busy: the approved copy was written just before, and another
/// thread's child may still hold it open between its fork and exec.
fn spawn_retrying_busy(cmd: &mut Command) -> std::io::Result<std::process::Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            outcome => return outcome,
        }
    }
}

/// Runs the script as stage `run` (and any stages its markers open).
pub fn run(spec: &JobRunSpec, places: &Places, io: &mut JobIo) -> ScriptOutcome {
    let mut cmd = command_for(spec, places.work);
    let inputs: Vec<String> = places
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    cmd.current_dir(places.work)
        .envs(&spec.env)
        .env("PRODOPS_JOB_ID", spec.job.to_string())
        .env("PRODOPS_ATTEMPT", spec.attempt.to_string())
        .env("PRODOPS_WORK_DIR", places.work)
        .env("PRODOPS_INPUT_FILES", inputs.join(" "))
        .env("PRODOPS_OUTPUT_DIR", places.out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if io.stderr.is_some() {
        cmd.stderr(Stdio::piped());
    }
    let on_start = io.on_start.take();
    if on_start.is_some() {
        cmd.process_group(0);
    }
    let stage = io.stages.start("run");
    let mut child = match spawn_retrying_busy(&mut cmd) {
        Ok(child) => child,
        Err(e) => {
            io.note(&format!("cannot start {}: {e}", spec.executable));
            io.stages.end(stage, Usage::default(), false);
            return ScriptOutcome {
                exit_code: Some(127),
                failed_stage: Some("run".into()),
                ..ScriptOutcome::default()
            };
        }
    };
    let pid = child.id() as i32;
    if let Some(on_start) = on_start {
        on_start(pid);
    }
    let mut streams = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        streams.push(Stream::new(stdout.into(), io.stdout.clone(), true));
    }
    if let (Some(stderr), Some(out)) = (child.stderr.take(), &io.stderr) {
        streams.push(Stream::new(stderr.into(), out.clone(), false));
    }
    Supervisor::new(spec, pid, stage).follow(streams, io)
}

/// One of the script's output streams, relayed line by line to `out`.
struct Stream {
    fd: OwnedFd,
    out: SharedOut,
    /// Marker lines are obeyed on this stream (stdout).
    markers: bool,
    partial: Vec<u8>,
    open: bool,
}

impl Stream {
    fn new(fd: OwnedFd, out: SharedOut, markers: bool) -> Self {
        // SAFETY: fcntl on a descriptor we own.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Self {
            fd,
            out,
            markers,
            partial: Vec::new(),
            open: true,
        }
    }

    /// Reads what is there; returns the complete lines' markers. At end of
    /// stream a last line without a newline is passed on too.
    fn read_available(&mut self) -> Vec<Marker> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            // SAFETY: reading into a valid buffer of its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                self.partial.extend_from_slice(&buf[..n as usize]);
                continue;
            }
            if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                if n == 0 {
                    self.open = false;
                }
                break;
            }
        }
        let cut = if self.open {
            self.partial
                .iter()
                .rposition(|b| *b == b'\n')
                .map(|i| i + 1)
        } else {
            Some(self.partial.len())
        };
        let Some(cut) = cut.filter(|cut| *cut > 0) else {
            return Vec::new();
        };
        let lines: Vec<u8> = self.partial.drain(..cut).collect();
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = out.write_all(&lines);
        let _ = out.flush();
        if !self.markers {
            return Vec::new();
        }
        lines
            .split(|b| *b == b'\n')
            .filter_map(|line| parse_marker(&String::from_utf8_lossy(line)))
            .collect()
    }
}

/// A descriptor that becomes readable when process `pid` exits (`None` on
/// kernels without pidfd: the exit is then noticed at the next tick).
fn pidfd(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open has no memory-safety preconditions.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a descriptor the kernel just returned, owned by nobody else.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Reaps our child `pid` if it has exited: its wait status and resource use.
fn try_reap(pid: i32) -> Option<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pointers are to valid locals; `pid` is our own child.
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    (r == pid).then_some((status, usage))
}

/// Follows one running script: stage boundaries, limits, end.
struct Supervisor {
    pid: i32,
    memory_kb: Option<i64>,
    deadline: Option<Instant>,
    stage: Option<OpenStage>,
    stage_cpu_start: i64,
    stage_peak_kb: i64,
    stages_seen: usize,
    outcome: ScriptOutcome,
}

impl Supervisor {
    fn new(spec: &JobRunSpec, pid: i32, stage: OpenStage) -> Self {
        Self {
            pid,
            memory_kb: (spec.memory_mb > 0).then_some(spec.memory_mb * 1024),
            deadline: (spec.wall_seconds > 0)
                .then(|| Instant::now() + Duration::from_secs(spec.wall_seconds as u64)),
            stage: Some(stage),
            stage_cpu_start: 0,
            stage_peak_kb: 0,
            stages_seen: 1,
            outcome: ScriptOutcome::default(),
        }
    }

    /// Relays output, obeys markers and ticks until the script has exited
    /// and its output streams are drained (or stay open past a grace time:
    /// background children may hold them).
    fn follow(mut self, mut streams: Vec<Stream>, io: &mut JobIo) -> ScriptOutcome {
        let exit_fd = pidfd(self.pid);
        let mut next_tick = Instant::now() + TICK;
        let mut exited: Option<(libc::c_int, libc::rusage)> = None;
        let mut drain_until: Option<Instant> = None;
        loop {
            if exited.is_none() {
                exited = try_reap(self.pid);
                if exited.is_some() {
                    drain_until = Some(Instant::now() + DRAIN_GRACE);
                }
            }
            let open: Vec<&mut Stream> = streams.iter_mut().filter(|s| s.open).collect();
            if exited.is_some() && open.is_empty() {
                break;
            }
            if drain_until.is_some_and(|until| Instant::now() >= until) {
                break;
            }
            let wake = drain_until.unwrap_or(next_tick);
            let mut fds: Vec<libc::pollfd> =
                open.iter().map(|s| poll_in(s.fd.as_raw_fd())).collect();
            if let (Some(fd), None) = (&exit_fd, &exited) {
                fds.push(poll_in(fd.as_raw_fd()));
            }
            let timeout = wake.saturating_duration_since(Instant::now()).as_millis() as i32;
            // SAFETY: `fds` is a valid array of pollfd for its length.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            for stream in open {
                for marker in stream.read_available() {
                    self.on_marker(marker, &mut io.stages);
                }
            }
            if exited.is_none() && Instant::now() >= next_tick {
                self.on_tick(io);
                next_tick = Instant::now() + TICK;
            }
        }
        self.finish(exited, &mut io.stages)
    }

    fn on_marker(&mut self, marker: Marker, log: &mut StageLog) {
        match marker {
            Marker::Events(n) => {
                self.outcome.events = Some(self.outcome.events.unwrap_or(0).saturating_add(n))
            }
            Marker::Stage(name) => {
                let now = sample_tree(self.pid);
                if let Some(stage) = self.stage.take() {
                    let usage = Usage {
                        cpu_ms: now.cpu_ms - self.stage_cpu_start,
                        max_rss_kb: self.stage_peak_kb.max(now.rss_kb),
                    };
                    log.end(stage, usage, true);
                }
                self.stage = Some(log.start(&name));
                self.stage_cpu_start = now.cpu_ms;
                self.stage_peak_kb = now.rss_kb;
                self.stages_seen += 1;
            }
        }
    }

    /// Samples the tree and enforces the memory and wall-time limits.
    fn on_tick(&mut self, io: &JobIo) {
        let Sample { rss_kb, .. } = sample_tree(self.pid);
        self.stage_peak_kb = self.stage_peak_kb.max(rss_kb);
        if self.memory_kb.is_some_and(|limit| rss_kb > limit) && !self.outcome.oom {
            io.note(&format!(
                "killed: resident memory {} MB exceeds the limit of {} MB",
                rss_kb / 1024,
                self.memory_kb.unwrap_or(0) / 1024
            ));
            self.outcome.oom = true;
            kill_tree(self.pid);
        }
        if self.deadline.is_some_and(|d| Instant::now() > d) && !self.outcome.timed_out {
            io.note("killed: wall-time limit reached");
            self.outcome.timed_out = true;
            kill_tree(self.pid);
        }
    }

    /// Closes the open stage with the script's final status and resource use.
    fn finish(
        mut self,
        exited: Option<(libc::c_int, libc::rusage)>,
        log: &mut StageLog,
    ) -> ScriptOutcome {
        let mut usage = Usage {
            cpu_ms: 0,
            max_rss_kb: self.stage_peak_kb,
        };
        match exited {
            Some((status, rusage)) => {
                usage.cpu_ms = cpu_ms_of(&rusage) - self.stage_cpu_start;
                if self.stages_seen == 1 {
                    usage.max_rss_kb = usage.max_rss_kb.max(rusage.ru_maxrss);
                }
                if libc::WIFEXITED(status) {
                    self.outcome.exit_code = Some(libc::WEXITSTATUS(status) as i64);
                } else if libc::WIFSIGNALED(status) {
                    self.outcome.signal = Some(libc::WTERMSIG(status) as i64);
                }
            }
            None => {
                kill_tree(self.pid);
                self.outcome.signal = Some(libc::SIGKILL as i64);
            }
        }
        let ok = self.outcome.ok();
        if let Some(stage) = self.stage.take() {
            if !ok {
                self.outcome.failed_stage = Some(stage.name.clone());
            }
            log.end(stage, usage, ok);
        }
        self.outcome
    }
}

/// A pollfd waiting for `fd` to be readable.
fn poll_in(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// SIGKILLs `root` and every descendant (they share our process group, so the group is not used).
fn kill_tree(root: i32) {
    for pid in pids_of_tree(root) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_marker_reads_stage_and_events_lines() {
        assert_eq!(
            parse_marker("PRODOPS_STAGE hadd\n"),
            Some(Marker::Stage("hadd".into()))
        );
        assert_eq!(
            parse_marker("PRODOPS_EVENTS 250"),
            Some(Marker::Events(250))
        );
    }

    #[test]
    fn parse_marker_ignores_ordinary_and_malformed_lines() {
        for line in [
            "hello",
            "PRODOPS_STAGE",
            "PRODOPS_STAGE ",
            "PRODOPS_STAGE two words",
            "PRODOPS_EVENTS -3",
            "PRODOPS_EVENTS many",
            " PRODOPS_EVENTS 3",
            "XPRODOPS_STAGE a",
        ] {
            assert_eq!(parse_marker(line), None, "{line:?}");
        }
        assert_eq!(
            parse_marker(&format!("PRODOPS_STAGE {}", "a".repeat(65))),
            None
        );
    }
}
