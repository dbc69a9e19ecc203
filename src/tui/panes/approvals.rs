//! The Approvals pane: requests waiting for an approver, and the selected
//! one's spec, as a diff against the request it was cloned from.

use crate::tui::app::{App, Pane};
use crate::tui::diff::{diff, DiffLine};
use crate::tui::theme::Slot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;

/// Draws the pending requests and the selected one's spec.
pub fn draw(frame: &mut Frame, app: &mut App, area: Rect) {
    let pending = app.visible_pending();
    let block = super::pane_block(app, Pane::Approvals, format!("{} pending", pending.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let list_height = (pending.len() as u16 + 1).clamp(2, inner.height / 2);
    let [list, spec] =
        Layout::vertical([Constraint::Length(list_height), Constraint::Min(2)]).areas(inner);
    let header = Row::new(["request", "experiment", "kind", "priority", "by", "title"])
        .style(app.theme.style(Slot::Title));
    let rows: Vec<Row> = pending
        .iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(r.id.clone()),
                Cell::from(r.experiment.clone()),
                Cell::from(r.kind.clone()),
                Cell::from(r.priority.to_string()),
                Cell::from(r.creator.clone()),
                Cell::from(r.title.clone()),
            ])
            .style(app.theme.style(Slot::Text))
        })
        .collect();
    let empty = rows.is_empty();
    let widths = [
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Min(10),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(app.theme.style(Slot::Selected));
    let mut state = TableState::default().with_selected((!empty).then_some(app.approvals_row));
    frame.render_stateful_widget(table, list, &mut state);
    if empty {
        frame.render_widget(
            Paragraph::new("nothing waits for approval").style(app.theme.style(Slot::Dim)),
            spec,
        );
        return;
    }
    draw_spec(frame, app, spec);
}

fn draw_spec(frame: &mut Frame, app: &App, area: Rect) {
    let Some((request, original)) = &app.snap.approval else {
        frame.render_widget(
            Paragraph::new("loading…").style(app.theme.style(Slot::Dim)),
            area,
        );
        return;
    };
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let new = pretty(&request.spec);
    let (title, lines): (String, Vec<Line>) = match original {
        Some(o) => (
            format!(
                " spec of {} · changes against {} ",
                request.summary.id, o.summary.id
            ),
            with_context(diff(&pretty(&o.spec), &new), 2)
                .into_iter()
                .map(|d| match d {
                    DiffLine::Same(l) => {
                        Line::from(Span::styled(format!("  {l}"), app.theme.style(Slot::Dim)))
                    }
                    DiffLine::Removed(l) => Line::from(Span::styled(
                        format!("- {l}"),
                        app.theme.style(Slot::StateFailed),
                    )),
                    DiffLine::Added(l) => Line::from(Span::styled(
                        format!("+ {l}"),
                        app.theme.style(Slot::StateOk),
                    )),
                })
                .collect(),
        ),
        None => (
            format!(" spec of {} (filed new, not a clone) ", request.summary.id),
            new.lines()
                .map(|l| Line::from(Span::styled(l.to_string(), app.theme.style(Slot::Text))))
                .collect(),
        ),
    };
    let block = Block::default()
        .borders(Borders::TOP)
        .border_style(app.theme.style(Slot::Border))
        .title(Span::styled(title, app.theme.style(Slot::Dim)));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The changed lines of a diff with `context` unchanged lines around each
/// change; runs of unchanged lines between changes become one `…` line.
fn with_context(lines: Vec<DiffLine>, context: usize) -> Vec<DiffLine> {
    let changed: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !matches!(l, DiffLine::Same(_)))
        .map(|(i, _)| i)
        .collect();
    if changed.is_empty() {
        return vec![DiffLine::Same("(no changes)".into())];
    }
    let near = |i: usize| {
        changed
            .iter()
            .any(|c| i + context >= *c && i <= c + context)
    };
    let mut out = Vec::new();
    let mut skipped = false;
    for (i, line) in lines.into_iter().enumerate() {
        if near(i) {
            if skipped {
                out.push(DiffLine::Same("…".into()));
                skipped = false;
            }
            out.push(line);
        } else {
            skipped = true;
        }
    }
    out
}
