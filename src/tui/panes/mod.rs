//! Drawing: one file per pane, each drawing from [`App`] alone. This module
//! lays them out with the header, the footer (hints generated from the
//! keymap), the input line and popups.

pub mod approvals;
pub mod campaigns;
pub mod dag;
pub mod help;
pub mod history;
pub mod job_detail;
pub mod jobs;
pub mod triage;

use super::action::Action;
use super::app::{App, InputKind, Pane, WorkerStatus};
use super::theme::Slot;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

/// Below this width only the focused pane is shown.
const SPLIT_WIDTH: u16 = 100;
const SPINNER: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Draws the whole console.
pub fn draw(frame: &mut Frame, app: &mut App) {
    app.frames += 1;
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, app, header);
    draw_body(frame, app, body);
    draw_footer(frame, app, footer);
    help::draw_popup(frame, app);
}

fn draw_body(frame: &mut Frame, app: &mut App, area: Rect) {
    let main_pane = if app.focus == Pane::Campaigns {
        app.side
    } else {
        app.focus
    };
    if area.width < SPLIT_WIDTH {
        app.areas.tree = Rect::default();
        app.areas.main = Rect::default();
        if app.focus == Pane::Campaigns {
            app.areas.tree = area;
            campaigns::draw(frame, app, area);
        } else {
            app.areas.main = area;
            app.areas.main_pane = Some(main_pane);
            draw_pane(frame, app, main_pane, area);
        }
        return;
    }
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(38), Constraint::Percentage(62)]).areas(area);
    app.areas.tree = left;
    app.areas.main = right;
    app.areas.main_pane = Some(main_pane);
    campaigns::draw(frame, app, left);
    draw_pane(frame, app, main_pane, right);
}

fn draw_pane(frame: &mut Frame, app: &mut App, pane: Pane, area: Rect) {
    app.page_rows = area.height.saturating_sub(3) as usize;
    match pane {
        Pane::Campaigns => campaigns::draw(frame, app, area),
        Pane::Dag => dag::draw(frame, app, area),
        Pane::Jobs => jobs::draw(frame, app, area),
        Pane::JobDetail => job_detail::draw(frame, app, area),
        Pane::Triage => triage::draw(frame, app, area),
        Pane::Approvals => approvals::draw(frame, app, area),
        Pane::History => history::draw(frame, app, area),
    }
}

/// A bordered block titled with the pane's name (and number), focused or not.
pub fn pane_block<'a>(app: &App, pane: Pane, extra: String) -> Block<'a> {
    let number = Pane::TABS
        .iter()
        .position(|p| *p == pane)
        .map(|i| format!("{} ", i + 1))
        .unwrap_or_default();
    let focused = app.focus == pane;
    let border = app.theme.style(if focused {
        Slot::BorderFocused
    } else {
        Slot::Border
    });
    let mut title = vec![Span::styled(
        format!(" {number}{} ", pane.title()),
        app.theme.style(Slot::Title),
    )];
    if !extra.is_empty() {
        title.push(Span::styled(
            format!("{extra} "),
            app.theme.style(Slot::Dim),
        ));
    }
    let filter = app.filter_of_focus();
    if focused && !filter.is_empty() {
        title.push(Span::styled(
            format!("/{filter} "),
            app.theme.style(Slot::Key),
        ));
    }
    Block::bordered()
        .border_style(border)
        .title(Line::from(title))
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let style = app.theme.style(Slot::Header);
    let worker = match &app.worker {
        WorkerStatus::Off => "worker: off".to_string(),
        WorkerStatus::Leading { in_flight } => format!("worker: running, {in_flight} in flight"),
        WorkerStatus::Watching => "worker: watching (another holds the lease)".to_string(),
        WorkerStatus::Failing(e) => format!("worker: failing: {e}"),
    };
    let roles = if app.snap.grants.is_empty() {
        "no role".to_string()
    } else {
        app.snap.grants.join(",")
    };
    let mode = if app.readonly { " · read-only" } else { "" };
    let frozen = if app.frozen { " · FROZEN" } else { "" };
    let text = format!(
        " prodops · {} ({roles}){mode} · {worker} · {} · {}{frozen} · {}",
        app.user,
        checks_summary(&app.snap.checks),
        app.database,
        app.breadcrumbs().join(" › ")
    );
    frame.render_widget(Paragraph::new(text).style(style), area);
}

/// `checks: 3 ok`, `checks: FAILING samweb, token`, or none configured.
fn checks_summary(checks: &[crate::store::checks::CheckRow]) -> String {
    let failing: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passing)
        .map(|c| c.name.as_str())
        .collect();
    match (checks.len(), failing.is_empty()) {
        (0, _) => "checks: none configured".into(),
        (n, true) => format!("checks: {n} ok"),
        (_, false) => format!("checks: FAILING {} (submissions held)", failing.join(", ")),
    }
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    if let Some(input) = &app.input {
        let prompt = match input.kind {
            InputKind::Command => ":",
            InputKind::Filter => "/",
        };
        let mut spans = vec![
            Span::styled(prompt.to_string(), app.theme.style(Slot::Key)),
            Span::styled(input.text.clone(), app.theme.style(Slot::Text)),
            Span::styled("█", app.theme.style(Slot::Dim)),
        ];
        if input.kind == InputKind::Command {
            let hints = super::command::complete(&input.text);
            if !hints.is_empty() {
                spans.push(Span::styled(
                    format!(
                        "   tab: {}",
                        hints.into_iter().take(6).collect::<Vec<_>>().join("  ")
                    ),
                    app.theme.style(Slot::Dim),
                ));
            }
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), area);
        return;
    }
    if let Some(flash) = app.current_flash() {
        let slot = if flash.ok {
            Slot::FlashOk
        } else {
            Slot::FlashError
        };
        let busy = spinner(app);
        frame.render_widget(
            Paragraph::new(format!("{busy}{}", flash.text)).style(app.theme.style(slot)),
            area,
        );
        return;
    }
    frame.render_widget(Paragraph::new(hints_line(app)), area);
}

fn spinner(app: &App) -> String {
    if app.busy > 0 {
        format!("{} ", SPINNER[(app.frames as usize) % SPINNER.len()])
    } else {
        String::new()
    }
}

/// The hints bar: the focused pane's actions, then the global ones, each
/// with its first key in the active keymap (read-only hides changes).
pub fn hints_line(app: &App) -> Line<'static> {
    let pane = if app.focus == Pane::Campaigns {
        Pane::Campaigns
    } else {
        app.focus
    };
    let global = [
        Action::NextPane,
        Action::Command,
        Action::Help,
        Action::Quit,
    ];
    let mut spans = vec![Span::raw(spinner(app))];
    for action in pane.actions().iter().chain(global.iter()) {
        if app.readonly && action.mutates() {
            continue;
        }
        let Some(key) = app.keymap.hint(*action) else {
            continue;
        };
        spans.push(Span::styled(key, app.theme.style(Slot::Key)));
        spans.push(Span::styled(
            format!(" {}  ", action.description()),
            app.theme.style(if action.dangerous() {
                Slot::Danger
            } else {
                Slot::Dim
            }),
        ));
    }
    Line::from(spans)
}

/// Milliseconds as a short duration (`45s`, `12m`, `3h04m`, `2d05h`).
pub fn short_duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A measured time: milliseconds below a second, else as [`short_duration`].
pub fn short_ms(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        short_duration(ms)
    }
}

/// KiB as MiB or GiB.
pub fn short_kib(kib: i64) -> String {
    if kib >= 1024 * 1024 {
        format!("{:.1}G", kib as f64 / (1024.0 * 1024.0))
    } else {
        format!("{}M", kib / 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::checks_summary;
    use crate::store::checks::CheckRow;

    fn row(name: &str, passing: bool) -> CheckRow {
        CheckRow {
            name: name.into(),
            experiment: None,
            backend: None,
            passing,
            detail: String::new(),
            checked_at: 0,
            since: 0,
        }
    }

    #[test]
    fn j10_the_header_says_which_checks_fail_and_that_submissions_wait() {
        assert_eq!(checks_summary(&[]), "checks: none configured");
        assert_eq!(
            checks_summary(&[row("a", true), row("b", true)]),
            "checks: 2 ok"
        );
        assert_eq!(
            checks_summary(&[row("samweb", false), row("b", true), row("token", false)]),
            "checks: FAILING samweb, token (submissions held)"
        );
    }
}
