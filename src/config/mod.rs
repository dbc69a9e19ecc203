//! The installation's configuration: the worker's defaults and the batch
//! systems it drives, in a TOML file (`config.toml` in the platform config
//! dir, or `--config FILE`). A mistake is reported with the file, the line
//! and the key, on one line. A missing default file means the defaults:
//! the local backend only.

use crate::model::check::{CheckSpec, CredentialKind, Probe, QueueOf, Scope};
use crate::model::request_policy::{ExperimentPolicy, Policies, DEFAULT_GRACE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The worker's defaults (flags override them).
    #[serde(default)]
    pub worker: WorkerSection,
    /// A Slurm cluster; present = the `slurm` backend is used.
    pub slurm: Option<SlurmSection>,
    /// An HTCondor pool; present = the `htcondor` backend is used.
    pub htcondor: Option<HtcondorSection>,
    /// Fermilab's jobsub_lite; present = the `jobsub` backend is used.
    pub jobsub: Option<JobsubSection>,
    /// Pre-launch checks (`[[check]]`), run by the worker before submitting.
    #[serde(default, rename = "check", skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<CheckSection>,
    /// Per-experiment request policy (`[experiments.NAME]`, issue 15).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub experiments: BTreeMap<String, ExperimentSection>,
}

/// `[experiments.NAME]`: where the experiment's request scripts may come
/// from and how long an approved request waits before its first jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSection {
    /// Absolute directories a request's scripts must lie under (after
    /// resolving `..` and symlinks), e.g. the release area and a production
    /// scripts directory.
    pub script_roots: Vec<PathBuf>,
    /// Seconds from approval to the first jobs, in which the requester can
    /// still cancel (X6; default 300, 0 = at once).
    pub approval_grace_seconds: Option<u64>,
}

/// Longest grace period a section may set (a day).
const MAX_GRACE_SECONDS: u64 = 86_400;

/// `[[check]]`: one pre-launch check (P1–P4, J3, J10). `kind` says which
/// of the other keys it uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    /// A unique name.
    pub name: String,
    /// `http`, `command`, `queue`, `software`, `x509_proxy` or `token`.
    pub kind: CheckKind,
    /// Only this experiment's submissions wait for it (default: all).
    pub experiment: Option<String>,
    /// Only submissions to this backend wait for it; the backend a `queue` check counts.
    pub backend: Option<String>,
    /// Longest run in seconds (default 10).
    pub timeout_seconds: Option<u64>,
    /// Seconds a verdict holds (default 60; 0 = before every submission).
    pub every_seconds: Option<u64>,
    /// `http`: the URL.
    pub url: Option<String>,
    /// `http`: the healthy status (default 200).
    pub status: Option<u16>,
    /// `http`: a (dotted) field of the JSON body to compare.
    pub json_field: Option<String>,
    /// `http`: the field's healthy value.
    pub json_equals: Option<String>,
    /// `command`: the argument vector that must exit 0.
    pub command: Option<Vec<String>>,
    /// `queue`: most jobs queued or running in `backend`.
    pub max_depth: Option<u64>,
    /// `queue`: whose jobs are counted: HTCondor's `AccountingGroup`, Slurm's
    /// account, jobsub's group (default: from `experiment`).
    pub group: Option<String>,
    /// `queue`: the role: HTCondor's accounting subgroup, Slurm's QOS, jobsub's role.
    pub role: Option<String>,
    /// `software`: a path that must exist; `x509_proxy`, `token`: the credential's file.
    pub path: Option<PathBuf>,
    /// `software`: a program that must be on `PATH`.
    pub program: Option<String>,
    /// `x509_proxy`, `token`: hours it must still be valid (default 1).
    pub min_hours: Option<f64>,
}

/// The kinds of `[[check]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// A service's HTTP health endpoint.
    Http,
    /// A command's exit status.
    Command,
    /// A batch queue's depth against a limit.
    Queue,
    /// Software present.
    Software,
    /// An X.509 proxy's remaining lifetime.
    X509Proxy,
    /// A bearer token's remaining lifetime.
    Token,
}

impl CheckSection {
    /// The check the worker runs; an error names the key and the fix.
    pub fn spec(&self, index: usize) -> Result<CheckSpec, (String, String)> {
        let key = |k: &str| format!("check[{index}].{k}");
        let need = |k: &str| (key(k), format!("needed by kind = \"{}\"", self.kind_name()));
        let probe = match self.kind {
            CheckKind::Http => Probe::Http {
                url: self.url.clone().ok_or_else(|| need("url"))?,
                status: self.status.unwrap_or(200),
                json_field: self.json_field.clone(),
                json_equals: self.json_equals.clone(),
            },
            CheckKind::Command => Probe::Command {
                argv: self
                    .command
                    .clone()
                    .filter(|c| c.first().is_some_and(|p| !p.is_empty()))
                    .ok_or_else(|| need("command"))?,
            },
            CheckKind::Queue => Probe::QueueDepth {
                backend: self.backend.clone().ok_or_else(|| need("backend"))?,
                max: self.max_depth.ok_or_else(|| need("max_depth"))?,
                of: QueueOf {
                    experiment: self.experiment.clone(),
                    group: self.group.clone(),
                    role: self.role.clone(),
                },
            },
            CheckKind::Software => {
                if self.path.is_none() && self.program.is_none() {
                    return Err((key("path"), "name a `path` or a `program`".into()));
                }
                Probe::Software {
                    path: self.path.clone(),
                    program: self.program.clone(),
                }
            }
            CheckKind::X509Proxy | CheckKind::Token => Probe::Credential {
                kind: if self.kind == CheckKind::Token {
                    CredentialKind::BearerToken
                } else {
                    CredentialKind::X509Proxy
                },
                file: self.path.clone().ok_or_else(|| need("path"))?,
                min_hours: self.min_hours.unwrap_or(1.0),
            },
        };
        if self.timeout_seconds == Some(0) {
            return Err((key("timeout_seconds"), "must be at least 1".into()));
        }
        if let Some(backend) = &self.backend {
            if !crate::model::spec::BACKENDS.contains(&backend.as_str()) {
                return Err((
                    key("backend"),
                    format!(
                        "unknown backend; use one of {}",
                        crate::model::spec::BACKENDS.join(", ")
                    ),
                ));
            }
        }
        Ok(CheckSpec {
            name: self.name.clone(),
            scope: Scope {
                experiment: self.experiment.clone(),
                backend: self.backend.clone(),
            },
            timeout: Duration::from_secs(self.timeout_seconds.unwrap_or(10)),
            every: Duration::from_secs(self.every_seconds.unwrap_or(60)),
            probe,
        })
    }

    fn kind_name(&self) -> String {
        serde_json::to_value(self.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

impl Config {
    /// The per-experiment request policies (the file was checked when read);
    /// roots that exist are resolved as scripts are (symlinks followed).
    pub fn policies(&self) -> Policies {
        Policies::new(self.experiments.iter().map(|(name, section)| {
            let policy = ExperimentPolicy {
                script_roots: section
                    .script_roots
                    .iter()
                    .map(|root| std::fs::canonicalize(root).unwrap_or_else(|_| root.clone()))
                    .collect(),
                grace: section
                    .approval_grace_seconds
                    .map_or(DEFAULT_GRACE, Duration::from_secs),
            };
            (name.clone(), policy)
        }))
    }

    /// The configured checks, ready to run (the file was checked when read).
    pub fn check_specs(&self) -> Vec<CheckSpec> {
        self.checks
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.spec(i).ok())
            .collect()
    }
}

/// `[worker]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSection {
    /// Where job directories and outputs live.
    pub work_dir: Option<PathBuf>,
    /// Jobs the local backend runs at once.
    pub slots: Option<usize>,
    /// At most this many jobs in flight per experiment (X5).
    pub max_in_flight: Option<usize>,
    /// At most this many jobs in flight per backend (X5).
    pub max_per_backend: Option<usize>,
    /// At most this many jobs in flight per site (X5).
    pub max_per_site: Option<usize>,
    /// At most this many submissions per pass (X5).
    pub max_per_pass: Option<usize>,
}

/// `[slurm]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSection {
    /// A directory the batch nodes see at the same path.
    pub work_dir: PathBuf,
    /// The partition when a stage names no sites.
    pub partition: Option<String>,
    /// At most this many tasks of one array at once.
    pub array_limit: Option<usize>,
    /// Seconds between state queries when nothing else wakes the worker (default 5).
    pub poll_seconds: Option<u64>,
    /// The command that runs a job on a node (default: this binary's `job-run`).
    pub job_run: Option<Vec<String>>,
    /// The site recorded for its jobs (default `slurm`).
    pub site: Option<String>,
}

/// `[htcondor]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HtcondorSection {
    /// Where submit files, scripts, event logs and job output live on the submit host.
    pub work_dir: PathBuf,
    /// The directory of the `condor_*` commands (default: found on `PATH`).
    pub bin_dir: Option<PathBuf>,
    /// Seconds between state queries (default 10).
    pub poll_seconds: Option<u64>,
    /// The command that runs a job on an execute node (default: this binary's `job-run`).
    pub job_run: Option<Vec<String>>,
    /// The site recorded for jobs whose slot names none (default `htcondor`).
    pub site: Option<String>,
    /// Lines added to every submit description (accounting group, requirements, …).
    pub submit_lines: Option<Vec<String>>,
    /// Seconds a job held by HTCondor itself is left for its
    /// `periodic_release` before it is failed and removed (default 300).
    pub system_hold_grace_seconds: Option<u64>,
}

/// `[jobsub]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsubSection {
    /// Where scripts and fetched logs live on the submit host.
    pub work_dir: PathBuf,
    /// The experiment group (`-G`) every command acts as.
    pub group: String,
    /// `--role` (default `Analysis`).
    pub role: Option<String>,
    /// The directory of the `jobsub_*` commands (default: found on `PATH`).
    pub bin_dir: Option<PathBuf>,
    /// Seconds between state queries (default 30).
    pub poll_seconds: Option<u64>,
    /// The command that runs a job on a worker node (default: this binary's `job-run`).
    pub job_run: Option<Vec<String>>,
    /// The site recorded for its jobs (default `fermigrid`).
    pub site: Option<String>,
    /// Options added to every `jobsub_submit` (`--auth-methods`, `-l`, …).
    pub submit_args: Option<Vec<String>>,
}

/// A mistake in the file: where, which key, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// Its line (1 when unknown).
    pub line: usize,
    /// The key (`slurm.work_dir`); empty for the whole file.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() {
            String::new()
        } else {
            format!(" {}:", self.key)
        };
        write!(
            f,
            "{}:{}:{key} {}",
            self.file.display(),
            self.line,
            self.message
        )
    }
}

impl std::error::Error for ConfigError {}

/// The default file: `config.toml` in the platform config dir.
pub fn default_path() -> Option<PathBuf> {
    dir().map(|d| d.join("config.toml"))
}

/// The platform config dir (`~/.config/prodops`): the config file, and the
/// console's own keymaps and themes.
pub fn dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "prodops").map(|d| d.config_dir().to_path_buf())
}

/// Reads the configuration: `path` when given (it must exist), else the
/// default file when it exists, else the defaults.
pub fn load(path: Option<&Path>) -> Result<(Config, Option<PathBuf>), ConfigError> {
    let (file, required) = match path {
        Some(p) => (p.to_path_buf(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => return Ok((Config::default(), None)),
        },
    };
    match std::fs::read_to_string(&file) {
        Ok(text) => Ok((parse(&text, &file)?, Some(file))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok((Config::default(), None))
        }
        Err(e) => Err(ConfigError {
            file,
            line: 1,
            key: String::new(),
            message: format!("cannot read it: {e}"),
        }),
    }
}

/// Parses and checks the text of `file`.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let error = |line: usize, key: String, message: String| ConfigError {
        file: file.to_path_buf(),
        line,
        key,
        message,
    };
    let deserializer = toml::Deserializer::new(text);
    let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| line_at(text, s.start))
            .unwrap_or_else(|| line_of_key(text, &key));
        let key = if key == "." { String::new() } else { key };
        error(line, key, inner.message().trim().to_string())
    })?;
    check(&config).map_err(|(key, message)| error(line_of_key(text, &key), key, message))?;
    Ok(config)
}

/// Checks what the types allow but the worker cannot use.
fn check(config: &Config) -> Result<(), (String, String)> {
    let positive = |key: &str, v: Option<usize>| match v {
        Some(0) => Err((key.to_string(), "must be at least 1".to_string())),
        _ => Ok(()),
    };
    let w = &config.worker;
    positive("worker.slots", w.slots)?;
    positive("worker.max_per_pass", w.max_per_pass)?;
    let mut names = std::collections::BTreeSet::new();
    for (i, check) in config.checks.iter().enumerate() {
        check.spec(i)?;
        if !names.insert(check.name.as_str()) {
            return Err((
                format!("check[{i}].name"),
                "another check has this name".into(),
            ));
        }
    }
    for (name, section) in &config.experiments {
        check_experiment(name, section)?;
    }
    if let Some(s) = &config.slurm {
        let common = Backend {
            work_dir: &s.work_dir,
            shared: true,
            poll_seconds: s.poll_seconds,
            job_run: s.job_run.as_deref(),
            site: s.site.as_deref(),
        };
        common.check("slurm")?;
        positive("slurm.array_limit", s.array_limit)?;
    }
    if let Some(h) = &config.htcondor {
        let common = Backend {
            work_dir: &h.work_dir,
            shared: false,
            poll_seconds: h.poll_seconds,
            job_run: h.job_run.as_deref(),
            site: h.site.as_deref(),
        };
        common.check("htcondor")?;
    }
    if let Some(j) = &config.jobsub {
        let common = Backend {
            work_dir: &j.work_dir,
            shared: false,
            poll_seconds: j.poll_seconds,
            job_run: j.job_run.as_deref(),
            site: j.site.as_deref(),
        };
        common.check("jobsub")?;
        let word = |v: &str| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        };
        if !word(&j.group) {
            return Err((
                "jobsub.group".into(),
                "name the experiment group, e.g. \"mu2e\"".into(),
            ));
        }
        if j.role.as_deref().is_some_and(|r| !word(r)) {
            return Err((
                "jobsub.role".into(),
                "name a role, e.g. \"Production\"".into(),
            ));
        }
    }
    Ok(())
}

/// Checks one `[experiments.NAME]` section.
fn check_experiment(name: &str, section: &ExperimentSection) -> Result<(), (String, String)> {
    let key = |k: &str| format!("experiments.{name}.{k}");
    if let Err(e) = crate::model::request::check_name("experiments", name) {
        return Err((format!("experiments.{name}"), e.message));
    }
    if section.script_roots.is_empty() {
        return Err((
            key("script_roots"),
            "list at least one directory, e.g. [\"/cvmfs/nova.opensciencegrid.org\"]".into(),
        ));
    }
    if let Some(root) = section.script_roots.iter().find(|r| !r.is_absolute()) {
        return Err((
            key("script_roots"),
            format!("`{}` must be an absolute directory", root.display()),
        ));
    }
    if section
        .approval_grace_seconds
        .is_some_and(|s| s > MAX_GRACE_SECONDS)
    {
        return Err((
            key("approval_grace_seconds"),
            format!("must be at most {MAX_GRACE_SECONDS} (a day); 0 starts at approval"),
        ));
    }
    Ok(())
}

/// The settings every batch-system section has.
struct Backend<'a> {
    work_dir: &'a Path,
    /// The batch nodes read the work directory (else only the submit host).
    shared: bool,
    poll_seconds: Option<u64>,
    job_run: Option<&'a [String]>,
    site: Option<&'a str>,
}

impl Backend<'_> {
    /// Checks them for section `name`.
    fn check(&self, name: &str) -> Result<(), (String, String)> {
        let key = |k: &str| format!("{name}.{k}");
        if !self.work_dir.is_absolute() {
            let message = if self.shared {
                "must be an absolute path the batch nodes share"
            } else {
                "must be an absolute path on the submit host"
            };
            return Err((key("work_dir"), message.into()));
        }
        if self.poll_seconds == Some(0) {
            return Err((key("poll_seconds"), "must be at least 1".into()));
        }
        if self
            .job_run
            .is_some_and(|c| c.is_empty() || c[0].is_empty())
        {
            return Err((
                key("job_run"),
                "name a command, e.g. [\"/usr/local/bin/prodops\", \"job-run\"]".into(),
            ));
        }
        if self.site.is_some_and(|site| site.trim().is_empty()) {
            return Err((key("site"), "must not be empty".into()));
        }
        Ok(())
    }
}

/// The line (from 0) where table `part` starts: `[name]`, or the n-th
/// `[[name]]` for `name[n]`.
fn table_line(text: &str, part: &str) -> Option<usize> {
    let Some((name, index)) = part
        .strip_suffix(']')
        .and_then(|p| p.split_once('['))
        .and_then(|(name, n)| Some((name, n.parse::<usize>().ok()?)))
    else {
        return text.lines().position(|l| l.trim() == format!("[{part}]"));
    };
    let header = format!("[[{name}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .nth(index)
        .map(|(i, _)| i)
}

/// The line (from 1) of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where the last part of `key` (`slurm.work_dir` → `work_dir`) is
/// set, or where its table starts; 1 when neither is found.
fn line_of_key(text: &str, key: &str) -> usize {
    let parts: Vec<&str> = key.split('.').filter(|p| !p.is_empty()).collect();
    let table = (1..=parts.len())
        .rev()
        .find_map(|n| table_line(text, &parts[..n].join(".")));
    let leaf = parts.last().copied().unwrap_or("");
    let from = table.unwrap_or(0);
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, l)| l.trim_start().starts_with(leaf) && l.contains('='))
        .map(|(i, _)| i)
        .or(table)
        .map(|i| i + 1)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, Path::new("/etc/prodops.toml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_full_file_reads_into_sections() {
        let config = parse(
            "[worker]\nslots = 4\nmax_in_flight = 200\n\n[slurm]\nwork_dir = \"/shared/slurm\"\npartition = \"debug\"\narray_limit = 50\npoll_seconds = 2\njob_run = [\"/usr/local/bin/prodops\", \"job-run\"]\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(config.worker.slots, Some(4));
        let slurm = config.slurm.unwrap();
        assert_eq!(slurm.work_dir, PathBuf::from("/shared/slurm"));
        assert_eq!(slurm.array_limit, Some(50));
        let pools = parse(
            "[htcondor]\nwork_dir = \"/h\"\nsubmit_lines = [\"+AccountingGroup = \\\"mu2e\\\"\"]\n[jobsub]\nwork_dir = \"/j\"\ngroup = \"mu2e\"\nrole = \"Production\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(
            pools.htcondor.unwrap().submit_lines,
            Some(vec!["+AccountingGroup = \"mu2e\"".to_string()])
        );
        assert_eq!(pools.jobsub.unwrap().role.as_deref(), Some("Production"));
        let checked = parse(
            "[[check]]\nname = \"samweb\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/health\"\nexperiment = \"mu2e\"\nevery_seconds = 0\n\n[[check]]\nname = \"proxy\"\nkind = \"x509_proxy\"\npath = \"/tmp/x509up_u1000\"\nmin_hours = 12\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let specs = checked.check_specs();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].every, Duration::ZERO);
        assert_eq!(specs[0].scope.experiment.as_deref(), Some("mu2e"));
        assert_eq!(
            specs[1].probe,
            Probe::Credential {
                kind: CredentialKind::X509Proxy,
                file: PathBuf::from("/tmp/x509up_u1000"),
                min_hours: 12.0
            }
        );
        assert_eq!(parse("", Path::new("c.toml")).unwrap(), Config::default());
    }

    #[test]
    fn experiment_sections_give_script_roots_and_a_grace_of_300_seconds_by_default() {
        let config = parse(
            "[experiments.nova]\nscript_roots = [\"/cvmfs/nova\", \"/exp/prod/scripts\"]\n\n[experiments.dune]\nscript_roots = [\"/cvmfs/dune\"]\napproval_grace_seconds = 0\n",
            Path::new("c.toml"),
        )
        .unwrap();
        let policies = config.policies();
        let nova = policies.of("nova").unwrap();
        assert_eq!(
            nova.script_roots,
            [
                PathBuf::from("/cvmfs/nova"),
                PathBuf::from("/exp/prod/scripts")
            ]
        );
        assert_eq!(nova.grace, Duration::from_secs(300));
        assert_eq!(policies.grace_for("dune"), Duration::ZERO);
        assert!(policies.of("mu2e").is_none());
    }

    #[test]
    fn mistakes_name_the_file_line_and_key() {
        assert_eq!(
            err("[worker]\nslots = 4\nsolts = 5\n"),
            "/etc/prodops.toml:3: worker.solts: unknown field `solts`, expected one of `work_dir`, `slots`, `max_in_flight`, `max_per_backend`, `max_per_site`, `max_per_pass`"
        );
        assert_eq!(
            err("[worker]\nslots = \"four\"\n"),
            "/etc/prodops.toml:2: worker.slots: invalid type: string \"four\", expected usize"
        );
        assert_eq!(
            err("[slurm]\npartition = \"debug\"\nwork_dir = \"shared\"\n"),
            "/etc/prodops.toml:3: slurm.work_dir: must be an absolute path the batch nodes share"
        );
        assert_eq!(
            err("[slurm]\nwork_dir = \"/s\"\narray_limit = 0\n"),
            "/etc/prodops.toml:3: slurm.array_limit: must be at least 1"
        );
        assert_eq!(
            err("[jobsub]\nwork_dir = \"/j\"\ngroup = \"mu2e; rm\"\n"),
            "/etc/prodops.toml:3: jobsub.group: name the experiment group, e.g. \"mu2e\""
        );
        assert_eq!(
            err("[htcondor]\nwork_dir = \"/h\"\npoll_seconds = 0\n"),
            "/etc/prodops.toml:3: htcondor.poll_seconds: must be at least 1"
        );
        assert_eq!(
            err("[[check]]\nname = \"a\"\nkind = \"command\"\ncommand = [\"true\"]\n\n[[check]]\nname = \"sam\"\nkind = \"http\"\nstatus = 200\n"),
            "/etc/prodops.toml:6: check[1].url: needed by kind = \"http\""
        );
        assert_eq!(
            err("[[check]]\nname = \"t\"\nkind = \"token\"\npath = \"/t\"\nmin_hourz = 2\n"),
            "/etc/prodops.toml:5: check[0].min_hourz: unknown field `min_hourz`, expected one of `name`, `kind`, `experiment`, `backend`, `timeout_seconds`, `every_seconds`, `url`, `status`, `json_field`, `json_equals`, `command`, `max_depth`, `group`, `role`, `path`, `program`, `min_hours`"
        );
        assert_eq!(
            err("[experiments.nova]\nscript_roots = [\"/cvmfs/nova\", \"scripts\"]\n"),
            "/etc/prodops.toml:2: experiments.nova.script_roots: `scripts` must be an absolute directory"
        );
        assert_eq!(
            err("[worker]\nslots = 1\n\n[experiments.nova]\nscript_roots = [\"/p\"]\napproval_grace_seconds = 90000\n"),
            "/etc/prodops.toml:6: experiments.nova.approval_grace_seconds: must be at most 86400 (a day); 0 starts at approval"
        );
        assert_eq!(
            err("[experiments.nova]\nscript_roots = []\n"),
            "/etc/prodops.toml:2: experiments.nova.script_roots: list at least one directory, e.g. [\"/cvmfs/nova.opensciencegrid.org\"]"
        );
        assert!(
            err("[experiments.nova]\nscript_roots = [\"/p\"]\ngrace = 5\n")
                .starts_with("/etc/prodops.toml:3: experiments.nova.grace: unknown field `grace`"),
        );
        assert!(err("[worker\nslots = 1").starts_with("/etc/prodops.toml:1:"));
        assert!(err("[slurm]\npartition = \"x\"\n").contains("missing field `work_dir`"));
    }
}
