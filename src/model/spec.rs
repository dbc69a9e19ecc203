//! The reproducible specification of a request (X2, X3, J5, J6, J7).
//!
//! A [`Spec`] holds everything needed to run and later reproduce each subtask.
//! Its canonical hash is stored at approval; a changed spec has a different
//! hash and goes back to pending approval.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// The type of processing a request asks for (X1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Monte-Carlo generation and its chain; always needs approval (J12).
    Mc,
    /// Reconstruction of detector data.
    Reco,
    /// Calibration.
    Calib,
    /// Merging outputs.
    Merge,
    /// Validation of outputs (X4).
    Validation,
}

impl TaskKind {
    /// Every kind, for error messages and completion.
    pub const ALL: [TaskKind; 5] = [
        TaskKind::Mc,
        TaskKind::Reco,
        TaskKind::Calib,
        TaskKind::Merge,
        TaskKind::Validation,
    ];

    /// The stored, typed name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Mc => "mc",
            TaskKind::Reco => "reco",
            TaskKind::Calib => "calib",
            TaskKind::Merge => "merge",
            TaskKind::Validation => "validation",
        }
    }

    /// Reads a name back.
    pub fn parse(s: &str) -> Option<TaskKind> {
        TaskKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Monte-Carlo is always approved by a person, whatever the experiment says.
    pub fn always_needs_approval(self) -> bool {
        self == TaskKind::Mc
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The batch systems a stage can be sent to (X10).
pub const BACKENDS: [&str; 4] = ["local", "slurm", "htcondor", "jobsub"];

/// The slot types of the batch layer (J11).
pub const USAGE_MODELS: [&str; 3] = ["DEDICATED", "OPPORTUNISTIC", "OFFSITE"];

/// Where a stage's input comes from: a catalog definition, explicit files, or a glob.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// A catalog dataset definition (e.g. a SAM definition name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// An explicit list of files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// A glob over the local catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
}

/// What a job needs from its slot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory in MB.
    pub memory_mb: i64,
    /// Expected wall time in hours.
    pub wall_hours: f64,
    /// CPU cores.
    pub cpus: i64,
    /// Scratch disk in MB.
    pub disk_mb: i64,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            memory_mb: 2000,
            wall_hours: 8.0,
            cpus: 1,
            disk_mb: 10_000,
        }
    }
}

/// Site selection criteria, passed through unchanged to the batch layer (J11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sites {
    /// Slot types: DEDICATED, OPPORTUNISTIC, OFFSITE.
    pub usage_model: Vec<String>,
    /// Sites to use; empty means any.
    pub include: Vec<String>,
    /// Sites never to use.
    pub exclude: Vec<String>,
}

impl Default for Sites {
    fn default() -> Self {
        Sites {
            usage_model: vec!["DEDICATED".into(), "OPPORTUNISTIC".into()],
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

/// An experiment's own launch script used instead of our generated submission (J2, J9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Launch {
    /// The command to run.
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// A regular expression whose first group is a batch job id in the script's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id_pattern: Option<String>,
}

/// How a stage's jobs are run: our runner with a script, or the experiment's launcher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Executable {
    /// A script run by `prodops job-run` with these arguments.
    Script {
        /// Path of the script.
        path: String,
        /// Its arguments.
        args: Vec<String>,
        /// SHA-256 of its content when filed (hex): part of the hash an
        /// approval freezes, and the key of the copy jobs run (issue 15).
        /// `None` in specs filed before content was locked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
    /// An experiment launch script.
    Launch(Launch),
}

/// Pluggable completion criteria, chosen per stage (T5). All given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    /// Every job ended successfully.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_jobs_succeeded: bool,
    /// At least this many events were produced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_at_least: Option<i64>,
    /// Every input file was consumed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all_inputs_consumed: bool,
    /// At least as many output files as input files.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outputs_at_least_inputs: bool,
    /// Outputs reached this location (e.g. tape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_at: Option<String>,
    /// A script that must exit 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_script: Option<String>,
    /// A person must sign off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub signoff: bool,
}

impl Completion {
    /// True when no criterion is chosen (the default is then all jobs succeeded).
    pub fn is_empty(&self) -> bool {
        *self == Completion::default()
    }

    /// True when a criterion compares input and output file counts (so they
    /// must be counted before deciding).
    pub fn counts_files(&self) -> bool {
        self.all_inputs_consumed || self.outputs_at_least_inputs
    }
}

/// Monte-Carlo generation of one stage: events split into jobs with recorded seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Total events requested.
    pub events: i64,
    /// Events per job.
    pub events_per_job: i64,
    /// Seed of job 0; job k uses `seed_base + k`.
    pub seed_base: i64,
}

impl Generation {
    /// How many jobs the events split into.
    pub fn job_count(&self) -> i64 {
        (self.events + self.events_per_job - 1) / self.events_per_job
    }
}

/// One stage of a request: a subtask with everything needed to run and reproduce it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageSpec {
    /// Unique name within the request.
    pub name: String,
    /// Names of stages that must succeed first (J8).
    pub after: Vec<String>,
    /// Application name (framework program).
    pub application: Option<String>,
    /// Software release.
    pub release: String,
    /// Batch system.
    pub backend: String,
    /// How to run it.
    pub executable: Executable,
    /// Input, when not produced by parents.
    pub input: Option<InputSpec>,
    /// Monte-Carlo generation, for stages that make events.
    pub generation: Option<Generation>,
    /// Input files per job, for stages that read files.
    pub files_per_job: Option<i64>,
    /// Free-form experiment parameters, stored and hashed as given (J7).
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Slot needs.
    pub resources: Resources,
    /// Site selection.
    pub sites: Sites,
    /// When the stage is done.
    pub complete_when: Completion,
    /// Attempts per job before it counts as failed for good.
    pub max_attempts: i64,
}

/// Periodic keep-up processing (T7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keepup {
    /// Period in seconds.
    pub every_seconds: i64,
    /// Dataset watched for newly arrived files.
    pub dataset: String,
}

/// Everything that determines what runs; hashed and frozen at approval (X3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// Owning experiment.
    pub experiment: String,
    /// Kind of processing.
    pub kind: TaskKind,
    /// Input shared by first stages.
    pub input: Option<InputSpec>,
    /// Keep-up schedule, if periodic.
    pub keepup: Option<Keepup>,
    /// The stages, in file order.
    pub stages: Vec<StageSpec>,
}

impl Spec {
    /// The canonical JSON: object keys sorted, no whitespace.
    pub fn canonical_json(&self) -> String {
        let value = serde_json::to_value(self).expect("a spec always serialises");
        serde_json::to_string(&value).expect("a JSON value always serialises")
    }

    /// SHA-256 of the canonical JSON, hex-encoded: equal specs, equal hashes.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }
}

/// The descriptive part of a request: shown and editable, not part of the hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestMeta {
    /// One-line title.
    pub title: String,
    /// Queue priority, 0–1000, higher first (J14).
    pub priority: i64,
    /// Physics group (X1).
    pub physics_group: Option<String>,
    /// Free text.
    pub description: Option<String>,
}
