//! The files through which workers and the local executor talk, all in the
//! executor's root directory:
//!
//! | file             | written by | what                                                  |
//! |------------------|------------|-------------------------------------------------------|
//! | `commands.jsonl` | workers    | one [`Command`] a line: submit, hold, release, cancel |
//! | `events.jsonl`   | executor   | one [`Event`] a line: started, stages, ended, …      |
//! | `wake`           | —          | a FIFO the executor reads; a worker writes a byte to it after a command |
//! | `executor.lock`  | executor   | locked (flock) while an executor runs; holds its pid  |
//! | `executor.log`   | executor   | its own messages                                      |
//! | `<job name>/`    | executor   | the job's working directory: `stdout.log`, `stderr.log` (made on first output), `out/` |
//!
//! Both logs are append-only. A writer killed half-way through a line leaves
//! a fragment; the next append starts on a fresh line and readers skip what
//! does not parse, so a crash costs at most the record being written.

use crate::model::jobspec::{JobResult, JobRunSpec, StageEvent};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Commands from workers.
pub const COMMANDS: &str = "commands.jsonl";
/// Events from the executor.
pub const EVENTS: &str = "events.jsonl";
/// The FIFO that wakes the executor.
pub const WAKE: &str = "wake";
/// Held locked by the running executor.
pub const LOCK: &str = "executor.lock";
/// The executor's own messages.
pub const EXECUTOR_LOG: &str = "executor.log";

/// What a worker asks of the executor. Workers read commands back without
/// what a job runs ([`CommandHead`]): the spec is the executor's business,
/// and the costliest part to parse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command<S = JobRunSpec> {
    /// Run this job once a slot is free (ignored if the name is known).
    Submit {
        /// The job's name ([`crate::batch::JobKey::name`]).
        name: String,
        /// What to run.
        spec: S,
    },
    /// Keep it from starting, or suspend it if running.
    Hold {
        /// The job.
        name: String,
    },
    /// Undo a hold.
    Release {
        /// The job.
        name: String,
    },
    /// Remove it: never start it, or kill it.
    Cancel {
        /// The job.
        name: String,
    },
    /// Run at most this many jobs at once from now on.
    Slots {
        /// Jobs at once, at least 1.
        slots: usize,
    },
}

/// A [`Command`] as workers read it back: a submission's spec skipped.
pub type CommandHead = Command<serde::de::IgnoredAny>;

/// What a submission carries into the view: its spec, or nothing for a head.
pub trait SubmittedSpec {
    /// The spec, when it was read.
    fn into_spec(self) -> Option<JobRunSpec>;
}

impl SubmittedSpec for JobRunSpec {
    fn into_spec(self) -> Option<JobRunSpec> {
        Some(self)
    }
}

impl SubmittedSpec for serde::de::IgnoredAny {
    fn into_spec(self) -> Option<JobRunSpec> {
        None
    }
}

/// What happened to a job, as the executor records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// The executor took the job to run it (written before anything
    /// starts, so a job is never started twice).
    Started {
        /// The job.
        name: String,
        /// When, ms since the epoch.
        ts_ms: i64,
        /// Host it runs on.
        node: String,
    },
    /// Its script started with this process (the leader of its group).
    Pid {
        /// The job.
        name: String,
        /// Process id.
        pid: i32,
        /// Process start time, against pid reuse.
        start: u64,
    },
    /// A stage started or ended.
    Stage {
        /// The job.
        name: String,
        /// The stage record.
        stage: StageEvent,
    },
    /// It ended by itself.
    Ended {
        /// The job.
        name: String,
        /// How.
        result: JobResult,
    },
    /// It was cancelled before or while it ran.
    Removed {
        /// The job.
        name: String,
        /// When.
        ts_ms: i64,
    },
    /// The executor stopped while it ran, so how it ended is unknown.
    Lost {
        /// The job.
        name: String,
        /// Why, in words.
        why: String,
        /// When it was noticed.
        ts_ms: i64,
    },
}

impl Event {
    /// The job the event is about.
    pub fn name(&self) -> &str {
        match self {
            Event::Started { name, .. }
            | Event::Pid { name, .. }
            | Event::Stage { name, .. }
            | Event::Ended { name, .. }
            | Event::Removed { name, .. }
            | Event::Lost { name, .. } => name,
        }
    }
}

/// One JSON line for `record`.
pub fn line_of(record: &impl Serialize) -> Vec<u8> {
    let mut line = serde_json::to_vec(record).expect("a protocol record serialises");
    line.push(b'\n');
    line
}

/// Appends `lines` (complete lines) to `path` under an exclusive lock, after
/// a line break if a crashed writer left a fragment: several workers may
/// append, and each record stays whole.
pub fn append_locked(path: &Path, lines: &[u8]) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .open(path)?;
    let _lock = Flock::exclusive(&file)?;
    append_after_fragment(&file, lines)
}

/// Appends `lines` to `file` (opened to read and append), first ending a fragment
/// left by a writer that crashed mid-line.
pub fn append_after_fragment(mut file: &File, lines: &[u8]) -> io::Result<()> {
    let len = file.metadata()?.len();
    let mut last = [b'\n'];
    if len > 0 {
        file.read_exact_at(&mut last, len - 1)?;
    }
    if last[0] == b'\n' {
        file.write_all(lines)
    } else {
        let mut whole = Vec::with_capacity(lines.len() + 1);
        whole.push(b'\n');
        whole.extend_from_slice(lines);
        file.write_all(&whole)
    }
}

/// An exclusive flock, released on drop.
pub struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    /// Blocks until `file` is locked exclusively.
    pub fn exclusive(file: &'a File) -> io::Result<Self> {
        loop {
            // SAFETY: flock on a valid open descriptor.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Flock(file));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we locked.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// Reads a log's complete lines as they are appended, remembering where it stopped.
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    offset: u64,
}

impl LogTail {
    /// A reader of `path` from its beginning.
    pub fn new(path: PathBuf) -> Self {
        Self { path, offset: 0 }
    }

    /// The records appended since the last call that parse as `T`, in
    /// order; fragments and garbage lines are skipped. A line still being
    /// written is left for the next call. A missing file has no records.
    pub fn read_new<T: serde::de::DeserializeOwned>(&mut self) -> io::Result<Vec<T>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() <= self.offset {
            return Ok(Vec::new());
        }
        file.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        self.offset += end as u64 + 1;
        Ok(bytes[..end]
            .split(|b| *b == b'\n')
            .filter_map(|line| serde_json::from_slice(line).ok())
            .collect())
    }
}

/// Opens the FIFO at `path` for writing without blocking and writes one
/// byte: `Ok(true)` when an executor is reading it, `Ok(false)` when none
/// is (the FIFO has no reader or does not exist yet).
pub fn wake(path: &Path) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: a valid C string; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c_path.as_ptr(),
            libc::O_WRONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) | Some(libc::ENOENT) => Ok(false),
            _ => Err(e),
        };
    }
    // SAFETY: writing one byte from a valid buffer to our descriptor, then
    // closing it. A full FIFO (EAGAIN) means the executor has wakes pending.
    unsafe {
        libc::write(fd, b"w".as_ptr().cast(), 1);
        libc::close(fd);
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_reads_complete_lines_once_and_skips_fragments_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut tail = LogTail::new(path.clone());
        assert!(
            tail.read_new::<Command>().unwrap().is_empty(),
            "no file yet"
        );
        let hold = Command::Hold { name: "a".into() };
        append_locked(&path, &line_of(&hold)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"op\":\"hold\",\"na")
            .unwrap();
        assert_eq!(tail.read_new::<Command>().unwrap(), [hold]);
        assert!(
            tail.read_new::<Command>().unwrap().is_empty(),
            "the fragment waits"
        );
        let release = Command::Release { name: "b".into() };
        append_locked(&path, &line_of(&release)).unwrap();
        append_locked(&path, b"garbage\n").unwrap();
        assert_eq!(
            tail.read_new::<Command>().unwrap(),
            [release],
            "a crashed writer's fragment costs only itself"
        );
    }

    #[test]
    fn wake_reports_no_executor_when_nobody_reads_the_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WAKE);
        assert!(!wake(&path).unwrap(), "no FIFO");
        let c_path = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        assert!(!wake(&path).unwrap(), "no reader");
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        assert!(wake(&path).unwrap());
    }
}
