//! The job side (M10): one job attempt run as named stages.
//!
//! `stage-in` (copy the inputs into `in/`), `unpack` (the tarball, if any),
//! `run` (the script) and `copy-out` (move what the script left in `out/` to
//! the output directory) are measured for wall, CPU and peak RSS; a script
//! opens stages of its own by printing `PRODOPS_STAGE <name>` and reports
//! events with `PRODOPS_EVENTS <n>` (see `docs/cli.md`).
//!
//! Two callers share [`run_job`]: `prodops job-run` on a batch node, which
//! reads `job.json` and writes `stages.jsonl` and `result.json` beside it
//! ([`main`]), and the local executor, which runs jobs in threads of its own
//! process and records them in its event log ([`crate::batch::local`]).
//!
//! `job-run`'s exit status: 0 when every stage succeeded; the script's exit
//! code when it failed; 128 + signal when it was killed (137 for memory or
//! wall time); 1 when one of our own stages failed; 2 when `job.json` is
//! unreadable.

pub mod measure;
mod script;
pub mod stages;

use crate::clock::now_ms;
use crate::model::jobspec::{files, JobResult, JobRunSpec, OutputFile, ShippedScript};
use script::{Places, ScriptOutcome};
use stages::{StageLog, ThreadMeter, Usage};
use std::fs;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};

/// Exit status when one of the runner's own stages failed.
const EXIT_STAGE_FAILED: i32 = 1;
/// Exit status when the spec cannot be read.
const EXIT_BAD_SPEC: i32 = 2;

/// An output stream several threads write to (the script's relays and the runner's notes).
pub type SharedOut = Arc<Mutex<dyn Write + Send>>;

/// Where one job's records and output go while it runs.
pub struct JobIo {
    /// Stage events, as they happen.
    pub stages: StageLog,
    /// The script's standard output (marker lines included).
    pub stdout: SharedOut,
    /// The script's standard error and the runner's own notes; `None`: this
    /// process's standard error, which the script then inherits.
    pub stderr: Option<SharedOut>,
    /// Called with the script's pid right after it starts; the script then
    /// leads a process group of its own (the local executor signals it).
    /// Without it the script stays in the runner's group, which a batch
    /// system signals as a whole.
    pub on_start: Option<Box<dyn FnOnce(i32) + Send>>,
}

impl JobIo {
    /// Writes one of the runner's own notes (`job-run: …`) where the job's errors go.
    pub fn note(&self, message: &str) {
        match &self.stderr {
            Some(out) => {
                let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
                let _ = writeln!(out, "job-run: {message}");
            }
            None => eprintln!("job-run: {message}"),
        }
    }
}

/// `prodops job-run`: runs the job described by `spec_path` with its records
/// beside it and returns the process exit code.
pub fn main(spec_path: &Path) -> i32 {
    let work = work_dir_of(spec_path);
    let io = JobIo {
        stages: StageLog::file(&work.join(files::STAGES)),
        stdout: Arc::new(Mutex::new(std::io::stdout())),
        stderr: None,
        on_start: None,
    };
    let (result, code) = match read_spec(spec_path) {
        Ok(spec) => run_job(&spec, &work, io),
        Err(e) => {
            io.note(&e);
            let mut result = JobResult::starting(crate::host::hostname());
            result.failed_stage = Some("setup".into());
            result.end_ms = now_ms();
            (result, EXIT_BAD_SPEC)
        }
    };
    if let Err(e) = write_result(&work, &result) {
        eprintln!("job-run: cannot write {}: {e}", files::RESULT);
        return EXIT_STAGE_FAILED.max(code);
    }
    code
}

/// The directory holding `job.json`: where the job works and leaves its records.
fn work_dir_of(spec_path: &Path) -> PathBuf {
    match spec_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_spec(path: &Path) -> Result<JobRunSpec, String> {
    let text = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a valid job spec: {e}", path.display()))
}

/// Runs one job attempt in `work` (which must exist): the stages in order,
/// stopping at the first that fails. Returns how it ended and the exit
/// status `job-run` gives for it.
pub fn run_job(spec: &JobRunSpec, work: &Path, mut io: JobIo) -> (JobResult, i32) {
    let mut result = JobResult::starting(crate::host::hostname());
    let code = run_stages(spec, work, &mut io, &mut result);
    result.end_ms = now_ms();
    (result, code)
}

fn run_stages(spec: &JobRunSpec, work: &Path, io: &mut JobIo, result: &mut JobResult) -> i32 {
    let inputs = match measured(io, "stage-in", |_| stage_in(spec, work)) {
        Ok(inputs) => inputs,
        Err(()) => return stage_failed(result, "stage-in"),
    };
    let approved = match measured(io, "unpack", |children| unpack(spec, work, children)) {
        Ok(approved) => approved,
        Err(()) => return stage_failed(result, "unpack"),
    };
    let shipped;
    let spec = match approved {
        Some(path) => {
            let mut run = spec.clone();
            run.env
                .insert("PRODOPS_SCRIPT_SOURCE".into(), spec.executable.clone());
            run.executable = path.display().to_string();
            shipped = run;
            &shipped
        }
        None => spec,
    };
    let out = work.join("out");
    if let Err(e) = fs::create_dir_all(&out) {
        io.note(&format!("cannot create {}: {e}", out.display()));
        return stage_failed(result, "run");
    }
    let places = Places {
        work,
        inputs: &inputs,
        out: &out,
    };
    let outcome = script::run(spec, &places, io);
    let code = exit_status_of(&outcome);
    copy_outcome(&outcome, result);
    if !outcome.ok() {
        return code;
    }
    match measured(io, "copy-out", |_| {
        copy_out(&out, Path::new(&spec.output_dir))
    }) {
        Ok(outputs) => {
            result.outputs = outputs;
            0
        }
        Err(()) => stage_failed(result, "copy-out"),
    }
}

/// Runs one of our own stages between a start and an end record; `body`
/// adds the resources of helper commands it waited for.
fn measured<T>(
    io: &mut JobIo,
    name: &str,
    body: impl FnOnce(&mut Usage) -> Result<T, String>,
) -> Result<T, ()> {
    let stage = io.stages.start(name);
    let meter = ThreadMeter::start();
    let mut helpers = Usage::default();
    let outcome = body(&mut helpers);
    io.stages
        .end(stage, meter.usage().plus(helpers), outcome.is_ok());
    outcome.map_err(|e| io.note(&format!("{name} failed: {e}")))
}

fn stage_failed(result: &mut JobResult, stage: &str) -> i32 {
    result.failed_stage = Some(stage.to_string());
    EXIT_STAGE_FAILED
}

fn copy_outcome(outcome: &ScriptOutcome, result: &mut JobResult) {
    result.exit_code = outcome.exit_code;
    result.signal = outcome.signal;
    result.oom = outcome.oom;
    result.timed_out = outcome.timed_out;
    result.events = outcome.events;
    result.failed_stage = outcome.failed_stage.clone();
}

/// Our exit status for how the script ended (see the module doc).
fn exit_status_of(outcome: &ScriptOutcome) -> i32 {
    match (outcome.exit_code, outcome.signal) {
        _ if outcome.ok() => 0,
        (_, Some(signal)) => 128 + signal as i32,
        (Some(code), None) if code != 0 => code as i32,
        _ => 128 + libc::SIGKILL,
    }
}

/// `stage-in`: copies every input into `in/` (made only when there are
/// inputs); names that collide get their index prefixed.
fn stage_in(spec: &JobRunSpec, work: &Path) -> Result<Vec<PathBuf>, String> {
    if spec.inputs.is_empty() {
        return Ok(Vec::new());
    }
    let dir = work.join("in");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut staged = Vec::with_capacity(spec.inputs.len());
    for (i, input) in spec.inputs.iter().enumerate() {
        let source = Path::new(input);
        let name = source
            .file_name()
            .ok_or_else(|| format!("input {input:?} names no file"))?;
        let mut target = dir.join(name);
        if target.exists() {
            target = dir.join(format!("{i}_{}", name.to_string_lossy()));
        }
        fs::copy(source, &target).map_err(|e| format!("cannot copy {input}: {e}"))?;
        staged.push(target);
    }
    Ok(staged)
}

/// `unpack`: extracts the tarball into the working directory, when there is
/// one, adding what `tar` used to `helpers`, and writes the approved copy of
/// the script there, when one was shipped; returns where that copy is.
fn unpack(spec: &JobRunSpec, work: &Path, helpers: &mut Usage) -> Result<Option<PathBuf>, String> {
    if let Some(tarball) = &spec.tarball {
        untar(tarball, work, helpers)?;
    }
    spec.script
        .as_ref()
        .map(|script| place_script(script, &spec.executable, work))
        .transpose()
}

/// Writes the shipped script, checked against its hash, as
/// `.prodops-approved/<its file name>` in `work`: executable when it starts
/// with `#!` or is an ELF program, else run through `/bin/sh` as a
/// non-executable script is.
fn place_script(script: &ShippedScript, source: &str, work: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let content = script.content()?;
    let dir = work.join(".prodops-approved");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = Path::new(source)
        .file_name()
        .map_or_else(|| "script".into(), |n| n.to_os_string());
    let path = dir.join(name);
    fs::write(&path, &content).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let runs_itself = content.starts_with(b"#!") || content.starts_with(b"\x7fELF");
    let mode = if runs_itself { 0o755 } else { 0o644 };
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    Ok(path)
}

/// Extracts `tarball` into `work`, adding what `tar` used to `helpers`.
fn untar(tarball: &str, work: &Path, helpers: &mut Usage) -> Result<(), String> {
    let child = Command::new("tar")
        .arg("-xf")
        .arg(tarball)
        .arg("-C")
        .arg(work)
        .spawn()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    let (status, usage) =
        stages::wait_measured(child.id() as i32).map_err(|e| format!("waiting for tar: {e}"))?;
    *helpers = helpers.plus(usage);
    let status = std::process::ExitStatus::from_raw(status);
    if status.success() {
        Ok(())
    } else {
        Err(format!("tar -xf {tarball} ended with {status}"))
    }
}

/// `copy-out`: moves every file in `out/` to `target` (made only when there
/// is something to move), listing them by name.
fn copy_out(out: &Path, target: &Path) -> Result<Vec<OutputFile>, String> {
    let mut names: Vec<_> = fs::read_dir(out)
        .map_err(|e| format!("cannot list {}: {e}", out.display()))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .map(|entry| entry.file_name())
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    names.sort();
    fs::create_dir_all(target).map_err(|e| format!("cannot create {}: {e}", target.display()))?;
    names
        .into_iter()
        .map(|name| {
            let (from, to) = (out.join(&name), target.join(&name));
            move_file(&from, &to)
                .map_err(|e| format!("cannot move {} to {}: {e}", from.display(), to.display()))?;
            let size = fs::metadata(&to)
                .map_err(|e| format!("cannot stat {}: {e}", to.display()))?
                .len();
            Ok(OutputFile {
                name: name.to_string_lossy().into_owned(),
                path: to.display().to_string(),
                size: size as i64,
            })
        })
        .collect()
}

/// Renames, or copies and removes when the target is on another file system.
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if fs::rename(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to)?;
    fs::remove_file(from)
}

/// Writes `result.json` through a temporary file so a reader never sees half of it.
fn write_result(work: &Path, result: &JobResult) -> std::io::Result<()> {
    let tmp = work.join(format!("{}.tmp", files::RESULT));
    fs::write(
        &tmp,
        serde_json::to_vec_pretty(result).expect("a job result serialises"),
    )?;
    fs::rename(&tmp, work.join(files::RESULT))
}
