//! The Approvals pane: requests waiting for an approver, and the selected
//! one as its request file (TOML), scrollable; a clone shows its changes
//! against the request it was cloned from, each under the stage it is in.

use super::campaigns::{campaign_msg, campaign_offers, line_of};
use super::list::List;
use super::{pane_block, plural, Component, Ctx, Msg};
use crate::model::ids::{CampaignId, EntityRef};
use crate::ops::views::{request_toml, RequestDetail, RequestSummary};
use crate::tui::action::{Action, Offer};
use crate::tui::app::Pane;
use crate::tui::diff::{diff, DiffLine};
use crate::tui::theme::{Slot, Theme};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table};
use ratatui::Frame;

/// The list's and the request view's state.
#[derive(Debug, Default)]
pub struct Approvals {
    list: List,
    /// First line of the request shown.
    scroll: usize,
    /// Lines of the request view (set while drawing).
    lines: usize,
    /// Lines the request view shows at once.
    page: usize,
}

impl Approvals {
    fn visible<'a>(&self, ctx: &Ctx<'a>) -> Vec<&'a RequestSummary> {
        let f = self.list.filter.to_lowercase();
        ctx.snap
            .pending
            .iter()
            .filter(|r| {
                f.is_empty()
                    || r.title.to_lowercase().contains(&f)
                    || r.id.to_lowercase().contains(&f)
                    || r.experiment.to_lowercase().contains(&f)
                    || r.creator.to_lowercase().contains(&f)
            })
            .collect()
    }

    /// The pending request selected.
    pub fn selected(&self, ctx: &Ctx) -> Option<CampaignId> {
        let visible = self.visible(ctx);
        visible
            .get(self.list.row.min(visible.len().saturating_sub(1)))
            .and_then(|r| r.id.parse().ok())
    }
}

impl Component for Approvals {
    fn actions(&self, ctx: &Ctx) -> Vec<Offer> {
        let mut offers = vec![Offer::new(Action::Filter, "filter")];
        if let Some(c) = self.selected(ctx).and_then(|id| line_of(ctx, id)) {
            let mut first = campaign_offers(c);
            first.append(&mut offers);
            offers = first;
            offers.extend([
                Offer::quiet(Action::Up, "previous request"),
                Offer::quiet(Action::Down, "next request"),
                Offer::quiet(Action::PageUp, "scroll the request up"),
                Offer::quiet(Action::PageDown, "scroll the request down"),
                Offer::quiet(Action::Top, "first request"),
                Offer::quiet(Action::Bottom, "last request"),
            ]);
        }
        offers
    }

    fn handle(&mut self, action: Action, ctx: &Ctx) -> Vec<Msg> {
        let len = self.visible(ctx).len();
        let last_line = self.lines.saturating_sub(self.page.max(1));
        match action {
            Action::Up | Action::Down | Action::Top | Action::Bottom => {
                let before = self.list.row;
                self.list.moved(action, len);
                if self.list.row != before {
                    self.scroll = 0;
                }
                Vec::new()
            }
            Action::PageDown => {
                self.scroll = (self.scroll + self.page.max(1)).min(last_line);
                Vec::new()
            }
            Action::PageUp => {
                self.scroll = self.scroll.saturating_sub(self.page.max(1));
                Vec::new()
            }
            _ => self
                .selected(ctx)
                .and_then(|id| line_of(ctx, id))
                .and_then(|c| campaign_msg(action, c, &[]))
                .into_iter()
                .collect(),
        }
    }

    fn back(&mut self) -> bool {
        self.list.drop_filter()
    }

    fn filter(&self) -> Option<&str> {
        Some(&self.list.filter)
    }

    fn set_filter(&mut self, text: &str) {
        self.list.set_filter(text);
        self.scroll = 0;
    }

    fn click(&mut self, row: usize, ctx: &Ctx) {
        let before = self.list.row;
        self.list.click(row, self.visible(ctx).len());
        if self.list.row != before {
            self.scroll = 0;
        }
    }

    fn subject(&self, ctx: &Ctx) -> Option<EntityRef> {
        self.selected(ctx).map(|c| c.entity())
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        let theme = ctx.theme;
        let pending = self.visible(ctx);
        let block = pane_block(
            ctx,
            Pane::Approvals,
            format!("{} pending", pending.len()),
            Some(&self.list.filter),
        );
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let list_height = (pending.len() as u16 + 1).clamp(2, (inner.height / 3).max(2));
        let [list, spec] =
            Layout::vertical([Constraint::Length(list_height), Constraint::Min(2)]).areas(inner);
        let header = Row::new(["request", "experiment", "kind", "priority", "by", "title"])
            .style(theme.style(Slot::Title));
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
                .style(theme.style(Slot::Text))
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
            .row_highlight_style(theme.style(Slot::Selected));
        self.list.prepare(pending.len(), list.height + 2, true);
        frame.render_stateful_widget(table, list, &mut self.list.table);
        if empty {
            frame.render_widget(
                Paragraph::new("nothing waits for approval").style(theme.style(Slot::Dim)),
                spec,
            );
            return;
        }
        self.draw_request(frame, ctx, spec);
    }
}

impl Approvals {
    fn draw_request(&mut self, frame: &mut Frame, ctx: &Ctx, area: Rect) {
        let theme = ctx.theme;
        let selected = self.selected(ctx).map(|c| c.to_string());
        let loaded = ctx
            .snap
            .approval
            .as_ref()
            .filter(|(r, _)| Some(&r.summary.id) == selected.as_ref());
        let Some((request, original)) = loaded else {
            frame.render_widget(
                Paragraph::new("loading…").style(theme.style(Slot::Dim)),
                area,
            );
            return;
        };
        let new = request_text(request);
        let (title, lines) = match original {
            Some(o) => {
                let changes = staged_changes(diff(&request_text(o), &new), 1);
                (
                    format!(
                        " {} · {} against {} ",
                        request.summary.id,
                        plural(changes.iter().filter(|c| c.changed()).count(), "change"),
                        o.summary.id
                    ),
                    changes.iter().map(|c| c.line(theme)).collect::<Vec<_>>(),
                )
            }
            None => (
                format!(" {} as filed (new, not a clone) ", request.summary.id),
                new.lines()
                    .map(|l| Line::from(Span::styled(l.to_string(), theme.style(Slot::Text))))
                    .collect(),
            ),
        };
        self.page = area.height.saturating_sub(1) as usize;
        self.lines = lines.len();
        self.scroll = self.scroll.min(self.lines.saturating_sub(self.page.max(1)));
        let more = self.lines.saturating_sub(self.scroll + self.page);
        let mut block = Block::default()
            .borders(Borders::TOP)
            .border_style(theme.style(Slot::Border))
            .title(Span::styled(title, theme.style(Slot::Dim)));
        if more > 0 {
            block = block.title(
                Line::from(Span::styled(
                    format!(" ↓ {more} more (pgdn) "),
                    theme.style(Slot::Key),
                ))
                .right_aligned(),
            );
        }
        frame.render_widget(
            Paragraph::new(lines)
                .block(block)
                .scroll((self.scroll as u16, 0)),
            area,
        );
    }
}

/// The request as its file (or why it cannot be shown).
fn request_text(request: &RequestDetail) -> String {
    request_toml(request).unwrap_or_else(|e| format!("# cannot show {}: {e}", request.summary.id))
}

/// One line of the changes view.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shown {
    /// `── stage sim` before the first change in a stage.
    Section(String),
    /// A line of the diff.
    Diff(DiffLine),
    /// Unchanged lines left out.
    Gap,
}

impl Shown {
    fn changed(&self) -> bool {
        matches!(self, Shown::Diff(DiffLine::Added(_) | DiffLine::Removed(_)))
    }

    fn line(&self, theme: &Theme) -> Line<'static> {
        let (text, slot) = match self {
            Shown::Section(name) => (format!("── {name}"), Slot::Title),
            Shown::Gap => ("  …".to_string(), Slot::Dim),
            Shown::Diff(DiffLine::Same(l)) => (format!("  {l}"), Slot::Dim),
            Shown::Diff(DiffLine::Removed(l)) => (format!("- {l}"), Slot::StateFailed),
            Shown::Diff(DiffLine::Added(l)) => (format!("+ {l}"), Slot::StateOk),
        };
        Line::from(Span::styled(text, theme.style(slot)))
    }
}

/// The part of a request file a line is in: `request`, `defaults`,
/// `stage sim`, as the section headers and stage names before it say.
#[derive(Default)]
struct Section {
    name: String,
    in_stage: bool,
}

impl Section {
    fn read(&mut self, line: &str) {
        let t = line.trim();
        if t.starts_with("[[") {
            self.in_stage = t.trim_matches(|c| c == '[' || c == ']') == "stage";
            self.name = if self.in_stage {
                "stage ?".into()
            } else {
                t.trim_matches(|c| c == '[' || c == ']').to_string()
            };
        } else if t.starts_with('[') {
            self.in_stage = false;
            self.name = t.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if self.in_stage {
            if let Some(value) = t.strip_prefix("name").map(str::trim_start) {
                if let Some(v) = value.strip_prefix('=') {
                    self.name = format!("stage {}", v.trim().trim_matches('"'));
                }
            }
        }
    }

    fn current(&self) -> &str {
        if self.name.is_empty() {
            "request"
        } else {
            &self.name
        }
    }
}

/// The changed lines with `context` unchanged lines around them, each run
/// of changes under the section (request, defaults, stage NAME) it is in.
fn staged_changes(lines: Vec<DiffLine>, context: usize) -> Vec<Shown> {
    let changed: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !matches!(l, DiffLine::Same(_)))
        .map(|(i, _)| i)
        .collect();
    if changed.is_empty() {
        return vec![Shown::Section("no changes".into())];
    }
    let near = |i: usize| {
        changed
            .iter()
            .any(|c| i + context >= *c && i <= c + context)
    };
    let mut section = Section::default();
    let mut named = String::new();
    let mut out = Vec::new();
    let mut skipped = false;
    for (i, line) in lines.into_iter().enumerate() {
        let text = match &line {
            DiffLine::Same(l) | DiffLine::Added(l) | DiffLine::Removed(l) => l.clone(),
        };
        section.read(&text);
        if !near(i) {
            skipped = true;
            continue;
        }
        if section.current() != named {
            named = section.current().to_string();
            out.push(Shown::Section(named.clone()));
        } else if skipped {
            out.push(Shown::Gap);
        }
        skipped = false;
        out.push(Shown::Diff(line));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_shown_under_the_stage_it_is_in_title_changes_included() {
        let old = "title = \"A\"\nkind = \"mc\"\n\n[defaults]\nrelease = \"v1\"\n\n[[stage]]\nname = \"gen\"\nevents = 1000\n\n[[stage]]\nname = \"sim\"\nfiles_per_job = 1\n";
        let new = old
            .replace("title = \"A\"", "title = \"B\"")
            .replace("files_per_job = 1", "files_per_job = 2");
        let shown = staged_changes(diff(old, &new), 0);
        let sections: Vec<&str> = shown
            .iter()
            .filter_map(|s| match s {
                Shown::Section(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(sections, ["request", "stage sim"]);
        assert_eq!(shown.iter().filter(|s| s.changed()).count(), 4);
    }
}
