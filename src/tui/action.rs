//! Every action the console can take, with its keymap name, its help text,
//! whether it changes production state (hidden by `--readonly`) and whether
//! it is dangerous (confirmed first).
//! Keys never appear here: they come from the keymap files.

/// What a key (or a mouse click, or a `:` command) asks the console to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Leave the console.
    Quit,
    /// Show the keys of the active keymap.
    Help,
    /// Open the `:` command line.
    Command,
    /// Filter the focused list.
    Filter,
    /// Close a popup, clear a filter, or go back one breadcrumb.
    Back,
    /// Move the selection up.
    Up,
    /// Move the selection down.
    Down,
    /// A page up.
    PageUp,
    /// A page down.
    PageDown,
    /// First row.
    Top,
    /// Last row.
    Bottom,
    /// Collapse a tree node, or move left in the DAG.
    Left,
    /// Expand a tree node, or move right in the DAG.
    Right,
    /// Open what is selected (a campaign's jobs, a job's detail).
    Open,
    /// Focus the next pane.
    NextPane,
    /// Focus the previous pane.
    PrevPane,
    /// Focus the campaigns tree.
    ShowCampaigns,
    /// Focus the DAG of the selected task.
    ShowDag,
    /// Focus the jobs table.
    ShowJobs,
    /// Focus failure triage.
    ShowTriage,
    /// Focus pending approvals.
    ShowApprovals,
    /// Focus the history of the selected item.
    ShowHistory,
    /// Sort the jobs table by the next column.
    SortNext,
    /// Reverse the sort order.
    SortReverse,
    /// Follow the end of the log.
    Follow,
    /// Wrap long log lines.
    Wrap,
    /// The next match of the search (in the log).
    SearchNext,
    /// The previous match of the search (in the log).
    SearchPrev,
    /// Mark or unmark the selected row, then move down.
    Mark,
    /// Mark every row that matches the filter (again: unmark all).
    MarkAll,
    /// Mark the selected row and move up (range selection).
    MarkUp,
    /// Mark the selected row and move down (range selection).
    MarkDown,
    /// Stop (or resume) refreshing what is shown.
    Freeze,
    /// Reload now.
    Refresh,
    /// Approve the selected request.
    Approve,
    /// Reject the selected request.
    Reject,
    /// Raise the priority of the selected request.
    PriorityUp,
    /// Lower the priority of the selected request.
    PriorityDown,
    /// Hold the selected campaign, or the selected (or marked) jobs.
    Hold,
    /// Release the selected campaign, or the selected (or marked) jobs.
    Release,
    /// Abort the selected campaign, or remove the selected (or marked) jobs.
    Abort,
    /// Resubmit what failed under the selection (or the selected failure group).
    Resubmit,
    /// Sign off the selected subtask as complete.
    SignOff,
    /// Copy the selected request into a new pending one.
    CloneRequest,
}

impl Action {
    /// Every action, in the order help lists them.
    pub const ALL: &'static [Action] = &[
        Action::Quit,
        Action::Help,
        Action::Command,
        Action::Filter,
        Action::Back,
        Action::Up,
        Action::Down,
        Action::PageUp,
        Action::PageDown,
        Action::Top,
        Action::Bottom,
        Action::Left,
        Action::Right,
        Action::Open,
        Action::NextPane,
        Action::PrevPane,
        Action::ShowCampaigns,
        Action::ShowDag,
        Action::ShowJobs,
        Action::ShowTriage,
        Action::ShowApprovals,
        Action::ShowHistory,
        Action::SortNext,
        Action::SortReverse,
        Action::Follow,
        Action::Wrap,
        Action::SearchNext,
        Action::SearchPrev,
        Action::Mark,
        Action::MarkAll,
        Action::MarkUp,
        Action::MarkDown,
        Action::Freeze,
        Action::Refresh,
        Action::Approve,
        Action::Reject,
        Action::PriorityUp,
        Action::PriorityDown,
        Action::Hold,
        Action::Release,
        Action::Abort,
        Action::Resubmit,
        Action::SignOff,
        Action::CloneRequest,
    ];

    /// The name used in keymap files and `:` commands.
    pub fn name(self) -> &'static str {
        match self {
            Action::Quit => "quit",
            Action::Help => "help",
            Action::Command => "command",
            Action::Filter => "filter",
            Action::Back => "back",
            Action::Up => "up",
            Action::Down => "down",
            Action::PageUp => "page_up",
            Action::PageDown => "page_down",
            Action::Top => "top",
            Action::Bottom => "bottom",
            Action::Left => "left",
            Action::Right => "right",
            Action::Open => "open",
            Action::NextPane => "next_pane",
            Action::PrevPane => "prev_pane",
            Action::ShowCampaigns => "show_campaigns",
            Action::ShowDag => "show_dag",
            Action::ShowJobs => "show_jobs",
            Action::ShowTriage => "show_triage",
            Action::ShowApprovals => "show_approvals",
            Action::ShowHistory => "show_history",
            Action::SortNext => "sort_next",
            Action::SortReverse => "sort_reverse",
            Action::Follow => "follow",
            Action::Wrap => "wrap",
            Action::SearchNext => "search_next",
            Action::SearchPrev => "search_prev",
            Action::Mark => "mark",
            Action::MarkAll => "mark_all",
            Action::MarkUp => "mark_up",
            Action::MarkDown => "mark_down",
            Action::Freeze => "freeze",
            Action::Refresh => "refresh",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::PriorityUp => "priority_up",
            Action::PriorityDown => "priority_down",
            Action::Hold => "hold",
            Action::Release => "release",
            Action::Abort => "abort",
            Action::Resubmit => "resubmit",
            Action::SignOff => "sign_off",
            Action::CloneRequest => "clone",
        }
    }

    /// What it does, for help and the hints bar.
    pub fn description(self) -> &'static str {
        match self {
            Action::Quit => "quit",
            Action::Help => "help",
            Action::Command => "command",
            Action::Filter => "filter",
            Action::Back => "back",
            Action::Up => "up",
            Action::Down => "down",
            Action::PageUp => "page up",
            Action::PageDown => "page down",
            Action::Top => "first",
            Action::Bottom => "last",
            Action::Left => "collapse/left",
            Action::Right => "expand/right",
            Action::Open => "open",
            Action::NextPane => "next pane",
            Action::PrevPane => "previous pane",
            Action::ShowCampaigns => "campaigns",
            Action::ShowDag => "DAG",
            Action::ShowJobs => "jobs",
            Action::ShowTriage => "triage",
            Action::ShowApprovals => "approvals",
            Action::ShowHistory => "history",
            Action::SortNext => "sort",
            Action::SortReverse => "reverse sort",
            Action::Follow => "follow log",
            Action::Wrap => "wrap lines",
            Action::SearchNext => "next match",
            Action::SearchPrev => "previous match",
            Action::Mark => "mark",
            Action::MarkAll => "mark all matching",
            Action::MarkUp => "mark and move up",
            Action::MarkDown => "mark and move down",
            Action::Freeze => "freeze",
            Action::Refresh => "refresh",
            Action::Approve => "approve",
            Action::Reject => "reject",
            Action::PriorityUp => "priority +10",
            Action::PriorityDown => "priority −10",
            Action::Hold => "hold",
            Action::Release => "release",
            Action::Abort => "abort",
            Action::Resubmit => "resubmit failed",
            Action::SignOff => "sign off",
            Action::CloneRequest => "clone request",
        }
    }

    /// True for actions that change production state (through `ops`, with a
    /// role check): `--readonly` hides them.
    pub fn mutates(self) -> bool {
        self.dangerous()
            || matches!(
                self,
                Action::CloneRequest | Action::PriorityUp | Action::PriorityDown
            )
    }

    /// True for actions that are hard to take back: they ask for confirmation.
    pub fn dangerous(self) -> bool {
        matches!(
            self,
            Action::Approve
                | Action::Reject
                | Action::Hold
                | Action::Release
                | Action::Abort
                | Action::Resubmit
                | Action::SignOff
        )
    }

    /// The action named `name` in a keymap file or a `:` command.
    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.iter().copied().find(|a| a.name() == name)
    }

    /// True for actions the console handles the same in every pane (they
    /// are listed after the focused pane's own in help).
    pub fn is_global(self) -> bool {
        matches!(
            self,
            Action::Quit
                | Action::Help
                | Action::Command
                | Action::Back
                | Action::NextPane
                | Action::PrevPane
                | Action::ShowCampaigns
                | Action::ShowDag
                | Action::ShowJobs
                | Action::ShowTriage
                | Action::ShowApprovals
                | Action::ShowHistory
                | Action::Freeze
                | Action::Refresh
        )
    }
}

/// An action a pane offers for what is selected, with what it does there
/// (`hold C3`, `remove 37 marked jobs`). Hints and help are made of these, so
/// a key is shown only where it acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The action.
    pub action: Action,
    /// What it does here.
    pub label: String,
    /// Shown in the hints bar (movement keys are only in help).
    pub hint: bool,
}

impl Offer {
    /// An offer shown in the hints bar.
    pub fn new(action: Action, label: impl Into<String>) -> Offer {
        Offer {
            action,
            label: label.into(),
            hint: true,
        }
    }

    /// An offer listed in help only (movement).
    pub fn quiet(action: Action, label: impl Into<String>) -> Offer {
        Offer {
            hint: false,
            ..Offer::new(action, label)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_a_distinct_name_that_reads_back() {
        let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        for a in Action::ALL {
            assert_eq!(Action::from_name(a.name()), Some(*a));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len());
    }
}
