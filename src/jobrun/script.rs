//! The `run` stage: the job's script as a child process, its stdout passed
//! through line by line with marker lines obeyed, its process tree sampled
//! every tick for memory and CPU and killed when it exceeds its limits.

use super::measure::{pids_of_tree, sample_tree, Sample};
use super::stages::{cpu_ms_of, wait4, OpenStage, StageLog, Usage};
use super::{JobIo, SharedOut};
use crate::model::jobspec::{JobRunSpec, EVENTS_MARKER, STAGE_MARKER};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
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

enum Msg {
    Marker(Marker),
    StreamClosed,
    Exited(libc::c_int, libc::rusage),
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
    let mut child = match cmd.spawn() {
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
    let (tx, rx) = channel();
    let mut streams = 1;
    let stdout = child.stdout.take().expect("stdout is piped");
    spawn_relay(stdout, io.stdout.clone(), Some(tx.clone()), tx.clone());
    if let (Some(stderr), Some(out)) = (child.stderr.take(), &io.stderr) {
        spawn_relay(stderr, out.clone(), None, tx.clone());
        streams += 1;
    }
    spawn_reaper(pid, tx);
    Supervisor::new(spec, pid, stage).follow(rx, streams, io)
}

/// Copies one of the script's output streams to `out` line by line, sending
/// its markers when `markers` is given, and `StreamClosed` at its end.
fn spawn_relay(
    stream: impl Read + Send + 'static,
    out: SharedOut,
    markers: Option<Sender<Msg>>,
    tx: Sender<Msg>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            let _ = out
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_all(&line);
            if let Some(markers) = &markers {
                if let Some(marker) = parse_marker(&String::from_utf8_lossy(&line)) {
                    let _ = markers.send(Msg::Marker(marker));
                }
            }
            line.clear();
        }
        let _ = out.lock().unwrap_or_else(PoisonError::into_inner).flush();
        let _ = tx.send(Msg::StreamClosed);
    });
}

/// Waits for the script with wait4 to get its status and resource use.
fn spawn_reaper(pid: i32, tx: Sender<Msg>) {
    std::thread::spawn(move || {
        // SAFETY: an all-zero rusage is a valid value.
        let (status, usage) = wait4(pid).unwrap_or((0, unsafe { std::mem::zeroed() }));
        let _ = tx.send(Msg::Exited(status, usage));
    });
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

    /// Handles messages and ticks until the script has exited and its
    /// `streams` output streams are drained.
    fn follow(mut self, rx: Receiver<Msg>, mut streams: usize, io: &mut JobIo) -> ScriptOutcome {
        let mut next_tick = Instant::now() + TICK;
        let mut exited: Option<(libc::c_int, libc::rusage)> = None;
        let mut drain_until: Option<Instant> = None;
        while exited.is_none() || streams > 0 {
            let wake = drain_until.unwrap_or(next_tick);
            match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(Msg::Marker(marker)) => self.on_marker(marker, &mut io.stages),
                Ok(Msg::StreamClosed) => streams -= 1,
                Ok(Msg::Exited(status, usage)) => {
                    exited = Some((status, usage));
                    drain_until = Some(Instant::now() + DRAIN_GRACE);
                }
                Err(RecvTimeoutError::Timeout) if drain_until.is_some() => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.on_tick(io);
                    next_tick = Instant::now() + TICK;
                }
                Err(RecvTimeoutError::Disconnected) => break,
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
