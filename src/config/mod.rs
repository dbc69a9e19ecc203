//! The installation's configuration: the worker's defaults and the batch
//! systems it drives, in a TOML file (`config.toml` in the platform config
//! dir, or `--config FILE`). A mistake is reported with the file, the line
//! and the key, on one line. A missing default file means the defaults:
//! the local backend only.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The worker's defaults (flags override them).
    #[serde(default)]
    pub worker: WorkerSection,
    /// A Slurm cluster; present = the `slurm` backend is used.
    pub slurm: Option<SlurmSection>,
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
    if let Some(s) = &config.slurm {
        if !s.work_dir.is_absolute() {
            return Err((
                "slurm.work_dir".into(),
                "must be an absolute path the batch nodes share".into(),
            ));
        }
        positive("slurm.array_limit", s.array_limit)?;
        if s.poll_seconds == Some(0) {
            return Err(("slurm.poll_seconds".into(), "must be at least 1".into()));
        }
        if s.job_run
            .as_ref()
            .is_some_and(|c| c.is_empty() || c[0].is_empty())
        {
            return Err((
                "slurm.job_run".into(),
                "name a command, e.g. [\"/usr/local/bin/prodops\", \"job-run\"]".into(),
            ));
        }
        if s.site.as_deref().is_some_and(|site| site.trim().is_empty()) {
            return Err(("slurm.site".into(), "must not be empty".into()));
        }
    }
    Ok(())
}

/// The line (from 1) of byte `offset` in `text`.
fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where the last part of `key` (`slurm.work_dir` → `work_dir`) is
/// set, or where its table starts; 1 when neither is found.
fn line_of_key(text: &str, key: &str) -> usize {
    let parts: Vec<&str> = key.split('.').filter(|p| !p.is_empty()).collect();
    let table = parts
        .first()
        .and_then(|t| text.lines().position(|l| l.trim() == format!("[{t}]")));
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
        assert_eq!(parse("", Path::new("c.toml")).unwrap(), Config::default());
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
        assert!(err("[worker\nslots = 1").starts_with("/etc/prodops.toml:1:"));
        assert!(err("[slurm]\npartition = \"x\"\n").contains("missing field `work_dir`"));
    }
}
