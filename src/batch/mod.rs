//! The batch-system abstraction (X10): one trait, one file per batch system.
//!
//! The worker is the only caller. Every submission carries our [`JobKey`] in
//! the batch system's job name, so a restarted worker can [`BatchSystem::find`]
//! what it submitted before a crash instead of submitting it twice.

pub mod command;
pub mod groups;
pub mod htcondor;
pub mod jobsub;
pub mod launch;
pub mod local;
pub mod logs;
pub mod slurm;

use crate::model::check::QueueOf;
use crate::model::ids::JobId;
use crate::model::jobspec::JobRunSpec;
use crate::model::spec::{Launch, Resources, Sites};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A batch system's own id for a job (`prodops-j12-a1`, `1234_5`, `123.0@schedd`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BatchJobId(pub String);

impl fmt::Display for BatchJobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One attempt of one of our jobs; its [`JobKey::name`] is the batch job's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    /// Our job id.
    pub job: JobId,
    /// Attempt number, from 1.
    pub attempt: i64,
}

impl JobKey {
    /// The name given to the batch job: `prodops-j<job>-a<attempt>`.
    pub fn name(&self) -> String {
        format!("prodops-j{}-a{}", self.job.0, self.attempt)
    }

    /// Reads a name written by [`JobKey::name`] back.
    pub fn parse_name(name: &str) -> Option<JobKey> {
        let rest = name.strip_prefix("prodops-j")?;
        let (job, attempt) = rest.split_once("-a")?;
        Some(JobKey {
            job: JobId(job.parse().ok()?),
            attempt: attempt.parse().ok()?,
        })
    }
}

/// One job to launch.
#[derive(Debug, Clone, PartialEq)]
pub struct JobLaunch {
    /// Which attempt of which job.
    pub key: JobKey,
    /// What the job side runs.
    pub spec: JobRunSpec,
    /// Slot needs.
    pub resources: Resources,
    /// Site selection, passed through (J11).
    pub sites: Sites,
}

/// Jobs of one subtask submitted together (one array / cluster where the system has them).
#[derive(Debug, Clone, PartialEq)]
pub struct JobGroup {
    /// Experiment, for accounting and group/role options.
    pub experiment: String,
    /// The jobs.
    pub jobs: Vec<JobLaunch>,
}

/// A job the batch system has accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Our key.
    pub key: JobKey,
    /// Its id there.
    pub batch_id: BatchJobId,
}

/// A job's state as the batch system reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservedState {
    /// Waiting for a slot.
    Queued,
    /// Running.
    Running,
    /// Held (by a person or the system).
    Held,
    /// Ended with success.
    Succeeded,
    /// Ended with failure.
    Failed,
    /// Removed before it ended.
    Removed,
    /// The batch system does not know the id (any more).
    Unknown,
}

impl ObservedState {
    /// True for states a job never leaves (its logs can be fetched for good).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ObservedState::Succeeded
                | ObservedState::Failed
                | ObservedState::Removed
                | ObservedState::Unknown
        )
    }
}

/// What the batch system says about one job.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Its id there.
    pub batch_id: BatchJobId,
    /// Its state.
    pub state: ObservedState,
    /// Exit code, once ended by exit.
    pub exit_code: Option<i64>,
    /// Signal, once killed by one.
    pub signal: Option<i64>,
    /// Killed for exceeding its memory.
    pub oom: bool,
    /// Node it runs or ran on.
    pub node: Option<String>,
    /// The kind of node (M9): Slurm's partition, `local` for the local
    /// backend; none where the batch system does not say.
    pub node_kind: Option<String>,
    /// Site or facility.
    pub site: Option<String>,
    /// Hold reason or failure text from the batch system.
    pub reason: Option<String>,
}

impl Observed {
    /// An observation with only a state.
    pub fn state(batch_id: BatchJobId, state: ObservedState) -> Observed {
        Observed {
            batch_id,
            state,
            exit_code: None,
            signal: None,
            oom: false,
            node: None,
            node_kind: None,
            site: None,
            reason: None,
        }
    }
}

/// A finished (or running) job's logs, as fetched from where it ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogBundle {
    /// Standard output (may be truncated to its last part).
    pub stdout: String,
    /// Standard error (may be truncated to its last part).
    pub stderr: String,
    /// `stages.jsonl`.
    pub stages: String,
    /// `result.json`, once written.
    pub result: Option<String>,
}

/// A queue's depth as a batch system counted it (P3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    /// Jobs queued or running.
    pub jobs: u64,
    /// Whose jobs were counted, in words (`jobs of group_nova.prod`).
    pub whose: String,
}

/// Why a batch system call failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The command or service refused or failed.
    #[error("{system}: {message}")]
    Failed {
        /// Which batch system.
        system: String,
        /// What it said.
        message: String,
    },
    /// Local I/O around the batch system.
    #[error("{system}: {path}: {source}")]
    Io {
        /// Which batch system.
        system: String,
        /// The file involved.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A batch system prodops can drive.
#[async_trait]
pub trait BatchSystem: Send + Sync {
    /// Its name as used in request files (`local`, `slurm`, …).
    fn name(&self) -> &str;
    /// The site jobs land on when the system does not say.
    fn default_site(&self) -> &str;
    /// Which running instance of this system holds the jobs it submits:
    /// for the local backend its host and directory, for HTCondor its
    /// schedd, for Slurm its cluster. A worker asks an instance only about
    /// its own jobs; another's are left as they are until a worker that can
    /// reach that instance picks them up (issue 15). By default, the
    /// system's name: one instance reachable from every submission node.
    fn instance(&self) -> String {
        self.name().to_string()
    }
    /// Submits a group. Idempotent per [`JobKey`]: submitting a key it already
    /// has returns the existing id instead of starting a second job.
    async fn submit(&self, group: &JobGroup) -> Result<Vec<Submitted>, BatchError>;
    /// True when this system can follow jobs an experiment's launch script submits (J2, J9).
    fn launches(&self) -> bool {
        false
    }
    /// Submits `jobs` through an experiment's launch script, one run per
    /// job. Idempotent per [`JobKey`] like [`BatchSystem::submit`].
    async fn launch(
        &self,
        launch: &Launch,
        jobs: &[JobLaunch],
    ) -> Result<Vec<Submitted>, BatchError> {
        let _ = (launch, jobs);
        Err(BatchError::Failed {
            system: self.name().into(),
            message: "experiment launch scripts are not supported by this backend".into(),
        })
    }
    /// Finds jobs submitted under these keys (adoption after a crash).
    async fn find(&self, keys: &[JobKey]) -> Result<Vec<Submitted>, BatchError>;
    /// Reports the state of these jobs; ids it does not know are `Unknown`.
    async fn poll(&self, ids: &[BatchJobId]) -> Result<Vec<Observed>, BatchError>;
    /// Removes jobs, killing those running.
    async fn cancel(&self, ids: &[BatchJobId]) -> Result<(), BatchError>;
    /// Holds jobs: queued ones do not start; running ones are held as this
    /// system can (see [`running_hold_effect`]).
    async fn hold(&self, ids: &[BatchJobId]) -> Result<(), BatchError>;
    /// Releases held jobs.
    async fn release(&self, ids: &[BatchJobId]) -> Result<(), BatchError>;
    /// Fetches a job's logs, stage records and result.
    async fn fetch_logs(&self, id: &BatchJobId) -> Result<LogBundle, BatchError>;
    /// The stage records and results of ended jobs, in the order of `ids`,
    /// for ingest (their output logs may be left empty). By default, each
    /// job's [`BatchSystem::fetch_logs`].
    async fn fetch_records(&self, ids: &[BatchJobId]) -> Result<Vec<LogBundle>, BatchError> {
        let mut records = Vec::with_capacity(ids.len());
        for id in ids {
            records.push(self.fetch_logs(id).await?);
        }
        Ok(records)
    }
    /// Jobs queued or running in this system of whom `of` names (an
    /// experiment's and role's own, as the system accounts them: P3).
    async fn queue_depth(&self, of: &QueueOf) -> Result<QueueDepth, BatchError>;
    /// Resolves when some job may have changed state, so the worker can react at
    /// once; systems without notifications resolve after their poll interval.
    async fn changed(&self);
}

/// What holding a running job does on batch system `backend`, in one line:
/// the words a confirmation shows before an operator holds running jobs
/// (issue 14), since the systems differ and some cannot hold a running job.
pub fn running_hold_effect(backend: &str) -> &'static str {
    match backend {
        "local" => "the local executor stops them (SIGSTOP) and continues them where they stopped on release",
        "slurm" => "Slurm cannot hold a running job: prodops requeues it held (scontrol requeuehold), so it stops now and starts again from the beginning on release",
        "htcondor" => "HTCondor evicts them (condor_hold) and starts them again from the beginning on release",
        "jobsub" => "jobsub evicts them (jobsub_hold) and starts them again from the beginning on release",
        _ => "the batch system's own hold applies; prodops does not know what it does to a running job",
    }
}

/// A job launch with `resources` and `sites`, for the backends' unit tests.
#[cfg(test)]
pub(crate) fn test_launch(job: i64, resources: Resources, sites: Sites) -> JobLaunch {
    JobLaunch {
        key: JobKey {
            job: JobId(job),
            attempt: 1,
        },
        spec: JobRunSpec {
            job,
            attempt: 1,
            executable: "/bin/true".into(),
            args: Vec::new(),
            env: Default::default(),
            inputs: Vec::new(),
            tarball: None,
            script: None,
            output_dir: "/out".into(),
            memory_mb: resources.memory_mb,
            wall_seconds: (resources.wall_hours * 3600.0) as i64,
        },
        resources,
        sites,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_key_names_round_trip() {
        let key = JobKey {
            job: JobId(12),
            attempt: 3,
        };
        assert_eq!(key.name(), "prodops-j12-a3");
        assert_eq!(JobKey::parse_name("prodops-j12-a3"), Some(key));
        assert_eq!(JobKey::parse_name("prodops-jx-a3"), None);
        assert_eq!(JobKey::parse_name("other"), None);
    }

    #[test]
    fn x10_every_backend_says_what_a_hold_does_to_its_running_jobs() {
        let words: Vec<&str> = ["local", "slurm", "htcondor", "jobsub"]
            .into_iter()
            .map(running_hold_effect)
            .collect();
        assert!(words[0].contains("where they stopped"));
        assert!(words[1].contains("requeue") && words[1].contains("from the beginning"));
        assert!(words[2].contains("evicts") && words[2].contains("from the beginning"));
        assert!(words[3].contains("evicts") && words[3].contains("from the beginning"));
        assert!(running_hold_effect("pbs").contains("does not know"));
    }
}
