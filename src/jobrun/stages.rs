//! Stage records and what a stage used.
//!
//! A [`StageLog`] receives one [`StageEvent`] as each stage starts and ends,
//! so a job killed half-way still shows how far it got: `prodops job-run`
//! appends them to `stages.jsonl`, the local executor to its event log.

use crate::clock::now_ms;
use crate::model::jobspec::StageEvent;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// Where stage events go.
pub struct StageLog {
    sink: Box<dyn FnMut(&StageEvent) + Send>,
}

/// A stage that has started and not yet ended.
pub struct OpenStage {
    /// Its name.
    pub name: String,
    started: Instant,
}

/// What a stage used, to close it with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// CPU time, ms.
    pub cpu_ms: i64,
    /// Peak resident memory, KiB.
    pub max_rss_kb: i64,
}

impl Usage {
    /// Both together: CPU adds up, the peak is the larger one.
    pub fn plus(self, other: Usage) -> Usage {
        Usage {
            cpu_ms: self.cpu_ms + other.cpu_ms,
            max_rss_kb: self.max_rss_kb.max(other.max_rss_kb),
        }
    }
}

impl StageLog {
    /// Appends events as JSON lines to the file at `path`; a record that
    /// cannot be opened or written is reported once and the job runs on
    /// without it.
    pub fn file(path: &Path) -> Self {
        let mut file = match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("job-run: cannot write {}: {e}", path.display());
                None
            }
        };
        Self::sink(move |event| {
            let Some(out) = &mut file else { return };
            let mut line = serde_json::to_string(event).expect("a stage event serialises");
            line.push('\n');
            if let Err(e) = out.write_all(line.as_bytes()) {
                eprintln!("job-run: cannot append to stages.jsonl: {e}");
                file = None;
            }
        })
    }

    /// Hands every event to `sink`.
    pub fn sink(sink: impl FnMut(&StageEvent) + Send + 'static) -> Self {
        Self {
            sink: Box::new(sink),
        }
    }

    /// Records the start of `name`.
    pub fn start(&mut self, name: &str) -> OpenStage {
        (self.sink)(&StageEvent::Start {
            stage: name.to_string(),
            ts_ms: now_ms(),
        });
        OpenStage {
            name: name.to_string(),
            started: Instant::now(),
        }
    }

    /// Records the end of `stage` with what it used.
    pub fn end(&mut self, stage: OpenStage, usage: Usage, ok: bool) {
        (self.sink)(&StageEvent::End {
            stage: stage.name,
            ts_ms: now_ms(),
            wall_ms: stage.started.elapsed().as_millis() as i64,
            cpu_ms: usage.cpu_ms.max(0),
            max_rss_kb: usage.max_rss_kb.max(0),
            ok,
        });
    }
}

/// CPU used by the calling thread since [`ThreadMeter::start`], with the
/// process's peak RSS: what one of the runner's own stages used (the local
/// executor runs several jobs at once, one thread each).
#[derive(Debug, Clone, Copy)]
pub struct ThreadMeter {
    cpu_at_start: i64,
}

impl ThreadMeter {
    /// Starts measuring the calling thread now.
    pub fn start() -> Self {
        Self {
            cpu_at_start: getrusage(libc::RUSAGE_THREAD).0,
        }
    }

    /// What the calling thread used since [`ThreadMeter::start`].
    pub fn usage(&self) -> Usage {
        let (cpu, rss) = getrusage(libc::RUSAGE_THREAD);
        Usage {
            cpu_ms: cpu - self.cpu_at_start,
            max_rss_kb: rss,
        }
    }
}

/// CPU used by this whole process since [`SelfMeter::start`] (benchmarks
/// report the worker's own cost with it).
#[derive(Debug, Clone, Copy)]
pub struct SelfMeter {
    cpu_at_start: i64,
}

impl SelfMeter {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self {
            cpu_at_start: getrusage(libc::RUSAGE_SELF).0,
        }
    }

    /// What the process used since [`SelfMeter::start`].
    pub fn usage(&self) -> Usage {
        let (cpu, rss) = getrusage(libc::RUSAGE_SELF);
        Usage {
            cpu_ms: cpu - self.cpu_at_start,
            max_rss_kb: rss,
        }
    }
}

fn getrusage(who: libc::c_int) -> (i64, i64) {
    // SAFETY: an all-zero rusage is a valid value; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return (0, 0);
    }
    (cpu_ms_of(&usage), usage.ru_maxrss)
}

/// Waits for our child `pid` with wait4: its raw wait status and what it
/// (and the children it waited for) used.
pub fn wait_measured(pid: i32) -> std::io::Result<(libc::c_int, Usage)> {
    let (status, usage) = wait4(pid)?;
    Ok((
        status,
        Usage {
            cpu_ms: cpu_ms_of(&usage),
            max_rss_kb: usage.ru_maxrss,
        },
    ))
}

/// wait4 on our child `pid`, retried on EINTR.
pub fn wait4(pid: i32) -> std::io::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pointers are to valid locals; `pid` is our own unreaped child.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// User + system time of a rusage, ms.
pub fn cpu_ms_of(usage: &libc::rusage) -> i64 {
    let ms = |t: libc::timeval| t.tv_sec * 1000 + t.tv_usec / 1000;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}
