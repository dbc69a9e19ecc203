//! Slurm (X10): a job group is one `sbatch --array`, each array task runs one
//! of our jobs under `prodops job-run`; states come from `squeue --json`,
//! then `sacct --json` for jobs squeue no longer shows (trusting the state,
//! with the ends of failed jobs from `sacct --parsable2`); `scancel`,
//! `scontrol hold|release`, and `scontrol requeuehold` for a running job
//! (Slurm cannot hold one: it is requeued held, and starts again from the
//! beginning when released, at once: release also sets its start time to
//! now). Every command is one the job's owner may run: no `scontrol
//! suspend`, which is for Slurm operators.
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
use parse::{
    end_is_doubtful, parse_accounting, parse_jobs, parse_sbatch, with_accounted_end, AccountedEnd,
    SlurmTask, ACCOUNTING_FORMAT,
};
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

    /// Slurm's tasks `wanted` (`(array, index)`): `squeue` first, `sacct` for
    /// the rest, and the ends of those that failed read from `sacct --parsable2`
    /// when the JSON's exit code is missing or contradicts the state.
    async fn tasks_of(&self, wanted: &HashSet<(u64, u64)>) -> Result<Vec<SlurmTask>, BatchError> {
        let tasks = self.listed_tasks_of(wanted).await?;
        let mut doubtful: Vec<u64> = tasks
            .iter()
            .filter(|t| end_is_doubtful(t))
            .map(|t| t.array_id)
            .collect();
        if doubtful.is_empty() {
            return Ok(tasks);
        }
        doubtful.sort_unstable();
        doubtful.dedup();
        let ends: HashMap<(u64, u64), AccountedEnd> = self
            .accounting(&doubtful)
            .await?
            .into_iter()
            .map(|end| ((end.array_id, end.task), end))
            .collect();
        Ok(tasks
            .into_iter()
            .map(|t| {
                let end = ends.get(&(t.array_id, t.task));
                with_accounted_end(t, end)
            })
            .collect())
    }

    /// The tasks `wanted` as the JSON of `squeue` lists them, and of `sacct`
    /// for those `squeue` no longer shows. Slurm purges each ended task from
    /// `squeue` on its own (`MinJobAge` after its end), so an array can be
    /// half in `squeue` and half only in the accounting.
    async fn listed_tasks_of(
        &self,
        wanted: &HashSet<(u64, u64)>,
    ) -> Result<Vec<SlurmTask>, BatchError> {
        let mut tasks: Vec<SlurmTask> = self
            .squeue()
            .await?
            .into_iter()
            .filter(|t| wanted.contains(&(t.array_id, t.task)))
            .collect();
        let seen: HashSet<(u64, u64)> = tasks.iter().map(|t| (t.array_id, t.task)).collect();
        let mut gone: Vec<u64> = wanted.difference(&seen).map(|&(array, _)| array).collect();
        gone.sort_unstable();
        gone.dedup();
        if !gone.is_empty() {
            let ids: Vec<String> = gone.iter().map(u64::to_string).collect();
            let accounted = self.sacct(&["-j".into(), ids.join(",")]).await?;
            tasks.extend(accounted.into_iter().filter(|t| {
                let key = (t.array_id, t.task);
                wanted.contains(&key) && !seen.contains(&key)
            }));
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

    /// How the tasks of `arrays` ended by `sacct --parsable2` (job rows and steps).
    async fn accounting(&self, arrays: &[u64]) -> Result<Vec<AccountedEnd>, BatchError> {
        let ids: Vec<String> = arrays.iter().map(u64::to_string).collect();
        let args = [
            "--parsable2".to_string(),
            format!("--format={ACCOUNTING_FORMAT}"),
            "-j".into(),
            ids.join(","),
        ];
        let out = run_ok(SYSTEM, "sacct", &args, COMMAND_LIMIT).await?;
        parse_accounting(&out).map_err(|e| failed(&e.to_string()))
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

    /// Those of `ids` that `squeue` shows in one of `states`.
    async fn in_states(
        &self,
        ids: &[BatchJobId],
        states: &[&str],
    ) -> Result<Vec<BatchJobId>, BatchError> {
        let listed: HashSet<(u64, u64)> = self
            .squeue()
            .await?
            .iter()
            .filter(|t| states.contains(&t.state.as_str()))
            .map(|t| (t.array_id, t.task))
            .collect();
        Ok(ids
            .iter()
            .filter(|id| parse_id(&id.0).is_some_and(|key| listed.contains(&key)))
            .cloned()
            .collect())
    }

    /// Runs `program verb… id` for Slurm job `id`: `Ok(None)` when Slurm did
    /// it or the job has already ended (nothing left to do), else what
    /// Slurm answered.
    async fn act(
        &self,
        program: &str,
        verb: &[&str],
        id: &BatchJobId,
    ) -> Result<Option<String>, BatchError> {
        let mut args: Vec<String> = verb.iter().map(|v| v.to_string()).collect();
        args.push(id.0.clone());
        let out = run(SYSTEM, program, &args, COMMAND_LIMIT).await?;
        let said = out.first_line();
        let ended = ENDED.iter().any(|words| said.contains(words));
        Ok((!out.success && !ended).then_some(said))
    }

    /// [`Self::act`] where any answer but success is an error naming the command.
    async fn must(&self, program: &str, verb: &[&str], id: &BatchJobId) -> Result<(), BatchError> {
        match self.act(program, verb, id).await? {
            None => Ok(()),
            Some(said) => Err(refused(program, verb, id, &said)),
        }
    }

    /// Holds a pending job (`scontrol hold`; a user hold, which the job's
    /// owner may release).
    async fn hold_pending(&self, id: &BatchJobId) -> Result<(), BatchError> {
        self.must("scontrol", &["hold"], id).await
    }

    /// Holds a running job as Slurm can: requeued held (`scontrol
    /// requeuehold`, which the job's owner may do; `scontrol suspend` is for
    /// Slurm operators only). A job that is pending again by then is held.
    async fn hold_running(&self, id: &BatchJobId) -> Result<(), BatchError> {
        match self.act("scontrol", &["requeuehold"], id).await? {
            None => Ok(()),
            Some(said) if said.contains(NOT_RUNNING) => self.hold_pending(id).await,
            Some(said) => Err(refused("scontrol", &["requeuehold"], id, &said)),
        }
    }

    /// Lets released jobs start at once: Slurm gives a requeued job a begin
    /// time two minutes ahead, which `release` keeps. "At once" is 2 s on:
    /// a node refuses to launch a job again in the same second its previous
    /// run was killed ("already killed, do not launch"), and the job would
    /// fail with exit code 1. Slurm refuses this for a job that is not
    /// pending (running, or ended), which is then right as it is, so its
    /// answer is not checked.
    async fn start_now(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        for id in ids {
            let args = [
                "update".to_string(),
                format!("JobId={}", id.0),
                "StartTime=now+2".to_string(),
            ];
            run(SYSTEM, "scontrol", &args, COMMAND_LIMIT).await?;
        }
        Ok(())
    }
}

/// What Slurm answers about a job that has ended or was purged from its
/// memory: a control command on it has nothing left to do.
const ENDED: &[&str] = &[
    "Invalid job id",
    "already finished",
    "already completing or completed",
];

/// What `scontrol requeuehold` answers for a job that is not running.
const NOT_RUNNING: &str = "is pending execution";

/// States `squeue` shows for a job that holds its node: holding it needs a requeue.
const HOLDS_ITS_NODE: &[&str] = &["RUNNING", "CONFIGURING", "SUSPENDED"];

/// Slurm's refusal of `program verb… id`, in one line.
fn refused(program: &str, verb: &[&str], id: &BatchJobId, said: &str) -> BatchError {
    failed(&format!(
        "`{program} {} {id}` was refused: {said}",
        verb.join(" ")
    ))
}

/// Our batch ids among `ids` (`<array>_<index>`); others are not Slurm's.
fn ours(ids: &[BatchJobId]) -> Vec<BatchJobId> {
    ids.iter()
        .filter(|id| parse_id(&id.0).is_some())
        .cloned()
        .collect()
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
        crate::failpoint::hit("slurm:after-sbatch");
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
        let wanted: HashSet<(u64, u64)> = ids.iter().filter_map(|id| parse_id(&id.0)).collect();
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
        for id in ours(ids) {
            self.must("scancel", &[], &id).await?;
        }
        Ok(())
    }

    /// Pending jobs get `scontrol hold`, running ones `scontrol
    /// requeuehold`; a job that started while the pending ones were held
    /// (`hold` leaves a running job as it is) is requeued held too.
    async fn hold(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        let ids = ours(ids);
        let running = self.in_states(&ids, HOLDS_ITS_NODE).await?;
        let pending: Vec<BatchJobId> = ids.into_iter().filter(|id| !running.contains(id)).collect();
        for id in &pending {
            self.hold_pending(id).await?;
        }
        let started = if pending.is_empty() {
            Vec::new()
        } else {
            self.in_states(&pending, &["RUNNING", "CONFIGURING"])
                .await?
        };
        for id in running.iter().chain(&started) {
            self.hold_running(id).await?;
        }
        Ok(())
    }

    /// `scontrol release`, then the start time set to now (see
    /// [`Self::start_now`]); a job a Slurm administrator suspended is
    /// resumed too, which only an operator account may do.
    async fn release(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        let ids = ours(ids);
        for id in &ids {
            self.must("scontrol", &["release"], id).await?;
        }
        self.start_now(&ids).await?;
        for id in self.in_states(&ids, &["SUSPENDED"]).await? {
            self.must("scontrol", &["resume"], &id).await?;
        }
        Ok(())
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
        node_kind: task.partition.clone(),
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
            partition: Some("debug".into()),
        }
    }

    #[test]
    fn p3_a_queue_check_asks_squeue_for_the_accounts_and_qos_pending_and_running_jobs() {
        assert_eq!(
            queue_depth_args(Some("nova"), Some("production")),
            [
                "--noheader",
                "--states=PENDING,RUNNING",
                "--format=%i",
                "--account=nova",
                "--qos=production"
            ]
        );
        assert_eq!(
            queue_depth_args(None, None),
            ["--noheader", "--states=PENDING,RUNNING", "--format=%i"]
        );
    }

    #[test]
    fn m9_a_slurm_job_runs_on_the_kind_of_node_its_partition_names() {
        let seen = observe(&BatchJobId("7_1".into()), &task("RUNNING", None), "site");
        assert_eq!(seen.node_kind.as_deref(), Some("debug"));
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
