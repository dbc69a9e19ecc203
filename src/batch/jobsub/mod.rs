//! Fermilab's jobsub_lite (X10), HTCondor's front end at Fermilab: a job
//! group is one `jobsub_submit -N n` of the group's carrying script (proc
//! i runs job i, found in `$PROCESS`); ids are `cluster.proc@schedd`.
//! States come from `jobsub_q -J`; a job that has left the queue ended, and
//! its logs (`jobsub_fetchlog --unzipdir`) tell how: the records its script
//! printed after its output hold its exit code. `jobsub_rm`, `jobsub_hold`
//! and `jobsub_release` act on jobs by id.
//!
//! The group name travels as the job attribute `+ProdopsGroup` (`-l`), so a
//! worker killed between `jobsub_submit` and the ids being written finds the
//! cluster again with `jobsub_q --constraint` while it is queued.

pub mod parse;

use super::command::{program, run, run_ok};
use super::groups::{split_records, Carry, GroupFiles, NewGroup};
use super::logs::{io_error, read_tail};
use super::{
    BatchError, BatchJobId, BatchSystem, JobGroup, JobKey, JobLaunch, LogBundle, Observed,
    ObservedState, Submitted,
};
use crate::batch::QueueDepth;
use crate::model::check::QueueOf;
use crate::model::jobspec::JobResult;
use crate::model::spec::Launch;
use async_trait::async_trait;
use parse::{parse_queue, parse_submit, JobsubId, QueuedJob, SUSPENDED};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The batch system's name.
const SYSTEM: &str = "jobsub";
/// Longest wait for one jobsub command (they authenticate against remote services).
const COMMAND_LIMIT: Duration = Duration::from_secs(300);
/// At most this many job ids on one command line.
const IDS_PER_COMMAND: usize = 200;
/// How a launch script's job id is found by default (jobsub_submit's own words).
const LAUNCH_PATTERN: &str = r"Use job id (\S+@\S+) to retrieve output";
/// The file beside fetched logs saying they are a finished job's final logs.
const FINAL_MARK: &str = "final";

/// How prodops uses jobsub_lite.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsubConfig {
    /// Where scripts and fetched logs live (on the submit host).
    pub work_dir: PathBuf,
    /// The directory of the `jobsub_*` commands (default: found on `PATH`).
    pub bin_dir: Option<PathBuf>,
    /// `-G`: the experiment's group every command acts as (one per
    /// configuration: jobsub authenticates per group).
    pub group: String,
    /// `--role` (`Analysis`, `Production`, …).
    pub role: String,
    /// How often states are asked for.
    pub poll_interval: Duration,
    /// The command that runs one job on a worker node; `--spec <job.json>` is added.
    pub job_run: Vec<String>,
    /// The site recorded for its jobs.
    pub site: String,
    /// Options added to every `jobsub_submit` (`--auth-methods`, `-l`, `--tar_file_name`, …).
    pub extra_args: Vec<String>,
}

impl JobsubConfig {
    /// Defaults for `group`: the `Analysis` role, this binary's `job-run`
    /// (worker nodes must see it at the same path, e.g. on CVMFS), states
    /// every 30 s.
    pub fn new(work_dir: PathBuf, group: String) -> JobsubConfig {
        JobsubConfig {
            work_dir,
            bin_dir: None,
            group,
            role: "Analysis".into(),
            poll_interval: Duration::from_secs(30),
            job_run: super::groups::this_job_run(),
            site: "fermigrid".into(),
            extra_args: Vec::new(),
        }
    }
}

/// jobsub_lite driven through its commands.
pub struct JobsubBatch {
    config: JobsubConfig,
    files: GroupFiles,
}

impl JobsubBatch {
    /// A backend on `config.work_dir` (created if needed).
    pub fn open(config: JobsubConfig) -> Result<JobsubBatch, BatchError> {
        let files = GroupFiles::open(
            SYSTEM,
            &config.work_dir,
            config.job_run.clone(),
            Carry::InScript,
        )?;
        Ok(JobsubBatch { config, files })
    }

    /// The arguments of `jobsub_submit` for `jobs` as group `group`, whose
    /// script is `script`; the site criteria pass through unchanged (J11).
    pub fn submit_args(&self, group: &str, script: &Path, jobs: &[&JobLaunch]) -> Vec<String> {
        let r = &jobs[0].resources;
        let sites = &jobs[0].sites;
        let wall = ((r.wall_hours * 3600.0).ceil() as i64).max(60);
        let mut args = self.group_args();
        args.extend([
            "-N".to_string(),
            jobs.len().to_string(),
            "--memory".into(),
            format!("{}MB", r.memory_mb.max(1)),
        ]);
        if r.disk_mb > 0 {
            args.extend(["--disk".into(), format!("{}MB", r.disk_mb)]);
        }
        args.extend([
            "--expected-lifetime".into(),
            format!("{wall}s"),
            "--cpu".into(),
            r.cpus.max(1).to_string(),
        ]);
        if !sites.usage_model.is_empty() {
            args.push(format!(
                "--resource-provides=usage_model={}",
                sites.usage_model.join(",")
            ));
        }
        if !sites.include.is_empty() {
            args.extend(["--site".into(), sites.include.join(",")]);
        }
        if !sites.exclude.is_empty() {
            args.extend(["--blacklist".into(), sites.exclude.join(",")]);
        }
        args.extend(["-l".into(), format!("+ProdopsGroup = \"{group}\"")]);
        args.extend(self.config.extra_args.iter().cloned());
        args.push(format!("file://{}", script.display()));
        args
    }

    /// `-G group --role role`.
    fn group_args(&self) -> Vec<String> {
        vec![
            "-G".into(),
            self.config.group.clone(),
            "--role".into(),
            self.config.role.clone(),
        ]
    }

    fn program(&self, name: &str) -> String {
        program(self.config.bin_dir.as_deref(), name)
    }

    /// Records `ids` as group `group`'s jobs, in order.
    fn record(&self, group: &str, ids: &[JobsubId]) -> Result<Vec<Submitted>, BatchError> {
        let batch_ids: Vec<BatchJobId> = ids.iter().map(|id| BatchJobId(id.to_string())).collect();
        let Some(first) = ids.first() else {
            return Ok(Vec::new());
        };
        let group_id = format!("{}@{}", first.cluster, first.schedd);
        self.files.record(group, &group_id, &batch_ids)
    }

    /// `jobsub_q` with `selection` (`-J ids` or `--constraint`).
    async fn queue(&self, selection: &[String]) -> Result<Vec<QueuedJob>, BatchError> {
        let mut args = self.group_args();
        args.extend_from_slice(selection);
        let out = run_ok(SYSTEM, &self.program("jobsub_q"), &args, COMMAND_LIMIT).await?;
        parse_queue(&out).map_err(|e| failed(&e.to_string()))
    }

    /// Runs `command -J ids` on `ids`, many at a time; jobs in the wrong
    /// state for it (already gone, not held) are not an error.
    async fn control(&self, command: &str, ids: &[BatchJobId]) -> Result<(), BatchError> {
        for chunk in ids.chunks(IDS_PER_COMMAND) {
            let mut args = self.group_args();
            args.extend(["-J".into(), join_ids(chunk)]);
            run(SYSTEM, &self.program(command), &args, COMMAND_LIMIT).await?;
        }
        Ok(())
    }

    /// Where job `id`'s fetched logs are kept.
    fn log_dir(&self, id: &JobsubId) -> PathBuf {
        self.files
            .root()
            .join("logs")
            .join(format!("{}.{}@{}", id.cluster, id.proc, id.schedd))
    }

    /// Fetches job `id`'s logs into its log directory (once for good when
    /// `ended`), and reads them.
    async fn fetch(&self, id: &JobsubId, ended: bool) -> Result<LogBundle, BatchError> {
        let dir = self.log_dir(id);
        if !dir.join(FINAL_MARK).exists() {
            std::fs::create_dir_all(&dir).map_err(|e| io_error(SYSTEM, &dir, e))?;
            let mut args = self.group_args();
            args.extend([
                "-J".into(),
                id.to_string(),
                "--unzipdir".into(),
                dir.display().to_string(),
            ]);
            run_ok(
                SYSTEM,
                &self.program("jobsub_fetchlog"),
                &args,
                COMMAND_LIMIT,
            )
            .await?;
            if ended {
                std::fs::write(dir.join(FINAL_MARK), b"").map_err(|e| io_error(SYSTEM, &dir, e))?;
            }
        }
        let suffix = |ext: &str| format!("cluster.{}.{}.{ext}", id.cluster, id.proc);
        let out = find_ending(&dir, &suffix("out"));
        let err = find_ending(&dir, &suffix("err"));
        let read = |p: Option<PathBuf>| p.map_or(Ok(String::new()), |p| read_tail(SYSTEM, &p));
        Ok(split_records(read(out)?, read(err)?))
    }

    /// How a job without our records ended (a launch script's job, or one
    /// killed before it printed them): its fetched HTCondor event log.
    fn logged_end(&self, batch_id: &BatchJobId, id: &JobsubId) -> Observed {
        let log = find_ending(
            &self.log_dir(id),
            &format!("cluster.{}.{}.log", id.cluster, id.proc),
        );
        let text = log
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let events = crate::batch::htcondor::parse::parse_event_log(&text).events;
        let states = crate::batch::htcondor::parse::job_states(&events);
        match states.get(&(id.cluster, id.proc)) {
            Some(ad) if ad.status == crate::batch::htcondor::parse::JobStatus::Completed => {
                Observed {
                    exit_code: ad.exit_code,
                    signal: ad.exit_signal,
                    ..Observed::state(
                        batch_id.clone(),
                        if ad.exit_code == Some(0) {
                            ObservedState::Succeeded
                        } else {
                            ObservedState::Failed
                        },
                    )
                }
            }
            _ => Observed {
                reason: Some("left the queue without a result (removed?)".into()),
                ..Observed::state(batch_id.clone(), ObservedState::Removed)
            },
        }
    }

    /// A job that has left the queue: how it ended, from its records.
    async fn ended(&self, batch_id: &BatchJobId, id: &JobsubId) -> Result<Observed, BatchError> {
        let logs = self.fetch(id, true).await?;
        let result: Option<JobResult> = logs
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok());
        let observed = match result {
            Some(r) => Observed {
                exit_code: r.exit_code,
                signal: r.signal,
                oom: r.oom,
                node: Some(r.node),
                ..Observed::state(
                    batch_id.clone(),
                    if r.exit_code == Some(0) && r.failed_stage.is_none() {
                        ObservedState::Succeeded
                    } else {
                        ObservedState::Failed
                    },
                )
            },
            None => self.logged_end(batch_id, id),
        };
        Ok(Observed {
            site: Some(self.config.site.clone()),
            ..observed
        })
    }
}

#[async_trait]
impl BatchSystem for JobsubBatch {
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
        let dir = self.files.prepare(&name, &new, "PROCESS")?;
        let args = self.submit_args(&name, &dir.join("run.sh"), &new);
        let out = run_ok(SYSTEM, &self.program("jobsub_submit"), &args, COMMAND_LIMIT).await?;
        let ids = parse_submit(&out).map_err(|e| failed(&e.to_string()))?;
        crate::failpoint::hit("jobsub:after-submit");
        if ids.len() != new.len() {
            return Err(failed(&format!(
                "jobsub_submit made {} jobs, not {}",
                ids.len(),
                new.len()
            )));
        }
        done.extend(self.record(&name, &ids)?);
        Ok(done)
    }

    fn launches(&self) -> bool {
        true
    }

    async fn launch(
        &self,
        launch: &Launch,
        jobs: &[JobLaunch],
    ) -> Result<Vec<Submitted>, BatchError> {
        self.files.launch(launch, LAUNCH_PATTERN, jobs).await
    }

    async fn find(&self, keys: &[JobKey]) -> Result<Vec<Submitted>, BatchError> {
        self.files
            .find(keys, |group| async move {
                let constraint = format!("ProdopsGroup == \"{group}\"");
                let mut ids: Vec<JobsubId> = self
                    .queue(&["--constraint".into(), constraint])
                    .await?
                    .into_iter()
                    .map(|job| job.id)
                    .collect();
                ids.sort();
                ids.dedup();
                if !ids.is_empty() {
                    self.record(&group, &ids)?;
                }
                Ok(())
            })
            .await
    }

    async fn poll(&self, ids: &[BatchJobId]) -> Result<Vec<Observed>, BatchError> {
        let ours: Vec<(&BatchJobId, JobsubId)> = ids
            .iter()
            .filter_map(|id| Some((id, id.0.parse::<JobsubId>().ok()?)))
            .collect();
        let mut queued: HashMap<JobsubId, char> = HashMap::new();
        for chunk in ours.chunks(IDS_PER_COMMAND) {
            let wanted: Vec<BatchJobId> = chunk.iter().map(|(id, _)| (*id).clone()).collect();
            for job in self.queue(&["-J".into(), join_ids(&wanted)]).await? {
                queued.insert(job.id, job.status);
            }
        }
        let mut observed = Vec::with_capacity(ids.len());
        for id in ids {
            let Ok(parsed) = id.0.parse::<JobsubId>() else {
                observed.push(Observed::state(id.clone(), ObservedState::Unknown));
                continue;
            };
            let seen = match queued.get(&parsed) {
                Some(status) => Observed {
                    site: Some(self.config.site.clone()),
                    ..Observed::state(id.clone(), state_of(*status))
                },
                None => self.ended(id, &parsed).await?,
            };
            observed.push(seen);
        }
        Ok(observed)
    }

    async fn cancel(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        self.control("jobsub_rm", ids).await
    }

    async fn hold(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        self.control("jobsub_hold", ids).await
    }

    async fn release(&self, ids: &[BatchJobId]) -> Result<(), BatchError> {
        self.control("jobsub_release", ids).await
    }

    async fn fetch_logs(&self, id: &BatchJobId) -> Result<LogBundle, BatchError> {
        let parsed =
            id.0.parse::<JobsubId>()
                .map_err(|_| failed(&format!("`{id}` is not a jobsub job id")))?;
        self.fetch(&parsed, false).await
    }

    async fn queue_depth(&self, of: &QueueOf) -> Result<QueueDepth, BatchError> {
        let group = of
            .group
            .clone()
            .unwrap_or_else(|| self.config.group.clone());
        let role = of.role.clone().unwrap_or_else(|| self.config.role.clone());
        let args = vec!["-G".into(), group.clone(), "--role".into(), role.clone()];
        let out = run_ok(SYSTEM, &self.program("jobsub_q"), &args, COMMAND_LIMIT).await?;
        let jobs = parse_queue(&out)
            .map_err(|e| failed(&e.to_string()))?
            .iter()
            .filter(|job| matches!(job.status, 'I' | 'R'))
            .count() as u64;
        Ok(QueueDepth {
            jobs,
            whose: format!("jobs of {group} ({role})"),
        })
    }

    async fn changed(&self) {
        tokio::time::sleep(self.config.poll_interval).await;
    }
}

/// What `jobsub_q`'s `ST` letter means for a job still in the queue.
fn state_of(status: char) -> ObservedState {
    match status {
        'R' | 'E' => ObservedState::Running,
        'H' | SUSPENDED => ObservedState::Held,
        'X' => ObservedState::Removed,
        _ => ObservedState::Queued,
    }
}

/// Ids as one `-J` argument.
fn join_ids(ids: &[BatchJobId]) -> String {
    ids.iter()
        .map(|id| id.0.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// The file in `dir` whose name ends with `suffix` (jobsub prefixes the
/// script's name and the submission time).
fn find_ending(dir: &Path, suffix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
        })
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
    use crate::model::spec::{Resources, Sites};

    #[test]
    fn x10_j11_jobsub_submit_gets_group_role_resources_and_the_sites_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = JobsubConfig::new(dir.path().to_path_buf(), "mu2e".into());
        config.role = "Production".into();
        config.extra_args = vec!["--auth-methods".into(), "token".into()];
        let batch = JobsubBatch::open(config).unwrap();
        let resources = Resources {
            memory_mb: 2500,
            wall_hours: 1.5,
            cpus: 2,
            disk_mb: 4000,
        };
        let sites = Sites {
            usage_model: vec!["OFFSITE".into()],
            include: vec!["Michigan".into(), "UCSD".into()],
            exclude: vec!["BadSite".into()],
        };
        let a = crate::batch::test_launch(1, resources.clone(), sites.clone());
        let b = crate::batch::test_launch(2, resources, sites);
        let args = batch.submit_args("prodops-j1-a1-0000abcd", Path::new("/w/run.sh"), &[&a, &b]);
        assert_eq!(
            args,
            [
                "-G",
                "mu2e",
                "--role",
                "Production",
                "-N",
                "2",
                "--memory",
                "2500MB",
                "--disk",
                "4000MB",
                "--expected-lifetime",
                "5400s",
                "--cpu",
                "2",
                "--resource-provides=usage_model=OFFSITE",
                "--site",
                "Michigan,UCSD",
                "--blacklist",
                "BadSite",
                "-l",
                "+ProdopsGroup = \"prodops-j1-a1-0000abcd\"",
                "--auth-methods",
                "token",
                "file:///w/run.sh",
            ]
        );
        let plain = crate::batch::test_launch(
            3,
            Resources::default(),
            Sites {
                usage_model: Vec::new(),
                ..Sites::default()
            },
        );
        let args = batch.submit_args("g", Path::new("/w/run.sh"), &[&plain]);
        assert!(!args.iter().any(|a| a.starts_with("--site")
            || a.starts_with("--blacklist")
            || a.starts_with("--resource-provides")));
    }

    #[test]
    fn queue_letters_map_to_what_the_worker_follows() {
        assert_eq!(state_of('I'), ObservedState::Queued);
        assert_eq!(state_of('U'), ObservedState::Queued);
        assert_eq!(state_of('R'), ObservedState::Running);
        assert_eq!(state_of('E'), ObservedState::Running);
        assert_eq!(state_of('H'), ObservedState::Held);
        assert_eq!(state_of(SUSPENDED), ObservedState::Held);
        assert_eq!(state_of('X'), ObservedState::Removed);
    }
}
