//! Popups over the panes: help (the focused pane's live actions first, then
//! the global keys), the confirmation of an action that is hard to take
//! back, and problems found in keymap or theme files.

use super::action::{Action, Offer};
use super::data::Command;
use super::keymap::Keymap;
use super::theme::{Slot, Theme};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

/// A popup over the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Popup {
    /// The keys: first line shown.
    Help {
        /// First line shown.
        scroll: usize,
    },
    /// An action waiting for `enter`.
    Confirm(Box<Confirm>),
    /// Problems found in keymap or theme files at start.
    Problems(Vec<String>),
}

/// An action that asks first, with what it will do and a reason to type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// The question: what, on what, how many (`resubmit 3 failed jobs of …?`).
    pub question: String,
    /// What it does, in a line or two.
    pub notes: Vec<String>,
    /// A reason must be typed (reject).
    pub reason_required: bool,
    /// The reason typed so far.
    pub reason: String,
    /// An option switched with Tab, e.g. "hold running jobs too".
    pub option: Option<ConfirmOption>,
    /// What runs on `enter`.
    pub command: Command,
    /// Why `enter` was refused (no reason typed yet).
    pub refusal: Option<String>,
}

/// An option of a confirmation and what it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmOption {
    /// What it does.
    pub label: String,
    /// Switched on.
    pub on: bool,
    /// Shown while it is on.
    pub notes: Vec<String>,
}

impl Confirm {
    /// A confirmation of `command` with an optional reason.
    pub fn new(question: impl Into<String>, command: Command) -> Confirm {
        Confirm {
            question: question.into(),
            notes: Vec::new(),
            reason_required: false,
            reason: String::new(),
            option: None,
            command,
            refusal: None,
        }
    }

    /// The same with notes under the question.
    pub fn noting(mut self, notes: Vec<String>) -> Confirm {
        self.notes = notes;
        self
    }

    /// The same, refusing `enter` until a reason is typed.
    pub fn reason_required(mut self) -> Confirm {
        self.reason_required = true;
        self
    }

    /// The same with an option switched by Tab.
    pub fn with_option(mut self, label: impl Into<String>, notes: Vec<String>) -> Confirm {
        self.option = Some(ConfirmOption {
            label: label.into(),
            on: false,
            notes,
        });
        self
    }
}

/// What a key did to a popup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PopupOutcome {
    /// The popup stays (maybe changed).
    Stay(Popup),
    /// It closed; nothing to do.
    Closed,
    /// It closed without doing its action.
    Cancelled(String),
    /// It closed; run this.
    Run(Command),
}

/// Applies a key to an open popup. Help scrolls with every movement key
/// (never past `help_last`, the first line of its last screen) and closes
/// on any other.
pub fn key(popup: Popup, key: KeyEvent, keymap: &Keymap, help_last: usize) -> PopupOutcome {
    match popup {
        Popup::Help { scroll } => match keymap.action_for(&key) {
            Some(action) => match help_scroll(action, scroll, help_last) {
                Some(scroll) => PopupOutcome::Stay(Popup::Help { scroll }),
                None => PopupOutcome::Closed,
            },
            None => PopupOutcome::Closed,
        },
        Popup::Problems(_) => PopupOutcome::Closed,
        Popup::Confirm(confirm) => confirm_key(confirm, key),
    }
}

/// Where help's first line goes for a movement action (`None`: close).
fn help_scroll(action: Action, scroll: usize, last: usize) -> Option<usize> {
    const PAGE: usize = 10;
    let to = match action {
        Action::Down => scroll + 1,
        Action::Up => scroll.saturating_sub(1),
        Action::PageDown => scroll + PAGE,
        Action::PageUp => scroll.saturating_sub(PAGE),
        Action::Top => 0,
        Action::Bottom => last,
        _ => return None,
    };
    Some(to.min(last))
}

fn confirm_key(mut confirm: Box<Confirm>, key: KeyEvent) -> PopupOutcome {
    confirm.refusal = None;
    match key.code {
        KeyCode::Enter if confirm.reason_required && confirm.reason.trim().is_empty() => {
            confirm.refusal = Some("type the reason first, then enter".into());
        }
        KeyCode::Enter => {
            let on = confirm.option.as_ref().is_some_and(|o| o.on);
            return PopupOutcome::Run(confirm.command.confirmed(&confirm.reason, on));
        }
        KeyCode::Esc => return PopupOutcome::Cancelled(format!("not done: {}", confirm.question)),
        KeyCode::Tab | KeyCode::BackTab => {
            if let Some(option) = confirm.option.as_mut() {
                option.on = !option.on;
            }
        }
        KeyCode::Backspace => {
            confirm.reason.pop();
        }
        KeyCode::Char(c) if !key.modifiers.contains(KeyModifiers::CONTROL) => {
            confirm.reason.push(c)
        }
        _ => {}
    }
    PopupOutcome::Stay(Popup::Confirm(confirm))
}

/// The lines of help: the focused pane's live actions, the global keys, the
/// `:` commands. Actions without a key are listed as unbound.
pub fn help_lines(
    pane: &str,
    offers: &[Offer],
    keymap: &Keymap,
    theme: &Theme,
    readonly: bool,
) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "keymap `{}` · theme `{}` · movement keys scroll, any other closes",
            keymap.name, theme.name
        ),
        theme.style(Slot::Dim),
    ))];
    lines.push(heading(&format!("{pane}: what applies here"), theme));
    for offer in offers {
        lines.push(key_line(keymap, theme, offer.action, &offer.label));
    }
    if offers.is_empty() {
        lines.push(Line::from(Span::styled(
            "  nothing selected that an action applies to",
            theme.style(Slot::Dim),
        )));
    }
    lines.push(heading("everywhere", theme));
    for action in Action::ALL.iter().filter(|a| a.is_global()) {
        lines.push(key_line(keymap, theme, *action, action.description()));
    }
    let others: Vec<Action> = Action::ALL
        .iter()
        .copied()
        .filter(|a| !a.is_global() && !offers.iter().any(|o| o.action == *a))
        .filter(|a| !(readonly && a.mutates()))
        .collect();
    lines.push(heading("in other panes or selections", theme));
    for action in others {
        lines.push(key_line(keymap, theme, action, action.description()));
    }
    lines.push(heading("commands (type : first; tab completes)", theme));
    for (command, what) in [
        ("campaign N", "select campaign C<N>"),
        ("jobs [STATE…]", "jobs in these states (none: all)"),
        ("theme NAME", "dark, light, high-contrast"),
        ("keymap NAME", "default, vim"),
        ("ACTION", "any action above by its name"),
    ] {
        lines.push(Line::from(vec![
            Span::styled(
                format!("{:>16}  ", format!(":{command}")),
                theme.style(Slot::Key),
            ),
            Span::styled(what.to_string(), theme.style(Slot::Text)),
        ]));
    }
    lines
}

fn heading(text: &str, theme: &Theme) -> Line<'static> {
    Line::from(Span::styled(format!("── {text}"), theme.style(Slot::Title)))
}

fn key_line(keymap: &Keymap, theme: &Theme, action: Action, label: &str) -> Line<'static> {
    let keys: Vec<String> = keymap
        .keys_of(action)
        .iter()
        .map(|k| k.to_string())
        .collect();
    let keys = if keys.is_empty() {
        "(unbound)".to_string()
    } else {
        keys.join(" ")
    };
    let mut spans = vec![
        Span::styled(format!("{keys:>16}  "), theme.style(Slot::Key)),
        Span::styled(format!("{label:<26} "), theme.style(Slot::Text)),
        Span::styled(format!(":{}", action.name()), theme.style(Slot::Dim)),
    ];
    if action.dangerous() {
        spans.push(Span::styled(" (asks first)", theme.style(Slot::Danger)));
    }
    Line::from(spans)
}

/// Draws the help popup from its lines, scrolled; returns the first line
/// of its last screen (how far it can scroll).
pub fn draw_help(
    frame: &mut Frame,
    theme: &Theme,
    lines: Vec<Line<'static>>,
    scroll: usize,
) -> usize {
    let area = frame.area();
    let rect = centered(area, 96, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    let shown = rect.height.saturating_sub(2) as usize;
    let last = lines.len().saturating_sub(shown);
    let scroll = scroll.min(last);
    let more = lines.len().saturating_sub(scroll + shown);
    let mut block = Block::bordered()
        .title(Span::styled(" help ", theme.style(Slot::Title)))
        .border_style(theme.style(Slot::BorderFocused));
    if more > 0 {
        block = block.title_bottom(Span::styled(
            format!(" ↓ {more} more "),
            theme.style(Slot::Key),
        ));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((scroll as u16, 0)),
        rect,
    );
    last
}

/// Draws a confirmation.
pub fn draw_confirm(frame: &mut Frame, theme: &Theme, confirm: &Confirm) {
    let area = frame.area();
    let width = 76.min(area.width);
    let inner = width.saturating_sub(2).max(1) as usize;
    let mut lines = vec![Line::from(Span::styled(
        confirm.question.clone(),
        theme.style(Slot::Danger),
    ))];
    let note = |text: &str| Line::from(Span::styled(text.to_string(), theme.style(Slot::Text)));
    lines.extend(confirm.notes.iter().map(|n| note(n)));
    if let Some(option) = &confirm.option {
        let mark = if option.on { "[x]" } else { "[ ]" };
        lines.push(Line::from(vec![
            Span::styled("tab ", theme.style(Slot::Key)),
            Span::styled(format!("{mark} {}", option.label), theme.style(Slot::Text)),
        ]));
        if option.on {
            lines.extend(option.notes.iter().map(|n| note(&format!("  {n}"))));
        }
    }
    let needs = if confirm.reason_required {
        "reason (required): "
    } else {
        "reason (optional): "
    };
    lines.push(Line::from(vec![
        Span::styled(needs, theme.style(Slot::Dim)),
        Span::styled(format!("{}█", confirm.reason), theme.style(Slot::Text)),
    ]));
    if let Some(refusal) = &confirm.refusal {
        lines.push(Line::from(Span::styled(
            refusal.clone(),
            theme.style(Slot::FlashError),
        )));
    }
    lines.push(Line::from(Span::styled(
        "enter: do it · esc: cancel",
        theme.style(Slot::Key),
    )));
    let height: usize = lines.iter().map(|l| l.width().max(1).div_ceil(inner)).sum();
    let rect = centered(area, width, height as u16 + 2);
    draw_alarm_box(frame, theme, rect, " confirm ", lines);
}

/// Wrapped `lines` in a box drawn in the danger colour over the panes.
fn draw_alarm_box(
    frame: &mut Frame,
    theme: &Theme,
    rect: Rect,
    title: &str,
    lines: Vec<Line<'static>>,
) {
    frame.render_widget(Clear, rect);
    let block = Block::bordered()
        .title(Span::styled(title.to_string(), theme.style(Slot::Danger)))
        .border_style(theme.style(Slot::Danger));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}

/// Draws the problems found in the user's keymap or theme files.
pub fn draw_problems(frame: &mut Frame, theme: &Theme, problems: &[String]) {
    let rect = centered(frame.area(), 90, problems.len() as u16 + 4);
    let mut lines: Vec<Line> = problems
        .iter()
        .map(|p| Line::from(Span::styled(p.clone(), theme.style(Slot::FlashError))))
        .collect();
    lines.push(Line::from(Span::styled(
        "using the shipped defaults for these · any key closes",
        theme.style(Slot::Dim),
    )));
    draw_alarm_box(frame, theme, rect, " configuration problems ", lines);
}

/// A rectangle of at most `width` × `height` in the middle of `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [rect] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    rect
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_scrolls_with_every_movement_key_and_stops_at_its_last_line() {
        let last = 30;
        assert_eq!(help_scroll(Action::PageDown, 0, last), Some(10));
        assert_eq!(help_scroll(Action::PageUp, 10, last), Some(0));
        assert_eq!(help_scroll(Action::Bottom, 0, last), Some(last));
        assert_eq!(help_scroll(Action::Down, last, last), Some(last));
        assert_eq!(help_scroll(Action::PageDown, 25, last), Some(last));
        assert_eq!(help_scroll(Action::Top, 25, last), Some(0));
        assert_eq!(help_scroll(Action::Quit, 3, last), None);
    }

    #[test]
    fn a_confirmation_that_needs_a_reason_refuses_enter_until_one_is_typed() {
        let confirm = Box::new(
            Confirm::new(
                "reject C3?",
                Command::Reject(crate::model::ids::CampaignId(3), String::new()),
            )
            .reason_required(),
        );
        let PopupOutcome::Stay(Popup::Confirm(c)) =
            confirm_key(confirm, KeyEvent::from(KeyCode::Enter))
        else {
            panic!("enter without a reason must not run")
        };
        assert!(c.refusal.is_some());
        let PopupOutcome::Stay(Popup::Confirm(c)) =
            confirm_key(c, KeyEvent::from(KeyCode::Char('x')))
        else {
            panic!()
        };
        assert_eq!(
            confirm_key(c, KeyEvent::from(KeyCode::Enter)),
            PopupOutcome::Run(Command::Reject(
                crate::model::ids::CampaignId(3),
                "x".into()
            ))
        );
    }
}
