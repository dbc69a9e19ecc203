//! The contract between the worker and the job side (M10).
//!
//! The worker writes a [`JobRunSpec`] as `job.json` into the job's working
//! directory; `prodops job-run` executes it as named stages and writes one
//! [`StageEvent`] per line to `stages.jsonl` and a [`JobResult`] to
//! `result.json`. Scripts may open stages of their own by printing marker lines
//! (see [`STAGE_MARKER`], [`EVENTS_MARKER`]).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A script line `PRODOPS_STAGE <name>` ends the current stage and starts `<name>`.
pub const STAGE_MARKER: &str = "PRODOPS_STAGE";
/// A script line `PRODOPS_EVENTS <n>` reports `n` more events produced.
pub const EVENTS_MARKER: &str = "PRODOPS_EVENTS";

/// File names inside a job's working directory.
pub mod files {
    /// The spec the worker wrote.
    pub const SPEC: &str = "job.json";
    /// One stage event per line.
    pub const STAGES: &str = "stages.jsonl";
    /// The final result, written last.
    pub const RESULT: &str = "result.json";
    /// Standard output of the job.
    pub const STDOUT: &str = "stdout.log";
    /// Standard error of the job.
    pub const STDERR: &str = "stderr.log";
}

/// Everything `prodops job-run` needs to execute one job attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRunSpec {
    /// Our job id.
    pub job: i64,
    /// Attempt number, from 1.
    pub attempt: i64,
    /// The script to run in the `run` stage.
    pub executable: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for the script (seed, events, …).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Input files, copied into `in/` by the `stage-in` stage.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// A tarball unpacked into the working directory by the `unpack` stage.
    #[serde(default)]
    pub tarball: Option<String>,
    /// The approved copy of the script, shipped with the job: the `unpack`
    /// stage writes it into the working directory and `run` runs it instead
    /// of the live file `executable` names (issue 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<ShippedScript>,
    /// Where `copy-out` moves the files the script left in `out/`.
    pub output_dir: String,
    /// Memory limit in MB: the job is killed and marked out-of-memory above it.
    pub memory_mb: i64,
    /// Wall-time limit in seconds: the job is killed above it.
    pub wall_seconds: i64,
}

/// A script's approved content as it travels in `job.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedScript {
    /// SHA-256 of the content (hex), checked before it runs.
    pub sha256: String,
    /// The content, hex-encoded (a script may be any bytes).
    pub content_hex: String,
}

impl ShippedScript {
    /// The script `content`, named by its hash.
    pub fn of(sha256: &str, content: &[u8]) -> ShippedScript {
        ShippedScript {
            sha256: sha256.to_string(),
            content_hex: hex::encode(content),
        }
    }

    /// The content, when it decodes and matches its hash.
    pub fn content(&self) -> Result<Vec<u8>, String> {
        use sha2::Digest;
        let content = hex::decode(&self.content_hex)
            .map_err(|e| format!("the shipped script is not hex: {e}"))?;
        let hash = hex::encode(sha2::Sha256::digest(&content));
        if hash != self.sha256 {
            return Err(format!(
                "the shipped script's content has sha256 {hash}, not the approved {}",
                self.sha256
            ));
        }
        Ok(content)
    }
}

/// One line of `stages.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StageEvent {
    /// A stage began.
    Start {
        /// Stage name (`stage-in`, `unpack`, `run`, `copy-out` or a script's own).
        stage: String,
        /// When, ms since the epoch.
        ts_ms: i64,
    },
    /// A stage ended, with what it used.
    End {
        /// Stage name.
        stage: String,
        /// When, ms since the epoch.
        ts_ms: i64,
        /// Wall time of the stage, ms.
        wall_ms: i64,
        /// CPU time (user + system) of the stage, ms.
        cpu_ms: i64,
        /// Peak resident memory during the stage, KiB.
        max_rss_kb: i64,
        /// True when the stage succeeded.
        ok: bool,
    },
}

/// An output file the job produced, after copy-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// File name.
    pub name: String,
    /// Full path after copy-out.
    pub path: String,
    /// Size in bytes.
    pub size: i64,
}

/// `result.json`: how the job ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// Exit code of the script, if it exited.
    pub exit_code: Option<i64>,
    /// Signal that killed the script, if any.
    pub signal: Option<i64>,
    /// Killed for exceeding `memory_mb`.
    pub oom: bool,
    /// Killed for exceeding `wall_seconds`.
    pub timed_out: bool,
    /// The stage that failed, if one did.
    pub failed_stage: Option<String>,
    /// Events reported with `PRODOPS_EVENTS` markers, if any.
    pub events: Option<i64>,
    /// Files moved out by `copy-out`.
    pub outputs: Vec<OutputFile>,
    /// Host the job ran on.
    pub node: String,
    /// Start, ms since the epoch.
    pub start_ms: i64,
    /// End, ms since the epoch.
    pub end_ms: i64,
}

impl JobResult {
    /// The result of a job starting now on `node`, before anything ran.
    pub fn starting(node: String) -> JobResult {
        JobResult {
            exit_code: None,
            signal: None,
            oom: false,
            timed_out: false,
            failed_stage: None,
            events: None,
            outputs: Vec::new(),
            node,
            start_ms: chrono::Utc::now().timestamp_millis(),
            end_ms: 0,
        }
    }

    /// True when every stage succeeded.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
            && self.signal.is_none()
            && !self.oom
            && !self.timed_out
            && self.failed_stage.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shipped_script_runs_only_when_its_content_matches_the_approved_hash() {
        use sha2::Digest;
        let content = b"#!/bin/sh\necho approved\n";
        let hash = hex::encode(sha2::Sha256::digest(content));
        let shipped = ShippedScript::of(&hash, content);
        assert_eq!(shipped.content().unwrap(), content);
        let tampered = ShippedScript {
            content_hex: hex::encode(b"#!/bin/sh\necho other\n"),
            ..shipped
        };
        let e = tampered.content().unwrap_err();
        assert!(e.contains(&format!("not the approved {hash}")), "{e}");
    }
}
