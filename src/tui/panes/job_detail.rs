//! The Job pane: what the job is and where it ran, its stage timeline with
//! CPU, wall and memory per stage, and its logs with search, follow and wrap.

use crate::tui::app::{App, Pane};
use crate::tui::theme::Slot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

/// How many log lines the viewer keeps (the end of the log).
const LOG_LINES: usize = 5000;

/// Draws the job, its stages and its logs.
pub fn draw(frame: &mut Frame, app: &mut App, area: Rect) {
    let block = super::pane_block(
        app,
        Pane::JobDetail,
        app.job.map(|j| j.to_string()).unwrap_or_default(),
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(detail) = app.snap.job.clone() else {
        frame.render_widget(
            Paragraph::new("loading…").style(app.theme.style(Slot::Dim)),
            inner,
        );
        return;
    };
    let stages = detail.stages.len() as u16;
    let [summary, timeline, logs] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length((stages + 2).min(inner.height / 3).max(3)),
        Constraint::Min(3),
    ])
    .areas(inner);
    let j = &detail.job;
    let failure = match (&j.failure, j.exit_code) {
        (Some(f), _) => f.clone(),
        (None, Some(c)) if c != 0 => format!("exit code {c}"),
        _ => String::new(),
    };
    let lines = vec![
        Line::from(vec![
            Span::styled(format!("{} ", j.id), app.theme.style(Slot::Title)),
            Span::styled(format!("{} ", j.state), app.theme.state(&j.state)),
            Span::styled(
                format!("since {} · attempt {}", j.state_since, j.attempt),
                app.theme.style(Slot::Dim),
            ),
        ]),
        Line::from(Span::styled(
            format!(
                "{} · site {} · node {} · batch id {} · subtask {}",
                j.backend,
                j.site.as_deref().unwrap_or("—"),
                j.node.as_deref().unwrap_or("—"),
                j.batch_job_id.as_deref().unwrap_or("—"),
                j.subtask
            ),
            app.theme.style(Slot::Text),
        )),
        Line::from(Span::styled(failure, app.theme.style(Slot::StateFailed))),
    ];
    frame.render_widget(Paragraph::new(lines), summary);
    let header =
        Row::new(["stage", "wall", "cpu", "rss", "ok"]).style(app.theme.style(Slot::Title));
    let rows = detail.stages.iter().map(|s| {
        let ok = match s.ok {
            Some(true) => "✓",
            Some(false) => "✗",
            None => "…",
        };
        Row::new(vec![
            Cell::from(s.name.clone()),
            Cell::from(s.wall_ms.map(super::short_ms).unwrap_or_default()),
            Cell::from(s.cpu_ms.map(super::short_ms).unwrap_or_default()),
            Cell::from(s.max_rss_kb.map(super::short_kib).unwrap_or_default()),
            Cell::from(ok),
        ])
        .style(app.theme.style(Slot::Text))
    });
    let widths = [
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(3),
    ];
    frame.render_widget(Table::new(rows, widths).header(header), timeline);
    draw_logs(frame, app, logs);
}

fn draw_logs(frame: &mut Frame, app: &mut App, area: Rect) {
    let text: Vec<String> = match &app.snap.logs {
        Some(Ok(bundle)) => {
            let mut all: Vec<String> = bundle.stdout.lines().map(str::to_string).collect();
            if !bundle.stderr.is_empty() {
                all.push("── stderr ──".into());
                all.extend(bundle.stderr.lines().map(str::to_string));
            }
            let skip = all.len().saturating_sub(LOG_LINES);
            all.split_off(skip)
        }
        Some(Err(why)) => vec![why.clone()],
        None => vec!["loading…".into()],
    };
    let visible = area.height.saturating_sub(1) as usize;
    let search = app.log.search.to_lowercase();
    if !search.is_empty() && !app.log.follow {
        if let Some(hit) = text.iter().position(|l| l.to_lowercase().contains(&search)) {
            app.log.scroll = app.log.scroll.max(hit).min(text.len().saturating_sub(1));
        }
    }
    let top = if app.log.follow {
        text.len().saturating_sub(visible)
    } else {
        app.log.scroll.min(text.len().saturating_sub(1))
    };
    app.log.scroll = top;
    let lines: Vec<Line> = text
        .iter()
        .skip(top)
        .take(visible.max(1) * 4)
        .map(|l| {
            let hit = !search.is_empty() && l.to_lowercase().contains(&search);
            Line::from(Span::styled(
                l.clone(),
                app.theme
                    .style(if hit { Slot::Selected } else { Slot::Text }),
            ))
        })
        .collect();
    let title = format!(
        " log · {} lines{}{} ",
        text.len(),
        if app.log.follow { " · following" } else { "" },
        if app.log.wrap { " · wrapped" } else { "" }
    );
    let block = Block::default()
        .title(Span::styled(title, app.theme.style(Slot::Dim)))
        .borders(ratatui::widgets::Borders::TOP)
        .border_style(app.theme.style(Slot::Border));
    let mut paragraph = Paragraph::new(lines).block(block);
    if app.log.wrap {
        paragraph = paragraph.wrap(Wrap { trim: false });
    }
    frame.render_widget(paragraph, area);
}
