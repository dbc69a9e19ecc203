//! The Jobs pane: a live table of one page of jobs (sorted and filtered by
//! the database), so a million jobs draw as fast as a hundred. Columns drop
//! by priority on narrow screens and never cut a state. Rows can be marked
//! (space, shift-arrows, `*` for every job matching the filter) for bulk
//! hold, release, remove and resubmit; without marks the actions follow the
//! selected job's state.

use super::{movement, movement_offers, pane_block, short_duration, short_kib, short_ms};
use super::{Component, Ctx, Msg};
use crate::clock::now_ms;
use crate::model::hold::JobAction;
use crate::model::ids::{CampaignId, EntityRef, JobId, SubtaskId};
use crate::model::state::{JobState, Lifecycle};
use crate::ops::jobs::JobView;
use crate::store::overview::{JobQuery, JobSort};
use crate::tui::action::{Action, Offer};
use crate::tui::app::Pane;
use crate::tui::data::{Command, JobSet};
use crate::tui::popup::Confirm;
use crate::tui::theme::{Slot, Theme};
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};
use ratatui::Frame;
use std::collections::BTreeSet;

/// Jobs loaded per page of the table.
pub const JOBS_PAGE: i64 = 500;

/// The table's state.
#[derive(Debug)]
pub struct Jobs {
    /// What is asked of the database (its campaign follows the tree).
    query: JobQuery,
    /// The selected row within the loaded page.
    row: usize,
    /// The name of the subtask the table is narrowed to.
    subtask_name: Option<String>,
    /// Marked jobs.
    marks: BTreeSet<i64>,
    /// Every job matching the query is marked.
    all_matching: bool,
    table: TableState,
    page: usize,
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs {
            query: JobQuery {
                limit: JOBS_PAGE,
                ..JobQuery::default()
            },
            row: 0,
            subtask_name: None,
            marks: BTreeSet::new(),
            all_matching: false,
            table: TableState::default(),
            page: 10,
        }
    }
}

impl Jobs {
    /// The page to load, in `campaign`.
    pub fn query(&self, campaign: Option<CampaignId>) -> JobQuery {
        JobQuery {
            campaign: campaign.map(|c| c.0),
            ..self.query.clone()
        }
    }

    /// Narrows the table to one subtask's jobs.
    pub fn scope_to(&mut self, subtask: SubtaskId, name: String) {
        self.query.subtask = Some(subtask.0);
        self.subtask_name = Some(name);
        self.rewind();
        self.unmark();
    }

    /// Shows only jobs in `states` (all when empty).
    pub fn show_states(&mut self, states: Vec<String>) {
        self.query.states = states;
        self.rewind();
    }

    fn rewind(&mut self) {
        self.query.offset = 0;
        self.row = 0;
    }

    /// Drops every mark (after a bulk action went out, or on Esc).
    pub fn unmark(&mut self) {
        self.marks.clear();
        self.all_matching = false;
    }

    fn selected<'a>(&self, ctx: &Ctx<'a>) -> Option<&'a JobView> {
        ctx.snap.jobs.get(self.row)
    }

    /// What the marks stand for, and how many jobs that is.
    fn marked(&self, ctx: &Ctx) -> Option<(JobSet, i64)> {
        if self.all_matching {
            let query = self.query(ctx.scope.campaign);
            return Some((JobSet::Matching(query), ctx.snap.jobs_total));
        }
        if self.marks.is_empty() {
            return None;
        }
        let ids = self.marks.iter().map(|j| JobId(*j)).collect();
        Some((JobSet::Ids(ids), self.marks.len() as i64))
    }

    /// Moves the cursor, loading the next or previous page at its edges.
    fn move_by(&mut self, by: i64, total: i64) {
        let absolute = (self.query.offset + self.row as i64)
            .saturating_add(by)
            .clamp(0, (total - 1).max(0));
        let page_start = absolute - absolute % JOBS_PAGE;
        self.query.offset = page_start;
        self.row = (absolute - page_start) as usize;
    }

    fn toggle_mark(&mut self, ctx: &Ctx, only_add: bool) {
        if let Some(id) = self.selected(ctx).and_then(|j| job_id(&j.id)) {
            if !self.marks.insert(id.0) && !only_add {
                self.marks.remove(&id.0);
            }
        }
    }
}

fn job_id(text: &str) -> Option<JobId> {
    text.parse::<EntityRef>().ok().map(|e| JobId(e.id))
}

/// The actions a job's state allows (the model's job-action table), for
/// the table and the job's detail.
pub fn job_offers(job: &JobView) -> Vec<Offer> {
    let Some(state) = JobState::parse(&job.state) else {
        return Vec::new();
    };
    let mut offers: Vec<Offer> = [
        (JobAction::Hold, Action::Hold),
        (JobAction::Release, Action::Release),
        (JobAction::Remove, Action::Abort),
    ]
    .into_iter()
    .filter(|(act, _)| act.refusal(&job.id, state, None, None).is_none())
    .map(|(act, key)| Offer::new(key, format!("{} {}", act.verb(), job.id)))
    .collect();
    if matches!(
        state,
        JobState::Failed | JobState::Removed | JobState::Cancelled
    ) {
        offers.push(Offer::new(Action::Resubmit, format!("resubmit {}", job.id)));
    }
    offers
}

/// The offers for a set of marked jobs.
fn marked_offers(count: i64) -> Vec<Offer> {
    let n = super::plural(count as usize, "marked job");
    vec![
        Offer::new(Action::Hold, format!("hold {n}")),
        Offer::new(Action::Release, format!("release {n}")),
        Offer::new(Action::Abort, format!("remove {n}")),
        Offer::new(Action::Resubmit, format!("resubmit {n}")),
    ]
}

/// The confirmation of a job action on `jobs`, described as `what`.
pub fn job_msg(action: Action, jobs: JobSet, what: &str) -> Option<Msg> {
    let (question, note, command) = match action {
        Action::Hold => (
            format!("hold {what}?"),
            "queued jobs stay queued; running ones are held as their batch system can",
            Command::HoldJobs(jobs, "held in the console".into()),
        ),
        Action::Release => (
            format!("release {what}?"),
            "they go back to their batch system's queue",
            Command::ReleaseJobs(jobs, "released in the console".into()),
        ),
        Action::Abort => (
            format!("remove {what}?"),
            "as condor_rm / scancel: they end as removed and are not retried",
            Command::RemoveJobs(jobs, "removed in the console".into()),
        ),
        Action::Resubmit => (
            format!("resubmit {what}?"),
            "each failed or removed job gets a new attempt with the same plan",
            Command::ResubmitJobs(jobs, "resubmitted in the console".into()),
        ),
        _ => return None,
    };
    Some(Msg::Ask(
        Confirm::new(question, command).noting(vec![note.to_string()]),
    ))
}

impl Component for Jobs {
    fn actions(&self, ctx: &Ctx) -> Vec<Offer> {
        let Some(job) = self.selected(ctx) else {
            return vec![Offer::new(Action::Filter, "filter")];
        };
        let next = JobSort::ALL
            .iter()
            .position(|s| *s == self.query.sort)
            .map_or(JobSort::Id, |at| {
                JobSort::ALL[(at + 1) % JobSort::ALL.len()]
            });
        let mut offers = vec![
            Offer::new(Action::Open, format!("open {}", job.id)),
            Offer::new(Action::Filter, "filter"),
        ];
        match self.marked(ctx) {
            Some((_, count)) => offers.extend(marked_offers(count)),
            None => offers.extend(job_offers(job)),
        }
        offers.extend([
            Offer::new(Action::Mark, "mark"),
            Offer::quiet(
                Action::MarkAll,
                format!("mark all {} matching", ctx.snap.jobs_total),
            ),
            Offer::quiet(Action::MarkUp, "mark and move up"),
            Offer::quiet(Action::MarkDown, "mark and move down"),
            Offer::new(Action::SortNext, format!("sort by {}", next.label())),
            Offer::quiet(Action::SortReverse, "reverse the sort"),
        ]);
        offers.extend(movement_offers());
        offers
    }

    fn handle(&mut self, action: Action, ctx: &Ctx) -> Vec<Msg> {
        if let Some(by) = movement(action, self.page) {
            self.move_by(by, ctx.snap.jobs_total);
            return Vec::new();
        }
        match action {
            Action::Open => {
                if let Some(id) = self.selected(ctx).and_then(|j| job_id(&j.id)) {
                    return vec![Msg::OpenJob(id)];
                }
            }
            Action::SortNext => {
                let at = JobSort::ALL
                    .iter()
                    .position(|s| *s == self.query.sort)
                    .unwrap_or(0);
                self.query.sort = JobSort::ALL[(at + 1) % JobSort::ALL.len()];
                self.rewind();
            }
            Action::SortReverse => {
                self.query.descending = !self.query.descending;
                self.rewind();
            }
            Action::Mark => {
                self.toggle_mark(ctx, false);
                self.move_by(1, ctx.snap.jobs_total);
            }
            Action::MarkUp | Action::MarkDown => {
                self.toggle_mark(ctx, true);
                let by = if action == Action::MarkUp { -1 } else { 1 };
                self.move_by(by, ctx.snap.jobs_total);
            }
            Action::MarkAll => {
                let was = self.all_matching;
                self.unmark();
                self.all_matching = !was;
            }
            _ => {
                let (jobs, what) = match self.marked(ctx) {
                    Some((set, count)) => (set, super::plural(count as usize, "marked job")),
                    None => {
                        let Some(job) = self.selected(ctx) else {
                            return Vec::new();
                        };
                        let Some(id) = job_id(&job.id) else {
                            return Vec::new();
                        };
                        (JobSet::Ids(vec![id]), job.id.clone())
                    }
                };
                return job_msg(action, jobs, &what).into_iter().collect();
            }
        }
        Vec::new()
    }

    fn back(&mut self) -> bool {
        if !self.marks.is_empty() || self.all_matching {
            self.unmark();
            return true;
        }
        let narrowed = !self.query.text.is_empty()
            || !self.query.states.is_empty()
            || self.query.subtask.is_some();
        if narrowed {
            self.query.text.clear();
            self.query.states.clear();
            self.query.subtask = None;
            self.subtask_name = None;
            self.rewind();
        }
        narrowed
    }

    fn filter(&self) -> Option<&str> {
        Some(&self.query.text)
    }

    fn set_filter(&mut self, text: &str) {
        if self.query.text != text {
            self.query.text = text.to_string();
            self.rewind();
        }
    }

    fn click(&mut self, row: usize, ctx: &Ctx) {
        if row == 0 {
            return;
        }
        let at = self.table.offset() + row - 1;
        if at < ctx.snap.jobs.len() {
            self.row = at;
        }
    }

    fn subject(&self, ctx: &Ctx) -> Option<EntityRef> {
        self.selected(ctx).and_then(|j| j.id.parse().ok())
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        self.page = area.height.saturating_sub(3) as usize;
        let snap = ctx.snap;
        self.row = self.row.min(snap.jobs.len().saturating_sub(1));
        let block = pane_block(ctx, Pane::Jobs, self.title(ctx), Some(&self.query.text));
        let columns = fit_columns(area.width.saturating_sub(2));
        let header = Row::new(columns.iter().map(|c| {
            let slot = if c.sort.is_some() && c.sort == Some(self.query.sort) {
                Slot::Key
            } else {
                Slot::Title
            };
            Cell::from(Span::styled(c.name, ctx.theme.style(slot)))
        }));
        let now = now_ms();
        let rows = snap.jobs.iter().map(|j| {
            let marked =
                self.all_matching || job_id(&j.id).is_some_and(|id| self.marks.contains(&id.0));
            Row::new(columns.iter().map(|c| (c.cell)(j, marked, now, ctx.theme)))
                .style(ctx.theme.style(Slot::Text))
        });
        let table = Table::new(rows, columns.iter().map(|c| c.width))
            .header(header)
            .block(block)
            .row_highlight_style(ctx.theme.style(Slot::Selected));
        self.table
            .select((!snap.jobs.is_empty()).then_some(self.row));
        frame.render_stateful_widget(table, area, &mut self.table);
    }
}

impl Jobs {
    fn title(&self, ctx: &Ctx) -> String {
        let snap = ctx.snap;
        let mut scope = ctx
            .scope
            .campaign
            .map(|c| c.to_string())
            .unwrap_or_else(|| "all campaigns".into());
        if let (Some(s), Some(name)) = (self.query.subtask, &self.subtask_name) {
            scope = format!("{scope} › S{s} {name}");
        }
        let states = if self.query.states.is_empty() {
            "all".to_string()
        } else {
            self.query.states.join(",")
        };
        let shown = &snap.view.jobs;
        let first = (shown.offset + 1).min(snap.jobs_total);
        let last = shown.offset + snap.jobs.len() as i64;
        let arrow = if self.query.descending { "↓" } else { "↑" };
        let mut title = format!(
            "{scope} · {states} · {first}–{last} of {} · by {} {arrow}",
            snap.jobs_total,
            self.query.sort.label()
        );
        if *shown != self.query(ctx.scope.campaign) {
            title += " · loading…";
        }
        if self.all_matching {
            title += &format!(" · all {} marked", snap.jobs_total);
        } else if !self.marks.is_empty() {
            title += &format!(" · {} marked", self.marks.len());
        }
        title
    }
}

/// A column of the table: heading, width, how long it stays as the table
/// narrows (higher stays longer), its sort, and its cell.
struct Column {
    name: &'static str,
    width: Constraint,
    keep: u8,
    sort: Option<JobSort>,
    cell: fn(&JobView, bool, i64, &Theme) -> Cell<'static>,
}

/// Every column in display order.
fn columns() -> Vec<Column> {
    fn text(s: Option<&String>) -> Cell<'static> {
        Cell::from(s.cloned().unwrap_or_default())
    }
    vec![
        Column {
            name: "",
            width: Constraint::Length(1),
            keep: u8::MAX,
            sort: None,
            cell: |_, marked, _, t| {
                Cell::from(Span::styled(
                    if marked { "*" } else { " " },
                    t.style(Slot::Key),
                ))
            },
        },
        Column {
            name: "job",
            width: Constraint::Length(8),
            keep: u8::MAX,
            sort: Some(JobSort::Id),
            cell: |j, _, _, _| Cell::from(j.id.clone()),
        },
        Column {
            name: "step",
            width: Constraint::Length(8),
            keep: 4,
            sort: None,
            cell: |j, _, _, _| Cell::from(j.step.clone()),
        },
        Column {
            name: "state",
            width: Constraint::Length(10),
            keep: u8::MAX,
            sort: Some(JobSort::State),
            cell: |j, _, _, t| Cell::from(Span::styled(j.state.clone(), t.state(&j.state))),
        },
        Column {
            name: "stage",
            width: Constraint::Length(8),
            keep: 6,
            sort: None,
            cell: |j, _, _, _| text(j.stage.as_ref()),
        },
        Column {
            name: "in state",
            width: Constraint::Length(8),
            keep: 7,
            sort: Some(JobSort::Since),
            cell: |j, _, now, _| {
                let since = chrono::DateTime::parse_from_rfc3339(&j.state_since)
                    .map(|t| now - t.timestamp_millis())
                    .unwrap_or(0);
                Cell::from(short_duration(since))
            },
        },
        Column {
            name: "site",
            width: Constraint::Length(10),
            keep: 5,
            sort: Some(JobSort::Site),
            cell: |j, _, _, _| Cell::from(j.site.clone().unwrap_or_else(|| "—".into())),
        },
        Column {
            name: "att",
            width: Constraint::Length(3),
            keep: 1,
            sort: Some(JobSort::Attempt),
            cell: |j, _, _, _| Cell::from(j.attempt.to_string()),
        },
        Column {
            name: "cpu",
            width: Constraint::Length(7),
            keep: 3,
            sort: Some(JobSort::Cpu),
            cell: |j, _, _, _| Cell::from(j.cpu_ms.map(short_ms).unwrap_or_default()),
        },
        Column {
            name: "wall",
            width: Constraint::Length(7),
            keep: 2,
            sort: Some(JobSort::Wall),
            cell: |j, _, _, _| Cell::from(j.wall_ms.map(short_ms).unwrap_or_default()),
        },
        Column {
            name: "rss",
            width: Constraint::Length(6),
            keep: 1,
            sort: Some(JobSort::Rss),
            cell: |j, _, _, _| Cell::from(j.max_rss_kb.map(short_kib).unwrap_or_default()),
        },
        Column {
            name: "exit",
            width: Constraint::Length(4),
            keep: 1,
            sort: None,
            cell: |j, _, _, _| Cell::from(j.exit_code.map(|c| c.to_string()).unwrap_or_default()),
        },
        Column {
            name: "batch id",
            width: Constraint::Length(15),
            keep: 0,
            sort: None,
            cell: |j, _, _, _| text(j.batch_job_id.as_ref()),
        },
        Column {
            name: "cause",
            width: Constraint::Min(12),
            keep: 2,
            sort: None,
            cell: |j, _, _, t| {
                Cell::from(Span::styled(
                    j.failure.clone().unwrap_or_default(),
                    t.style(Slot::StateFailed),
                ))
            },
        },
    ]
}

/// The columns that fit in `width`, dropping the least kept first (each
/// column takes its width and one space).
fn fit_columns(width: u16) -> Vec<Column> {
    let cost = |c: &Column| match c.width {
        Constraint::Length(n) | Constraint::Min(n) => n + 1,
        _ => 1,
    };
    let all = columns();
    let mut by_keep: Vec<usize> = (0..all.len()).collect();
    by_keep.sort_by_key(|i| (std::cmp::Reverse(all[*i].keep), *i));
    let mut used = 0u16;
    let mut chosen = vec![false; all.len()];
    for i in by_keep {
        let c = cost(&all[i]);
        if used + c <= width || all[i].keep == u8::MAX {
            used += c;
            chosen[i] = true;
        }
    }
    all.into_iter()
        .zip(chosen)
        .filter(|(_, keep)| *keep)
        .map(|(c, _)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(width: u16) -> Vec<&'static str> {
        fit_columns(width).iter().map(|c| c.name).collect()
    }

    #[test]
    fn narrow_tables_drop_columns_by_priority_and_keep_the_state_whole() {
        let narrow = names(78);
        for kept in ["job", "state", "stage", "in state", "site"] {
            assert!(narrow.contains(&kept), "{kept} at 78: {narrow:?}");
        }
        assert!(!narrow.contains(&"batch id"), "{narrow:?}");
        assert!(!narrow.contains(&"cause"), "{narrow:?}");
        let wide = names(122);
        for kept in ["step", "batch id", "exit", "cause", "cpu", "wall", "rss"] {
            assert!(wide.contains(&kept), "{kept} at 122: {wide:?}");
        }
        let state = fit_columns(30)
            .into_iter()
            .find(|c| c.name == "state")
            .unwrap();
        assert_eq!(state.width, Constraint::Length(10), "`submitting` fits");
    }
}
