//! The console's state and its routing (`input → action → update → render`):
//! which pane has focus, the way back (Esc), popups and the input line.
//! Each pane's own state and keys live in its file under `panes/`. Nothing
//! here waits on I/O: state changes leave as an [`Effect`] for the command
//! task, and what is shown arrives as a [`Snapshot`] from the loader.

use super::action::{Action, Offer};
use super::data::{Command, Snapshot, View};
use super::input::{Edit, InputKind, InputLine};
use super::keymap::Keymap;
use super::panes::approvals::Approvals;
use super::panes::campaigns::Campaigns;
use super::panes::dag::Dag;
use super::panes::history::History;
use super::panes::job_detail::JobDetail;
use super::panes::jobs::Jobs;
use super::panes::triage::Triage;
use super::panes::{Component, Ctx, Msg, Scope};
use super::popup::{self, Popup, PopupOutcome};
use super::theme::Theme;
use crate::model::ids::EntityRef;
use crossterm::event::{KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};
use ratatui::Frame;
use std::time::{Duration, Instant};

/// How long a flash message stays.
const FLASH_FOR: Duration = Duration::from_secs(6);

/// The panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    /// Experiment → campaign → task → subtask → batch.
    Campaigns,
    /// The selected task's subtask DAG.
    Dag,
    /// The live jobs table.
    Jobs,
    /// One job's stages and logs.
    JobDetail,
    /// Failures grouped by cause and site.
    Triage,
    /// Requests waiting for approval.
    Approvals,
    /// Transitions of the selected item.
    History,
}

impl Pane {
    /// Panes reachable by number and Tab, in order (a job's detail opens from a list).
    pub const TABS: &'static [Pane] = &[
        Pane::Campaigns,
        Pane::Dag,
        Pane::Jobs,
        Pane::Triage,
        Pane::Approvals,
        Pane::History,
    ];

    /// The pane's title.
    pub fn title(self) -> &'static str {
        match self {
            Pane::Campaigns => "Campaigns",
            Pane::Dag => "DAG",
            Pane::Jobs => "Jobs",
            Pane::JobDetail => "Job",
            Pane::Triage => "Triage",
            Pane::Approvals => "Approvals",
            Pane::History => "History",
        }
    }

    /// The pane a "show" action focuses.
    fn shown_by(action: Action) -> Option<Pane> {
        Some(match action {
            Action::ShowCampaigns => Pane::Campaigns,
            Action::ShowDag => Pane::Dag,
            Action::ShowJobs => Pane::Jobs,
            Action::ShowTriage => Pane::Triage,
            Action::ShowApprovals => Pane::Approvals,
            Action::ShowHistory => Pane::History,
            _ => return None,
        })
    }
}

/// Every pane's component.
pub struct Panes {
    /// The campaigns tree.
    pub campaigns: Campaigns,
    /// The DAG.
    pub dag: Dag,
    /// The jobs table.
    pub jobs: Jobs,
    /// A job's detail.
    pub job: JobDetail,
    /// Failure triage.
    pub triage: Triage,
    /// Pending approvals.
    pub approvals: Approvals,
    /// History.
    pub history: History,
}

impl Panes {
    fn new() -> Panes {
        Panes {
            campaigns: Campaigns::default(),
            dag: Dag::default(),
            jobs: Jobs::default(),
            job: JobDetail::default(),
            triage: Triage::default(),
            approvals: Approvals::default(),
            history: History::default(),
        }
    }

    /// The component of `pane`.
    pub fn get(&self, pane: Pane) -> &dyn Component {
        match pane {
            Pane::Campaigns => &self.campaigns,
            Pane::Dag => &self.dag,
            Pane::Jobs => &self.jobs,
            Pane::JobDetail => &self.job,
            Pane::Triage => &self.triage,
            Pane::Approvals => &self.approvals,
            Pane::History => &self.history,
        }
    }

    /// The component of `pane`, to change.
    pub fn get_mut(&mut self, pane: Pane) -> &mut dyn Component {
        match pane {
            Pane::Campaigns => &mut self.campaigns,
            Pane::Dag => &mut self.dag,
            Pane::Jobs => &mut self.jobs,
            Pane::JobDetail => &mut self.job,
            Pane::Triage => &mut self.triage,
            Pane::Approvals => &mut self.approvals,
            Pane::History => &mut self.history,
        }
    }
}

/// A message in the footer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Text.
    pub text: String,
    /// Success (or error).
    pub ok: bool,
    /// When it was shown.
    pub at: Instant,
}

/// What the in-process worker is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum WorkerStatus {
    /// No worker in this process.
    #[default]
    Off,
    /// Holds the lease and runs passes.
    Leading {
        /// Jobs in flight after the last pass.
        in_flight: usize,
        /// Of those, jobs on batch-system instances this worker cannot reach.
        unreachable: usize,
    },
    /// Another worker holds the lease; this one watches.
    Watching {
        /// Who holds it (host and pid).
        holder: String,
    },
    /// The last pass failed.
    Failing(String),
}

/// Something the main loop must do after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Run a state-changing command through `ops`.
    Run(Command),
    /// Reload now.
    Reload,
    /// Switch to another theme or keymap by name.
    Load {
        /// `theme` or `keymap`.
        what: &'static str,
        /// Its name.
        name: String,
    },
}

/// Where panes were drawn last, for mouse clicks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Areas {
    /// The campaigns tree.
    pub tree: Rect,
    /// The other pane shown.
    pub main: Rect,
    /// Which pane `main` shows.
    pub main_pane: Option<Pane>,
}

/// The whole state of the console.
pub struct App {
    /// Active keymap.
    pub keymap: Keymap,
    /// Active theme.
    pub theme: Theme,
    /// Hide and refuse state-changing actions.
    pub readonly: bool,
    /// Who is using the console.
    pub user: String,
    /// Which database (shown in the header).
    pub database: String,
    /// The focused pane.
    pub focus: Pane,
    /// The pane beside the tree when the tree has focus.
    pub side: Pane,
    /// Where Esc goes back to, most recent last (k9s's breadcrumbs).
    pub trail: Vec<Pane>,
    /// The panes.
    pub panes: Panes,
    /// The latest snapshot.
    pub snap: Snapshot,
    /// When the last snapshot without an error arrived.
    pub loaded_at: Option<Instant>,
    /// Since when loads fail because the database cannot be reached.
    pub unreachable_since: Option<chrono::DateTime<chrono::Local>>,
    /// What History shows: the selection of the pane it follows.
    pub history_subject: Option<EntityRef>,
    /// Open popup.
    pub popup: Option<Popup>,
    /// How far help can scroll (set while drawing).
    pub help_last: usize,
    /// Open input line.
    pub input: Option<InputLine>,
    /// Commands run before, newest last.
    pub command_history: Vec<String>,
    /// The last result.
    pub flash: Option<Flash>,
    /// Snapshots are not applied while frozen.
    pub frozen: bool,
    /// Commands sent and not answered yet (the spinner turns while > 0).
    pub busy: usize,
    /// The in-process worker.
    pub worker: WorkerStatus,
    /// Set when the console should exit.
    pub quit: bool,
    /// Where panes were drawn.
    pub areas: Areas,
    /// Frames drawn (drives the spinner).
    pub frames: u64,
}

impl App {
    /// A console with nothing loaded yet.
    pub fn new(keymap: Keymap, theme: Theme, user: &str, database: &str, readonly: bool) -> App {
        App {
            keymap,
            theme,
            readonly,
            user: user.to_string(),
            database: database.to_string(),
            focus: Pane::Campaigns,
            side: Pane::Dag,
            trail: Vec::new(),
            panes: Panes::new(),
            snap: Snapshot::default(),
            loaded_at: None,
            unreachable_since: None,
            history_subject: None,
            popup: None,
            help_last: 0,
            input: None,
            command_history: Vec::new(),
            flash: None,
            frozen: false,
            busy: 0,
            worker: WorkerStatus::Off,
            quit: false,
            areas: Areas::default(),
            frames: 0,
        }
    }

    /// What the campaigns tree selects.
    pub fn scope(&self) -> Scope {
        self.panes.campaigns.scope()
    }

    fn ctx(&self, focused: bool) -> Ctx<'_> {
        Ctx {
            snap: &self.snap,
            theme: &self.theme,
            scope: self.scope(),
            focused,
        }
    }

    /// The pane drawn beside the tree (or alone on a narrow screen).
    pub fn main_pane(&self) -> Pane {
        if self.focus == Pane::Campaigns {
            self.side
        } else {
            self.focus
        }
    }

    fn shown(&self, pane: Pane) -> bool {
        self.focus == pane || (self.focus == Pane::Campaigns && self.side == pane)
    }

    /// What the loader should load for the current state.
    pub fn view(&self) -> View {
        let scope = self.scope();
        let ctx = self.ctx(false);
        View {
            campaign: scope.campaign,
            entity: self.history_subject.filter(|_| self.shown(Pane::History)),
            jobs: self.panes.jobs.query(scope.campaign),
            job: self.panes.job.job.filter(|_| self.shown(Pane::JobDetail)),
            approval: self
                .panes
                .approvals
                .selected(&ctx)
                .filter(|_| self.shown(Pane::Approvals)),
        }
    }

    /// Takes a new snapshot (unless frozen); a failed load keeps what is
    /// shown and says why.
    pub fn on_snapshot(&mut self, snap: Snapshot) {
        if self.frozen {
            return;
        }
        if snap.unreachable {
            self.unreachable_since
                .get_or_insert_with(chrono::Local::now);
            return;
        }
        if let Some(e) = &snap.error {
            self.flash(format!("loading failed: {e}"), false);
            return;
        }
        self.unreachable_since = None;
        self.loaded_at = Some(Instant::now());
        self.snap = snap;
        if let Some(missing) = self.panes.campaigns.settle(&self.snap) {
            self.flash(format!("{missing}: no such campaign"), false);
        }
        self.follow_selection();
    }

    /// The header's word on old data: `None` while it is fresh.
    pub fn staleness(&self) -> Option<String> {
        if let Some(since) = self.unreachable_since {
            return Some(format!(
                "database unreachable since {}, retrying",
                since.format("%H:%M:%S")
            ));
        }
        match self.loaded_at {
            None => Some("loading…".into()),
            Some(_) if self.frozen => None,
            Some(at) if at.elapsed() > super::panes::STALE_AFTER => Some(format!(
                "data {} old",
                super::panes::short_duration(at.elapsed().as_millis() as i64)
            )),
            Some(_) => None,
        }
    }

    /// Shows the result of a command.
    pub fn on_result(&mut self, result: Result<String, String>) {
        self.busy = self.busy.saturating_sub(1);
        match result {
            Ok(t) => self.flash(t, true),
            Err(t) => self.flash(t, false),
        }
    }

    /// Shows a message in the footer for a while.
    pub fn flash(&mut self, text: impl Into<String>, ok: bool) {
        self.flash = Some(Flash {
            text: text.into(),
            ok,
            at: Instant::now(),
        });
    }

    /// The flash message, while it is fresh.
    pub fn current_flash(&self) -> Option<&Flash> {
        self.flash.as_ref().filter(|f| f.at.elapsed() < FLASH_FOR)
    }

    /// The focused pane's live actions (read-only hides changes).
    pub fn offers(&self) -> Vec<Offer> {
        let ctx = self.ctx(true);
        self.panes
            .get(self.focus)
            .actions(&ctx)
            .into_iter()
            .filter(|o| !(self.readonly && o.action.mutates()))
            .collect()
    }

    /// Help's lines for the focused pane.
    pub fn help_lines(&self) -> Vec<ratatui::text::Line<'static>> {
        popup::help_lines(
            self.focus.title(),
            &self.offers(),
            &self.keymap,
            &self.theme,
            self.readonly,
        )
    }

    /// Runs `f` on `pane` with the context it reads.
    fn with_pane<R>(&mut self, pane: Pane, f: impl FnOnce(&mut dyn Component, &Ctx) -> R) -> R {
        let ctx = Ctx {
            snap: &self.snap,
            theme: &self.theme,
            scope: self.panes.campaigns.scope(),
            focused: self.focus == pane,
        };
        f(self.panes.get_mut(pane), &ctx)
    }

    /// Draws one pane into `area`.
    pub fn draw_pane(&mut self, frame: &mut Frame, pane: Pane, area: Rect) {
        self.with_pane(pane, |p, ctx| p.draw(frame, area, ctx));
    }

    /// Handles a key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        crate::failpoint::panic_at("console:key");
        if let Some(open) = self.popup.take() {
            return self.popup_key(open, key);
        }
        if let Some(input) = self.input.take() {
            return self.input_key(input, key);
        }
        match self.keymap.action_for(&key) {
            Some(action) => self.apply(action),
            None => Vec::new(),
        }
    }

    /// Handles the mouse: the wheel scrolls the pane under it, a click focuses it.
    pub fn on_mouse(&mut self, mouse: MouseEvent) -> Vec<Effect> {
        let at = Position::new(mouse.column, mouse.row);
        let (pane, area) = if self.areas.tree.contains(at) {
            (Pane::Campaigns, self.areas.tree)
        } else if let Some(pane) = self
            .areas
            .main_pane
            .filter(|_| self.areas.main.contains(at))
        {
            (pane, self.areas.main)
        } else {
            return Vec::new();
        };
        match mouse.kind {
            MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
                self.focus_on(pane);
                let action = if mouse.kind == MouseEventKind::ScrollDown {
                    Action::Down
                } else {
                    Action::Up
                };
                self.apply(action)
            }
            MouseEventKind::Down(MouseButton::Left) => {
                self.focus_on(pane);
                let row = mouse.row.saturating_sub(area.y + 1) as usize;
                self.with_pane(pane, |p, ctx| p.click(row, ctx));
                self.follow_selection();
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Applies one action: the focused pane's when it offers it, else a
    /// global one; returns what the main loop must do.
    pub fn apply(&mut self, action: Action) -> Vec<Effect> {
        if self.readonly && action.mutates() {
            self.flash(
                format!("{}: this console is read-only", action.description()),
                false,
            );
            return Vec::new();
        }
        if action != Action::Filter && self.offers().iter().any(|o| o.action == action) {
            let msgs = self.with_pane(self.focus, |p, ctx| p.handle(action, ctx));
            let effects = self.process(msgs);
            self.follow_selection();
            return effects;
        }
        let effects = self.global(action);
        self.follow_selection();
        effects
    }

    fn global(&mut self, action: Action) -> Vec<Effect> {
        if let Some(pane) = Pane::shown_by(action) {
            self.jump(pane);
            return Vec::new();
        }
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.popup = Some(Popup::Help { scroll: 0 }),
            Action::Command => self.input = Some(InputLine::command()),
            Action::Filter => match self.panes.get(self.focus).filter() {
                Some(current) => self.input = Some(InputLine::filter(current)),
                None => self.flash(format!("{}: nothing to filter", self.focus.title()), false),
            },
            Action::Back => self.back(),
            Action::NextPane => self.cycle(1),
            Action::PrevPane => self.cycle(-1),
            Action::Freeze => {
                self.frozen = !self.frozen;
                let word = if self.frozen {
                    "frozen: press again to resume"
                } else {
                    "live"
                };
                self.flash(word, true);
            }
            Action::Refresh => return vec![Effect::Reload],
            other if other.mutates() || !other.is_global() => {
                if movement_action(other) {
                    return Vec::new();
                }
                self.flash(
                    format!(
                        "{}: not for what is selected in {} (? lists what is)",
                        other.description(),
                        self.focus.title()
                    ),
                    false,
                );
            }
            _ => {}
        }
        Vec::new()
    }

    /// Carries out what a pane asked for.
    fn process(&mut self, msgs: Vec<Msg>) -> Vec<Effect> {
        let mut effects = Vec::new();
        for msg in msgs {
            match msg {
                Msg::Focus(pane) => self.jump(pane),
                Msg::OpenJob(job) => {
                    self.panes.job.open(job);
                    self.enter(Pane::JobDetail);
                }
                Msg::OpenJobsOf(subtask, name) => {
                    self.panes.jobs.scope_to(subtask, name);
                    self.enter(Pane::Jobs);
                }
                Msg::Ask(confirm) => self.popup = Some(Popup::Confirm(Box::new(confirm))),
                Msg::Run(command) => {
                    self.busy += 1;
                    effects.push(Effect::Run(command));
                }
                Msg::Flash(text, ok) => self.flash(text, ok),
            }
        }
        effects
    }

    /// Focuses `pane` from a pane key or Tab: a jump, so the way back starts over.
    fn jump(&mut self, pane: Pane) {
        self.trail.clear();
        self.focus_on(pane);
    }

    /// Opens `pane` from the focused one: Esc comes back here.
    fn enter(&mut self, pane: Pane) {
        if self.focus != pane {
            self.trail.push(self.focus);
        }
        self.focus_on(pane);
    }

    fn focus_on(&mut self, pane: Pane) {
        self.focus = pane;
        if pane != Pane::Campaigns {
            self.side = pane;
        }
    }

    fn cycle(&mut self, by: i64) {
        let tabs = Pane::TABS;
        let at = tabs.iter().position(|p| *p == self.focus).unwrap_or(0) as i64;
        let next = (at + by).rem_euclid(tabs.len() as i64) as usize;
        self.jump(tabs[next]);
    }

    /// Esc: the pane drops its marks, search or filter; else back along the
    /// trail; else home to the campaigns.
    fn back(&mut self) {
        if self.panes.get_mut(self.focus).back() {
            return;
        }
        match self.trail.pop() {
            Some(pane) => self.focus_on(pane),
            None => self.focus_on(Pane::Campaigns),
        }
    }

    /// Keeps History on the selection of the pane it follows.
    fn follow_selection(&mut self) {
        if self.focus == Pane::History {
            return;
        }
        let ctx = self.ctx(true);
        self.history_subject = self.panes.get(self.focus).subject(&ctx);
    }

    fn popup_key(&mut self, open: Popup, key: KeyEvent) -> Vec<Effect> {
        match popup::key(open, key, &self.keymap, self.help_last) {
            PopupOutcome::Stay(popup) => self.popup = Some(popup),
            PopupOutcome::Closed => {}
            PopupOutcome::Cancelled(why) => self.flash(why, true),
            PopupOutcome::Run(command) => {
                if command.acts_on_jobs() {
                    self.panes.jobs.unmark();
                }
                self.busy += 1;
                return vec![Effect::Run(command)];
            }
        }
        Vec::new()
    }

    fn input_key(&mut self, mut input: InputLine, key: KeyEvent) -> Vec<Effect> {
        match input.key(key, &self.command_history) {
            Edit::Editing => {
                if input.kind == InputKind::Filter {
                    self.panes.get_mut(self.focus).set_filter(&input.text);
                }
                self.input = Some(input);
                Vec::new()
            }
            Edit::Cancelled => {
                if input.kind == InputKind::Filter {
                    self.panes.get_mut(self.focus).set_filter("");
                }
                Vec::new()
            }
            Edit::Done(text) => match input.kind {
                InputKind::Filter => {
                    self.panes.get_mut(self.focus).set_filter(&text);
                    self.follow_selection();
                    Vec::new()
                }
                InputKind::Command => {
                    if !text.trim().is_empty() && self.command_history.last() != Some(&text) {
                        self.command_history.push(text.clone());
                    }
                    self.run_command(&text)
                }
            },
        }
    }

    /// Runs a `:` command line.
    pub fn run_command(&mut self, line: &str) -> Vec<Effect> {
        use super::command::Parsed;
        match super::command::parse(line) {
            Ok(Parsed::Action(action)) => self.apply(action),
            Ok(Parsed::Campaign(id)) => {
                self.panes.campaigns.want(id);
                if self.loaded_at.is_some() {
                    if let Some(missing) = self.panes.campaigns.settle(&self.snap) {
                        self.flash(format!("{missing}: no such campaign"), false);
                    }
                }
                self.jump(Pane::Campaigns);
                self.follow_selection();
                Vec::new()
            }
            Ok(Parsed::Jobs(states)) => {
                self.panes.jobs.show_states(states);
                self.jump(Pane::Jobs);
                Vec::new()
            }
            Ok(Parsed::Load { what, name }) => vec![Effect::Load { what, name }],
            Err(e) => {
                self.flash(e, false);
                Vec::new()
            }
        }
    }

    /// The breadcrumbs: where the tree is, then the way here.
    pub fn breadcrumbs(&self) -> Vec<String> {
        let campaign = self.scope().campaign.and_then(|id| {
            let line = self.snap.campaigns.iter().find(|c| c.id == id.0)?;
            Some((id.to_string(), line.progress.percent()))
        });
        let mut crumbs: Vec<String> = self
            .panes
            .campaigns
            .path()
            .into_iter()
            .map(|crumb| match &campaign {
                Some((id, percent)) if *id == crumb => format!("{crumb} {percent:.1}%"),
                _ => crumb,
            })
            .collect();
        for pane in self.trail.iter().chain([&self.focus]) {
            if *pane != Pane::Campaigns {
                crumbs.push(pane.title().to_lowercase());
            }
        }
        if let (Pane::JobDetail, Some(job)) = (self.focus, self.panes.job.job) {
            crumbs.push(job.to_string());
        }
        if crumbs.is_empty() {
            crumbs.push("campaigns".into());
        }
        crumbs
    }
}

/// Movement does nothing where there is nothing to move over.
fn movement_action(action: Action) -> bool {
    matches!(
        action,
        Action::Up
            | Action::Down
            | Action::PageUp
            | Action::PageDown
            | Action::Top
            | Action::Bottom
            | Action::Left
            | Action::Right
            | Action::Open
    )
}
