//! The History pane: every transition of the selected item, oldest first,
//! with time, old → new, reason and user (M7, M8).

use crate::tui::app::{App, Pane};
use crate::tui::theme::Slot;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Row, Table, TableState};
use ratatui::Frame;

/// Draws the history of the selected entity.
pub fn draw(frame: &mut Frame, app: &mut App, area: Rect) {
    let f = app.history_filter.to_lowercase();
    let entity = app
        .snap
        .view
        .entity
        .map(|e| e.to_string())
        .unwrap_or_else(|| "nothing selected".into());
    let block = super::pane_block(
        app,
        Pane::History,
        format!("{entity} · {} transitions", app.snap.history.len()),
    );
    let header = Row::new(["when (UTC)", "old", "new", "user", "reason"])
        .style(app.theme.style(Slot::Title));
    let rows = app
        .snap
        .history
        .iter()
        .filter(|h| {
            f.is_empty()
                || h.reason.to_lowercase().contains(&f)
                || h.user.contains(&f)
                || h.new.contains(&f)
        })
        .map(|h| {
            let old = h.old.clone().unwrap_or_else(|| "—".into());
            Row::new(vec![
                Cell::from(h.ts.get(..19).unwrap_or(&h.ts).replace('T', " ")),
                Cell::from(Span::styled(old.clone(), app.theme.state(&old))),
                Cell::from(Span::styled(h.new.clone(), app.theme.state(&h.new))),
                Cell::from(h.user.clone()),
                Cell::from(h.reason.clone()),
            ])
            .style(app.theme.style(Slot::Text))
        });
    let widths = [
        Constraint::Length(19),
        Constraint::Length(16),
        Constraint::Length(16),
        Constraint::Length(10),
        Constraint::Min(10),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .row_highlight_style(app.theme.style(Slot::Selected));
    let selected =
        (app.focus == Pane::History && !app.snap.history.is_empty()).then_some(app.history_scroll);
    let mut state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
}
