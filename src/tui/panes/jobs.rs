//! The Jobs pane: a live table of one page of jobs (sorted and filtered by
//! the database), so a million jobs draw as fast as a hundred.

use crate::store::now_ms;
use crate::store::overview::JobSort;
use crate::tui::app::{App, Pane};
use crate::tui::theme::Slot;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};
use ratatui::Frame;

const COLUMNS: &[(&str, Constraint, Option<JobSort>)] = &[
    ("job", Constraint::Length(9), Some(JobSort::Id)),
    ("batch id", Constraint::Length(14), None),
    ("site", Constraint::Length(8), Some(JobSort::Site)),
    ("state", Constraint::Length(10), Some(JobSort::State)),
    ("stage", Constraint::Length(9), None),
    ("in state", Constraint::Length(8), Some(JobSort::Since)),
    ("cpu", Constraint::Length(7), Some(JobSort::Cpu)),
    ("wall", Constraint::Length(7), Some(JobSort::Wall)),
    ("rss", Constraint::Length(6), Some(JobSort::Rss)),
    ("att", Constraint::Length(3), Some(JobSort::Attempt)),
];

/// Draws the jobs table.
pub fn draw(frame: &mut Frame, app: &mut App, area: Rect) {
    let snap = &app.snap;
    let first = app.jobs.offset + 1;
    let last = app.jobs.offset + snap.jobs.len() as i64;
    let states = if app.jobs.states.is_empty() {
        "all".to_string()
    } else {
        app.jobs.states.join(",")
    };
    let scope = app
        .selected_campaign()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "all campaigns".into());
    let extra = format!(
        "{scope} · {states} · {first}–{last} of {} · by {}{}",
        snap.jobs_total,
        app.jobs.sort.label(),
        if app.jobs.descending { " ↓" } else { " ↑" }
    );
    let block = super::pane_block(app, Pane::Jobs, extra);
    let now = now_ms();
    let header = Row::new(COLUMNS.iter().map(|(name, _, sort)| {
        let style = if *sort == Some(app.jobs.sort) {
            app.theme.style(Slot::Key)
        } else {
            app.theme.style(Slot::Title)
        };
        Cell::from(Span::styled(*name, style))
    }));
    let rows = snap.jobs.iter().map(|j| {
        let since = chrono::DateTime::parse_from_rfc3339(&j.state_since)
            .map(|t| now - t.timestamp_millis())
            .unwrap_or(0);
        Row::new(vec![
            Cell::from(j.id.clone()),
            Cell::from(j.batch_job_id.clone().unwrap_or_else(|| "—".into())),
            Cell::from(j.site.clone().unwrap_or_else(|| "—".into())),
            Cell::from(Span::styled(j.state.clone(), app.theme.state(&j.state))),
            Cell::from(j.stage.clone().unwrap_or_default()),
            Cell::from(super::short_duration(since)),
            Cell::from(j.cpu_ms.map(super::short_ms).unwrap_or_default()),
            Cell::from(j.wall_ms.map(super::short_ms).unwrap_or_default()),
            Cell::from(j.max_rss_kb.map(super::short_kib).unwrap_or_default()),
            Cell::from(j.attempt.to_string()),
        ])
        .style(app.theme.style(Slot::Text))
    });
    let table = Table::new(rows, COLUMNS.iter().map(|(_, c, _)| *c))
        .header(header)
        .block(block)
        .row_highlight_style(app.theme.style(Slot::Selected));
    let mut state = TableState::default().with_selected(Some(app.jobs_row));
    frame.render_stateful_widget(table, area, &mut state);
}
