//! The console's state and how actions change it (`input → action → update →
//! render`). Nothing here waits on I/O: state-changing work leaves as an
//! [`Effect`] for the command task, and what is shown arrives as a
//! [`Snapshot`] from the loader.

use super::action::Action;
use super::data::{Command, Snapshot, View};
use super::keymap::Keymap;
use super::theme::Theme;
use crate::model::ids::{CampaignId, EntityKind, EntityRef, JobId, SubtaskId};
use crate::store::overview::{JobQuery, JobSort};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use ratatui::layout::{Position, Rect};
use std::time::{Duration, Instant};
use tui_tree_widget::TreeState;

/// Jobs loaded per page of the jobs table.
pub const JOBS_PAGE: i64 = 500;
/// How long a flash message stays.
const FLASH_FOR: Duration = Duration::from_secs(6);

/// The panes, in tab order.
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
    /// Panes reachable by Tab, in order (the job detail opens from the jobs table).
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

    /// The actions that do something in this pane (for the hints bar).
    pub fn actions(self) -> &'static [Action] {
        use Action::*;
        match self {
            Pane::Campaigns => &[
                Open,
                Left,
                Right,
                Filter,
                Approve,
                Hold,
                Release,
                Abort,
                Resubmit,
                SignOff,
                PriorityUp,
                PriorityDown,
                CloneRequest,
            ],
            Pane::Dag => &[Up, Down, Open, Resubmit, SignOff],
            Pane::Jobs => &[Open, Filter, SortNext, SortReverse, PageDown, Resubmit],
            Pane::JobDetail => &[Follow, Wrap, Filter, Back, Resubmit],
            Pane::Triage => &[Open, Filter, Resubmit],
            Pane::Approvals => &[
                Approve,
                Reject,
                PriorityUp,
                PriorityDown,
                CloneRequest,
                Filter,
            ],
            Pane::History => &[Up, Down, Filter],
        }
    }
}

/// A popup over the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    /// Keys of the active keymap.
    Help {
        /// First line shown.
        scroll: usize,
    },
    /// A dangerous action waiting for `enter` (with an optional reason typed in).
    Confirm {
        /// What will run.
        action: Action,
        /// On what, e.g. `C3`.
        target: String,
        /// The reason typed so far.
        reason: String,
    },
    /// Problems found in keymap or theme files at start.
    Problems(Vec<String>),
}

/// The one-line input at the bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// `:` command or `/` filter.
    pub kind: InputKind,
    /// Text typed.
    pub text: String,
}

/// What the input line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A `:` command.
    Command,
    /// A `/` filter of the focused list.
    Filter,
}

/// A result message.
#[derive(Debug, Clone)]
pub struct Flash {
    /// The message.
    pub text: String,
    /// False for errors and refusals.
    pub ok: bool,
    at: Instant,
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
    },
    /// Another worker holds the lease; this one watches.
    Watching,
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
    /// The latest snapshot.
    pub snap: Snapshot,
    /// When it arrived.
    pub snap_at: Option<Instant>,
    /// Tree selection and open nodes (ids like `x:nova`, `C3`, `T4`, `S5`, `B6`).
    pub tree: TreeState<String>,
    /// Filter of the campaigns tree.
    pub tree_filter: String,
    /// Selected node of the DAG (index in drawing order).
    pub dag: usize,
    /// The jobs query (its campaign follows the tree).
    pub jobs: JobQuery,
    /// Selected row within the loaded page.
    pub jobs_row: usize,
    /// The job opened in the detail pane.
    pub job: Option<JobId>,
    /// Log viewer state.
    pub log: LogView,
    /// Selected failure group.
    pub triage_row: usize,
    /// Filter of the triage list.
    pub triage_filter: String,
    /// Selected pending request.
    pub approvals_row: usize,
    /// Filter of the approvals list.
    pub approvals_filter: String,
    /// First history line shown.
    pub history_scroll: usize,
    /// Filter of the history list.
    pub history_filter: String,
    /// Open popup.
    pub popup: Option<Popup>,
    /// Open input line.
    pub input: Option<Input>,
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
    /// Rows a page of the focused list shows (set while drawing).
    pub page_rows: usize,
    /// Where panes were drawn.
    pub areas: Areas,
    /// Frames drawn (drives the spinner).
    pub frames: u64,
}

/// The log viewer's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogView {
    /// First line shown (when not following).
    pub scroll: usize,
    /// Keep the end in view.
    pub follow: bool,
    /// Wrap long lines.
    pub wrap: bool,
    /// Highlight and jump to this text.
    pub search: String,
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
            snap: Snapshot::default(),
            snap_at: None,
            tree: TreeState::default(),
            tree_filter: String::new(),
            dag: 0,
            jobs: JobQuery {
                limit: JOBS_PAGE,
                ..JobQuery::default()
            },
            jobs_row: 0,
            job: None,
            log: LogView {
                follow: true,
                ..LogView::default()
            },
            triage_row: 0,
            triage_filter: String::new(),
            approvals_row: 0,
            approvals_filter: String::new(),
            history_scroll: 0,
            history_filter: String::new(),
            popup: None,
            input: None,
            command_history: Vec::new(),
            flash: None,
            frozen: false,
            busy: 0,
            worker: WorkerStatus::Off,
            quit: false,
            page_rows: 10,
            areas: Areas::default(),
            frames: 0,
        }
    }

    /// What the loader should load for the current state.
    pub fn view(&self) -> View {
        let campaign = self.selected_campaign();
        let history_shown = self.focus == Pane::History
            || (self.focus == Pane::Campaigns && self.side == Pane::History);
        View {
            campaign,
            entity: self.selected_entity().filter(|_| history_shown),
            jobs: JobQuery {
                campaign: campaign.map(|c| c.0),
                ..self.jobs.clone()
            },
            job: self.job.filter(|_| self.focus == Pane::JobDetail),
            approval: self.selected_pending(),
        }
    }

    /// Takes a new snapshot (unless frozen), keeping selections in range.
    pub fn on_snapshot(&mut self, snap: Snapshot) {
        if self.frozen {
            return;
        }
        self.snap = snap;
        self.snap_at = Some(Instant::now());
        if self.tree.selected().is_empty() {
            if let Some(first) = self.snap.campaigns.first() {
                self.tree.open(vec![format!("x:{}", first.experiment)]);
                self.tree.select(vec![
                    format!("x:{}", first.experiment),
                    CampaignId(first.id).to_string(),
                ]);
            }
        }
        self.jobs_row = self.jobs_row.min(self.snap.jobs.len().saturating_sub(1));
        self.triage_row = self
            .triage_row
            .min(self.snap.failures.len().saturating_sub(1));
        self.approvals_row = self
            .approvals_row
            .min(self.visible_pending().len().saturating_sub(1));
    }

    /// Shows the result of a command.
    pub fn on_result(&mut self, result: Result<String, String>) {
        self.busy = self.busy.saturating_sub(1);
        let (text, ok) = match result {
            Ok(t) => (t, true),
            Err(t) => (t, false),
        };
        self.flash(text, ok);
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

    /// Handles a key press.
    pub fn on_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if self.popup.is_some() {
            return self.popup_key(key);
        }
        if self.input.is_some() {
            return self.input_key(key);
        }
        match self.keymap.action_for(&key) {
            Some(action) => self.apply(action),
            None => Vec::new(),
        }
    }

    /// Handles the mouse: the wheel scrolls the pane under it, a click focuses it.
    pub fn on_mouse(&mut self, mouse: MouseEvent) -> Vec<Effect> {
        let at = Position::new(mouse.column, mouse.row);
        let pane = if self.areas.tree.contains(at) {
            Some(Pane::Campaigns)
        } else if self.areas.main.contains(at) {
            self.areas.main_pane
        } else {
            None
        };
        let Some(pane) = pane else { return Vec::new() };
        match mouse.kind {
            MouseEventKind::ScrollDown => {
                self.focus = pane;
                self.apply(Action::Down)
            }
            MouseEventKind::ScrollUp => {
                self.focus = pane;
                self.apply(Action::Up)
            }
            MouseEventKind::Down(MouseButton::Left) => {
                self.focus = pane;
                if pane == Pane::Campaigns {
                    self.tree.click_at(at);
                } else {
                    let row = mouse.row.saturating_sub(self.areas.main.y + 2) as usize;
                    self.select_row(pane, row);
                }
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn select_row(&mut self, pane: Pane, row: usize) {
        match pane {
            Pane::Jobs => self.jobs_row = row.min(self.snap.jobs.len().saturating_sub(1)),
            Pane::Triage => self.triage_row = row.min(self.snap.failures.len().saturating_sub(1)),
            Pane::Approvals => {
                self.approvals_row = row.min(self.visible_pending().len().saturating_sub(1))
            }
            Pane::Dag => self.dag = row / 2,
            _ => {}
        }
    }

    /// Applies one action; returns what the main loop must do.
    pub fn apply(&mut self, action: Action) -> Vec<Effect> {
        if action.mutates() {
            return self.management(action);
        }
        match action {
            Action::Quit => self.quit = true,
            Action::Help => self.popup = Some(Popup::Help { scroll: 0 }),
            Action::Command => self.open_input(InputKind::Command),
            Action::Filter => self.open_input(InputKind::Filter),
            Action::Back => self.back(),
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-(self.page_rows.max(1) as i64)),
            Action::PageDown => self.move_by(self.page_rows.max(1) as i64),
            Action::Top => self.move_by(i64::MIN / 2),
            Action::Bottom => self.move_by(i64::MAX / 2),
            Action::Left => self.left(),
            Action::Right => self.right(),
            Action::Open => self.open(),
            Action::NextPane => self.cycle(1),
            Action::PrevPane => self.cycle(-1),
            Action::ShowCampaigns => self.show(Pane::Campaigns),
            Action::ShowDag => self.show(Pane::Dag),
            Action::ShowJobs => self.show(Pane::Jobs),
            Action::ShowTriage => self.show(Pane::Triage),
            Action::ShowApprovals => self.show(Pane::Approvals),
            Action::ShowHistory => self.show(Pane::History),
            Action::SortNext => {
                let at = JobSort::ALL
                    .iter()
                    .position(|s| *s == self.jobs.sort)
                    .unwrap_or(0);
                self.jobs.sort = JobSort::ALL[(at + 1) % JobSort::ALL.len()];
                self.jobs.offset = 0;
            }
            Action::SortReverse => {
                self.jobs.descending = !self.jobs.descending;
                self.jobs.offset = 0;
            }
            Action::Follow => self.log.follow = !self.log.follow,
            Action::Wrap => self.log.wrap = !self.log.wrap,
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
            _ => {}
        }
        Vec::new()
    }

    fn show(&mut self, pane: Pane) {
        self.focus = pane;
        if pane != Pane::Campaigns {
            self.side = pane;
        }
    }

    fn cycle(&mut self, by: i64) {
        let tabs = Pane::TABS;
        let at = tabs.iter().position(|p| *p == self.focus).unwrap_or(0) as i64;
        let next = (at + by).rem_euclid(tabs.len() as i64) as usize;
        self.show(tabs[next]);
    }

    fn back(&mut self) {
        match self.focus {
            Pane::JobDetail => self.show(Pane::Jobs),
            Pane::Jobs if !self.jobs.text.is_empty() || !self.jobs.states.is_empty() => {
                self.jobs.text.clear();
                self.jobs.states.clear();
            }
            Pane::Campaigns if !self.tree_filter.is_empty() => self.tree_filter.clear(),
            Pane::Campaigns => {}
            _ => self.focus = Pane::Campaigns,
        }
    }

    fn left(&mut self) {
        match self.focus {
            Pane::Campaigns => {
                self.tree.key_left();
            }
            _ => self.move_by(-1),
        }
    }

    fn right(&mut self) {
        match self.focus {
            Pane::Campaigns => {
                self.tree.key_right();
            }
            _ => self.move_by(1),
        }
    }

    fn open(&mut self) {
        match self.focus {
            Pane::Campaigns => {
                self.tree.toggle_selected();
            }
            Pane::Jobs => {
                if let Some(job) = self.snap.jobs.get(self.jobs_row) {
                    self.job = job.id.parse::<EntityRef>().ok().map(|e| JobId(e.id));
                    self.log = LogView {
                        follow: true,
                        ..LogView::default()
                    };
                    self.focus = Pane::JobDetail;
                    self.side = Pane::JobDetail;
                }
            }
            Pane::Triage => {
                if let Some(first) = self
                    .snap
                    .failures
                    .get(self.triage_row)
                    .and_then(|g| g.jobs.first())
                {
                    self.job = Some(JobId(*first));
                    self.log = LogView {
                        follow: true,
                        ..LogView::default()
                    };
                    self.focus = Pane::JobDetail;
                    self.side = Pane::JobDetail;
                }
            }
            Pane::Dag => self.focus = Pane::Jobs,
            _ => {}
        }
    }

    fn move_by(&mut self, by: i64) {
        let step = |at: usize, len: usize| -> usize {
            if len == 0 {
                return 0;
            }
            (at as i64).saturating_add(by).clamp(0, len as i64 - 1) as usize
        };
        match self.focus {
            Pane::Campaigns => {
                if by < 0 {
                    for _ in 0..by.unsigned_abs().min(10_000) {
                        if !self.tree.key_up() {
                            break;
                        }
                    }
                } else {
                    for _ in 0..by.min(10_000) {
                        if !self.tree.key_down() {
                            break;
                        }
                    }
                }
            }
            Pane::Dag => self.dag = step(self.dag, self.dag_len()),
            Pane::Jobs => self.move_jobs(by),
            Pane::JobDetail => {
                self.log.follow = false;
                self.log.scroll = (self.log.scroll as i64).saturating_add(by).max(0) as usize;
            }
            Pane::Triage => self.triage_row = step(self.triage_row, self.snap.failures.len()),
            Pane::Approvals => {
                self.approvals_row = step(self.approvals_row, self.visible_pending().len())
            }
            Pane::History => {
                self.history_scroll = step(self.history_scroll, self.snap.history.len().max(1))
            }
        }
    }

    /// Moves in the jobs table, loading the next or previous page at its edges.
    fn move_jobs(&mut self, by: i64) {
        let total = self.snap.jobs_total;
        let absolute = (self.jobs.offset + self.jobs_row as i64)
            .saturating_add(by)
            .clamp(0, (total - 1).max(0));
        let page_start = absolute - absolute % JOBS_PAGE;
        self.jobs.offset = page_start;
        self.jobs_row = (absolute - page_start) as usize;
    }

    /// Number of DAG nodes of the selected task.
    pub fn dag_len(&self) -> usize {
        self.selected_task()
            .and_then(|t| {
                self.snap
                    .detail
                    .as_ref()?
                    .tasks
                    .iter()
                    .find(|x| x.id == t.to_string())
            })
            .map(|t| t.subtasks.len())
            .unwrap_or(0)
    }

    /// The tree's selected path as entity references (experiments left out).
    fn tree_path(&self) -> Vec<EntityRef> {
        self.tree
            .selected()
            .iter()
            .filter_map(|id| id.parse::<EntityRef>().ok())
            .collect()
    }

    /// The campaign the selection is in.
    pub fn selected_campaign(&self) -> Option<CampaignId> {
        if self.focus == Pane::Approvals {
            if let Some(id) = self.selected_pending() {
                return Some(id);
            }
        }
        self.tree_path()
            .into_iter()
            .find(|e| e.kind == EntityKind::Campaign)
            .map(|e| CampaignId(e.id))
    }

    /// The task whose DAG is drawn: the selected one, or the campaign's first.
    pub fn selected_task(&self) -> Option<EntityRef> {
        self.tree_path()
            .into_iter()
            .find(|e| e.kind == EntityKind::Task)
            .or_else(|| {
                let detail = self.snap.detail.as_ref()?;
                detail.tasks.first()?.id.parse().ok()
            })
    }

    /// The subtask selected in the DAG (or the tree).
    pub fn selected_subtask(&self) -> Option<SubtaskId> {
        if self.focus == Pane::Dag {
            let task = self.selected_task()?;
            let detail = self.snap.detail.as_ref()?;
            let t = detail.tasks.iter().find(|t| t.id == task.to_string())?;
            let order = super::panes::dag::order(t);
            let s = t.subtasks.get(*order.get(self.dag)?)?;
            return s.id.parse::<EntityRef>().ok().map(|e| SubtaskId(e.id));
        }
        self.tree_path()
            .into_iter()
            .find(|e| e.kind == EntityKind::Subtask)
            .map(|e| SubtaskId(e.id))
    }

    /// The entity actions and history apply to, by focus.
    pub fn selected_entity(&self) -> Option<EntityRef> {
        match self.focus {
            Pane::Jobs => self
                .snap
                .jobs
                .get(self.jobs_row)
                .and_then(|j| j.id.parse().ok()),
            Pane::JobDetail => self.job.map(|j| j.entity()),
            Pane::Dag => self.selected_subtask().map(|s| s.entity()),
            Pane::Approvals => self.selected_pending().map(|c| c.entity()),
            _ => self.tree_path().last().copied(),
        }
    }

    /// Pending requests matching the approvals filter.
    pub fn visible_pending(&self) -> Vec<&crate::ops::views::RequestSummary> {
        let f = self.approvals_filter.to_lowercase();
        self.snap
            .pending
            .iter()
            .filter(|r| {
                f.is_empty()
                    || r.title.to_lowercase().contains(&f)
                    || r.id.to_lowercase().contains(&f)
                    || r.experiment.to_lowercase().contains(&f)
            })
            .collect()
    }

    /// The pending request selected in the approvals pane.
    pub fn selected_pending(&self) -> Option<CampaignId> {
        if self.focus != Pane::Approvals && self.side != Pane::Approvals {
            return None;
        }
        self.visible_pending()
            .get(self.approvals_row)
            .and_then(|r| r.id.parse().ok())
    }

    /// Builds the command a management action means here, after the role-free checks.
    fn management(&mut self, action: Action) -> Vec<Effect> {
        if self.readonly {
            self.flash(
                format!("{}: read-only console", action.description()),
                false,
            );
            return Vec::new();
        }
        let Some(target) = self.target_of(action) else {
            self.flash(
                format!(
                    "{}: select something it applies to first",
                    action.description()
                ),
                false,
            );
            return Vec::new();
        };
        if action.dangerous() {
            self.popup = Some(Popup::Confirm {
                action,
                target: target.to_string(),
                reason: String::new(),
            });
            return Vec::new();
        }
        self.command_for(action, target, String::new())
            .map(|c| {
                self.busy += 1;
                vec![Effect::Run(c)]
            })
            .unwrap_or_default()
    }

    /// The entity an action acts on in the focused pane.
    fn target_of(&self, action: Action) -> Option<EntityRef> {
        let campaign = || self.selected_campaign().map(|c| c.entity());
        match action {
            Action::Approve
            | Action::Reject
            | Action::PriorityUp
            | Action::PriorityDown
            | Action::Hold
            | Action::Release
            | Action::Abort
            | Action::CloneRequest => campaign(),
            Action::SignOff => self.selected_subtask().map(|s| s.entity()),
            Action::Resubmit => match self.focus {
                Pane::Triage => self
                    .snap
                    .failures
                    .get(self.triage_row)
                    .and_then(|g| g.jobs.first())
                    .map(|j| JobId(*j).entity()),
                _ => self.selected_entity(),
            },
            _ => None,
        }
    }

    /// The command of `action` on `target` with `reason`.
    fn command_for(
        &mut self,
        action: Action,
        target: EntityRef,
        reason: String,
    ) -> Option<Command> {
        let campaign = CampaignId(target.id);
        let why = |default: &str| {
            if reason.trim().is_empty() {
                default.to_string()
            } else {
                reason.trim().to_string()
            }
        };
        Some(match action {
            Action::Approve => Command::Approve(campaign, why("approved in the console")),
            Action::Reject => {
                if reason.trim().is_empty() {
                    self.flash("reject: type the reason before enter", false);
                    return None;
                }
                Command::Reject(campaign, why(""))
            }
            Action::PriorityUp | Action::PriorityDown => {
                let now = self
                    .snap
                    .campaigns
                    .iter()
                    .find(|c| c.id == campaign.0)
                    .map(|c| c.priority)
                    .unwrap_or(0);
                let by = if action == Action::PriorityUp {
                    10
                } else {
                    -10
                };
                Command::Priority(campaign, (now + by).clamp(0, 1000))
            }
            Action::Hold => Command::Hold(campaign, why("held in the console")),
            Action::Release => Command::Release(campaign, why("released in the console")),
            Action::Abort => Command::Abort(campaign, why("aborted in the console")),
            Action::CloneRequest => Command::Clone(campaign),
            Action::SignOff => {
                Command::SignOff(SubtaskId(target.id), why("signed off in the console"))
            }
            Action::Resubmit if self.focus == Pane::Triage => {
                let jobs = self
                    .snap
                    .failures
                    .get(self.triage_row)
                    .map(|g| g.jobs.iter().map(|j| JobId(*j)).collect())
                    .unwrap_or_default();
                Command::ResubmitJobs(jobs, why("resubmitted from triage"))
            }
            Action::Resubmit => Command::Resubmit(target, why("resubmitted in the console")),
            _ => return None,
        })
    }

    fn popup_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(popup) = self.popup.clone() else {
            return Vec::new();
        };
        match popup {
            Popup::Help { scroll } => match self.keymap.action_for(&key) {
                Some(Action::Down) => self.popup = Some(Popup::Help { scroll: scroll + 1 }),
                Some(Action::Up) => {
                    self.popup = Some(Popup::Help {
                        scroll: scroll.saturating_sub(1),
                    })
                }
                Some(Action::PageDown) => {
                    self.popup = Some(Popup::Help {
                        scroll: scroll + 10,
                    })
                }
                _ => self.popup = None,
            },
            Popup::Problems(_) => self.popup = None,
            Popup::Confirm {
                action,
                target,
                mut reason,
            } => match key.code {
                KeyCode::Enter => {
                    self.popup = None;
                    let Ok(target) = target.parse::<EntityRef>() else {
                        return Vec::new();
                    };
                    if let Some(c) = self.command_for(action, target, reason) {
                        self.busy += 1;
                        return vec![Effect::Run(c)];
                    }
                }
                KeyCode::Esc => {
                    self.popup = None;
                    self.flash(format!("{}: not done", action.description()), true);
                }
                KeyCode::Backspace => {
                    reason.pop();
                    self.popup = Some(Popup::Confirm {
                        action,
                        target,
                        reason,
                    });
                }
                KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                    reason.push(c);
                    self.popup = Some(Popup::Confirm {
                        action,
                        target,
                        reason,
                    });
                }
                _ => {}
            },
        }
        Vec::new()
    }

    fn open_input(&mut self, kind: InputKind) {
        let text = match kind {
            InputKind::Command => String::new(),
            InputKind::Filter => self.filter_of_focus().to_string(),
        };
        self.input = Some(Input { kind, text });
    }

    /// The filter text of the focused list.
    pub fn filter_of_focus(&self) -> &str {
        match self.focus {
            Pane::Campaigns | Pane::Dag => &self.tree_filter,
            Pane::Jobs => &self.jobs.text,
            Pane::JobDetail => &self.log.search,
            Pane::Triage => &self.triage_filter,
            Pane::Approvals => &self.approvals_filter,
            Pane::History => &self.history_filter,
        }
    }

    fn set_filter(&mut self, text: String) {
        match self.focus {
            Pane::Campaigns | Pane::Dag => self.tree_filter = text,
            Pane::Jobs => {
                self.jobs.text = text;
                self.jobs.offset = 0;
                self.jobs_row = 0;
            }
            Pane::JobDetail => {
                self.log.search = text;
                self.log.follow = false;
            }
            Pane::Triage => self.triage_filter = text,
            Pane::Approvals => {
                self.approvals_filter = text;
                self.approvals_row = 0;
            }
            Pane::History => self.history_filter = text,
        }
    }

    fn input_key(&mut self, key: KeyEvent) -> Vec<Effect> {
        let Some(mut input) = self.input.take() else {
            return Vec::new();
        };
        match key.code {
            KeyCode::Esc => {
                if input.kind == InputKind::Filter {
                    self.set_filter(String::new());
                }
                return Vec::new();
            }
            KeyCode::Enter => {
                return match input.kind {
                    InputKind::Filter => {
                        self.set_filter(input.text);
                        Vec::new()
                    }
                    InputKind::Command => {
                        self.command_history.push(input.text.clone());
                        self.run_command(&input.text)
                    }
                };
            }
            KeyCode::Tab if input.kind == InputKind::Command => {
                if let Some(done) = super::command::complete(&input.text).first() {
                    input.text = done.clone();
                }
            }
            KeyCode::Up if input.kind == InputKind::Command => {
                if let Some(last) = self.command_history.last() {
                    input.text = last.clone();
                }
            }
            KeyCode::Backspace => {
                input.text.pop();
            }
            KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
                input.text.push(c)
            }
            _ => {}
        }
        if input.kind == InputKind::Filter {
            self.set_filter(input.text.clone());
        }
        self.input = Some(input);
        Vec::new()
    }

    /// Runs a `:` command line.
    pub fn run_command(&mut self, line: &str) -> Vec<Effect> {
        match super::command::parse(line) {
            Ok(super::command::Parsed::Action(action)) => self.apply(action),
            Ok(super::command::Parsed::Campaign(id)) => {
                match self.snap.campaigns.iter().find(|c| c.id == id.0) {
                    Some(c) => {
                        let experiment = format!("x:{}", c.experiment);
                        self.tree.open(vec![experiment.clone()]);
                        self.tree.select(vec![experiment, id.to_string()]);
                        self.focus = Pane::Campaigns;
                    }
                    None => self.flash(format!("{id}: no such campaign"), false),
                }
                Vec::new()
            }
            Ok(super::command::Parsed::Jobs(states)) => {
                self.jobs.states = states;
                self.jobs.offset = 0;
                self.jobs_row = 0;
                self.show(Pane::Jobs);
                Vec::new()
            }
            Ok(super::command::Parsed::Load { what, name }) => vec![Effect::Load { what, name }],
            Err(e) => {
                self.flash(e, false);
                Vec::new()
            }
        }
    }

    /// The breadcrumbs: the pane, then the selection's path.
    pub fn breadcrumbs(&self) -> Vec<String> {
        let mut crumbs: Vec<String> = self
            .tree
            .selected()
            .iter()
            .map(|id| id.trim_start_matches("x:").to_string())
            .collect();
        if matches!(self.focus, Pane::Jobs | Pane::JobDetail) {
            crumbs.push("jobs".into());
        }
        if let (Pane::JobDetail, Some(job)) = (self.focus, self.job) {
            crumbs.push(job.to_string());
        }
        crumbs
    }
}
