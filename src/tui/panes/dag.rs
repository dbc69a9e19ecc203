//! The DAG pane: the selected task's subtasks drawn as `git log --graph`
//! draws commits — one lane per pending edge, a node on its lane, lanes
//! joining where a subtask waits for several parents and forking where
//! several wait for one — so connectors stay aligned at every width. Each
//! node shows its state and its jobs by state; Enter opens its jobs.

use super::campaigns::job_count_spans;
use super::{movement, pane_block, plural, Component, Ctx, Msg};
use crate::model::ids::{EntityRef, SubtaskId};
use crate::model::state::{Lifecycle, SubtaskState};
use crate::ops::views::{SubtaskView, TaskView};
use crate::tui::action::{Action, Offer};
use crate::tui::app::Pane;
use crate::tui::data::Command;
use crate::tui::popup::Confirm;
use crate::tui::theme::Slot;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// The DAG's state: the selected node, in drawing order.
#[derive(Debug, Default)]
pub struct Dag {
    selected: usize,
    page: usize,
    /// First drawn row shown (set while drawing).
    scroll: usize,
    /// The tree's subtask last followed: choosing one there selects it here.
    followed: Option<SubtaskId>,
}

/// Each subtask's layer: 0 for roots, else one more than its deepest parent.
pub fn layers(task: &TaskView) -> Vec<usize> {
    let mut layer = vec![0usize; task.subtasks.len()];
    for _ in 0..task.subtasks.len() {
        let mut changed = false;
        for (i, s) in task.subtasks.iter().enumerate() {
            let deepest = parents(task, s).map(|p| layer[p] + 1).max().unwrap_or(0);
            if deepest != layer[i] {
                layer[i] = deepest;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    layer
}

fn parents<'a>(task: &'a TaskView, s: &'a SubtaskView) -> impl Iterator<Item = usize> + 'a {
    s.after
        .iter()
        .filter_map(|p| task.subtasks.iter().position(|x| &x.name == p))
}

/// Subtask indices in drawing order: by layer, then creation order.
pub fn order(task: &TaskView) -> Vec<usize> {
    let layer = layers(task);
    let mut idx: Vec<usize> = (0..task.subtasks.len()).collect();
    idx.sort_by_key(|i| (layer[*i], *i));
    idx
}

/// One row of the drawing: the lanes' glyphs, and the node it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphRow {
    /// Box-drawing glyphs, two columns per lane.
    pub lanes: String,
    /// The subtask (index into the task's subtasks) this row is the
    /// node line (`Node`) or the detail line (`Detail`) of; joins and forks have none.
    pub part: RowPart,
}

/// What a [`GraphRow`] carries besides its lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowPart {
    /// The node itself.
    Node(usize),
    /// The line under a node (its jobs).
    Detail(usize),
    /// Lanes joining or forking.
    Edge,
}

/// Lays the task's subtasks out in lanes, in `order`.
pub fn graph(task: &TaskView, order: &[usize]) -> Vec<GraphRow> {
    let mut lanes: Vec<Option<usize>> = Vec::new();
    let mut rows = Vec::new();
    for &n in order {
        let incoming: Vec<usize> = (0..lanes.len()).filter(|i| lanes[*i] == Some(n)).collect();
        let col = match incoming.first() {
            Some(first) => *first,
            None => free_lane(&mut lanes, 0),
        };
        if incoming.len() > 1 {
            rows.push(edge_row(&lanes, col, &incoming[1..], '┘'));
            for lane in &incoming[1..] {
                lanes[*lane] = None;
            }
            while lanes.last() == Some(&None) {
                lanes.pop();
            }
        }
        lanes[col] = Some(n);
        rows.push(GraphRow {
            lanes: glyphs(&lanes, |i| if i == col { '●' } else { '│' }),
            part: RowPart::Node(n),
        });
        let children: Vec<usize> = order
            .iter()
            .copied()
            .filter(|c| parents(task, &task.subtasks[*c]).any(|p| p == n))
            .collect();
        lanes[col] = children.first().copied();
        rows.push(GraphRow {
            lanes: glyphs(&lanes, |_| '│'),
            part: RowPart::Detail(n),
        });
        let mut forks = Vec::new();
        for child in children.iter().skip(1) {
            let lane = free_lane(&mut lanes, col + 1);
            lanes[lane] = Some(*child);
            forks.push(lane);
        }
        if !forks.is_empty() {
            rows.push(edge_row(&lanes, col, &forks, '┐'));
        }
        while lanes.last() == Some(&None) {
            lanes.pop();
        }
    }
    rows
}

/// The first free lane at or after `from`, added when none is.
fn free_lane(lanes: &mut Vec<Option<usize>>, from: usize) -> usize {
    match (from..lanes.len()).find(|i| lanes[*i].is_none()) {
        Some(i) => i,
        None => {
            lanes.resize(from.max(lanes.len()), None);
            lanes.push(None);
            lanes.len() - 1
        }
    }
}

/// Glyphs for the active lanes, `glyph(i)` for active lane `i`.
fn glyphs(lanes: &[Option<usize>], glyph: impl Fn(usize) -> char) -> String {
    lanes
        .iter()
        .enumerate()
        .map(|(i, l)| match l {
            Some(_) => format!("{} ", glyph(i)),
            None => "  ".to_string(),
        })
        .collect()
}

/// A row joining (`┘`) or forking (`┐`) `others` into or out of lane `col`.
fn edge_row(lanes: &[Option<usize>], col: usize, others: &[usize], end: char) -> GraphRow {
    let last = others.iter().copied().max().unwrap_or(col);
    let mut text = String::new();
    for i in 0..lanes.len().max(last + 1) {
        let active = lanes.get(i).copied().flatten().is_some();
        let inside = i > col && i < last;
        let glyph = if i == col {
            '├'
        } else if others.contains(&i) {
            end
        } else if inside && active {
            '┼'
        } else if inside {
            '─'
        } else if active {
            '│'
        } else {
            ' '
        };
        text.push(glyph);
        text.push(if i >= col && i < last { '─' } else { ' ' });
    }
    GraphRow {
        lanes: text,
        part: RowPart::Edge,
    }
}

impl Dag {
    fn task<'a>(ctx: &Ctx<'a>) -> Option<&'a TaskView> {
        let detail = ctx.snap.detail.as_ref()?;
        match ctx.scope.task {
            Some(t) => detail.tasks.iter().find(|x| x.id == t.to_string()),
            None => detail.tasks.first(),
        }
    }

    fn selected_subtask<'a>(&self, ctx: &Ctx<'a>) -> Option<&'a SubtaskView> {
        let task = Self::task(ctx)?;
        let order = order(task);
        let at = order.get(self.selected.min(order.len().saturating_sub(1)))?;
        task.subtasks.get(*at)
    }

    fn selected_id(&self, ctx: &Ctx) -> Option<SubtaskId> {
        self.selected_subtask(ctx)?.id.parse().ok()
    }
}

impl Dag {
    /// Selects the subtask the tree selects, when that changed.
    fn follow_tree(&mut self, ctx: &Ctx, task: &TaskView, order: &[usize]) {
        if ctx.scope.subtask == self.followed {
            return;
        }
        self.followed = ctx.scope.subtask;
        let Some(wanted) = self.followed.map(|s| s.to_string()) else {
            return;
        };
        if let Some(at) = order.iter().position(|i| task.subtasks[*i].id == wanted) {
            self.selected = at;
        }
    }
}

impl Component for Dag {
    fn actions(&self, ctx: &Ctx) -> Vec<Offer> {
        let Some(s) = self.selected_subtask(ctx) else {
            return Vec::new();
        };
        let mut offers = vec![Offer::new(Action::Open, format!("jobs of {}", s.name))];
        offers.extend(super::movement_offers());
        if s.jobs.failed > 0 {
            offers.push(Offer::new(
                Action::Resubmit,
                format!("resubmit {} failed of {}", s.jobs.failed, s.name),
            ));
        }
        if SubtaskState::parse(&s.state).is_some_and(|st| !st.is_terminal()) {
            offers.push(Offer::new(Action::SignOff, format!("sign off {}", s.name)));
        }
        offers
    }

    fn handle(&mut self, action: Action, ctx: &Ctx) -> Vec<Msg> {
        let len = Self::task(ctx).map_or(0, |t| t.subtasks.len());
        if let Some(by) = movement(action, self.page / 2) {
            self.selected = super::step(self.selected, by, len);
            return Vec::new();
        }
        let (Some(s), Some(id)) = (self.selected_subtask(ctx), self.selected_id(ctx)) else {
            return Vec::new();
        };
        match action {
            Action::Open => vec![Msg::OpenJobsOf(id, s.name.clone())],
            Action::Resubmit => vec![Msg::Ask(
                Confirm::new(
                    format!(
                        "resubmit the {} failed jobs of {} ({id})?",
                        s.jobs.failed, s.name
                    ),
                    Command::Resubmit(id.entity(), "resubmitted in the console".into()),
                )
                .noting(vec!["each gets a new attempt with the same plan".into()]),
            )],
            Action::SignOff => vec![Msg::Ask(
                Confirm::new(
                    format!("sign off {} ({id}) as complete?", s.name),
                    Command::SignOff(id, "signed off in the console".into()),
                )
                .noting(vec!["its completion criteria are taken as met".into()]),
            )],
            _ => Vec::new(),
        }
    }

    fn click(&mut self, row: usize, ctx: &Ctx) {
        let Some(task) = Self::task(ctx) else { return };
        let order = order(task);
        let rows = graph(task, &order);
        if let Some(RowPart::Node(n) | RowPart::Detail(n)) =
            rows.get(row + self.scroll).map(|r| r.part)
        {
            self.selected = order.iter().position(|x| *x == n).unwrap_or(0);
        }
    }

    fn subject(&self, ctx: &Ctx) -> Option<EntityRef> {
        self.selected_id(ctx).map(|s| s.entity())
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        self.page = area.height.saturating_sub(2) as usize;
        let theme = ctx.theme;
        let Some(task) = Self::task(ctx) else {
            let block = pane_block(ctx, Pane::Dag, String::new(), None);
            frame.render_widget(
                Paragraph::new("select a campaign or task in the tree")
                    .block(block)
                    .style(theme.style(Slot::Dim)),
                area,
            );
            return;
        };
        let layer = layers(task);
        let order = order(task);
        self.follow_tree(ctx, task, &order);
        self.selected = self.selected.min(order.len().saturating_sub(1));
        let depth = layer.iter().copied().max().map_or(0, |d| d + 1);
        let extra = format!(
            "{} {} · {} in {}",
            task.id,
            task.name,
            plural(order.len(), "node"),
            plural(depth, "layer")
        );
        let block = pane_block(ctx, Pane::Dag, extra, None);
        let selected = order.get(self.selected).copied();
        let rows = graph(task, &order);
        let lines: Vec<Line> = rows
            .iter()
            .map(|row| {
                let mut spans = vec![Span::styled(row.lanes.clone(), theme.style(Slot::Border))];
                match row.part {
                    RowPart::Node(n) => {
                        let s = &task.subtasks[n];
                        let name = if Some(n) == selected && ctx.focused {
                            theme.style(Slot::Selected)
                        } else {
                            theme.style(Slot::Title)
                        };
                        spans.push(Span::styled(s.name.clone(), name));
                        spans.push(Span::raw(" "));
                        spans.push(Span::styled(s.state.clone(), theme.state(&s.state)));
                        if s.after.len() > 1 {
                            spans.push(Span::styled(
                                format!("  after {}", s.after.join(", ")),
                                theme.style(Slot::Dim),
                            ));
                        }
                    }
                    RowPart::Detail(n) => {
                        let s = &task.subtasks[n];
                        spans.push(Span::styled(format!("{} · ", s.id), theme.style(Slot::Dim)));
                        spans.extend(job_count_spans(theme, &s.jobs));
                    }
                    RowPart::Edge => {}
                }
                Line::from(spans)
            })
            .collect();
        let selected_row = rows
            .iter()
            .position(|r| Some(r.part) == selected.map(RowPart::Node))
            .unwrap_or(0);
        let visible = self.page.max(1);
        self.scroll = (selected_row + 2).saturating_sub(visible);
        frame.render_widget(
            Paragraph::new(lines)
                .block(block)
                .scroll((self.scroll as u16, 0)),
            area,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::jobs::JobCounts;

    fn task(edges: &[(&str, &[&str])]) -> TaskView {
        TaskView {
            id: "T1".into(),
            name: "t".into(),
            kind: "mc".into(),
            state: "running".into(),
            state_since: String::new(),
            subtasks: edges
                .iter()
                .enumerate()
                .map(|(i, (name, after))| SubtaskView {
                    id: format!("S{}", i + 1),
                    name: name.to_string(),
                    state: "waiting".into(),
                    state_since: String::new(),
                    after: after.iter().map(|a| a.to_string()).collect(),
                    jobs: JobCounts::default(),
                })
                .collect(),
        }
    }

    fn drawn(t: &TaskView) -> Vec<String> {
        let order = order(t);
        graph(t, &order)
            .into_iter()
            .map(|r| {
                let label = match r.part {
                    RowPart::Node(n) => t.subtasks[n].name.clone(),
                    _ => String::new(),
                };
                format!("{}{label}", r.lanes).trim_end().to_string()
            })
            .collect()
    }

    #[test]
    fn a_chain_keeps_one_lane_and_every_connector_in_its_column() {
        let t = task(&[("gen", &[]), ("sim", &["gen"]), ("reco", &["sim"])]);
        assert_eq!(drawn(&t), ["● gen", "│", "● sim", "│", "● reco", ""]);
    }

    #[test]
    fn a_fork_and_a_join_draw_lanes_that_meet_under_their_nodes() {
        let t = task(&[
            ("gen", &[]),
            ("simA", &["gen"]),
            ("simB", &["gen"]),
            ("merge", &["simA", "simB"]),
        ]);
        assert_eq!(
            drawn(&t),
            [
                "● gen",
                "│",
                "├─┐",
                "● │ simA",
                "│ │",
                "│ ● simB",
                "│ │",
                "├─┘",
                "● merge",
                ""
            ]
        );
    }

    #[test]
    fn independent_roots_each_get_a_lane() {
        let t = task(&[("a", &[]), ("b", &[]), ("c", &["a"])]);
        let rows = drawn(&t);
        assert_eq!(rows[0], "● a");
        assert_eq!(rows[2], "│ ● b");
        assert_eq!(rows[4], "● c");
    }
}
