//! The panes, one file each, as components: each owns its state (cursor,
//! filter, scroll), turns the actions it offers into [`Msg`]s for the app,
//! and draws from a small read-only [`Ctx`]. This module holds what they
//! share and lays them out with the header, the footer and the popups.

pub mod approvals;
pub mod campaigns;
pub mod dag;
pub mod history;
pub mod job_detail;
pub mod jobs;
pub mod list;
pub mod triage;

use super::action::{Action, Offer};
use super::app::{App, Pane, WorkerStatus};
use super::data::{Command, Snapshot};
use super::input::InputKind;
use super::popup::{self, Confirm, Popup};
use super::theme::{Slot, Theme};
use crate::model::ids::{CampaignId, EntityRef, JobId, SubtaskId, TaskId};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;
use std::time::Duration;

/// Below this width only the focused pane is shown.
const SPLIT_WIDTH: u16 = 100;
const SPINNER: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// Data older than this is called out in red in the header.
pub const STALE_AFTER: Duration = Duration::from_secs(5);

/// What a pane may read while it decides, handles a key or draws.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// The latest snapshot.
    pub snap: &'a Snapshot,
    /// Colours.
    pub theme: &'a Theme,
    /// What the campaigns tree selects.
    pub scope: Scope,
    /// This pane has the keyboard.
    pub focused: bool,
}

/// The campaign, task and subtask the tree's selection is in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    /// The campaign.
    pub campaign: Option<CampaignId>,
    /// The task, when one (or something below it) is selected.
    pub task: Option<TaskId>,
    /// The subtask, when one (or a batch of it) is selected.
    pub subtask: Option<SubtaskId>,
    /// The selected node itself.
    pub node: Option<EntityRef>,
}

/// What a pane asks the app to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// Focus another pane.
    Focus(Pane),
    /// Open a job's detail (Esc comes back).
    OpenJob(JobId),
    /// Open the jobs of one subtask (Esc comes back).
    OpenJobsOf(SubtaskId, String),
    /// Ask before running a command.
    Ask(Confirm),
    /// Run a command now.
    Run(Command),
    /// Say something in the footer.
    Flash(String, bool),
}

/// A pane: its state, the actions it offers for what is selected, how it
/// carries them out, and how it draws.
pub trait Component {
    /// The actions that apply to the current selection, in hint order
    /// (the app hides those that change state in a read-only console).
    fn actions(&self, ctx: &Ctx) -> Vec<Offer>;
    /// Carries out one of the offered actions.
    fn handle(&mut self, action: Action, ctx: &Ctx) -> Vec<Msg>;
    /// Esc inside the pane (drops marks, a search, a filter): true when it did something.
    fn back(&mut self) -> bool {
        false
    }
    /// The filter (or search) text, for panes that have one.
    fn filter(&self) -> Option<&str> {
        None
    }
    /// Sets the filter as it is typed.
    fn set_filter(&mut self, _text: &str) {}
    /// A click on the `row`-th line inside the pane's border.
    fn click(&mut self, _row: usize, _ctx: &Ctx) {}
    /// The entity History shows when it follows this pane.
    fn subject(&self, _ctx: &Ctx) -> Option<EntityRef> {
        None
    }
    /// Draws the pane.
    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Ctx);
}

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
    draw_popup(frame, app);
}

fn draw_body(frame: &mut Frame, app: &mut App, area: Rect) {
    let main = app.main_pane();
    let split = area.width >= SPLIT_WIDTH;
    let (tree, right) = if split {
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(38), Constraint::Percentage(62)])
                .areas(area);
        (left, right)
    } else if app.focus == Pane::Campaigns {
        (area, Rect::default())
    } else {
        (Rect::default(), area)
    };
    app.areas.tree = tree;
    app.areas.main = right;
    app.areas.main_pane = (right.area() > 0).then_some(main);
    if tree.area() > 0 {
        app.draw_pane(frame, Pane::Campaigns, tree);
    }
    if right.area() > 0 {
        app.draw_pane(frame, main, right);
    }
}

/// A bordered block titled with the pane's number and name, what it shows,
/// and its filter.
pub fn pane_block<'a>(ctx: &Ctx, pane: Pane, extra: String, filter: Option<&str>) -> Block<'a> {
    let theme = ctx.theme;
    let number = Pane::TABS
        .iter()
        .position(|p| *p == pane)
        .map(|i| format!("{} ", i + 1))
        .unwrap_or_default();
    let border = theme.style(if ctx.focused {
        Slot::BorderFocused
    } else {
        Slot::Border
    });
    let mut title = vec![Span::styled(
        format!(" {number}{} ", pane.title()),
        theme.style(Slot::Title),
    )];
    if !extra.is_empty() {
        title.push(Span::styled(format!("{extra} "), theme.style(Slot::Dim)));
    }
    if let Some(filter) = filter.filter(|f| !f.is_empty()) {
        title.push(Span::styled(format!("/{filter} "), theme.style(Slot::Key)));
    }
    Block::bordered()
        .border_style(border)
        .title(Line::from(title))
}

/// One part of the header or footer, with shorter forms to fall back on.
struct Part {
    /// Longest form first; the last is used when space runs out, then it is dropped.
    forms: Vec<String>,
    style: Style,
    /// Lower parts shrink first; `u8::MAX` never goes.
    keep: u8,
}

impl Part {
    fn new(keep: u8, style: Style, forms: Vec<String>) -> Part {
        Part { forms, style, keep }
    }
}

/// Shrinks then drops the least important parts until they fit `width`
/// with `sep` between them.
fn fit(mut parts: Vec<Part>, width: usize, sep: &str) -> Vec<(String, Style)> {
    let total = |parts: &[Part]| -> usize {
        let texts: usize = parts.iter().map(|p| p.forms[0].chars().count()).sum();
        texts + sep.chars().count() * parts.len().saturating_sub(1)
    };
    while total(&parts) > width {
        let Some(victim) = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.keep < u8::MAX)
            .min_by_key(|(i, p)| (p.keep, usize::MAX - i))
            .map(|(i, _)| i)
        else {
            break;
        };
        if parts[victim].forms.len() > 1 {
            parts[victim].forms.remove(0);
        } else {
            parts.remove(victim);
        }
    }
    parts
        .into_iter()
        .map(|p| (p.forms.into_iter().next().unwrap_or_default(), p.style))
        .collect()
}

fn spans_of(parts: Vec<(String, Style)>, sep: &str, sep_style: Style) -> Vec<Span<'static>> {
    let mut spans = Vec::new();
    for (i, (text, style)) in parts.into_iter().enumerate() {
        if i > 0 {
            spans.push(Span::styled(sep.to_string(), sep_style));
        }
        spans.push(Span::styled(text, style));
    }
    spans
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let theme = &app.theme;
    let base = theme.style(Slot::Header);
    let alarm = theme.style(Slot::FlashError);
    let mut parts = vec![Part::new(u8::MAX, base, vec![" prodops".into()])];
    parts.push(Part::new(3, base, user_forms(&app.user, &app.snap.grants)));
    if app.readonly {
        parts.push(Part::new(u8::MAX, base, vec!["read-only".into()]));
    }
    parts.push(Part::new(u8::MAX, base, worker_forms(&app.worker)));
    let checks = checks_summary(&app.snap.checks);
    if checks.contains("FAILING") {
        parts.push(Part::new(200, alarm, vec![checks, "checks FAILING".into()]));
    } else {
        parts.push(Part::new(2, base, vec![checks]));
    }
    if let Some(age) = app.staleness() {
        parts.push(Part::new(u8::MAX, alarm, vec![age]));
    }
    if app.frozen {
        parts.push(Part::new(u8::MAX, alarm, vec!["FROZEN".into()]));
    }
    let crumbs = app.breadcrumbs();
    parts.push(Part::new(
        4,
        base,
        vec![
            crumbs.join(" › "),
            crumbs[crumbs.len().saturating_sub(2)..].join(" › "),
        ],
    ));
    parts.push(Part::new(1, base, vec![app.database.clone()]));
    let fitted = fit(parts, area.width as usize, " · ");
    frame.render_widget(
        Paragraph::new(Line::from(spans_of(fitted, " · ", base))).style(base),
        area,
    );
}

/// The user and their roles, longest first: roles shorten before anything else.
fn user_forms(user: &str, grants: &[String]) -> Vec<String> {
    if grants.is_empty() {
        return vec![format!("{user} (no role)"), user.to_string()];
    }
    vec![
        format!("{user} ({})", grants.join(",")),
        format!("{user} ({} roles)", grants.len()),
        user.to_string(),
    ]
}

/// What the in-process worker does, longest first.
fn worker_forms(worker: &WorkerStatus) -> Vec<String> {
    match worker {
        WorkerStatus::Off => vec!["worker: off".into()],
        WorkerStatus::Leading {
            in_flight,
            unreachable: 0,
        } => vec![
            format!("worker: running, {in_flight} in flight"),
            format!("worker: {in_flight} in flight"),
        ],
        WorkerStatus::Leading {
            in_flight,
            unreachable,
        } => vec![
            format!("worker: running, {in_flight} in flight, {unreachable} UNREACHABLE"),
            format!("worker: {in_flight} in flight, {unreachable} UNREACHABLE"),
            format!("{unreachable} UNREACHABLE"),
        ],
        WorkerStatus::Watching { holder } => vec![
            format!("worker: watching ({holder} holds the lease)"),
            format!("watching {holder}"),
            "watching".into(),
        ],
        WorkerStatus::Failing(e) => vec![format!("worker: failing: {e}"), "worker: FAILING".into()],
    }
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
    let theme = &app.theme;
    if let Some(input) = &app.input {
        let prompt = match input.kind {
            InputKind::Command => ":",
            InputKind::Filter => "/",
        };
        let text_style = if input.selected {
            theme.style(Slot::Selected)
        } else {
            theme.style(Slot::Text)
        };
        let mut spans = vec![
            Span::styled(prompt.to_string(), theme.style(Slot::Key)),
            Span::styled(input.text.clone(), text_style),
            Span::styled("█", theme.style(Slot::Dim)),
        ];
        if input.kind == InputKind::Command {
            let hints = input.suggestions();
            if !hints.is_empty() {
                spans.push(Span::styled(
                    format!("   tab: {}", hints.join("  ")),
                    theme.style(Slot::Dim),
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
        frame.render_widget(
            Paragraph::new(format!("{}{}", spinner(app), flash.text)).style(theme.style(slot)),
            area,
        );
        return;
    }
    frame.render_widget(Paragraph::new(hints_line(app, area.width)), area);
}

fn spinner(app: &App) -> String {
    if app.busy > 0 {
        format!("{} ", SPINNER[(app.frames as usize) % SPINNER.len()])
    } else {
        String::new()
    }
}

/// The hints bar: the focused pane's offered actions (whole hints only, as
/// many as fit), then help and quit, which always fit.
pub fn hints_line(app: &App, width: u16) -> Line<'static> {
    let theme = &app.theme;
    let hint = |action: Action, label: &str, keep: u8| -> Option<Part> {
        let key = app.keymap.hint(action)?;
        let slot = if action.dangerous() {
            Slot::Danger
        } else {
            Slot::Dim
        };
        Some(Part::new(
            keep,
            theme.style(slot),
            vec![format!("{key} {label}")],
        ))
    };
    let mut parts = vec![Part::new(
        u8::MAX,
        theme.style(Slot::Dim),
        vec![spinner(app)],
    )];
    let offers = app.offers();
    let count = offers.iter().filter(|o| o.hint).count();
    for (i, offer) in offers.iter().filter(|o| o.hint).enumerate() {
        parts.extend(hint(offer.action, &offer.label, (count - i).min(200) as u8));
    }
    parts.extend(hint(Action::NextPane, "next pane", 0));
    parts.extend(hint(Action::Command, "command", 0));
    parts.extend(hint(Action::Help, "help", u8::MAX));
    parts.extend(hint(Action::Quit, "quit", u8::MAX));
    let fitted = fit(parts, width as usize, "  ");
    let mut spans = Vec::new();
    for (i, (text, style)) in fitted.into_iter().enumerate() {
        if i > 1 {
            spans.push(Span::raw("  "));
        }
        match text.split_once(' ') {
            Some((key, label)) if i > 0 => {
                spans.push(Span::styled(key.to_string(), theme.style(Slot::Key)));
                spans.push(Span::styled(format!(" {label}"), style));
            }
            _ => spans.push(Span::styled(text, style)),
        }
    }
    Line::from(spans)
}

fn draw_popup(frame: &mut Frame, app: &mut App) {
    let Some(open) = app.popup.clone() else {
        return;
    };
    match &open {
        Popup::Help { scroll } => {
            let lines = app.help_lines();
            app.help_last = popup::draw_help(frame, &app.theme, lines, *scroll);
        }
        Popup::Confirm(confirm) => popup::draw_confirm(frame, &app.theme, confirm),
        Popup::Problems(problems) => popup::draw_problems(frame, &app.theme, problems),
    }
}

/// `1 node`, `3 nodes`.
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Milliseconds as a short duration (`45s`, `12m03s`, `3h04m`, `2d05h`).
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

/// Moves a cursor by `by` within `len` rows.
pub fn step(at: usize, by: i64, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    (at as i64).saturating_add(by).clamp(0, len as i64 - 1) as usize
}

/// How far a movement action moves a cursor, for a page of `page` rows.
pub fn movement(action: Action, page: usize) -> Option<i64> {
    let page = page.max(1) as i64;
    Some(match action {
        Action::Up | Action::Left => -1,
        Action::Down | Action::Right => 1,
        Action::PageUp => -page,
        Action::PageDown => page,
        Action::Top => i64::MIN / 2,
        Action::Bottom => i64::MAX / 2,
        _ => return None,
    })
}

/// The movement keys every list offers (listed in help, not in hints).
pub fn movement_offers() -> Vec<Offer> {
    [
        (Action::Up, "up"),
        (Action::Down, "down"),
        (Action::PageUp, "page up"),
        (Action::PageDown, "page down"),
        (Action::Top, "first"),
        (Action::Bottom, "last"),
    ]
    .into_iter()
    .map(|(a, l)| Offer::quiet(a, l))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn fitting_shortens_the_least_important_part_first_and_keeps_the_required() {
        let texts = |width: usize| -> Vec<String> {
            let s = Style::default();
            let parts = vec![
                Part::new(u8::MAX, s, vec!["prodops".into()]),
                Part::new(
                    3,
                    s,
                    vec![
                        "ann (admin@*,operator@*,approver@nova)".into(),
                        "ann (3 roles)".into(),
                        "ann".into(),
                    ],
                ),
                Part::new(u8::MAX, s, vec!["worker: running".into()]),
                Part::new(1, s, vec!["/a/very/long/path.db".into()]),
            ];
            fit(parts, width, " · ")
                .into_iter()
                .map(|(t, _)| t)
                .collect()
        };
        assert_eq!(texts(200).len(), 4);
        assert_eq!(
            texts(70),
            [
                "prodops",
                "ann (admin@*,operator@*,approver@nova)",
                "worker: running"
            ]
        );
        assert_eq!(texts(60), ["prodops", "ann (3 roles)", "worker: running"]);
        assert_eq!(texts(40), ["prodops", "ann", "worker: running"]);
        assert_eq!(texts(10), ["prodops", "worker: running"]);
    }

    #[test]
    fn counts_read_right_in_the_singular() {
        assert_eq!(plural(1, "node"), "1 node");
        assert_eq!(plural(3, "layer"), "3 layers");
        assert_eq!(plural(0, "line"), "0 lines");
    }
}
