//! Per-experiment policy for requests (issue 15): the roots a request's
//! scripts may come from, and the grace period between approval and the
//! first jobs (X6). Pure data and rules; the files are read by `ops`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The grace period of an experiment whose section does not set one: time
/// for the requester to back out before any job exists.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(300);

/// Largest script shipped with each job (its approved copy travels in
/// every job's spec, hex-encoded).
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;

/// One experiment's policy, from its `[experiments.NAME]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExperimentPolicy {
    /// Directories a script may lie under (after resolving `..` and symlinks).
    pub script_roots: Vec<PathBuf>,
    /// Time from approval to the first split.
    pub grace: Duration,
}

/// Every experiment's policy; an experiment without one gets [`Policies::roots_for`]'s
/// default (the request's directory and the current one) and no grace period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policies {
    by_experiment: BTreeMap<String, ExperimentPolicy>,
}

/// Where a request's scripts may come from, and why (for the error that names them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptRoots {
    /// The allowed directories.
    pub roots: Vec<PathBuf>,
    /// True when they are the configured ones; false for the default (the
    /// request's directory and the current one).
    pub configured: bool,
}

impl Policies {
    /// Policies from `(experiment, policy)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (String, ExperimentPolicy)>) -> Policies {
        Policies {
            by_experiment: pairs.into_iter().collect(),
        }
    }

    /// The configured policy of `experiment`, if it has one.
    pub fn of(&self, experiment: &str) -> Option<&ExperimentPolicy> {
        self.by_experiment.get(experiment)
    }

    /// The roots a script of `experiment` may come from: the configured
    /// ones, else where the filer works: `request_dir` (the request file's
    /// directory) and `current_dir`.
    pub fn roots_for(
        &self,
        experiment: &str,
        request_dir: &Path,
        current_dir: &Path,
    ) -> ScriptRoots {
        match self.of(experiment) {
            Some(p) => ScriptRoots {
                roots: p.script_roots.clone(),
                configured: true,
            },
            None => {
                let roots = if request_dir.starts_with(current_dir) {
                    vec![current_dir.to_path_buf()]
                } else if current_dir.starts_with(request_dir) {
                    vec![request_dir.to_path_buf()]
                } else {
                    vec![request_dir.to_path_buf(), current_dir.to_path_buf()]
                };
                ScriptRoots {
                    roots,
                    configured: false,
                }
            }
        }
    }

    /// The grace period of `experiment`: its section's, else none (an
    /// experiment without a policy starts at approval, as before).
    pub fn grace_for(&self, experiment: &str) -> Duration {
        self.of(experiment).map_or(Duration::ZERO, |p| p.grace)
    }
}

impl ScriptRoots {
    /// True when `resolved` (an absolute path with `..` and symlinks
    /// resolved) lies under one of the roots (each resolved the same way).
    pub fn contain(&self, resolved: &Path) -> bool {
        self.roots.iter().any(|root| resolved.starts_with(root))
    }

    /// The roots as the refusal names them, with where they come from.
    pub fn describe(&self, experiment: &str) -> String {
        let list: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        if self.configured {
            format!(
                "{} (script_roots of [experiments.{experiment}])",
                list.join(", ")
            )
        } else {
            format!(
                "{} (the request's directory and the current one; an admin can allow others with script_roots in [experiments.{experiment}])",
                list.join(", ")
            )
        }
    }
}

/// True while a campaign approved to start at `start_after_ms` must wait at `now_ms`.
pub fn in_grace(start_after_ms: Option<i64>, now_ms: i64) -> bool {
    start_after_ms.is_some_and(|at| now_ms < at)
}

/// A countdown as the console shows it: `4:12`, `1:02:03`.
pub fn countdown(remaining_ms: i64) -> String {
    let s = (remaining_ms.max(0) + 999) / 1000;
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies() -> Policies {
        Policies::new([(
            "nova".to_string(),
            ExperimentPolicy {
                script_roots: vec!["/cvmfs/nova".into(), "/exp/prod/scripts".into()],
                grace: Duration::from_secs(60),
            },
        )])
    }

    #[test]
    fn configured_roots_contain_paths_below_them_only() {
        let roots = policies().roots_for("nova", Path::new("/home/ed"), Path::new("/home/ed"));
        assert!(roots.contain(Path::new("/cvmfs/nova/v1/gen.sh")));
        assert!(roots.contain(Path::new("/exp/prod/scripts/sim.sh")));
        assert!(!roots.contain(Path::new("/home/ed/gen.sh")));
        assert!(
            !roots.contain(Path::new("/cvmfs/nova2/gen.sh")),
            "a sibling sharing a prefix is outside"
        );
        assert!(roots
            .describe("nova")
            .contains("/cvmfs/nova, /exp/prod/scripts"));
    }

    #[test]
    fn an_experiment_without_a_section_allows_the_request_and_current_directories_and_no_grace() {
        let roots = policies().roots_for("dune", Path::new("/home/ed/req"), Path::new("/work"));
        assert!(roots.contain(Path::new("/home/ed/req/scripts/gen.sh")));
        assert!(roots.contain(Path::new("/work/scripts/gen.sh")));
        assert!(!roots.contain(Path::new("/home/ed/other/gen.sh")));
        assert!(!roots.contain(Path::new("/etc/passwd")));
        let nested = policies().roots_for("dune", Path::new("/work/req"), Path::new("/work"));
        assert_eq!(
            nested.roots,
            [PathBuf::from("/work")],
            "the current directory holds it"
        );
        assert!(roots.describe("dune").contains("[experiments.dune]"));
        assert_eq!(policies().grace_for("dune"), Duration::ZERO);
        assert_eq!(policies().grace_for("nova"), Duration::from_secs(60));
    }

    #[test]
    fn x6_a_campaign_waits_until_its_start_and_the_countdown_rounds_up() {
        assert!(in_grace(Some(10_000), 9_999));
        assert!(!in_grace(Some(10_000), 10_000));
        assert!(!in_grace(None, 0));
        assert_eq!(countdown(252_000), "4:12");
        assert_eq!(countdown(251_001), "4:12");
        assert_eq!(countdown(3_723_000), "1:02:03");
        assert_eq!(countdown(-5), "0:00");
    }
}
