//! `prodops demo`: the example Monte-Carlo campaign on a database of its own,
//! paced so a newcomer can watch it run, with hints that work before
//! `prodops` is installed.

use super::{console, output, worker, ConsoleArgs};
use crate::model::ids::CampaignId;
use crate::ops::views::RequestSummary;
use crate::ops::Ops;
use crate::store::campaigns::CampaignFilter;
use anyhow::anyhow;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long each step of a demo job lasts unless `--pace` says otherwise:
/// 25 jobs of two steps on [`DEMO_SLOTS`] slots take about a minute.
pub(super) const DEMO_PACE: Duration = Duration::from_secs(2);

/// Local executor slots of the demo unless `--slots` says otherwise, so it
/// runs alike on every machine (the pace is measured on it).
pub(super) const DEMO_SLOTS: usize = 2;

/// What `prodops demo` was asked to do.
pub(super) struct DemoRun {
    /// No console: progress lines, then the campaign.
    pub(super) headless: bool,
    /// File and approve only.
    pub(super) setup_only: bool,
    /// `--pace`, if given.
    pub(super) pace: Option<Duration>,
}

impl DemoRun {
    /// The pace of the demo's jobs: `--pace`, else [`DEMO_PACE`] when the demo
    /// runs its campaign and none with `--setup-only` (scripts and tests run it).
    pub(super) fn pace(&self) -> Duration {
        match (self.pace, self.setup_only) {
            (Some(pace), _) => pace,
            (None, true) => Duration::ZERO,
            (None, false) => DEMO_PACE,
        }
    }
}

/// Reads `--pace SECONDS`: 0 to 60, fractions allowed.
pub(super) fn parse_pace(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if (0.0..=60.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "`{text}` is not a number of seconds from 0 to 60 (e.g. 2 or 0.5)"
        )),
    }
}

/// The folder the demo keeps its database and files in.
pub(super) fn demo_dir() -> anyhow::Result<PathBuf> {
    crate::store::default_sqlite_path()
        .and_then(|p| p.parent().map(|d| d.join("demo")))
        .ok_or_else(|| anyhow!("no home directory for the demo: pass --db PATH"))
}

/// Files and approves the example campaign, then runs it in the console or
/// headless (or not at all), and says how to look around afterwards.
pub(super) async fn demo(
    ops: &Ops,
    out: &output::Printer,
    args: &worker::WorkerArgs,
    console_args: &ConsoleArgs,
    run: DemoRun,
) -> anyhow::Result<()> {
    let dir = demo_dir()?;
    let pace = run.pace();
    let before = ops.requests(&CampaignFilter::default()).await?;
    eprintln!("demo: database {}", ops.store().location());
    eprintln!(
        "demo: filing and approving {}",
        dir.join("mc-request.toml").display()
    );
    let campaign = ops.demo(&dir, pace).await?;
    let id: CampaignId = campaign.request.id.parse()?;
    announce(&before, id, pace);
    let args = args.clone().or_slots(DEMO_SLOTS);
    if !run.headless {
        console(ops, &args, console_args, Some(id)).await?;
        hints(ops, id);
        return Ok(());
    }
    let succeeded = if run.setup_only {
        true
    } else {
        let w = args.worker(ops).await?;
        eprintln!("demo: the worker runs {id} on the local backend");
        worker::run_campaign(&w, ops, id).await?
    };
    out.campaign(&ops.campaign(id).await?)?;
    hints(ops, id);
    if succeeded {
        Ok(())
    } else {
        Err(anyhow!(
            "campaign {id} did not succeed: see `{} --db {} jobs {id} --state failed`",
            program(),
            ops.store().location()
        ))
    }
}

/// Says what was filed: another campaign beside earlier ones, and how it is paced.
fn announce(before: &[RequestSummary], id: CampaignId, pace: Duration) {
    if !before.is_empty() {
        let ids: Vec<&str> = before.iter().map(|r| r.id.as_str()).collect();
        eprintln!(
            "demo: the demo database already holds {}; this adds another campaign, {id}",
            ids.join(", ")
        );
    }
    if !pace.is_zero() {
        eprintln!(
            "demo: each step of a job takes {} s so its stages can be watched (`--pace 0`: no waiting)",
            pace.as_secs_f64()
        );
    }
}

/// How to look around afterwards, with the program as it can be typed.
fn hints(ops: &Ops, id: CampaignId) {
    let program = program();
    let db = ops.store().location();
    eprintln!("demo: look around with `{program} --db {db} jobs {id}` or `{program} --db {db} history {id}`");
    if program != "prodops" {
        eprintln!("demo: `prodops` is not on your PATH; `cargo install --locked --path .` in the source folder puts it in ~/.cargo/bin");
    }
}

/// `prodops` when that name on PATH is this program, else this program's path.
fn program() -> String {
    let Ok(me) = std::env::current_exe() else {
        return "prodops".to_string();
    };
    let me = me.canonicalize().unwrap_or(me);
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("prodops"))
        .find(|candidate| is_executable(candidate));
    match on_path.and_then(|p| p.canonicalize().ok()) {
        Some(found) if found == me => "prodops".to_string(),
        _ => me.display().to_string(),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(setup_only: bool, pace: Option<Duration>) -> DemoRun {
        DemoRun {
            headless: true,
            setup_only,
            pace,
        }
    }

    #[test]
    fn the_demo_paces_its_jobs_unless_it_only_sets_up_or_is_told_otherwise() {
        assert_eq!(run(false, None).pace(), DEMO_PACE);
        assert_eq!(run(true, None).pace(), Duration::ZERO);
        let half = Duration::from_millis(500);
        assert_eq!(run(true, Some(half)).pace(), half);
        assert_eq!(run(false, Some(Duration::ZERO)).pace(), Duration::ZERO);
        assert_eq!(parse_pace("0.5"), Ok(half));
        assert!(parse_pace("-1").is_err() && parse_pace("61").is_err() && parse_pace("x").is_err());
    }
}
