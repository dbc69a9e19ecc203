//! The files of jobs submitted in groups (a Slurm array, an HTCondor
//! cluster) to a batch system whose nodes share a work directory:
//!
//! | path | written | what |
//! |------|---------|------|
//! | `<job>/job.json` | before submitting | the job's spec; `job-run` writes `stages.jsonl`, `result.json` beside it |
//! | `<job>/group` | before submitting | the group it is submitted in |
//! | `groups/<group>/tasks`, `run.sh` | before submitting | job names by index in the group; the script that runs index i |
//! | `groups/<group>/group_id` | after submitting | the batch system's id of the group |
//! | `<job>/batch_id` | after submitting | the job's batch id: its submission is done |
//!
//! How a job finds its spec and returns its records depends on [`Carry`]:
//! on a cluster whose nodes share the work directory (Slurm) the script
//! reads `<job>/job.json` and `job-run` writes its records beside it; on a
//! pool that transfers files (HTCondor, jobsub) the script carries every
//! job's spec in itself and prints the records after the job's output,
//! below a [`RECORDS_MARK`] line, so they come back with standard output.
//!
//! A group's name is its first job's name and a random part, written before
//! the batch system is asked: a worker killed between the submission and
//! the ids being written finds the group again by that name (the random
//! part keeps an older group that started with the same job from being
//! mistaken for it).

use super::logs::{io_error, read_optional, read_tail};
use super::{BatchError, BatchJobId, JobKey, JobLaunch, LogBundle, Submitted};
use crate::model::jobspec::files;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// One submitted group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Its directory.
    pub dir: PathBuf,
    /// Its jobs' names, by index.
    pub names: Vec<String>,
}

/// How a job gets its spec and gives back its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// Through the work directory, which the nodes see at the same path.
    SharedDir,
    /// In the group's script (specs) and on standard output (records).
    InScript,
}

/// The line after a job's own output above its records (`InScript`); each
/// record file follows a line `RECORDS_MARK <file name>`.
pub const RECORDS_MARK: &str = "==> prodops records:";

/// Jobs not yet submitted, under the name of the group they will go out as.
pub struct NewGroup<'j> {
    /// The group's name (its directory, and its name in the batch system).
    pub name: String,
    /// Its jobs, in submission order.
    pub jobs: Vec<&'j JobLaunch>,
}

/// The job and group files of one batch system's work directory.
pub struct GroupFiles {
    system: &'static str,
    root: PathBuf,
    job_run: Vec<String>,
    carry: Carry,
    /// Groups by the batch system's id, as far as known.
    known: Mutex<HashMap<String, Group>>,
}

impl GroupFiles {
    /// Opens (creating) `work_dir` for `system`, whose nodes run jobs with
    /// `job_run` and get their specs as `carry` says.
    pub fn open(
        system: &'static str,
        work_dir: &Path,
        job_run: Vec<String>,
        carry: Carry,
    ) -> Result<GroupFiles, BatchError> {
        if job_run.is_empty() {
            return Err(BatchError::Failed {
                system: system.into(),
                message: "needs a job-run command".into(),
            });
        }
        let groups = work_dir.join("groups");
        fs::create_dir_all(&groups).map_err(|e| io_error(system, &groups, e))?;
        let root = fs::canonicalize(work_dir).map_err(|e| io_error(system, work_dir, e))?;
        Ok(GroupFiles {
            system,
            root,
            job_run,
            carry,
            known: Mutex::new(HashMap::new()),
        })
    }

    /// The work directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Job `name`'s directory.
    pub fn job_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Group `group`'s directory.
    pub fn group_dir(&self, group: &str) -> PathBuf {
        self.root.join("groups").join(group)
    }

    /// A new group's name, from its first job.
    fn new_group_name(first: &JobKey) -> String {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.write_u128(nanos);
        format!("{}-{:08x}", first.name(), h.finish() as u32)
    }

    /// The batch id recorded for `key`, if its submission completed.
    pub fn recorded(&self, key: &JobKey) -> Option<BatchJobId> {
        let text = fs::read_to_string(self.job_dir(&key.name()).join("batch_id")).ok()?;
        Some(BatchJobId(text.trim().to_string())).filter(|id| !id.0.is_empty())
    }

    /// Splits `jobs` into those already submitted (with their ids) and the
    /// rest, as a new group to submit (`None` when nothing is left).
    pub fn split_recorded<'j>(
        &self,
        jobs: &'j [JobLaunch],
    ) -> (Vec<Submitted>, Option<NewGroup<'j>>) {
        let mut done = Vec::new();
        let mut new = Vec::new();
        for job in jobs {
            match self.recorded(&job.key) {
                Some(batch_id) => done.push(Submitted {
                    key: job.key,
                    batch_id,
                }),
                None => new.push(job),
            }
        }
        let new = (!new.is_empty()).then(|| NewGroup {
            name: Self::new_group_name(&new[0].key),
            jobs: new,
        });
        (done, new)
    }

    /// The group `key` was (being) submitted in, if any.
    pub fn group_of(&self, key: &JobKey) -> Option<String> {
        let text = fs::read_to_string(self.job_dir(&key.name()).join("group")).ok()?;
        Some(text.trim().to_string()).filter(|g| !g.is_empty())
    }

    /// Finds the jobs of `keys` (adoption after a crash): those recorded at
    /// once; for the others, `adopt(group)` asks the batch system for their
    /// group by its name and records it if found.
    pub async fn find<F, Fut>(
        &self,
        keys: &[JobKey],
        mut adopt: F,
    ) -> Result<Vec<Submitted>, BatchError>
    where
        F: FnMut(String) -> Fut,
        Fut: std::future::Future<Output = Result<(), BatchError>>,
    {
        let mut found = Vec::new();
        for key in keys {
            if self.recorded(key).is_none() {
                let Some(group) = self.group_of(key) else {
                    continue;
                };
                adopt(group).await?;
            }
            if let Some(batch_id) = self.recorded(key) {
                found.push(Submitted {
                    key: *key,
                    batch_id,
                });
            }
        }
        Ok(found)
    }

    /// The names of group `group`'s jobs, by index.
    pub fn names(&self, group: &str) -> Result<Vec<String>, BatchError> {
        let path = self.group_dir(group).join("tasks");
        Ok(fs::read_to_string(&path)
            .map_err(|e| io_error(self.system, &path, e))?
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// Writes the jobs' specs and the group's task list and script; the
    /// script finds its job's index in `index` (a shell variable name or
    /// positional parameter, read in shell arithmetic).
    pub fn prepare(
        &self,
        group: &str,
        jobs: &[&JobLaunch],
        index: &str,
    ) -> Result<PathBuf, BatchError> {
        let dir = self.group_dir(group);
        fs::create_dir_all(&dir).map_err(|e| io_error(self.system, &dir, e))?;
        for job in jobs {
            let job_dir = self.job_dir(&job.key.name());
            fs::create_dir_all(&job_dir).map_err(|e| io_error(self.system, &job_dir, e))?;
            let spec = serde_json::to_vec_pretty(&job.spec).map_err(|e| BatchError::Failed {
                system: self.system.into(),
                message: e.to_string(),
            })?;
            self.write(&job_dir.join(files::SPEC), &spec)?;
            self.write(&job_dir.join("group"), group.as_bytes())?;
        }
        let names: Vec<String> = jobs.iter().map(|j| j.key.name()).collect();
        self.write(
            &dir.join("tasks"),
            format!("{}\n", names.join("\n")).as_bytes(),
        )?;
        let script = match self.carry {
            Carry::SharedDir => self.shared_script(&dir, index),
            Carry::InScript => self.carrying_script(jobs, index)?,
        };
        self.write(&dir.join("run.sh"), script.as_bytes())?;
        set_executable(&dir.join("run.sh")).map_err(|e| io_error(self.system, &dir, e))?;
        Ok(dir)
    }

    /// `job-run` as shell words.
    fn job_run_words(&self) -> String {
        let words: Vec<String> = self.job_run.iter().map(|a| quote(a)).collect();
        words.join(" ")
    }

    /// A script for nodes sharing the work directory: index i runs the job
    /// on line i+1 of `tasks` under `job-run`.
    fn shared_script(&self, group_dir: &Path, index: &str) -> String {
        format!(
            "#!/bin/sh\n# prodops: index i runs the job on line i+1 of tasks\nexport PATH=/usr/local/bin:/usr/bin:/bin\nname=$(sed -n \"$(({index} + 1))p\" {tasks})\nexec {job_run} --spec {root}/\"$name\"/{spec}\n",
            tasks = quote(&group_dir.join("tasks").display().to_string()),
            job_run = self.job_run_words(),
            root = quote(&self.root.display().to_string()),
            spec = files::SPEC,
        )
    }

    /// A script carrying the jobs' specs: index i writes spec i into a
    /// directory of its own, runs it under `job-run` and prints the
    /// records below the mark, ending with the job's exit status.
    fn carrying_script(&self, jobs: &[&JobLaunch], index: &str) -> Result<String, BatchError> {
        let mut cases = String::new();
        for (i, job) in jobs.iter().enumerate() {
            let spec = serde_json::to_string(&job.spec).map_err(|e| BatchError::Failed {
                system: self.system.into(),
                message: e.to_string(),
            })?;
            cases.push_str(&format!(
                "{i}) cat > {file} <<'PRODOPS_SPEC'\n{spec}\nPRODOPS_SPEC\n;;\n",
                file = files::SPEC
            ));
        }
        Ok(format!(
            "#!/bin/sh\n# prodops: index i runs job i, whose spec is below; its records follow its output\nexport PATH=/usr/local/bin:/usr/bin:/bin\nmkdir -p prodops-job && cd prodops-job || exit 1\ncase $(({index})) in\n{cases}*) echo \"prodops: no job at index $(({index}))\" >&2; exit 2;;\nesac\n{job_run} --spec \"$PWD/{spec}\"\nstatus=$?\nfor f in {stages} {result}; do\n  [ -f \"$f\" ] && {{ printf '\\n%s %s\\n' '{mark}' \"$f\"; cat \"$f\"; }}\ndone\nexit $status\n",
            job_run = self.job_run_words(),
            spec = files::SPEC,
            stages = files::STAGES,
            result = files::RESULT,
            mark = RECORDS_MARK,
        ))
    }

    /// Records the batch system's id of group `group` and each job's batch
    /// id (`ids` in the order of the group's jobs); returns the jobs as submitted.
    pub fn record(
        &self,
        group: &str,
        group_id: &str,
        ids: &[BatchJobId],
    ) -> Result<Vec<Submitted>, BatchError> {
        let names = self.names(group)?;
        let dir = self.group_dir(group);
        self.write(&dir.join("group_id"), group_id.as_bytes())?;
        for (name, id) in names.iter().zip(ids) {
            self.write(&self.job_dir(name).join("batch_id"), id.0.as_bytes())?;
        }
        let submitted = names
            .iter()
            .zip(ids)
            .filter_map(|(name, id)| {
                Some(Submitted {
                    key: JobKey::parse_name(name)?,
                    batch_id: id.clone(),
                })
            })
            .collect();
        self.known_groups()
            .insert(group_id.to_string(), Group { dir, names });
        Ok(submitted)
    }

    /// Submits `jobs` through an experiment's launch script, its outputs
    /// kept under `launched/` (see [`super::launch`]).
    pub async fn launch(
        &self,
        launch: &crate::model::spec::Launch,
        default_pattern: &str,
        jobs: &[JobLaunch],
    ) -> Result<Vec<Submitted>, BatchError> {
        let journal = self.root.join("launched");
        super::launch::submit(self.system, &journal, launch, default_pattern, jobs).await
    }

    /// The group the batch system calls `group_id`, reading the work
    /// directory when it is not known yet.
    pub fn by_id(&self, group_id: &str) -> Option<Group> {
        if let Some(group) = self.known_groups().get(group_id) {
            return Some(group.clone());
        }
        let dirs = fs::read_dir(self.root.join("groups")).ok()?;
        for dir in dirs.filter_map(|e| e.ok()).map(|e| e.path()) {
            let recorded = fs::read_to_string(dir.join("group_id")).ok();
            if recorded.as_deref().map(str::trim) == Some(group_id) {
                let names: Vec<String> = fs::read_to_string(dir.join("tasks"))
                    .ok()?
                    .lines()
                    .map(str::to_string)
                    .collect();
                let group = Group { dir, names };
                self.known_groups()
                    .insert(group_id.to_string(), group.clone());
                return Some(group);
            }
        }
        None
    }

    /// Job `name`'s logs (its output files `out`, `err`) and records.
    pub fn bundle(&self, name: &str, out: &Path, err: &Path) -> Result<LogBundle, BatchError> {
        let stdout = read_tail(self.system, out)?;
        let stderr = read_tail(self.system, err)?;
        if self.carry == Carry::InScript {
            return Ok(split_records(stdout, stderr));
        }
        let job_dir = self.job_dir(name);
        Ok(LogBundle {
            stdout,
            stderr,
            stages: read_optional(self.system, &job_dir.join(files::STAGES))?.unwrap_or_default(),
            result: read_optional(self.system, &job_dir.join(files::RESULT))?,
        })
    }

    fn known_groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes a file whole (through a temporary and a rename).
    fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), BatchError> {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, bytes).map_err(|e| io_error(self.system, &tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io_error(self.system, path, e))
    }
}

/// This binary's `job-run`, the default command that runs a job on a node
/// (the node must see this binary at the same path).
pub fn this_job_run() -> Vec<String> {
    let exe = std::env::current_exe()
        .map(|p| installed_path(&p.to_string_lossy()).to_string())
        .unwrap_or_else(|_| "prodops".into());
    vec![exe, "job-run".into()]
}

/// The path a binary was started from, even after it was replaced there
/// (an upgrade in place): Linux then names the running, unlinked file
/// `<path> (deleted)`, and jobs must run what is installed at `<path>` now.
fn installed_path(exe: &str) -> &str {
    exe.strip_suffix(" (deleted)").unwrap_or(exe)
}

/// Splits the output of a carrying script into the job's own output and
/// its records (from the last mark line: the job's own output, even one
/// that prints a mark, comes before them).
pub fn split_records(stdout: String, stderr: String) -> LogBundle {
    let mark = |file: &str| format!("\n{RECORDS_MARK} {file}\n");
    let (stages_mark, result_mark) = (mark(files::STAGES), mark(files::RESULT));
    let start = stdout
        .rfind(&stages_mark)
        .or_else(|| stdout.rfind(&result_mark));
    let Some(start) = start else {
        return LogBundle {
            stdout,
            stderr,
            ..LogBundle::default()
        };
    };
    let records = &stdout[start..];
    let (stages, result) = match records.rfind(&result_mark) {
        Some(at) => (&records[..at], Some(&records[at + result_mark.len()..])),
        None => (records, None),
    };
    LogBundle {
        stages: stages.strip_prefix(&stages_mark).unwrap_or("").to_string(),
        result: result.map(str::to_string),
        stdout: stdout[..start].to_string(),
        stderr,
    }
}

/// Makes a script executable by its owner and group.
fn set_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// A word for `/bin/sh`, single-quoted.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_the_binary_installed_at_the_path_even_after_an_upgrade_in_place() {
        assert_eq!(
            installed_path("/opt/prodops/bin/prodops (deleted)"),
            "/opt/prodops/bin/prodops"
        );
        assert_eq!(
            installed_path("/opt/prodops/bin/prodops"),
            "/opt/prodops/bin/prodops"
        );
    }

    #[test]
    fn records_are_split_from_the_output_even_when_the_job_prints_the_mark() {
        let out = format!(
            "hello\n{RECORDS_MARK} stages.jsonl\nfake\n\n{RECORDS_MARK} stages.jsonl\n{{\"a\":1}}\n\n{RECORDS_MARK} result.json\n{{\"ok\":true}}\n"
        );
        let bundle = split_records(out, "err".into());
        assert_eq!(
            bundle.stdout,
            format!("hello\n{RECORDS_MARK} stages.jsonl\nfake\n")
        );
        assert_eq!(bundle.stages, "{\"a\":1}\n");
        assert_eq!(bundle.result.as_deref(), Some("{\"ok\":true}\n"));
        assert_eq!(bundle.stderr, "err");
        let killed = split_records("partial output".into(), String::new());
        assert_eq!(
            (
                killed.stdout.as_str(),
                killed.stages.as_str(),
                killed.result
            ),
            ("partial output", "", None)
        );
        let no_stages = split_records(
            format!("x\n{RECORDS_MARK} result.json\n{{}}"),
            String::new(),
        );
        assert_eq!(
            (no_stages.stdout.as_str(), no_stages.result.as_deref()),
            ("x", Some("{}"))
        );
    }

    #[test]
    fn shell_words_are_quoted_whole() {
        assert_eq!(quote("/a b/it's"), r"'/a b/it'\''s'");
    }

    #[test]
    fn group_names_start_with_the_first_job_and_differ_each_time() {
        let key = JobKey {
            job: crate::model::ids::JobId(4),
            attempt: 2,
        };
        let (a, b) = (
            GroupFiles::new_group_name(&key),
            GroupFiles::new_group_name(&key),
        );
        assert!(a.starts_with("prodops-j4-a2-") && a.len() == "prodops-j4-a2-".len() + 8);
        assert_ne!(a, b);
    }
}
