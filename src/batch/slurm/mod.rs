//! Slurm (X10): a job group is one `sbatch --array`, each array task runs one
//! of our jobs under `prodops job-run`; states come from `squeue --json`,
//! then `sacct --json` for jobs squeue no longer shows (trusting the state,
//! not sacct's exit code); `scancel`, `scontrol hold|release|resume`, and
//! `scontrol requeuehold` for a running job (Slurm cannot hold one: it is
//! requeued held, and starts again from the beginning when released, at
//! once: release also sets its start time to now).
//!
//! Job and group files follow [`super::groups`]; Slurm writes each job's
//! output to `groups/<group>/<array>_<index>.out`, `.err`. A worker killed
//! between `sbatch` and the ids being written finds the array again by its
//! group name in `squeue`/`sacct`, so a job is never submitted twice.

pub mod parse;

use super::command::{run, run_ok, run_ok_in, Env};
use super::groups::{Carry, GroupFiles, NewGroup};
use super::{
    BatchError, BatchJobId, BatchSystem, JobGroup, JobKey, JobLaunch, LogBundle, Observed,
    ObservedState, Submitted,
};
use crate::batch::QueueDepth;
use crate::model::check::QueueOf;
use async_trait::async_trait;
use parse::{parse_jobs, parse_sbatch, SlurmTask};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The batch system's name.
const SYSTEM: &str = "slurm";
/// Longest wait for one Slurm command.
const COMMAND_LIMIT: Duration = Duration::from_secs(60);

/// What of our environment `sbatch` sees, and so hands on to the jobs
/// (`--export=ALL`): enough to find the tools and the cluster, never the
/// worker's database address or credentials. `--export=NONE` would keep
/// them out too, but makes Slurm build a login environment for every task,
/// which costs more than the job itself for short tasks.
const SBATCH_ENVIRONMENT: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "TZ",
    "SLURM_CONF",
    "SBATCH_*",
];

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
        SlurmConfig {
            work_dir,
            partition: None,
            array_limit: None,
            poll_interval: Duration::from_secs(5),
            job_run: super::groups::this_job_run(),
            site: SYSTEM.into(),
        }
    }
}

/// A Slurm cluster driven through its commands.
pub struct SlurmBatch {
    config: SlurmConfig,
    files: GroupFiles,
}

impl SlurmBatch {
    /// A backend on `config.work_dir` (created if needed).
    pub fn open(config: SlurmConfig) -> Result<SlurmBatch, BatchError> {
        let files = GroupFiles::open(
            SYSTEM,
            &config.work_dir,
            config.job_run.clone(),
            Carry::SharedDir,
        )?;
        Ok(SlurmBatch { config, files })
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
            "--export=ALL".to_string(),
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

    /// Records array `array` of group `group`: task i is job i.
    fn record(&self, group: &str, array: u64) -> Result<Vec<Submitted>, BatchError> {
        let names = self.files.names(group)?;
        let ids: Vec<BatchJobId> = (0..names.len())
            .map(|i| BatchJobId(format!("{array}_{i}")))
            .collect();
        self.files.record(group, &array.to_string(), &ids)
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

    /// Runs a control command on each of `ids`, ignoring jobs in the wrong
    /// state for it (a hold of a running job, a resume of a pending one).
    /// Lets released jobs start at once: Slurm gives a requeued job a begin
    /// time two minutes ahead, which `release` keeps (a job that was only
    /// pending is not delayed by this; a running one refuses it, harmlessly).
    async fn start_now(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        for id in ids.iter().filter(|id| parse_id(&id.0).is_some()) {
            let args = [
                "update".to_string(),
                format!("JobId={}", id.0),
                "StartTime=now".to_string(),
            ];
            run(SYSTEM, "scontrol", &args, COMMAND_LIMIT).await?;
        }
        Ok(())
    }

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
        let (mut done, new) = self.files.split_recorded(&group.jobs);
        let Some(NewGroup { name, jobs: new }) = new else {
            return Ok(done);
        };
        let dir = self.files.prepare(&name, &new, "SLURM_ARRAY_TASK_ID")?;
        let out = run_ok_in(
            Env::Only(SBATCH_ENVIRONMENT),
            SYSTEM,
            "sbatch",
            &self.sbatch_args(&name, &dir, &new),
            COMMAND_LIMIT,
        )
        .await?;
        let array = parse_sbatch(&out).map_err(|e| failed(&e.to_string()))?;
        crate::worker::failpoint::hit("slurm:after-sbatch");
        done.extend(self.record(&name, array)?);
        Ok(done)
    }

    async fn find(&self, keys: &[JobKey]) -> Result<Vec<Submitted>, BatchError> {
        self.files
            .find(keys, |group| async move {
                if let Some(array) = self.array_named(&group).await? {
                    self.record(&group, array)?;
                }
                Ok(())
            })
            .await
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
        let running: HashSet<(u64, u64)> = self
            .squeue()
            .await?
            .iter()
            .filter(|t| matches!(t.state.as_str(), "RUNNING" | "CONFIGURING" | "SUSPENDED"))
            .map(|t| (t.array_id, t.task))
            .collect();
        let (running, pending): (Vec<BatchJobId>, Vec<BatchJobId>) = ids
            .iter()
            .cloned()
            .partition(|id| parse_id(&id.0).is_some_and(|key| running.contains(&key)));
        self.control("scontrol", Some("hold"), &pending).await?;
        self.control("scontrol", Some("requeuehold"), &running)
            .await
    }

    async fn release(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        self.control("scontrol", Some("release"), ids).await?;
        self.start_now(ids).await?;
        self.control("scontrol", Some("resume"), ids).await
    }

    async fn fetch_logs(&self, id: &BatchJobId) -> Result<LogBundle, BatchError> {
        let unknown = || failed(&format!("unknown job {id}"));
        let (array, task) = parse_id(&id.0).ok_or_else(unknown)?;
        let group = self.files.by_id(&array.to_string()).ok_or_else(unknown)?;
        let name = group.names.get(task as usize).ok_or_else(unknown)?;
        let out = group.dir.join(format!("{array}_{task}.out"));
        let err = group.dir.join(format!("{array}_{task}.err"));
        self.files.bundle(name, &out, &err)
    }

    async fn queue_depth(&self, of: &QueueOf) -> Result<QueueDepth, BatchError> {
        let account = of.group_or(str::to_string);
        let args = queue_depth_args(account.as_deref(), of.role.as_deref());
        let out = run_ok(SYSTEM, "squeue", &args, COMMAND_LIMIT).await?;
        Ok(QueueDepth {
            jobs: out.lines().filter(|l| !l.trim().is_empty()).count() as u64,
            whose: of.describe(account.as_deref()),
        })
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

/// `squeue` counting the pending and running jobs of `account` and `qos`
/// (one id per line; `--json` would ignore these filters).
fn queue_depth_args(account: Option<&str>, qos: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = ["--noheader", "--states=PENDING,RUNNING", "--format=%i"]
        .map(String::from)
        .to_vec();
    if let Some(account) = account {
        args.push(format!("--account={account}"));
    }
    if let Some(qos) = qos {
        args.push(format!("--qos={qos}"));
    }
    args
}

fn failed(message: &str) -> BatchError {
    BatchError::Failed {
        system: SYSTEM.into(),
        message: message.into(),
    }
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
        let launch = |job| {
            let resources = crate::model::spec::Resources {
                memory_mb: 1500,
                wall_hours: 1.5,
                cpus: 2,
                disk_mb: 0,
            };
            crate::batch::test_launch(job, resources, Default::default())
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
                "--export=ALL".into(),
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
}
