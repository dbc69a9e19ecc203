//! The DAG pane: the selected task's subtasks drawn layer by layer (a
//! subtask's layer is one more than its deepest parent), joined by
//! box-drawing edges, coloured by state, navigable node by node.

use crate::ops::views::TaskView;
use crate::tui::app::{App, Pane};
use crate::tui::theme::Slot;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Each subtask's layer: 0 for roots, else one more than its deepest parent.
pub fn layers(task: &TaskView) -> Vec<usize> {
    let mut layer = vec![0usize; task.subtasks.len()];
    for _ in 0..task.subtasks.len() {
        let mut changed = false;
        for (i, s) in task.subtasks.iter().enumerate() {
            let deepest = s
                .after
                .iter()
                .filter_map(|p| task.subtasks.iter().position(|x| &x.name == p))
                .map(|p| layer[p] + 1)
                .max()
                .unwrap_or(0);
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

/// Subtask indices in drawing order: by layer, then creation order.
pub fn order(task: &TaskView) -> Vec<usize> {
    let layer = layers(task);
    let mut idx: Vec<usize> = (0..task.subtasks.len()).collect();
    idx.sort_by_key(|i| (layer[*i], *i));
    idx
}

/// Draws the DAG of the selected task.
pub fn draw(frame: &mut Frame, app: &mut App, area: Rect) {
    let task = app.selected_task().and_then(|t| {
        app.snap
            .detail
            .as_ref()?
            .tasks
            .iter()
            .find(|x| x.id == t.to_string())
            .cloned()
    });
    let Some(task) = task else {
        let block = super::pane_block(app, Pane::Dag, String::new());
        frame.render_widget(
            Paragraph::new("select a campaign or task in the tree")
                .block(block)
                .style(app.theme.style(Slot::Dim)),
            area,
        );
        return;
    };
    let layer = layers(&task);
    let order = order(&task);
    app.dag = app.dag.min(order.len().saturating_sub(1));
    let depth = layer.iter().copied().max().map(|d| d + 1).unwrap_or(0);
    let block = super::pane_block(
        app,
        Pane::Dag,
        format!(
            "{} {} · {} nodes, {depth} layers",
            task.id,
            task.name,
            order.len()
        ),
    );
    let mut lines = Vec::new();
    for (row, i) in order.iter().enumerate() {
        let s = &task.subtasks[*i];
        let l = layer[*i];
        let selected = row == app.dag && app.focus == Pane::Dag;
        let indent = "   ".repeat(l);
        let edge = if s.after.is_empty() {
            "● ".to_string()
        } else {
            "└▶● ".to_string()
        };
        let mut spans = vec![
            Span::styled(format!("{indent}{edge}"), app.theme.style(Slot::Border)),
            Span::styled(
                format!("{} ", s.name),
                if selected {
                    app.theme.style(Slot::Selected)
                } else {
                    app.theme.style(Slot::Text)
                },
            ),
            Span::styled(format!("{} ", s.state), app.theme.state(&s.state)),
            Span::styled(
                format!(
                    "{}/{} jobs · {} failed · {}",
                    s.jobs.succeeded, s.jobs.total, s.jobs.failed, s.id
                ),
                app.theme.style(Slot::Dim),
            ),
        ];
        if !s.after.is_empty() {
            spans.push(Span::styled(
                format!("  ◀ {}", s.after.join(", ")),
                app.theme.style(Slot::Dim),
            ));
        }
        lines.push(Line::from(spans));
        let continues = order
            .get(row + 1)
            .is_some_and(|n| layer[*n] > l || !task.subtasks[*n].after.is_empty());
        if continues {
            lines.push(Line::from(Span::styled(
                format!("{indent}│"),
                app.theme.style(Slot::Border),
            )));
        }
    }
    let visible = area.height.saturating_sub(2) as usize;
    let selected_line = lines_before(&task, &order, &layer, app.dag);
    let scroll = selected_line.saturating_sub(visible.saturating_sub(2));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((scroll as u16, 0)),
        area,
    );
}

fn lines_before(task: &TaskView, order: &[usize], layer: &[usize], row: usize) -> usize {
    (0..row)
        .map(|r| {
            let next = order.get(r + 1);
            1 + usize::from(next.is_some_and(|n| {
                layer[*n] > layer[order[r]] || !task.subtasks[*n].after.is_empty()
            }))
        })
        .sum()
}
