//! `stages.jsonl`: one [`StageEvent`] per line, appended as stages start and
//! end, so a job killed half-way still shows how far it got.

use crate::model::jobspec::StageEvent;
use crate::store::now_ms;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// The append-only stage record of one job attempt.
pub struct StageLog {
    file: Option<File>,
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

impl StageLog {
    /// Opens (appends to) the record at `path`; a record that cannot be opened
    /// is reported once and the job runs on without it.
    pub fn open(path: &Path) -> Self {
        match OpenOptions::new().create(true).append(true).open(path) {
            Ok(file) => Self { file: Some(file) },
            Err(e) => {
                eprintln!("job-run: cannot write {}: {e}", path.display());
                Self { file: None }
            }
        }
    }

    /// Records the start of `name`.
    pub fn start(&mut self, name: &str) -> OpenStage {
        self.append(&StageEvent::Start {
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
        self.append(&StageEvent::End {
            stage: stage.name,
            ts_ms: now_ms(),
            wall_ms: stage.started.elapsed().as_millis() as i64,
            cpu_ms: usage.cpu_ms.max(0),
            max_rss_kb: usage.max_rss_kb.max(0),
            ok,
        });
    }

    fn append(&mut self, event: &StageEvent) {
        let Some(file) = &mut self.file else { return };
        let mut line = serde_json::to_string(event).expect("a stage event serialises");
        line.push('\n');
        if let Err(e) = file.write_all(line.as_bytes()) {
            eprintln!("job-run: cannot append to stages.jsonl: {e}");
            self.file = None;
        }
    }
}

/// Resource use of this process (and, optionally, its reaped children) from getrusage.
#[derive(Debug, Clone, Copy)]
pub struct SelfMeter {
    with_children: bool,
    cpu_at_start: i64,
}

impl SelfMeter {
    /// Starts measuring now; `with_children` adds the helper commands it waits for (e.g. `tar`).
    pub fn start(with_children: bool) -> Self {
        let (cpu, _) = rusage(with_children);
        Self {
            with_children,
            cpu_at_start: cpu,
        }
    }

    /// What was used since [`SelfMeter::start`].
    pub fn usage(&self) -> Usage {
        let (cpu, rss) = rusage(self.with_children);
        Usage {
            cpu_ms: cpu - self.cpu_at_start,
            max_rss_kb: rss,
        }
    }
}

/// (CPU ms, peak RSS KiB) of this process, plus its waited-for children if asked.
fn rusage(with_children: bool) -> (i64, i64) {
    let own = getrusage(libc::RUSAGE_SELF);
    if !with_children {
        return own;
    }
    let children = getrusage(libc::RUSAGE_CHILDREN);
    (own.0 + children.0, own.1.max(children.1))
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

/// User + system time of a rusage, ms.
pub fn cpu_ms_of(usage: &libc::rusage) -> i64 {
    let ms = |t: libc::timeval| t.tv_sec * 1000 + t.tv_usec / 1000;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}
