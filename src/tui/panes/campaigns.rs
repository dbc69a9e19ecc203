//! The Campaigns pane: experiment → campaign → task → subtask → batch, with
//! state, progress and counts. Only the selected campaign's children are
//! loaded, so the tree stays small however much work exists.

use crate::model::ids::{BatchId, CampaignId};
use crate::store::overview::CampaignLine;
use crate::tui::app::{App, Pane};
use crate::tui::theme::Slot;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::Frame;
use tui_tree_widget::{Tree, TreeItem};

/// Draws the tree.
pub fn draw(frame: &mut Frame, app: &mut App, area: Rect) {
    let items = items(app);
    let extra = format!("{} campaigns", app.snap.campaigns.len());
    let block = super::pane_block(app, Pane::Campaigns, extra);
    let tree = match Tree::new(&items) {
        Ok(tree) => tree,
        Err(_) => return,
    };
    let tree = tree
        .block(block)
        .highlight_style(app.theme.style(Slot::Selected))
        .style(app.theme.style(Slot::Text));
    frame.render_stateful_widget(tree, area, &mut app.tree);
}

fn matches(c: &CampaignLine, filter: &str) -> bool {
    let f = filter.to_lowercase();
    f.is_empty()
        || c.title.to_lowercase().contains(&f)
        || CampaignId(c.id).to_string().to_lowercase().contains(&f)
        || c.state.contains(&f)
        || c.kind.contains(&f)
        || c.experiment.to_lowercase().contains(&f)
}

/// The tree's items from the snapshot.
pub fn items(app: &App) -> Vec<TreeItem<'static, String>> {
    let mut experiments: Vec<(String, Vec<TreeItem<'static, String>>)> = Vec::new();
    for c in app
        .snap
        .campaigns
        .iter()
        .filter(|c| matches(c, &app.tree_filter))
    {
        let item = campaign_item(app, c);
        match experiments
            .iter_mut()
            .find(|(name, _)| *name == c.experiment)
        {
            Some((_, list)) => list.push(item),
            None => experiments.push((c.experiment.clone(), vec![item])),
        }
    }
    experiments
        .into_iter()
        .filter_map(|(name, children)| {
            let text = Line::from(vec![
                Span::styled(name.clone(), app.theme.style(Slot::Title)),
                Span::styled(
                    format!("  {} campaigns", children.len()),
                    app.theme.style(Slot::Dim),
                ),
            ]);
            TreeItem::new(format!("x:{name}"), text, children).ok()
        })
        .collect()
}

fn state_span(app: &App, state: &str) -> Span<'static> {
    Span::styled(format!("{state:<10} "), app.theme.state(state))
}

fn campaign_item(app: &App, c: &CampaignLine) -> TreeItem<'static, String> {
    let id = CampaignId(c.id).to_string();
    let detail = app.snap.detail.as_ref().filter(|d| d.request.id == id);
    let percent = match detail {
        Some(d) => d.progress.percent(),
        None if c.subtasks > 0 => (c.succeeded * 1000 / c.subtasks) as f64 / 10.0,
        None => 0.0,
    };
    let mut text = vec![
        Span::styled(format!("{id:<5} "), app.theme.style(Slot::Dim)),
        state_span(app, &c.state),
        Span::styled(format!("{percent:>5.1}% "), app.theme.style(Slot::Text)),
        Span::styled(
            format!("{}/{} ok ", c.succeeded, c.subtasks),
            app.theme.style(Slot::Dim),
        ),
    ];
    if c.failed > 0 {
        text.push(Span::styled(
            format!("{} failed ", c.failed),
            app.theme.style(Slot::StateFailed),
        ));
    }
    text.extend([
        Span::styled(c.title.clone(), app.theme.style(Slot::Text)),
        Span::styled(
            format!("  {} · p{}", c.kind, c.priority),
            app.theme.style(Slot::Dim),
        ),
    ]);
    for reason in detail.map(|d| d.held_by.as_slice()).unwrap_or_default() {
        text.push(Span::styled(
            format!("  submissions held: {reason}"),
            app.theme.style(Slot::StateHeld),
        ));
    }
    let children = detail.map(|d| task_items(app, d)).unwrap_or_default();
    TreeItem::new(id.clone(), Line::from(text), children)
        .unwrap_or_else(|_| TreeItem::new_leaf(id, "?"))
}

fn task_items(
    app: &App,
    detail: &crate::ops::views::CampaignDetail,
) -> Vec<TreeItem<'static, String>> {
    detail
        .tasks
        .iter()
        .map(|t| {
            let subtasks = t
                .subtasks
                .iter()
                .map(|s| {
                    let batches: Vec<TreeItem<'static, String>> = app
                        .snap
                        .batches
                        .iter()
                        .filter(|b| format!("S{}", b.subtask_id) == s.id)
                        .map(|b| {
                            let id = BatchId(b.id).to_string();
                            let text = Line::from(vec![
                                Span::styled(format!("{id:<5} "), app.theme.style(Slot::Dim)),
                                state_span(app, &b.state),
                                Span::styled(
                                    format!("#{} · {} jobs", b.seq, b.jobs),
                                    app.theme.style(Slot::Dim),
                                ),
                            ]);
                            TreeItem::new_leaf(id, text)
                        })
                        .collect();
                    let j = &s.jobs;
                    let text = Line::from(vec![
                        Span::styled(format!("{:<5} ", s.id), app.theme.style(Slot::Dim)),
                        state_span(app, &s.state),
                        Span::styled(format!("{} ", s.name), app.theme.style(Slot::Text)),
                        Span::styled(
                            format!(
                                "{}/{} jobs ok · {} failed · {} active",
                                j.succeeded, j.total, j.failed, j.active
                            ),
                            app.theme.style(Slot::Dim),
                        ),
                    ]);
                    TreeItem::new(s.id.clone(), text, batches)
                        .unwrap_or_else(|_| TreeItem::new_leaf(s.id.clone(), "?"))
                })
                .collect();
            let text = Line::from(vec![
                Span::styled(format!("{:<5} ", t.id), app.theme.style(Slot::Dim)),
                state_span(app, &t.state),
                Span::styled(
                    format!("{} ({})", t.name, t.kind),
                    app.theme.style(Slot::Text),
                ),
            ]);
            TreeItem::new(t.id.clone(), text, subtasks)
                .unwrap_or_else(|_| TreeItem::new_leaf(t.id.clone(), "?"))
        })
        .collect()
}
