//! The Triage pane: current failures of every campaign grouped by cause
//! (exit code, signal, memory, the batch system's words) and site, biggest
//! first, with first and last seen (a broken site or release shows across
//! campaigns). Enter opens the group's first job (why it failed, its logs);
//! resubmit retries the whole group, naming it and its size first.

use super::list::List;
use super::{movement_offers, pane_block, plural, Component, Ctx, Msg};
use crate::model::ids::{EntityRef, JobId};
use crate::ops::views::iso;
use crate::store::overview::FailureGroup;
use crate::tui::action::{Action, Offer};
use crate::tui::app::Pane;
use crate::tui::data::{Command, JobSet};
use crate::tui::popup::Confirm;
use crate::tui::theme::Slot;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;

/// The failure list's state.
#[derive(Debug, Default)]
pub struct Triage {
    list: List,
}

impl Triage {
    /// The groups the filter lets through.
    fn visible<'a>(&self, ctx: &Ctx<'a>) -> Vec<&'a FailureGroup> {
        let f = self.list.filter.to_lowercase();
        ctx.snap
            .failures
            .iter()
            .filter(|g| {
                f.is_empty()
                    || g.cause.to_lowercase().contains(&f)
                    || g.site.as_deref().unwrap_or("").to_lowercase().contains(&f)
            })
            .collect()
    }

    fn selected<'a>(&self, ctx: &Ctx<'a>) -> Option<&'a FailureGroup> {
        let visible = self.visible(ctx);
        visible
            .get(self.list.row.min(visible.len().saturating_sub(1)))
            .copied()
    }
}

/// `` `exit code 3` at local `` — how a group is named in hints and questions.
fn group_name(g: &FailureGroup) -> String {
    format!(
        "`{}` at {}",
        g.cause,
        g.site.as_deref().unwrap_or("no site")
    )
}

impl Component for Triage {
    fn actions(&self, ctx: &Ctx) -> Vec<Offer> {
        let mut offers = vec![Offer::new(Action::Filter, "filter")];
        if let Some(g) = self.selected(ctx) {
            if let Some(first) = g.jobs.first() {
                offers.insert(0, Offer::new(Action::Open, format!("why J{first} failed")));
            }
            offers.push(Offer::new(
                Action::Resubmit,
                format!("resubmit group ({})", plural(g.jobs.len(), "job")),
            ));
            offers.extend(movement_offers());
        }
        offers
    }

    fn handle(&mut self, action: Action, ctx: &Ctx) -> Vec<Msg> {
        if self.list.moved(action, self.visible(ctx).len()) {
            return Vec::new();
        }
        let Some(g) = self.selected(ctx) else {
            return Vec::new();
        };
        match action {
            Action::Open => g
                .jobs
                .first()
                .map(|j| vec![Msg::OpenJob(JobId(*j))])
                .unwrap_or_default(),
            Action::Resubmit => {
                let jobs: Vec<JobId> = g.jobs.iter().map(|j| JobId(*j)).collect();
                let mut notes = vec!["each gets a new attempt with the same plan".to_string()];
                if (g.jobs.len() as i64) < g.count {
                    notes.push(format!(
                        "the group has {} jobs; the oldest {} are resubmitted",
                        g.count,
                        g.jobs.len()
                    ));
                }
                vec![Msg::Ask(
                    Confirm::new(
                        format!(
                            "resubmit {} of {}?",
                            plural(jobs.len(), "failed job"),
                            group_name(g)
                        ),
                        Command::ResubmitJobs(JobSet::Ids(jobs), "resubmitted from triage".into()),
                    )
                    .noting(notes),
                )]
            }
            _ => Vec::new(),
        }
    }

    fn back(&mut self) -> bool {
        self.list.drop_filter()
    }

    fn filter(&self) -> Option<&str> {
        Some(&self.list.filter)
    }

    fn set_filter(&mut self, text: &str) {
        self.list.set_filter(text);
    }

    fn click(&mut self, row: usize, ctx: &Ctx) {
        self.list.click(row, self.visible(ctx).len());
    }

    fn subject(&self, ctx: &Ctx) -> Option<EntityRef> {
        self.selected(ctx)
            .and_then(|g| g.jobs.first())
            .map(|j| JobId(*j).entity())
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        let theme = ctx.theme;
        let visible = self.visible(ctx);
        self.list.prepare(visible.len(), area.height, true);
        let total: i64 = ctx.snap.failures.iter().map(|g| g.count).sum();
        let extra = format!(
            "all campaigns · {} in {}",
            plural(total as usize, "failed job"),
            plural(ctx.snap.failures.len(), "group")
        );
        let block = pane_block(ctx, Pane::Triage, extra, Some(&self.list.filter));
        let header = Row::new(["count", "cause", "site", "first", "last", "jobs"])
            .style(theme.style(Slot::Title));
        let rows = visible.iter().map(|g| {
            let jobs: Vec<String> = g.jobs.iter().take(4).map(|j| format!("J{j}")).collect();
            let more = if g.count > 4 { " …" } else { "" };
            Row::new(vec![
                Cell::from(Span::styled(
                    g.count.to_string(),
                    theme.style(Slot::StateFailed),
                )),
                Cell::from(g.cause.clone()),
                Cell::from(g.site.clone().unwrap_or_else(|| "—".into())),
                Cell::from(short_time(g.first_seen)),
                Cell::from(short_time(g.last_seen)),
                Cell::from(format!("{}{more}", jobs.join(" "))),
            ])
            .style(theme.style(Slot::Text))
        });
        let widths = [
            Constraint::Length(6),
            Constraint::Min(20),
            Constraint::Length(8),
            Constraint::Length(10),
            Constraint::Length(9),
            Constraint::Length(24),
        ];
        let table = Table::new(rows, widths)
            .header(header)
            .block(block)
            .row_highlight_style(theme.style(Slot::Selected));
        frame.render_stateful_widget(table, area, &mut self.list.table);
    }
}

/// `HH:MM:SS` of a time in ms (UTC).
fn short_time(ms: i64) -> String {
    let full = iso(ms);
    full.get(11..19).unwrap_or(&full).to_string()
}
