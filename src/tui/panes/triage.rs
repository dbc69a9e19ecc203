//! The Triage pane: current failures grouped by cause (exit code, signal,
//! memory, the batch system's words) and site, biggest first, with first and
//! last seen; Enter opens the first job's logs, resubmit retries the group.

use crate::ops::views::iso;
use crate::tui::app::{App, Pane};
use crate::tui::theme::Slot;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};
use ratatui::Frame;

/// Draws the failure groups.
pub fn draw(frame: &mut Frame, app: &mut App, area: Rect) {
    let f = app.triage_filter.to_lowercase();
    let total: i64 = app.snap.failures.iter().map(|g| g.count).sum();
    let scope = app
        .selected_campaign()
        .map(|c| c.to_string())
        .unwrap_or_else(|| "all campaigns".into());
    let block = super::pane_block(
        app,
        Pane::Triage,
        format!(
            "{scope} · {total} failed jobs in {} groups",
            app.snap.failures.len()
        ),
    );
    let header = Row::new(["count", "cause", "site", "first seen", "last seen", "jobs"])
        .style(app.theme.style(Slot::Title));
    let rows = app
        .snap
        .failures
        .iter()
        .filter(|g| {
            f.is_empty()
                || g.cause.to_lowercase().contains(&f)
                || g.site.as_deref().unwrap_or("").contains(&f)
        })
        .map(|g| {
            let jobs: Vec<String> = g.jobs.iter().take(4).map(|j| format!("J{j}")).collect();
            let more = if g.count > 4 { " …" } else { "" };
            Row::new(vec![
                Cell::from(Span::styled(
                    g.count.to_string(),
                    app.theme.style(Slot::StateFailed),
                )),
                Cell::from(g.cause.clone()),
                Cell::from(g.site.clone().unwrap_or_else(|| "—".into())),
                Cell::from(short_time(g.first_seen)),
                Cell::from(short_time(g.last_seen)),
                Cell::from(format!("{}{more}", jobs.join(" "))),
            ])
            .style(app.theme.style(Slot::Text))
        });
    let widths = [
        Constraint::Length(6),
        Constraint::Min(20),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(24),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(app.theme.style(Slot::Selected));
    let mut state = TableState::default().with_selected(Some(app.triage_row));
    frame.render_stateful_widget(table, area, &mut state);
}

/// `HH:MM:SS` of a time in ms (UTC).
fn short_time(ms: i64) -> String {
    let full = iso(ms);
    full.get(11..19).unwrap_or(&full).to_string()
}
