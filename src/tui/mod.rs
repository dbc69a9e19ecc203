//! The operations console (ratatui + crossterm).
//!
//! Unidirectional: input → [`action::Action`] → [`app::App`] update → render
//! of the app's state by the [`panes`]. The UI thread never waits on the
//! database or a batch system: a loader task turns the app's [`data::View`]
//! into [`data::Snapshot`]s, a command task runs state changes through
//! `ops`, and the worker runs in-process as a tokio task; all of them talk to
//! the UI thread through channels.

pub mod action;
pub mod app;
pub mod command;
pub mod data;
pub mod diff;
pub mod input;
pub mod keymap;
pub mod panes;
pub mod popup;
pub mod theme;

use crate::model::ids::CampaignId;
use crate::ops::Ops;
use crate::worker::Worker;
use app::{App, Effect, WorkerStatus};
use crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event, KeyEventKind};
use data::{Command, Snapshot, View};
use keymap::Keymap;
use popup::Popup;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use theme::Theme;
use tokio::sync::{watch, Notify};

/// How often the screen redraws when nothing happens (clocks, spinner).
const TICK: Duration = Duration::from_millis(250);
/// Shortest time between two loads when nothing asks for one.
const MIN_RELOAD: Duration = Duration::from_secs(1);

/// How the console starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Keymap name.
    pub keymap: String,
    /// Theme name.
    pub theme: String,
    /// Hide and refuse state-changing actions.
    pub readonly: bool,
    /// Where the database is (for the header).
    pub database: String,
    /// The campaign to show first (its DAG).
    pub select: Option<CampaignId>,
}

/// True when `NO_COLOR` asks for no colour (any non-empty value).
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Builds the app with the configured keymap and theme; problems with the
/// user's files are shown in a popup, never fatal.
pub fn new_app(ops: &Ops, options: &Options) -> App {
    let user_dir = crate::config::dir();
    let (keymap, mut problems) = Keymap::load(&options.keymap, user_dir.as_deref());
    let (theme, theme_problems) = Theme::load(&options.theme, user_dir.as_deref(), no_color());
    problems.extend(theme_problems);
    let mut app = App::new(
        keymap,
        theme,
        &ops.actor().display(),
        &options.database,
        options.readonly,
    );
    if !problems.is_empty() {
        app.popup = Some(Popup::Problems(
            problems.iter().map(|p| p.to_string()).collect(),
        ));
    }
    if let Some(id) = options.select {
        app.panes.campaigns.want(id);
        app.focus = app::Pane::Dag;
        app.side = app::Pane::Dag;
    }
    app
}

/// What the tasks send to the UI thread.
enum Msg {
    Input(Event),
    Snapshot(Box<Snapshot>),
    Result(Result<String, String>),
    Worker(WorkerStatus),
    Stop,
}

/// Runs the console until the user quits (or SIGTERM/SIGHUP); restores the
/// terminal in every case, panics included.
pub async fn run(ops: Ops, worker: Option<Arc<Worker>>, options: Options) -> anyhow::Result<()> {
    let (to_ui, from_tasks) = mpsc::channel::<Msg>();
    let (view_tx, view_rx) = watch::channel(View::default());
    let (command_tx, command_rx) = tokio::sync::mpsc::unbounded_channel::<Command>();
    let reload = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(loader(
        ops.clone(),
        worker.clone(),
        view_rx,
        reload.clone(),
        to_ui.clone(),
    ));
    tasks.spawn(commands(
        ops.clone(),
        command_rx,
        reload.clone(),
        to_ui.clone(),
    ));
    tasks.spawn(signals(to_ui.clone()));
    if let Some(w) = worker.clone() {
        tasks.spawn(run_worker(w, reload.clone(), to_ui.clone()));
    }
    let mut app = new_app(&ops, &options);
    if worker.is_some() {
        app.worker = WorkerStatus::Watching {
            holder: "…".into()
        };
    }
    let ui = tokio::task::spawn_blocking(move || {
        ui_loop(app, from_tasks, to_ui, view_tx, command_tx, reload)
    });
    let result = ui.await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Some(w) = worker {
        w.release_lease().await?;
    }
    result?
}

fn ui_loop(
    mut app: App,
    from_tasks: mpsc::Receiver<Msg>,
    to_ui: mpsc::Sender<Msg>,
    view_tx: watch::Sender<View>,
    command_tx: tokio::sync::mpsc::UnboundedSender<Command>,
    reload: Arc<Notify>,
) -> anyhow::Result<()> {
    let mut terminal = ratatui::init();
    restore_mouse_on_panic();
    crossterm::execute!(std::io::stdout(), EnableMouseCapture)?;
    let stop_input = Arc::new(AtomicBool::new(false));
    let input = spawn_input(to_ui, stop_input.clone());
    let result = (|| -> anyhow::Result<()> {
        loop {
            terminal.draw(|f| panes::draw(f, &mut app))?;
            let view = app.view();
            if *view_tx.borrow() != view {
                view_tx.send_replace(view);
            }
            let first = match from_tasks.recv_timeout(TICK) {
                Ok(msg) => Some(msg),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            for msg in first
                .into_iter()
                .chain(std::iter::from_fn(|| from_tasks.try_recv().ok()))
            {
                for effect in handle(&mut app, msg) {
                    apply_effect(&mut app, effect, &command_tx, &reload);
                }
            }
            if app.quit {
                break;
            }
        }
        Ok(())
    })();
    stop_input.store(true, Ordering::SeqCst);
    let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    let _ = input.join();
    result
}

/// Makes a panic turn mouse reporting off before the hook `ratatui::init`
/// installed restores raw mode and the main screen, so no panic leaves the
/// terminal altered.
fn restore_mouse_on_panic() {
    let restore_screen = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
        restore_screen(info);
    }));
}

fn handle(app: &mut App, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Input(Event::Key(key)) if key.kind != KeyEventKind::Release => app.on_key(key),
        Msg::Input(Event::Mouse(mouse)) => app.on_mouse(mouse),
        Msg::Input(_) => Vec::new(),
        Msg::Snapshot(snap) => {
            app.on_snapshot(*snap);
            Vec::new()
        }
        Msg::Result(result) => {
            app.on_result(result);
            Vec::new()
        }
        Msg::Worker(status) => {
            app.worker = status;
            Vec::new()
        }
        Msg::Stop => {
            app.quit = true;
            Vec::new()
        }
    }
}

fn apply_effect(
    app: &mut App,
    effect: Effect,
    command_tx: &tokio::sync::mpsc::UnboundedSender<Command>,
    reload: &Notify,
) {
    match effect {
        Effect::Run(command) => {
            if command_tx.send(command).is_err() {
                app.on_result(Err("the command task stopped".into()));
            }
        }
        Effect::Reload => reload.notify_one(),
        Effect::Load {
            what: "theme",
            name,
        } => {
            let (theme, problems) = Theme::load(&name, crate::config::dir().as_deref(), no_color());
            match problems.first() {
                Some(p) => app.flash(p.to_string(), false),
                None => app.flash(format!("theme {name}"), true),
            }
            app.theme = theme;
        }
        Effect::Load { name, .. } => {
            let (keymap, problems) = Keymap::load(&name, crate::config::dir().as_deref());
            match problems.first() {
                Some(p) => app.flash(p.to_string(), false),
                None => app.flash(format!("keymap {name}"), true),
            }
            app.keymap = keymap;
        }
    }
}

/// Reads terminal events on a thread of its own (crossterm's read blocks).
fn spawn_input(to_ui: mpsc::Sender<Msg>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => match event::read() {
                    Ok(ev) => {
                        if to_ui.send(Msg::Input(ev)).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Ok(false) => {}
                Err(_) => break,
            }
        }
    })
}

/// Loads a snapshot whenever the view changes, a command finished, or a
/// while passed (longer when loads are slow, so a huge database is not
/// queried back to back).
async fn loader(
    ops: Ops,
    worker: Option<Arc<Worker>>,
    mut view_rx: watch::Receiver<View>,
    reload: Arc<Notify>,
    to_ui: mpsc::Sender<Msg>,
) {
    let mut wait = Duration::ZERO;
    let mut last: Option<Snapshot> = None;
    loop {
        let moved = tokio::select! {
            _ = view_rx.changed() => true,
            _ = reload.notified() => false,
            _ = tokio::time::sleep(wait) => false,
        };
        let view = view_rx.borrow_and_update().clone();
        let started = Instant::now();
        let previous = last.as_ref().filter(|_| moved);
        let snap = data::load_changes(&ops, worker.as_deref(), &view, previous).await;
        if !moved {
            wait = (started.elapsed() * 4).max(MIN_RELOAD);
        }
        last = Some(snap.clone());
        if to_ui.send(Msg::Snapshot(Box::new(snap))).is_err() {
            return;
        }
    }
}

/// Runs state changes one at a time and reports each result.
async fn commands(
    ops: Ops,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    reload: Arc<Notify>,
    to_ui: mpsc::Sender<Msg>,
) {
    while let Some(command) = commands.recv().await {
        let result = data::execute(&ops, command).await;
        reload.notify_one();
        if to_ui.send(Msg::Result(result)).is_err() {
            return;
        }
    }
}

/// The in-process worker: passes paced as in `--batch`, reporting its status.
async fn run_worker(worker: Arc<Worker>, reload: Arc<Notify>, to_ui: mpsc::Sender<Msg>) {
    loop {
        let status = match worker.pass().await {
            Ok(report) => {
                if report.changed() {
                    reload.notify_one();
                }
                let status = if report.leader {
                    WorkerStatus::Leading {
                        in_flight: report.in_flight,
                        unreachable: report.unreachable.values().sum(),
                    }
                } else {
                    WorkerStatus::Watching {
                        holder: report
                            .lease_holder
                            .as_ref()
                            .map(|h| format!("{}:{}", h.host, h.pid))
                            .unwrap_or_else(|| "nobody".into()),
                    }
                };
                let _ = to_ui.send(Msg::Worker(status));
                worker.pace(&report).await;
                continue;
            }
            Err(e) => WorkerStatus::Failing(e.to_string()),
        };
        if to_ui.send(Msg::Worker(status)).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// SIGTERM and SIGHUP (an ssh drop) end the console cleanly.
async fn signals(to_ui: mpsc::Sender<Msg>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = hup.recv() => {}
    }
    let _ = to_ui.send(Msg::Stop);
}
