//! Slurm (X10): a job group is one `sbatch --array`, each array task runs one
//! of our jobs under `prodops job-run`; states come from `squeue --json`,
//! then `sacct --json` for jobs squeue no longer shows (trusting the state,
//! not sacct's exit code); `scancel`, `scontrol hold|release|suspend|resume`.
//!
//! Files, in a work directory the batch nodes share:
//!
//! | path | written | what |
//! |------|---------|------|
//! | `<job>/job.json` | before sbatch | the job's spec; `job-run` writes `stages.jsonl`, `result.json` beside it |
//! | `<job>/group` | before sbatch | the group it is submitted in |
//! | `groups/<group>/tasks`, `run.sh` | before sbatch | job names by array index; the array's script |
//! | `groups/<group>/array_id` | after sbatch | Slurm's id of the array |
//! | `<job>/batch_id` | after sbatch | `<array>_<index>`: the submission is done |
//! | `groups/<group>/<array>_<index>.out`, `.err` | by Slurm | the job's output |
//!
//! A worker killed between `sbatch` and the ids being written finds the
//! array again by its group name (unique: it carries a random part) in
//! `squeue`/`sacct`, so a job is never submitted twice.

pub mod parse;

use super::command::{run, run_ok};
use super::logs::{read_optional, read_tail};
use super::{
    BatchError, BatchJobId, BatchSystem, JobGroup, JobKey, JobLaunch, LogBundle, Observed,
    ObservedState, Submitted,
};
use crate::model::jobspec::files;
use async_trait::async_trait;
use parse::{parse_jobs, parse_sbatch, SlurmTask};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// The batch system's name.
const SYSTEM: &str = "slurm";
/// Longest wait for one Slurm command.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// How prodops uses a Slurm cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmConfig {
    /// A directory the batch nodes see at the same path (job specs, records, output).
    pub work_dir: PathBuf,
    /// The partition when a stage names no sites.
    pub partition: Option<String>,
    /// At most this many tasks of one array at once (`--array=…%N`).
    pub array_limit: Option<usize>,
    /// How often states are asked for when nothing else wakes the worker.
    pub poll_interval: Duration,
    /// The command that runs one job on a node; `--spec <job.json>` is added.
    pub job_run: Vec<String>,
    /// The site jobs are recorded at (M9).
    pub site: String,
}

impl SlurmConfig {
    /// Defaults for a cluster sharing `work_dir`: this binary's `job-run`,
    /// the default partition, states every 5 seconds.
    pub fn new(work_dir: PathBuf) -> SlurmConfig {
        let exe = std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "prodops".into());
        SlurmConfig {
            work_dir,
            partition: None,
            array_limit: None,
            poll_interval: Duration::from_secs(5),
            job_run: vec![exe, "job-run".into()],
            site: SYSTEM.into(),
        }
    }
}

/// A Slurm cluster driven through its commands.
pub struct SlurmBatch {
    config: SlurmConfig,
    /// Groups by array id, as far as known.
    groups: Mutex<HashMap<u64, Group>>,
}

/// One submitted array.
#[derive(Debug, Clone)]
struct Group {
    dir: PathBuf,
    names: Vec<String>,
}

impl SlurmBatch {
    /// A backend on `config.work_dir` (created if needed).
    pub fn open(config: SlurmConfig) -> Result<SlurmBatch, BatchError> {
        if config.job_run.is_empty() {
            return Err(failed("needs a job-run command"));
        }
        fs::create_dir_all(config.work_dir.join("groups"))
            .map_err(|e| io_error(&config.work_dir, e))?;
        let work_dir =
            fs::canonicalize(&config.work_dir).map_err(|e| io_error(&config.work_dir, e))?;
        Ok(SlurmBatch {
            config: SlurmConfig { work_dir, ..config },
            groups: Mutex::new(HashMap::new()),
        })
    }

    fn root(&self) -> &Path {
        &self.config.work_dir
    }

    fn job_dir(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    fn group_dir(&self, group: &str) -> PathBuf {
        self.root().join("groups").join(group)
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Group>> {
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The batch id recorded for `key`, if its submission completed.
    fn recorded(&self, key: &JobKey) -> Option<BatchJobId> {
        let text = fs::read_to_string(self.job_dir(&key.name()).join("batch_id")).ok()?;
        Some(BatchJobId(text.trim().to_string())).filter(|id| parse_id(&id.0).is_some())
    }

    /// Writes the jobs' specs and the group's task list and script.
    fn prepare(&self, group: &str, jobs: &[&JobLaunch]) -> Result<PathBuf, BatchError> {
        let dir = self.group_dir(group);
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        for job in jobs {
            let job_dir = self.job_dir(&job.key.name());
            fs::create_dir_all(&job_dir).map_err(|e| io_error(&job_dir, e))?;
            let spec = serde_json::to_vec_pretty(&job.spec).map_err(|e| failed(&e.to_string()))?;
            write(&job_dir.join(files::SPEC), &spec)?;
            write(&job_dir.join("group"), group.as_bytes())?;
        }
        let names: Vec<String> = jobs.iter().map(|j| j.key.name()).collect();
        write(
            &dir.join("tasks"),
            format!("{}\n", names.join("\n")).as_bytes(),
        )?;
        write(&dir.join("run.sh"), self.script(&dir).as_bytes())?;
        Ok(dir)
    }

    /// The array's script: task i runs job i of `tasks` under `job-run`.
    fn script(&self, group_dir: &Path) -> String {
        let job_run: Vec<String> = self.config.job_run.iter().map(|a| quote(a)).collect();
        format!(
            "#!/bin/sh\n# prodops: array task i runs the job on line i+1 of tasks\nexport PATH=/usr/local/bin:/usr/bin:/bin\nname=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {tasks})\nexec {job_run} --spec {root}/\"$name\"/{spec}\n",
            tasks = quote(&group_dir.join("tasks").display().to_string()),
            job_run = job_run.join(" "),
            root = quote(&self.root().display().to_string()),
            spec = files::SPEC,
        )
    }

    /// The `sbatch` arguments for `jobs` of group `group` in `dir`.
    fn sbatch_args(&self, group: &str, dir: &Path, jobs: &[&JobLaunch]) -> Vec<String> {
        let first = jobs[0];
        let limit = self
            .config
            .array_limit
            .map(|n| format!("%{n}"))
            .unwrap_or_default();
        let minutes = ((first.resources.wall_hours * 60.0).ceil() as i64).max(1);
        let mut args = vec![
            "--parsable".to_string(),
            format!("--array=0-{}{limit}", jobs.len() - 1),
            format!("--job-name={group}"),
            format!("--output={}/%A_%a.out", dir.display()),
            format!("--error={}/%A_%a.err", dir.display()),
            format!("--mem={}M", first.resources.memory_mb.max(1)),
            format!("--time={minutes}"),
            format!("--cpus-per-task={}", first.resources.cpus.max(1)),
            format!("--chdir={}", dir.display()),
            "--export=NONE".to_string(),
        ];
        let partitions = if first.sites.include.is_empty() {
            self.config.partition.clone()
        } else {
            Some(first.sites.include.join(","))
        };
        if let Some(partition) = partitions {
            args.push(format!("--partition={partition}"));
        }
        args.push(dir.join("run.sh").display().to_string());
        args
    }

    /// Records the array id of a group and each job's batch id.
    fn record(&self, group: &str, array: u64, names: &[String]) -> Result<(), BatchError> {
        let dir = self.group_dir(group);
        write(&dir.join("array_id"), array.to_string().as_bytes())?;
        for (i, name) in names.iter().enumerate() {
            write(
                &self.job_dir(name).join("batch_id"),
                format!("{array}_{i}").as_bytes(),
            )?;
        }
        self.groups().insert(
            array,
            Group {
                dir,
                names: names.to_vec(),
            },
        );
        Ok(())
    }

    /// Slurm's tasks of the arrays `arrays`: `squeue` first, `sacct` for the rest.
    async fn tasks_of(&self, arrays: &HashSet<u64>) -> Result<Vec<SlurmTask>, BatchError> {
        let mut tasks: Vec<SlurmTask> = self
            .squeue()
            .await?
            .into_iter()
            .filter(|t| arrays.contains(&t.array_id))
            .collect();
        let seen: HashSet<u64> = tasks.iter().map(|t| t.array_id).collect();
        let mut gone: Vec<u64> = arrays.difference(&seen).copied().collect();
        gone.sort_unstable();
        if !gone.is_empty() {
            let ids: Vec<String> = gone.iter().map(u64::to_string).collect();
            tasks.extend(self.sacct(&["-j".into(), ids.join(",")]).await?);
        }
        Ok(tasks)
    }

    /// Our jobs as `squeue --json` lists them.
    async fn squeue(&self) -> Result<Vec<SlurmTask>, BatchError> {
        let out = run_ok(
            SYSTEM,
            "squeue",
            &["--json".into(), "--me".into()],
            COMMAND_LIMIT,
        )
        .await?;
        parse_jobs(&out).map_err(|e| failed(&e.to_string()))
    }

    /// Jobs as `sacct --json` lists them, selected by `args`.
    async fn sacct(&self, args: &[String]) -> Result<Vec<SlurmTask>, BatchError> {
        let mut all = vec!["--json".to_string()];
        all.extend_from_slice(args);
        let out = run_ok(SYSTEM, "sacct", &all, COMMAND_LIMIT).await?;
        parse_jobs(&out).map_err(|e| failed(&e.to_string()))
    }

    /// The array submitted as group `group`, if Slurm knows it (adoption after a crash).
    async fn array_named(&self, group: &str) -> Result<Option<u64>, BatchError> {
        let queued = self.squeue().await?.into_iter().find(|t| t.name == group);
        if let Some(task) = queued {
            return Ok(Some(task.array_id));
        }
        let accounted = self
            .sacct(&[
                "--name".into(),
                group.to_string(),
                "--starttime".into(),
                "2000-01-01".into(),
            ])
            .await?;
        Ok(accounted
            .into_iter()
            .find(|t| t.name == group)
            .map(|t| t.array_id))
    }

    /// The group of array `array`, reading the work directory when it is not known yet.
    fn group_of(&self, array: u64) -> Option<Group> {
        if let Some(group) = self.groups().get(&array) {
            return Some(group.clone());
        }
        let dirs = fs::read_dir(self.root().join("groups")).ok()?;
        for dir in dirs.filter_map(|e| e.ok()).map(|e| e.path()) {
            let recorded = fs::read_to_string(dir.join("array_id")).ok();
            if recorded.as_deref().map(str::trim) == Some(array.to_string().as_str()) {
                let names: Vec<String> = fs::read_to_string(dir.join("tasks"))
                    .ok()?
                    .lines()
                    .map(str::to_string)
                    .collect();
                let group = Group { dir, names };
                self.groups().insert(array, group.clone());
                return Some(group);
            }
        }
        None
    }

    /// Runs a control command on each of `ids`, ignoring jobs in the wrong
    /// state for it (a hold of a running job, a resume of a pending one).
    async fn control(
        &self,
        program: &str,
        verb: Option<&str>,
        ids: &[BatchJobId],
    ) -> Result<(), BatchError> {
        for id in ids.iter().filter(|id| parse_id(&id.0).is_some()) {
            let mut args: Vec<String> = verb.map(|v| vec![v.to_string()]).unwrap_or_default();
            args.push(id.0.clone());
            run(SYSTEM, program, &args, COMMAND_LIMIT).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl BatchSystem for SlurmBatch {
    fn name(&self) -> &str {
        SYSTEM
    }

    fn default_site(&self) -> &str {
        &self.config.site
    }

    async fn submit(&self, group: &JobGroup) -> Result<Vec<Submitted>, BatchError> {
        let mut done = Vec::with_capacity(group.jobs.len());
        let mut new = Vec::new();
        for job in &group.jobs {
            match self.recorded(&job.key) {
                Some(batch_id) => done.push(Submitted {
                    key: job.key,
                    batch_id,
                }),
                None => new.push(job),
            }
        }
        if new.is_empty() {
            return Ok(done);
        }
        let name = format!("{}-{:08x}", new[0].key.name(), random_u32());
        let dir = self.prepare(&name, &new)?;
        let out = run_ok(
            SYSTEM,
            "sbatch",
            &self.sbatch_args(&name, &dir, &new),
            COMMAND_LIMIT,
        )
        .await?;
        let array = parse_sbatch(&out).map_err(|e| failed(&e.to_string()))?;
        crate::worker::failpoint::hit("slurm:after-sbatch");
        let names: Vec<String> = new.iter().map(|j| j.key.name()).collect();
        self.record(&name, array, &names)?;
        done.extend(new.iter().enumerate().map(|(i, job)| Submitted {
            key: job.key,
            batch_id: BatchJobId(format!("{array}_{i}")),
        }));
        Ok(done)
    }

    async fn find(&self, keys: &[JobKey]) -> Result<Vec<Submitted>, BatchError> {
        let mut found = Vec::new();
        for key in keys {
            if let Some(batch_id) = self.recorded(key) {
                found.push(Submitted {
                    key: *key,
                    batch_id,
                });
                continue;
            }
            let Ok(group) = fs::read_to_string(self.job_dir(&key.name()).join("group")) else {
                continue;
            };
            let group = group.trim().to_string();
            let Some(array) = self.array_named(&group).await? else {
                continue;
            };
            let names: Vec<String> = fs::read_to_string(self.group_dir(&group).join("tasks"))
                .map_err(|e| io_error(&self.group_dir(&group), e))?
                .lines()
                .map(str::to_string)
                .collect();
            self.record(&group, array, &names)?;
            if let Some(batch_id) = self.recorded(key) {
                found.push(Submitted {
                    key: *key,
                    batch_id,
                });
            }
        }
        Ok(found)
    }

    async fn poll(&self, ids: &[BatchJobId]) -> Result<Vec<Observed>, BatchError> {
        let wanted: HashSet<u64> = ids
            .iter()
            .filter_map(|id| parse_id(&id.0))
            .map(|(a, _)| a)
            .collect();
        let tasks = if wanted.is_empty() {
            Vec::new()
        } else {
            self.tasks_of(&wanted).await?
        };
        let by_id: HashMap<(u64, u64), &SlurmTask> =
            tasks.iter().map(|t| ((t.array_id, t.task), t)).collect();
        Ok(ids
            .iter()
            .map(|id| match parse_id(&id.0).and_then(|key| by_id.get(&key)) {
                Some(task) => observe(id, task, &self.config.site),
                None => Observed::state(id.clone(), ObservedState::Unknown),
            })
            .collect())
    }

    async fn cancel(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        self.control("scancel", None, ids).await
    }

    async fn hold(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        self.control("scontrol", Some("hold"), ids).await?;
        self.control("scontrol", Some("suspend"), ids).await
    }

    async fn release(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        self.control("scontrol", Some("release"), ids).await?;
        self.control("scontrol", Some("resume"), ids).await
    }

    async fn fetch_logs(&self, id: &BatchJobId) -> Result<LogBundle, BatchError> {
        let (array, task) =
            parse_id(&id.0).ok_or_else(|| failed(&format!("not a Slurm job id: {id}")))?;
        let group = self
            .group_of(array)
            .ok_or_else(|| failed(&format!("unknown job {id}")))?;
        let name = group
            .names
            .get(task as usize)
            .ok_or_else(|| failed(&format!("unknown job {id}")))?;
        let job_dir = self.job_dir(name);
        let out = group.dir.join(format!("{array}_{task}.out"));
        let err = group.dir.join(format!("{array}_{task}.err"));
        tokio::task::spawn_blocking(move || {
            Ok(LogBundle {
                stdout: read_tail(SYSTEM, &out)?,
                stderr: read_tail(SYSTEM, &err)?,
                stages: read_optional(SYSTEM, &job_dir.join(files::STAGES))?.unwrap_or_default(),
                result: read_optional(SYSTEM, &job_dir.join(files::RESULT))?,
            })
        })
        .await
        .map_err(|e| failed(&format!("reading the logs of {id}: {e}")))?
    }

    async fn queue_depth(&self) -> Result<u64, BatchError> {
        Ok(self
            .squeue()
            .await?
            .iter()
            .filter(|t| {
                t.name.starts_with("prodops-") && matches!(t.state.as_str(), "PENDING" | "RUNNING")
            })
            .count() as u64)
    }

    async fn changed(&self) {
        tokio::time::sleep(self.config.poll_interval).await;
    }
}

/// `(array, index)` of a batch id `<array>_<index>`.
fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (array, task) = id.split_once('_')?;
    Some((array.parse().ok()?, task.parse().ok()?))
}

/// What Slurm's record of a task means for the worker.
fn observe(id: &BatchJobId, task: &SlurmTask, site: &str) -> Observed {
    let held = matches!(task.reason.as_deref(), Some("JobHeldUser" | "JobHeldAdmin"));
    let (state, reason) = match task.state.as_str() {
        "PENDING" | "REQUEUED" if held => (ObservedState::Held, task.reason.clone()),
        "PENDING" | "REQUEUED" | "REQUEUE_FED" => (ObservedState::Queued, None),
        "REQUEUE_HOLD" | "SUSPENDED" => (ObservedState::Held, Some(task.state.to_lowercase())),
        "RUNNING" | "CONFIGURING" | "COMPLETING" | "STAGE_OUT" | "RESIZING" | "SIGNALING" => {
            (ObservedState::Running, None)
        }
        "COMPLETED" => (ObservedState::Succeeded, None),
        "CANCELLED" => (ObservedState::Removed, Some("cancelled".into())),
        "OUT_OF_MEMORY" => (ObservedState::Failed, Some("out of memory".into())),
        "TIMEOUT" | "DEADLINE" => (ObservedState::Failed, Some("timed out".into())),
        "FAILED" => (ObservedState::Failed, None),
        other => (
            ObservedState::Failed,
            Some(format!("Slurm says {}", other.to_lowercase())),
        ),
    };
    Observed {
        exit_code: task.exit_code.filter(|_| state.is_final()),
        signal: task.signal,
        oom: task.state == "OUT_OF_MEMORY",
        node: task.node.clone(),
        site: Some(site.to_string()),
        reason,
        ..Observed::state(id.clone(), state)
    }
}

/// A word for `/bin/sh`, single-quoted.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// A number different in each call and process (for group names).
fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}

/// Writes a file whole (through a temporary and a rename).
fn write(path: &Path, bytes: &[u8]) -> Result<(), BatchError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

fn failed(message: &str) -> BatchError {
    BatchError::Failed {
        system: SYSTEM.into(),
        message: message.into(),
    }
}

fn io_error(path: &Path, source: io::Error) -> BatchError {
    super::logs::io_error(SYSTEM, path, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(state: &str, reason: Option<&str>) -> SlurmTask {
        SlurmTask {
            array_id: 7,
            task: 1,
            name: "prodops-j1-a1-0000abcd".into(),
            state: state.into(),
            reason: reason.map(str::to_string),
            exit_code: Some(3),
            signal: None,
            node: Some("vm".into()),
        }
    }

    #[test]
    fn slurm_states_map_to_what_the_worker_follows() {
        let id = BatchJobId("7_1".into());
        let seen = |state, reason| observe(&id, &task(state, reason), "slurm");
        assert_eq!(
            seen("PENDING", Some("Resources")).state,
            ObservedState::Queued
        );
        assert_eq!(
            seen("PENDING", Some("JobHeldUser")).state,
            ObservedState::Held
        );
        assert_eq!(seen("SUSPENDED", None).state, ObservedState::Held);
        assert_eq!(seen("RUNNING", None).state, ObservedState::Running);
        assert_eq!(seen("RUNNING", None).exit_code, None);
        assert_eq!(seen("COMPLETED", None).state, ObservedState::Succeeded);
        let failed = seen("FAILED", Some("NonZeroExitCode"));
        assert_eq!(
            (failed.state, failed.exit_code),
            (ObservedState::Failed, Some(3))
        );
        let oom = seen("OUT_OF_MEMORY", None);
        assert!(oom.oom && oom.state == ObservedState::Failed);
        assert_eq!(seen("CANCELLED", None).state, ObservedState::Removed);
        assert_eq!(
            seen("NODE_FAIL", None).reason.as_deref(),
            Some("Slurm says node_fail")
        );
        assert_eq!(seen("TIMEOUT", None).reason.as_deref(), Some("timed out"));
    }

    #[test]
    fn batch_ids_are_array_underscore_index() {
        assert_eq!(parse_id("12_3"), Some((12, 3)));
        for bad in ["12", "a_1", "1_b", "", "_"] {
            assert_eq!(parse_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn sbatch_arguments_name_the_group_limits_and_resources() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = SlurmConfig::new(dir.path().to_path_buf());
        config.array_limit = Some(5);
        config.partition = Some("debug".into());
        let batch = SlurmBatch::open(config).unwrap();
        let launch = |job| JobLaunch {
            key: JobKey {
                job: crate::model::ids::JobId(job),
                attempt: 1,
            },
            spec: crate::model::jobspec::JobRunSpec {
                job,
                attempt: 1,
                executable: "/bin/true".into(),
                args: Vec::new(),
                env: Default::default(),
                inputs: Vec::new(),
                tarball: None,
                output_dir: "/out".into(),
                memory_mb: 1500,
                wall_seconds: 3600,
            },
            resources: crate::model::spec::Resources {
                memory_mb: 1500,
                wall_hours: 1.5,
                cpus: 2,
                disk_mb: 0,
            },
            sites: Default::default(),
        };
        let (a, b) = (launch(1), launch(2));
        let g = dir.path().join("groups/g");
        let args = batch.sbatch_args("g", &g, &[&a, &b]);
        let g = g.display();
        assert_eq!(
            args,
            [
                "--parsable".to_string(),
                "--array=0-1%5".into(),
                "--job-name=g".into(),
                format!("--output={g}/%A_%a.out"),
                format!("--error={g}/%A_%a.err"),
                "--mem=1500M".into(),
                "--time=90".into(),
                "--cpus-per-task=2".into(),
                format!("--chdir={g}"),
                "--export=NONE".into(),
                "--partition=debug".into(),
                format!("{g}/run.sh"),
            ]
        );
        let mut included = launch(3);
        included.sites.include = vec!["gpu".into(), "long".into()];
        let args = batch.sbatch_args("g", Path::new("/g"), &[&included]);
        assert!(
            args.contains(&"--partition=gpu,long".to_string()),
            "J11: {args:?}"
        );
    }

    #[test]
    fn shell_words_are_quoted_whole() {
        assert_eq!(quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
