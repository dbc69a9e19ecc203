//! The Campaigns pane: experiment → campaign → task → subtask → batch, with
//! state, progress and job counts. Only the selected campaign's children are
//! loaded, so the tree stays small however much work exists. It offers the
//! campaign actions its state allows (approve a pending request, hold a
//! running campaign, release a held one, …).

use super::{movement, movement_offers, pane_block, Component, Ctx, Msg, Scope};
use crate::model::ids::{BatchId, CampaignId, EntityKind, EntityRef, SubtaskId, TaskId};
use crate::model::state::{CampaignState, Lifecycle, SubtaskState};
use crate::ops::views::{CampaignDetail, SubtaskView};
use crate::store::jobs::JobCounts;
use crate::store::overview::CampaignLine;
use crate::tui::action::{Action, Offer};
use crate::tui::app::Pane;
use crate::tui::data::Command;
use crate::tui::popup::Confirm;
use crate::tui::theme::{Slot, Theme};
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::Frame;
use tui_tree_widget::{Tree, TreeItem, TreeState};

/// The tree's state.
#[derive(Default)]
pub struct Campaigns {
    tree: TreeState<String>,
    filter: String,
    /// A campaign to select once it is loaded (`:campaign 3`, `--campaign`).
    wanted: Option<CampaignId>,
    area: Rect,
}

impl Campaigns {
    /// What the selection is in.
    pub fn scope(&self) -> Scope {
        let path: Vec<EntityRef> = self
            .tree
            .selected()
            .iter()
            .filter_map(|id| id.parse::<EntityRef>().ok())
            .collect();
        let find = |kind: EntityKind| path.iter().find(|e| e.kind == kind).map(|e| e.id);
        Scope {
            campaign: find(EntityKind::Campaign).map(CampaignId),
            task: find(EntityKind::Task).map(TaskId),
            subtask: find(EntityKind::Subtask).map(SubtaskId),
            node: path.last().copied(),
        }
    }

    /// Selects campaign `id` as soon as a snapshot has it.
    pub fn want(&mut self, id: CampaignId) {
        self.wanted = Some(id);
    }

    /// Applies a wanted selection (or selects the first campaign when
    /// nothing is); returns a wanted campaign that does not exist.
    pub fn settle(&mut self, snap: &crate::tui::data::Snapshot) -> Option<CampaignId> {
        if let Some(id) = self.wanted.take() {
            match snap.campaigns.iter().find(|c| c.id == id.0) {
                Some(c) => self.select_campaign(c),
                None => return Some(id),
            }
        }
        if self.tree.selected().is_empty() {
            if let Some(first) = snap.campaigns.first() {
                self.select_campaign(first);
            }
        }
        None
    }

    fn select_campaign(&mut self, c: &CampaignLine) {
        let experiment = format!("x:{}", c.experiment);
        self.tree.open(vec![experiment.clone()]);
        self.tree
            .select(vec![experiment, CampaignId(c.id).to_string()]);
    }

    /// The selected path for breadcrumbs (`nova`, `C3`, `T4`).
    pub fn path(&self) -> Vec<String> {
        self.tree
            .selected()
            .iter()
            .map(|id| id.trim_start_matches("x:").to_string())
            .collect()
    }
}

/// The tree line of a campaign, if it is loaded.
pub fn line_of<'a>(ctx: &Ctx<'a>, id: CampaignId) -> Option<&'a CampaignLine> {
    ctx.snap.campaigns.iter().find(|c| c.id == id.0)
}

/// The actions a campaign's state allows, for the tree and for approvals.
pub fn campaign_offers(c: &CampaignLine) -> Vec<Offer> {
    let id = CampaignId(c.id);
    let Some(state) = CampaignState::parse(&c.state) else {
        return Vec::new();
    };
    let can = |to: CampaignState| state.next().contains(&to);
    let mut offers = Vec::new();
    if state == CampaignState::PendingApproval {
        offers.push(Offer::new(Action::Approve, format!("approve {id}")));
        offers.push(Offer::new(Action::Reject, format!("reject {id}")));
    }
    if can(CampaignState::Held) {
        offers.push(Offer::new(Action::Hold, format!("hold {id}")));
    }
    if state == CampaignState::Held {
        offers.push(Offer::new(Action::Release, format!("release {id}")));
    }
    if can(CampaignState::Cancelled) {
        offers.push(Offer::new(Action::Abort, format!("abort {id}")));
    }
    if !state.is_terminal() {
        offers.push(Offer::new(
            Action::PriorityUp,
            format!("priority +10 (now {})", c.priority),
        ));
        offers.push(Offer::new(Action::PriorityDown, "priority −10"));
    }
    offers.push(Offer::new(Action::CloneRequest, format!("clone {id}")));
    offers
}

/// What a campaign action does: a command to run, or to confirm first.
/// `hold_effects` say what holding its running jobs does on its batch systems.
pub fn campaign_msg(
    action: Action,
    c: &CampaignLine,
    hold_effects: &[(String, &str)],
) -> Option<Msg> {
    let id = CampaignId(c.id);
    let title = &c.title;
    let ask = |question: String, notes: &[&str], command: Command| {
        Msg::Ask(
            Confirm::new(question, command).noting(notes.iter().map(|n| n.to_string()).collect()),
        )
    };
    Some(match action {
        Action::Approve => ask(
            format!("approve {id} ({title})?"),
            &["its spec is frozen; the worker queues its jobs by priority"],
            Command::Approve(id, "approved in the console".into()),
        ),
        Action::Reject => Msg::Ask(
            Confirm::new(
                format!("reject {id} ({title})?"),
                Command::Reject(id, String::new()),
            )
            .noting(vec!["the requester sees the reason".into()])
            .reason_required(),
        ),
        Action::Hold => {
            let confirm = Confirm::new(
                format!("hold {id} ({title})?"),
                Command::Hold(id, "held in the console".into(), false),
            );
            Msg::Ask(if c.state == CampaignState::Running.as_str() {
                confirm
                    .noting(vec![
                        "stops its submissions and holds its queued jobs; running jobs go on"
                            .into(),
                    ])
                    .with_option("hold running jobs too", running_hold_notes(hold_effects))
            } else {
                confirm.noting(vec![
                    "nothing of it is submitted until it is released".into()
                ])
            })
        }
        Action::Release => ask(
            format!("release {id} ({title})?"),
            &["submissions resume and its held jobs are released"],
            Command::Release(id, "released in the console".into()),
        ),
        Action::Abort => ask(
            format!("abort {id} ({title})?"),
            &["its jobs are removed from their batch systems; this cannot be undone"],
            Command::Abort(id, "aborted in the console".into()),
        ),
        Action::PriorityUp => Msg::Run(Command::Priority(id, (c.priority + 10).clamp(0, 1000))),
        Action::PriorityDown => Msg::Run(Command::Priority(id, (c.priority - 10).clamp(0, 1000))),
        Action::CloneRequest => Msg::Run(Command::Clone(id)),
        _ => return None,
    })
}

/// What holding running jobs does on each batch system the campaign uses.
fn running_hold_notes(effects: &[(String, &str)]) -> Vec<String> {
    effects
        .iter()
        .map(|(backend, effect)| format!("{backend}: {effect}"))
        .collect()
}

impl Component for Campaigns {
    fn actions(&self, ctx: &Ctx) -> Vec<Offer> {
        let mut offers = vec![Offer::new(Action::Open, "expand/collapse")];
        offers.push(Offer::quiet(Action::Left, "collapse / to parent"));
        offers.push(Offer::quiet(Action::Right, "expand"));
        offers.extend(movement_offers());
        offers.push(Offer::new(Action::Filter, "filter"));
        let scope = ctx.scope;
        if let Some(c) = scope.campaign.and_then(|id| line_of(ctx, id)) {
            offers.extend(campaign_offers(c));
        }
        if let Some(node) = scope.node.filter(|_| !ctx.snap.failures.is_empty()) {
            if scope.campaign.is_some() && ctx.snap.view.campaign == scope.campaign {
                offers.push(Offer::new(
                    Action::Resubmit,
                    format!("resubmit failed of {node}"),
                ));
            }
        }
        if let Some(s) = scope.subtask.and_then(|id| subtask_view(ctx, id)) {
            if SubtaskState::parse(&s.state).is_some_and(|st| !st.is_terminal()) {
                offers.push(Offer::new(Action::SignOff, format!("sign off {}", s.id)));
            }
        }
        offers
    }

    fn handle(&mut self, action: Action, ctx: &Ctx) -> Vec<Msg> {
        if let Some(by) = movement(action, self.area.height.saturating_sub(2) as usize) {
            match action {
                Action::Left => {
                    self.tree.key_left();
                }
                Action::Right => {
                    self.tree.key_right();
                }
                _ => {
                    self.tree.select_relative(|at| {
                        at.map_or(0, |at| (at as i64).saturating_add(by).max(0) as usize)
                    });
                }
            }
            return Vec::new();
        }
        let scope = ctx.scope;
        match action {
            Action::Open => {
                self.tree.toggle_selected();
                Vec::new()
            }
            Action::Resubmit => scope
                .node
                .map(|node| {
                    let failed = failed_jobs(ctx);
                    vec![Msg::Ask(Confirm::new(
                        format!("resubmit what failed under {node} ({failed} failed jobs in the campaign)?"),
                        Command::Resubmit(node, "resubmitted in the console".into()),
                    ).noting(vec!["only failed or missing jobs get a new attempt".into()]))]
                })
                .unwrap_or_default(),
            Action::SignOff => scope
                .subtask
                .map(|s| {
                    vec![Msg::Ask(
                        Confirm::new(
                            format!("sign off {s} as complete?"),
                            Command::SignOff(s, "signed off in the console".into()),
                        )
                        .noting(vec!["its completion criteria are taken as met".into()]),
                    )]
                })
                .unwrap_or_default(),
            _ => scope
                .campaign
                .and_then(|id| line_of(ctx, id))
                .and_then(|c| campaign_msg(action, c, &ctx.snap.hold_effects))
                .into_iter()
                .collect(),
        }
    }

    fn back(&mut self) -> bool {
        if self.filter.is_empty() {
            return false;
        }
        self.filter.clear();
        true
    }

    fn filter(&self) -> Option<&str> {
        Some(&self.filter)
    }

    fn set_filter(&mut self, text: &str) {
        self.filter = text.to_string();
    }

    fn click(&mut self, row: usize, _ctx: &Ctx) {
        let at = Position::new(self.area.x + 1, self.area.y + 1 + row as u16);
        self.tree.click_at(at);
    }

    fn subject(&self, ctx: &Ctx) -> Option<EntityRef> {
        ctx.scope.node
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        self.area = area;
        let items = items(ctx, &self.filter);
        let shown: usize = items.len();
        let extra = format!(
            "{} in {}",
            super::plural(ctx.snap.campaigns.len(), "campaign"),
            super::plural(shown, "experiment")
        );
        let block = pane_block(ctx, Pane::Campaigns, extra, Some(&self.filter));
        let Ok(tree) = Tree::new(&items) else {
            return;
        };
        let tree = tree
            .block(block)
            .highlight_style(ctx.theme.style(Slot::Selected))
            .style(ctx.theme.style(Slot::Text));
        frame.render_stateful_widget(tree, area, &mut self.tree);
    }
}

/// Failed jobs (not retried) of the selected campaign, as its subtasks count them.
fn failed_jobs(ctx: &Ctx) -> i64 {
    let Some(detail) = ctx.snap.detail.as_ref() else {
        return 0;
    };
    if ctx.scope.campaign.map(|c| c.to_string()).as_deref() != Some(detail.request.id.as_str()) {
        return 0;
    }
    detail
        .tasks
        .iter()
        .flat_map(|t| t.subtasks.iter())
        .map(|s| s.jobs.failed)
        .sum()
}

fn subtask_view<'a>(ctx: &Ctx<'a>, id: SubtaskId) -> Option<&'a SubtaskView> {
    let name = id.to_string();
    ctx.snap
        .detail
        .as_ref()?
        .tasks
        .iter()
        .flat_map(|t| t.subtasks.iter())
        .find(|s| s.id == name)
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
fn items(ctx: &Ctx, filter: &str) -> Vec<TreeItem<'static, String>> {
    let theme = ctx.theme;
    let mut experiments: Vec<(String, Vec<TreeItem<'static, String>>)> = Vec::new();
    for c in ctx.snap.campaigns.iter().filter(|c| matches(c, filter)) {
        let item = campaign_item(ctx, c);
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
                Span::styled(name.clone(), theme.style(Slot::Title)),
                Span::styled(
                    format!("  {}", super::plural(children.len(), "campaign")),
                    theme.style(Slot::Dim),
                ),
            ]);
            TreeItem::new(format!("x:{name}"), text, children).ok()
        })
        .collect()
}

fn state_span(theme: &Theme, state: &str, width: usize) -> Span<'static> {
    Span::styled(format!("{state:<width$} "), theme.state(state))
}

/// Width of the state column: the longest state shown, so none is cut.
fn state_width(ctx: &Ctx) -> usize {
    ctx.snap
        .campaigns
        .iter()
        .map(|c| c.state.len())
        .max()
        .unwrap_or(0)
        .max(9)
}

fn campaign_item(ctx: &Ctx, c: &CampaignLine) -> TreeItem<'static, String> {
    let theme = ctx.theme;
    let id = CampaignId(c.id).to_string();
    let detail = ctx.snap.detail.as_ref().filter(|d| d.request.id == id);
    let p = &c.progress;
    let mut text = vec![
        Span::styled(format!("{id:<5} "), theme.style(Slot::Dim)),
        state_span(theme, &c.state, state_width(ctx)),
        Span::styled(format!("{:>5.1}% ", p.percent()), theme.style(Slot::Text)),
    ];
    if p.failed > 0 {
        text.push(Span::styled(
            format!("{} {} failed ", p.failed, p.unit.as_str()),
            theme.style(Slot::StateFailed),
        ));
    }
    text.extend([
        Span::styled(c.title.clone(), theme.style(Slot::Text)),
        Span::styled(
            format!(
                "  {}/{} {} · {} · p{}",
                p.done,
                p.planned,
                p.unit.as_str(),
                c.kind,
                c.priority
            ),
            theme.style(Slot::Dim),
        ),
    ]);
    if let Some(countdown) = grace_countdown(c, crate::clock::now_ms()) {
        text.push(Span::styled(
            format!("  starts in {countdown}"),
            theme.style(Slot::StateHeld),
        ));
    }
    for reason in detail.map(|d| d.held_by.as_slice()).unwrap_or_default() {
        text.push(Span::styled(
            format!("  submissions held: {reason}"),
            theme.style(Slot::StateHeld),
        ));
    }
    let children = detail.map(|d| task_items(ctx, d)).unwrap_or_default();
    TreeItem::new(id.clone(), Line::from(text), children)
        .unwrap_or_else(|_| TreeItem::new_leaf(id, "?"))
}

/// The time left of an approved campaign's grace period (`4:12`), while
/// it lasts: cancelling it then leaves no job (X6).
fn grace_countdown(c: &CampaignLine, now: i64) -> Option<String> {
    let waiting = c.state == CampaignState::Approved.as_str()
        && crate::model::request_policy::in_grace(c.start_after, now);
    waiting.then(|| crate::model::request_policy::countdown(c.start_after.unwrap_or(now) - now))
}

/// A subtask's jobs in words: `10 jobs · 3 ok · 2 queued · 4 running · 1 held · 2 failed`
/// (counts of zero left out), as spans coloured by state.
pub fn job_count_spans(theme: &Theme, j: &JobCounts) -> Vec<Span<'static>> {
    if j.total == 0 {
        return vec![Span::styled("no jobs yet", theme.style(Slot::Dim))];
    }
    let mut spans = vec![Span::styled(
        super::plural(j.total as usize, "job"),
        theme.style(Slot::Dim),
    )];
    for (n, word, slot) in [
        (j.succeeded, "ok", Slot::StateOk),
        (j.queued, "queued", Slot::StateWaiting),
        (j.running, "running", Slot::StateRunning),
        (j.held, "held", Slot::StateHeld),
        (j.failed, "failed", Slot::StateFailed),
    ] {
        if n > 0 {
            spans.push(Span::styled(" · ", theme.style(Slot::Dim)));
            spans.push(Span::styled(format!("{n} {word}"), theme.style(slot)));
        }
    }
    spans
}

fn task_items(ctx: &Ctx, detail: &CampaignDetail) -> Vec<TreeItem<'static, String>> {
    let theme = ctx.theme;
    detail
        .tasks
        .iter()
        .map(|t| {
            let subtasks = t.subtasks.iter().map(|s| subtask_item(ctx, s)).collect();
            let text = Line::from(vec![
                Span::styled(format!("{:<5} ", t.id), theme.style(Slot::Dim)),
                state_span(theme, &t.state, 9),
                Span::styled(format!("{} ({})", t.name, t.kind), theme.style(Slot::Text)),
            ]);
            TreeItem::new(t.id.clone(), text, subtasks)
                .unwrap_or_else(|_| TreeItem::new_leaf(t.id.clone(), "?"))
        })
        .collect()
}

fn subtask_item(ctx: &Ctx, s: &SubtaskView) -> TreeItem<'static, String> {
    let theme = ctx.theme;
    let batches: Vec<TreeItem<'static, String>> = ctx
        .snap
        .batches
        .iter()
        .filter(|b| format!("S{}", b.subtask_id) == s.id)
        .map(|b| {
            let id = BatchId(b.id).to_string();
            let text = Line::from(vec![
                Span::styled(format!("{id:<5} "), theme.style(Slot::Dim)),
                state_span(theme, &b.state, 9),
                Span::styled(
                    format!("#{} · {}", b.seq, super::plural(b.jobs as usize, "job")),
                    theme.style(Slot::Dim),
                ),
            ]);
            TreeItem::new_leaf(id, text)
        })
        .collect();
    let mut text = vec![
        Span::styled(format!("{:<5} ", s.id), theme.style(Slot::Dim)),
        state_span(theme, &s.state, 9),
        Span::styled(format!("{} ", s.name), theme.style(Slot::Text)),
    ];
    text.extend(job_count_spans(theme, &s.jobs));
    TreeItem::new(s.id.clone(), Line::from(text), batches)
        .unwrap_or_else(|_| TreeItem::new_leaf(s.id.clone(), "?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::progress::{Progress, Unit};

    fn line(state: &str, start_after: Option<i64>) -> CampaignLine {
        CampaignLine {
            id: 1,
            experiment: "nova".into(),
            kind: "mc".into(),
            title: "t".into(),
            state: state.into(),
            priority: 50,
            subtasks: 1,
            succeeded: 0,
            failed: 0,
            progress: Progress::nothing(Unit::Events),
            start_after,
        }
    }

    #[test]
    fn x6_an_approved_campaign_in_its_grace_period_shows_its_countdown() {
        let now = 1_000_000;
        let waiting = line("approved", Some(now + 252_000));
        assert_eq!(grace_countdown(&waiting, now).as_deref(), Some("4:12"));
        assert_eq!(grace_countdown(&waiting, now + 252_000), None, "started");
        let cancelled = line("cancelled", Some(now + 252_000));
        assert_eq!(grace_countdown(&cancelled, now), None);
        assert_eq!(grace_countdown(&line("approved", None), now), None);
    }
}
