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

/// The job and group files of one batch system's work directory.
pub struct GroupFiles {
    system: &'static str,
    root: PathBuf,
    job_run: Vec<String>,
    /// Groups by the batch system's id, as far as known.
    known: Mutex<HashMap<String, Group>>,
}

impl GroupFiles {
    /// Opens (creating) `work_dir` for `system`, whose nodes run jobs with `job_run`.
    pub fn open(
        system: &'static str,
        work_dir: &Path,
        job_run: Vec<String>,
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
    pub fn new_group_name(first: &JobKey) -> String {
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

    /// Splits `jobs` into those already submitted (with their ids) and the rest.
    pub fn split_recorded<'j>(
        &self,
        jobs: &'j [JobLaunch],
    ) -> (Vec<Submitted>, Vec<&'j JobLaunch>) {
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
        (done, new)
    }

    /// The group `key` was (being) submitted in, if any.
    pub fn group_of(&self, key: &JobKey) -> Option<String> {
        let text = fs::read_to_string(self.job_dir(&key.name()).join("group")).ok()?;
        Some(text.trim().to_string()).filter(|g| !g.is_empty())
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
        self.write(&dir.join("run.sh"), self.script(&dir, index).as_bytes())?;
        Ok(dir)
    }

    /// The group's script: index i runs the job on line i+1 of `tasks` under `job-run`.
    fn script(&self, group_dir: &Path, index: &str) -> String {
        let job_run: Vec<String> = self.job_run.iter().map(|a| quote(a)).collect();
        format!(
            "#!/bin/sh\n# prodops: index i runs the job on line i+1 of tasks\nexport PATH=/usr/local/bin:/usr/bin:/bin\nname=$(sed -n \"$(({index} + 1))p\" {tasks})\nexec {job_run} --spec {root}/\"$name\"/{spec}\n",
            tasks = quote(&group_dir.join("tasks").display().to_string()),
            job_run = job_run.join(" "),
            root = quote(&self.root.display().to_string()),
            spec = files::SPEC,
        )
    }

    /// Records the batch system's id of group `group` and each job's batch
    /// id (`ids` in the order of the group's jobs).
    pub fn record(
        &self,
        group: &str,
        group_id: &str,
        ids: &[BatchJobId],
    ) -> Result<(), BatchError> {
        let names = self.names(group)?;
        let dir = self.group_dir(group);
        self.write(&dir.join("group_id"), group_id.as_bytes())?;
        for (name, id) in names.iter().zip(ids) {
            self.write(&self.job_dir(name).join("batch_id"), id.0.as_bytes())?;
        }
        self.known_groups()
            .insert(group_id.to_string(), Group { dir, names });
        Ok(())
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
        let job_dir = self.job_dir(name);
        Ok(LogBundle {
            stdout: read_tail(self.system, out)?,
            stderr: read_tail(self.system, err)?,
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

/// A word for `/bin/sh`, single-quoted.
pub fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
