//! The Job pane: what the job is and where it ran, why it failed, its stage
//! timeline with CPU, wall and memory per stage, and its logs. The log reads
//! like `less`: free scrolling, `/` searches, `n` / `N` go to the next and
//! previous match, every match is highlighted and counted (`match 3/17`).

use super::jobs::{job_msg, job_offers};
use super::{movement, pane_block, short_kib, short_ms, Component, Ctx, Msg};
use crate::clock::now_ms;
use crate::model::ids::{EntityRef, JobId};
use crate::model::jobspec::StageEvent;
use crate::store::stages::{stage_rows, StageRow};
use crate::tui::action::{Action, Offer};
use crate::tui::app::Pane;
use crate::tui::data::{JobSet, Snapshot};
use crate::tui::theme::{Slot, Theme};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

/// How many log lines the viewer keeps (the end of the log).
const LOG_LINES: usize = 5000;
/// Lines shown above a match the view jumps to.
const CONTEXT: usize = 2;

/// The job shown and the log viewer's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDetail {
    /// The job shown.
    pub job: Option<JobId>,
    /// First log line shown (when not following).
    scroll: usize,
    /// Keep the end in view.
    follow: bool,
    /// Wrap long lines.
    wrap: bool,
    /// The search text.
    search: String,
    /// Which match is current (index into the matches).
    current: Option<usize>,
    page: usize,
}

impl Default for JobDetail {
    fn default() -> JobDetail {
        JobDetail {
            job: None,
            scroll: 0,
            follow: true,
            wrap: false,
            search: String::new(),
            current: None,
            page: 10,
        }
    }
}

impl JobDetail {
    /// Shows `job`, following the end of its log.
    pub fn open(&mut self, job: JobId) {
        *self = JobDetail {
            job: Some(job),
            ..JobDetail::default()
        };
    }

    fn loaded<'a>(&self, snap: &'a Snapshot) -> Option<&'a crate::ops::jobs::JobDetail> {
        snap.job
            .as_ref()
            .filter(|d| Some(d.job.id.as_str()) == self.job.map(|j| j.to_string()).as_deref())
    }

    /// Moves to match `to` (wrapping) and scrolls it into view.
    fn go_to_match(&mut self, lines: &[String], to: i64) -> Option<Msg> {
        let hits = matches(lines, &self.search);
        if hits.is_empty() {
            self.current = None;
            return Some(Msg::Flash(
                format!("`{}`: not in the log", self.search),
                false,
            ));
        }
        let n = hits.len() as i64;
        let at = to.rem_euclid(n) as usize;
        let wrapped = to < 0 || to >= n;
        self.current = Some(at);
        self.follow = false;
        self.scroll = hits[at].saturating_sub(CONTEXT);
        wrapped.then(|| Msg::Flash("search wrapped around".into(), true))
    }
}

/// The log's lines: stdout, then stderr under a marker, at most the last [`LOG_LINES`].
fn log_lines(snap: &Snapshot) -> Vec<String> {
    match &snap.logs {
        Some(Ok(bundle)) => {
            let mut all: Vec<String> = bundle.stdout.lines().map(str::to_string).collect();
            if !bundle.stderr.is_empty() {
                all.push("── stderr ──".into());
                all.extend(bundle.stderr.lines().map(str::to_string));
            }
            let skip = all.len().saturating_sub(LOG_LINES);
            all.split_off(skip)
        }
        Some(Err(why)) => vec![why.clone()],
        None => vec!["loading…".into()],
    }
}

/// The lines containing `search` (ASCII case ignored).
fn matches(lines: &[String], search: &str) -> Vec<usize> {
    if search.is_empty() {
        return Vec::new();
    }
    let needle = search.to_ascii_lowercase();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.to_ascii_lowercase().contains(&needle))
        .map(|(i, _)| i)
        .collect()
}

/// A log line with every occurrence of `search` highlighted.
fn highlighted(line: &str, search: &str, theme: &Theme, current: bool) -> Line<'static> {
    let base = theme.style(if current { Slot::Selected } else { Slot::Text });
    if search.is_empty() {
        return Line::from(Span::styled(line.to_string(), base));
    }
    let lower = line.to_ascii_lowercase();
    let needle = search.to_ascii_lowercase();
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find(&needle) {
        let start = at + found;
        let end = start + needle.len();
        spans.push(Span::styled(line[at..start].to_string(), base));
        spans.push(Span::styled(
            line[start..end].to_string(),
            theme.style(Slot::Selected),
        ));
        at = end;
    }
    spans.push(Span::styled(line[at..].to_string(), base));
    Line::from(spans)
}

impl Component for JobDetail {
    fn actions(&self, ctx: &Ctx) -> Vec<Offer> {
        let mut offers = vec![
            Offer::new(Action::Filter, "search"),
            Offer::new(
                Action::Follow,
                if self.follow {
                    "stop following"
                } else {
                    "follow"
                },
            ),
            Offer::new(Action::Wrap, if self.wrap { "unwrap" } else { "wrap" }),
        ];
        if !self.search.is_empty() {
            offers.push(Offer::new(Action::SearchNext, "next match"));
            offers.push(Offer::new(Action::SearchPrev, "previous match"));
        }
        if let Some(detail) = self.loaded(ctx.snap) {
            offers.extend(job_offers(&detail.job));
        }
        offers.extend(super::movement_offers());
        offers
    }

    fn handle(&mut self, action: Action, ctx: &Ctx) -> Vec<Msg> {
        let lines = log_lines(ctx.snap);
        if let Some(by) = movement(action, self.page) {
            let last = lines.len().saturating_sub(self.page.max(1));
            self.follow = false;
            self.scroll = super::step(self.scroll.min(last), by, last + 1);
            return Vec::new();
        }
        match action {
            Action::Follow => self.follow = !self.follow,
            Action::Wrap => self.wrap = !self.wrap,
            Action::SearchNext | Action::SearchPrev => {
                let by = if action == Action::SearchNext { 1 } else { -1 };
                let to = match self.current {
                    Some(at) => at as i64 + by,
                    None if by > 0 => 0,
                    None => -1,
                };
                return self.go_to_match(&lines, to).into_iter().collect();
            }
            _ => {
                let Some(detail) = self.loaded(ctx.snap) else {
                    return Vec::new();
                };
                let Some(id) = self.job else {
                    return Vec::new();
                };
                return job_msg(action, JobSet::Ids(vec![id]), &detail.job.id)
                    .into_iter()
                    .collect();
            }
        }
        Vec::new()
    }

    fn back(&mut self) -> bool {
        if self.search.is_empty() {
            return false;
        }
        self.search.clear();
        self.current = None;
        true
    }

    fn filter(&self) -> Option<&str> {
        Some(&self.search)
    }

    fn set_filter(&mut self, text: &str) {
        self.search = text.to_string();
        self.current = None;
    }

    fn subject(&self, _ctx: &Ctx) -> Option<EntityRef> {
        self.job.map(|j| j.entity())
    }

    fn draw(&mut self, frame: &mut Frame, area: Rect, ctx: &Ctx) {
        let theme = ctx.theme;
        let block = pane_block(
            ctx,
            Pane::JobDetail,
            self.job.map(|j| j.to_string()).unwrap_or_default(),
            None,
        );
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let Some(detail) = self.loaded(ctx.snap) else {
            frame.render_widget(
                Paragraph::new("loading…").style(theme.style(Slot::Dim)),
                inner,
            );
            return;
        };
        let stages = stages_of(ctx.snap, detail);
        let [summary, timeline, logs] = Layout::vertical([
            Constraint::Length(3),
            Constraint::Length((stages.len() as u16 + 1).min(inner.height / 3).max(2)),
            Constraint::Min(3),
        ])
        .areas(inner);
        draw_summary(frame, theme, detail, summary);
        draw_stages(frame, theme, &stages, timeline);
        self.draw_log(frame, ctx, logs);
    }
}

/// The job's stages: as recorded once it ended, else as its batch system
/// reports them so far (a running job's stages appear as they start).
fn stages_of(snap: &Snapshot, detail: &crate::ops::jobs::JobDetail) -> Vec<StageRow> {
    if !detail.stages.is_empty() {
        return detail.stages.clone();
    }
    let Some(Ok(bundle)) = &snap.logs else {
        return Vec::new();
    };
    let events: Vec<StageEvent> = bundle
        .stages
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    stage_rows(&events)
}

fn draw_summary(
    frame: &mut Frame,
    theme: &Theme,
    detail: &crate::ops::jobs::JobDetail,
    area: Rect,
) {
    let j = &detail.job;
    let failure = match (&j.failure, j.exit_code) {
        (Some(f), Some(c)) if !f.contains(&c.to_string()) => format!("{f} (exit code {c})"),
        (Some(f), _) => f.clone(),
        (None, Some(c)) if c != 0 => format!("exit code {c}"),
        _ => String::new(),
    };
    let lines = vec![
        Line::from(vec![
            Span::styled(format!("{} ", j.id), theme.style(Slot::Title)),
            Span::styled(format!("{} ", j.state), theme.state(&j.state)),
            Span::styled(
                format!(
                    "for {} · since {} UTC · attempt {}",
                    super::short_duration(j.seconds_in_state * 1000),
                    j.state_since.get(11..19).unwrap_or(&j.state_since),
                    j.attempt
                ),
                theme.style(Slot::Dim),
            ),
        ]),
        Line::from(Span::styled(
            format!(
                "{} · site {} · node {} · batch id {} · subtask {}",
                j.backend,
                j.site.as_deref().unwrap_or("—"),
                j.node.as_deref().unwrap_or("—"),
                j.batch_job_id.as_deref().unwrap_or("—"),
                j.subtask
            ),
            theme.style(Slot::Text),
        )),
        Line::from(Span::styled(failure, theme.style(Slot::StateFailed))),
    ];
    frame.render_widget(Paragraph::new(lines), area);
}

fn draw_stages(frame: &mut Frame, theme: &Theme, stages: &[StageRow], area: Rect) {
    let header = Row::new(["stage", "wall", "cpu", "rss", "ok"]).style(theme.style(Slot::Title));
    let now = now_ms();
    let rows = stages.iter().map(|s| {
        let ok = match s.ok {
            Some(true) => "✓",
            Some(false) => "✗",
            None => "…",
        };
        let wall = s.wall_ms.unwrap_or(now - s.started_at);
        Row::new(vec![
            Cell::from(s.name.clone()),
            Cell::from(short_ms(wall)),
            Cell::from(s.cpu_ms.map(short_ms).unwrap_or_default()),
            Cell::from(s.max_rss_kb.map(short_kib).unwrap_or_default()),
            Cell::from(ok),
        ])
        .style(theme.style(Slot::Text))
    });
    let widths = [
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(3),
    ];
    frame.render_widget(Table::new(rows, widths).header(header), area);
}

impl JobDetail {
    fn draw_log(&mut self, frame: &mut Frame, ctx: &Ctx, area: Rect) {
        let theme = ctx.theme;
        let text = log_lines(ctx.snap);
        self.page = area.height.saturating_sub(1) as usize;
        let last = text.len().saturating_sub(self.page.max(1));
        if self.follow {
            self.scroll = last;
        }
        self.scroll = self.scroll.min(last);
        if self.current.is_none() && !self.search.is_empty() {
            let hits = matches(&text, &self.search);
            if !hits.is_empty() {
                let below = hits.iter().position(|l| *l >= self.scroll);
                self.go_to_match(&text, below.unwrap_or(0) as i64);
            }
        }
        let hits = matches(&text, &self.search);
        let current_line = self.current.and_then(|c| hits.get(c)).copied();
        let lines: Vec<Line> = text
            .iter()
            .enumerate()
            .skip(self.scroll)
            .take(self.page.max(1) * 4)
            .map(|(i, l)| highlighted(l, &self.search, theme, Some(i) == current_line))
            .collect();
        let mut title = format!(" log · {}", super::plural(text.len(), "line"));
        if !self.search.is_empty() {
            match self.current {
                Some(c) => title += &format!(" · match {}/{}", c + 1, hits.len()),
                None => title += " · no match",
            }
        }
        if self.follow {
            title += " · following";
        }
        if self.wrap {
            title += " · wrapped";
        }
        let block = Block::default()
            .title(Span::styled(format!("{title} "), theme.style(Slot::Dim)))
            .borders(Borders::TOP)
            .border_style(theme.style(Slot::Border));
        let mut paragraph = Paragraph::new(lines).block(block);
        if self.wrap {
            paragraph = paragraph.wrap(Wrap { trim: false });
        }
        frame.render_widget(paragraph, area);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                if i % 10 == 3 {
                    format!("line {i} ERROR here")
                } else {
                    format!("line {i}")
                }
            })
            .collect()
    }

    #[test]
    fn n_and_shift_n_walk_matches_both_ways_and_wrap_around() {
        let lines = log(40);
        let mut d = JobDetail {
            search: "error".into(),
            ..JobDetail::default()
        };
        assert!(d.go_to_match(&lines, 0).is_none());
        assert_eq!((d.current, d.scroll), (Some(0), 1));
        d.go_to_match(&lines, 2);
        assert_eq!((d.current, d.scroll), (Some(2), 21));
        d.go_to_match(&lines, 1);
        assert_eq!(d.current, Some(1), "backwards");
        let wrapped = d.go_to_match(&lines, -1);
        assert_eq!(d.current, Some(3), "N before the first goes to the last");
        assert!(wrapped.is_some());
        assert!(!d.follow);
    }

    #[test]
    fn matches_are_counted_case_blind_and_highlighted_in_place() {
        let lines = log(40);
        assert_eq!(matches(&lines, "ERROR"), vec![3, 13, 23, 33]);
        assert!(matches(&lines, "").is_empty());
        let theme = Theme::default_theme();
        let line = highlighted("an Error and an error", "error", &theme, false);
        let hits: Vec<&str> = line
            .spans
            .iter()
            .filter(|s| s.style == theme.style(Slot::Selected))
            .map(|s| s.content.as_ref())
            .collect();
        assert_eq!(hits, ["Error", "error"]);
    }
}
