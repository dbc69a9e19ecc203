//! Popups: help generated from the active keymap, the confirmation of a
//! dangerous action, and problems found in keymap or theme files.

use crate::tui::action::Action;
use crate::tui::app::{App, Popup};
use crate::tui::theme::Slot;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

/// The help lines: every action (changes hidden when read-only) with its keys.
pub fn help_lines(app: &App) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "keymap `{}` · theme `{}` · any key closes",
            app.keymap.name, app.theme.name
        ),
        app.theme.style(Slot::Dim),
    ))];
    for action in Action::ALL {
        if app.readonly && action.mutates() {
            continue;
        }
        let keys: Vec<String> = app
            .keymap
            .keys_of(*action)
            .iter()
            .map(|k| k.to_string())
            .collect();
        let keys = if keys.is_empty() {
            "(unbound)".to_string()
        } else {
            keys.join(" ")
        };
        let mut spans = vec![
            Span::styled(format!("{keys:>16}  "), app.theme.style(Slot::Key)),
            Span::styled(
                format!("{:<18}", action.description()),
                app.theme.style(Slot::Text),
            ),
            Span::styled(format!(":{}", action.name()), app.theme.style(Slot::Dim)),
        ];
        if action.dangerous() {
            spans.push(Span::styled(
                "  (asks first)",
                app.theme.style(Slot::Danger),
            ));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::from(Span::styled(
        "commands: :campaign N · :jobs [STATE…] · :theme NAME · :keymap NAME · :ACTION",
        app.theme.style(Slot::Dim),
    )));
    lines
}

/// Draws the open popup, if any.
pub fn draw_popup(frame: &mut Frame, app: &App) {
    let Some(popup) = &app.popup else { return };
    let area = frame.area();
    match popup {
        Popup::Help { scroll } => {
            let lines = help_lines(app);
            let rect = centered(area, 76, lines.len() as u16 + 2);
            frame.render_widget(Clear, rect);
            let block = Block::bordered()
                .title(Span::styled(" help ", app.theme.style(Slot::Title)))
                .border_style(app.theme.style(Slot::BorderFocused));
            frame.render_widget(
                Paragraph::new(lines)
                    .block(block)
                    .scroll((*scroll as u16, 0)),
                rect,
            );
        }
        Popup::Confirm {
            action,
            target,
            reason,
        } => {
            let rect = centered(area, 64, 7);
            frame.render_widget(Clear, rect);
            let needs = if *action == Action::Reject {
                " (required)"
            } else {
                " (optional)"
            };
            let lines = vec![
                Line::from(Span::styled(
                    format!("{} {target}?", action.description()),
                    app.theme.style(Slot::Danger),
                )),
                Line::from(vec![
                    Span::styled(format!("reason{needs}: "), app.theme.style(Slot::Dim)),
                    Span::styled(format!("{reason}█"), app.theme.style(Slot::Text)),
                ]),
                Line::from(""),
                Line::from(Span::styled(
                    "enter: do it · esc: cancel",
                    app.theme.style(Slot::Key),
                )),
            ];
            let block = Block::bordered()
                .title(Span::styled(" confirm ", app.theme.style(Slot::Danger)))
                .border_style(app.theme.style(Slot::Danger));
            frame.render_widget(Paragraph::new(lines).block(block), rect);
        }
        Popup::Problems(problems) => {
            let rect = centered(area, 90, problems.len() as u16 + 4);
            frame.render_widget(Clear, rect);
            let mut lines: Vec<Line> = problems
                .iter()
                .map(|p| Line::from(Span::styled(p.clone(), app.theme.style(Slot::FlashError))))
                .collect();
            lines.push(Line::from(Span::styled(
                "using the shipped defaults for these · any key closes",
                app.theme.style(Slot::Dim),
            )));
            let block = Block::bordered()
                .title(Span::styled(
                    " configuration problems ",
                    app.theme.style(Slot::Danger),
                ))
                .border_style(app.theme.style(Slot::Danger));
            frame.render_widget(
                Paragraph::new(lines)
                    .block(block)
                    .wrap(Wrap { trim: false }),
                rect,
            );
        }
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [rect] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    rect
}
