//! `prodops bench`: named scenarios that measure prodops on this machine,
//! beside the tools users would otherwise pick where there are such tools,
//! and check their own results (a benchmark that did not do the work fails
//! loudly instead of printing a figure).
//!
//! Each round of a scenario runs in a fresh child process
//! (`prodops bench --round NAME`), so memory figures are that scenario's own;
//! the parent prints the median of every figure over the rounds, with the
//! scenario's targets. See `docs/performance.md` for the workloads.

pub mod console;
mod dag;
mod ingest;
mod peers;
mod reconcile;
mod schedule;
mod slurm;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The scenarios, by the names the command line takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// 1000 trivial jobs in 100 chains of 10, 2 at a time, against make, Snakemake, Luigi.
    #[value(name = "dag-1000")]
    Dag1000,
    /// Job status and stage events written per second, on SQLite and PostgreSQL.
    Ingest,
    /// One worker pass over 100,000 active jobs reported by a stand-in batch system.
    #[value(name = "reconcile-100k")]
    Reconcile100k,
    /// The console over 1,000,000 jobs: first frame, frame times, memory.
    #[value(name = "console-1m")]
    Console1m,
    /// Readiness of a 10,000-node random DAG after each completion.
    #[value(name = "dag-schedule")]
    DagSchedule,
    /// 1000 trivial jobs through Slurm, prodops against a bare `sbatch --array`.
    #[value(name = "slurm-1000")]
    Slurm1000,
}

impl Scenario {
    /// The scenarios run when none is named, in order (`slurm-1000` only
    /// where a Slurm cluster answers, see [`default_scenarios`]).
    pub const ALL: [Scenario; 6] = [
        Scenario::Dag1000,
        Scenario::Ingest,
        Scenario::Reconcile100k,
        Scenario::Console1m,
        Scenario::DagSchedule,
        Scenario::Slurm1000,
    ];

    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Dag1000 => "dag-1000",
            Scenario::Ingest => "ingest",
            Scenario::Reconcile100k => "reconcile-100k",
            Scenario::Console1m => "console-1m",
            Scenario::DagSchedule => "dag-schedule",
            Scenario::Slurm1000 => "slurm-1000",
        }
    }
}

/// How the suite runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Options {
    /// Smaller sizes and no peers (for CI: the benchmarks must not rot).
    pub quick: bool,
    /// Rounds per scenario; medians are reported.
    pub rounds: usize,
    /// A Python venv holding `snakemake` and `luigi` (see `scripts/bench.sh`).
    pub peers: Option<PathBuf>,
    /// A PostgreSQL server for the `ingest` scenario (a schema is made and dropped).
    pub pg: Option<String>,
}

/// A bound a figure should keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// At most this.
    AtMost(f64),
    /// At least this.
    AtLeast(f64),
}

impl Target {
    /// True when `value` keeps the bound.
    pub fn met_by(self, value: f64) -> bool {
        match self {
            Target::AtMost(bound) => value <= bound,
            Target::AtLeast(bound) => value >= bound,
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// What it is.
    pub name: String,
    /// Its value (the median over the rounds, in a report).
    pub value: f64,
    /// Its unit (`s`, `ms`, `MiB`, `×`, `events/s`).
    pub unit: String,
    /// The bound it should keep, if any.
    pub target: Option<Target>,
}

impl Figure {
    /// A figure without a target.
    pub fn new(name: &str, value: f64, unit: &str) -> Figure {
        Figure {
            name: name.to_string(),
            value,
            unit: unit.to_string(),
            target: None,
        }
    }

    /// The same figure with a target.
    pub fn target(self, target: Target) -> Figure {
        Figure {
            target: Some(target),
            ..self
        }
    }
}

/// What one round of a scenario measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The figures.
    pub figures: Vec<Figure>,
    /// What was left out and why (a peer that is not installed).
    pub notes: Vec<String>,
}

/// A scenario's figures, medians over its rounds.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Its name.
    pub scenario: &'static str,
    /// Rounds run.
    pub rounds: usize,
    /// Medians, with whether each met its target.
    pub figures: Vec<ReportedFigure>,
    /// What was left out and why.
    pub notes: Vec<String>,
}

/// A figure in a report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportedFigure {
    /// The median figure.
    #[serde(flatten)]
    pub figure: Figure,
    /// Whether it met its target (`None` without one).
    pub met: Option<bool>,
}

/// The whole suite's report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Cores of this machine.
    pub cores: usize,
    /// When it started (RFC 3339, UTC).
    pub date: String,
    /// Smaller sizes, no peers.
    pub quick: bool,
    /// The scenarios run.
    pub scenarios: Vec<ScenarioReport>,
}

/// Runs `scenarios` (all when empty), each round in a child process of
/// `exe`, and gathers the medians.
pub fn run(exe: &Path, scenarios: &[Scenario], options: &Options) -> anyhow::Result<Report> {
    let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let chosen: Vec<Scenario> = if scenarios.is_empty() {
        default_scenarios()
    } else {
        scenarios.to_vec()
    };
    let mut reports = Vec::new();
    for scenario in chosen {
        let rounds: Vec<Round> = (0..options.rounds.max(1))
            .map(|_| run_round_in_child(exe, scenario, options))
            .collect::<anyhow::Result<_>>()
            .with_context(|| format!("scenario {}", scenario.name()))?;
        let mut report = summarise(scenario, &rounds);
        if options.quick {
            drop_targets(&mut report);
        }
        reports.push(report);
    }
    Ok(Report {
        cores: cores(),
        date,
        quick: options.quick,
        scenarios: reports,
    })
}

/// Every scenario, less `slurm-1000` where no Slurm cluster answers (with a
/// note saying so). In CI (`CI=true`) there must be one: it stays, and its
/// round fails saying how to start the cluster.
fn default_scenarios() -> Vec<Scenario> {
    let in_ci = std::env::var("CI").as_deref() == Ok("true");
    Scenario::ALL
        .into_iter()
        .filter(|&scenario| {
            if scenario != Scenario::Slurm1000 || in_ci {
                return true;
            }
            match slurm::check_slurm_up() {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("NOTE: slurm-1000 skipped: {e:#}");
                    false
                }
            }
        })
        .collect()
}

/// Runs one round of `scenario` in a fresh `prodops bench --round` process.
fn run_round_in_child(exe: &Path, scenario: Scenario, options: &Options) -> anyhow::Result<Round> {
    let mut cmd = Command::new(exe);
    cmd.args(["bench", "--round", scenario.name()]);
    if options.quick {
        cmd.arg("--quick");
    }
    if let Some(peers) = &options.peers {
        cmd.arg("--peers").arg(peers);
    }
    if let Some(pg) = &options.pg {
        cmd.arg("--pg").arg(pg);
    }
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !out.status.success() {
        bail!("the round failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("the round printed no figures")
}

/// Runs one round of `scenario` in this process, in a fresh temporary
/// directory removed afterwards (`prodops bench --round`).
pub async fn round(scenario: Scenario, options: &Options) -> anyhow::Result<Round> {
    let dir = std::env::temp_dir().join(format!(
        "prodops-bench-{}-{}",
        scenario.name(),
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    let result = match scenario {
        Scenario::Dag1000 => dag::round(&dir, options).await,
        Scenario::Ingest => ingest::round(&dir, options).await,
        Scenario::Reconcile100k => reconcile::round(&dir, options).await,
        Scenario::Console1m => console::round(&dir, options).await,
        Scenario::DagSchedule => schedule::round(options),
        Scenario::Slurm1000 => slurm::round(&dir, options).await,
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Medians of each figure (by name, in first-seen order) over the rounds.
fn summarise(scenario: Scenario, rounds: &[Round]) -> ScenarioReport {
    let mut names: Vec<&Figure> = Vec::new();
    for figure in rounds.iter().flat_map(|r| &r.figures) {
        if !names.iter().any(|f| f.name == figure.name) {
            names.push(figure);
        }
    }
    let figures = names
        .into_iter()
        .map(|first| {
            let values: Vec<f64> = rounds
                .iter()
                .flat_map(|r| &r.figures)
                .filter(|f| f.name == first.name)
                .map(|f| f.value)
                .collect();
            let figure = Figure {
                value: median(values),
                ..first.clone()
            };
            ReportedFigure {
                met: figure.target.map(|t| t.met_by(figure.value)),
                figure,
            }
        })
        .collect();
    let mut notes: Vec<String> = Vec::new();
    for note in rounds.iter().flat_map(|r| &r.notes) {
        if !notes.contains(note) {
            notes.push(note.clone());
        }
    }
    ScenarioReport {
        scenario: scenario.name(),
        rounds: rounds.len(),
        figures,
        notes,
    }
}

/// Targets are set for the full sizes: a quick run shows none.
fn drop_targets(report: &mut ScenarioReport) {
    for f in &mut report.figures {
        f.figure.target = None;
        f.met = None;
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The report as a table for people.
pub fn table(report: &Report) -> String {
    let mut out = format!(
        "prodops bench · {} cores · {}{}\n\n",
        report.cores,
        report.date,
        if report.quick {
            " · --quick (smaller sizes, no peers)"
        } else {
            ""
        }
    );
    out += &format!(
        "{:<18} {:<46} {:>16}  {:<12} {}\n",
        "scenario", "figure (median)", "value", "target", ""
    );
    for s in &report.scenarios {
        for (i, f) in s.figures.iter().enumerate() {
            let label = if i == 0 {
                format!("{} ×{}", s.scenario, s.rounds)
            } else {
                String::new()
            };
            let target = f
                .figure
                .target
                .map(|t| match t {
                    Target::AtMost(b) => format!("≤ {}", number(b)),
                    Target::AtLeast(b) => format!("≥ {}", number(b)),
                })
                .unwrap_or_default();
            let verdict = match f.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            };
            out += &format!(
                "{:<18} {:<46} {:>16}  {:<12} {}\n",
                label,
                f.figure.name,
                format!("{} {}", number(f.figure.value), f.figure.unit),
                target,
                verdict
            );
        }
        for note in &s.notes {
            out += &format!("{:<18} note: {note}\n", "");
        }
    }
    out
}

/// A number with as many digits as it needs.
fn number(v: f64) -> String {
    let a = v.abs();
    if a >= 10_000.0 {
        format!("{:.0}", v)
    } else if a >= 100.0 {
        format!("{:.1}", v)
    } else if a >= 1.0 {
        format!("{:.2}", v)
    } else {
        format!("{:.3}", v)
    }
}

/// Cores of this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A field (in KiB) of `/proc/<pid>/status`, such as `VmRSS` or `VmHWM`, in MB.
fn status_mb(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024.0 / 1e6)
}

/// Forgets this process's peak resident memory so far (`VmHWM`), so the
/// next reading is the peak of what follows.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Fails unless campaign `id` succeeded with all `jobs` jobs `succeeded`.
async fn check_campaign_succeeded(
    store: &crate::store::Store,
    ops: &crate::ops::Ops,
    id: crate::model::ids::CampaignId,
    jobs: usize,
) -> anyhow::Result<()> {
    let state = ops.campaign(id).await?.request.state;
    anyhow::ensure!(state == "succeeded", "the campaign ended `{state}`");
    let succeeded =
        crate::store::seed::jobs_in_state(store, crate::model::state::JobState::Succeeded).await?;
    anyhow::ensure!(
        succeeded as usize == jobs,
        "{succeeded} of {jobs} jobs succeeded"
    );
    Ok(())
}

/// The user, experiment and grants every scenario's database starts with.
async fn bench_ops(store: &crate::store::Store) -> anyhow::Result<crate::ops::Ops> {
    use crate::model::request_policy::{ExperimentPolicy, Policies};
    use crate::model::role::{Grant, Role};
    let runs_system_programs = ExperimentPolicy {
        script_roots: vec!["/".into()],
        grace: std::time::Duration::ZERO,
    };
    let ops = crate::ops::Ops::new(store.clone(), crate::ops::Actor::named("bench"))
        .with_policies(Policies::new([("bench".into(), runs_system_programs)]));
    let grant = |role, experiment: &str| Grant {
        role,
        experiment: experiment.to_string(),
        kind: None,
    };
    ops.user_add("bench", &grant(Role::Operator, "*"), None, None)
        .await?;
    ops.experiment_add("bench", &[]).await?;
    ops.user_add("bench", &grant(Role::Approver, "bench"), None, None)
        .await?;
    Ok(ops)
}

/// Files and approves the request `toml` (written to `dir/request.toml`).
async fn file_and_approve(
    ops: &crate::ops::Ops,
    dir: &Path,
    toml: &str,
) -> anyhow::Result<crate::model::ids::CampaignId> {
    let path = dir.join("request.toml");
    std::fs::write(&path, toml)?;
    let id: crate::model::ids::CampaignId = ops.request_new(&path).await?.summary.id.parse()?;
    ops.approve(id, "bench").await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_are_taken_per_figure_and_targets_judged_on_them() {
        let round = |v: f64| Round {
            figures: vec![
                Figure::new("wall", v, "s").target(Target::AtMost(2.0)),
                Figure::new("rate", 10.0 * v, "events/s").target(Target::AtLeast(25.0)),
            ],
            notes: vec!["luigi skipped".into(), "snakemake skipped".into()],
        };
        let report = summarise(Scenario::Ingest, &[round(1.0), round(3.0), round(2.5)]);
        assert_eq!(report.figures[0].figure.value, 2.5);
        assert_eq!(report.figures[0].met, Some(false));
        assert_eq!(report.figures[1].figure.value, 25.0);
        assert_eq!(report.figures[1].met, Some(true));
        assert_eq!(report.notes, ["luigi skipped", "snakemake skipped"]);
        assert_eq!(median(vec![4.0, 1.0]), 2.5);
    }

    #[test]
    fn the_table_names_each_figure_its_target_and_verdict() {
        let report = Report {
            cores: 2,
            date: "2026-11-29T00:00:00Z".into(),
            quick: true,
            scenarios: vec![summarise(
                Scenario::DagSchedule,
                &[Round {
                    figures: vec![Figure::new("total", 12.5, "ms").target(Target::AtMost(50.0))],
                    notes: Vec::new(),
                }],
            )],
        };
        let text = table(&report);
        assert!(text.contains("2 cores"), "{text}");
        assert!(text.contains("dag-schedule ×1"), "{text}");
        assert!(text.contains("12.50 ms"), "{text}");
        assert!(text.contains("≤ 50.00"), "{text}");
        assert!(text.contains("met"), "{text}");
    }
}
