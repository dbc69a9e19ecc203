//! `console-1m`: the console over a database of 1,000,000 jobs: time to the
//! first frame (empty, then with the first page of jobs loaded), render time
//! of frames while scrolling the jobs table (median and p99) and resident
//! memory. Rendering is measured on ratatui's `TestBackend` at 200×60: the UI
//! thread's cost; loading runs on other tasks in the console, and its time is
//! reported too. `--quick`: 100,000 jobs.

use super::{bench_ops, file_and_approve, Figure, Options, Round, Target};
use crate::ops::{Actor, Ops};
use crate::store::Store;
use crate::tui::action::Action;
use crate::tui::app::App;
use crate::tui::data;
use crate::tui::keymap::Keymap;
use crate::tui::theme::Theme;
use anyhow::{ensure, Context};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The figures of a `console` run.
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleFigures {
    /// Jobs in the database.
    pub jobs: i64,
    /// Frames measured.
    pub frames: usize,
    /// From opening the database to the first frame drawn (nothing loaded yet), ms.
    pub first_frame_ms: f64,
    /// From opening the database to the first frame showing jobs, ms.
    pub first_data_frame_ms: f64,
    /// Median render time of a frame, ms.
    pub frame_median_ms: f64,
    /// 99th percentile render time of a frame, ms.
    pub frame_p99_ms: f64,
    /// Median time to load one snapshot (off the UI thread), ms.
    pub load_median_ms: f64,
    /// Resident memory after the run, MB.
    pub rss_mb: f64,
}

/// One round of `console-1m`.
pub(super) async fn round(dir: &Path, options: &Options) -> anyhow::Result<Round> {
    let (jobs, frames) = if options.quick {
        (100_000, 100)
    } else {
        (1_000_000, 300)
    };
    let f = console(dir, jobs, frames).await?;
    Ok(Round {
        figures: vec![
            Figure::new("first frame (nothing loaded yet)", f.first_frame_ms, "ms")
                .target(Target::AtMost(300.0)),
            Figure::new(
                "first frame with the jobs page",
                f.first_data_frame_ms,
                "ms",
            ),
            Figure::new("frame render, median", f.frame_median_ms, "ms"),
            Figure::new("frame render, p99", f.frame_p99_ms, "ms").target(Target::AtMost(10.0)),
            Figure::new("snapshot load (off the UI thread)", f.load_median_ms, "ms"),
            Figure::new(&format!("resident memory, {jobs} jobs"), f.rss_mb, "MB")
                .target(Target::AtMost(150.0)),
        ],
        notes: Vec::new(),
    })
}

/// Seeds `dir/console.db` with `jobs` jobs, then measures the console on it.
pub async fn console(dir: &Path, jobs: i64, frames: usize) -> anyhow::Result<ConsoleFigures> {
    let db = dir.join("console.db").display().to_string();
    seed(&db, dir, jobs).await?;
    let started = Instant::now();
    let store = Store::open(&db).await?;
    let ops = Ops::new(store.clone(), Actor::named("bench"));
    let mut app = App::new(
        Keymap::default_map(),
        Theme::default_theme(),
        "bench",
        &db,
        false,
    );
    let mut terminal = Terminal::new(TestBackend::new(200, 60))?;
    terminal.draw(|f| crate::tui::panes::draw(f, &mut app))?;
    let first_frame_ms = ms(started);
    app.apply(Action::ShowJobs);
    let mut loads = Vec::new();
    while app.snap.jobs.is_empty() {
        let t = Instant::now();
        let snap = data::load(&ops, None, &app.view()).await;
        loads.push(ms(t));
        if let Some(e) = &snap.error {
            anyhow::bail!("loading failed: {e}");
        }
        app.on_snapshot(snap);
        ensure!(loads.len() < 5, "no jobs after {} loads", loads.len());
    }
    terminal.draw(|f| crate::tui::panes::draw(f, &mut app))?;
    let first_data_frame_ms = ms(started);
    ensure!(
        app.snap.jobs_total == jobs,
        "the console counts {} jobs, not {jobs}",
        app.snap.jobs_total
    );
    let mut times = Vec::with_capacity(frames);
    for i in 0..frames {
        let action = if i % 50 == 49 {
            Action::PageDown
        } else {
            Action::Down
        };
        app.apply(action);
        if app.view() != app.snap.view {
            let t = Instant::now();
            let snap = data::load_changes(&ops, None, &app.view(), Some(&app.snap)).await;
            loads.push(ms(t));
            app.on_snapshot(snap);
        }
        let t = Instant::now();
        terminal.draw(|f| crate::tui::panes::draw(f, &mut app))?;
        times.push(ms(t));
    }
    store.close().await;
    times.sort_by(f64::total_cmp);
    loads.sort_by(f64::total_cmp);
    Ok(ConsoleFigures {
        jobs,
        frames,
        first_frame_ms,
        first_data_frame_ms,
        frame_median_ms: times[times.len() / 2],
        frame_p99_ms: times[(times.len() * 99 / 100).min(times.len() - 1)],
        load_median_ms: loads[loads.len() / 2],
        rss_mb: super::status_mb("self", "VmRSS").context("reading /proc/self/status")?,
    })
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// One approved MC campaign whose single subtask has `jobs` jobs in mixed
/// states (a tenth failed, a tenth running, the rest succeeded) over 7 sites.
async fn seed(db: &str, dir: &Path, jobs: i64) -> anyhow::Result<()> {
    let store = Store::create(db).await?;
    let ops = bench_ops(&store).await?;
    let request = format!(
        "experiment = \"bench\"\nkind = \"mc\"\ntitle = \"{jobs} jobs\"\n[defaults]\nrelease = \"bench\"\n[[stage]]\nname = \"gen\"\nscript = \"/bin/true\"\nevents = {jobs}\nevents_per_job = 1\nseed_base = 1\n"
    );
    file_and_approve(&ops, dir, &request).await?;
    let (_, subtask) = crate::store::seed::first_subtask(&store).await?;
    crate::store::seed::mixed_jobs(&store, subtask, jobs).await?;
    store.close().await;
    Ok(())
}
