//! The History pane: every transition of what the pane it follows has
//! selected (a tree node, a DAG node, a job, a request), oldest first, with
//! time, old → new, user and reason (M7, M8). Enter unfolds the selected
//! row's reason over as many lines as it needs.

use super::list::List;
use super::{movement_offers, pane_block, plural, Component, Ctx, Msg};
use crate::ops::views::HistoryView;
use crate::tui::action::{Action, Offer};
use crate::tui::app::Pane;
use crate::tui::theme::Slot;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Cell, Row, Table};
use ratatui::Frame;

/// Width of the columns before the reason, spaces included.
const BEFORE_REASON: u16 = 19 + 1 + 16 + 1 + 16 + 1 + 10 + 1;

/// The list's state.
#[derive(Debug, Default)]
pub struct History {
    list: List,
    /// The selected row's reason is unfolded.
    unfolded: bool,
}

impl History {
    fn visible<'a>(&self, ctx: &Ctx<'a>) -> Vec<&'a HistoryView> {
        let f = self.list.filter.to_lowercase();
        ctx.snap
            .history
            .iter()
            .filter(|h| {
                f.is_empty()
                    || h.reason.to_lowercase().contains(&f)
                    || h.user.to_lowercase().contains(&f)
                    || h.new.contains(&f)
                    || h.old.as_deref().unwrap_or("").contains(&f)
            })
            .collect()
    }
}

/// `text` cut into lines of at most `width` characters, at spaces where it
/// can (a word longer than a line is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(8);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let pieces = text.split(' ').flat_map(|word| {
        let chars: Vec<char> = word.chars().collect();
        chars
            .chunks(width)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
    });
    for piece in pieces {
        let used = line.chars().count();
        if used > 0 && used + 1 + piece.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&piece);
    }
    lines.push(line);
    lines
}

impl Component for History {
    fn actions(&self, ctx: &Ctx) -> Vec<Offer> {
        let mut offers = vec![Offer::new(Action::Filter, "filter")];
        if !self.visible(ctx).is_empty() {
            let label = if self.unfolded {
                "fold the reason"
            } else {
                "unfold the reason"
            };
            offers.insert(0, Offer::new(Action::Open, label));
            offers.extend(movement_offers());
        }
        offers
    }

    fn handle(&mut self, action: Action, ctx: &Ctx) -> Vec<Msg> {
        if self.list.moved(action, self.visible(ctx).len()) {
            return Vec::new();
        }
        if action == Action::Open {
            self.unfolded = !self.unfolded;
        }
        Vec::new()
    }

    fn back(&mut self) -> bool {
        if self.unfolded {
            self.unfolded = false;
            return true;
        }
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

    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        let theme = ctx.theme;
        let visible = self.visible(ctx);
        self.list.prepare(visible.len(), area.height, ctx.focused);
        let entity = ctx
            .snap
            .view
            .entity
            .map(|e| e.to_string())
            .unwrap_or_else(|| "nothing selected".into());
        let block = pane_block(
            ctx,
            Pane::History,
            format!(
                "{entity} · {}",
                plural(ctx.snap.history.len(), "transition")
            ),
            Some(&self.list.filter),
        );
        let header = Row::new(["when (UTC)", "old", "new", "user", "reason"])
            .style(theme.style(Slot::Title));
        let reason_width = area.width.saturating_sub(2 + BEFORE_REASON) as usize;
        let rows = visible.iter().enumerate().map(|(i, h)| {
            let old = h.old.clone().unwrap_or_else(|| "—".into());
            let unfolded = self.unfolded && i == self.list.row;
            let reason = if unfolded {
                wrap(&h.reason, reason_width)
            } else {
                vec![h.reason.clone()]
            };
            let height = reason.len() as u16;
            Row::new(vec![
                Cell::from(h.ts.get(..19).unwrap_or(&h.ts).replace('T', " ")),
                Cell::from(Span::styled(old.clone(), theme.state(&old))),
                Cell::from(Span::styled(h.new.clone(), theme.state(&h.new))),
                Cell::from(h.user.clone()),
                Cell::from(Text::from(
                    reason.into_iter().map(Line::from).collect::<Vec<_>>(),
                )),
            ])
            .height(height)
            .style(theme.style(Slot::Text))
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
            .row_highlight_style(theme.style(Slot::Selected));
        frame.render_stateful_widget(table, area, &mut self.list.table);
    }
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn long_reasons_wrap_at_spaces_and_cut_words_longer_than_a_line() {
        assert_eq!(
            wrap("held because the samweb check failed at 12:00", 20),
            ["held because the", "samweb check failed", "at 12:00"]
        );
        let long = wrap("x".repeat(25).as_str(), 10);
        assert_eq!(long.len(), 3, "{long:?}");
        assert!(long.iter().all(|l| l.chars().count() <= 10));
    }
}
